"""The query side of the lake: a DuckDB file of views over the Parquet partitions.

Parquet is the truth; ``<lake>/orbit.duckdb`` holds views over the Parquet globs, so a DuckDB shell
sees every partition written since it was built. It is rebuilt into a temporary file and renamed into
place, so readers never see half a database and a reader never blocks the rebuild.

Any DuckDB, any directory:

* the file is written in DuckDB's v1.0.0 storage format (``STORAGE_VERSION``), which every DuckDB from
  1.0 on opens: the PyPI ``duckdb-cli`` (1.5.x reads storage versions 64-68) as well as the project's
  pinned ``duckdb`` 2.x (whose own default, 69, 1.x cannot open);
* the views name the lake by its absolute path, so ``duckdb <lake>/orbit.duckdb -c "select * from yields"``
  works from any working directory. The file records the place it was built for (table ``orbit_about``)
  and every view checks that it is being read from there: a copied ``orbit.duckdb`` refuses with an
  error that says how to fix it instead of silently reading the original's files. Any Orbit command
  that meets a moved or copied home (``orbit yields``, ``orbit sql``, ``open_report_db``, the
  ``yield_report`` asset) rebuilds the file for the new place (``refresh_report_db``).

Stored tables: ``orbit_about`` (one row: where and when the file was built, and what is stored) and,
for an asset with no Parquet files yet, an empty placeholder table of its schema, commented as such and
listed in ``orbit_about.placeholders``; the next rebuild (any Orbit command that sees the asset's first
files) turns it into a view. ``yields_by_round`` is a view.

An object-store lake (``s3://bucket/prefix``) has no ``orbit.duckdb``: a DuckDB shell could read its views only
with the httpfs extension and its own credentials. ``build_report_db`` then only counts, ``open_report_db``
is the in-memory ``connect``, and every connection reads the objects through the lake's s3fs file system
registered with it (``lake.duckdb_lake``; no extension is installed or loaded).
"""

from datetime import datetime, timezone
from pathlib import Path

import duckdb

from orbit.io import lake
from orbit.io.lakefs import is_remote, lake_path
from orbit.io.schema import FILTERED_SCHEMA, RECORD_SCHEMA, VERIFIED_SCHEMA
from orbit.flywheel.report import FIT_SCHEMA
from orbit.stages.yields import INDEX_ORDER, YIELD_SCHEMA, yields_table

# view name -> (asset directory, hive depth, schema used when the asset has no files yet)
VIEWS = {
    "raw_samples": ("raw_samples", 2, RECORD_SCHEMA),
    "verified_samples": ("verified_samples", 2, VERIFIED_SCHEMA),
    "filtered_dataset": ("filtered_dataset", 2, FILTERED_SCHEMA),
    "yields": ("yield_metrics", 2, YIELD_SCHEMA),
    "flywheel": ("flywheel_report", 0, FIT_SCHEMA),
}

YIELD_TABLE = "yields_by_round"
DB_NAME = "orbit.duckdb"
ABOUT_TABLE = "orbit_about"
# The oldest storage format DuckDB 1.0+ reads: the PyPI duckdb-cli 1.5.x and the pinned duckdb 2.x both open it.
STORAGE_VERSION = "v1.0.0"
ABOUT_NOTE = (
    "orbit.duckdb holds views over the Parquet files under `lake` (absolute paths): they see every partition "
    "written since `built_at`. Stored are only this row and the empty placeholder tables named in "
    "`placeholders` (assets that had no files at `built_at`; the next rebuild makes them views). Built for "
    "`database`: after moving or copying the home, run any Orbit query command on it once "
    "(ORBIT_HOME=<home> orbit yields) and the views point at the new place."
)


def _lake(lake_root: Path | str) -> Path:
    return lake_path(lake_root).resolve()


def parquet_scan(lake_root: Path | str, asset: str, depth: int = 2) -> str:
    """An absolute ``read_parquet`` of an asset (round and env are columns of the files)."""
    lake.asset_relative_glob(asset, depth)  # validates the asset name
    glob = lake.asset_glob(_lake(lake_root), asset, depth)
    return f"read_parquet({lake.sql_literal(glob)}, hive_partitioning = false)"


def use_lake(con: duckdb.DuckDBPyConnection, lake_root: Path | str) -> duckdb.DuckDBPyConnection:
    """Resolve relative paths in a user's query against ``lake_root`` (the views themselves are absolute);
    an object-store lake's file system is registered with ``con``."""
    lake.duckdb_lake(con, lake_root)
    if is_remote(lake_root):  # DuckDB's file_search_path takes local folders only
        return con
    con.execute(f"SET file_search_path = {lake.sql_literal(_lake(lake_root))}")
    return con


def _has_files(lake_root: Path, asset: str, depth: int) -> bool:
    return any((_lake(lake_root) / asset).glob("/".join(["*"] * depth + ["*.parquet"])))


