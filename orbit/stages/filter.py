"""The filter stage: passed rows, one per (env, task_id), best first; then one per trajectory.

Vectorised over the verified Parquet file. A file that decodes to at most IN_MEMORY_BYTES is
read once (strings as dictionaries), ranked in memory and its winners gathered from that read;
a larger one is ranked on one narrow scan (DuckDB) and only its winning rows are read again and
streamed out in order, so memory stays flat. Both give the same file. Ties are broken
deterministically: score desc, shorter trajectory (fewer messages), record_id.
The task winners then go through the dedup stage (``orbit.stages.dedup``): exact duplicates by
canonical trajectory and near duplicates by MinHash LSH, the best of each cluster kept.
Every input row is accounted for: kept, failed verification, dropped as a duplicate of a better
row of the same task, or dropped as an exact or near duplicate of a better trajectory.
"""

import collections
import itertools
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orbit.io import lake
from orbit.io.schema import FILTERED_SCHEMA, VERIFIED_SCHEMA
from orbit.stages.dedup import PARAMS, DedupParams, PartitionDedup, dedup_table, ranking

BATCH_ROWS = lake.BATCH_ROWS  # winners per output batch

RANKING = "score DESC, len(messages) ASC, record_id ASC"
RANKING_KEY = "(-score, len(messages), record_id)"  # the same order as one comparable key (verified scores are never null)


@dataclass
class FilterCounts:
    """rows_in = failed + duplicates (of a better row of the same task) + candidates (one per task);
    candidates = kept + dropped_exact + dropped_near (the dedup stage)."""
    rows_in: int
    failed: int
    duplicates: int
    kept: int
    candidates: int = 0
    dropped_exact: int = 0
    dropped_near: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def best_per_task_sql(source: str) -> str:
    """SELECT of the best passed row per (env, task_id) from a relation or read_parquet() call."""
    return (
        f"SELECT * FROM {source} WHERE passed "
        f"QUALIFY row_number() OVER (PARTITION BY env, task_id ORDER BY {RANKING}) = 1 "
        "ORDER BY env, task_id"
    )


NARROW = ["env", "task_id", "score", "passed", "record_id"]
RANK_BATCH_ROWS = 65_536  # narrow rows per batch streamed into the ranking
RANK_MEMORY = "384MB"  # DuckDB's cap while ranking; beyond it the aggregation spills to disk
MEMORY_ROWS = 65_536  # winners held in memory up to this many (one bucket); beyond, they go through spill buckets
BUCKET_ROWS = 65_536  # output positions per spill bucket (one bucket is in memory at a time)
IN_MEMORY_BYTES = 128 * 2**20  # a file whose row groups hold at most this many uncompressed bytes is read once


def _leaf_chunks(pf: pq.ParquetFile) -> Iterator[tuple[str, str, list]]:
    """Every Parquet leaf of the file: (its path, its physical type, its column chunks' metadata)."""
    meta = pf.metadata
    for i in range(len(pf.schema)):
        column = pf.schema.column(i)
        yield column.path, column.physical_type, [meta.row_group(g).column(i) for g in range(meta.num_row_groups)]


def _message_field(path: str) -> str | None:
    """The message field a leaf directly under ``messages`` holds (``role``, ``tool_call_id``...), else None."""
    return path.rsplit(".", 1)[1] if path.startswith("messages.") and path.count(".") == 3 else None


def _message_count_column(pf: pq.ParquetFile) -> str:
    """The cheapest Parquet leaf directly under a message (usually an all-null one such as
    tool_call_id): its list lengths are len(messages), read without any message content."""
    sizes = {path: sum(c.total_compressed_size for c in chunks)
             for path, _, chunks in _leaf_chunks(pf) if _message_field(path)}
    return min(sizes, key=lambda p: (sizes[p], p)) if sizes else "messages"


