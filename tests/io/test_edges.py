"""The edges of the home and the lake: lock files never followed through a symlink, a read-only lake
and home still queryable."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from orbit.io import lake
from orbit.io.home import LOCK_FILE, home_lock
from orbit.io.locks import LockPathError, locked
from orbit.flywheel.rounds import RoundRegistry
from orbit.stages.yields import YIELD_SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def _yields(root, rnd="r0000", env="tic_tac_toe"):
    rows = [{"round": rnd, "env": env, "source": "all", "attempts": 10, "passes": 4, "pass_rate": 0.4, "g": None}]
    lake.write_table(pa.Table.from_pylist(rows, schema=YIELD_SCHEMA), lake.partition_file(root, "yield_metrics", rnd, env))


def test_a_lock_file_is_never_opened_through_a_symlink(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (home / LOCK_FILE).symlink_to(target)
    monkeypatch.setenv("ORBIT_HOME", str(home))
    with pytest.raises(LockPathError, match="symbolic link"):
        with home_lock("run"):
            pass
    assert target.read_text() == "keep me"
    registry_lock = lake.partition_file(tmp_path / "lake", "rounds").parent / ".lock"
    registry_lock.parent.mkdir(parents=True)
    registry_lock.symlink_to(target)
    with pytest.raises(LockPathError):
        RoundRegistry(tmp_path / "lake").add("embedded:uniform")
    assert target.read_text() == "keep me"


def test_a_directory_where_a_lock_file_belongs_is_named(tmp_path):
    (tmp_path / "x.lock").mkdir()
    with pytest.raises(LockPathError, match="is a directory where a lock file belongs"):
        with locked(tmp_path / "x.lock"):
            pass
    os.mkfifo(tmp_path / "fifo.lock")
    with pytest.raises(LockPathError, match="not a regular file"):
        with locked(tmp_path / "fifo.lock"):
            pass


def test_the_cli_reports_a_bad_lock_path_without_a_traceback(tmp_path):
    home = tmp_path / "home"
    (home / LOCK_FILE).mkdir(parents=True)
    env = dict(os.environ, ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    done = subprocess.run([sys.executable, "-m", "orbit_cli", "run", "--envs", "tic_tac_toe", "--tasks", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "is a directory where a lock file belongs" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def _read_only(path: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` in a mount namespace where ``path`` is mounted read-only (root ignores file modes)."""
    script = f"mount --bind {path} {path} && mount -o remount,bind,ro {path} && {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def test_a_read_only_home_and_lake_are_queryable(tmp_path):
    home = tmp_path / "home"
    root = home / "lake"
    for r in ("r0000", "r0001"):
        _yields(root, r)
    probe = _read_only(home, f"cd {home} && (touch probe 2>/dev/null && echo writable || echo read-only)")
    if "read-only" not in probe.stdout:
        pytest.skip(f"no read-only bind mount here: {probe.stderr.strip()}")
    env = f"ORBIT_HOME={home} DAGSTER_HOME={home}/dagster"
    for args in ("yields --format csv", "sql 'SELECT count(*) AS n FROM yields'"):
        done = _read_only(home, f"cd {home} && env {env} {sys.executable} -m orbit_cli {args}")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    done = _read_only(home, f"cd {home} && env {env} {sys.executable} -m orbit_cli yields --format csv")
    assert "r0001,tic_tac_toe,all,10,4" in done.stdout
    assert not (home / "dagster").exists()  # the query created nothing


@pytest.mark.parametrize(("name", "value", "module"), [
    ("ORBIT_AUTOMATION_INTERVAL_S", "abc", "sensors.automation"),
    ("ORBIT_AUTOMATION_INTERVAL_S", "-5", "sensors.automation"),
    ("ORBIT_AUTOMATION_INTERVAL_S", "0", "sensors.automation"),
    ("ORBIT_DEFAULT_POLICY", "openai:http://[::1:80/v1#m", "resources"),
    ("ORBIT_WORKERS", "two", "resources"),
    ("ORBIT_REWARD_UNFINISHED", "nan", "orbit.rewards"),
])
def test_every_setting_is_validated_naming_its_variable(tmp_path, name, value, module):
    code = f"import {module}" + ("; resources.resources_for()" if module == "resources" else "")
    env = dict(os.environ, ORBIT_HOME=str(tmp_path / "home"), **{name: value})
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and name in done.stderr.strip().splitlines()[-1], done.stderr[-500:]


@pytest.mark.parametrize("sql", ["COPY (SELECT 1 AS x) TO '{target}'", "SELECT 1; COPY (SELECT 1) TO '{target}'",
                                 "ATTACH '{target}' AS x", "CREATE TABLE t AS SELECT 1",
                                 "EXPORT DATABASE '{target}'", "PRAGMA enable_profiling"])
def test_orbit_sql_runs_only_queries_unless_write_is_given(tmp_path, sql):
    home = tmp_path / "home"
    _yields(home / "lake")
    target = home / "lake" / "yield_metrics" / "r0000" / "tic_tac_toe" / "part-0.parquet"
    before = target.read_bytes()
    env = dict(os.environ, ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    statement = sql.format(target=target)
    done = subprocess.run([sys.executable, "-m", "orbit_cli", "sql", statement], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "add --write to run it" in done.stderr, done.stderr
    assert target.read_bytes() == before
    query = subprocess.run([sys.executable, "-m", "orbit_cli", "sql", "SELECT count(*) AS n FROM yields"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert query.returncode == 0 and query.stdout.startswith("n\n")


def test_orbit_sql_with_write_runs_a_copy(tmp_path):
    home = tmp_path / "home"
    _yields(home / "lake")
    out = tmp_path / "out.csv"
    env = dict(os.environ, ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    done = subprocess.run([sys.executable, "-m", "orbit_cli", "sql", "--write",
                           f"COPY (SELECT env, attempts FROM yields) TO '{out}'"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == ["env,attempts", "tic_tac_toe,10"]


@pytest.mark.parametrize("args", [["yields"], ["sql", "SELECT 1"]])
def test_a_query_outside_any_project_says_where_it_looked_and_creates_nothing(tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k not in ("ORBIT_HOME", "ORBIT_LAKE", "DAGSTER_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "orbit_cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert str(tmp_path / ".orbit" / "lake") in done.stderr and "ORBIT_HOME" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing invented


def test_a_command_that_creates_a_home_says_where(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ORBIT_HOME", "ORBIT_LAKE", "DAGSTER_HOME")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "orbit_cli", "home"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"created a new Orbit home at {tmp_path / '.orbit'}" in done.stderr
    again = subprocess.run([sys.executable, "-m", "orbit_cli", "home"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and "created" not in again.stderr
    query = subprocess.run([sys.executable, "-m", "orbit_cli", "yields"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert query.returncode == 0 and query.stdout.rstrip().endswith("(0 rows)"), query.stderr
