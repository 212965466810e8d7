"""The `dagster dev` fixture: webserver, daemon and code server on loopback, driven over GraphQL; ``home``: a fresh
Orbit home (and its Dagster instance, from the ``dagster.yaml`` Orbit writes) for in-process instance tests."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dagster_ui import UI_ENVS_TOML, free_port, wait_for_location

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    from orbit.io.home import ensure_home

    monkeypatch.setenv("ORBIT_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("ORBIT_LAKE", raising=False)
    ensure_home()
    return tmp_path


@pytest.fixture
def dagster_dev(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1",
               ORBIT_ROUND_TASKS="6", ORBIT_ROUND_BUDGET="6", ORBIT_AUTOMATION_INTERVAL_S="5",
               ORBIT_MAX_ROUNDS="1")  # the embedded trainer's checkpoint must not start r0001 here
    subprocess.run([sys.executable, "-m", "orbit_cli.commands", "home"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    (home / "envs.toml").write_text(UI_ENVS_TOML)
    log = open(tmp_path / "dagster-dev.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_location(port, proc, tmp_path / "dagster-dev.log")
        yield port, home
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dagster dev ignores SIGTERM in the background: end its group
        proc.wait(timeout=60)
        log.close()


