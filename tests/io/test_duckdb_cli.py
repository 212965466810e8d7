"""Any DuckDB, any directory: ``<lake>/orbit.duckdb`` opened by the DuckDB CLI a user installs from PyPI
(``duckdb-cli``, a separate executable, installed by ``uv tool install`` into ``.tools/duckdb-cli``) and by the
project's pinned ``duckdb``, from ``/tmp`` as the working directory, on a home a real ``orbit run`` made, and on
that home moved (``mv``) and copied (``cp -r``).

Before any Orbit command has run on a moved or copied home, a DuckDB shell gets an error naming the old place
(moved) or saying how to fix it (copied: the views refuse to read the original's files); after one Orbit
query command (``orbit yields``) on it, both readers work there.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from orbit.query import ABOUT_TABLE, DB_NAME, STORAGE_VERSION, build_report_db, refresh_report_db, report_db_stale

ROOT = Path(__file__).resolve().parents[2]
CLI_PIN = "duckdb-cli==1.5.6"  # the current PyPI release (reads storage versions 64-68; the pinned duckdb writes 69)
CLI_DIR = ROOT / ".tools" / "duckdb-cli"
ELSEWHERE = "/tmp"  # the working directory every reader runs in: not the home, not the lake, not the project
PINNED = ("import sys, duckdb; con = duckdb.connect(sys.argv[1], read_only=True); "
          "print(con.sql(sys.argv[2]).fetchall())")


def _uv() -> str | None:
    return shutil.which("uv") or next((str(p) for p in [ROOT / ".uv" / "bin" / "uv"] if p.exists()), None)


@pytest.fixture(scope="module")
def duckdb_cli() -> str:
    """The PyPI DuckDB CLI: $ORBIT_DUCKDB_CLI, else installed with uv into .tools/duckdb-cli (not the venv)."""
    if os.environ.get("ORBIT_DUCKDB_CLI"):
        return os.environ["ORBIT_DUCKDB_CLI"]
    exe = CLI_DIR / "bin" / "duckdb"
    version = CLI_PIN.split("==")[1]
    if not (exe.exists() and f"v{version}" in _run([str(exe), "--version"]).stdout):
        uv = _uv()
        if uv is None:
            pytest.skip(f"cannot install the DuckDB CLI ({CLI_PIN}): no uv on PATH nor in .uv/ "
                        "(`make install` makes it)")
        env = dict(os.environ, UV_TOOL_DIR=str(CLI_DIR / "tools"), UV_TOOL_BIN_DIR=str(CLI_DIR / "bin"),
                   UV_PYTHON_DOWNLOADS="never")
        done = subprocess.run([uv, "tool", "install", "--force", CLI_PIN], env=env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            pytest.skip(f"cannot install the DuckDB CLI ({CLI_PIN}) from PyPI with uv (no registry here?): "
                        f"{done.stderr.strip()[-500:]}")
    assert f"v{version}" in _run([str(exe), "--version"]).stdout
    return str(exe)


def _run(cmd: list[str], env: dict | None = None, cwd: str = ELSEWHERE) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORBIT_", "DAGSTER_HOME"))}
    env.update(ORBIT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DAGSTER_DISABLE_TELEMETRY="1",
               ORBIT_ENVS_FILE="/nonexistent")
    return env


def orbit(home: Path, *args: str) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "orbit_cli", *args], env=_env(home))


def cli(duckdb_cli: str, home: Path, sql: str = "select * from yields", *flags: str) -> subprocess.CompletedProcess:
    """The README's command: ``duckdb <lake>/orbit.duckdb -c "<sql>"``, run in /tmp."""
    return _run([duckdb_cli, *flags, str(home / "lake" / DB_NAME), "-c", sql])


def pinned(home: Path, sql: str = "select * from yields") -> subprocess.CompletedProcess:
    """The project's pinned duckdb (Python) on the same file, run in /tmp."""
    return _run([sys.executable, "-c", PINNED, str(home / "lake" / DB_NAME), sql])


