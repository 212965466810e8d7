"""The query side of the lake: a DuckDB file of views over the Parquet partitions.

Parquet is the truth; ``orbit.duckdb`` only holds views over the Parquet globs
and a materialized cross-round yield table. It is rebuilt into a temporary file
and renamed into place, so readers never see half a database and a reader never
blocks the rebuild.

The views hold globs relative to the lake root (``verified_samples/*/*/*.parquet``),
never absolute paths, so a moved or copied lake reads its own files. DuckDB resolves
them against ``file_search_path``: ``connect`` and ``open_report_db`` set it to the
lake; a DuckDB shell opened inside the lake folder needs nothing
(``cd .orbit/lake && duckdb orbit.duckdb``), elsewhere ``SET file_search_path = '<lake>'``.
"""

from pathlib import Path

import duckdb

from orbit.io import lake
from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA
from orbit.flywheel.report import FIT_SCHEMA
from orbit.stages.yields import YIELD_SCHEMA, yields_table

# view name -> (asset directory, hive depth, schema used when the asset has no files yet)
VIEWS = {
    "raw_samples": ("raw_samples", 2, RECORD_SCHEMA),
    "verified_samples": ("verified_samples", 2, VERIFIED_SCHEMA),
    "filtered_dataset": ("filtered_dataset", 2, VERIFIED_SCHEMA),
    "yields": ("yield_metrics", 2, YIELD_SCHEMA),
    "flywheel": ("flywheel_report", 0, FIT_SCHEMA),
}

YIELD_TABLE = "yields_by_round"


def parquet_scan(lake_root: Path | str, asset: str, depth: int = 2) -> str:
    """A relative ``read_parquet`` of an asset (round and env are columns of the files)."""
    return f"read_parquet({lake.sql_literal(lake.asset_relative_glob(asset, depth))}, hive_partitioning = false)"


def use_lake(con: duckdb.DuckDBPyConnection, lake_root: Path | str) -> duckdb.DuckDBPyConnection:
    """Resolve the views' relative globs against ``lake_root``."""
    con.execute(f"SET file_search_path = {lake.sql_literal(Path(lake_root).resolve())}")
    return con


def _has_files(lake_root: Path, asset: str, depth: int) -> bool:
    return any(Path(lake_root, asset).glob("/".join(["*"] * depth + ["*.parquet"])))


def create_views(con: duckdb.DuckDBPyConnection, lake_root: Path | str, skip: tuple[str, ...] = ()) -> None:
    use_lake(con, lake_root)
    for view, (asset, depth, schema) in VIEWS.items():
        if view in skip:
            continue
        if _has_files(Path(lake_root), asset, depth):
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {parquet_scan(lake_root, asset, depth)}")
        else:
            con.register(f"_{view}_empty", schema.empty_table())
            con.execute(f"CREATE OR REPLACE TABLE {view} AS SELECT * FROM _{view}_empty")
            con.unregister(f"_{view}_empty")


def build_report_db(lake_root: Path | str, db_path: Path | str | None = None) -> dict:
    """(Re)build ``orbit.duckdb``; returns counts of what the views see."""
    lake_root = Path(lake_root)
    db_path = Path(db_path or lake_root / "orbit.duckdb")
    with lake.atomic_path(db_path) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            create_views(con, lake_root)
            _create_yield_table(con, lake_root)
            counts = {view: con.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0] for view in VIEWS}
            counts["rounds"] = con.execute(f"SELECT count(DISTINCT round) FROM {YIELD_TABLE}").fetchall()[0][0]
            con.execute("CHECKPOINT")
        finally:
            con.close()
            Path(f"{tmp}.wal").unlink(missing_ok=True)
    return counts


def open_report_db(lake_root: Path | str, db_path: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    """The report database, read-only, with its views resolving against ``lake_root``."""
    db_path = Path(db_path or Path(lake_root) / "orbit.duckdb")
    return use_lake(duckdb.connect(str(db_path), read_only=True), lake_root)


def connect(lake_root: Path | str, views: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake views: for queries that must not touch the report file.
    With ``views=False`` it holds only ``yields_by_round`` (and ``yields`` over it): all ``orbit yields`` needs.

    The cross-round yield table comes from the lake's compact yields index (one small file, brought
    up to date by re-reading only new or changed partitions), not from a scan of every footer.
    """
    con = duckdb.connect(config={"threads": 2})
    if views:
        create_views(con, lake_root, skip=("yields",))
    _create_yield_table(con, lake_root)
    con.execute(f"CREATE OR REPLACE VIEW yields AS SELECT * FROM {YIELD_TABLE}")
    return con


def _create_yield_table(con: duckdb.DuckDBPyConnection, lake_root: Path | str) -> None:
    """``yields_by_round``: every yield row, ordered env, round, 'all' first, source (from the index)."""
    con.register("_yields_index", yields_table(lake_root))
    con.execute(f"CREATE OR REPLACE TABLE {YIELD_TABLE} AS SELECT * FROM _yields_index")
    con.unregister("_yields_index")


FLYWHEEL_SQL = """
SELECT env, source, rounds, round(p_first, 4) AS p_first, round(p_last, 4) AS p_last, round(g, 3) AS g,
       round(g_low, 3) AS g_low, round(g_high, 3) AS g_high, constant_g_rejected AS rejected,
       round(ceiling, 3) AS ceiling, target, round(rounds_to_target, 1) AS rounds_to_target
FROM flywheel ORDER BY env
"""

FLYWHEEL_HEADLINE_SQL = "SELECT env, headline FROM flywheel ORDER BY env"

SUMMARY_SQL = f"""
SELECT round, env, source, attempts, passes, round(pass_rate, 4) AS p,
       round(pass_rate_low, 4) AS p_low, round(pass_rate_high, 4) AS p_high,
       tasks, tasks_solved, clean_trajectories AS clean,
       round(attempts_per_clean, 2) AS cost_per_clean, round(g, 3) AS g
FROM {YIELD_TABLE}
"""
