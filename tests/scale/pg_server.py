"""A real PostgreSQL server for tests: Debian's binaries, a data folder in a temp dir, loopback only.

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user (the child process
switches user itself, so the pid we hold is the postmaster's own and it is stopped by that pid). It listens on
127.0.0.1 (a free port; password authentication, scram-sha-256) and on a Unix socket in its temp dir (trust,
for the local user). Nothing else is touched: no system cluster, no service manager.
"""

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "orbit"
START_TIMEOUT_S = 120


def pg_bindir() -> Path | None:
    """The PostgreSQL server binaries: $ORBIT_PG_BIN, else the newest /usr/lib/postgresql/<v>/bin."""
    if os.environ.get("ORBIT_PG_BIN"):
        return Path(os.environ["ORBIT_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()`` runs initdb and the server; ``stop()`` ends it by its pid and removes the data."""

    def __init__(self, bindir: Path | None = None, durable: bool = False):
        self.durable = durable  # PostgreSQL's own defaults (fsync, synchronous commits), as a deployment runs it
        self.bindir = Path(bindir or pg_bindir() or "")
        if not (self.bindir / "initdb").exists():
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql; or set ORBIT_PG_BIN "
                               "to the folder holding initdb and postgres)")
        self.password = secrets.token_urlsafe(18)  # this server's only: never logged
        self.root = Path(tempfile.mkdtemp(prefix="orbit-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    def _user_kwargs(self) -> dict:
        if not self._as_postgres:
            return {}
        entry = pwd.getpwnam("postgres")
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _chown(self, path: Path) -> None:
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> "PostgresServer":
        os.chmod(self.root, 0o755)
        self.socket_dir.mkdir()
        self._chown(self.root)
        self._chown(self.socket_dir)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"],
                       cwd=self.root, env=env, check=True, capture_output=True, timeout=300, **self._user_kwargs())
        pwfile.unlink()
        log = open(self.log_path, "w")
        self._chown(self.log_path)
        # a test server's data dies with it, so it skips fsync unless durable (benches measure what a deployment
        # runs); loopback and the temp socket only
        volatile = [] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off"]
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-h", self.host, "-p", str(self.port),
             "-k", str(self.socket_dir), *volatile, "-c", "max_connections=200", "-c", "log_min_messages=warning"],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            **self._user_kwargs())
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port),
                                    "-U", USER, "-d", "postgres"], capture_output=True, env=env)
            if ready.returncode == 0:
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start: {tail}")
            time.sleep(0.2)

    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL over the socket (trust) and return psql's unaligned output."""
        out = subprocess.run([str(self.bindir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", USER,
                              "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, timeout=120,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        if out.returncode:
            raise RuntimeError(f"psql failed: {out.stderr.strip()[:500]}")
        return out.stdout.strip()

    def durability(self) -> str:
        """The server's fsync, synchronous_commit and full_page_writes settings, as it reports them."""
        return self.psql("SELECT current_setting('fsync') || ' ' || current_setting('synchronous_commit') || ' ' || "
                         "current_setting('full_page_writes')")

    def create_database(self, prefix: str = "orbit") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def tcp_url(self, db: str, password: bool = True) -> str:
        """postgresql://orbit[:password]@127.0.0.1:<port>/<db>"""
        user = f"{USER}:{self.password}" if password else USER
        return f"postgresql://{user}@{self.host}:{self.port}/{db}"

    def socket_url(self, db: str) -> str:
        return f"postgresql://{USER}@:{self.port}/{db}?host={self.socket_dir}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by the postmaster's pid, SIGKILL if it lingers; the temp dir goes too."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)
