"""One real tic_tac_toe round, stage by stage: peak RSS and rows/s at 10k / 100k / 1M raw rows.

Each stage runs in a fresh child process and calls the engine functions its Dagster asset calls:

  generate      (raw_samples)      ``lake.write_batches(ArrowStream(RECORD_SCHEMA, FAMILY.generate(request)))``
  verify        (verified_samples) ``lake.write_batches(verify_batches(lake.iter_batches(raw), verifier, ...))``
  filter        (filtered_dataset) ``lake.write_batches(filtered_stream(verified))`` (task winners + dedup)
  yields        (yield_metrics)    ``partition_yields(verified, filtered, ...)`` + ``lake.write_table``
  sft_export / dpo_export / grpo_export   ``export_round(kind, lake, round, folder, ExportOptions())``
                                          + ``train_commands`` (what the export assets call)
  training_set  (training_set)     ``lake.write_batches(cumulative_training_set(lake, round))``

The round is the env's own (``tic_tac_toe``: MCTS-200 learner against MCTS-30, round r0000's task seeds),
with ``tasks = rows / samples`` and ``--samples`` games per task (default 4): the rows of a partition are
num_tasks x samples_per_task (``GenerationRequest``). Generation uses 2 workers, as a run does.

Sizes above ``--generate-max`` raw rows (default 100,000) are not all played: measured on 2 shared cores,
a 100k-row round plays in 108-150 s (about 700-900 rows/s), so 1M games would take 18-25 minutes. Such a
partition is built as bench_partition.py does, with new tasks: the first ``--generate-max`` rows are
generated for real (that child is the "generate" figure, rows/s of the rows it played), then copied as
new tasks (copy j of the task of seed s is the task of seed s + j x the tasks generated, same seat: its
task_id, the task spec in its metadata and its record_id follow; history and messages are the original's,
so every copy replays and verifies like it), so the partition has as many tasks (rows / samples) as a real
round of that size. Every later stage (verify, filter, yields, exports, training set) runs for real on all
the rows. The output says, per size, which it did.

Per stage: wall seconds, rows/s (raw rows of the round / seconds), the child's peak RSS (VmHWM) and the
peak RSS of its whole process tree (the child plus its worker pool, sampled every 0.1 s). Goal: every
stage's own peak RSS < 1 GiB at every size.

    .venv/bin/python bench/bench_round_memory.py                 # 10k, 100k, 1M
    .venv/bin/python bench/bench_round_memory.py --quick         # 10k, 100k
    .venv/bin/python bench/bench_round_memory.py --sizes 10000 --keep /tmp/round10k
"""

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

ENV = "tic_tac_toe"
ROUND = "r0000"
GOAL_MB = 1024.0
STAGES = ["generate", "verify", "filter", "yields", "sft_export", "dpo_export", "grpo_export", "training_set"]


# ---- tree RSS sampling --------------------------------------------------------------------------------------


class TreeRss:
    """The peak summed RSS of this process and every descendant (worker pools), sampled in a thread."""

    def __init__(self, every: float = 0.1):
        import psutil

        self.me = psutil.Process()
        self.every = every
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        total = 0
        for p in [self.me] + self.me.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total / 2**20)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self._sample()

    def __enter__(self):
        self._sample()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._sample()


# ---- children: one stage each ---------------------------------------------------------------------------


def _paths(root: Path) -> dict[str, Path]:
    from orbit.io import lake

    lake_root = root / "lake"
    return {name: lake.partition_file(lake_root, name, ROUND, ENV)
            for name in ("raw_samples", "verified_samples", "filtered_dataset", "yield_metrics")} | {
        "lake": lake_root, "training_set": lake.partition_file(lake_root, "training_set", ROUND)}


def _request(root: Path, tasks: int, samples: int):
    from orbit.envs import GenerationRequest, env_spec
    from orbit.io.keys import round_base_seed, round_index

    spec = env_spec(ENV)
    return GenerationRequest(env=spec, round_key=ROUND, num_tasks=tasks, samples_per_task=samples,
                             base_seed=round_base_seed(round_index(ROUND)), workers=2, options={},
                             lake=_paths(root)["lake"])


