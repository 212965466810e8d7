"""Where Orbit keeps its state: ``ORBIT_HOME`` holds the lake and ``DAGSTER_HOME``.

Nothing here reaches the network; telemetry is switched off for every process
that goes through ``ensure_home``. The generated ``dagster.yaml`` makes the
instance fit the machine: a run queue with a concurrency limit (the number of
cores unless ``ORBIT_MAX_CONCURRENT_RUNS`` says otherwise), run monitoring (runs
stuck starting or running past a limit are marked failed) and run retries for
crashed run workers (never for a failed asset: that is a verdict, not a fault).

The instance's storage is SQLite under ``DAGSTER_HOME`` unless ``orbit home --postgres URL`` chose
PostgreSQL (``use_postgres``): the choice is kept in ``DAGSTER_HOME/orbit-storage.json`` (user, host,
port, database, libpq parameters; never a password) and written into the storage section of every
regenerated ``dagster.yaml``, so the webserver, the daemon, run workers and headless commands share one
database. A password is never stored: the yaml reads it from an environment variable (dagster's
``env:``), ``ORBIT_POSTGRES_PASSWORD`` unless another is named.

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
from urllib.parse import parse_qsl, unquote, urlsplit

from orbit.io.locks import open_lock

DEFAULT_HOME = ".orbit"
YAML_MARKER = "# Written by Orbit."
LOCK_FILE = ".orbit.lock"
INIT_LOCK_FILE = ".init.lock"
HOLDER_WAIT_S = 2.0  # how long a refused command waits for the holder to name itself
STORAGE_FILE = "orbit-storage.json"
# the Dagster run and event log storage classes written for SQLite instances (module, class): the Dagster
# layer's, by name
SQLITE_RUN_STORAGE = ("resources.sqlite_storage", "OrbitSqliteRunStorage")
SQLITE_EVENT_LOG = ("resources.sqlite_storage", "OrbitSqliteEventLogStorage")
COMPUTE_LOGS = ("resources.compute_logs", "OrbitComputeLogManager")
PG_RUN_STORAGE = ("resources.pg_storage", "OrbitPostgresRunStorage")
PG_EVENT_LOG = ("resources.pg_storage", "OrbitPostgresEventLogStorage")
PG_SCHEDULE_STORAGE = ("dagster_postgres.schedule_storage", "PostgresScheduleStorage")
PASSWORD_ENV = "ORBIT_POSTGRES_PASSWORD"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# libpq connection parameters a URL's query may carry (https://www.postgresql.org/docs/15/libpq-connect.html);
# anything else is refused rather than passed on
POSTGRES_PARAMS = ("host", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword",
                   "connect_timeout", "application_name", "target_session_attrs", "keepalives",
                   "keepalives_idle", "keepalives_interval", "keepalives_count", "options", "gssencmode")


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



class InvalidPostgresURL(ValueError):
    """A PostgreSQL URL Orbit will not write into the instance (the message never holds the password)."""


def _env_name(name: str) -> str:
    if not (name and name.isascii() and (name[0].isalpha() or name[0] == "_")
            and all(c.isalnum() or c == "_" for c in name)):
        raise InvalidPostgresURL(f"{name[:40]!r} is not an environment variable name (letters, digits, _)")
    return name


def parse_postgres_url(url: str, password_env: str | None = None) -> dict:
    """The storage setting of a ``postgresql://user[:password]@host[:port]/database[?param=value]`` URL
    (a Unix socket: ``postgresql://user@/database?host=/run/postgresql``).

    Returns ``{"username", "hostname", "port", "db_name", "params", "password_env"}`` and never the password:
    with one in the URL (or ``password_env`` named) the yaml reads it from that variable
    (``ORBIT_POSTGRES_PASSWORD`` by default). Errors name what is wrong and never echo the password."""
    if not isinstance(url, str) or not url or not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidPostgresURL("the PostgreSQL URL is empty or holds spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        username, password, hostname = parts.username, parts.password, parts.hostname
    except ValueError as exc:
        raise InvalidPostgresURL(f"the PostgreSQL URL does not parse: {exc}") from None
    where = f"{parts.scheme}://…@{hostname or ''}{'' if port is None else f':{port}'}{parts.path}"
    if parts.scheme not in POSTGRES_SCHEMES:
        raise InvalidPostgresURL(f"{where}: the scheme must be postgresql:// (or postgres://)")
    if parts.fragment:
        raise InvalidPostgresURL(f"{where}: a PostgreSQL URL has no #fragment")
    if not username:
        raise InvalidPostgresURL(f"{where}: name the database user (postgresql://USER@host/database)")
    db_name = unquote(parts.path.lstrip("/"))
    if not db_name or "/" in db_name:
        raise InvalidPostgresURL(f"{where}: name one database (postgresql://user@host/DATABASE)")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)):
        if key not in POSTGRES_PARAMS:
            raise InvalidPostgresURL(f"{where}: unknown connection parameter {key[:40]!r}; known: "
                                     f"{', '.join(POSTGRES_PARAMS)}")
        if key in params:
            raise InvalidPostgresURL(f"{where}: the parameter {key!r} is given twice")
        params[key] = value
    socket_dir = params.get("host", "")
    if socket_dir and not socket_dir.startswith("/"):
        raise InvalidPostgresURL(f"{where}: ?host= names a Unix socket folder (an absolute path); put a "
                                 "network host before the database name")
    if not hostname and not socket_dir:
        raise InvalidPostgresURL(f"{where}: name the server (postgresql://user@HOST:5432/database, or a "
                                 "socket folder with ?host=/path)")
    if port == 0:
        raise InvalidPostgresURL(f"{where}: port 0 is not a server port")
    if password is not None and password_env is None:
        password_env = PASSWORD_ENV
    return {"username": unquote(username), "hostname": hostname or "", "port": port or 5432, "db_name": db_name,
            "params": params, "password_env": None if password_env is None else _env_name(password_env)}


def postgres_storage_url(setting: dict, password: str | None = None) -> str:
    """A connection URL of the setting, with ``password`` when given (for a connection check; never printed)."""
    from urllib.parse import quote, urlencode

    user = quote(setting["username"], safe="") + (f":{quote(password, safe='')}" if password else "")
    host = setting["hostname"]
    host = f"[{host}]" if ":" in host else host
    query = f"?{urlencode(setting['params'])}" if setting["params"] else ""
    return f"postgresql://{user}@{host}:{setting['port']}/{quote(setting['db_name'], safe='')}{query}"


def storage_setting() -> dict | None:
    """The instance's PostgreSQL setting (from ``orbit home --postgres``), or None for SQLite."""
    path = dagster_home() / STORAGE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("kind") != "postgres":
            raise ValueError(f"unknown storage kind {data.get('kind')!r}")
        setting = {k: data[k] for k in ("username", "hostname", "port", "db_name", "params", "password_env")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not Orbit's storage setting ({exc}); run `orbit home --postgres URL` "
                         "or `orbit home --sqlite` again") from None
    return setting


def use_postgres(url: str | None, password_env: str | None = None) -> dict | None:
    """Keep the instance on PostgreSQL at ``url`` (None: back on SQLite under DAGSTER_HOME) and regenerate
    ``dagster.yaml``; returns the setting. The URL's password is not kept."""
    path = dagster_home() / STORAGE_FILE
    setting = parse_postgres_url(url, password_env) if url is not None else None
    with init_lock():
        dagster_home().mkdir(parents=True, exist_ok=True)
        if setting is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"kind": "postgres", **setting}, fh, indent=1, sort_keys=True)
            os.replace(tmp, path)
        _write_if_changed(dagster_home() / "dagster.yaml", dagster_yaml(setting))
    return setting


