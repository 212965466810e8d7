"""Asset checks: counts add up at every stage, schemas hold, no duplicate task or trajectory survives.

Each runs inside its asset's step, right after the partition file is written (``check_specs`` on the asset,
which yields its output and then the check's result): one step per stage instead of two, fewer events per run.
They read the partition files with DuckDB (one database kept per process); a failure fails the step and blocks downstream stages.
"""

from pathlib import Path

import dagster as dg

from orbit.io import lake
from orbit.io.keys import validate_round
from orbit.io.schema import FILTERED_SCHEMA, RECORD_SCHEMA, VERIFIED_SCHEMA, check_schema
from orbit_assets.partitions import round_env_partitions, round_partitions


def _spec(name: str, asset: str, partitions_def, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, partitions_def=partitions_def, description=description)


RAW_SAMPLES_SCHEMA = _spec("raw_samples_schema", "raw_samples", round_env_partitions,
                           "raw_samples has the record schema.")
VERIFIED_CONSERVATION = _spec(
    "verified_conservation", "verified_samples", round_env_partitions,
    "Every raw row is verified exactly once; passed + failed = verified; every failure names a reason.")
FILTERED_UNIQUE = _spec(
    "filtered_unique", "filtered_dataset", round_env_partitions,
    "Filtered rows all passed and have no duplicate (env, task_id) nor canonical trajectory; "
    "kept + dropped_exact + dropped_near = the passed tasks (the dedup stage's input).")
TRAINING_SET_UNIQUE = _spec(
    "training_set_unique", "training_set", round_partitions,
    "The cumulative training set repeats no (env, task_id) and no canonical trajectory; "
    "kept + dropped_exact + dropped_near = the distinct tasks of every filtered round <= r.")


def _result(spec: dg.AssetCheckSpec, passed: bool, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, asset_key=spec.asset_key, check_name=spec.name, metadata=metadata)


def _files(lake_root: Path, round_key: str, env: str, *assets: str) -> list[Path]:
    return [lake.partition_file(lake_root, a, round_key, env) for a in assets]


def _scalar(sql: str, *params) -> tuple:
    # a cursor of the process's kept database (a new one costs more than the check), which reads an
    # object-store lake through its registered file system
    con = lake.duckdb_lake(lake.kept_duckdb("checks"), *params)
    try:
        return con.execute(sql, [str(p) for p in params]).fetchall()[0]
    finally:
        con.close()


def raw_samples_schema(lake_root: Path, round_key: str, env: str) -> dg.AssetCheckResult:
    (path,) = _files(lake_root, round_key, env, "raw_samples")
    problems = check_schema(lake.read_schema(path), RECORD_SCHEMA)
    return _result(RAW_SAMPLES_SCHEMA, not problems, {"problems": "; ".join(problems) or "none"})


def verified_conservation(lake_root: Path, round_key: str, env: str) -> dg.AssetCheckResult:
    raw, verified = _files(lake_root, round_key, env, "raw_samples", "verified_samples")
    problems = check_schema(lake.read_schema(verified), VERIFIED_SCHEMA)
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
    return _result(
        VERIFIED_CONSERVATION, not problems,
        {"raw": raw_rows, "verified": rows, "passed": passed, "failed": failed,
                  "problems": "; ".join(problems) or "none"},
    )


def filtered_unique(lake_root: Path, round_key: str, env: str) -> dg.AssetCheckResult:
    verified, filtered = _files(lake_root, round_key, env, "verified_samples", "filtered_dataset")
    problems = check_schema(lake.read_schema(filtered), FILTERED_SCHEMA)
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
    return _result(
        FILTERED_UNIQUE, not problems,
        {"passed": passed, "tasks_passed": tasks_passed, "filtered": rows,
                  "duplicates_dropped": passed - tasks_passed, "dropped_exact": int(exact),
                  "dropped_near": int(near), "problems": "; ".join(problems) or "none"},
    )


def training_set_unique(lake_root: Path, round_key: str) -> dg.AssetCheckResult:
    round_key = validate_round(round_key)
    path = lake.partition_file(lake_root, "training_set", round_key)
    problems = check_schema(lake.read_schema(path), FILTERED_SCHEMA)
    files = lake.asset_glob(lake_root, "filtered_dataset", 2)
    rows, keys, trajectories, exact, near = _scalar(
        "SELECT count(*), count(DISTINCT (env, task_id)), count(DISTINCT dedup_key), "
        "coalesce(sum(dropped_exact), 0), coalesce(sum(dropped_near), 0) FROM read_parquet(?)", path)
    (tasks,) = _scalar("SELECT count(DISTINCT (env, task_id)) FROM read_parquet(?, hive_partitioning = false, "
                       "union_by_name = true) WHERE round <= ?", files, round_key) if lake.glob_files(files) else (0,)
    if keys != rows:
        problems.append(f"{rows - keys} duplicate (env, task_id) rows")
    if trajectories != rows:
        problems.append(f"{rows - trajectories} rows repeat a canonical trajectory (dedup_key)")
    if rows + exact + near != tasks:
        problems.append(f"kept {rows} + dropped_exact {exact} + dropped_near {near} != filtered tasks {tasks}")
    return _result(
        TRAINING_SET_UNIQUE, not problems,
        {"rows": rows, "filtered_tasks": tasks, "dropped_exact": int(exact), "dropped_near": int(near),
                  "problems": "; ".join(problems) or "none"},
    )
