"""The filter stage: passed rows, one per (env, task_id), best first.

Vectorised over the verified Parquet file. A file that decodes to at most IN_MEMORY_BYTES is
read once (strings as dictionaries), ranked in memory and its winners gathered from that read;
a larger one is ranked on one narrow scan (DuckDB) and only its winning rows are read again and
streamed out in order, so memory stays flat. Both give the same file. Ties are broken
deterministically: score desc, shorter trajectory (fewer messages), record_id.
Every input row is accounted for: kept, failed verification, or dropped as a
duplicate of a better row of the same task.
"""

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from orbit import lake
from orbit.schema import VERIFIED_SCHEMA

BATCH_ROWS = 8192

RANKING = "score DESC, len(messages) ASC, record_id ASC"
RANKING_KEY = "(-score, len(messages), record_id)"  # the same order as one comparable key (verified scores are never null)


@dataclass
class FilterCounts:
    rows_in: int
    failed: int
    duplicates: int
    kept: int

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
MEMORY_ROWS = 262_144  # winners held in memory up to this many; beyond, they go through spill buckets
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


def rank_file(path: Path | str, threads: int = 2) -> tuple[int, int, np.ndarray]:
    """One narrow scan: (rows, passed rows, file row numbers of the winners in output order).

    Only env, task_id, score, passed, record_id and one leaf of ``messages`` are read (never the
    message contents), streamed batch by batch into DuckDB; the winner of each (env, task_id) is the
    passed row with the least RANKING_KEY. DuckDB's memory is capped (it spills to a temporary
    directory beyond RANK_MEMORY), so memory stays flat in the partition size.
    """
    pf = pq.ParquetFile(path, read_dictionary=["env", "task_id"])  # grouped on, never copied as strings
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

    winners = _rank(pa.RecordBatchReader.from_batches(schema, narrow_batches()), threads)
    return seen["rows"], seen["passed"], winners


def _rank(narrow: pa.Table | pa.RecordBatchReader, threads: int) -> np.ndarray:
    """File row numbers (``rn``) of the winners in output order, from the narrow columns
    (NARROW, ``n_msgs`` = len(messages), ``rn``). DuckDB's memory is capped: beyond RANK_MEMORY
    the aggregation spills to a temporary directory."""
    key = RANKING_KEY.replace("len(messages)", "n_msgs")
    with tempfile.TemporaryDirectory(prefix="orbit-rank-") as spill:
        con = duckdb.connect(config={"threads": threads, "memory_limit": RANK_MEMORY, "temp_directory": spill})
        try:
            con.register("narrow", narrow)
            winners = con.sql(f"SELECT arg_min(rn, {key}) AS rn FROM narrow WHERE passed "
                              "GROUP BY env, task_id ORDER BY env, task_id").to_arrow_table()
        finally:
            con.close()
    return winners.column("rn").to_numpy().astype(np.int64, copy=False)


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
    meta = pq.ParquetFile(path).metadata
    return sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)) <= IN_MEMORY_BYTES


def _dictionary_leaves(pf: pq.ParquetFile) -> list[str]:
    """The string leaves (top-level strings, message roles and texts) worth reading as dictionaries:
    those whose values repeat, i.e. whose dictionary pages hold at most half of their bytes. Only
    their indices are then decoded for every row; strings are made for the winners alone."""
    leaves = []
    for path, physical_type, chunks in _leaf_chunks(pf):
        if physical_type != "BYTE_ARRAY" or not ("." not in path or _message_field(path) in ("role", "content")):
            continue
        total = sum(c.total_compressed_size for c in chunks)
        dictionary = sum(c.data_page_offset - c.dictionary_page_offset
                         if c.has_dictionary_page and c.dictionary_page_offset is not None
                         else c.total_compressed_size for c in chunks)
        if dictionary * 2 <= total:
            leaves.append(path)
    return leaves


def read_whole(path: Path | str, threads: int) -> pa.Table:
    """Every row of the file, read once (in parallel), repeated strings as dictionaries."""
    leaves = _dictionary_leaves(pq.ParquetFile(path))
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=leaves))
    # the system allocator gives the read's transient buffers back to the OS; the default pool keeps
    # them (about 150 MiB more peak RSS on a 1M-row file, for no speed)
    return ds.dataset(str(path), format=fmt).to_table(use_threads=threads > 1, memory_pool=pa.system_memory_pool())


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
            self.values = pa.concat_arrays(chunks)

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
    batches = table.to_batches()
    columns = [_Gather([b.column(i) for b in batches]) for i in range(table.num_columns)] if batches else []
    return pa.schema([f.with_type(c.type) for f, c in zip(table.schema, columns)]), columns