def _yaml_str(value) -> str:
    return json.dumps(str(value))  # a JSON string is a YAML flow scalar: quotes and escapes hold


def storage_yaml(setting: dict | None) -> str:
    """The storage sections of ``dagster.yaml``: SQLite in Dagster's files under DAGSTER_HOME with Orbit's event log
    class (``resources.sqlite_storage``), or PostgreSQL."""
    if setting is None:
        base = dagster_home()
        return "\n".join([
            "# Storage: SQLite under DAGSTER_HOME, in Dagster's own files (`orbit home --postgres URL` moves it to",
            "# PostgreSQL). The run storage and event log keep one connection per database file instead of one per",
            "# statement, in WAL mode with synchronous=NORMAL (resources/sqlite_storage.py): an OS crash may lose",
            "# the last events, never the database.",
            "run_storage:", f"  module: {SQLITE_RUN_STORAGE[0]}", f"  class: {SQLITE_RUN_STORAGE[1]}", "  config:",
            f"    base_dir: {_yaml_str(base / 'history')}",
            "event_log_storage:", f"  module: {SQLITE_EVENT_LOG[0]}", f"  class: {SQLITE_EVENT_LOG[1]}", "  config:",
            f"    base_dir: {_yaml_str(base / 'history' / 'runs')}",
            "schedule_storage:", "  module: dagster._core.storage.schedules", "  class: SqliteScheduleStorage",
            "  config:", f"    base_dir: {_yaml_str(base / 'schedules')}"]) + "\n"
    db = ["    postgres_db:",
          f"      username: {_yaml_str(setting['username'])}",
          f"      hostname: {_yaml_str(setting['hostname'])}",
          f"      port: {int(setting['port'])}",
          f"      db_name: {_yaml_str(setting['db_name'])}",
          # the driver dagster-postgres installs (SQLAlchemy 2.1's bare postgresql:// means psycopg 3)
          "      scheme: postgresql+psycopg2"]
    if setting["password_env"]:
        db += ["      password:", f"        env: {setting['password_env']}"]
    if setting["params"]:
        db += ["      params:"] + [f"        {k}: {_yaml_str(v)}" for k, v in sorted(setting["params"].items())]
    lines = ["# Storage: PostgreSQL, shared by the webserver, the daemon, run workers and headless commands",
             "# (`orbit home --postgres URL`; `orbit home --sqlite` goes back). No password is stored here. The run",
             "# storage and event log are dagster-postgres' with the migration checks they repeat remembered",
             "# (resources/pg_storage.py)."]
    for section, (module, cls) in (("run_storage", PG_RUN_STORAGE), ("event_log_storage", PG_EVENT_LOG),
                                   ("schedule_storage", PG_SCHEDULE_STORAGE)):
        lines += [f"{section}:", f"  module: {module}", f"  class: {cls}", "  config:"] + db
    return "\n".join(lines) + "\n"


