"""Housekeeping of runs and the lake: runs whose worker died are marked failed, and the temporary files
of killed writers are swept.

A run killed with its process (``kill -9`` of ``orbit run``, an OOM-killed run worker) stays ``STARTED``
forever: nothing is left to report its end. Every run records its worker's pid in its engine events
(``Started process for run (pid: N)`` for launched runs, ``Executing steps in process (pid: N)`` for
in-process ones); a run in progress whose every recorded pid is gone is reported failed, which also lets
run retries pick it up. Run monitoring in ``dagster.yaml`` covers runs stuck starting or running too long.
"""

import dagster as dg

from orbit import lake
from orbit.home import process_alive

IN_PROGRESS = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]


def run_pids(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50).records
    pids = []
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event is not None else None
        if data is not None and data.pid is not None and data.pid not in pids:
            pids.append(data.pid)
    return pids


def fail_dead_runs(instance: dg.DagsterInstance, alive=process_alive) -> list[str]:
    """Report failed every in-progress run whose worker processes are all gone; returns their ids."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        pids = run_pids(instance, run.run_id)
        if pids and not any(alive(pid) for pid in pids):
            instance.report_run_failed(run, f"Orbit: the run's worker process (pid {', '.join(map(str, pids))}) "
                                            "is gone; the run was killed")
            failed.append(run.run_id)
    return failed


def sweep(instance: dg.DagsterInstance, lake_root) -> dict[str, int]:
    """Fail dead runs and remove the temporary files dead writers left in the lake."""
    failed = fail_dead_runs(instance)
    removed = lake.sweep_stale_tmp(lake_root)
    return {"runs_failed": len(failed), "tmp_removed": len(removed)}
