"""Housekeeping of runs and the lake: runs whose worker died are marked failed, and the temporary files
of killed writers are swept.

A run killed with its process (``kill -9`` of ``orbit run``, an OOM-killed run worker) stays ``STARTED``
forever: nothing is left to report its end (and it keeps any pool slot its steps claimed: given back here).
Every Dagster event records the pid of the process that emitted it, and a run's ``RUN_START`` event comes
from its worker (the ``orbit run`` process, or the run worker the daemon launched); a run in progress whose
worker is gone is reported failed, which also lets run retries pick it up. Run monitoring in
``dagster.yaml`` covers runs stuck starting or running too long.
"""

import dagster as dg

from orbit.io import lake
from orbit.io.home import process_alive

IN_PROGRESS = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]


def run_pids(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    """The pids of the run's worker (from its RUN_START events)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=10).records
    events = (r.event_log_entry.dagster_event for r in records)
    return sorted({e.pid for e in events if e is not None and e.pid is not None})


def fail_dead_runs(instance: dg.DagsterInstance, alive=process_alive) -> list[str]:
    """Report failed every in-progress run whose worker processes are all gone; returns their ids."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        pids = run_pids(instance, run.run_id)
        if pids and not any(alive(pid) for pid in pids):
            instance.report_run_failed(run, f"Orbit: the run's worker process (pid {', '.join(map(str, pids))}) "
                                            "is gone; the run was killed")
            free_pool_slots(instance, run.run_id)
            failed.append(run.run_id)
    return failed


def free_pool_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Give back the pool slots (``pool=`` on an asset) a killed run still holds; the daemon does this for the
    runs it watches, a headless command for the ones it found dead."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def sweep(instance: dg.DagsterInstance, lake_root) -> dict[str, int]:
    """Fail dead runs and remove the temporary files dead writers left in the lake."""
    failed = fail_dead_runs(instance)
    removed = lake.sweep_stale_tmp(lake_root)
    return {"runs_failed": len(failed), "tmp_removed": len(removed)}
