"""The Dagster instance on PostgreSQL: `orbit home --postgres URL` writes the storage section of the generated
dagster.yaml, headless rounds run on it, and the password is never written anywhere (yaml, the home, the
database's runs and events, command output).

The server is real (tests/scale/pg_server.py, loopback and a socket in a temp dir); nothing of Postgres or
Dagster is mocked. The UI/daemon path on PostgreSQL is tests/assets/test_daemon.py (run by `make test-scale`
with its Postgres parameter) and tests/scale/test_pools.py.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from orbit.io.home import InvalidPostgresURL, dagster_yaml, parse_postgres_url, storage_yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Pa55"


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1",
               ORBIT_ENVS_FILE=os.environ.get("ORBIT_ENVS_FILE", ""), **extra)
    return env


def orbit(home: Path, *args: str, timeout: float = 900, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orbit_cli.commands", *args], cwd=ROOT, env=_env(home, **extra),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("url, says", [
    ("mysql://orbit@127.0.0.1/db", "scheme"),
    ("postgresql://127.0.0.1:5432/db", "user"),
    (f"postgresql://orbit:{SECRET}@127.0.0.1:5432/", "database"),
    (f"postgresql://orbit:{SECRET}@127.0.0.1:99999/db", "port"),
    (f"postgresql://orbit:{SECRET}@127.0.0.1:5432/db?sslmode=require&evil=1", "unknown connection parameter"),
    (f"postgresql://orbit:{SECRET}@/db", "server"),
    (f"postgresql://orbit:{SECRET}@/db?host=relative/dir", "absolute"),
    (f"postgresql://orbit:{SECRET}@127.0.0.1/db two", "spaces"),
    (f"postgresql://orbit:{SECRET}@127.0.0.1/db#frag", "fragment"),
])
def test_a_bad_postgres_url_is_refused_without_echoing_its_password(url, says):
    with pytest.raises(InvalidPostgresURL) as err:
        parse_postgres_url(url)
    assert says in str(err.value).lower() and SECRET not in str(err.value)


def test_the_yaml_reads_the_password_from_the_environment_and_never_holds_it(monkeypatch):
    setting = parse_postgres_url(f"postgresql://orbit:{SECRET}@db.internal:6432/dagster?sslmode=require")
    assert setting == {"username": "orbit", "hostname": "db.internal", "port": 6432, "db_name": "dagster",
                       "params": {"sslmode": "require"}, "password_env": "ORBIT_POSTGRES_PASSWORD"}
    text = dagster_yaml(setting)
    assert SECRET not in text and "env: ORBIT_POSTGRES_PASSWORD" in text
    # the yaml is one Dagster accepts: storage, pools and the run queue together
    import yaml
    from dagster._core.instance.config import dagster_instance_config_schema
    from dagster._config import process_config

    loaded = yaml.safe_load(text)
    monkeypatch.setenv("ORBIT_POSTGRES_PASSWORD", "from-the-environment")  # resolved when the config is read
    assert process_config(dagster_instance_config_schema(), loaded).success, text
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        assert loaded[section]["config"]["postgres_db"]["password"] == {"env": "ORBIT_POSTGRES_PASSWORD"}
    assert loaded["concurrency"]["pools"]["granularity"] == "op"
    # without a password (a socket with peer/trust auth) no password key is written at all
    socket = parse_postgres_url("postgresql://orbit@/dagster?host=/run/postgresql")
    assert "password:" not in storage_yaml(socket) and socket["hostname"] == ""


def test_orbit_run_on_postgres_and_the_password_is_nowhere(postgres_server, tmp_path):
    pg = postgres_server
    home = tmp_path / "home"
    db = pg.create_database()
    # the URL carries the password: the command uses it to connect once and says it is not stored
    done = orbit(home, "home", "--postgres", pg.tcp_url(db))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "export ORBIT_POSTGRES_PASSWORD=" in done.stderr and pg.password not in done.stdout + done.stderr
    assert f"storage=postgresql://orbit@127.0.0.1:{pg.port}/{db}" in done.stdout
    yaml_text = (home / "dagster" / "dagster.yaml").read_text()
    assert "postgres_db:" in yaml_text and pg.password not in yaml_text

    # every later process reads the password from the environment
    ran = orbit(home, "run", "--envs", "tic_tac_toe", "--tasks", "5", "--budget", "5",
                ORBIT_POSTGRES_PASSWORD=pg.password)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert pg.password not in ran.stdout + ran.stderr
    # the yaml survives the regeneration every command does
    assert (home / "dagster" / "dagster.yaml").read_text() == yaml_text

    os.environ["ORBIT_POSTGRES_PASSWORD"] = pg.password
    try:
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            assert type(instance.run_storage).__name__ == "OrbitPostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "OrbitPostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            storage = instance.run_storage  # its remembered answers (resources/storage_checks.py)
            assert storage.has_execution_plan_snapshot(instance.get_runs(limit=1)[0].execution_plan_snapshot_id)
            assert not storage.has_execution_plan_snapshot("0" * 40)
            events = instance.event_log_storage
            assert events.has_table("event_logs") and "event_logs" in events._known()
            assert not events.has_table("no_such_table")
            runs = instance.get_runs()
            assert {r.job_name for r in runs} >= {"round_job", "export_job", "report_job"}
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(r.job_name, r.status) for r in runs]
            partitions = [r.asset_materialization.partition for r in instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_samples")), limit=10).records]
            assert partitions == ["tic_tac_toe|r0000"]
            assert instance.get_dynamic_partitions("rounds") == ["r0000"]
    finally:
        del os.environ["ORBIT_POSTGRES_PASSWORD"]
    # nothing went to SQLite under DAGSTER_HOME, and the password is in no file of the home
    assert not list((home / "dagster").rglob("*.db"))
    for path in home.rglob("*"):
        if path.is_file():
            assert pg.password.encode() not in path.read_bytes(), path
    # nor in the database: runs, events, tags, everything pg_dump sees
    dump = subprocess.run([str(pg.bindir / "pg_dump"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "orbit",
                           db], capture_output=True, text=True, timeout=300)
    assert dump.returncode == 0 and "event_logs" in dump.stdout
    assert pg.password not in dump.stdout

    # a process without the password fails, naming the variable (and never the password)
    missing = orbit(home, "round", "add")
    assert missing.returncode != 0 and "ORBIT_POSTGRES_PASSWORD" in missing.stdout + missing.stderr
    assert pg.password not in missing.stdout + missing.stderr


def test_a_socket_url_without_password_and_back_to_sqlite(postgres_server, tmp_path):
    pg = postgres_server
    home = tmp_path / "home"
    db = pg.create_database()
    done = orbit(home, "home", "--postgres", pg.socket_url(db))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "password:" not in (home / "dagster" / "dagster.yaml").read_text()
    added = orbit(home, "round", "add", "--policy", "embedded:uniform")
    assert added.returncode == 0, added.stderr[-2000:]
    assert pg.psql("SELECT partition FROM dynamic_partitions", db) == "r0000"  # the round is in PostgreSQL
    # a wrong password is reported without it, and the yaml still points where it was asked to
    other = pg.create_database()
    wrong = orbit(home, "home", "--postgres", f"postgresql://orbit:{SECRET}@127.0.0.1:{pg.port}/{other}")
    assert wrong.returncode == 1 and "connecting failed" in wrong.stderr and SECRET not in wrong.stderr
    back = orbit(home, "home", "--sqlite")
    assert back.returncode == 0 and "storage=sqlite" in back.stdout
    text = (home / "dagster" / "dagster.yaml").read_text()
    assert "postgres" not in text.replace("`orbit home --postgres URL`", "") and "\nstorage:" not in text
    assert "class: OrbitSqliteEventLogStorage" in text  # SQLite with Orbit's event log (resources/sqlite_storage.py)


def _pg_instance(folder: Path, url: str, ours: bool) -> dg.DagsterInstance:
    """An instance on one database: Orbit's storage classes (``ours``) or dagster-postgres' own."""
    run, events = (("resources.pg_storage", "OrbitPostgresRunStorage"), ("resources.pg_storage",
                                                                          "OrbitPostgresEventLogStorage")) if ours \
        else (("dagster_postgres.run_storage", "PostgresRunStorage"),
              ("dagster_postgres.event_log", "PostgresEventLogStorage"))
    folder.mkdir(parents=True)
    sections = [("run_storage", run), ("event_log_storage", events),
                ("schedule_storage", ("dagster_postgres.schedule_storage", "PostgresScheduleStorage"))]
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n" + "".join(
        f"{name}:\n  module: {module}\n  class: {cls}\n  config:\n    postgres_url: {url}\n"
        for name, (module, cls) in sections))
    return dg.DagsterInstance.from_config(str(folder))


def _sessions(pg, db: str) -> int:
    """Connections ever made to ``db`` (PostgreSQL's own count, pg_stat_database.sessions)."""
    out = subprocess.run([str(pg.bindir / "psql"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "orbit",
                          "-d", "postgres", "-Atc", f"SELECT pg_stat_force_next_flush(); "
                          f"SELECT sessions FROM pg_stat_database WHERE datname = '{db}'"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    return int(out[-1])


def test_orbits_postgres_storage_records_what_dagster_postgres_does_on_one_kept_connection(
        postgres_server, tmp_path, monkeypatch):
    """The same runs on Orbit's PostgreSQL storages and on dagster-postgres' own give the same events, asset
    records, planned and materialized partitions and check executions; Orbit's store a run's planned events in
    one insert and keep one connection per storage: dagster-postgres connects anew for every statement. A
    forked child opens its own connection and the parent's keeps working."""
    from storage_runs import run_and_record

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "100")  # what Orbit's processes run with (orbit.io.home)
    pg = postgres_server
    answers, sessions = {}, {}
    for ours in (False, True):
        db = pg.create_database()
        url = pg.tcp_url(db).replace("postgresql://", "postgresql+psycopg2://")
        with _pg_instance(tmp_path / f"ours-{ours}", url, ours) as instance:
            before = _sessions(pg, db)
            if ours:
                storage = instance.event_log_storage
                batches = []
                insert = storage._insert_index_rows
                storage._insert_index_rows = lambda conn, rows: (batches.append(len(rows)), insert(conn, rows))[1]
            answers[ours] = run_and_record(instance)
            sessions[ours] = _sessions(pg, db) - before
            if ours:
                assert batches == [3, 3, 3]  # two materializations and a check planned, per run
                child = os.fork()
                if child == 0:  # the child's storage must not talk over the parent's connection
                    code = 0 if instance.has_dynamic_partition("storage_rounds", "r9") is False else 1
                    os._exit(code)
                assert os.waitpid(child, 0)[1] == 0
                assert len(instance.get_runs()) == 3
    assert answers[True] == answers[False]
    assert answers[True]["checks"][0] == ("run2", "PLANNED", "b|r1")
    assert sessions[True] <= 4 and sessions[False] > 50, sessions


def _drop_connections(pg, db: str) -> int:
    """End every server process of ``db`` (what a server restart or a proxy's idle timeout does to them)."""
    out = subprocess.run([str(pg.bindir / "psql"), "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "orbit",
                          "-d", "postgres", "-Atc", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          f"WHERE datname = '{db}' AND pid <> pg_backend_pid()"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    return len(out)


def test_a_kept_connection_closed_while_idle_is_replaced_before_use(postgres_server, monkeypatch):
    """A kept connection the server closed (a restart, a proxy's idle timeout) is pinged once it has been idle for
    IDLE_PING_S and replaced, so the next statement succeeds; without the ping (a connection in use moments
    ago) the statement would meet the closed connection."""
    import sqlalchemy

    import resources.pg_storage as pg_storage

    pg = postgres_server
    db = pg.create_database()
    storage = pg_storage.OrbitPostgresRunStorage(pg.tcp_url(db).replace("postgresql://", "postgresql+psycopg2://"))
    try:
        storage.add_run(dg.DagsterRun(job_name="first"))
        assert _drop_connections(pg, db) == 1  # the one kept connection
        with pytest.raises(sqlalchemy.exc.OperationalError):  # not idle long enough to be pinged
            storage.get_runs()
        assert len(storage.get_runs()) == 1  # the pool replaced it
        monkeypatch.setattr(pg_storage, "IDLE_PING_S", 0.0)
        assert _drop_connections(pg, db) == 1
        storage.add_run(dg.DagsterRun(job_name="second"))  # pinged, replaced: no error
        assert sorted(r.job_name for r in storage.get_runs()) == ["first", "second"]
    finally:
        storage.dispose()


def test_the_bench_server_keeps_postgres_durability_and_the_test_server_does_not(postgres_server):
    """bench_round.py measures a server as a deployment runs it (PostgreSQL's defaults: fsync and synchronous
    commits on); the test suites' server turns them off."""
    from pg_server import PostgresServer

    assert postgres_server.durability() == "off off off"
    durable = PostgresServer(durable=True).start()
    try:
        assert durable.durability() == "on on on"
    finally:
        durable.stop()
