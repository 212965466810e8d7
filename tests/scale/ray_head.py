"""A real one-node Ray cluster for tests and benches: ``ray start --head`` from this venv, loopback only.

The head runs from the same venv as the caller (``<venv>/bin/ray``), so its workers import the same
packages; Orbit itself is shipped to them with each job (``orbit.compute.ray_backend``). Every port
is a free one on 127.0.0.1 (GCS, client server, dashboard, dashboard agent), the node advertises
127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's switch to keep a node on the loopback
address instead of the machine's), Ray's token authentication is on with a token of the head's own
(``client_env``: what a process joining it needs), and the session lives in a temp dir of its own. ``stop`` ends
exactly the processes of that session (found by the temp dir or the GCS address in their command
lines, and their children), never ``ray stop``, which stops every Ray on the machine.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

START_TIMEOUT_S = 180
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """``with RayHead(num_cpus=2) as head:`` ``head.address`` is ``127.0.0.1:<port>``."""

    def __init__(self, num_cpus: int = 2, object_store_mb: int = 256, new_session: bool = True):
        """``new_session=False`` keeps the head's processes in the caller's session: with the kernel's
        autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) a session of its own would
        get its own fair share of a busy host's CPUs, which a bench comparing it with the caller's own
        worker processes must not give it."""
        self.num_cpus, self.object_store_mb, self.new_session = num_cpus, object_store_mb, new_session
        self.temp = Path(tempfile.mkdtemp(prefix="orbit-ray-"))  # short: Ray's socket paths are length-limited
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = ""
        token = self.temp / "auth_token"  # Ray's token auth, with a token of this head's own (not ~/.ray's)
        token.write_text(secrets.token_hex(32), encoding="ascii")
        token.chmod(0o600)
        self.client_env = {**LOOPBACK_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        """What a process that joins this head needs in its environment (before it imports ray)."""

    def start(self) -> "RayHead":
        ray = Path(sys.executable).parent / "ray"
        cmd = [str(ray), "start", "--head", "--num-cpus", str(self.num_cpus), "--port", str(self.port),
               "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
               "--ray-client-server-port", str(free_port()), "--temp-dir", str(self.temp),
               "--object-store-memory", str(self.object_store_mb * 1024 * 1024), "--disable-usage-stats"]
        env = {**os.environ, **self.client_env}
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
            env.pop(key, None)
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S,
                                  start_new_session=self.new_session)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise RuntimeError(f"ray start did not return within {START_TIMEOUT_S}s") from exc
        self.log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{self.log[-3000:]}")
        return self

    def processes(self) -> list[psutil.Process]:
        """Every process of this head's session: those naming its temp dir or GCS address, and their descendants."""
        marks = (str(self.temp), self.address)  # the client server names only the GCS address
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if proc.pid != os.getpid() and any(m in part for part in proc.info["cmdline"] or [] for m in marks):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return list(found.values())

    def raylet(self) -> psutil.Process:
        for proc in self.processes():
            try:
                if proc.name() == "raylet":
                    return proc
            except psutil.NoSuchProcess:
                continue
        raise RuntimeError("the head's raylet is not running")

    def workers_running(self, function: str) -> list[psutil.Process]:
        """This head's worker processes running a task of ``function`` now (Ray titles them ``ray::<name>``)."""
        out = []
        for proc in self.raylet().children(recursive=True):
            try:
                if " ".join(proc.cmdline()).startswith(f"ray::{function}"):
                    out.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def stop(self) -> None:
        """End this session's processes (TERM, then KILL after 5 s) and remove its temp dir."""
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:  # workers that outlived their raylet
            for proc in self.processes():
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> "RayHead":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
