"""Measure yield: pass rate p per round x env with its interval, coverage, cost and g."""

from pathlib import Path

import dagster as dg
import pyarrow as pa

from orbit.io import lake
from orbit.io.keys import previous_round
from orbit.stages.yields import markdown_table, partition_yields
from orbit_assets.automation import upstream_updated
from orbit_assets.partitions import round_and_env, round_env_partitions
from resources.settings import OrbitSettings

SHOWN = ["source", "attempts", "passes", "pass_rate", "pass_rate_low", "pass_rate_high",
         "tasks", "tasks_solved", "clean_trajectories", "attempts_per_clean", "odds", "g"]


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
    group_name="measure",
    automation_condition=upstream_updated,
    description="Yield of one round x env: p with its 95% Wilson interval, best-of-N coverage, cost per clean trajectory, odds and g.",
    kinds={"parquet", "duckdb"},
)
def yield_metrics(context: dg.AssetExecutionContext, verified_samples: Path, filtered_dataset: Path,
                  settings: OrbitSettings) -> dg.Output[pa.Table]:
    round_key, env = round_and_env(context.partition_key)
    table = partition_yields(verified_samples, filtered_dataset, round_key, env,
                             previous_odds(settings.lake_path(), round_key, env))
    overall = table.slice(0, 1).to_pylist()[0] if table.num_rows else {}
    metadata = {
        "p": dg.MetadataValue.float(float(overall.get("pass_rate") or 0.0)),
        "yields": dg.MetadataValue.md(markdown_table(table, SHOWN)),
    }
    if overall.get("g") is not None:
        metadata["g"] = dg.MetadataValue.float(float(overall["g"]))
    if overall.get("attempts_per_clean") is not None:
        metadata["cost_per_clean"] = dg.MetadataValue.float(float(overall["attempts_per_clean"]))
    return dg.Output(table, metadata=metadata)
