"""The lake: Parquet files, one folder level per partition dimension, written atomically.

``<lake>/<asset>/<round>/<env>/part-0.parquet`` for round x env assets (e.g.
``verified_samples/r0003/tic_tac_toe/part-0.parquet``), ``<lake>/<asset>/<round>/part-0.parquet``
for round-only assets and ``<lake>/<asset>/part-0.parquet`` for unpartitioned ones.

Folder names hold the bare partition values, not Hive's ``round=r0003``: ``round`` and ``env``
are columns of every file, and a Hive folder name would make pyarrow and pandas add a second,
dictionary-typed ``round`` ("Unable to merge: Field round has incompatible types"), while moving
the values into the path only would make Hugging Face ``datasets`` lose them. With the values in
the files and plain folder names, ``pd.read_parquet(dir)``, ``pq.read_table(dir)``,
``pl.scan_parquet(glob, hive_partitioning=True)``, ``datasets.load_dataset("parquet", data_dir=dir)``
and DuckDB's ``read_parquet(glob)`` all read an asset folder as one table. An asset folder holds
nothing but Parquet files; charts and the DuckDB file live elsewhere (``report_file``).

Every partition is one file written to a hidden temporary name and renamed into place, so a
crash never leaves half a partition and rematerializing replaces it atomically. Large partitions
are streamed row group by row group.

Paths stored inside the lake (checkpoint URIs, DuckDB views) are relative, so a moved or copied
``ORBIT_HOME`` keeps working: ``home_relative`` and ``from_home`` convert.

The lake may be an object-store prefix (``s3://bucket/prefix``, see ``orbit.io.lakefs``): the same layout,
every path an ``S3Path``. An object store has no rename, so a partition is written to a local temporary file
and uploaded in one put once it is whole (nothing is uploaded on a failure; readers see the old object or
the whole new one); reads stream it through pyarrow on a file handle, as bounded as a local file's.
DuckDB reads it through the registered s3fs file system (``duckdb_lake``), never through an extension.
"""

import atexit
import os
import re
import secrets
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from orbit.io.keys import validate_env, validate_round
from orbit.io.lakefs import S3Path, is_remote, lake_path, s3

PART_NAME = "part-0.parquet"
ASSET_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
COMPRESSION = "zstd"
# A row group of a lake file holds at least ROW_GROUP_ROWS rows: reading a file costs a fixed amount
# per column chunk (its pages, a zstd context each), which at 8,192 rows a group was most of the
# read of a verified partition's short columns. Stages still stream BATCH_ROWS rows at a time.
ROW_GROUP_ROWS = 32_768
ROW_GROUP_BYTES = 64 * 2**20  # a row group of wide rows closes at this much Arrow data (bounded memory)
BATCH_ROWS = 8192  # rows per batch a stage reads (``iter_batches``) and hands on
REMOTE_BLOCK_BYTES = 8 * 2**20  # bytes an object-store read fetches at least (one ranged GET)


def partition_dir(lake: Path | str, asset: str, round_key: str | None = None, env: str | None = None) -> Path:
    """Directory of one partition; keys are validated before the path is built."""
    if not ASSET_RE.match(asset):
        raise ValueError(f"invalid asset name {asset!r}")
    path = lake_path(lake) / asset
    if round_key is not None:
        path = path / validate_round(round_key)
    if env is not None:
        path = path / validate_env(env)
    return path


def partition_file(lake: Path | str, asset: str, round_key: str | None = None, env: str | None = None,
                   name: str = PART_NAME) -> Path:
    return partition_dir(lake, asset, round_key, env) / name


def asset_glob(lake: Path | str, asset: str, depth: int = 2, suffix: str = "parquet") -> str:
    """Glob over every partition file of an asset (``depth`` = number of hive levels)."""
    return str(lake_path(lake) / asset / Path(*(["*"] * depth)) / f"*.{suffix}") if depth else str(
        lake_path(lake) / asset / f"*.{suffix}"
    )


def glob_files(pattern: "Path | str") -> list[str]:
    """The files matching a glob (``asset_glob``), local or on the object store, sorted."""
    if is_remote(pattern):
        return [str(S3Path(f"s3://{key}")) for key in sorted(s3().glob(lake_path(pattern).key))]
    import glob

    return sorted(glob.glob(str(pattern)))


def duckdb_lake(con, *paths):
    """Let a DuckDB connection read the object-store paths among ``paths`` (an s3:// lake): the lake's s3fs file
    system is registered with it and extensions are never installed or loaded (no httpfs download at run time).
    A local path changes nothing. Returns ``con``."""
    if any(is_remote(p) for p in paths):
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        # registrations belong to the database, which a process may keep open (the filter's and the exports'):
        # one registered for an earlier endpoint or credentials is replaced by the current file system
        if "s3" in con.list_filesystems():
            con.unregister_filesystem("s3")
        con.register_filesystem(s3())
    return con


