"""The flywheel: measured g with a clean and a noisy verifier, and wall time per round.

1. g over ``--rounds`` rounds of the embedded flywheel on tic_tac_toe (vs MCTS-30), from the
   same start, with a verifier that flips pass/fail with probability epsilon. Yield is measured
   with the clean verifier. Goal: g > 1.5 at epsilon = 0, visibly collapsing at 0.3 (ratio to
   epsilon = 0 printed).
2. Wall time per flywheel round through Dagster (real instance, in-process runs: generate,
   verify, filter, yields, exports, training) for the four game envs on 2 cores, against the
   same policy loop on tic_tac_toe done by the engine alone (no Dagster, no lake) in this run.

    .venv/bin/python bench/bench_flywheel.py [--rounds 5] [--quick]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Row, environment_note, print_table, scratch_dir  # noqa: E402

OPPONENT = {"opponent": {"kind": "mcts", "simulations": 30}}
GAME_ENVS = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker"]


def noise_rows(rounds: int, tasks: int) -> list[Row]:
    from orbit.flywheel.noise_study import run_flywheel

    rows, g0 = [], None
    for eps in (0.0, 0.1, 0.3):
        run = run_flywheel("tic_tac_toe", rounds=rounds, epsilon=eps, tasks=tasks, best_of=4, options=OPPONENT)
        g = run.fit.g
        g0 = g if eps == 0.0 else g0
        goal, ok = ("> 1.5", g is not None and g > 1.5) if eps == 0.0 else ("collapsing", None)
        if eps == 0.3:
            goal, ok = "< g(0), toward 1", g is not None and g0 is not None and g < g0 and g < 1.3
        rows.append(Row(
            name=f"g at epsilon={eps:g}", value=g, unit="", baseline=g0 if eps else None,
            ratio=(g / g0) if (eps and g and g0) else None, goal=goal, ok=ok,
            note=f"95% CI [{run.fit.g_low:.3f}, {run.fit.g_high:.3f}]; p by round "
                 f"{[round(p, 3) for p in run.pass_rates]}; the noisy verifier reported "
                 f"{[round(p, 3) for p in run.noisy_pass_rates]}",
        ))
    return rows


def dagster_round_rows(rounds: int, tasks: int) -> list[Row]:
    import dagster as dg

    from orbit.flywheel.noise_study import run_flywheel as engine_flywheel
    from orbit_assets.runner import raw_samples_config, run_flywheel
    from resources import resources_for

    home, cleanup = scratch_dir("orbit-bench-flywheel-")
    try:
        (home / "dagster").mkdir()
        os.environ["ORBIT_HOME"] = str(home)
        config = raw_samples_config(num_tasks=tasks, best_of=4, options=OPPONENT)
        with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
            t0 = time.perf_counter()
            run_flywheel(rounds, ["tic_tac_toe"], instance=instance, resources=resources_for(lake=str(home / "lake")),
                         run_config=config, log=lambda m: None)
            ttt = (time.perf_counter() - t0) / rounds
        t0 = time.perf_counter()
        engine_flywheel("tic_tac_toe", rounds=rounds, tasks=tasks, best_of=4, options=OPPONENT)
        engine = (time.perf_counter() - t0) / rounds
        home2, cleanup2 = scratch_dir("orbit-bench-flywheel-all-")
        try:
            (home2 / "dagster").mkdir()
            os.environ["ORBIT_HOME"] = str(home2)
            with dg.instance_for_test(temp_dir=str(home2 / "dagster")) as instance:
                t0 = time.perf_counter()
                run_flywheel(rounds, GAME_ENVS, instance=instance, resources=resources_for(lake=str(home2 / "lake")),
                             run_config=raw_samples_config(), log=lambda m: None)
                every = (time.perf_counter() - t0) / rounds
        finally:
            cleanup2()
    finally:
        cleanup()
    return [
        Row("Dagster round, tic_tac_toe", ttt, "s", baseline=engine, ratio=ttt / engine,
            note=f"{tasks} tasks x best-of-4 policy + self-play, all stages and checks; baseline: the engine's "
                 "policy loop alone (sample, verify, filter, train) on the same tasks"),
        Row("Dagster round, 4 game envs (make run)", every, "s",
            note="each env's default tasks, adaptive best-of-N policy sampling, exports and training"),
    ]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="3 rounds, 60 tasks")
    args = ap.parse_args(argv)
    rounds, tasks = (3, 60) if args.quick else (args.rounds, args.tasks)
    print_table(f"flywheel: measured g vs verifier noise ({rounds} rounds, {tasks} tasks x best-of-4)",
                noise_rows(rounds, tasks), [environment_note()])
    print_table(f"flywheel: wall time per round ({rounds} rounds)", dagster_round_rows(rounds, tasks))


if __name__ == "__main__":
    main()
