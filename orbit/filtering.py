"""The filter stage: passed rows, one per (env, task_id), best first.

Vectorised over the verified Parquet file: one narrow scan ranks the rows (DuckDB), then
only the winning rows are read and streamed out in order. Ties are broken
deterministically: score desc, shorter trajectory (fewer messages), record_id.
Every input row is accounted for: kept, failed verification, or dropped as a
duplicate of a better row of the same task.
"""

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


def _message_count_column(pf: pq.ParquetFile) -> str:
    """The cheapest Parquet leaf directly under a message (usually an all-null one such as
    tool_call_id): its list lengths are len(messages), read without any message content."""
    meta = pf.metadata
    sizes: dict[str, int] = {}
    for i in range(len(pf.schema)):
        path = pf.schema.column(i).path
        if path.startswith("messages.") and path.count(".") == 3:
            sizes[path] = sum(meta.row_group(g).column(i).total_compressed_size for g in range(meta.num_row_groups))
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

    key = RANKING_KEY.replace("len(messages)", "n_msgs")
    with tempfile.TemporaryDirectory(prefix="orbit-rank-") as spill:
        con = duckdb.connect(config={"threads": threads, "memory_limit": RANK_MEMORY, "temp_directory": spill})
        try:
            con.register("narrow", pa.RecordBatchReader.from_batches(schema, narrow_batches()))
            winners = con.sql(f"SELECT arg_min(rn, {key}) AS rn FROM narrow WHERE passed "
                              "GROUP BY env, task_id ORDER BY env, task_id").to_arrow_table()
        finally:
            con.close()
    return seen["rows"], seen["passed"], winners.column("rn").to_numpy().astype(np.int64, copy=False)


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


def filtered_stream(verified_path: Path | str, threads: int = 2) -> lake.ArrowStream:
    """The filtered rows of one verified partition file, streamed; counts complete once consumed.

    One narrow scan ranks every row (``rank_file``); then the file is read once more, keeping only
    the winning rows (spilled to disk by output position when there are many), and the winners are
    streamed out ordered by (env, task_id) in BATCH_ROWS batches. Memory stays flat in the
    partition size: DuckDB is capped, and one bucket of winners is in memory at a time.
    """
    counts = FilterCounts(rows_in=0, failed=0, duplicates=0, kept=0)

    def batches():
        total, passed, winners = rank_file(verified_path, threads)
        counts.rows_in, counts.failed = total, total - passed
        with tempfile.TemporaryDirectory(prefix="orbit-filter-") as spill:
            reader = _winner_rows(verified_path, winners, threads, spill)
            buckets = _Buckets(len(winners), reader.schema, BATCH_ROWS)
            for rows in reader:
                buckets.add(rows)
            reader.close()
        for table in buckets.ordered():
            counts.kept += table.num_rows
            yield table.cast(VERIFIED_SCHEMA).to_batches()[0]
        counts.duplicates = passed - counts.kept

    return lake.ArrowStream(VERIFIED_SCHEMA, batches(), summary=counts.as_dict)


def filter_file(verified_path: Path | str, out_path: Path | str, threads: int = 2) -> FilterCounts:
    """Write the filtered dataset of one verified partition file atomically; return the counts."""
    stream = filtered_stream(verified_path, threads)
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