def dagster_yaml(storage: dict | None = None) -> str:
    """The instance settings Orbit writes (telemetry off, a run queue sized to the machine, pools, and the
    storage: ``storage`` or, when None, the kept setting)."""
    storage = storage if storage is not None else storage_setting()
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
  # Pools (`pool=` on an asset: raw_samples is in orbit_sampling) limit steps across runs. A pool has no limit
  # until one is set: `dagster instance concurrency set orbit_sampling 1`; steps wait for a free slot inside
  # their run (op granularity), and the queue keeps at most 1 run more than the free slots waiting.
  pools:
    granularity: op
    op_granularity_run_buffer: 1
# Runs stuck starting or running past a limit are marked failed (ORBIT_RUN_START_TIMEOUT_S, ORBIT_RUN_MAX_RUNTIME_S).
run_monitoring:
  enabled: true
  start_timeout_seconds: {start_timeout}
  max_runtime_seconds: {max_runtime}
  poll_interval_seconds: 30
# stdout/stderr of runs and steps in Dagster's files (the UI shows them), mirrored to the console by a thread
# instead of a `tail` and a watcher process per stream (resources/compute_logs.py)
compute_logs:
  module: {COMPUTE_LOGS[0]}
  class: {COMPUTE_LOGS[1]}
  config:
    base_dir: {_yaml_str(dagster_home() / "storage")}
# A crashed run worker (code server unreachable, killed process) is retried; a failed asset is not.
run_retries:
  enabled: {"true" if retries else "false"}
  max_retries: {retries}
  retry_on_asset_or_op_failure: false
""" + storage_yaml(storage)


def orbit_home() -> Path:
    return Path(os.environ.get("ORBIT_HOME", DEFAULT_HOME)).resolve()


def lake_root() -> Path:
    """``ORBIT_LAKE`` (a folder, or an ``s3://`` prefix as an ``S3Path``), else ``ORBIT_HOME/lake``."""
    from orbit.io.lakefs import is_remote, lake_path

    configured = os.environ.get("ORBIT_LAKE", "").strip()
    if is_remote(configured):
        return lake_path(configured)
    return Path(configured or str(orbit_home() / "lake")).resolve()


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


# Events Dagster hands over together go to the storage as one batch (a run's planned materializations and
# checks: one insert, resources/planned_events.py). Dagster reads the size from this variable in the process
# that creates a run (the webserver, the daemon, a headless runner); 0, its default, writes them one by one.
EVENT_BATCH_SIZE = "100"


def dagster_process_env() -> None:
    """The variables every process of an Orbit instance runs Dagster with (set unless already set)."""
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)


def ensure_home() -> Path:
    """Create ``ORBIT_HOME`` with a lake and a telemetry-free ``DAGSTER_HOME``; set the env vars."""
    home = orbit_home()
    dagster_process_env()
    dhome = dagster_home()
    with init_lock():
        dhome.mkdir(parents=True, exist_ok=True)
        _write_if_changed(dhome / "dagster.yaml", dagster_yaml())
        from orbit.io.lakefs import is_remote

        lake = lake_root()
        if not is_remote(lake):  # an object store has no folder to create
            lake.mkdir(parents=True, exist_ok=True)
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
