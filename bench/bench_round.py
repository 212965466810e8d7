"""One headless round through Dagster against the same work done by the engine alone, in the same run, on
each instance storage: SQLite (Dagster's default under DAGSTER_HOME) and PostgreSQL.

The Dagster side is what ``orbit run`` does for one round of all five envs: register the round,
then per env one in-process run of generate -> verify -> filter -> measure with their asset checks,
an export run and the report run, all recorded in a real instance made from the ``dagster.yaml`` Orbit
generates (``orbit home``; ``orbit home --postgres URL`` for the PostgreSQL leg). The baseline is the same
stages called directly (generator, verifier, filter, yields; Parquet written the same way), no Dagster,
measured before and after the Dagster round of the same leg (the smaller is the baseline). Both sides use
the env generators (``policy_envs`` empty) so they do identical work; CFR tables are solved before either
side is timed. Goal: Dagster <= 1.5x the engine alone. Each leg also counts the events the round wrote
to the instance's event log (per round and per round x env run).

The PostgreSQL leg starts a throwaway server from Debian's binaries (tests/scale/pg_server.py: initdb in a
temp dir, as the ``postgres`` user when run as root, 127.0.0.1 and a socket there; stopped by its pid). It
runs when the binaries are found (``/usr/lib/postgresql/<v>/bin`` or $ORBIT_PG_BIN), or with --postgres
(then missing binaries are an error); --no-postgres skips it.

    .venv/bin/python bench/bench_round.py [--tasks 100] [--quick] [--postgres | --no-postgres]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from _common import REPO, Row, environment_note, print_table, scratch_dir  # noqa: E402

ENVS = ["tic_tac_toe", "connect_four", "kuhn_poker", "leduc_poker", "liveweb"]


def engine_round(lake_root: Path, round_key: str, tasks: int, envs: list[str] = ENVS,
                 options: dict | None = None) -> None:
    """One round of ``envs`` through the engine's stages alone (generate, verify, filter, yields); ``options``
    are the envs' generation options (bench_ray forces the worker pool with ``pool_worth_seconds = 0``)."""
    from orbit.io import lake
    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.stages.filter import filter_file
    from orbit.io.keys import round_base_seed, round_index
    from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA
    from orbit.stages.verify import VerifyCounts, verify_batches
    from orbit.stages.yields import partition_yields

    for env in envs:
        spec = env_spec(env)
        family = family_of(spec)
        request = GenerationRequest(env=spec, round_key=round_key, num_tasks=tasks,
                                    samples_per_task=spec.samples_per_task,
                                    base_seed=round_base_seed(round_index(round_key)), workers=2,
                                    options=dict(options or {}), lake=lake_root)
        raw = lake.partition_file(lake_root, "raw_samples", round_key, env)
        lake.write_batches(family.generate(request), RECORD_SCHEMA, raw)
        ver = lake.partition_file(lake_root, "verified_samples", round_key, env)
        lake.write_batches(verify_batches(lake.iter_batches(raw), family.verifier(spec), spec.pass_threshold,
                                          VerifyCounts()), VERIFIED_SCHEMA, ver)
        fil = lake.partition_file(lake_root, "filtered_dataset", round_key, env)
        filter_file(ver, fil)
        lake.write_table(partition_yields(ver, fil, round_key, env, {}),
                         lake.partition_file(lake_root, "yield_metrics", round_key, env))


def _events(instance, run_ids: list[str]) -> int:
    return sum(len(instance.all_logs(run_id)) for run_id in run_ids)


def measure_leg(storage: str, tasks: int, cfr_from: Path | None, pg=None) -> tuple[dict, Path | None]:
    """One leg on one storage: engine, Dagster round, engine again, in a fresh home; figures in a dict."""
    import dagster as dg

    from orbit.envs.openspiel.family import cfr_table_file
    from orbit.io.home import ensure_home, use_postgres
    from orbit_assets.runner import Runner, raw_samples_config, run_rounds
    from resources import resources_for

    home, cleanup = scratch_dir(f"orbit-bench-round-{storage}-")
    saved = {k: os.environ.get(k) for k in ("ORBIT_HOME", "DAGSTER_HOME", "ORBIT_LAKE", "ORBIT_POSTGRES_PASSWORD")}
    try:
        os.environ["ORBIT_HOME"] = str(home)
        os.environ["DAGSTER_HOME"] = str(home / "dagster")
        os.environ.pop("ORBIT_LAKE", None)
        ensure_home()
        if pg is not None:
            os.environ["ORBIT_POSTGRES_PASSWORD"] = pg.password
            use_postgres(pg.tcp_url(pg.create_database("bench"), password=False), "ORBIT_POSTGRES_PASSWORD")
        lake_root = home / "lake"
        if cfr_from is not None:  # the CFR tables another leg solved: not solved twice
            cfr_table_file(lake_root).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cfr_from, cfr_table_file(lake_root))
        resources = resources_for(lake=str(lake_root), home=str(home), policy_envs=[])
        config = raw_samples_config(num_tasks=tasks)
        with dg.DagsterInstance.get() as instance:
            Runner(instance, resources, log=lambda m: None).ensure_cfr(ENVS)  # solved before timing
            engine_round(lake_root, "r0000", tasks)  # warm: imports, demo cache, worker pool
            t0 = time.perf_counter()
            engine_round(lake_root, "r0001", tasks)
            engine = time.perf_counter() - t0
            marks: list[tuple[float, str]] = []
            t0 = time.perf_counter()
            run_ids = run_rounds(["r0002"], ENVS, instance=instance, resources=resources, run_config=config,
                                 log=lambda m: marks.append((time.perf_counter(), m)))
            dagster_s = time.perf_counter() - t0
            # the five round x env runs alone (generate, verify, filter, measure and their checks)
            stages_s = next(t for t, m in marks if m.startswith("export_job")) - next(
                t for t, m in marks if m.startswith("round_job"))
            t0 = time.perf_counter()
            engine_round(lake_root, "r0003", tasks)
            engine2 = time.perf_counter() - t0
            stage_runs = [r for r in run_ids if instance.get_run_by_id(r).job_name == "round_job"]
            events = _events(instance, run_ids)
            stage_events = _events(instance, stage_runs)
            kind = type(instance.event_log_storage).__name__
        cfr = cfr_table_file(lake_root)
        kept = None
        if cfr_from is None and cfr.exists():
            kept = Path(tempfile.mkdtemp(prefix="orbit-bench-cfr-")) / cfr.name
            shutil.copy2(cfr, kept)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        cleanup()
    return {"storage": storage, "event_log": kind, "engine": engine, "engine2": engine2,
            "baseline": min(engine, engine2), "dagster_s": dagster_s, "stages_s": stages_s, "runs": len(run_ids),
            "events": events, "stage_runs": len(stage_runs), "stage_events": stage_events}, kept


