"""Yield: the pass rate p per round and env, the system's fundamental metric.

Cost per clean trajectory is 1/p; the flywheel multiplies the odds p/(1-p) by g
each round. Metrics are computed in DuckDB over one partition's verified and
filtered files, overall (source 'all') and per source.
"""

import math
from pathlib import Path

import duckdb
import pyarrow as pa

Z95 = 1.959963984540054

YIELD_SCHEMA = pa.schema(
    [
        ("round", pa.string()),
        ("env", pa.string()),
        ("source", pa.string()),
        ("attempts", pa.int64()),
        ("passes", pa.int64()),
        ("pass_rate", pa.float64()),
        ("pass_rate_low", pa.float64()),
        ("pass_rate_high", pa.float64()),
        ("tasks", pa.int64()),
        ("tasks_solved", pa.int64()),
        ("samples_per_task", pa.float64()),
        ("coverage_observed", pa.float64()),
        ("coverage_predicted", pa.float64()),
        ("clean_trajectories", pa.int64()),
        ("passes_per_clean", pa.float64()),
        ("attempts_per_clean", pa.float64()),
        ("attempts_per_solved_task", pa.float64()),
        ("budget", pa.int64()),
        ("odds", pa.float64()),
        ("g", pa.float64()),
        # accounting of the policy calls behind the records (null for sources without calls):
        # metadata.usage summed; seconds = the partition's sampling wall time (metadata.sampling.seconds)
        ("requests", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("seconds", pa.float64()),
        ("requests_per_s", pa.float64()),
        ("tokens_per_s", pa.float64()),
        ("cost", pa.float64()),
        # the filter's dedup stage (orbit.stages.dedup): task winners dropped as exact copies of a better
        # row's canonical trajectory, and as near duplicates (MinHash LSH) of one; by the kept row's source
        ("dropped_exact", pa.int64()),
        ("dropped_near", pa.int64()),
    ]
)


def wilson_interval(passes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """95% Wilson score interval of a binomial proportion, within [0, 1] exactly.

    No attempts: (None, None). At p = 0 the lower bound is exactly 0.0 and at p = 1 the
    upper bound exactly 1.0 (floating point would leave 1e-17 or 0.9999999999999999), and
    the bounds always hold p: low <= p <= high.
    """
    if n <= 0:
        return None, None
    passes = min(max(passes, 0), n)
    p = passes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if passes == 0 else min(max(0.0, center - half), p)
    high = 1.0 if passes == n else max(min(1.0, center + half), p)
    return low, high


def odds(p: float | None) -> float | None:
    """p / (1 - p); undefined (None) at p = 1 or without data."""
    if p is None or p >= 1.0:
        return None
    return p / (1.0 - p)


def odds_ratio(current: float | None, previous: float | None) -> float | None:
    """g: this round's odds over the previous round's; None where either is undefined or zero."""
    if current is None or previous is None or previous == 0:
        return None
    return current / previous


HEADLINE_SOURCE = "policy"
# The headline p of a round x env: the policy's own samples where the partition has them, else every source
# ('all'). One rule for the UI's metadata and plots, `orbit yields`, `make run` and the flywheel report.
HEADLINE_QUALIFY = ("QUALIFY source = CASE WHEN bool_or(source = 'policy') OVER (PARTITION BY round, env) "
                    "THEN 'policy' ELSE 'all' END")


def headline_row(rows: "list[dict]") -> "dict | None":
    """The headline yield row of one partition's yield rows (``HEADLINE_SOURCE`` if present, else 'all')."""
    by_source = {r.get("source"): r for r in rows}
    return by_source.get(HEADLINE_SOURCE) or by_source.get("all")


def best_of_n_coverage(p: float, n: int) -> float:
    """Probability that N samples at pass rate p contain at least one pass: 1-(1-p)^N."""
    return 1.0 - (1.0 - p) ** n


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def partition_yields(verified_path: Path | str, filtered_path: Path | str, round_key: str, env: str,
                     previous_odds: dict[str, float | None] | None = None) -> pa.Table:
    """Yield rows (source 'all' first, then each source) for one round x env partition."""
    from orbit.io.lake import duckdb_lake, kept_duckdb

    con = duckdb_lake(kept_duckdb("yields"), verified_path, filtered_path)
    try:
        con.execute(
            "CREATE TEMP TABLE per_task AS "
            "SELECT source, task_id, count(*)::BIGINT AS n, count(*) FILTER (WHERE passed)::BIGINT AS passes "
            "FROM read_parquet(?) GROUP BY source, task_id",
            [str(verified_path)],
        )
        con.execute("INSERT INTO per_task SELECT 'all', task_id, sum(n), sum(passes) FROM per_task GROUP BY task_id")
        stats = con.execute(
            "SELECT source, sum(n), sum(passes), count(*), count(*) FILTER (WHERE passes > 0), avg(n) "
            "FROM per_task GROUP BY source ORDER BY source <> 'all', source"
        ).fetchall()
        clean = dict(
            con.execute(
                "SELECT source, count(*) FROM read_parquet(?) GROUP BY source "
                "UNION ALL SELECT 'all', count(*) FROM read_parquet(?)",
                [str(filtered_path), str(filtered_path)],
            ).fetchall()
        )
        dropped = _dropped(con, filtered_path)
        budgets = dict(
            con.execute(
                "SELECT source, max(TRY_CAST(json_extract(metadata, '$.sampling.budget') AS BIGINT)) "
                "FROM read_parquet(?) GROUP BY source",
                [str(verified_path)],
            ).fetchall()
        )
        budgets["all"] = sum(b for b in budgets.values() if b) or None
        usage = {row[0]: row[1:] for row in con.execute(
            "WITH u AS (SELECT source, TRY_CAST(json_extract(metadata, '$.usage.calls') AS BIGINT) AS calls, "
            "TRY_CAST(json_extract(metadata, '$.usage.prompt_tokens') AS BIGINT) AS pt, "
            "TRY_CAST(json_extract(metadata, '$.usage.completion_tokens') AS BIGINT) AS ct, "
            "TRY_CAST(json_extract(metadata, '$.usage.cost') AS DOUBLE) AS cost, "
            "TRY_CAST(json_extract(metadata, '$.sampling.seconds') AS DOUBLE) AS s FROM read_parquet(?)) "
            "SELECT source, sum(calls), sum(pt), sum(ct), max(s), sum(cost) FROM u GROUP BY source "
            "UNION ALL SELECT 'all', sum(calls), sum(pt), sum(ct), max(s), sum(cost) FROM u",
            [str(verified_path)]).fetchall()}
        rows = []
        for source, attempts, passes, tasks, solved, mean_n in stats:
            p = passes / attempts if attempts else None
            coverage_predicted = None
            if p is not None:
                # mean over tasks of 1 - (1 - p)^n, from the exact count of tasks per n in a fixed order: a
                # DuckDB avg() of doubles adds in whatever order its threads finish (last bits vary per run)
                per_n = con.execute("SELECT n, count(*) FROM per_task WHERE source = ? GROUP BY n ORDER BY n",
                                    [source]).fetchall()
                total = sum(count for _, count in per_n)
                coverage_predicted = (sum(count * (1 - (1 - p) ** n) for n, count in per_n) / total
                                      if total else None)
            low, high = wilson_interval(passes, attempts)
            o = odds(p)
            n_clean = int(clean.get(source, 0))
            rows.append(
                {
                    "round": round_key, "env": env, "source": source,
                    "attempts": attempts, "passes": passes, "pass_rate": p,
                    "pass_rate_low": low, "pass_rate_high": high,
                    "tasks": tasks, "tasks_solved": solved, "samples_per_task": mean_n,
                    "coverage_observed": _ratio(solved, tasks), "coverage_predicted": coverage_predicted,
                    "clean_trajectories": n_clean,
                    "passes_per_clean": _ratio(passes, n_clean), "attempts_per_clean": _ratio(attempts, n_clean),
                    "attempts_per_solved_task": _ratio(attempts, solved),
                    "budget": budgets.get(source),
                    "odds": o, "g": odds_ratio(o, (previous_odds or {}).get(source)),
                    **_accounting(*usage.get(source, (None,) * 5)),
                    **dropped.get(source, {"dropped_exact": 0, "dropped_near": 0} if "all" in dropped else {}),
                }
            )
    finally:
        con.close()
    return pa.Table.from_pylist(rows, schema=YIELD_SCHEMA)


def _dropped(con: duckdb.DuckDBPyConnection, filtered_path: Path | str) -> dict[str, dict]:
    """Per source (and 'all'): the rows the filtered file's kept rows absorbed as exact and near duplicates
    (the sums of its ``dropped_exact`` / ``dropped_near`` columns). Empty for a file written before the
    dedup stage (the yields then hold nulls)."""
    from orbit.io.lake import read_schema

    if not {"dropped_exact", "dropped_near"} <= set(read_schema(filtered_path).names):
        return {}
    rows = con.execute(
        "SELECT source, coalesce(sum(dropped_exact), 0)::BIGINT, coalesce(sum(dropped_near), 0)::BIGINT "
        "FROM read_parquet(?) GROUP BY source UNION ALL "
        "SELECT 'all', coalesce(sum(dropped_exact), 0)::BIGINT, coalesce(sum(dropped_near), 0)::BIGINT FROM read_parquet(?)",
        [str(filtered_path), str(filtered_path)]).fetchall()
    return {source: {"dropped_exact": e, "dropped_near": n} for source, e, n in rows}


def _accounting(requests, prompt_tokens, completion_tokens, seconds, cost) -> dict:
    return {"requests": requests, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "seconds": seconds, "requests_per_s": _ratio(requests or 0, seconds) if requests else None,
            "tokens_per_s": _ratio(completion_tokens or 0, seconds) if completion_tokens else None, "cost": cost}


def markdown_table(table: pa.Table, columns: list[str]) -> str:
    def fmt(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table.select(columns).to_pylist():
        lines.append("| " + " | ".join(fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


# --- The compact cross-round yields table -------------------------------------------------------
#
# ``<lake>/yields_index/part-0.parquet`` holds every ``yield_metrics`` partition's rows in one small
# file, in report order, with the (size, mtime, inode) of the partition file each row came from.
# Readers stat the partition files (no Parquet footer is opened) and re-read only the files that
# are new or changed since the index was written; files that disappeared drop out. The index is
# rewritten atomically under a lock whenever it is out of date, by ``yield_report`` and by any
# query that finds it stale, so it is always the same rows a scan of every file would give.

YIELDS_ASSET = "yield_metrics"
INDEX_ASSET = "yields_index"
INDEX_ORDER = "env, round, source <> 'all', source"
_STAT_FIELDS = [("file", pa.string()), ("file_size", pa.int64()), ("file_mtime_ns", pa.int64()),
                ("file_ino", pa.int64())]
INDEX_SCHEMA = pa.schema(list(YIELD_SCHEMA) + [pa.field(n, t) for n, t in _STAT_FIELDS])


def index_file(lake_root: Path | str) -> Path:
    from orbit.io.lakefs import lake_path

    return lake_path(lake_root) / INDEX_ASSET / "part-0.parquet"


def yield_files(lake_root: Path | str) -> dict[str, tuple[int, int, int]]:
    """Every ``yield_metrics`` partition file (``<asset>/*/*/*.parquet``, as the views glob it), keyed by
    its path relative to the asset directory, with its (size, mtime_ns, inode); on an object store
    (size, LastModified, a hash of the ETag): one listing of the asset's prefix."""
    import os

    from orbit.io.lakefs import is_remote, lake_path, s3, stat_of

    base = lake_path(lake_root) / YIELDS_ASSET
    found: dict[str, tuple[int, int, int]] = {}
    if is_remote(base):
        for key, info in s3().find(base.key, detail=True).items():
            rel = key[len(base.key):].strip("/").split("/")
            if len(rel) == 3 and rel[2].endswith(".parquet") and not any(p.startswith(".") for p in rel):
                st = stat_of(info)
                found["/".join(rel)] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return found
    try:
        level1 = list(os.scandir(base))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for d1 in level1:
        if not d1.is_dir() or d1.name.startswith("."):
            continue
        try:
            level2 = list(os.scandir(d1.path))
        except OSError:
            continue
        for d2 in level2:
            if not d2.is_dir() or d2.name.startswith("."):
                continue
            try:
                entries = list(os.scandir(d2.path))
            except OSError:
                continue
            for f in entries:
                if f.name.endswith(".parquet") and not f.name.startswith("."):
                    try:
                        st = f.stat()
                    except OSError:
                        continue
                    found[f"{d1.name}/{d2.name}/{f.name}"] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def _read_index(path: Path) -> pa.Table | None:
    from orbit.io.lake import parquet_file

    try:
        table = parquet_file(path).read()
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return None
    return table if table.schema.equals(INDEX_SCHEMA) else None


def _index_stats(index: pa.Table | None) -> dict[str, tuple[int, int, int]]:
    if index is None or index.num_rows == 0:
        return {}
    cols = [index.column(n).to_pylist() for n, _ in _STAT_FIELDS]
    return {f: (s, m, i) for f, s, m, i in zip(*cols)}


def _refreshed(lake_root: Path, index: pa.Table | None) -> tuple[pa.Table, bool]:
    """(the index brought up to date with the files on disk, whether it changed).

    Rows of unchanged files are kept from the index; new or changed files are read exactly as the
    ``yields`` view reads them (round and env are columns of the files), in one DuckDB query.
    """
    from orbit.io import lake

    on_disk = yield_files(lake_root)
    known = _index_stats(index)
    if known == on_disk and (index is not None or not on_disk):
        return (index if index is not None else INDEX_SCHEMA.empty_table()), False
    fresh = {f: st for f, st in on_disk.items() if known.get(f) != st}
    keep = {f for f in on_disk if f not in fresh}
    base = lake.lake_path(lake_root) / YIELDS_ASSET
    con = duckdb.connect(config={"threads": 2})
    fetched = None
    try:
        con.register("_index", index if index is not None else INDEX_SCHEMA.empty_table())
        con.register("_keep", pa.table({"file": pa.array(sorted(keep), pa.string())}))
        parts = ["SELECT * FROM _index WHERE file IN (SELECT file FROM _keep)"]
        if fresh:
            names = sorted(fresh)
            where = {f: base / f for f in names}
            if lake.is_remote(base):  # small objects: fetched whole and at once, then read as local files are
                import tempfile

                fetched = tempfile.TemporaryDirectory(prefix="orbit-yields-")
                where = {f: Path(fetched.name) / f"{i}.parquet" for i, f in enumerate(names)}
                lake.s3().get([(base / f).key for f in names], [str(where[f]) for f in names])
            con.register("_stats", pa.table({
                "path": [str(where[f]) for f in names], "file": names,
                "file_size": [fresh[f][0] for f in names], "file_mtime_ns": [fresh[f][1] for f in names],
                "file_ino": [fresh[f][2] for f in names],
            }))
            paths = "[" + ", ".join(lake.sql_literal(where[f]) for f in names) + "]"
            cols = ", ".join(f"y.{c}" for c in YIELD_SCHEMA.names)
            parts.append(
                f"SELECT {cols}, s.file, s.file_size, s.file_mtime_ns, s.file_ino "
                f"FROM read_parquet({paths}, hive_partitioning = false, filename = '__path') y "
                "JOIN _stats s ON y.__path = s.path"
            )
        table = con.sql(f"SELECT * FROM ({' UNION ALL '.join(parts)}) ORDER BY {INDEX_ORDER}, file").to_arrow_table()
    finally:
        con.close()
        if fetched is not None:
            fetched.cleanup()
    return table.cast(INDEX_SCHEMA), True


def refresh_yields_index(lake_root: Path | str, write: bool = True) -> pa.Table:
    """The compact yields table (INDEX_SCHEMA), up to date with the ``yield_metrics`` files.

    Only new or changed partition files are read. When the stored index was stale and ``write`` is
    set, it is rewritten atomically under an exclusive lock (concurrent refreshers re-check inside
    the lock, so none loses another's update); a read-only lake just gets the fresh table.
    """
    from orbit.io import lake
    from orbit.io.locks import locked

    lake_root = lake.lake_path(lake_root)
    path = index_file(lake_root)
    table, changed = _refreshed(lake_root, _read_index(path))
    if not changed or not write:
        return table
    try:
        with locked(path.parent / ".lock"):
            table, changed = _refreshed(lake_root, _read_index(path))
            if changed:
                lake.write_table(table, path)
    except OSError:  # a read-only lake (EROFS, EACCES) or a bad lock path: the fresh table, kept in memory
        pass
    return table


def yields_table(lake_root: Path | str, write: bool = True) -> pa.Table:
    """Every yield row of the lake (YIELD_SCHEMA), ordered env, round, 'all' first, source."""
    return refresh_yields_index(lake_root, write).select(YIELD_SCHEMA.names)
