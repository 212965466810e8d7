"""The flywheel: the embedded trainer, the flywheel report, and the verifier-noise study."""

import base64
import json
from typing import List

import dagster as dg
import pyarrow as pa

from orbit.io import lake
from orbit.flywheel.checkpoints import CheckpointWrite, split_version, stale_rounds, train_embedded, versions
from orbit.flywheel.rounds import RoundRegistry
from orbit.flywheel.report import chart_png, fits, per_round
from orbit.io.keys import round_index, round_key, validate_round
from orbit.flywheel.noise_study import run_flywheel
from orbit.stages.yields import markdown_table
from orbit_assets.automation import any_upstream_updated, round_settled_updated
from orbit_assets.export import training_set
from orbit_assets.partitions import round_partitions
from orbit_assets.rounds import refuse_duplicate_run, stamp_run_tags
from orbit_assets.yields import yield_metrics
from resources.settings import OrbitSettings


class TrainerConfig(dg.Config):
    trainer: str = "table"
    """'table': the embedded table policy; 'llm': LoRA SFT of SmolLM2 on the round's SFT rows, served by llama.cpp."""
    alpha: float = 0.1
    """Additive smoothing of the action counts (table)."""
    temperature: float = 0.5
    """Sampling temperature saved with the checkpoint (table)."""
    llm_json: str = "{}"
    """LLM trainer settings as JSON (orbit.training.llm.LLMTrainSettings: max_examples, max_length, epochs, ...)."""


@dg.asset(partitions_def=round_partitions, group_name="train", deps=[training_set],
          automation_condition=round_settled_updated, kinds={"parquet"},
          description="The embedded trainer: a table policy trained on the cumulative training set of rounds <= r, "
          "written as the checkpoint round r+1 samples from (picked up by the checkpoint sensor).")
def policy_checkpoint(context: dg.AssetExecutionContext, config: TrainerConfig,
                      settings: OrbitSettings) -> dg.MaterializeResult:
    r = validate_round(context.partition_key)
    refuse_duplicate_run(context)
    stamp_run_tags(context.instance, context.run.run_id, r, settings.lake_path(), context.run)
    if config.trainer == "llm":
        from orbit.training.llm import LLMTrainSettings, train_llm_checkpoint

        checkpoint, info = train_llm_checkpoint(settings.lake_path(), settings.checkpoints_path(), r,
                                                LLMTrainSettings(**json.loads(config.llm_json)), log=context.log.info)
        base, version = split_version(checkpoint.name)
        earlier = versions(settings.checkpoints_path(), base)
        write = CheckpointWrite(checkpoint, created=True,
                                superseded=earlier[-2].name if version > 1 and len(earlier) > 1 else None)
        return dg.MaterializeResult(metadata={
            **lineage_metadata(context, write, settings),
            "checkpoint": dg.MetadataValue.path(str(checkpoint.path)), "policy": checkpoint.policy,
            "trained_on_rows": info["counts"]["used"], "train": dg.MetadataValue.json(info["train"]),
            "sft_rows": dg.MetadataValue.json(info["counts"]), "train_wall_seconds": info["train_wall_seconds"],
            "serve_wall_seconds": info["serve_wall_seconds"],
        })
    if config.trainer != "table":
        raise ValueError(f"trainer must be 'table' or 'llm', got {config.trainer!r}")
    source = lake.partition_file(settings.lake_path(), "training_set", r)
    name = f"embedded-{round_key(round_index(r) + 1)}"
    records = lake.read_table(source, columns=["messages", "passed"])
    write, policy = train_embedded(records, settings.checkpoints_path(), name, parent_round=r,
                                   alpha=config.alpha, temperature=config.temperature)
    checkpoint = write.checkpoint
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(str(checkpoint.path)), "policy": checkpoint.policy,
        "states": len(policy.counts), "trained_on_rows": policy.trained_on_rows,
        "training_rows": lake.row_count(source),
        **lineage_metadata(context, write, settings),
    })


def lineage_metadata(context: dg.AssetExecutionContext, write: CheckpointWrite,
                     settings: OrbitSettings) -> dict:
    """What a checkpoint write did to lineage: a new version or the newest kept, and the rounds now stale."""
    name = write.checkpoint.name
    entries = RoundRegistry(settings.lake_path()).entries()
    used_by = [e.round for e in entries if e.checkpoint == name]
    if not write.created:
        written = f"unchanged: the training gave the bytes of {name} again; nothing was written"
    elif write.superseded:
        written = (f"new version {name} (after {write.superseded}, which is kept as it was; a new version starts "
                   "no round by itself: `orbit round add --policy <its policy>` samples from it)")
    else:
        written = f"new checkpoint {name}"
    stale = stale_rounds(entries, settings.checkpoints_path())
    if stale:
        context.log.warning(f"rounds whose lineage is behind the newest checkpoints: {stale}")
    if used_by:
        next_round = f"{', '.join(used_by)} sampled from {name}"
    elif settings.next_rounds == "manual":
        next_round = ("next_rounds=manual: no round starts by itself; `orbit round add --policy "
                      f"'{write.checkpoint.policy}'` starts one")
    elif write.superseded:
        next_round = "none: a newer version starts no round by itself"
    elif len(entries) >= settings.max_rounds:
        next_round = (f"none: max_rounds={settings.max_rounds} reached ({len(entries)} rounds registered); raise "
                      "$ORBIT_MAX_ROUNDS or `orbit round add`")
    else:
        next_round = (f"the checkpoint sensor registers it as the next round (next_rounds=auto; {len(entries)} of "
                      f"max_rounds={settings.max_rounds} rounds registered)")
    return {"checkpoint_version": name, "written": written, "next_round": next_round,
            "stale_rounds": dg.MetadataValue.md(
                "\n".join(f"- {r}: {why}" for r, why in stale.items()) if stale else "none")}


