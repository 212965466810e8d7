"""A round's wall time on the local process pool vs through Ray on one node, in the same run.

A real one-node Ray head is started for the bench (``ray start --head --num-cpus 2``, loopback only,
from this venv: ``tests/scale/ray_head.py``) and stopped at its end. The round is the engine's, as
``bench_round.engine_round`` runs it: for each self-play env (tic_tac_toe, connect_four, kuhn_poker,
leduc_poker) generate -> verify -> filter -> yields, Parquet written the same way, workers=2; the
generation chunks go to the pool (``pool_worth_seconds`` 0, so both sides hand the same chunks out).
Local = this process's forkserver pool; Ray = the same calls with ``ORBIT_RAY_ADDRESS`` set, so every
chunk is a Ray task (one CPU). Both sides are warm (pool started, Ray joined and its workers up, CFR
tables solved) before timing; the rounds alternate (local, Ray, local, Ray, ...), median per side.
Each side's start-up (pool start; joining Ray and warming its workers) is shown on its own.
The Ray round's raw and verified partitions are checked equal, row for row, to the local round's.

The CPU probe (``_common.parallel_capacity``: 2.0 = two free cores) is taken before and after: on a
shared host the ratio means little when the probe is far below 2.

    .venv/bin/python bench/bench_ray.py [--tasks 1500] [--repeat 3] [--quick]

Needs the ``scale`` dependency group (ray); without it the bench says so and exits 0.
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

ENVS = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker"]
GOAL = 1.5  # Ray on one node: a round at most 1.5x the local pool's wall time


def engine_round(lake_root: Path, round_key: str, tasks: int) -> None:
    """bench_round's engine-only round on the self-play envs, every chunk on the worker pool (local or Ray)."""
    from bench_round import engine_round as round_of

    round_of(lake_root, round_key, tasks, ENVS, {"pool_worth_seconds": 0})


def same_partitions(lake_a: Path, lake_b: Path, round_key: str) -> bool:
    from orbit.io import lake

    for env in ENVS:
        for asset in ("raw_samples", "verified_samples"):
            a = lake.read_table(lake.partition_file(lake_a, asset, round_key, env))
            b = lake.read_table(lake.partition_file(lake_b, asset, round_key, env))
            if not a.equals(b):
                return False
    return True


