"""Measure yield: pass rate p per round x env with its interval, coverage, cost and g."""

from pathlib import Path

import dagster as dg
import pyarrow as pa

from orbit.io import lake
from orbit.io.keys import previous_round
from orbit.stages.yields import headline_row, markdown_table, partition_yields
from orbit_assets.automation import upstream_updated
from orbit_assets.filter import filtered_dataset
from orbit_assets.partitions import round_and_env, round_env_partitions, upstream_file
from orbit_assets.verify import verified_samples
from resources.settings import OrbitSettings

SHOWN = ["source", "attempts", "passes", "pass_rate", "pass_rate_low", "pass_rate_high",
         "tasks", "tasks_solved", "clean_trajectories", "dropped_exact", "dropped_near", "attempts_per_clean",
         "odds", "g"]


def previous_odds(lake_root: Path, round_key: str, env: str) -> dict:
    prev = previous_round(round_key)
    if prev is None:
        return {}
    path = lake.partition_file(lake_root, "yield_metrics", prev, env)
    if not path.exists():
        return {}
    table = lake.read_table(path, columns=["source", "odds"])
    return dict(zip(table.column("source").to_pylist(), table.column("odds").to_pylist()))


@dg.asset(
    partitions_def=round_env_partitions,
    deps=[verified_samples, filtered_dataset],
    group_name="measure",
    automation_condition=upstream_updated,
    description="Yield of one round x env per source: p with its 95% Wilson interval, best-of-N coverage, cost per "
    "clean trajectory, odds and g. Metadata p is the headline p (the policy's samples where the partition has them, "
    "else every source; p_source says which), p_all every source's; round_yields plots them per env.",
    kinds={"parquet", "duckdb"},
)
def yield_metrics(context: dg.AssetExecutionContext, settings: OrbitSettings) -> dg.Output[pa.Table]:
    round_key, env = round_and_env(context.partition_key)
    table = partition_yields(upstream_file(settings.lake_path(), "verified_samples", round_key, env),
                             upstream_file(settings.lake_path(), "filtered_dataset", round_key, env), round_key, env,
                             previous_odds(settings.lake_path(), round_key, env))
    rows = table.to_pylist()
    # the headline p: the policy's samples where the partition has them, else every source (one rule everywhere)
    head = headline_row(rows) or {}
    every = next((r for r in rows if r["source"] == "all"), {})
    metadata = {
        "p": dg.MetadataValue.float(float(head.get("pass_rate") or 0.0)),
        "p_source": dg.MetadataValue.text(str(head.get("source") or "all")),
        "p_all": dg.MetadataValue.float(float(every.get("pass_rate") or 0.0)),
        "yields": dg.MetadataValue.md(markdown_table(table, SHOWN)),
    }
    if head.get("g") is not None:
        metadata["g"] = dg.MetadataValue.float(float(head["g"]))
    if every.get("attempts_per_clean") is not None:  # attempts of every source per clean trajectory
        metadata["cost_per_clean"] = dg.MetadataValue.float(float(every["attempts_per_clean"]))
    return dg.Output(table, metadata=metadata)
