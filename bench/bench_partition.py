"""One env partition of 100k samples through verify -> filter -> yields: wall time and peak RSS.

Raw data: a few thousand real tic_tac_toe games (``FAMILY.generate`` with random
learner and random opponent, several samples per task) replicated up to N rows
by giving each copy a new ``sample_idx`` and its ``record_id`` (task spec,
history and messages untouched, so every copy replays and verifies like the
original). Written with ``orbit.io.lake`` as the partition's raw file.

The pipeline runs in a fresh child process, as the Dagster assets do it:
  verify : ``lake.write_batches(verify_batches(lake.iter_batches(raw), ...))``
  filter : ``orbit.stages.filter.filter_file(verified, filtered)``
  yields : ``orbit.stages.yields.partition_yields(verified, filtered, ...)`` + ``lake.write_table``
and reports wall time per stage and its peak RSS (``RUSAGE_SELF.ru_maxrss``;
cross-checked with the parent's ``RUSAGE_CHILDREN``).

Baselines, each in its own child process: the interpreter with the same imports
(RSS floor); the verified rows loaded whole into memory as a ``pa.Table``
(ratio = pipeline peak / this); and the same rows as Python dicts (``to_pylist``).
Goal: pipeline peak RSS < 1.5 GiB.
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from orbit.io import lake  # noqa: E402
from orbit.envs import GenerationRequest, env_spec, family_of  # noqa: E402
from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA, make_record_id  # noqa: E402

ENV = "tic_tac_toe"
ROUND = "r0000"
GOAL_MB = 1536.0


def paths(root: Path) -> dict[str, Path]:
    return {
        "raw": lake.partition_file(root, "raw_samples", ROUND, ENV),
        "verified": lake.partition_file(root, "verified_samples", ROUND, ENV),
        "filtered": lake.partition_file(root, "filtered_dataset", ROUND, ENV),
        "yields": lake.partition_file(root, "yield_metrics", ROUND, ENV),
    }


def build_raw(root: Path, rows: int, tasks: int, samples: int) -> dict:
    """Real games, replicated to ``rows`` by sample_idx / record_id only; written as the raw partition."""
    spec = env_spec(ENV)
    request = GenerationRequest(env=spec, round_key=ROUND, num_tasks=tasks, samples_per_task=samples, workers=1,
                                options={"learner": {"kind": "random"}, "opponent": {"kind": "random"}})
    real = pa.Table.from_batches(list(family_of(spec).generate(request)), schema=RECORD_SCHEMA)
    copies = math.ceil(rows / real.num_rows)
    base_idx = real.column("sample_idx").to_pylist()
    cols = {n: real.column(n).to_pylist() for n in ("env", "round", "task_id", "source", "policy")}
    batches = []
    for j in range(copies):
        take = min(real.num_rows, rows - j * real.num_rows)
        part = real.slice(0, take)
        idx = [s + samples * j for s in base_idx[:take]]
        rid = [make_record_id(cols["env"][i], cols["round"][i], cols["task_id"][i], cols["source"][i],
                              cols["policy"][i], idx[i]) for i in range(take)]
        part = part.set_column(part.schema.get_field_index("sample_idx"), RECORD_SCHEMA.field("sample_idx"),
                               pa.array(idx, pa.int32()))
        part = part.set_column(part.schema.get_field_index("record_id"), RECORD_SCHEMA.field("record_id"),
                               pa.array(rid, pa.string()))
        batches.extend(part.to_batches(max_chunksize=lake.ROW_GROUP_ROWS))
    raw = paths(root)["raw"]
    lake.write_batches(batches, RECORD_SCHEMA, raw)
    table = pq.read_table(raw, columns=["record_id", "task_id"])
    return {
        "real_games": real.num_rows, "copies": copies, "rows": table.num_rows,
        "distinct_record_ids": pc.count_distinct(table.column("record_id")).as_py(),
        "tasks": pc.count_distinct(table.column("task_id")).as_py(),
        "raw_mb": raw.stat().st_size / 2**20,
    }


# ---- children -------------------------------------------------------------------------------------------


def child_pipeline(root: Path) -> dict:
    from orbit.stages.filter import filter_file
    from orbit.stages.verify import VerifyCounts, verify_batches
    from orbit.stages.yields import partition_yields

    p = paths(root)
    spec = env_spec(ENV)
    t_warm = C.now()
    verifier = family_of(spec).verifier(spec)
    pa.array([0])  # pyarrow imports pandas on its first pa.array(list): a per-process cost, kept out of verify
    t_warm = C.now() - t_warm
    rss_start = C.peak_rss_self_mb()
    counts = VerifyCounts()
    t0 = C.now()
    lake.write_batches(verify_batches(lake.iter_batches(p["raw"]), verifier, spec.pass_threshold, counts),
                       VERIFIED_SCHEMA, p["verified"])
    t1 = C.now()
    rss_verify = C.peak_rss_self_mb()
    fcounts = filter_file(p["verified"], p["filtered"])
    t2 = C.now()
    rss_filter = C.peak_rss_self_mb()
    table = partition_yields(p["verified"], p["filtered"], ROUND, ENV)
    lake.write_table(table, p["yields"])
    t3 = C.now()
    overall = table.slice(0, 1).to_pylist()[0]
    return {
        "warmup_s": t_warm, "verify_s": t1 - t0, "filter_s": t2 - t1, "yields_s": t3 - t2,
        "rss_start_mb": rss_start, "rss_after_verify_mb": rss_verify, "rss_after_filter_mb": rss_filter,
        "peak_rss_mb": C.peak_rss_self_mb(),
        "verify": {"rows": counts.rows, "passed": counts.passed, "reasons": counts.reasons},
        "filter": fcounts.as_dict(),
        "yield_all": {k: overall[k] for k in ("attempts", "passes", "pass_rate", "tasks", "tasks_solved",
                                                "clean_trajectories")},
    }


def child_floor(root: Path) -> dict:
    from orbit.stages.filter import filter_file  # noqa: F401
    from orbit.stages.verify import verify_batches  # noqa: F401
    from orbit.stages.yields import partition_yields  # noqa: F401

    spec = env_spec(ENV)
    family_of(spec).verifier(spec)
    return {"peak_rss_mb": C.peak_rss_self_mb()}


def child_whole(root: Path) -> dict:
    t0 = C.now()
    table = pq.read_table(paths(root)["verified"])
    return {"seconds": C.now() - t0, "rows": table.num_rows, "nbytes_mb": table.nbytes / 2**20,
            "peak_rss_mb": C.peak_rss_self_mb()}


def child_pylist(root: Path) -> dict:
    t0 = C.now()
    rows = pq.read_table(paths(root)["verified"]).to_pylist()
    return {"seconds": C.now() - t0, "rows": len(rows), "peak_rss_mb": C.peak_rss_self_mb()}


CHILDREN = {"pipeline": child_pipeline, "floor": child_floor, "whole": child_whole, "pylist": child_pylist}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--rows", type=int, default=None, help="samples in the partition (default 100,000; quick 10,000)")
    ap.add_argument("--tasks", type=int, default=None, help="real tasks played (default 1,000; quick 200)")
    ap.add_argument("--samples", type=int, default=4, help="real games per task before replication")
    ap.add_argument("--no-pylist", action="store_true", help="skip the to_pylist baseline")
    ap.add_argument("--keep", default=None, help="build the lake here and keep it")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](Path(args.root))))
        return 0
    rows = args.rows or (10_000 if args.quick else 100_000)
    tasks = args.tasks or (200 if args.quick else 1000)

    root, cleanup = C.scratch_dir("orbit-bench-partition-", args.keep)
    try:
        t_build, info = C.timed(build_raw, root, rows, tasks, args.samples)
        me = str(Path(__file__).resolve())

        def child(name: str) -> tuple[dict, float]:
            return C.run_child([me, "--child", name, "--root", str(root)], timeout=3600)

        pipe, pipe_children_rss = child("pipeline")  # first child: RUSAGE_CHILDREN is exact for it
        floor, _ = child("floor")
        whole, _ = child("whole")
        pylist = None if args.no_pylist else child("pylist")[0]

        total_s = pipe["verify_s"] + pipe["filter_s"] + pipe["yields_s"]
        peak = pipe["peak_rss_mb"]
        ok = peak < GOAL_MB
        n = info["rows"]
        out_rows = [
            C.Row("verify (verify_batches -> write_batches)", pipe["verify_s"], "s", note=f"{n / pipe['verify_s']:,.0f} rows/s"),
            C.Row("filter (filter_file)", pipe["filter_s"], "s"),
            C.Row("yields (partition_yields + write)", pipe["yields_s"], "s"),
            C.Row("pipeline total", total_s, "s", note=f"{n / total_s:,.0f} rows/s end to end; excludes the child's "
                  f"one-time import warm-up ({pipe['warmup_s']:.2f}s: verifier module + pyarrow's lazy pandas import)"),
            C.Row("pipeline peak RSS", peak, "MiB", whole["peak_rss_mb"], peak / whole["peak_rss_mb"],
                  f"< {GOAL_MB:.0f} MiB", ok),
            C.Row("  RSS after verify / after filter", pipe["rss_after_verify_mb"], "MiB", pipe["rss_after_filter_mb"]),
            C.Row("imports-only child (RSS floor)", floor["peak_rss_mb"], "MiB"),
            C.Row("verified rows loaded whole (pa.Table)", whole["peak_rss_mb"], "MiB",
                  note=f"read in {whole['seconds']:.2f}s; table.nbytes {whole['nbytes_mb']:.0f} MiB"),
        ]
        if pylist:
            out_rows.append(C.Row("verified rows as Python dicts (to_pylist)", pylist["peak_rss_mb"], "MiB",
                                  note=f"loaded in {pylist['seconds']:.2f}s"))
        vf = pipe["verify"]
        label = f"rows_{n // 1000}k"
        for name, value in [("verify_s", pipe["verify_s"]), ("filter_s", pipe["filter_s"]),
                            ("yields_s", pipe["yields_s"]), ("total_s", total_s), ("peak_rss_mib", peak),
                            ("whole_table_rss_mib", whole["peak_rss_mb"]), ("imports_only_rss_mib", floor["peak_rss_mb"]),
                            ("verify_rows_per_s", n / pipe["verify_s"])]:
            C.metric(f"{label}.{name}", value)
        C.print_table(
            f"one partition, {n:,} {ENV} samples: verify -> filter -> yields (child process)",
            out_rows,
            notes=[
                f"raw data: {info['real_games']:,} real games ({tasks} tasks x {args.samples}) x {info['copies']} copies, "
                f"{info['distinct_record_ids']:,} distinct record_ids, {info['tasks']:,} tasks, "
                f"{info['raw_mb']:.1f} MiB raw Parquet, built in {t_build:.1f}s",
                f"verify: {vf['passed']:,}/{vf['rows']:,} passed, reasons {vf['reasons']}",
                f"filter: {pipe['filter']}; yields 'all': {pipe['yield_all']}",
                "peak RSS ratio = pipeline peak / whole-table child peak (each includes the interpreter + imports); "
                f"parent's RUSAGE_CHILDREN after the pipeline child: {pipe_children_rss:.0f} MiB",
                C.environment_note(),
            ],
        )
    finally:
        cleanup()
    C.save_metrics("partition")
    return 0


if __name__ == "__main__":
    sys.exit(main())