def rank_file(path: Path | str, threads: int = 2) -> tuple[int, int, np.ndarray, np.ndarray]:
    """One narrow scan: (rows, passed rows, file row numbers of the winners in output order, the
    winners' ranks).

    Only env, task_id, score, passed, record_id and one leaf of ``messages`` are read (never the
    message contents), streamed batch by batch into DuckDB; the winner of each (env, task_id) is the
    passed row with the least RANKING_KEY. DuckDB's memory is capped (it spills to a temporary
    directory beyond RANK_MEMORY), so memory stays flat in the partition size.
    """
    pf = lake.parquet_file(path, read_dictionary=["env", "task_id"])  # grouped on, never copied as strings
    columns = NARROW + [_message_count_column(pf)]
    seen = {"rows": 0, "passed": 0}
    schema = pa.schema([pf.schema_arrow.field(c) for c in NARROW]).append(pa.field("n_msgs", pa.int64()))
    schema = pa.schema([f.with_type(pa.dictionary(pa.int32(), pa.string())) if f.name in ("env", "task_id") else f
                        for f in schema]).append(pa.field("rn", pa.int64()))

    def narrow_batches():
        for batch in pf.iter_batches(batch_size=RANK_BATCH_ROWS, columns=columns, use_threads=threads > 1):
            start = seen["rows"]
            seen["rows"] += batch.num_rows
            seen["passed"] += pc.sum(batch.column("passed")).as_py() or 0
            n_msgs = pc.list_value_length(batch.column("messages")).cast(pa.int64())
            arrays = [batch.column(c) for c in NARROW] + [n_msgs,
                                                          pa.array(np.arange(start, seen["rows"], dtype=np.int64))]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    winners, ranks = _rank(pa.RecordBatchReader.from_batches(schema, narrow_batches()), threads)
    return seen["rows"], seen["passed"], winners, ranks


def _database(threads: int) -> duckdb.DuckDBPyConnection:
    """A cursor of this process's filtering database (``lake.kept_duckdb``), its memory capped at RANK_MEMORY:
    beyond it, DuckDB spills to a directory of its own under the system temporary directory."""
    return lake.kept_duckdb("rank", threads, RANK_MEMORY)


