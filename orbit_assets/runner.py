"""Headless runs through Dagster: what ``make run`` and ``orbit run`` do.

Runs go through the jobs of the code location on the instance in
``DAGSTER_HOME``, so the Dagster UI shows them afterwards. Rounds are
registered through ``register_round`` like every other path. A headless command
holds the home lock (see ``orbit.io.home.home_lock``, taken by the CLI) and refuses
to run beside a live Dagster daemon on the same instance, whose automation would
materialize the same partitions: with ``make ui`` running, add rounds with
``orbit round add`` and let the daemon run them.
"""

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import dagster as dg

from orbit.flywheel.checkpoints import latest_version, read_checkpoint
from orbit.envs import env_names
from orbit.io.home import ensure_home
from orbit.io.keys import round_index, round_key, validate_env
from orbit.flywheel.rounds import RoundRegistry
from orbit_assets.partitions import round_env_key
from orbit_assets.rounds import register_round
from orbit_assets.runs import sweep
from resources.settings import UNIFORM_POLICY

CONSOLE_LOG_LEVEL = "WARNING"
DAEMON_FRESH_S = 120


class RunFailed(RuntimeError):
    pass


class DaemonRunning(RuntimeError):
    """A Dagster daemon serves this instance: its automation would run the same partitions."""


def live_daemon(instance: dg.DagsterInstance, fresh_s: float = DAEMON_FRESH_S) -> bool:
    import time

    beats = instance.get_daemon_heartbeats() or {}
    return any(time.time() - beat.timestamp < fresh_s for beat in beats.values())


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
        if live_daemon(self.instance):
            raise DaemonRunning(
                f"a Dagster daemon is running on {self.instance.root_directory} (make ui): its automation "
                "materializes new rounds itself. Add rounds with `orbit round add` and watch them in the UI, "
                "or stop the daemon before running rounds headless")
        self.defs = build_defs(dict(resources) if resources else None)
        self.settings = self.defs.resources["settings"]
        self.log = log
        self.run_ids: list[str] = []
        done = sweep(self.instance, self.settings.lake_path())
        if any(done.values()):
            log(f"housekeeping: {done['runs_failed']} killed run(s) marked failed, "
                f"{done['tmp_removed']} stale temporary file(s) removed")

    def execute(self, job: str, what: str, run_config: Mapping[str, Any] | None = None, **kwargs) -> None:
        self.log(what)
        # the full event log is in the instance (`make ui`); the console only shows warnings
        config = {**dict(run_config or {}), "loggers": {"console": {"config": {"log_level": CONSOLE_LOG_LEVEL}}}}
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=config, **kwargs)
        _check(result, what)
        self.run_ids.append(result.run_id)

    def register(self, r: str, policy: str | None = None, sizes: Mapping[str, Any] | None = None, **kwargs):
        """The round's registry entry (registered with ``policy``, else the default, when new) and partition."""
        return register_round(policy, key=r, settings=self.settings, instance=self.instance,
                              sizes=None if sizes is None else dict(sizes), exist_ok=True, **kwargs)

    def ensure_cfr(self, envs: list[str]) -> None:
        """Solve the CFR bots of these envs unless the table already has them."""
        from orbit.envs import env_spec
        from orbit.envs.openspiel.family import unsolved_cfr_configs

        if not unsolved_cfr_configs([env_spec(e) for e in envs], self.settings.lake_path()):
            return
        self.execute("cfr_job", "cfr_policies: solving CFR average policies",
                     run_config={"ops": {"cfr_policies": {"config": {"envs": envs}}}})

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
               export: bool = True, policy: str | None = None, sizes: Mapping[str, Any] | None = None,
               log=print) -> list[str]:
    """Register the rounds (``policy`` and ``sizes`` for new ones; defaults otherwise), materialize every
    (round, env) partition given, then the reports; returns the run ids."""
    runner = Runner(instance, resources, log)
    envs = [validate_env(e, env_names()) for e in (envs or env_names())]
    rounds = list(rounds)
    entries = [runner.register(r, policy, sizes, note="orbit run") for r in rounds]
    runner.ensure_cfr(envs)
    for entry in entries:
        r = entry.round
        runner.round(r, envs, run_config, {"orbit/round": r, "orbit/policy": entry.policy}, export)
    runner.report()
    return runner.run_ids


def run_flywheel(rounds: int, envs: Iterable[str] | None = None, *, instance: dg.DagsterInstance | None = None,
                 resources: Mapping[str, Any] | None = None, run_config: Mapping[str, Any] | None = None,
                 first_policy: str = UNIFORM_POLICY, sizes: Mapping[str, Any] | None = None,
                 train_config: Mapping[str, Any] | None = None, checkpoint_prefix: str = "embedded",
                 log=print) -> list[str]:
    """Turn the flywheel: each round samples the policy the previous round's training produced.

    Round r0000 samples ``first_policy``; after each round the embedded trainer writes the
    checkpoint the next round is registered with. Rounds already in the registry keep their policy.
    """
    runner = Runner(instance, resources, log)
    envs = [validate_env(e, env_names()) for e in (envs or env_names())]
    registry = RoundRegistry(runner.settings.lake_path())
    runner.ensure_cfr(envs)
    checkpoint = None
    for t in range(rounds):
        r = round_key(t)
        entry = registry.get(r)
        if entry is None:
            if checkpoint is None:
                entry = runner.register(r, first_policy, sizes, note="flywheel start")
            else:
                entry = runner.register(r, checkpoint.policy, sizes, checkpoint=checkpoint.name,
                                        parent_round=checkpoint.parent_round, note=checkpoint.note)
        else:
            runner.register(r)  # its partition, should only the registry have it
        tags = {"orbit/round": r, "orbit/policy": entry.policy}
        runner.round(r, envs, run_config, tags)
        if t + 1 < rounds:
            runner.execute("train_job", f"train_job {r}", partition_key=r, tags=tags, run_config=train_config)
            checkpoint = read_checkpoint(latest_version(  # the version this training wrote or kept
                runner.settings.checkpoints, f"{checkpoint_prefix}-{round_key(round_index(r) + 1)}"))
    runner.report()
    return runner.run_ids


def round_keys(n: int, start: int = 0) -> list[str]:
    return [round_key(i) for i in range(start, start + n)]