def _db_paths(db_path: Path) -> list[str]:
    """The spellings of the database's path DuckDB may report in ``duckdb_databases()`` (it resolves links)."""
    return list(dict.fromkeys([str(db_path.resolve()), str(db_path.absolute())]))


def _guard(db_path: Path) -> str:
    """A condition true only in a session that opened the file at ``db_path``, else an error saying what to do."""
    paths = ", ".join(lake.sql_literal(p) for p in _db_paths(db_path))
    message = (f"this orbit.duckdb was built for {db_path.resolve()} and its views read the lake beside that file; "
               f"this is a copy or a move of it. Run an Orbit query command on this home once "
               f"(ORBIT_HOME=<home> orbit yields) to point the views here.")
    opened_here = f"(SELECT count(*) FROM duckdb_databases() WHERE path IN ({paths})) > 0"
    return f"({opened_here} OR error({lake.sql_literal(message)}))"


def _empty_table(con: duckdb.DuckDBPyConnection, name: str, schema, note: str | None = None) -> None:
    con.register(f"_{name}_empty", schema.empty_table())
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _{name}_empty")
    con.unregister(f"_{name}_empty")
    if note:
        con.execute(f"COMMENT ON TABLE {name} IS {lake.sql_literal(note)}")


def create_views(con: duckdb.DuckDBPyConnection, lake_root: Path | str, skip: tuple[str, ...] = (),
                 db_path: Path | None = None) -> list[str]:
    """The lake views (absolute globs) in ``con``'s current database; returns the views that are empty
    placeholder tables (assets without files). With ``db_path`` every view checks it is read from that file."""
    lake_root = _lake(lake_root)
    where = f" WHERE {_guard(db_path)}" if db_path else ""
    placeholders = []
    for view, (asset, depth, schema) in VIEWS.items():
        if view in skip:
            continue
        if _has_files(lake_root, asset, depth):
            scan = parquet_scan(lake_root, asset, depth)
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {scan}{where}")
        else:
            placeholders.append(view)
            _empty_table(con, view, schema, db_path and (
                f"Empty placeholder: {lake_root / asset} had no Parquet files when orbit.duckdb was built; the "
                f"next rebuild (the yield_report asset, or any Orbit query command that finds files there) makes "
                f"this a view."))
    return placeholders


def _create_yields_by_round_view(con: duckdb.DuckDBPyConnection, lake_root: Path, db_path: Path) -> bool:
    """``yields_by_round`` as a view (YIELD_SCHEMA columns, ordered env, round, 'all' first, source)."""
    asset, depth, _ = VIEWS["yields"]
    if not _has_files(lake_root, asset, depth):
        _empty_table(con, YIELD_TABLE, YIELD_SCHEMA, "Empty placeholder: no yield_metrics files when orbit.duckdb "
                     "was built; the next rebuild makes this a view.")
        return False
    cols = ", ".join(YIELD_SCHEMA.names)
    con.execute(f"CREATE OR REPLACE VIEW {YIELD_TABLE} AS SELECT {cols} FROM {parquet_scan(lake_root, asset, depth)} "
                f"WHERE {_guard(db_path)} ORDER BY {INDEX_ORDER}")
    return True


def build_report_db(lake_root: Path | str, db_path: Path | str | None = None) -> dict:
    """(Re)build ``orbit.duckdb`` for this lake at this place; returns counts of what the views see."""
    lake_root = _lake(lake_root)
    if is_remote(lake_root):
        return _remote_counts(lake_root)
    db_path = Path(db_path or lake_root / DB_NAME).absolute()
    counts = {}
    with lake.atomic_path(db_path) as tmp:
        con = duckdb.connect(config={"threads": 2})
        try:
            con.execute(f"ATTACH {lake.sql_literal(tmp)} AS orbit (STORAGE_VERSION '{STORAGE_VERSION}')")
            con.execute("USE orbit")
            placeholders = create_views(con, lake_root, db_path=db_path)
            if not _create_yields_by_round_view(con, lake_root, db_path):
                placeholders.append(YIELD_TABLE)
            con.execute(f"CREATE TABLE {ABOUT_TABLE} (lake VARCHAR, database VARCHAR, built_at TIMESTAMP, "
                        "storage_version VARCHAR, placeholders VARCHAR[], note VARCHAR)")
            con.execute(f"INSERT INTO {ABOUT_TABLE} VALUES (?, ?, ?, ?, ?, ?)",
                        [str(lake_root), str(db_path.resolve()), datetime.now(timezone.utc).replace(tzinfo=None),
                         STORAGE_VERSION, placeholders, ABOUT_NOTE])
            con.execute(f"COMMENT ON TABLE {ABOUT_TABLE} IS {lake.sql_literal(ABOUT_NOTE)}")
            for view, (asset, depth, _) in VIEWS.items():  # counted on the files: the views only answer in place
                source = view if view in placeholders else parquet_scan(lake_root, asset, depth)
                counts[view] = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
            source = "yields" if "yields" in placeholders else parquet_scan(lake_root, *VIEWS["yields"][:2])
            counts["rounds"] = con.execute(f"SELECT count(DISTINCT round) FROM {source}").fetchall()[0][0]
            con.execute("CHECKPOINT")
            con.execute("USE memory")
            con.execute("DETACH orbit")
        finally:
            con.close()
            Path(f"{tmp}.wal").unlink(missing_ok=True)
    return counts


