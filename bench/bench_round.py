"""One headless round through Dagster against the same work done by the engine alone, in the same run.

The Dagster side is what ``orbit run`` does for one round of all five envs: register the round,
then per env one in-process run of generate -> verify -> filter -> measure with their asset checks,
an export run and the report run, all recorded in a real instance. The baseline is the same stages
called directly (generator, verifier, filter, yields; Parquet written the same way), no Dagster.
Both sides use the env generators (``policy_envs`` empty) so they do identical work; CFR tables are
solved before either side is timed. Goal: Dagster <= 1.5x the engine alone.

    .venv/bin/python bench/bench_round.py [--tasks 100] [--quick]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _common import Row, environment_note, print_table, scratch_dir  # noqa: E402

ENVS = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "liveweb"]


def engine_round(lake_root: Path, round_key: str, tasks: int) -> None:
    from orbit.io import lake
    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.stages.filter import filter_file
    from orbit.io.keys import round_base_seed, round_index
    from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA
    from orbit.stages.verify import VerifyCounts, verify_batches
    from orbit.stages.yields import partition_yields

    for env in ENVS:
        spec = env_spec(env)
        family = family_of(spec)
        request = GenerationRequest(env=spec, round_key=round_key, num_tasks=tasks,
                                    samples_per_task=spec.samples_per_task,
                                    base_seed=round_base_seed(round_index(round_key)), workers=2, options={},
                                    lake=lake_root)
        raw = lake.partition_file(lake_root, "raw_samples", round_key, env)
        lake.write_batches(family.generate(request), RECORD_SCHEMA, raw)
        ver = lake.partition_file(lake_root, "verified_samples", round_key, env)
        lake.write_batches(verify_batches(lake.iter_batches(raw), family.verifier(spec), spec.pass_threshold,
                                          VerifyCounts()), VERIFIED_SCHEMA, ver)
        fil = lake.partition_file(lake_root, "filtered_dataset", round_key, env)
        filter_file(ver, fil)
        lake.write_table(partition_yields(ver, fil, round_key, env, {}),
                         lake.partition_file(lake_root, "yield_metrics", round_key, env))


def measure(tasks: int) -> list[Row]:
    import dagster as dg

    from orbit_assets.runner import Runner, raw_samples_config, run_rounds
    from resources import resources_for

    home, cleanup = scratch_dir("orbit-bench-round-")
    try:
        os.environ["ORBIT_HOME"] = str(home)
        (home / "dagster").mkdir()
        resources = resources_for(lake=str(home / "lake"), home=str(home), policy_envs=[])
        config = raw_samples_config(num_tasks=tasks)
        with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
            Runner(instance, resources, log=lambda m: None).ensure_cfr(ENVS)  # solved before timing
            engine_round(home / "lake", "r0000", tasks)  # warm: imports, demo cache, worker pool
            t0 = time.perf_counter()
            engine_round(home / "lake", "r0001", tasks)
            engine = time.perf_counter() - t0
            marks: list[tuple[float, str]] = []
            t0 = time.perf_counter()
            run_rounds(["r0002"], ENVS, instance=instance, resources=resources, run_config=config,
                       log=lambda m: marks.append((time.perf_counter(), m)))
            dagster_s = time.perf_counter() - t0
            # the five round x env runs alone (generate, verify, filter, measure and their checks)
            stages_s = next(t for t, m in marks if m.startswith("export_job")) - next(
                t for t, m in marks if m.startswith("round_job"))
            t0 = time.perf_counter()
            engine_round(home / "lake", "r0003", tasks)
            engine2 = time.perf_counter() - t0
    finally:
        cleanup()
    baseline = min(engine, engine2)
    ratio = dagster_s / baseline
    C.metric(f"tasks_{tasks}.dagster_s", dagster_s)
    C.metric(f"tasks_{tasks}.engine_s", baseline)
    C.metric(f"tasks_{tasks}.ratio_vs_engine", ratio)
    C.metric(f"tasks_{tasks}.stages_s", stages_s)
    C.metric(f"tasks_{tasks}.stages_ratio_vs_engine", stages_s / baseline)
    return [Row(f"round x env runs only, 5 envs x {tasks} tasks", stages_s, "s", baseline=baseline,
                ratio=stages_s / baseline, goal="<= 1.5x", ok=stages_s / baseline <= 1.5,
                note="the same stages as the engine loop: 5 in-process runs of generate -> verify -> filter -> "
                     "measure with their asset checks"),
            Row(f"headless round, 5 envs x {tasks} tasks", dagster_s, "s", baseline=baseline, ratio=ratio,
                goal="<= 1.5x", ok=ratio <= 1.5,
                note=f"engine alone {engine:.2f} s before and {engine2:.2f} s after (min as baseline); Dagster "
                     "adds the instance's event log, 7 runs (5 rounds x env, export, report), asset checks "
                     "and the exports/report stages the engine loop skips")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="30 tasks per env")
    args = ap.parse_args(argv)
    tasks = 30 if args.quick else args.tasks
    print_table("one headless round through Dagster vs the engine alone", measure(tasks), [environment_note()])
    C.save_metrics("round")


if __name__ == "__main__":
    main()
