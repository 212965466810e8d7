"""The `dagster dev` fixture: webserver, daemon and code server on loopback, driven over GraphQL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagster_ui import UI_ENVS_TOML, free_port, gql

ROOT = Path(__file__).resolve().parents[2]


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
        deadline = time.time() + 300
        while True:
            try:
                data = gql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                  "locationOrLoadError { __typename } } } } }")
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"] and \
                        entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            time.sleep(1)
        yield port, home
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dagster dev ignores SIGTERM in the background: end its group
        proc.wait(timeout=60)
        log.close()