class FlywheelReportConfig(dg.Config):
    target_yield: float = 0.5
    """Yield whose distance in rounds the report estimates (only where a constant g fits the data)."""
    headline_max_p0: float = 0.15
    """Envs whose first-round p is above this get no flywheel headline (their growth says little)."""


def _png_markdown(png: bytes) -> str:
    return f"![flywheel](data:image/png;base64,{base64.b64encode(png).decode()})"


@dg.asset(group_name="measure", deps=[yield_metrics], automation_condition=any_upstream_updated,
          kinds={"parquet", "matplotlib"},
          description="Per env: p_t and per-round g with intervals, the fitted constant g with a test of it "
          "(ceiling LRT, deviance), the ceiling when rejected, rounds to a target only when not, and a chart.")
def flywheel_report(config: FlywheelReportConfig, settings: OrbitSettings) -> dg.MaterializeResult:
    rounds = per_round(settings.lake_path())
    fit_table = fits(rounds, config.target_yield, config.headline_max_p0)
    out = lake.partition_dir(settings.lake_path(), "flywheel_report")
    lake.write_table(fit_table, out / lake.PART_NAME)
    png = chart_png(rounds, fit_table)
    chart = lake.write_bytes(png, lake.report_file(settings.lake_path(), "flywheel.png"))
    metadata = {
        "chart_path": dg.MetadataValue.path(str(chart)),
        "fits": dg.MetadataValue.md(markdown_table(fit_table, fit_table.column_names)),
        "by_round": dg.MetadataValue.md(markdown_table(rounds, rounds.column_names)) if rounds.num_rows else "none",
        "chart": dg.MetadataValue.md(_png_markdown(png)),
    }
    for row in fit_table.to_pylist():
        metadata[f"headline_{row['env']}"] = dg.MetadataValue.text(row["headline"])
        if row["g"] is not None:
            metadata[f"g_{row['env']}"] = dg.MetadataValue.float(float(row["g"]))
    return dg.MaterializeResult(metadata=metadata)


class NoiseStudyConfig(dg.Config):
    env: str = "tic_tac_toe"
    epsilons: List[float] = [0.0, 0.1, 0.3]
    rounds: int = 5
    tasks: int = 200
    best_of: int = 4
    opponent_simulations: int = 30


NOISE_SCHEMA = pa.schema([("env", pa.string()), ("epsilon", pa.float64()), ("round", pa.int64()),
                          ("pass_rate", pa.float64()), ("noisy_pass_rate", pa.float64()),
                          ("g", pa.float64()), ("g_low", pa.float64()), ("g_high", pa.float64())])


@dg.asset(group_name="measure", kinds={"parquet"},
          description="Runs the flywheel from the same start with a verifier whose pass/fail flips with "
          "probability epsilon, and reports the g each epsilon measures (with the clean verifier).")
def verifier_noise_study(context: dg.AssetExecutionContext, config: NoiseStudyConfig,
                         settings: OrbitSettings) -> dg.MaterializeResult:
    rows, summary = [], []
    options = {"opponent": {"kind": "mcts", "simulations": config.opponent_simulations}}
    for eps in config.epsilons:
        run = run_flywheel(config.env, rounds=config.rounds, epsilon=eps, tasks=config.tasks,
                           best_of=config.best_of, options=options)
        context.log.info(f"epsilon={eps}: p={[round(p, 3) for p in run.pass_rates]} g={run.fit.g}")
        for t, (p, q) in enumerate(zip(run.pass_rates, run.noisy_pass_rates)):
            rows.append({"env": config.env, "epsilon": eps, "round": t, "pass_rate": p, "noisy_pass_rate": q,
                         "g": run.fit.g, "g_low": run.fit.g_low, "g_high": run.fit.g_high})
        summary.append({"epsilon": eps, "g": run.fit.g, "g_low": run.fit.g_low, "g_high": run.fit.g_high,
                        "p_first": run.pass_rates[0], "p_last": run.pass_rates[-1]})
    table = pa.Table.from_pylist(rows, schema=NOISE_SCHEMA)
    path = lake.write_table(table, lake.partition_file(settings.lake_path(), "verifier_noise_study"))
    summary_table = pa.Table.from_pylist(summary)
    metadata = {"path": dg.MetadataValue.path(str(path)),
                "g_by_epsilon": dg.MetadataValue.md(markdown_table(summary_table, summary_table.column_names))}
    for s in summary:
        if s["g"] is not None:
            metadata[f"g_eps_{s['epsilon']:g}"] = dg.MetadataValue.float(float(s["g"]))
    return dg.MaterializeResult(metadata=metadata)