def _rank(narrow: pa.Table | pa.RecordBatchReader, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """File row numbers (``rn``) of the winners in output order, and each winner's place in the
    ranking among the winners (0 = the best: what the dedup stage keeps of a cluster), from the narrow
    columns (NARROW, ``n_msgs`` = len(messages), ``rn``). DuckDB's memory is capped: beyond
    RANK_MEMORY the aggregation spills to disk."""
    key = RANKING_KEY.replace("len(messages)", "n_msgs")
    con = _database(threads)
    try:
        con.register("narrow", narrow)
        winners = con.sql(f"SELECT rn, row_number() OVER (ORDER BY k) - 1 AS rank FROM ("
                          f"SELECT arg_min(rn, {key}) AS rn, min({key}) AS k, env, task_id FROM narrow WHERE passed "
                          "GROUP BY env, task_id) ORDER BY env, task_id").to_arrow_table()
    finally:
        con.close()
    return (winners.column("rn").to_numpy().astype(np.int64, copy=False),
            winners.column("rank").to_numpy().astype(np.int64, copy=False))


class _Buckets:
    """Winner rows by output position: in memory when few, else spilled to Arrow IPC files by position
    range, so only one bucket is ever held in memory while the output is streamed in order."""

    def __init__(self, total: int, schema: pa.Schema, batch_rows: int):
        """``schema``: the winner rows' schema, with their output position in ``__pos``."""
        # a bucket holds whole output batches, so the batches (row groups) do not depend on spilling
        self.size = total if total <= MEMORY_ROWS else -(-BUCKET_ROWS // batch_rows) * batch_rows
        self.batch_rows = batch_rows
        self.count = max(1, -(-total // max(1, self.size)))
        self.schema = schema
        self.parts: list[list[pa.RecordBatch]] = [[] for _ in range(self.count)]
        self.tmp = tempfile.TemporaryDirectory(prefix="orbit-filter-") if self.count > 1 else None
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}

    def add(self, rows: pa.RecordBatch) -> None:
        if self.tmp is None:
            self.parts[0].append(rows)
            return
        ids = rows.column("__pos").to_numpy() // self.size
        order = np.argsort(ids, kind="stable")
        ids_sorted = ids[order]
        bounds = np.flatnonzero(np.diff(ids_sorted)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(order)]):
            b = int(ids_sorted[lo])
            part = rows.take(pa.array(order[lo:hi]))
            writer = self.writers.get(b)
            if writer is None:
                writer = self.writers[b] = pa.ipc.new_file(Path(self.tmp.name) / f"{b}.arrow", self.schema)
            writer.write(part)

    def ordered(self) -> Iterator[pa.Table]:
        """The winners in output order, ``batch_rows`` at a time."""
        try:
            for w in self.writers.values():
                w.close()
            for b in range(self.count):
                if self.tmp is None:
                    table = pa.Table.from_batches(self.parts[0], self.schema)
                    self.parts[0] = []
                else:
                    path = Path(self.tmp.name) / f"{b}.arrow"
                    if not path.exists():
                        continue
                    with pa.memory_map(str(path)) as source:
                        table = pa.ipc.open_file(source).read_all()
                pos = table.column("__pos").to_numpy() - b * self.size
                idx = np.empty(len(pos), dtype=np.int64)
                idx[pos] = np.arange(len(pos), dtype=np.int64)
                table = table.drop_columns(["__pos"]).take(pa.array(idx)).combine_chunks()
                yield from (pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=self.batch_rows))
                del table
                if self.tmp is not None:
                    path.unlink()
        finally:
            if self.tmp is not None:
                self.tmp.cleanup()


def fits_in_memory(path: Path | str) -> bool:
    """Whether the file's row groups hold at most IN_MEMORY_BYTES uncompressed (read once, then)."""
    meta = lake.parquet_file(path).metadata
    return sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)) <= IN_MEMORY_BYTES


def _dictionary_leaves(pf: pq.ParquetFile, leaf_chunks: list | None = None) -> list[str]:
    """The string leaves (top-level strings, message roles and texts) worth reading as dictionaries:
    those whose values repeat, i.e. whose dictionary pages hold at most half of their bytes. Only
    their indices are then decoded for every row; strings are made for the winners alone.
    ``leaf_chunks``: ``_leaf_chunks(pf)`` when the caller has walked it already."""
    leaves = []
    for path, physical_type, chunks in leaf_chunks if leaf_chunks is not None else _leaf_chunks(pf):
        if physical_type != "BYTE_ARRAY" or not ("." not in path or _message_field(path) in ("role", "content")):
            continue
        total = sum(c.total_compressed_size for c in chunks)
        dictionary = sum(c.data_page_offset - c.dictionary_page_offset
                         if c.has_dictionary_page and c.dictionary_page_offset is not None
                         else c.total_compressed_size for c in chunks)
        if dictionary * 2 <= total:
            leaves.append(path)
    return leaves


def _empty_leaves(pf: pq.ParquetFile, leaf_chunks: list | None = None) -> set[str]:
    """The nested leaves that hold no value in any row group (their statistics count every entry
    as null) and that need not be read: the first leaf under every struct and list is always read,
    since its levels carry that group's validity and lengths; another leaf of the same groups that
    is empty everywhere (a tool call's type, a message's tool_call_id in plain chat) is made as
    nulls instead. A file without null counts in its statistics has every leaf read.
    ``leaf_chunks``: ``_leaf_chunks(pf)`` when the caller has walked it already."""
    if not _lists_and_structs(pa.struct(list(pf.schema_arrow))):
        return set()
    seen: set[str] = set()
    empty = set()
    for path, _, chunks in leaf_chunks if leaf_chunks is not None else _leaf_chunks(pf):
        parts = path.split(".")
        groups = {".".join(parts[:k]) for k in range(1, len(parts))}
        first, seen = not groups <= seen, seen | groups
        if groups and not first and chunks and all(
                c.is_stats_set and c.statistics.has_null_count and c.statistics.null_count == c.num_values
                for c in chunks):
            empty.add(path)
    return empty


