"""Benchmark the LiveWeb teacher and trace verifier: trajectories per second with 1 and 2 workers.

    python bench/bench_liveweb.py [--tasks 10000] [--subtasks 2] [--quick]

Generation goes through ``FAMILY.generate`` (which, with 2 workers, builds chunks
in this process and in one forkserver pool process); verification runs the verify
stage's ``verify_batch`` over the generated batches the same way
(``orbit.envs.liveweb.parallel.ordered_map``). A fresh demo cache in a temporary folder
is used, so the lake and ORBIT_HOME stay untouched. Process start-up is included
in the timings.
"""

import argparse
import multiprocessing
import tempfile
import time
from functools import partial
from pathlib import Path

import pyarrow as pa

from orbit.envs.base import GenerationRequest
from orbit.envs.registry import env_spec
from orbit.envs.liveweb.demo_sites import ensure_demo_cache
from orbit.envs.liveweb.family import FAMILY
from orbit.envs.liveweb.parallel import ordered_map
from orbit.stages.verify import VerifyCounts, verify_batch

SPEC = env_spec("liveweb")
_worker_verifier = None


def _start_verifier(cache_dir: str) -> None:
    global _worker_verifier
    _worker_verifier = FAMILY.verifier(SPEC, {"cache_dir": cache_dir})


def _verify_with(verifier, batch: pa.RecordBatch) -> tuple[int, int]:
    counts = VerifyCounts()
    verify_batch(batch, verifier, SPEC.pass_threshold, counts)
    return counts.passed, counts.failed


def _verify_in_worker(batch: pa.RecordBatch) -> tuple[int, int]:
    return _verify_with(_worker_verifier, batch)


def generate(cache_dir: Path, tasks: int, subtasks: int, workers: int) -> tuple[float, list[pa.RecordBatch]]:
    request = GenerationRequest(env=SPEC, round_key="r0000", num_tasks=tasks, samples_per_task=1, workers=workers,
                                options={"cache_dir": str(cache_dir), "subtasks": subtasks})
    start = time.perf_counter()
    batches = list(FAMILY.generate(request))
    return time.perf_counter() - start, batches


def verify(cache_dir: Path, batches: list[pa.RecordBatch], workers: int) -> tuple[float, int, int]:
    start = time.perf_counter()
    verifier = FAMILY.verifier(SPEC, {"cache_dir": str(cache_dir)})
    if workers == 1:
        results = [_verify_with(verifier, batch) for batch in batches]
    else:
        results = list(ordered_map(partial(_verify_with, verifier), _verify_in_worker, batches, workers,
                                   _start_verifier, (str(cache_dir),)))
    seconds = time.perf_counter() - start
    return seconds, sum(p for p, _ in results), sum(f for _, f in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--subtasks", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke test: 1000 tasks")
    args = parser.parse_args()
    if args.quick:
        args.tasks = 1000

    with tempfile.TemporaryDirectory(prefix="bench-liveweb-") as tmp:
        start = time.perf_counter()
        cache_dir = ensure_demo_cache(Path(tmp) / "cache", seed=0)
        pages = sum(1 for _ in cache_dir.rglob("page.json"))
        print(f"demo cache: {pages} pages in {time.perf_counter() - start:.2f} s")
        print(f"tasks: {args.tasks}, subtasks per task: {args.subtasks}, cores: {multiprocessing.cpu_count()}")

        rows = []
        rates = {}
        baseline = None
        for workers in (1, 2):
            seconds, batches = generate(cache_dir, args.tasks, args.subtasks, workers)
            count = sum(b.num_rows for b in batches)
            rates["teacher", workers] = count / seconds
            rows.append(("teacher", workers, count, seconds, count / seconds, ""))
            baseline = baseline or batches
        for workers in (1, 2):
            seconds, passed, failed = verify(cache_dir, baseline, workers)
            count = passed + failed
            rates["verifier", workers] = count / seconds
            rows.append(("verifier", workers, count, seconds, count / seconds, f"passed {passed}, failed {failed}"))

    header = f"{'stage':<9} {'workers':>7} {'trajectories':>12} {'seconds':>8} {'traj/s':>9}  {'ratio 2w/1w':>11}  note"
    print(header)
    print("-" * len(header))
    for stage, workers, count, seconds, rate, note in rows:
        ratio = f"{rate / rates[stage, 1]:.2f}" if workers == 2 else ""
        print(f"{stage:<9} {workers:>7} {count:>12} {seconds:>8.2f} {rate:>9.0f}  {ratio:>11}  {note}")


if __name__ == "__main__":
    main()