_KEPT: dict[tuple, "object"] = {}
_KEPT_LOCK = threading.Lock()


def kept_duckdb(purpose: str, threads: int = 2, memory_limit: str | None = None):
    """A cursor (a connection of its own: its temp tables are its own) to this process's DuckDB database for
    ``purpose``, opened once per process, purpose and thread count.

    Opening a DuckDB database costs 20-35 ms (its catalog), as much as a whole asset check or a partition's
    yields, so the stages and checks that run in every round x env step keep one. ``memory_limit`` caps the
    database; beyond it DuckDB spills to a directory of its own under the system temporary directory, removed
    when the database closes (at exit at the latest). A forked child opens its own."""
    import duckdb

    key = (os.getpid(), purpose, threads, memory_limit)
    with _KEPT_LOCK:
        database = _KEPT.get(key)
        if database is None:
            config = {"threads": threads}
            if memory_limit is not None:
                config["memory_limit"] = memory_limit
                config["temp_directory"] = str(Path(tempfile.gettempdir()) / (
                    f"orbit-{purpose}-{os.getpid()}-{threads}-{secrets.token_hex(4)}"))
            database = _KEPT[key] = duckdb.connect(config=config)
            atexit.register(_close_at_exit, database, os.getpid())
        return database.cursor()


def _close_at_exit(database, pid: int) -> None:
    """Close the database in the process that opened it (a forked child leaves its parent's alone)."""
    if os.getpid() == pid:
        database.close()


def asset_relative_glob(asset: str, depth: int = 2, suffix: str = "parquet") -> str:
    """``asset_glob`` relative to the lake root (for DuckDB views that must survive a moved lake)."""
    if not ASSET_RE.match(asset):
        raise ValueError(f"invalid asset name {asset!r}")
    return "/".join([asset] + ["*"] * depth + [f"*.{suffix}"])


REPORTS_DIR = "reports"


