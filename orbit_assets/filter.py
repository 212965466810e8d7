"""Filter: passed samples, one per (env, task_id), best first; then the dedup stage (one per trajectory)."""

from typing import Iterator

import dagster as dg

from orbit.stages.filter import filtered_stream
from orbit_assets import checks
from orbit_assets.automation import upstream_updated
from orbit_assets.partitions import round_and_env, round_env_partitions, upstream_file
from orbit_assets.verify import verified_samples
from resources.settings import OrbitSettings


@dg.asset(
    partitions_def=round_env_partitions,
    deps=[verified_samples],
    check_specs=[checks.FILTERED_UNIQUE],
    group_name="filter",
    automation_condition=upstream_updated,
    description="Passed samples deduplicated by (env, task_id), then by canonical trajectory (exact) and by MinHash "
    "LSH over the assistant turns (near: 14 bands x 8 rows, Jaccard threshold ~0.72), keeping the best of each "
    "(score desc, shorter, record_id); rows carry dedup_key, minhash, dropped_exact, dropped_near.",
    kinds={"parquet", "duckdb"},
)
def filtered_dataset(context: dg.AssetExecutionContext, settings: OrbitSettings) -> Iterator:
    round_key, env = round_and_env(context.partition_key)
    yield dg.Output(filtered_stream(upstream_file(settings.lake_path(), "verified_samples", round_key, env)))
    yield checks.filtered_unique(settings.lake_path(), round_key, env)  # the file is written by now
