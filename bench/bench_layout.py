"""Row-group layout of a raw partition: ``lake.write_batches`` vs one row group per generated batch.

A real tic_tac_toe self-play partition is generated the way ``raw_samples`` streams it
(``FAMILY.generate``: MCTS learner vs random, a few hundred rows per batch). The same batches
are written twice, in the same run:
  * baseline: one row group per batch (what ``write_batches`` did before it gathered batches);
  * ``lake.write_batches``: batches gathered into row groups of ROW_GROUP_ROWS rows.
Both files must read back to the same table (checked). Measured: the file size, and in rotated
interleaved rounds (at least --repeat, more until the block has run MIN_SECONDS; median) a
whole read with pyarrow (``pq.read_table``) and a DuckDB aggregate over the file (what
``orbit sql`` users run). Goal: the gathered file is smaller and
faster to read than the baseline (ratio < 1x).

    .venv/bin/python bench/bench_layout.py [--tasks 20000] [--quick]
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from orbit.io import lake  # noqa: E402
from orbit.envs import GenerationRequest, env_spec, family_of  # noqa: E402
from orbit.io.schema import RECORD_SCHEMA  # noqa: E402

ENV = "tic_tac_toe"
MIN_SECONDS = 5.0  # the reads keep going, in rotated rounds, until the block has run this long
MAX_ROUNDS = 400
QUERY = ("SELECT source, count(*) AS n, avg(len(messages)) AS turns, count(DISTINCT task_id) AS tasks "
         "FROM read_parquet({path}) GROUP BY source ORDER BY source")


def generate(tasks: int) -> list[pa.RecordBatch]:
    spec = env_spec(ENV)
    request = GenerationRequest(env=spec, round_key="r0000", num_tasks=tasks, samples_per_task=spec.samples_per_task,
                                workers=2, options={})
    return list(family_of(spec).generate(request))


def write_one_group_per_batch(batches: list[pa.RecordBatch], path: Path) -> None:
    """The previous layout: every batch written as its own row group (same writer settings)."""
    with lake.atomic_path(path) as tmp, pq.ParquetWriter(tmp, RECORD_SCHEMA, compression=lake.COMPRESSION) as w:
        for batch in batches:
            w.write_batch(batch, row_group_size=batch.num_rows)


def groups(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_row_groups


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="2,000 tasks, 3 repeats")
    args = ap.parse_args(argv)
    tasks, repeat = (2_000, 3) if args.quick else (args.tasks, args.repeat)
    min_seconds = 0.0 if args.quick else MIN_SECONDS
    root, cleanup = C.scratch_dir("orbit-bench-layout-")
    try:
        t_gen, batches = C.timed(generate, tasks)
        rows = sum(b.num_rows for b in batches)
        old, new = root / "one_group_per_batch.parquet", root / "gathered.parquet"
        write_one_group_per_batch(batches, old)
        lake.write_batches(batches, RECORD_SCHEMA, new)
        same = pq.read_table(old).equals(pq.read_table(new))
        con = duckdb.connect(config={"threads": 2})
        answers: dict[str, list] = {"old": [], "new": []}

        def query(name: str, path: Path):
            return lambda: answers[name].append(con.sql(QUERY.format(path=lake.sql_literal(path))).fetchall())

        names = ("read_old", "read_new", "sql_old", "sql_new")
        samples = C.interleaved_samples(
            [lambda: pq.read_table(old), lambda: pq.read_table(new), query("old", old), query("new", new)],
            repeat, min_seconds=min_seconds, rotate=True, max_rounds=MAX_ROUNDS)
        con.close()
        rounds = len(samples[0])
        same = same and all(a == answers["old"][0] for a in answers["old"] + answers["new"])
        med = {name: statistics.median(v) for name, v in zip(names, samples)}
        size_old, size_new = old.stat().st_size, new.stat().st_size
        groups_old, groups_new = groups(old), groups(new)
    finally:
        cleanup()
    label = f"{ENV}.tasks_{tasks}"
    for key, value in (("rows", rows), ("row_groups_before", groups_old), ("row_groups", groups_new),
                       ("size_ratio", size_new / size_old), ("read_ratio", med["read_new"] / med["read_old"]),
                       ("sql_ratio", med["sql_new"] / med["sql_old"]), ("same_table", same)):
        C.metric(f"{label}.{key}", value)
    C.print_table(
        f"raw partition layout: {rows:,} rows of {ENV} self-play in {len(batches)} generated batches",
        [
            C.Row("file size, gathered row groups", size_new / 2**20, "MiB", size_old / 2**20, size_new / size_old,
                  "< 1x", size_new < size_old, note="baseline = one row group per generated batch"),
            C.Row("pq.read_table, gathered", med["read_new"], "s", med["read_old"], med["read_new"] / med["read_old"],
                  "< 1x", med["read_new"] < med["read_old"]),
            C.Row("DuckDB aggregate, gathered", med["sql_new"], "s", med["sql_old"], med["sql_new"] / med["sql_old"],
                  "< 1x", med["sql_new"] < med["sql_old"]),
        ],
        notes=[f"{groups_old} row groups before, {groups_new} now (ROW_GROUP_ROWS={lake.ROW_GROUP_ROWS:,}); "
               f"both files read back to the same table and query answer: {same}; generated in {t_gen:.1f}s; "
               f"median of {rounds} rotated rounds (at least {repeat}, more until the block has run "
               f"{min_seconds:.0f}s: one read is a few hundredths of a second, less than the host's phases)",
               C.environment_note()],
    )
    C.save_metrics("layout")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
