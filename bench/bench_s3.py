"""The lake on an object store (``s3://``, moto's server on 127.0.0.1) vs a local folder, in the same run.

An S3-compatible server is started for the bench (``tests/scale/s3_server.py``: ``python -m moto.server`` on a
free loopback port, in-memory, stopped by its pid at the end). The same work runs against a folder lake and an
``s3://`` lake, alternating sides (local, s3, s3, local, ...), median per side:

  * write: one verified partition (``bench_filter.synth_verified``, ROWS rows) with ``lake.write_table``: on s3
    a local temporary Parquet file uploaded in one put;
  * filter: ``filter_file`` of that partition into ``filtered_dataset`` (read through pyarrow on a file handle
    and DuckDB on the registered s3fs file system; written as above);
  * yields query: ``orbit.query.connect(root, views=False)`` + ``SUMMARY_SQL`` over ROUNDS x 5 ``yield_metrics``
    partitions (``bench_yields_query.build_lake``), first with no yields index (every file read, the index
    written) and then with the index up to date (one listing of the partitions' prefix, one small read).

Both sides' filtered partitions are checked equal. moto runs in-process memory on this host: no network
latency, no real S3 throughput or throttling, so the ratios show Orbit's own overhead of the object-store path
(s3fs, HTTP to loopback, one put per partition), not what AWS would cost.

    .venv/bin/python bench/bench_s3.py [--rows 200000] [--rounds 40] [--repeat 3] [--quick]

Needs the ``scale`` dependency group (moto, s3fs); without it the bench says so and exits 0.
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

BUCKET = "orbit-bench"


def measure(rows: int, rounds: int, repeat: int) -> tuple[list[C.Row], list[str]]:
    sys.path.insert(0, str(C.REPO / "tests" / "scale"))
    from s3_server import S3Server

    from bench_filter import synth_verified
    from bench_yields_query import ENVS, build_lake

    from orbit.io import lake
    from orbit.io.lakefs import lake_path, s3
    from orbit.query import SUMMARY_SQL, connect
    from orbit.stages.filter import filter_file
    from orbit.stages.yields import index_file

    probe_start = C.parallel_capacity(2)
    home, cleanup = C.scratch_dir("orbit-bench-s3-")
    server = S3Server()
    saved = {k: os.environ.get(k) for k in server.client_env}
    samples: dict[str, dict[str, list[float]]] = {m: {"local": [], "s3": []} for m in ("write", "filter", "index", "query")}
    try:
        t_server, _ = C.timed(server.start)
        os.environ.update(server.client_env)
        os.environ["ORBIT_HOME"] = str(home)
        server.bucket(BUCKET)
        table = synth_verified(rows, max(1, rows // 4), 0.5)
        mib = table.nbytes / 2**20
        roots = {"local": lake_path(home / "lake"), "s3": lake_path(f"s3://{BUCKET}/lake")}
        for side, root in roots.items():  # the yields lakes, not timed: ROUNDS x 5 small partitions
            build_lake(root / "yq", rounds, ENVS)
        size = {}
        for side, root in roots.items():  # warm, not timed: imports, DuckDB's database, the s3 client
            lake.write_table(table.slice(0, 2000), lake.partition_file(root, "verified_samples", "r9999", "tic_tac_toe"))
            filter_file(lake.partition_file(root, "verified_samples", "r9999", "tic_tac_toe"),
                        lake.partition_file(root, "filtered_dataset", "r9999", "tic_tac_toe"))
            connect(root / "yq", views=False).close()
        for i in range(repeat):
            for side in (("local", "s3") if i % 2 == 0 else ("s3", "local")):
                root = roots[side]
                verified = lake.partition_file(root, "verified_samples", f"r{i:04d}", "tic_tac_toe")
                filtered = lake.partition_file(root, "filtered_dataset", f"r{i:04d}", "tic_tac_toe")
                t0 = time.perf_counter()
                lake.write_table(table, verified)
                samples["write"][side].append(time.perf_counter() - t0)
                size[side] = verified.stat().st_size
                t0 = time.perf_counter()
                filter_file(verified, filtered)
                samples["filter"][side].append(time.perf_counter() - t0)
                index = index_file(root / "yq")
                index.unlink(missing_ok=True)
                for what in ("index", "query"):  # no index yet (it is written), then the index up to date
                    t0 = time.perf_counter()
                    con = connect(root / "yq", views=False)
                    try:
                        answer = con.execute(SUMMARY_SQL).fetchall()
                    finally:
                        con.close()
                    samples[what][side].append(time.perf_counter() - t0)
                assert len(answer) == rounds * len(ENVS) * 3, len(answer)
        same = all(
            lake.read_table(lake.partition_file(roots["s3"], "filtered_dataset", f"r{i:04d}", "tic_tac_toe")).equals(
                lake.read_table(lake.partition_file(roots["local"], "filtered_dataset", f"r{i:04d}", "tic_tac_toe")))
            for i in range(repeat))
        objects = len(s3().find(roots["s3"].key))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
        cleanup()
    probe_end = C.parallel_capacity(2)

    med = {m: {s: statistics.median(v) for s, v in sides.items()} for m, sides in samples.items()}
    labels = {
        "write": f"write one verified partition ({rows:,} rows, {mib:.0f} MiB Arrow, {size['local'] / 2**20:.1f} MiB Parquet)",
        "filter": "filter_file: that partition -> filtered_dataset",
        "index": f"yields query, no index ({rounds} rounds x {len(ENVS)} envs partitions read, index written)",
        "query": "yields query, index up to date",
    }
    out = []
    for m, label in labels.items():
        local_s, s3_s = med[m]["local"], med[m]["s3"]
        ratio = s3_s / local_s if local_s else float("nan")
        C.metric(f"{m}.local_s", local_s)
        C.metric(f"{m}.s3_s", s3_s)
        C.metric(f"{m}.s3_over_local", ratio)
        runs = lambda side: ", ".join(f"{s:.3f}" for s in samples[m][side])  # noqa: E731
        out.append(C.Row(f"{label}: local folder", local_s, "s", note=f"runs {runs('local')} s"))
        out.append(C.Row(f"{label}: s3:// (moto, loopback)", s3_s, "s", local_s, ratio,
                         note=f"runs {runs('s3')} s"))
    for name, value in (("rows", rows), ("rounds", rounds), ("repeat", repeat), ("same_rows", same),
                        ("cpu_probe_start", probe_start), ("cpu_probe_end", probe_end), ("server_start_s", t_server)):
        C.metric(name, value)
    notes = [f"ratio = s3 / local (lower is better); median of {repeat} runs per side, sides alternating",
             f"filtered partitions {'the same' if same else 'DIFFERENT'} on both sides; {objects} objects on s3 at the end",
             f"moto server start {t_server:.1f} s; CPU probe {probe_start:.2f}x at start, {probe_end:.2f}x at end "
             "(2.0 = two free cores)",
             "moto keeps objects in memory on this host: no network latency, bandwidth limits or throttling of real S3",
             C.environment_note()]
    if not same:
        notes.append("MISMATCH: the s3 lake's filtered partitions differ from the local lake's")
    return out, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--rows", type=int, default=None, help="rows of the verified partition (default 200000; quick 20000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of yield partitions (default 40; quick 8)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per side, median (default 3; quick 1)")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("s3fs") is None:
        print("bench_s3: skipped, moto or s3fs is not installed (the scale dependency group: uv sync --group scale)")
        return 0
    rows = args.rows or (20_000 if args.quick else 200_000)
    rounds = args.rounds or (8 if args.quick else 40)
    repeat = args.repeat or (1 if args.quick else 3)
    table_rows, notes = measure(rows, rounds, repeat)
    C.print_table("The lake on s3:// (moto on 127.0.0.1) vs a local folder", table_rows, notes)
    C.save_metrics("s3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