def _lists_and_structs(t: pa.DataType) -> bool:
    """Whether ``t`` nests only lists and structs, its fields' names free of dots (a leaf's path
    then names its groups)."""
    if pa.types.is_list(t):
        return _lists_and_structs(t.value_type)
    if pa.types.is_struct(t):
        return all("." not in f.name and _lists_and_structs(f.type) for f in t)
    return not pa.types.is_nested(t)


class _Nulls:
    """All-null arrays of any length and type, sliced from one array per type (made once, zero-copy after)."""

    def __init__(self):
        self.arrays: dict[pa.DataType, pa.Array] = {}

    def __call__(self, n: int, t: pa.DataType) -> pa.Array:
        have = self.arrays.get(t)
        if have is None or len(have) < n:
            have = self.arrays[t] = pa.nulls(max(n, 2 * len(have) if have is not None else n), t)
        return have.slice(0, n)


def _with_nulls(array: pa.Array, t: pa.DataType, nulls: _Nulls) -> pa.Array:
    """``array``, read without some empty leaves, completed to type ``t`` with those leaves as
    nulls (its validity, offsets and dictionaries kept as read)."""
    if _plain_type(array.type) == t:
        return array
    mask = pc.is_null(array) if array.null_count else None
    if pa.types.is_list(t):
        values = _with_nulls(array.values, t.value_type, nulls)
        return pa.ListArray.from_arrays(array.offsets, values, type=pa.list_(t.value_field.with_type(values.type)),
                                        mask=mask)
    present = {f.name for f in array.type}
    children = [_with_nulls(array.field(f.name), f.type, nulls) if f.name in present else nulls(len(array), f.type)
                for f in t]
    return pa.StructArray.from_arrays(children, fields=[f.with_type(c.type) for f, c in zip(t, children)], mask=mask)


def read_whole(path: Path | str, threads: int) -> pa.Table:
    """Every row of the file, read once over ``threads``, repeated strings as dictionaries.

    Flat columns are read whole: one array each (one per row group when read as dictionaries), so
    they are taken from without being concatenated. Nested columns are read row group by row group,
    in parts that whichever thread is free takes; their leaves that are empty everywhere
    (``_empty_leaves``) are not read but made as nulls."""
    pf = lake.parquet_file(path)
    schema = pf.schema_arrow
    groups = pf.metadata.num_row_groups
    if pf.metadata.num_rows == 0:
        return schema.empty_table()
    leaf_chunks = list(_leaf_chunks(pf))  # one walk over the footer serves the three choices below
    dictionary, empty = _dictionary_leaves(pf, leaf_chunks), _empty_leaves(pf, leaf_chunks)
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    flat = [f.name for f in schema if f.name not in nested]
    leaves = [p for p, _, _ in leaf_chunks if p not in empty and p.split(".", 1)[0] in nested]
    parts = min(groups, 2 * threads)

    def read_flat() -> pa.Table:
        return lake.parquet_file(path, metadata=pf.metadata, read_dictionary=[d for d in dictionary if d in flat]).read(
            columns=flat, use_threads=False)

    def read_nested(first: int) -> list[pa.Table]:
        f = lake.parquet_file(path, metadata=pf.metadata, read_dictionary=dictionary)  # one reader per part
        return [f.read_row_group(g, columns=leaves, use_threads=False) for g in range(first, groups, parts)]

    with ThreadPoolExecutor(threads) as pool:
        whole = pool.submit(read_flat) if flat else None
        by_part = list(pool.map(read_nested, range(parts))) if nested else []
        columns = {name: whole.result().column(name) for name in flat} if whole else {}
    tables = [by_part[g % parts][g // parts] for g in range(groups)] if nested else []
    nulls = _Nulls()
    for name in nested:
        t = schema.field(name).type
        columns[name] = pa.chunked_array([_with_nulls(c, t, nulls) for table in tables if table.num_rows
                                          for c in table.column(name).chunks])
    return pa.table([columns[f.name] for f in schema], names=schema.names)


def _narrow(table: pa.Table) -> pa.Table:
    """The ranking's columns of an in-memory file, with file row numbers ``rn``."""
    columns = {c: table.column(c) for c in NARROW}
    columns["n_msgs"] = pc.list_value_length(table.column("messages")).cast(pa.int64())
    columns["rn"] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return pa.table(columns)


def _plain_type(t: pa.DataType) -> pa.DataType:
    """``t`` with its dictionaries replaced by their value types."""
    if pa.types.is_dictionary(t):
        return t.value_type
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_plain_type(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain_type(f.type)) for f in t])
    return t


