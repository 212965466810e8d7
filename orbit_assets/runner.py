"""Headless runs through Dagster: what ``make run`` and ``orbit run`` do.

Runs go through the jobs of the code location on the instance in
``DAGSTER_HOME``, so the Dagster UI shows them afterwards.
"""

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import dagster as dg

from orbit.checkpoints import read_checkpoint
from orbit.envs import ENV_NAMES
from orbit.home import ensure_home
from orbit.keys import round_index, round_key, validate_env
from orbit.rounds import RoundRegistry
from orbit_assets.partitions import ROUNDS, round_env_key

UNIFORM_POLICY = "embedded:uniform"
CONSOLE_LOG_LEVEL = "WARNING"


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


class Runner:
    """Executes the code location's jobs in process on one instance."""

    def __init__(self, instance: dg.DagsterInstance | None = None, resources: Mapping[str, Any] | None = None,
                 log=print):
        from orbit_assets.definitions import build_defs

        ensure_home()
        self.instance = instance or dg.DagsterInstance.get()
        self.defs = build_defs(dict(resources) if resources else None)
        self.settings = self.defs.resources["settings"]
        self.log = log
        self.run_ids: list[str] = []

    def execute(self, job: str, what: str, run_config: Mapping[str, Any] | None = None, **kwargs) -> None:
        self.log(what)
        # the full event log is in the instance (`make ui`); the console only shows warnings
        config = {**dict(run_config or {}), "loggers": {"console": {"config": {"log_level": CONSOLE_LOG_LEVEL}}}}
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=config, **kwargs)
        _check(result, what)
        self.run_ids.append(result.run_id)

    def add_rounds(self, rounds: Iterable[str]) -> None:
        missing = [r for r in rounds if not self.instance.has_dynamic_partition(ROUNDS, r)]
        if missing:
            self.instance.add_dynamic_partitions(ROUNDS, missing)

    def ensure_cfr(self) -> None:
        if not self.instance.get_latest_materialization_event(dg.AssetKey("cfr_policies")):
            self.execute("cfr_job", "cfr_policies: solving CFR average policies")

    def round(self, r: str, envs: list[str], run_config: Mapping[str, Any] | None, tags: Mapping[str, str],
              export: bool = True) -> None:
        for env in envs:
            self.execute("round_job", f"round_job {r} x {env}", partition_key=round_env_key(r, env),
                         run_config=run_config, tags=dict(tags))
        if export:
            self.execute("export_job", f"export_job {r}", partition_key=r, tags=dict(tags))

    def report(self) -> None:
        self.execute("report_job", "report_job")


def run_rounds(rounds: Iterable[str], envs: Iterable[str] | None = None, *, instance: dg.DagsterInstance | None = None,
               resources: Mapping[str, Any] | None = None, run_config: Mapping[str, Any] | None = None,
               export: bool = True, log=print) -> list[str]:
    """Materialize every (round, env) partition given, then the reports; returns the run ids."""
    runner = Runner(instance, resources, log)
    envs = [validate_env(e, ENV_NAMES) for e in (envs or ENV_NAMES)]
    rounds = list(rounds)
    runner.add_rounds(rounds)
    runner.ensure_cfr()
    for r in rounds:
        runner.round(r, envs, run_config, {"orbit/round": r}, export)
    runner.report()
    return runner.run_ids


def run_flywheel(rounds: int, envs: Iterable[str] | None = None, *, instance: dg.DagsterInstance | None = None,
                 resources: Mapping[str, Any] | None = None, run_config: Mapping[str, Any] | None = None,
                 first_policy: str = UNIFORM_POLICY, train_config: Mapping[str, Any] | None = None,
                 checkpoint_prefix: str = "embedded", log=print) -> list[str]:
    """Turn the flywheel: each round samples the policy the previous round's training produced.

    Round r0000 samples ``first_policy``; after each round the embedded trainer writes the
    checkpoint the next round is registered with. Rounds already in the registry keep their policy.
    """
    runner = Runner(instance, resources, log)
    envs = [validate_env(e, ENV_NAMES) for e in (envs or ENV_NAMES)]
    registry = RoundRegistry(runner.settings.lake_path())
    runner.ensure_cfr()
    checkpoint = None
    for t in range(rounds):
        r = round_key(t)
        entry = registry.get(r)
        if entry is None:
            if checkpoint is None:
                entry = registry.add(first_policy, key=r, note="flywheel start")
            else:
                entry = registry.add(checkpoint.policy, key=r, checkpoint=checkpoint.name,
                                     parent_round=checkpoint.parent_round, note=checkpoint.note)
        runner.add_rounds([r])
        tags = {"orbit/round": r, "orbit/policy": entry.policy}
        runner.round(r, envs, run_config, tags)
        if t + 1 < rounds:
            runner.execute("train_job", f"train_job {r}", partition_key=r, tags=tags, run_config=train_config)
            checkpoint = read_checkpoint(
                Path(runner.settings.checkpoints) / f"{checkpoint_prefix}-{round_key(round_index(r) + 1)}")
    runner.report()
    return runner.run_ids


def round_keys(n: int, start: int = 0) -> list[str]:
    return [round_key(i) for i in range(start, start + n)]
