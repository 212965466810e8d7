"""Filter: passed samples, one per (env, task_id), best first."""

from pathlib import Path

import dagster as dg

from orbit.stages.filter import filtered_stream
from orbit.io.lake import ArrowStream
from orbit_assets.automation import upstream_updated
from orbit_assets.partitions import round_env_partitions


@dg.asset(
    partitions_def=round_env_partitions,
    group_name="filter",
    automation_condition=upstream_updated,
    description="Passed samples deduplicated by (env, task_id), keeping the best (score desc, shorter, record_id).",
    kinds={"parquet", "duckdb"},
)
def filtered_dataset(verified_samples: Path) -> ArrowStream:
    return filtered_stream(verified_samples)
