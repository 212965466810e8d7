"""Export: training sets of one round (all envs) in ms-swift's format, and the cumulative set."""

import dagster as dg

from orbit import lake
from orbit.exports import cumulative_training_set, export_dpo, export_grpo, export_sft
from orbit.keys import validate_round
from orbit.lake import ArrowStream
from orbit_assets.automation import round_settled_updated
from orbit_assets.filter import filtered_dataset
from orbit_assets.partitions import all_envs_of_round, round_partitions
from orbit_assets.verify import verified_samples
from resources.settings import OrbitSettings

EXPORT_FILE = "data.jsonl"


def _export(context: dg.AssetExecutionContext, settings: OrbitSettings, exporter, swift_command: str) -> dg.MaterializeResult:
    round_key = validate_round(context.partition_key)
    asset = context.asset_key.path[-1]
    out = lake.partition_file(settings.lake_path(), asset, round_key, name=EXPORT_FILE)
    counts = exporter(settings.lake_path(), round_key, out)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out)),
            "dagster/row_count": counts.exported,
            **{k: (dg.MetadataValue.json(v) if isinstance(v, dict) else v) for k, v in counts.as_metadata().items()},
            "swift": dg.MetadataValue.md(f"```\n{swift_command.format(path=out)}\n```"),
        }
    )


def _deps(*assets):
    return [dg.AssetDep(a, partition_mapping=all_envs_of_round) for a in assets]


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(filtered_dataset),
          automation_condition=round_settled_updated, kinds={"jsonl"},
          description="ms-swift SFT JSONL of the round's filtered samples (messages + tools).")
def sft_export(context: dg.AssetExecutionContext, settings: OrbitSettings) -> dg.MaterializeResult:
    return _export(context, settings, export_sft, "swift sft --model <model> --train_type lora --dataset {path}")


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(verified_samples),
          automation_condition=round_settled_updated, kinds={"jsonl"},
          description="ms-swift DPO JSONL: messages ending in a passed turn + rejected_response from a failed sample of the same task.")
def dpo_export(context: dg.AssetExecutionContext, settings: OrbitSettings) -> dg.MaterializeResult:
    return _export(context, settings, export_dpo, "swift rlhf --rlhf_type dpo --model <model> --dataset {path}")


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(verified_samples),
          automation_condition=round_settled_updated, kinds={"jsonl"},
          description="GRPO prompts: prompt messages plus env, task_id and task_spec for the reward function.")
def grpo_export(context: dg.AssetExecutionContext, settings: OrbitSettings) -> dg.MaterializeResult:
    return _export(context, settings, export_grpo,
                   "swift rlhf --rlhf_type grpo --model <model> --dataset {path} --reward_funcs <your_orm>")


@dg.asset(partitions_def=round_partitions, group_name="export", deps=_deps(filtered_dataset),
          automation_condition=round_settled_updated, kinds={"parquet"},
          description="Cumulative training set: filtered samples of every round <= r, best per (env, task_id).")
def training_set(context: dg.AssetExecutionContext, settings: OrbitSettings) -> ArrowStream:
    return cumulative_training_set(settings.lake_path(), validate_round(context.partition_key))
