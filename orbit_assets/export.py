"""Export: Hub-ready training sets of one round (all envs) for ms-swift and TRL, and the cumulative set.

Each export asset writes ``<lake>/<asset>/<round>/``: ``README.md`` (dataset card),
``swift/{train,validation}.jsonl`` and ``trl/{train,validation}.jsonl``.
"""

from typing import Iterator, Optional

import dagster as dg

from orbit.io import lake
from orbit.stages.dedup import dedup_card
from orbit.stages.export import TRAINER_CONTRACT, ExportOptions, export_round, cumulative_training_set, train_commands
from orbit.io.keys import validate_round
from orbit_assets import checks
from orbit_assets.automation import round_settled_updated
from orbit_assets.filter import filtered_dataset
from orbit_assets.partitions import all_envs_of_round, round_partitions
from orbit_assets.verify import verified_samples
from resources.settings import OrbitSettings


class ExportConfig(dg.Config):
    max_tokens: Optional[int] = None
    """Drop rows longer than this many tokens (counted as export.over_max_tokens); set it to the
    trainer's max_length. Unset: keep every row (lengths are still reported)."""
    tokenizer: Optional[str] = None
    """A tokenizer.json (or folder with one), a transformers tokenizer name, or a .gguf file to count
    tokens with; unset: the documented estimate (UTF-8 bytes / 1.8 + 4 per message + 64)."""
    validation_fraction: float = 0.05
    """Share of tasks (by a hash of env and task_id) in the validation split."""
    license: str = "other"
    """The dataset card's license field."""


def _export(context: dg.AssetExecutionContext, config: ExportConfig, settings: OrbitSettings,
            kind: str) -> dg.MaterializeResult:
    round_key = validate_round(context.partition_key)
    asset = context.asset_key.path[-1]
    folder = lake.partition_dir(settings.lake_path(), asset, round_key)
    options = ExportOptions(max_tokens=config.max_tokens, tokenizer=config.tokenizer,
                            validation_fraction=config.validation_fraction, license=config.license)
    export = export_round(kind, settings.lake_path(), round_key, folder, options)
    meta = export.counts.as_metadata()
    swift_cmd, trl_cmd = train_commands(export, str(folder), max_tokens=config.max_tokens)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "dagster/row_count": export.counts.exported,
            **{k: (dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v) for k, v in meta.items()},
            "token_counter": export.counter,
            "trainer_contract": dg.MetadataValue.json(TRAINER_CONTRACT),
            "train": dg.MetadataValue.md(f"```bash\n{swift_cmd}\n```\n```python\n{trl_cmd}\n```"),
        }
    )


def _deps(*assets):
    return [dg.AssetDep(a, partition_mapping=all_envs_of_round) for a in assets]


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(filtered_dataset),
          automation_condition=round_settled_updated, kinds={"jsonl"},
          description="SFT set of the round's filtered samples: whole episodes in OpenAI message shape "
          "(tool_calls + role tool) with tools; ms-swift and TRL flavours, train/validation, dataset card.")
def sft_export(context: dg.AssetExecutionContext, config: ExportConfig, settings: OrbitSettings) -> dg.MaterializeResult:
    return _export(context, config, settings, "sft")


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(verified_samples),
          automation_condition=round_settled_updated, kinds={"jsonl"},
          description="DPO pairs (a passed and a failed sample of one task, cut at the first divergent assistant "
          "turn, tool calls included): ms-swift messages + rejected_response, TRL prompt/chosen/rejected.")
def dpo_export(context: dg.AssetExecutionContext, config: ExportConfig, settings: OrbitSettings) -> dg.MaterializeResult:
    return _export(context, config, settings, "dpo")


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(verified_samples),
          automation_condition=round_settled_updated, kinds={"jsonl"},
          description="GRPO prompts with env, task_id, task_spec and task_history for orbit.rewards "
          "(the verifier as the reward): ms-swift messages, TRL prompt.")
def grpo_export(context: dg.AssetExecutionContext, config: ExportConfig, settings: OrbitSettings) -> dg.MaterializeResult:
    return _export(context, config, settings, "grpo")


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(filtered_dataset),
          automation_condition=round_settled_updated, kinds={"parquet"}, check_specs=[checks.TRAINING_SET_UNIQUE],
          description="Cumulative training set: filtered samples of every round <= r, best per (env, task_id), "
          "then one per canonical trajectory and per MinHash cluster across rounds (stored signatures, never "
          "rehashed), the best kept.")
def training_set(context: dg.AssetExecutionContext, settings: OrbitSettings) -> Iterator:
    round_key = validate_round(context.partition_key)
    context.add_output_metadata({"dedup_card": dg.MetadataValue.md(dedup_card())}, output_name="result")
    yield dg.Output(cumulative_training_set(settings.lake_path(), round_key))
    yield checks.training_set_unique(settings.lake_path(), round_key)  # the file is written by now