def report_file(lake: Path | str, name: str) -> Path:
    """Where a non-Parquet product of the lake (a chart, ...) lives: outside every asset folder."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
        raise ValueError(f"invalid report file name {name!r}")
    return lake_path(lake) / REPORTS_DIR / name


def home_relative(path: Path | str, home: Path | str | None = None) -> str:
    """``path`` relative to ORBIT_HOME when it lies inside it (else absolute), for storing in the lake."""
    from orbit.io.home import orbit_home

    home = Path(home).resolve() if home is not None else orbit_home()
    absolute = Path(path).resolve()
    try:
        return absolute.relative_to(home).as_posix()
    except ValueError:
        return str(absolute)


def from_home(path: Path | str, home: Path | str | None = None) -> Path:
    """A path stored by ``home_relative``, resolved against the current ORBIT_HOME."""
    from orbit.io.home import orbit_home

    path = Path(path)
    if path.is_absolute():
        return path
    return (Path(home) if home is not None else orbit_home()) / path


def sql_literal(text: "Path | str") -> str:
    """A path or string as a quoted SQL literal (for DuckDB's read_parquet)."""
    return "'" + str(text).replace("'", "''") + "'"


TMP_RE = re.compile(r"^\..+?\.(?:(\d+)\.)?[0-9a-f]{32}\.tmp$")
STALE_TMP_AGE_S = 3600


def _tmp_path(final: Path) -> Path:
    # the writer's pid is in the name, so a sweep can tell a dead writer's leftovers from a live one's
    return final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"


def sweep_stale_tmp(root: Path | str, alive=None) -> list[Path]:
    """Remove the hidden temporary files of writers that died (killed runs) under ``root``.

    A file whose writer pid is no longer alive is removed; one without a pid only when older than an hour.
    """
    import time

    if alive is None:
        from orbit.io.home import process_alive as alive
    removed = []
    if is_remote(root):  # an object store holds no temporary files: they live in the local temp dir
        return removed
    root = Path(root)
    if not root.is_dir():
        return removed
    for path in root.rglob(".*.tmp"):
        match = TMP_RE.match(path.name)
        if not match or not path.is_file():
            continue
        pid = match.group(1)
        try:
            stale = (not alive(int(pid))) if pid else time.time() - path.stat().st_mtime > STALE_TMP_AGE_S
        except OSError:
            continue
        if stale:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A hidden temporary path to write ``path`` through: fsync'd and renamed into place on success,
    removed on any failure, so readers see the old file or the whole new one.

    On an object store (no rename) the temporary file is local and is uploaded to ``path`` in one put
    once the body has finished (s3's multipart upload of a large file also becomes visible only whole);
    on a failure nothing is uploaded."""
    if is_remote(path):
        with _remote_atomic(lake_path(path)) as tmp:
            yield tmp
        return
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(final)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _remote_atomic(final: S3Path) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        s3().put_file(str(tmp), final.key)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(table: pa.Table, path: Path | str) -> Path:
    """Write one table atomically (temp file, then rename)."""
    return write_batches(table.to_batches(max_chunksize=ROW_GROUP_ROWS), table.schema, path)


def write_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path | str,
                  group_rows: int | None = None, group_bytes: int | None = None) -> Path:
    """Stream record batches into one Parquet file, then rename it into place.

    Batches are gathered into row groups of at least ``group_rows`` rows (a batch that big is a row
    group of its own), or fewer once they hold ``group_bytes`` of Arrow data. A generator hands over
    a few hundred rows at a time: one row group per batch made its files half as big again (or more)
    and two to many times slower to read, for DuckDB and pandas as much as for the next stage.
    ``group_rows`` and ``group_bytes`` default to ROW_GROUP_ROWS and ROW_GROUP_BYTES."""
    group_rows = ROW_GROUP_ROWS if group_rows is None else group_rows
    group_bytes = ROW_GROUP_BYTES if group_bytes is None else group_bytes
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression=COMPRESSION) as writer:
        wrote = False
        pending: list[pa.RecordBatch] = []
        rows = size = 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if not batch.schema.equals(schema):
                batch = pa.Table.from_batches([batch]).cast(schema).to_batches()[0]
            pending.append(batch)
            rows, size = rows + batch.num_rows, size + batch.nbytes
            if rows >= group_rows or size >= group_bytes:
                writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=rows)
                pending, rows, size, wrote = [], 0, 0, True
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=rows)
        elif not wrote:
            writer.write_table(schema.empty_table())
    return lake_path(path)


def write_text(text: str, path: Path | str) -> Path:
    """Write a text file (JSONL exports, reports) atomically."""
    return write_bytes(text.encode("utf-8"), path)


def write_bytes(data: bytes, path: Path | str) -> Path:
    """Write a file atomically: temporary name, fsync, rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return lake_path(path)


def open_input(path: Path | str):
    """A binary file handle to read ``path`` (a local file or an object, read in ranged requests)."""
    if is_remote(path):  # read ahead 8 MiB at a time (s3fs' default, 50 MiB, would hold that much per open file)
        return s3().open(lake_path(path).key, "rb", block_size=REMOTE_BLOCK_BYTES, cache_type="readahead")
    return open(path, "rb")


def parquet_file(path: Path | str, **kwargs) -> pq.ParquetFile:
    """``pq.ParquetFile`` of a lake file, local or on the object store (a file handle there: row groups
    and columns are fetched as read, so memory stays bounded as for a local file)."""
    if is_remote(path):
        return pq.ParquetFile(open_input(path), **kwargs)
    return pq.ParquetFile(path, **kwargs)


def read_schema(path: Path | str) -> pa.Schema:
    if is_remote(path):
        with open_input(path) as fh:
            return pq.read_schema(fh)
    return pq.read_schema(path)


def read_table(path: Path | str, columns: list[str] | None = None) -> pa.Table:
    if is_remote(path):
        with open_input(path) as fh:
            return pq.read_table(fh, columns=columns)
    return pq.read_table(path, columns=columns)


def iter_batches(path: Path | str, batch_size: int = BATCH_ROWS, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream a partition file batch by batch (bounded memory)."""
    if is_remote(path):
        with open_input(path) as fh:
            yield from pq.ParquetFile(fh).iter_batches(batch_size=batch_size, columns=columns)
        return
    pf = pq.ParquetFile(path)
    yield from pf.iter_batches(batch_size=batch_size, columns=columns)


def row_count(path: Path | str) -> int:
    if is_remote(path):
        with open_input(path) as fh:
            return pq.ParquetFile(fh).metadata.num_rows
    return pq.ParquetFile(path).metadata.num_rows


class ArrowStream:
    """Record batches to be written as one partition, plus what to report once they are written.

    ``summary`` is called after the last batch has been consumed, so counts
    gathered while streaming (kept, failed, reasons) are complete when read.
    """

    def __init__(self, schema: pa.Schema, batches: Iterable[pa.RecordBatch], summary=None):
        self.schema = schema
        self.batches = batches
        self.summary = summary or (lambda: {})
        self.rows = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self.batches:
            self.rows += batch.num_rows
            yield batch
