"""Asset checks: counts add up at every stage, schemas hold, no duplicate task or trajectory survives.

They read the partition files with DuckDB; a failure blocks downstream stages.
"""

import glob
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from orbit.io import lake
from orbit.io.keys import validate_round
from orbit.io.schema import FILTERED_SCHEMA, RECORD_SCHEMA, VERIFIED_SCHEMA, check_schema
from orbit_assets.export import training_set
from orbit_assets.filter import filtered_dataset
from orbit_assets.generate import raw_samples
from orbit_assets.partitions import round_and_env, round_env_partitions, round_partitions
from orbit_assets.verify import verified_samples
from resources.settings import OrbitSettings


def _files(context, settings: OrbitSettings, *assets: str) -> list[Path]:
    round_key, env = round_and_env(context.partition_key)
    return [lake.partition_file(settings.lake_path(), a, round_key, env) for a in assets]


def _scalar(sql: str, *params) -> tuple:
    con = duckdb.connect()
    try:
        return con.execute(sql, [str(p) for p in params]).fetchall()[0]
    finally:
        con.close()


@dg.asset_check(asset=raw_samples, blocking=True, partitions_def=round_env_partitions,
                description="raw_samples has the record schema.")
def raw_samples_schema(context, settings: OrbitSettings) -> dg.AssetCheckResult:
    (path,) = _files(context, settings, "raw_samples")
    problems = check_schema(pq.read_schema(path), RECORD_SCHEMA)
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})


@dg.asset_check(asset=verified_samples, blocking=True, partitions_def=round_env_partitions,
                description="Every raw row is verified exactly once; passed + failed = verified; every failure names a reason.")
def verified_conservation(context, settings: OrbitSettings) -> dg.AssetCheckResult:
    raw, verified = _files(context, settings, "raw_samples", "verified_samples")
    problems = check_schema(pq.read_schema(verified), VERIFIED_SCHEMA)
    raw_rows, raw_ids = _scalar("SELECT count(*), count(DISTINCT record_id) FROM read_parquet(?)", raw)
    rows, passed, failed, unexplained, ids, missing = _scalar(
        "SELECT count(*), count(*) FILTER (WHERE passed), count(*) FILTER (WHERE NOT passed), "
        "count(*) FILTER (WHERE NOT passed AND len(reasons) = 0), count(DISTINCT record_id), "
        "(SELECT count(*) FROM read_parquet(?) r ANTI JOIN read_parquet(?) v USING (record_id)) "
        "FROM read_parquet(?)",
        raw, verified, verified,
    )
    if rows != raw_rows:
        problems.append(f"verified rows {rows} != raw rows {raw_rows}")
    if passed + failed != rows:
        problems.append(f"passed {passed} + failed {failed} != verified {rows}")
    if unexplained:
        problems.append(f"{unexplained} failed rows without a reason")
    if missing:
        problems.append(f"{missing} raw records missing from verified")
    if ids != rows or raw_ids != raw_rows:
        problems.append("record_id is not unique")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"raw": raw_rows, "verified": rows, "passed": passed, "failed": failed,
                  "problems": "; ".join(problems) or "none"},
    )


@dg.asset_check(asset=filtered_dataset, blocking=True, partitions_def=round_env_partitions,
                description="Filtered rows all passed and have no duplicate (env, task_id) nor canonical trajectory; "
                "kept + dropped_exact + dropped_near = the passed tasks (the dedup stage's input).")
def filtered_unique(context, settings: OrbitSettings) -> dg.AssetCheckResult:
    verified, filtered = _files(context, settings, "verified_samples", "filtered_dataset")
    problems = check_schema(pq.read_schema(filtered), FILTERED_SCHEMA)
    (passed, tasks_passed) = _scalar(
        "SELECT count(*) FILTER (WHERE passed), count(DISTINCT (env, task_id)) FILTER (WHERE passed) FROM read_parquet(?)",
        verified,
    )
    rows, keys, not_passed, trajectories, exact, near = (0, 0, 0, 0, 0, 0) if problems else _scalar(
        "SELECT count(*), count(DISTINCT (env, task_id)), count(*) FILTER (WHERE NOT passed), "
        "count(DISTINCT dedup_key), coalesce(sum(dropped_exact), 0), coalesce(sum(dropped_near), 0) "
        "FROM read_parquet(?)",
        filtered,
    )
    if rows > passed:
        problems.append(f"filtered {rows} > passed {passed}")
    if keys != rows:
        problems.append(f"{rows - keys} duplicate (env, task_id) rows")
    if trajectories != rows:
        problems.append(f"{rows - trajectories} rows repeat a canonical trajectory (dedup_key)")
    if not_passed:
        problems.append(f"{not_passed} rows that did not pass")
    if rows + exact + near != tasks_passed:
        problems.append(f"kept {rows} + dropped_exact {exact} + dropped_near {near} != passed tasks {tasks_passed}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"passed": passed, "tasks_passed": tasks_passed, "filtered": rows,
                  "duplicates_dropped": passed - tasks_passed, "dropped_exact": int(exact),
                  "dropped_near": int(near), "problems": "; ".join(problems) or "none"},
    )


@dg.asset_check(asset=training_set, blocking=True, partitions_def=round_partitions,
                description="The cumulative training set repeats no (env, task_id) and no canonical trajectory; "
                "kept + dropped_exact + dropped_near = the distinct tasks of every filtered round <= r.")
def training_set_unique(context, settings: OrbitSettings) -> dg.AssetCheckResult:
    round_key = validate_round(context.partition_key)
    path = lake.partition_file(settings.lake_path(), "training_set", round_key)
    problems = check_schema(pq.read_schema(path), FILTERED_SCHEMA)
    files = lake.asset_glob(settings.lake_path(), "filtered_dataset", 2)
    rows, keys, trajectories, exact, near = _scalar(
        "SELECT count(*), count(DISTINCT (env, task_id)), count(DISTINCT dedup_key), "
        "coalesce(sum(dropped_exact), 0), coalesce(sum(dropped_near), 0) FROM read_parquet(?)", path)
    (tasks,) = _scalar("SELECT count(DISTINCT (env, task_id)) FROM read_parquet(?, hive_partitioning = false, "
                       "union_by_name = true) WHERE round <= ?", files, round_key) if glob.glob(files) else (0,)
    if keys != rows:
        problems.append(f"{rows - keys} duplicate (env, task_id) rows")
    if trajectories != rows:
        problems.append(f"{rows - trajectories} rows repeat a canonical trajectory (dedup_key)")
    if rows + exact + near != tasks:
        problems.append(f"kept {rows} + dropped_exact {exact} + dropped_near {near} != filtered tasks {tasks}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"rows": rows, "filtered_tasks": tasks, "dropped_exact": int(exact), "dropped_near": int(near),
                  "problems": "; ".join(problems) or "none"},
    )
