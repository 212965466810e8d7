"""One headless round through Dagster against the same work done by the engine alone, in the same run, on
each instance storage: SQLite (Dagster's default under DAGSTER_HOME) and PostgreSQL.

The Dagster side is what ``orbit run`` does for one round of all five envs: register the round,
then per env one in-process run of generate -> verify -> filter -> measure with their asset checks,
an export run and the report run, all recorded in a real instance made from the ``dagster.yaml`` Orbit
generates (``orbit home``; ``orbit home --postgres URL`` for the PostgreSQL leg). The baseline is the same
stages called directly (generator, verifier, filter, yields; Parquet written the same way), no Dagster,
measured in the same leg, alternating with the Dagster round. Both sides use
the env generators (``policy_envs`` empty) so they do identical work; CFR tables are solved before either
side is timed. Each side has its own lake and first plays a warm-up round (imports, caches; Dagster's job
snapshots); then they alternate, engine, Dagster, engine, Dagster, ..., each on the next round of the same sizes
in its own lake (so a round's cumulative exports and reports cover as many rounds on both sides), and each
side's best of ``SAMPLES`` (three) is compared (a noisy host moves either by 20%). Goal: Dagster <= 1.5x the
engine alone. Each leg also counts the events the round wrote
to the instance's event log (per round and per round x env run).

The PostgreSQL leg starts a throwaway server from Debian's binaries (tests/scale/pg_server.py: initdb in a
temp dir, as the ``postgres`` user when run as root, 127.0.0.1 and a socket there; stopped by its pid) with
PostgreSQL's own durability settings (fsync, synchronous commits, full-page writes), as a deployment runs it;
the test suites' servers turn those off. It runs when the binaries are found (``/usr/lib/postgresql/<v>/bin``
or $ORBIT_PG_BIN), or with --postgres (then missing binaries are an error); --no-postgres skips it.

    .venv/bin/python bench/bench_round.py [--tasks N] [--quick] [--postgres | --no-postgres]
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
SAMPLES = 3  # rounds per side, alternating; each side's fastest is compared (this host moves either by 20%)


def engine_round(lake_root: Path, round_key: str, tasks: int | None, envs: list[str] = ENVS,
                 options: dict | None = None, exports: bool = False) -> tuple[float, float]:
    """One round of ``envs`` through the engine's stages alone (generate, verify, filter, yields); ``options``
    are the envs' generation options (bench_ray forces the worker pool with ``pool_worth_seconds = 0``).
    ``tasks`` None: each env's own default size. ``exports``: then the round's exports, cumulative training
    set, DuckDB report and flywheel report, as the export and report runs of a headless round do.
    Returns the seconds of the per-env stages and of the exports."""
    from orbit.io import lake
    from orbit.envs import GenerationRequest, env_spec, family_of
    from orbit.stages.filter import filter_file
    from orbit.io.keys import round_base_seed, round_index
    from orbit.io.schema import RECORD_SCHEMA, VERIFIED_SCHEMA
    from orbit.stages.verify import VerifyCounts, verify_batches
    from orbit.stages.yields import partition_yields

    t0 = time.perf_counter()
    for env in envs:
        spec = env_spec(env)
        family = family_of(spec)
        request = GenerationRequest(env=spec, round_key=round_key, num_tasks=spec.num_tasks if tasks is None else tasks,
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
    t1 = time.perf_counter()
    if exports:
        engine_exports(lake_root, round_key)
    return t1 - t0, time.perf_counter() - t1


def engine_exports(lake_root: Path, round_key: str) -> None:
    """The export run's and the report run's work through the engine alone: SFT, DPO and GRPO exports, the
    cumulative training set, the DuckDB report and the flywheel report with its chart."""
    from orbit.flywheel.report import chart_png, fits, per_round
    from orbit.io import lake
    from orbit.query import build_report_db
    from orbit.stages.export import cumulative_training_set, export_round

    for kind in ("sft", "dpo", "grpo"):
        export_round(kind, lake_root, round_key, lake.partition_dir(lake_root, f"{kind}_export", round_key))
    stream = cumulative_training_set(lake_root, round_key)
    lake.write_batches(stream, stream.schema, lake.partition_file(lake_root, "training_set", round_key))
    build_report_db(lake_root, Path(lake_root) / "orbit.duckdb")
    rounds = per_round(lake_root)
    fit_table = fits(rounds, 0.5)  # FlywheelReportConfig's default target
    lake.write_table(fit_table, lake.partition_file(lake_root, "flywheel_report"))
    lake.write_bytes(chart_png(rounds, fit_table), lake.report_file(lake_root, "flywheel.png"))


def floor_runs(instance, runs: int = len(ENVS)) -> float:
    """Dagster's own cost of the round x env runs: as many in-process runs as a round has, each of four asset
    steps that do nothing (no IO manager work, no checks, no resources but a no-op IO manager), partitioned
    round x env, on the same instance. No asset code can make a run cheaper than this."""
    import dagster as dg

    parts = dg.MultiPartitionsDefinition({"env": dg.StaticPartitionsDefinition(ENVS),
                                          "round": dg.StaticPartitionsDefinition(["f0000"])})

    @dg.asset(partitions_def=parts)
    def floor_a():
        return None

    @dg.asset(partitions_def=parts, deps=[floor_a])
    def floor_b():
        return None

    @dg.asset(partitions_def=parts, deps=[floor_b])
    def floor_c():
        return None

    @dg.asset(partitions_def=parts, deps=[floor_c])
    def floor_d():
        return None

    class NoIO(dg.ConfigurableIOManager):
        def handle_output(self, context, obj):
            pass

        def load_input(self, context):
            return None

    job = dg.Definitions(assets=[floor_a, floor_b, floor_c, floor_d], resources={"io_manager": NoIO()},
                         jobs=[dg.define_asset_job("floor_job")]).resolve_job_def("floor_job")
    config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    job.execute_in_process(instance=instance, run_config=config,  # warm: the job's first run builds its plan caches
                           partition_key=dg.MultiPartitionKey({"env": ENVS[0], "round": "f0000"}))
    t0 = time.perf_counter()
    for env in ENVS[:runs]:
        job.execute_in_process(instance=instance, run_config=config,
                               partition_key=dg.MultiPartitionKey({"env": env, "round": "f0000"}))
    return time.perf_counter() - t0


def dagster_round(instance, round_key: str, resources, config) -> tuple[float, float, list[str]]:
    """One headless round through Dagster (what ``orbit run`` does): (seconds of the whole round, seconds of its
    five round x env runs alone, its run ids)."""
    from orbit_assets.runner import run_rounds

    marks: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    run_ids = run_rounds([round_key], ENVS, instance=instance, resources=resources, run_config=config,
                         log=lambda m: marks.append((time.perf_counter(), m)))
    whole = time.perf_counter() - t0
    # the five round x env runs alone (generate, verify, filter, measure and their checks)
    stages = next(t for t, m in marks if m.startswith("export_job")) - next(
        t for t, m in marks if m.startswith("round_job"))
    return whole, stages, run_ids


def _events(instance, run_ids: list[str]) -> int:
    return sum(len(instance.all_logs(run_id)) for run_id in run_ids)


def measure_leg(storage: str, tasks: int | None, cfr_from: Path | None, pg=None) -> tuple[dict, Path | None]:
    """One leg on one storage: engine, Dagster round, engine again, in a fresh home; figures in a dict."""
    import dagster as dg

    from orbit.envs.openspiel.family import cfr_table_file
    from orbit.io.home import ensure_home, use_postgres
    from orbit.io.keys import round_key
    from orbit_assets.runner import Runner, raw_samples_config
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
            # each side has its own lake with the same history, so that its n-th round's cumulative exports and
            # reports cover as many rounds as the other side's n-th
            engine_lake = home / "engine-lake"
            cfr_table_file(engine_lake).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cfr_table_file(lake_root), cfr_table_file(engine_lake))
            # warm, both: imports, demo cache, worker pool; Dagster's job snapshots and plan caches
            engine_round(engine_lake, round_key(0), tasks, exports=True)
            dagster_round(instance, round_key(0), resources, config)
            # engine, Dagster, engine, Dagster, ... on fresh rounds of the same sizes: each side's best of SAMPLES
            engines, dagsters = [], []
            for n in range(1, SAMPLES + 1):
                engines.append(engine_round(engine_lake, round_key(n), tasks, exports=True))
                dagsters.append(dagster_round(instance, round_key(n), resources, config))
            dagster_s, stages_s = min(d[0] for d in dagsters), min(d[1] for d in dagsters)
            run_ids = dagsters[0][2]
            floor_s = floor_runs(instance)
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
    return {"storage": storage, "event_log": kind, "engines": engines,
            "stages_baseline": min(e[0] for e in engines), "baseline": min(sum(e) for e in engines),
            "dagster_s": dagster_s, "stages_s": stages_s, "runs": len(run_ids), "floor_s": floor_s,
            "dagster_all": [d[0] for d in dagsters], "stages_all": [d[1] for d in dagsters],
            "events": events, "stage_runs": len(stage_runs), "stage_events": stage_events,
            "server": pg.durability() if pg is not None else ""}, kept


def size_label(tasks: int | None) -> str:
    return "each env's default size" if tasks is None else f"{tasks} tasks"


def rows_for(leg: dict, tasks: int | None) -> list[Row]:
    storage, baseline, stages_baseline = leg["storage"], leg["baseline"], leg["stages_baseline"]
    size = "default" if tasks is None else str(tasks)
    prefix = f"tasks_{size}" if storage == "sqlite" else f"{storage}.tasks_{size}"  # SQLite keeps its old names
    ratio, stages_ratio = leg["dagster_s"] / baseline, leg["stages_s"] / stages_baseline
    C.metric(f"{prefix}.dagster_s", leg["dagster_s"])
    C.metric(f"{prefix}.engine_s", baseline)
    C.metric(f"{prefix}.ratio_vs_engine", ratio)
    C.metric(f"{prefix}.stages_s", leg["stages_s"])
    C.metric(f"{prefix}.stages_engine_s", stages_baseline)
    C.metric(f"{prefix}.stages_ratio_vs_engine", stages_ratio)
    C.metric(f"{prefix}.floor_s", leg["floor_s"])
    C.metric(f"{prefix}.floor_vs_engine", leg["floor_s"] / stages_baseline)
    C.metric(f"{prefix}.events_per_round", leg["events"])
    C.metric(f"{prefix}.events_per_round_env_run", leg["stage_events"] / max(1, leg["stage_runs"]))

    def times(values) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    engine_stages, engine_whole = [e[0] for e in leg["engines"]], [sum(e) for e in leg["engines"]]
    return [Row(f"[{storage}] round x env runs only, 5 envs, {size_label(tasks)}", leg["stages_s"], "s",
                baseline=stages_baseline, ratio=stages_ratio, goal="<= 1.5x", ok=stages_ratio <= 1.5,
                note=f"the same stages as the engine loop: {leg['stage_runs']} in-process runs of generate -> verify "
                     f"-> filter -> measure with their asset checks; {leg['stage_events']} events "
                     f"({leg['stage_events'] / max(1, leg['stage_runs']):.0f} per run) in {leg['event_log']}; "
                     f"engine stages {times(engine_stages)} s, Dagster's runs {times(leg['stages_all'])} s, "
                     f"alternating (each side's min)"
                     + (f"; the server's fsync, synchronous_commit, full_page_writes: {leg['server']}"
                        if leg["server"] else "")),
            Row(f"[{storage}] Dagster's floor: 5 runs of 4 no-op asset steps", leg["floor_s"], "s",
                baseline=stages_baseline, ratio=leg["floor_s"] / stages_baseline,
                note="the same instance, five round x env runs of four assets that do nothing: what a run costs "
                     "before any of Orbit's work; the 1.5x goal leaves 0.5x of the engine's stage time for it and "
                     "everything else Dagster adds"),
            Row(f"[{storage}] headless round, 5 envs, {size_label(tasks)}", leg["dagster_s"], "s", baseline=baseline,
                ratio=ratio, goal="<= 1.5x", ok=ratio <= 1.5,
                note=f"engine alone (stages + exports, training set, DuckDB and flywheel reports) "
                     f"{times(engine_whole)} s, Dagster {times(leg['dagster_all'])} s, alternating (each side's "
                     f"min); Dagster adds the round's registration, {leg['runs']} runs (5 round x env, export, "
                     f"report), the asset checks, round_yields and the instance's event log ({leg['events']} events)")]


def measure(tasks: int | None, postgres: bool | None) -> list[Row]:
    rows: list[Row] = []
    leg, cfr = measure_leg("sqlite", tasks, None)
    rows += rows_for(leg, tasks)
    try:
        sys.path.insert(0, str(REPO / "tests" / "scale"))
        from pg_server import PostgresServer, pg_bindir  # tests/scale/pg_server.py

        if postgres is None:
            postgres = pg_bindir() is not None
        if postgres:
            pg = PostgresServer(durable=True).start()
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
    ap.add_argument("--tasks", type=int, default=None,
                    help="tasks per env (default: each env's own default size, as a round has it)")
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
