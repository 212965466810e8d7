"""Where Orbit keeps its state: ``ORBIT_HOME`` holds the lake and ``DAGSTER_HOME``.

Nothing here reaches the network; telemetry is switched off for every process
that goes through ``ensure_home``. The generated ``dagster.yaml`` makes the
instance fit the machine: a run queue with a concurrency limit (the number of
cores unless ``ORBIT_MAX_CONCURRENT_RUNS`` says otherwise), run monitoring (runs
stuck starting or running past a limit are marked failed) and run retries for
crashed run workers (never for a failed asset: that is a verdict, not a fault).

Headless commands take the home lock (``home_lock``): two ``orbit run`` on one
home never interleave, and the second says at once who holds it.
"""

import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from orbit.io.locks import open_lock

DEFAULT_HOME = ".orbit"
YAML_MARKER = "# Written by Orbit."
LOCK_FILE = ".orbit.lock"
INIT_LOCK_FILE = ".init.lock"
HOLDER_WAIT_S = 2.0  # how long a refused command waits for the holder to name itself


class HomeBusy(RuntimeError):
    """Another headless Orbit command holds this ORBIT_HOME."""


def int_setting(name: str, default: int, low: int = 1, high: int = 1024) -> int:
    """A whole-number setting from the environment variable ``name``, else ``default``; a value that is not
    a whole number in [low, high] is refused with an error naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name}={raw[:40]!r}: expected a whole number from {low} to {high}")
    return int(raw)



def dagster_yaml() -> str:
    """The instance settings Orbit writes (telemetry off, a run queue sized to the machine)."""
    runs = int_setting("ORBIT_MAX_CONCURRENT_RUNS", os.cpu_count() or 2)
    start_timeout = int_setting("ORBIT_RUN_START_TIMEOUT_S", 300, 10, 86400)
    max_runtime = int_setting("ORBIT_RUN_MAX_RUNTIME_S", 4 * 3600, 60, 7 * 86400)
    retries = int_setting("ORBIT_RUN_RETRIES", 2, 0, 10)
    return f"""\
{YAML_MARKER} Regenerated when these settings change; delete this line to keep your own.
# Telemetry stays off: Orbit machines have no internet.
telemetry:
  enabled: false
# A run queue that fits the machine (ORBIT_MAX_CONCURRENT_RUNS, default: the number of cores).
concurrency:
  runs:
    max_concurrent_runs: {runs}
    tag_concurrency_limits:
      # one run at a time per round x env partition, whoever launched it
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
# Runs stuck starting or running past a limit are marked failed (ORBIT_RUN_START_TIMEOUT_S, ORBIT_RUN_MAX_RUNTIME_S).
run_monitoring:
  enabled: true
  start_timeout_seconds: {start_timeout}
  max_runtime_seconds: {max_runtime}
  poll_interval_seconds: 30
# A crashed run worker (code server unreachable, killed process) is retried; a failed asset is not.
run_retries:
  enabled: {"true" if retries else "false"}
  max_retries: {retries}
  retry_on_asset_or_op_failure: false
"""


def orbit_home() -> Path:
    return Path(os.environ.get("ORBIT_HOME", DEFAULT_HOME)).resolve()


def lake_root() -> Path:
    return Path(os.environ.get("ORBIT_LAKE", str(orbit_home() / "lake"))).resolve()


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME", str(orbit_home() / "dagster"))).resolve()


@contextmanager
def _flock(path: Path, blocking: bool = True) -> Iterator[object]:
    with os.fdopen(open_lock(path), "r+") as fh:  # never through a symlink (O_NOFOLLOW), never truncated on open
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                fh.seek(0)
                raise HomeBusy(fh.read().strip()) from None
            raise
        try:
            yield fh
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def init_lock() -> Iterator[None]:
    """Serialises creating the home and the Dagster instance's databases (never raced)."""
    with _flock(orbit_home() / INIT_LOCK_FILE):
        yield


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists():
        current = path.read_text(encoding="utf-8", errors="replace")
        if current == text or not current.startswith(YAML_MARKER):
            return  # unchanged, or the user's own file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def ensure_home() -> Path:
    """Create ``ORBIT_HOME`` with a lake and a telemetry-free ``DAGSTER_HOME``; set the env vars."""
    home = orbit_home()
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    dhome = dagster_home()
    with init_lock():
        dhome.mkdir(parents=True, exist_ok=True)
        _write_if_changed(dhome / "dagster.yaml", dagster_yaml())
        lake_root().mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(dhome)
    os.environ.setdefault("ORBIT_HOME", str(home))
    return home


@contextmanager
def home_lock(command: str) -> Iterator[None]:
    """Hold ORBIT_HOME for one headless command; a second one fails at once, naming the holder."""
    path = orbit_home() / LOCK_FILE
    try:
        with _flock(path, blocking=False) as fh:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
            fh.flush()
            try:
                yield
            finally:  # no stale holder line outlives the lock
                fh.seek(0)
                fh.truncate()
    except HomeBusy as exc:
        holder = _describe_holder(str(exc)) or _await_holder(path)
        raise HomeBusy(f"ORBIT_HOME {orbit_home()} is in use by {holder}; wait for it to finish, "
                       f"or give this command its own ORBIT_HOME") from None


def _await_holder(path: Path, wait_s: float = HOLDER_WAIT_S) -> str:
    """The holder writes its line just after taking the lock: a loser that read in between waits a moment."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            described = _describe_holder(path.read_text(encoding="utf-8", errors="replace").strip())
        except OSError:
            described = None
        if described:
            return described
    return "another orbit command"


def _describe_holder(text: str) -> str | None:
    """The holder's line, or None while it is missing, half-written or left by a dead process."""
    try:
        info = json.loads(text)
        if not process_alive(int(info["pid"]), info.get("host")):
            return None
        return f"`orbit {info['command']}` (pid {info['pid']} since {info['since']})"
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def process_alive(pid: int, host: str | None = None) -> bool:
    """Whether a process of this machine is alive (a process on another host counts as alive)."""
    if host is not None and host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