def _one_read(path: Path | str, threads: int, counts: "FilterCounts") -> Iterator[pa.Table]:
    """The winners of a file that fits in memory, from one read of it, BATCH_ROWS at a time.

    The columns are made ready to gather from while DuckDB ranks, and each output batch is
    gathered while the one before it is being written."""
    table = read_whole(path, threads)
    counts.rows_in = table.num_rows
    passed = pc.sum(table.column("passed")).as_py() or 0
    counts.failed = table.num_rows - passed
    if passed == 0:
        return
    with ThreadPoolExecutor(1) as pool:
        ready = pool.submit(_sources, table)
        winners = _rank(_narrow(table), threads)
        schema, columns = ready.result()
        del table

        def batch(lo: int) -> pa.Table:
            rows = winners[lo:lo + BATCH_ROWS]
            return pa.Table.from_batches([pa.RecordBatch.from_arrays([c.take(rows) for c in columns], schema=schema)])

        ahead = pool.submit(batch, 0)
        for lo in range(0, len(winners), BATCH_ROWS):
            current = ahead.result()
            if lo + BATCH_ROWS < len(winners):
                ahead = pool.submit(batch, lo + BATCH_ROWS)
            yield current


def _winner_rows(path: Path | str, winners: np.ndarray, threads: int, spill: str) -> pa.RecordBatchReader:
    """The winning rows with their output position (``__pos``), in no particular order: DuckDB reads
    the file once, in parallel, and keeps the rows whose file row number is a winner's."""
    con = duckdb.connect(config={"threads": threads, "memory_limit": RANK_MEMORY, "temp_directory": spill})
    con.register("_winners", pa.table({"rn": winners, "pos": np.arange(len(winners), dtype=np.int64)}))
    return con.sql(
        f"SELECT t.* EXCLUDE (file_row_number), w.pos AS __pos "
        f"FROM read_parquet({lake.sql_literal(path)}, file_row_number = true) t "
        "JOIN _winners w ON t.file_row_number = w.rn"
    ).to_arrow_reader(BATCH_ROWS)


def filtered_stream(verified_path: Path | str, threads: int = 2, in_memory: bool | None = None) -> lake.ArrowStream:
    """The filtered rows of one verified partition file, streamed; counts complete once consumed.

    A file that fits in memory (``fits_in_memory``; ``in_memory`` overrides) is read once and its
    winners gathered from that read. Otherwise one narrow scan ranks every row (``rank_file``);
    then the file is read once more, keeping only the winning rows (spilled to disk by output
    position when there are many), and the winners are streamed out ordered by (env, task_id) in
    BATCH_ROWS batches. Memory stays flat in the partition size: DuckDB is capped, and one bucket
    of winners is in memory at a time. Both ways give the same rows in the same row groups.
    """
    counts = FilterCounts(rows_in=0, failed=0, duplicates=0, kept=0)

    def streamed():
        total, passed, winners = rank_file(verified_path, threads)
        counts.rows_in, counts.failed = total, total - passed
        with tempfile.TemporaryDirectory(prefix="orbit-filter-") as spill:
            reader = _winner_rows(verified_path, winners, threads, spill)
            buckets = _Buckets(len(winners), reader.schema, BATCH_ROWS)
            for rows in reader:
                buckets.add(rows)
            reader.close()
        yield from buckets.ordered()

    def batches():
        one_read = fits_in_memory(verified_path) if in_memory is None else in_memory
        for table in (_one_read(verified_path, threads, counts) if one_read else streamed()):
            counts.kept += table.num_rows
            yield table.cast(VERIFIED_SCHEMA).to_batches()[0]
        counts.duplicates = counts.rows_in - counts.failed - counts.kept

    return lake.ArrowStream(VERIFIED_SCHEMA, batches(), summary=counts.as_dict)


def filter_file(verified_path: Path | str, out_path: Path | str, threads: int = 2,
                in_memory: bool | None = None) -> FilterCounts:
    """Write the filtered dataset of one verified partition file atomically; return the counts."""
    stream = filtered_stream(verified_path, threads, in_memory)
    lake.write_batches(stream, VERIFIED_SCHEMA, out_path)
    return FilterCounts(**stream.summary())


def filter_table(verified: pa.Table) -> pa.Table:
    """The same semantics on an in-memory Arrow table (used by exports and tests)."""
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("verified", verified)
        return con.sql(best_per_task_sql("verified")).to_arrow_table().cast(verified.schema)
    finally:
        con.close()