def stage_generate(root: Path, args) -> dict:
    from orbit.envs import family_of
    from orbit.io import lake
    from orbit.io.lake import ArrowStream
    from orbit.io.schema import RECORD_SCHEMA

    rows = min(args.rows, args.generate_max)
    request = _request(root, -(-rows // args.samples), args.samples)
    stream = ArrowStream(RECORD_SCHEMA, family_of(request.env).generate(request))
    lake.write_batches(stream, RECORD_SCHEMA, _paths(root)["raw_samples"])
    return {"rows": stream.rows}


def replicate(root: Path, rows: int) -> dict:
    """The raw partition grown to ``rows`` by copies of its real games as new tasks: copy j of a task of seed
    s is the task of seed s + j x (tasks generated), same seat (its task_id, the task spec in its metadata
    and its record_id follow); its history and messages are the original's, so it replays and verifies
    like it. A real round of that many tasks plays other games, but as many tasks and rows as this one."""
    import re

    import pyarrow as pa

    from orbit.io import lake
    from orbit.io.schema import RECORD_SCHEMA, make_record_id

    raw = _paths(root)["raw_samples"]
    real = lake.read_table(raw)
    n = real.num_rows
    copies = math.ceil(rows / n)
    cols = {c: real.column(c).to_pylist() for c in ("env", "round", "task_id", "source", "policy", "sample_idx",
                                                     "metadata")}
    parsed = [re.fullmatch(r"(.*-s)(\d+)(-p\d+)", t).groups() for t in cols["task_id"]]
    span = len({seed for _, seed, _ in parsed})  # tasks generated (seeds base_seed .. base_seed + span - 1)

    def batches():
        for j in range(copies):
            take = min(n, rows - j * n)
            part = real.slice(0, take)
            if j:
                tids, rids, metas = [], [], []
                for i in range(take):
                    head, seed, tail = parsed[i]
                    new_seed = int(seed) + span * j
                    tid = f"{head}{new_seed}{tail}"
                    meta = cols["metadata"][i]
                    at = meta.rindex(f'"seed": {seed}}}')
                    metas.append(f'{meta[:at]}"seed": {new_seed}}}{meta[at + len(seed) + 9:]}')
                    tids.append(tid)
                    rids.append(make_record_id(cols["env"][i], cols["round"][i], tid, cols["source"][i],
                                               cols["policy"][i], cols["sample_idx"][i]))
                for name, values in (("task_id", tids), ("record_id", rids), ("metadata", metas)):
                    part = part.set_column(part.schema.get_field_index(name), RECORD_SCHEMA.field(name),
                                           pa.array(values, pa.string()))
            yield from part.to_batches(max_chunksize=lake.BATCH_ROWS)

    tmp = raw.with_name("replicated.parquet")
    lake.write_batches(batches(), RECORD_SCHEMA, tmp)
    os.replace(tmp, raw)
    return {"real_rows": n, "real_tasks": span, "copies": copies, "rows": lake.row_count(raw)}


def stage_verify(root: Path, args) -> dict:
    from orbit.envs import env_spec, family_of
    from orbit.io import lake
    from orbit.io.lake import ArrowStream
    from orbit.io.schema import VERIFIED_SCHEMA
    from orbit.stages.verify import VerifyCounts, verify_batches

    p = _paths(root)
    spec = env_spec(ENV)
    verifier = family_of(spec).verifier(spec)
    counts = VerifyCounts()
    stream = ArrowStream(VERIFIED_SCHEMA, verify_batches(lake.iter_batches(p["raw_samples"]), verifier,
                                                         spec.pass_threshold, counts))
    lake.write_batches(stream, VERIFIED_SCHEMA, p["verified_samples"])
    return {"rows": counts.rows, "passed": counts.passed}


def stage_filter(root: Path, args) -> dict:
    from orbit.io import lake
    from orbit.io.schema import FILTERED_SCHEMA
    from orbit.stages.filter import filtered_stream

    p = _paths(root)
    stream = filtered_stream(p["verified_samples"])
    lake.write_batches(stream, FILTERED_SCHEMA, p["filtered_dataset"])
    return {"counts": stream.summary()}


def stage_yields(root: Path, args) -> dict:
    from orbit.io import lake
    from orbit.stages.yields import partition_yields

    p = _paths(root)
    table = partition_yields(p["verified_samples"], p["filtered_dataset"], ROUND, ENV, {})
    lake.write_table(table, p["yield_metrics"])
    row = table.slice(0, 1).to_pylist()[0]
    return {"all": {k: row[k] for k in ("attempts", "passes", "tasks", "clean_trajectories")}}


def _export(kind: str):
    def run(root: Path, args) -> dict:
        from orbit.io import lake
        from orbit.stages.export import ExportOptions, export_round, train_commands

        lake_root = _paths(root)["lake"]
        folder = lake.partition_dir(lake_root, f"{kind}_export", ROUND)
        export = export_round(kind, lake_root, ROUND, folder, ExportOptions())
        export.counts.as_metadata()
        train_commands(export, str(folder))
        return {"rows_in": export.counts.rows_in, "exported": export.counts.exported,
                "skipped": dict(export.counts.skipped)}
    return run


def stage_training_set(root: Path, args) -> dict:
    from orbit.io import lake
    from orbit.io.schema import FILTERED_SCHEMA
    from orbit.stages.export import cumulative_training_set

    p = _paths(root)
    stream = cumulative_training_set(p["lake"], ROUND)
    lake.write_batches(stream, FILTERED_SCHEMA, p["training_set"])
    return {"kept": stream.summary().get("kept")}


CHILDREN = {"generate": stage_generate, "verify": stage_verify, "filter": stage_filter, "yields": stage_yields,
            "sft_export": _export("sft"), "dpo_export": _export("dpo"), "grpo_export": _export("grpo"),
            "training_set": stage_training_set}


def run_stage(name: str, root: Path, args) -> dict:
    # the engine's imports and pyarrow's lazy pandas import are paid before the stage (as in bench_partition)
    import pyarrow as pa

    import orbit.envs.openspiel.family  # noqa: F401
    import orbit.stages.export  # noqa: F401
    import orbit.stages.filter  # noqa: F401
    import orbit.stages.verify  # noqa: F401
    import orbit.stages.yields  # noqa: F401

    pa.array([0])
    rss_start = C.peak_rss_self_mb()
    with TreeRss() as tree:
        t0 = C.now()
        out = CHILDREN[name](root, args)
        seconds = C.now() - t0
    return {**out, "seconds": seconds, "peak_rss_mb": C.peak_rss_self_mb(), "tree_peak_rss_mb": tree.peak,
            "rss_start_mb": rss_start}


# ---- parent ---------------------------------------------------------------------------------------------


def measure(rows: int, args, keep: str | None) -> tuple[list[dict], dict]:
    root, cleanup = C.scratch_dir(f"orbit-bench-round-memory-{rows}-", keep)
    me = str(Path(__file__).resolve())
    info: dict = {"rows": rows, "generated": min(rows, args.generate_max)}
    results = []
    try:
        for stage in STAGES:
            argv = [me, "--child", stage, "--root", str(root), "--rows", str(rows), "--samples", str(args.samples),
                    "--generate-max", str(args.generate_max)]
            out, _ = C.run_child(argv, timeout=7200)
            out["stage"] = stage
            results.append(out)
            print(f"  [{rows:,} rows] {stage}: {out['seconds']:.1f}s, peak RSS {out['peak_rss_mb']:.0f} MiB "
                  f"(tree {out['tree_peak_rss_mb']:.0f} MiB)", flush=True)
            if stage == "generate" and rows > args.generate_max:
                info["replicated"] = replicate(root, rows)
                print(f"  [{rows:,} rows] replicated: {info['replicated']}", flush=True)
    finally:
        cleanup()
    return results, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes 10k and 100k")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="raw rows per round (default 10k 100k 1M)")
    ap.add_argument("--samples", type=int, default=4, help="games per task (tasks = rows / samples)")
    ap.add_argument("--generate-max", type=int, default=100_000,
                    help="raw rows generated for real; a larger size replicates them (default 100,000)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--keep", default=None, help="build each round's lake under DIR/<rows> and keep it")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_stage(args.child, Path(args.root), args)))
        return 0
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    table_rows = []
    notes = []
    for rows in sizes:
        keep = str(Path(args.keep) / str(rows)) if args.keep else None
        results, info = measure(rows, args, keep)
        label = f"rows_{rows // 1000}k" if rows < 1_000_000 else f"rows_{rows // 1_000_000}m"
        how = (f"{info['generated']:,} rows generated for real, replicated x{info['replicated']['copies']} to "
               f"{info['replicated']['rows']:,}" if "replicated" in info else f"all {rows:,} rows generated for real")
        notes.append(f"{rows:,} rows: {how}; {args.samples} samples per task")
        for r in results:
            n = r.get("rows", rows) if r["stage"] in ("generate", "verify") else rows
            ok = r["peak_rss_mb"] < GOAL_MB
            table_rows.append(C.Row(f"{rows:,} {r['stage']}", r["peak_rss_mb"], "MiB", goal=f"< {GOAL_MB:.0f} MiB",
                                    ok=ok, note=f"{r['seconds']:.2f}s, {n / r['seconds']:,.0f} rows/s; tree peak "
                                    f"{r['tree_peak_rss_mb']:.0f} MiB; "
                                    + json.dumps({k: v for k, v in r.items() if k not in (
                                        "seconds", "peak_rss_mb", "tree_peak_rss_mb", "rss_start_mb", "stage")})))
            C.metric(f"{label}.{r['stage']}.peak_rss_mib", r["peak_rss_mb"])
            C.metric(f"{label}.{r['stage']}.tree_peak_rss_mib", r["tree_peak_rss_mb"])
            C.metric(f"{label}.{r['stage']}.seconds", r["seconds"])
            C.metric(f"{label}.{r['stage']}.rows_per_s", n / r["seconds"])
        C.metric(f"{label}.replicated", "replicated" in info)
    C.print_table(f"one {ENV} round per size, each stage in a fresh child: peak RSS (VmHWM) and rows/s",
                  table_rows, notes=notes + ["rows/s = the round's raw rows / the stage's seconds (generate: "
                                             "the rows it played)", C.environment_note()])
    C.save_metrics("round_memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
