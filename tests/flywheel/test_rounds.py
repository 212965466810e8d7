"""Rounds are one thing wherever they start: the CLI, a sensor, the instance API the UI uses, a backfill.

Headless commands run as real `orbit` processes on a fresh ORBIT_HOME; the UI path is covered by
tests/assets/test_daemon.py against a real `dagster dev` (webserver, daemon, GraphQL).
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from orbit.io import lake
from orbit.flywheel.checkpoints import write_manifest
from orbit.io.home import LOCK_FILE, HomeBusy, home_lock
from orbit.flywheel.rounds import RoundRegistry
from orbit_assets.partitions import ROUNDS
from orbit_assets.rounds import reconcile_rounds
from resources import resources_for
from sensors.checkpoints import checkpoint_sensor

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1", **extra)
    return env


def orbit(home: Path, *args: str, timeout: float = 600, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orbit_cli.commands", *args], cwd=ROOT, env=_env(home, **extra),
                          capture_output=True, text=True, timeout=timeout)


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


def test_orbit_run_registers_its_round_and_a_checkpoint_becomes_the_next(tmp_path):
    home = tmp_path / "home"
    done = orbit(home, "run", "--envs", "tic_tac_toe", "--tasks", "10", "--budget", "10")
    assert done.returncode == 0, done.stderr[-2000:]
    registry = RoundRegistry(home / "lake")
    (r0,) = registry.entries()
    assert (r0.round, r0.policy, r0.size()) == ("r0000", "embedded:uniform", {"num_tasks": 10, "budget": 10})
    raw = pq.read_table(lake.partition_file(home / "lake", "raw_samples", "r0000", "tic_tac_toe"))
    assert "policy" in raw.column("source").to_pylist()  # the round's policy was sampled

    # an external trainer's checkpoint: the sensor registers r0001 (parent r0000), never r0000 again
    (home / "checkpoints" / "sft-1").mkdir(parents=True)
    write_manifest(home / "checkpoints" / "sft-1", "openai:http://127.0.0.1:9/v1#sft-1", parent_round="r0000")
    with _instance(home) as instance:
        settings = resources_for(lake=str(home / "lake"), home=str(home))["settings"]
        checkpoint_sensor(dg.build_sensor_context(instance=instance, resources={"settings": settings}))
        entry = registry.by_checkpoint("sft-1")
        assert (entry.round, entry.parent_round, entry.policy) == ("r0001", "r0000", "openai:http://127.0.0.1:9/v1#sft-1")
        assert entry.size() == {}  # the settings' default size: none set here
        assert instance.get_dynamic_partitions(ROUNDS) == ["r0000", "r0001"]


def test_a_round_added_as_the_ui_does_is_registered_with_the_default_policy_and_size(tmp_path):
    lake_root = tmp_path / "lake"
    settings = resources_for(lake=str(lake_root), home=str(tmp_path), round_num_tasks=7, round_best_of=2)["settings"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ROUNDS, ["r0000", "r0003", "bad key"])  # the UI's Add partition
        changes = reconcile_rounds(instance, settings)
        assert changes == {"registered": ["r0000", "r0003"], "partitions_added": []}  # "bad key": key_checks
        entries = RoundRegistry(lake_root).entries()
        assert [(e.round, e.policy, e.size()) for e in entries] == [
            ("r0000", "embedded:uniform", {"num_tasks": 7, "best_of": 2}),
            ("r0003", "embedded:uniform", {"num_tasks": 7, "best_of": 2})]
        # a ready checkpoint makes the default policy the newest checkpoint's
        (tmp_path / "checkpoints" / "c1").mkdir(parents=True)
        write_manifest(tmp_path / "checkpoints" / "c1", "openai:http://127.0.0.1:9/v1#c1")
        instance.add_dynamic_partitions(ROUNDS, ["r0004"])
        reconcile_rounds(instance, settings)
        assert RoundRegistry(lake_root).get("r0004").policy == "openai:http://127.0.0.1:9/v1#c1"
        # the other way round: a registry entry whose partition is missing gets it back
        RoundRegistry(lake_root).add("embedded:uniform", key="r0006")
        assert reconcile_rounds(instance, settings)["partitions_added"] == ["r0006"]
        assert instance.has_dynamic_partition(ROUNDS, "r0006")


def test_a_ui_round_materialized_before_the_sensor_ticks_registers_itself(tmp_path, monkeypatch):
    """raw_samples registers an unregistered round through the same function, then samples its policy."""
    from orbit_assets.partitions import round_env_key
    from orbit_assets.runner import Runner

    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    resources = resources_for(lake=str(tmp_path / "lake"), home=str(tmp_path), round_num_tasks=6, round_budget=6)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ROUNDS, ["r0000"])
        runner = Runner(instance, resources, log=lambda m: None)
        runner.execute("round_job", "round", partition_key=round_env_key("r0000", "tic_tac_toe"))
        entry = RoundRegistry(tmp_path / "lake").get("r0000")
        assert entry.policy == "embedded:uniform" and "default policy" in entry.note
        raw = pq.read_table(lake.partition_file(tmp_path / "lake", "raw_samples", "r0000", "tic_tac_toe"))
        sources = raw.column("source").to_pylist()
        assert sources.count("policy") == 6 and len(set(raw.column("task_id").to_pylist())) == 6


def test_two_orbit_runs_on_one_fresh_home_serialize_or_refuse(tmp_path):
    home = tmp_path / "home"
    args = [sys.executable, "-m", "orbit_cli.commands", "run", "--envs", "tic_tac_toe", "--tasks", "10", "--budget", "10"]
    procs = [subprocess.Popen(args, cwd=ROOT, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    # they overlap (the second is refused, naming the first); had one finished before the other took
    # the lock, both would have run, one after the other
    assert codes in ([0, 1], [0, 0]), results
    for refused in (r for r in results if r[0] == 1):
        assert "is in use by `orbit run`" in refused[2]
    # the instance is intact: later commands work and see one round
    again = orbit(home, "round", "list", "--format", "json")
    assert again.returncode == 0 and [e["round"] for e in json.loads(again.stdout)] == ["r0000"]
    with _instance(home) as instance:
        assert instance.get_runs() and all(r.is_success for r in instance.get_runs())


def test_a_refused_command_names_a_holder_that_writes_its_line_late(tmp_path, monkeypatch):
    """The holder takes the lock, then writes its line: a command refused in between still names it."""
    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    lock = tmp_path / LOCK_FILE
    # a dead process's line is what a killed holder leaves: it must not be named
    lock.write_text(json.dumps({"pid": 2 ** 22 + 1, "command": "round", "since": "then"}))
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)

        def write_line():
            time.sleep(0.3)
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "command": "run", "since": "now"}))
            fh.flush()

        writer = threading.Thread(target=write_line)
        writer.start()
        with pytest.raises(HomeBusy) as refused:
            with home_lock("backfill"):
                pass
        writer.join()
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert f"is in use by `orbit run` (pid {os.getpid()} since now)" in str(refused.value)
    # a holder that finishes leaves no line behind
    with home_lock("run"):
        assert json.loads(lock.read_text())["command"] == "run"
    assert lock.read_text() == ""


def test_a_killed_run_is_marked_failed_and_its_temp_files_swept(tmp_path):
    home = tmp_path / "home"
    first = orbit(home, "run", "--envs", "kuhn_poker", "--tasks", "5", "--budget", "5")  # CFR + a small round
    assert first.returncode == 0, first.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, "-m", "orbit_cli.commands", "run", "--envs", "tic_tac_toe", "--start", "1",
                             "--tasks", "600", "--budget", "1"], cwd=ROOT, env=_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lake_root = home / "lake"
    deadline = time.time() + 300
    tmp_seen = []
    while time.time() < deadline and proc.poll() is None and not tmp_seen:
        tmp_seen = list((lake_root / "raw_samples").rglob(".*.tmp"))
        time.sleep(0.02)
    assert tmp_seen, "the run never wrote a partition"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    with _instance(home) as instance:
        killed = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
        assert killed  # nothing reported its end
    assert list(lake_root.rglob(".*.tmp"))

    after = orbit(home, "run", "--envs", "kuhn_poker", "--start", "1", "--tasks", "5", "--budget", "5")
    assert after.returncode == 0, after.stderr[-2000:]
    assert "killed run(s) marked failed" in after.stdout
    assert not list(lake_root.rglob(".*.tmp"))
    with _instance(home) as instance:
        for run in killed:
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert not instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))


def test_plain_dagster_cli_finds_the_instance_through_the_exported_home(tmp_path):
    home = tmp_path / "home"
    shell = orbit(home, "home", "--shell")
    assert shell.returncode == 0 and f"export DAGSTER_HOME={home / 'dagster'}" in shell.stdout
    assert "export DAGSTER_EVENT_BATCH_SIZE=100" in shell.stdout  # planned events stored as one batch
    yaml = (home / "dagster" / "dagster.yaml").read_text()
    for needle in ("max_concurrent_runs:", "run_monitoring:", "run_retries:", "enabled: false"):
        assert needle in yaml


@pytest.mark.parametrize("bad", ["r1", "R0001", "r00001"])
def test_round_add_refuses_bad_keys(tmp_path, bad):
    done = orbit(tmp_path / "home", "round", "add", "--round", bad)
    assert done.returncode == 1 and "invalid round key" in done.stderr


@pytest.mark.parametrize("policy", ["openai:http://[::1:80/v1#m", "openai:http://127.0.0.1:99999/v1#m",
                                    "openai:http://127.0.0.1:-1/v1#m"])
def test_round_add_refuses_a_bad_policy_uri_without_a_traceback(tmp_path, policy):
    done = orbit(tmp_path / "home", "round", "add", "--policy", policy)
    assert done.returncode == 1 and done.stderr.splitlines()[-1].startswith("orbit: invalid policy URI"), done.stderr
    assert "Traceback" not in done.stderr
    listed = orbit(tmp_path / "home", "round", "list")
    assert policy not in listed.stdout
