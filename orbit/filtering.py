"""The filter stage: passed rows, one per (env, task_id), best first.

Vectorised in DuckDB over the verified Parquet file. Ties are broken
deterministically: score desc, shorter trajectory (fewer messages), record_id.
Every input row is accounted for: kept, failed verification, or dropped as a
duplicate of a better row of the same task.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

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


def best_rows_of_file_sql(path: Path | str) -> str:
    """The same selection on a Parquet file: rank on the narrow columns first, then read whole rows
    only for the winners (the ranking never sorts the trajectories themselves)."""
    source = f"read_parquet({lake.sql_literal(path)}, file_row_number = true)"
    winners = (f"SELECT arg_min(file_row_number, {RANKING_KEY}) FROM {source} WHERE passed "
               "GROUP BY env, task_id")
    return (f"SELECT * EXCLUDE (file_row_number) FROM {source} WHERE file_row_number IN ({winners}) "
            "ORDER BY env, task_id")


def filtered_stream(verified_path: Path | str, threads: int = 2) -> lake.ArrowStream:
    """The filtered rows of one verified partition file, streamed; counts complete once consumed."""
    counts = FilterCounts(rows_in=0, failed=0, duplicates=0, kept=0)

    def batches():
        con = duckdb.connect(config={"threads": threads})
        try:
            source = f"read_parquet({lake.sql_literal(verified_path)})"
            total, passed = con.execute(f"SELECT count(*), count(*) FILTER (WHERE passed) FROM {source}").fetchall()[0]
            counts.rows_in, counts.failed = total, total - passed
            for batch in con.sql(best_rows_of_file_sql(verified_path)).to_arrow_reader(BATCH_ROWS):
                counts.kept += batch.num_rows
                yield pa.Table.from_batches([batch]).cast(VERIFIED_SCHEMA).to_batches()[0]
            counts.duplicates = passed - counts.kept
        finally:
            con.close()

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