def measure(tasks: int, repeat: int) -> tuple[list[C.Row], list[str]]:
    sys.path.insert(0, str(C.REPO / "tests" / "scale"))
    from ray_head import RayHead

    from orbit.compute import ray_backend, workers

    probe_start = C.parallel_capacity(2)
    home, cleanup = C.scratch_dir("orbit-bench-ray-")
    head = RayHead(num_cpus=2, new_session=False)  # the bench's session: the same CPU share as the local pool
    try:
        os.environ["ORBIT_HOME"] = str(home)
        local_lake, ray_lake = home / "local", home / "ray"
        t_head, _ = C.timed(head.start)
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update(head.client_env)

        def use(address: str | None) -> None:
            if address:
                os.environ["ORBIT_RAY_ADDRESS"] = address
            else:
                os.environ.pop("ORBIT_RAY_ADDRESS", None)

        use(None)
        t_pool, _ = C.timed(lambda: workers.start_pool(2).result())
        engine_round(local_lake, "r0000", min(tasks, 200))  # warm: imports, CFR tables, game loads
        use(head.address)
        t_join, _ = C.timed(lambda: workers.start_pool(2).result(timeout=600))
        engine_round(ray_lake, "r0000", min(tasks, 200))

        samples: dict[str, list[float]] = {"local": [], "ray": []}
        tasks_before = ray_backend.STATS["tasks"]
        for i in range(repeat):
            round_key = f"r{i + 1:04d}"
            for side, lake_root in (("local", local_lake), ("ray", ray_lake)) if i % 2 == 0 else \
                    (("ray", ray_lake), ("local", local_lake)):
                use(head.address if side == "ray" else None)
                t0 = time.perf_counter()
                engine_round(lake_root, round_key, tasks)
                samples[side].append(time.perf_counter() - t0)
        ray_tasks = (ray_backend.STATS["tasks"] - tasks_before) / repeat
        session = os.getsid(0)
        head_sessions = {os.getsid(p.pid) for p in head.processes() if p.is_running()}
        same = all(same_partitions(local_lake, ray_lake, f"r{i + 1:04d}") for i in range(repeat))
        use(None)
        ray_backend.disconnect()
    finally:
        for key in ("ORBIT_RAY_ADDRESS", *head.client_env):
            os.environ.pop(key, None)
        head.stop()
        workers.shutdown_pool()
        cleanup()
    probe_end = C.parallel_capacity(2)

    local_s, ray_s = statistics.median(samples["local"]), statistics.median(samples["ray"])
    ratio = ray_s / local_s
    # each pair ran back to back, so it shares the host's phase: the median of the pairs' ratios
    pair_ratios = [r / l for l, r in zip(samples["local"], samples["ray"])]
    paired = statistics.median(pair_ratios)
    for name, value in (("tasks", tasks), ("local_s", local_s), ("ray_s", ray_s), ("ray_over_local", ratio), ("ray_over_local_paired", paired),
                        ("ray_tasks_per_round", ray_tasks), ("same_rows", same), ("cpu_probe_start", probe_start),
                        ("cpu_probe_end", probe_end), ("head_start_s", t_head), ("pool_start_s", t_pool),
                        ("ray_join_s", t_join)):
        C.metric(name, value)
    runs = lambda side: ", ".join(f"{s:.2f}" for s in samples[side])  # noqa: E731
    rows = [
        C.Row(f"round ({len(ENVS)} envs x {tasks} tasks): local pool, workers=2", local_s, "s",
              note=f"runs {runs('local')}s"),
        C.Row("the same round through Ray (1 node, 2 CPUs)", ray_s, "s", local_s, ratio, f"<= {GOAL}x local",
              ratio <= GOAL, note=f"runs {runs('ray')}s; {ray_tasks:.0f} Ray tasks per round; "
                                  f"rows {'the same' if same else 'DIFFERENT'} as the local round's"),
        C.Row("the same, median of the pairs' ratios", paired, "x", note="pairs (Ray / local): "
              + ", ".join(f"{r:.2f}" for r in pair_ratios)),
        C.Row("start-up: local pool (2 forkserver workers)", t_pool, "s"),
        C.Row("start-up: join Ray and warm 2 workers (first job: ships orbit)", t_join, "s"),
        C.Row("start-up: ray start --head", t_head, "s"),
    ]
    notes = [f"CPU probe: {probe_start:.2f}x at start, {probe_end:.2f}x at end (2.0 = two free cores); "
             "ratio = Ray round / local round (lower is better)",
             "the rounds alternate local/Ray (each pair in turn starting with the other side); median per side",
             "the head runs in this bench's session ("
             + ("every head process: yes" if head_sessions == {session} else f"NO: sessions {sorted(head_sessions)}")
             + "): with autogroup scheduling a head in a session of its own gets its own share of a busy host's "
               "CPUs, and Ray would look faster than the local pool for that reason alone",
             C.environment_note()]
    if not same:
        notes.append("MISMATCH: the Ray round's partitions differ from the local round's")
    return rows, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke test")
    ap.add_argument("--tasks", type=int, default=None, help="tasks per env (default 1500; quick 300)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds per side, median (default 3; quick 1)")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("ray") is None:
        print("bench_ray: skipped, ray is not installed (the scale dependency group: uv sync --group scale)")
        return 0
    tasks = args.tasks or (300 if args.quick else 1500)
    repeat = args.repeat or (1 if args.quick else 3)
    rows, notes = measure(tasks, repeat)
    C.print_table("A round: local process pool vs Ray on one node", rows, notes)
    C.save_metrics("ray")
    return 0


if __name__ == "__main__":
    sys.exit(main())