def _offset_indices(chunks: list[pa.DictionaryArray], size: int) -> np.ndarray | pa.Array:
    """The chunks' dictionary indices into their dictionaries laid end to end (``size`` values):
    one array written once (fresh memory is slow to fault in), Arrow's when an index is null."""
    bases = np.cumsum([0] + [len(c.dictionary) for c in chunks[:-1]])
    if any(c.indices.null_count for c in chunks):
        return pa.concat_arrays([pc.add(c.indices.cast(pa.int64()), int(b)) for c, b in zip(chunks, bases)])
    out = np.empty(sum(len(c) for c in chunks), dtype=np.int32 if size < 2**31 else np.int64)
    at = 0
    for c, base in zip(chunks, bases):
        np.add(c.indices.to_numpy(), out.dtype.type(base), out=out[at:at + len(c)], casting="unsafe")
        at += len(c)
    return out


class _Gather:
    """One column of an in-memory file (read batch by batch, each with its own dictionaries),
    taken by file row number straight into plain arrays.

    The batches' dictionaries are concatenated, never hashed, and their indices offset, so one take
    of the dictionary values makes the strings of the rows taken and nothing else is decoded. Lists
    and structs are taken through their offsets, validity and children (an all-null child, such as
    the tool fields of plain chat messages, is not taken at all); flat columns are concatenated once
    and taken as they are."""

    def __init__(self, chunks: list[pa.Array]):
        t = chunks[0].type
        self.type = _plain_type(t)
        self.valid = None
        if all(c.null_count == len(c) for c in chunks):
            self.kind = "null"
        elif pa.types.is_dictionary(t):
            self.kind = "dictionary"
            self.values = pa.concat_arrays([c.dictionary for c in chunks])
            self.indices = _offset_indices(chunks, len(self.values))
        elif pa.types.is_list(t) or pa.types.is_struct(t):
            if any(c.null_count for c in chunks):
                self.valid = np.concatenate([pc.is_valid(c).to_numpy(zero_copy_only=False) for c in chunks])
            if pa.types.is_list(t):
                self.kind = "list"
                bases = np.cumsum([0] + [len(c.values) for c in chunks[:-1]])
                offsets = [c.offsets.to_numpy().astype(np.int64) + b for c, b in zip(chunks, bases)]
                self.starts = np.concatenate([o[:-1] for o in offsets])
                self.lengths = np.concatenate([np.diff(o) for o in offsets])
                if self.valid is not None:
                    self.lengths[~self.valid] = 0  # a null list takes no elements, as Arrow's take gives it
                self.child = _Gather([c.values for c in chunks])
            else:
                self.kind = "struct"
                self.children = [_Gather([c.field(i) for c in chunks]) for i in range(t.num_fields)]
        else:
            self.kind = "plain"
            self.values = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)

    def take(self, rows: np.ndarray) -> pa.Array:
        if self.kind == "null":
            return pa.nulls(len(rows), self.type)
        if self.kind == "dictionary":
            return self.values.take(self.indices[rows] if isinstance(self.indices, np.ndarray)
                                    else self.indices.take(pa.array(rows)))
        if self.kind == "plain":
            return self.values.take(pa.array(rows))
        mask = None if self.valid is None else pa.array(~self.valid[rows])
        if self.kind == "struct":
            return pa.StructArray.from_arrays([c.take(rows) for c in self.children], fields=list(self.type), mask=mask)
        starts, lengths = self.starts[rows], self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        elements = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), self.child.take(elements),
                                        type=self.type, mask=mask)