def _yield_rows(home: Path) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{home}/lake/yield_metrics/*/*/*.parquet')").fetchall()[0][0]


def _readers_work(duckdb_cli: str, home: Path) -> None:
    """Both DuckDB versions read every view of ``home``'s database from /tmp, and see the home's own files."""
    n = _yield_rows(home)
    assert n > 0
    done = cli(duckdb_cli, home)
    assert done.returncode == 0, done.stderr
    assert "kuhn_poker" in done.stdout and "r0000" in done.stdout
    done = cli(duckdb_cli, home, "select count(*) from yields; select count(*) from yields_by_round; "
               "select count(*) from raw_samples; select count(*) from flywheel", "-csv", "-noheader")
    assert done.returncode == 0, done.stderr
    counts = [int(x) for x in done.stdout.split()]
    assert counts[:2] == [n, n] and counts[2] > 0 and counts[3] > 0, done.stdout
    done = pinned(home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("'kuhn_poker'") == n
    done = pinned(home, f"select database, placeholders from {ABOUT_TABLE}")
    assert done.returncode == 0, done.stderr
    assert f"('{(home / 'lake' / DB_NAME).resolve()}', [])" in done.stdout  # built for this place, no placeholder


@pytest.fixture(scope="module")
def fresh_home(tmp_path_factory) -> Path:
    """A home made by a real small round (the built-in envs only)."""
    home = tmp_path_factory.mktemp("duckdb-cli") / "home"
    done = orbit(home, "run", "--rounds", "1", "--envs", "kuhn_poker", "--tasks", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "lake" / DB_NAME).is_file()
    return home


def test_both_duckdb_versions_open_a_fresh_home_from_any_directory(duckdb_cli, fresh_home):
    _readers_work(duckdb_cli, fresh_home)
    # the shell opens it read-write by default and the pinned duckdb can still read it after, and vice versa
    done = _run([sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1]).close()",
                 str(fresh_home / "lake" / DB_NAME)])
    assert done.returncode == 0, done.stderr
    _readers_work(duckdb_cli, fresh_home)
    # written in the old storage format on purpose, and nothing needed beyond the file itself
    done = pinned(fresh_home, f"select storage_version from {ABOUT_TABLE}")
    assert STORAGE_VERSION in done.stdout, done.stdout + done.stderr


def test_a_moved_and_a_copied_home_work_after_one_orbit_command(duckdb_cli, fresh_home, tmp_path):
    copied = tmp_path / "copied"
    assert _run(["cp", "-r", str(fresh_home), str(copied)]).returncode == 0
    staged = tmp_path / "home"
    assert _run(["cp", "-r", str(fresh_home), str(staged)]).returncode == 0
    assert orbit(staged, "yields").returncode == 0  # its database now built for where it is, about to be moved
    _readers_work(duckdb_cli, staged)
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    assert _run(["mv", str(staged), str(moved)]).returncode == 0

    # before any Orbit command: the copy refuses to read the original's files and says what to do; the moved
    # home's views name a place that is gone (DuckDB's own error, naming it)
    done = cli(duckdb_cli, copied)
    assert done.returncode != 0 and "is a copy or a move of it" in done.stderr + done.stdout
    assert "orbit yields" in done.stderr + done.stdout
    done = pinned(copied)
    assert done.returncode != 0 and "is a copy or a move of it" in done.stderr
    done = cli(duckdb_cli, moved)
    assert done.returncode != 0 and str(staged / "lake" / "yield_metrics") in done.stderr + done.stdout

    for home in (copied, moved):
        done = orbit(home, "yields")
        assert done.returncode == 0, done.stderr
        assert f"rebuilt {home / 'lake' / DB_NAME}" in done.stderr and "moved or copied" in done.stderr
        assert "kuhn_poker" in done.stdout
        _readers_work(duckdb_cli, home)
        views = pinned(home, "select sql from duckdb_views() where not internal").stdout
        assert str(home.resolve()) in views and str(fresh_home) not in views  # the copy reads its own files
        again = orbit(home, "yields")  # nothing to rebuild the second time
        assert again.returncode == 0 and "rebuilt" not in again.stderr, again.stderr
    _readers_work(duckdb_cli, fresh_home)  # the original is untouched