def rows_for(leg: dict, tasks: int) -> list[Row]:
    storage, baseline = leg["storage"], leg["baseline"]
    prefix = f"tasks_{tasks}" if storage == "sqlite" else f"{storage}.tasks_{tasks}"  # SQLite keeps its old names
    ratio, stages_ratio = leg["dagster_s"] / baseline, leg["stages_s"] / baseline
    C.metric(f"{prefix}.dagster_s", leg["dagster_s"])
    C.metric(f"{prefix}.engine_s", baseline)
    C.metric(f"{prefix}.ratio_vs_engine", ratio)
    C.metric(f"{prefix}.stages_s", leg["stages_s"])
    C.metric(f"{prefix}.stages_ratio_vs_engine", stages_ratio)
    C.metric(f"{prefix}.events_per_round", leg["events"])
    C.metric(f"{prefix}.events_per_round_env_run", leg["stage_events"] / max(1, leg["stage_runs"]))
    return [Row(f"[{storage}] round x env runs only, 5 envs x {tasks} tasks", leg["stages_s"], "s",
                baseline=baseline, ratio=stages_ratio, goal="<= 1.5x", ok=stages_ratio <= 1.5,
                note=f"the same stages as the engine loop: {leg['stage_runs']} in-process runs of generate -> verify "
                     f"-> filter -> measure with their asset checks; {leg['stage_events']} events "
                     f"({leg['stage_events'] / max(1, leg['stage_runs']):.0f} per run) in {leg['event_log']}"),
            Row(f"[{storage}] headless round, 5 envs x {tasks} tasks", leg["dagster_s"], "s", baseline=baseline,
                ratio=ratio, goal="<= 1.5x", ok=ratio <= 1.5,
                note=f"engine alone {leg['engine']:.2f} s before and {leg['engine2']:.2f} s after (min as baseline); "
                     f"Dagster adds the instance's event log ({leg['events']} events), {leg['runs']} runs "
                     f"(5 round x env, export, report), asset checks and the exports/report stages the engine "
                     f"loop skips")]


def measure(tasks: int, postgres: bool | None) -> list[Row]:
    rows: list[Row] = []
    leg, cfr = measure_leg("sqlite", tasks, None)
    rows += rows_for(leg, tasks)
    try:
        sys.path.insert(0, str(REPO / "tests" / "scale"))
        from pg_server import PostgresServer, pg_bindir  # tests/scale/pg_server.py

        if postgres is None:
            postgres = pg_bindir() is not None
        if postgres:
            pg = PostgresServer().start()
            try:
                leg, _ = measure_leg("postgres", tasks, cfr, pg)
            finally:
                pg.stop()
            rows += rows_for(leg, tasks)
        else:
            rows.append(Row("[postgres] headless round", None, "s", note="skipped: no PostgreSQL server binaries "
                            "(apt-get install postgresql, or ORBIT_PG_BIN)"))
    finally:
        if cfr is not None:
            shutil.rmtree(cfr.parent, ignore_errors=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="30 tasks per env")
    pg = ap.add_mutually_exclusive_group()
    pg.add_argument("--postgres", dest="postgres", action="store_true", default=None,
                    help="require the PostgreSQL leg (default: run it when the server binaries are found)")
    pg.add_argument("--no-postgres", dest="postgres", action="store_false", help="SQLite only")
    args = ap.parse_args(argv)
    tasks = 30 if args.quick else args.tasks
    print_table("one headless round through Dagster vs the engine alone (SQLite, PostgreSQL)",
                measure(tasks, args.postgres), [environment_note()])
    C.save_metrics("round")


if __name__ == "__main__":
    main()
