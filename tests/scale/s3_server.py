"""A real S3-compatible server for tests and benches: moto's server (``python -m moto.server``) from this venv,
loopback only.

It listens on 127.0.0.1 on a free port, keeps its state in memory, and is stopped by its pid. The credentials
are made up for this server (moto accepts any): ``client_env`` is what a process talking to it needs, the
standard AWS variables plus ``ORBIT_S3_ENDPOINT``. Nothing else is touched: no AWS config file, no real
endpoint. moto models S3's API, not its operation: see docs/deployment.md for what it does not show.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """``with S3Server() as s3:`` ``s3.endpoint`` is ``http://127.0.0.1:<port>``; ``s3.bucket(name)`` creates one."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="orbit-moto-"))
        self.log_path = self.root / "moto.log"
        self.proc: subprocess.Popen | None = None
        self.client_env = {
            "AWS_ACCESS_KEY_ID": f"test{secrets.token_hex(4)}",  # moto accepts any: made up for this server
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
            "AWS_DEFAULT_REGION": "us-east-1",
            "ORBIT_S3_ENDPOINT": self.endpoint,
        }
        """What a process that talks to this server needs in its environment."""

    def start(self) -> "S3Server":
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["MOTO_ALLOW_NONEXISTENT_REGION"] = "true"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                         cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT_S}s:\n{self.log()[-3000:]}")
                time.sleep(0.1)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def filesystem(self):
        """An s3fs file system of this server (its own credentials, no listing cache)."""
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key=self.client_env["AWS_ACCESS_KEY_ID"],
                                 secret=self.client_env["AWS_SECRET_ACCESS_KEY"], use_listings_cache=False,
                                 skip_instance_cache=True)

    def bucket(self, name: str) -> str:
        """Create the bucket ``name``; returns ``s3://name``."""
        self.filesystem().mkdir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        """End the server by its pid; remove its temp dir."""
        import shutil

        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