def _remote_counts(lake_root: Path) -> dict:
    """What ``build_report_db`` counts, for an object-store lake (no database file is written there)."""
    con = lake.duckdb_lake(duckdb.connect(config={"threads": 2}), lake_root)
    try:
        counts = {}
        for view, (asset, depth, _) in VIEWS.items():
            has = _has_files(lake_root, asset, depth)
            counts[view] = con.execute(f"SELECT count(*) FROM {parquet_scan(lake_root, asset, depth)}").fetchall()[0][0] \
                if has else 0
        has = _has_files(lake_root, *VIEWS["yields"][:2])
        counts["rounds"] = con.execute(
            f"SELECT count(DISTINCT round) FROM {parquet_scan(lake_root, *VIEWS['yields'][:2])}").fetchall()[0][0] \
            if has else 0
        return counts
    finally:
        con.close()


def report_db_stale(lake_root: Path | str, db_path: Path | str | None = None) -> str | None:
    """Why the report database no longer fits this lake at this place (moved or copied home, a placeholder
    whose asset has files now, written by an older Orbit), or None when it fits, is absent or is locked."""
    lake_root = _lake(lake_root)
    if is_remote(lake_root):  # no report database on an object store
        return None
    db_path = Path(db_path or lake_root / DB_NAME)
    if not db_path.is_file():
        return None
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error:  # held read-write by a DuckDB shell, or not a database: leave it alone
        return None
    try:
        row = con.execute(f"SELECT database, placeholders FROM {ABOUT_TABLE}").fetchone()
    except duckdb.Error:  # no orbit_about (or not this one)
        return "written by an older Orbit (views relative to the lake, in a storage version DuckDB 1.x cannot read)"
    finally:
        con.close()
    if row is None:
        return "without a record of where it was built"
    built_for, placeholders = row
    if built_for not in _db_paths(db_path):
        return f"built for {built_for} (the home was moved or copied)"
    assets = [VIEWS[p] for p in placeholders or [] if p in VIEWS]
    filled = [asset for asset, depth, _ in assets if _has_files(lake_root, asset, depth)]
    if filled:
        return f"{', '.join(filled)} had no files when it was built"
    return None


def refresh_report_db(lake_root: Path | str, db_path: Path | str | None = None) -> str | None:
    """Rebuild the report database when it no longer fits (``report_db_stale``); never creates one.
    Returns a note for the user when it rebuilt or could not, else None."""
    lake_root = _lake(lake_root)
    if is_remote(lake_root):
        return None
    db_path = Path(db_path or lake_root / DB_NAME)
    reason = report_db_stale(lake_root, db_path)
    if reason is None:
        return None
    try:
        build_report_db(lake_root, db_path)
    except (OSError, duckdb.Error) as exc:
        return f"{db_path} was {reason}; could not rebuild it ({exc}): DuckDB shells opening it may fail"
    return f"rebuilt {db_path}: it was {reason}"


def open_report_db(lake_root: Path | str, db_path: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    """The report database, read-only, rebuilt first when the home was moved or copied. Where it cannot be
    rebuilt (a read-only home), or for an object-store lake, an in-memory database with the same views
    (``connect``)."""
    if is_remote(lake_root):
        return connect(lake_root)
    db_path = Path(db_path or _lake(lake_root) / DB_NAME)
    refresh_report_db(lake_root, db_path)
    if report_db_stale(lake_root, db_path):
        return connect(lake_root)
    return use_lake(duckdb.connect(str(db_path), read_only=True), lake_root)


def connect(lake_root: Path | str, views: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake views: for queries that must not touch the report file.
    With ``views=False`` it holds only ``yields_by_round`` (and ``yields`` over it): all ``orbit yields`` needs.

    The cross-round yield table comes from the lake's compact yields index (one small file, brought
    up to date by re-reading only new or changed partitions), not from a scan of every footer; it lives
    in memory for this connection only, so it never goes stale.
    """
    con = duckdb.connect(config={"threads": 2})
    use_lake(con, lake_root)
    if views:
        create_views(con, lake_root, skip=("yields",))
    _create_yield_table(con, lake_root)
    con.execute(f"CREATE OR REPLACE VIEW yields AS SELECT * FROM {YIELD_TABLE}")
    return con


def _create_yield_table(con: duckdb.DuckDBPyConnection, lake_root: Path | str) -> None:
    """``yields_by_round`` (in memory): every yield row, ordered env, round, 'all' first, source (from the index)."""
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
       tasks, tasks_solved, clean_trajectories AS clean, dropped_exact, dropped_near,
       round(attempts_per_clean, 2) AS cost_per_clean, round(g, 3) AS g
FROM {YIELD_TABLE}
"""
