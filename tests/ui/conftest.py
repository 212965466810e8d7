"""The browser tier: a real `dagster dev` on loopback, looked at through Debian's Chromium with Playwright.

Collected only with ORBIT_TEST_UI=1 (``make test-ui``, which installs Chromium when it is missing), so
``make test`` needs no browser. Playwright never downloads a browser here: it drives /usr/bin/chromium.

One home for the whole tier: a headless flywheel of two rounds on two game envs (r0000 samples the uniform
policy, the embedded trainer writes checkpoints/embedded-r0001, r0001 samples it), then `dagster dev` on the
same home with a short automation interval. Screenshots go to ``$ORBIT_UI_SHOTS`` (default ``.tools/ui-shots``).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dagster_ui import free_port, gql, wait_for_location

ROOT = Path(__file__).resolve().parents[2]

collect_ignore_glob = [] if os.environ.get("ORBIT_TEST_UI") == "1" else ["test_*.py"]

CHROMIUM = os.environ.get("ORBIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UI_TEST_ENVS = ("tic_tac_toe", "kuhn_poker")
FLYWHEEL_ROUNDS = 2


def _envs_toml() -> str:
    from orbit.envs.registry import BUILTIN_SPECS

    return "".join(f"[envs.{spec.name}]\nenabled = false\n\n" for spec in BUILTIN_SPECS
                   if spec.name not in UI_TEST_ENVS)


@pytest.fixture(scope="session")
def ui_envs() -> tuple[str, ...]:
    return UI_TEST_ENVS


@pytest.fixture(scope="session")
def shots_dir() -> Path:
    path = Path(os.environ.get("ORBIT_UI_SHOTS") or ROOT / ".tools" / "ui-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory):
    """(home, env): the home after a headless flywheel of two rounds, and the environment of its processes."""
    home = tmp_path_factory.mktemp("ui") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1",
               ORBIT_ENVS_FILE=str(home / "envs.toml"),
               ORBIT_AUTOMATION_INTERVAL_S="2",
               # room for one more round, so that a checkpoint version wrongly registered as a round would show
               ORBIT_MAX_ROUNDS=str(FLYWHEEL_ROUNDS + 1))
    orbit = [sys.executable, "-m", "orbit_cli.commands"]
    subprocess.run([*orbit, "home"], cwd=ROOT, env=env, check=True, capture_output=True)
    (home / "envs.toml").write_text(_envs_toml())
    proc = subprocess.run([*orbit, "flywheel", "--rounds", str(FLYWHEEL_ROUNDS), "--envs", ",".join(UI_TEST_ENVS),
                           "--tasks", "8"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home, env


@pytest.fixture(scope="session")
def dagster_dev(ui_home, tmp_path_factory):
    """(port, home): `dagster dev -w workspace.yaml` on 127.0.0.1, its process group killed at the end."""
    home, env = ui_home
    port = free_port()
    log_path = tmp_path_factory.mktemp("dagster-dev") / "dagster-dev.log"
    log = open(log_path, "w")
    # setsid: dagster dev in the background ignores SIGTERM; its whole process group is killed by id below
    proc = subprocess.Popen(["setsid", sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_location(port, proc, log_path)
        # the one-time "Join the Dagster community" dialog is marked seen in the instance, as its Skip button does,
        # so that it never covers what a test clicks or photographs
        assert gql(port, "mutation { setNuxSeen }")["setNuxSeen"] is True
        assert gql(port, "{ shouldShowNux }")["shouldShowNux"] is False
        yield port, home
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # setsid made the child the leader of its own group
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        log.close()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install -y chromium (make test-ui does)"
    profile = tempfile.mkdtemp(prefix="orbit-ui-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000})
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(dagster_dev, browser):
    port, _ = dagster_dev
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.base = f"http://127.0.0.1:{port}"
    try:
        yield page
    finally:
        page.close()
