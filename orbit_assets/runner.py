"""Headless runs through Dagster: what ``make run`` and ``orbit run`` do.

Runs go through the jobs of the code location on the instance in
``DAGSTER_HOME``, so the Dagster UI shows them afterwards.
"""

import json
from typing import Any, Iterable, Mapping

import dagster as dg

from orbit.envs import ENV_NAMES
from orbit.home import ensure_home
from orbit.keys import round_key, validate_env
from orbit_assets.partitions import ROUNDS, round_env_key


class RunFailed(RuntimeError):
    pass


def _check(result, what: str) -> None:
    if not result.success:
        causes = "; ".join(
            e.step_failure_data.error.message.strip().splitlines()[0]
            for e in result.get_step_failure_events() if e.step_failure_data and e.step_failure_data.error
        )
        raise RunFailed(f"{what} failed (run {result.run_id}): {causes or 'see `make ui` for the logs'}")


def raw_samples_config(num_tasks: int | None = None, samples_per_task: int | None = None,
                       options: Mapping[str, Any] | None = None, **extra) -> dict:
    cfg: dict[str, Any] = {"options_json": json.dumps(dict(options or {}))}
    if num_tasks is not None:
        cfg["num_tasks"] = num_tasks
    if samples_per_task is not None:
        cfg["samples_per_task"] = samples_per_task
    cfg.update({k: v for k, v in extra.items() if v is not None})
    return {"ops": {"raw_samples": {"config": cfg}}}


def run_rounds(rounds: Iterable[str], envs: Iterable[str] | None = None, *, instance: dg.DagsterInstance | None = None,
               resources: Mapping[str, Any] | None = None, run_config: Mapping[str, Any] | None = None,
               export: bool = True, log=print) -> list[str]:
    """Materialize every (round, env) partition given, then the report; returns the run ids."""
    from orbit_assets.definitions import build_defs

    ensure_home()
    instance = instance or dg.DagsterInstance.get()
    envs = [validate_env(e, ENV_NAMES) for e in (envs or ENV_NAMES)]
    rounds = list(rounds)
    defs = build_defs(dict(resources) if resources else None)
    instance.add_dynamic_partitions(ROUNDS, [r for r in rounds if not instance.has_dynamic_partition(ROUNDS, r)])
    run_ids = []
    cfr = defs.resolve_job_def("cfr_job")
    if not instance.get_latest_materialization_event(dg.AssetKey("cfr_policies")):
        log("cfr_policies: solving CFR average policies")
        result = cfr.execute_in_process(instance=instance, raise_on_error=False)
        _check(result, "cfr_job")
        run_ids.append(result.run_id)
    job = defs.resolve_job_def("round_job")
    exports = defs.resolve_job_def("export_job")
    for r in rounds:
        for env in envs:
            log(f"round_job {r} x {env}")
            result = job.execute_in_process(
                partition_key=round_env_key(r, env), instance=instance, run_config=dict(run_config or {}),
                raise_on_error=False,
            )
            _check(result, f"round_job {r} x {env}")
            run_ids.append(result.run_id)
        if export:
            log(f"export_job {r}")
            result = exports.execute_in_process(partition_key=r, instance=instance, raise_on_error=False)
            _check(result, f"export_job {r}")
            run_ids.append(result.run_id)
    result = defs.resolve_job_def("report_job").execute_in_process(instance=instance, raise_on_error=False)
    _check(result, "report_job")
    run_ids.append(result.run_id)
    return run_ids


def round_keys(n: int, start: int = 0) -> list[str]:
    return [round_key(i) for i in range(start, start + n)]