def test_an_empty_placeholder_is_noted_and_becomes_a_view(duckdb_cli, fresh_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(fresh_home, home)
    root = home / "lake"
    shutil.move(root / "flywheel_report", tmp_path / "flywheel_report")
    build_report_db(root)
    comment = cli(duckdb_cli, home, "select comment from duckdb_tables() where table_name = 'flywheel'", "-list")
    assert comment.returncode == 0 and "Empty placeholder" in comment.stdout, comment.stderr
    about = pinned(home, f"select placeholders from {ABOUT_TABLE}").stdout
    assert "['flywheel']" in about, about
    assert report_db_stale(root) is None
    shutil.move(tmp_path / "flywheel_report", root / "flywheel_report")  # its files appear after the build
    assert "flywheel_report had no files" in report_db_stale(root)
    assert "rebuilt" in refresh_report_db(root)
    _readers_work(duckdb_cli, home)


def test_a_database_from_an_older_orbit_is_rebuilt_by_a_query_command(duckdb_cli, fresh_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(fresh_home, home)
    db = home / "lake" / DB_NAME
    db.unlink()
    con = duckdb.connect(str(db))  # the pinned duckdb's own storage version, relative globs: what Orbit wrote before
    con.execute(f"SET file_search_path = '{home / 'lake'}'")
    con.execute("CREATE VIEW yields AS SELECT * FROM read_parquet('yield_metrics/*/*/*.parquet')")
    con.close()
    assert cli(duckdb_cli, home).returncode != 0
    done = orbit(home, "sql", "SELECT count(*) AS n FROM yields")
    assert done.returncode == 0 and "written by an older Orbit" in done.stderr, done.stderr
    _readers_work(duckdb_cli, home)


def test_a_query_creates_no_database_where_there_is_none(fresh_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(fresh_home, home)
    (home / "lake" / DB_NAME).unlink()
    done = orbit(home, "yields")
    assert done.returncode == 0 and "kuhn_poker" in done.stdout, done.stderr
    assert not (home / "lake" / DB_NAME).exists()


def _read_only(path: Path, command: str) -> subprocess.CompletedProcess:
    """``command`` in a mount namespace where ``path`` is mounted read-only (root ignores file modes)."""
    script = f"mount --bind {path} {path} && mount -o remount,bind,ro {path} && {command}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def test_a_moved_read_only_home_is_still_queryable_and_says_why_the_file_is_not_rebuilt(fresh_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(fresh_home, home)
    probe = _read_only(home, f"cd {home} && (touch probe 2>/dev/null && echo writable || echo read-only)")
    if "read-only" not in probe.stdout:
        pytest.skip(f"no read-only bind mount here: {probe.stderr.strip()}")
    env = " ".join(f"{k}={v}" for k, v in _env(home).items() if k.startswith(("ORBIT_", "DAGSTER_")))
    done = _read_only(home, f"cd {ELSEWHERE} && env {env} {sys.executable} -m orbit_cli yields --format csv")
    assert done.returncode == 0, done.stderr
    assert "r0000,kuhn_poker,policy" in done.stdout  # the headline row: the round sampled a policy on kuhn_poker
    assert "could not rebuild it" in done.stderr and "Traceback" not in done.stderr
    stale = _read_only(home, f"cd {ELSEWHERE} && {sys.executable} -c "
                       f"\"from orbit.query import open_report_db; "
                       f"print(open_report_db('{home}/lake').sql('select count(*) from yields').fetchall())\"")
    assert stale.returncode == 0 and f"[({_yield_rows(home)},)]" in stale.stdout, stale.stderr