def _sources(table: pa.Table) -> tuple[pa.Schema, list[_Gather]]:
    """Every column of an in-memory file ready to be taken from, and the plain schema they give."""
    columns = [_Gather(table.column(i).chunks) for i in range(table.num_columns)] if table.num_rows else []
    return pa.schema([f.with_type(c.type) for f, c in zip(table.schema, columns)]), columns


def _one_read(path: Path | str, threads: int, counts: "FilterCounts", state: dict) -> Iterator[pa.Table]:
    """The winners of a file that fits in memory, from one read of it, BATCH_ROWS at a time.

    The columns are made ready to gather from while DuckDB ranks, and the output batches are
    gathered a row group ahead of the writer."""
    table = read_whole(path, threads)
    counts.rows_in = table.num_rows
    passed = pc.sum(table.column("passed")).as_py() or 0
    counts.failed = table.num_rows - passed
    if passed == 0:
        return
    with ThreadPoolExecutor(1) as pool:
        ready = pool.submit(_sources, table)
        winners, state["ranks"] = _rank(_narrow(table), threads)
        schema, columns = ready.result()
        del table

        def batch(lo: int) -> pa.Table:
            rows = winners[lo:lo + BATCH_ROWS]
            return pa.Table.from_batches([pa.RecordBatch.from_arrays([c.take(rows) for c in columns], schema=schema)])

        # a row group's worth of batches is gathered ahead: the writer holds them until its row group is full
        starts = iter(range(0, len(winners), BATCH_ROWS))
        ahead = collections.deque(pool.submit(batch, lo)
                                  for lo in itertools.islice(starts, max(1, lake.ROW_GROUP_ROWS // BATCH_ROWS)))
        while ahead:
            current = ahead.popleft().result()
            lo = next(starts, None)
            if lo is not None:
                ahead.append(pool.submit(batch, lo))
            yield current


def _winner_rows(con: duckdb.DuckDBPyConnection, path: Path | str, winners: np.ndarray) -> pa.RecordBatchReader:
    """The winning rows with their output position (``__pos``), in no particular order: DuckDB reads
    the file once, in parallel, and keeps the rows whose file row number is a winner's."""
    lake.duckdb_lake(con, path)  # an object-store lake's file system (no-op for a local file)
    con.register("_winners", pa.table({"rn": winners, "pos": np.arange(len(winners), dtype=np.int64)}))
    return con.sql(
        f"SELECT t.* EXCLUDE (file_row_number), w.pos AS __pos "
        f"FROM read_parquet({lake.sql_literal(path)}, file_row_number = true) t "
        "JOIN _winners w ON t.file_row_number = w.rn"
    ).to_arrow_reader(BATCH_ROWS)


def filtered_stream(verified_path: Path | str, threads: int = 2, in_memory: bool | None = None,
                    params: DedupParams = PARAMS) -> lake.ArrowStream:
    """The filtered rows of one verified partition file, streamed; counts complete once consumed.

    Passed rows, one per (env, task_id), then the dedup stage (``orbit.stages.dedup``) over those
    winners: one per canonical trajectory and one per MinHash cluster, the best kept; the rows come
    out in (env, task_id) order with ``dedup_key``, ``minhash``, ``dropped_exact``, ``dropped_near``
    (FILTERED_SCHEMA).

    A file that fits in memory (``fits_in_memory``; ``in_memory`` overrides) is read once and its
    winners gathered from that read. Otherwise one narrow scan ranks every row (``rank_file``);
    then the file is read once more, keeping only the winning rows (spilled to disk by output
    position when there are many), and the winners are streamed out ordered by (env, task_id) in
    BATCH_ROWS batches. Memory stays flat in the partition size: DuckDB is capped, one bucket of
    winners is in memory at a time, and the dedup stage spills its rows and per-band hashes.
    Both ways give the same rows in the same row groups.
    """
    counts = FilterCounts(rows_in=0, failed=0, duplicates=0, kept=0)
    state: dict = {}

    def streamed():
        total, passed, winners, state["ranks"] = rank_file(verified_path, threads)
        counts.rows_in, counts.failed = total, total - passed
        con = _database(threads)
        try:
            reader = _winner_rows(con, verified_path, winners)
            buckets = _Buckets(len(winners), reader.schema, BATCH_ROWS)
            for rows in reader:
                buckets.add(rows)
            reader.close()
        finally:
            con.close()
        yield from buckets.ordered()

    def batches():
        one_read = fits_in_memory(verified_path) if in_memory is None else in_memory
        dedup = PartitionDedup(FILTERED_SCHEMA, params)
        at = 0
        for table in (_one_read(verified_path, threads, counts, state) if one_read else streamed()):
            n = table.num_rows
            dedup.add(table.cast(VERIFIED_SCHEMA), state["ranks"][at:at + n])
            at += n
        counts.candidates = at
        counts.duplicates = counts.rows_in - counts.failed - at
        for batch in _rebatched(dedup.kept(), BATCH_ROWS):  # whole batches: row groups as without drops
            counts.kept += batch.num_rows
            yield batch
        counts.dropped_exact, counts.dropped_near = dedup.counts.dropped_exact, dedup.counts.dropped_near
        if counts.kept + counts.dropped_exact + counts.dropped_near != counts.candidates:
            raise AssertionError(f"dedup lost rows: {counts}")

    return lake.ArrowStream(FILTERED_SCHEMA, batches(), summary=counts.as_dict)


def _rebatched(tables: Iterator[pa.Table], size: int) -> Iterator[pa.RecordBatch]:
    """The rows of ``tables`` in batches of exactly ``size`` rows (the last one shorter)."""
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        pending.append(table)
        rows += table.num_rows
        while rows >= size:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, size).combine_chunks().to_batches()[0]
            rest = whole.slice(size)
            pending, rows = [rest], rest.num_rows
    if rows:
        yield pa.concat_tables(pending).combine_chunks().to_batches()[0]


def filter_file(verified_path: Path | str, out_path: Path | str, threads: int = 2,
                in_memory: bool | None = None) -> FilterCounts:
    """Write the filtered dataset of one verified partition file atomically; return the counts."""
    stream = filtered_stream(verified_path, threads, in_memory)
    lake.write_batches(stream, FILTERED_SCHEMA, out_path)
    return FilterCounts(**stream.summary())


def filter_table(verified: pa.Table, params: DedupParams = PARAMS) -> pa.Table:
    """The same semantics on an in-memory Arrow table (used by exports and tests): FILTERED_SCHEMA rows
    in (env, task_id) order. A table of filtered rows (with ``dedup_key`` and ``minhash``) may be given:
    their signatures are reused, never recomputed."""
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("verified", verified)
        winners = con.sql(best_per_task_sql("verified")).to_arrow_table().cast(verified.schema)
    finally:
        con.close()
    return dedup_table(winners, FILTERED_SCHEMA, ranking(winners), params)[0]
