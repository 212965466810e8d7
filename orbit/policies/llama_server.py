"""Start, wait for and stop a llama.cpp server (``llama-cpp-python[server]``) on loopback for one GGUF file.

Plain Python (no Dagster): the real-model tests, the model benchmark and the flywheel's
"serve the new checkpoint" step use it the same way::

    from orbit.policies.llama_server import start_llama_server

    with start_llama_server("model.gguf", alias="smollm2") as server:
        print(server.url)         # http://127.0.0.1:<port>/v1
        print(server.policy_uri)  # openai:http://127.0.0.1:<port>/v1#smollm2
        ...                       # load_policy(server.policy_uri, ...)

* The server runs from a tool venv's Python (``python=``; else ``$ORBIT_LLAMA_PYTHON``; else
  ``<repo>/.tools/llama/bin/python``, made by ``make test-model``), in its own process group
  (setsid), so ``stop()`` ends it and every child it started.
* It binds loopback only (127.0.0.1, ::1 or localhost; anything else is refused); ``port=0``
  picks a free port.
* ``start_llama_server`` returns once ``GET /v1/models`` lists the alias (the model is loaded),
  or raises ``LlamaServerError`` with the tail of the server's log (and the process stopped).
* ``chat_format="chatml-function-calling"`` is what tool calling needs with llama-cpp-python
  (send ``tool_choice``); JSON-constrained output (``response_format`` ``json_object`` + ``schema``)
  works with and without it.
* The server's stdout/stderr go to ``log_path`` (default: a temporary file, kept on failure).
* ``n_threads`` (generation and prompt processing) defaults to half the CPUs: on a small shared
  machine llama.cpp's threads spin against each other (2 threads on 2 busy cores ran ~15x slower
  than 1 here).
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
PYTHON_ENV = "ORBIT_LLAMA_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO_ROOT / ".tools" / "llama" / "bin" / "python"
TOOL_CHAT_FORMAT = "chatml-function-calling"
DEFAULT_READY_TIMEOUT_S = 300.0
LOG_TAIL_CHARS = 2000


# What the server process inherits of the caller's environment: what a process needs to run, and the CPU
# and GPU library settings. Nothing else: llama-cpp-python's server reads its settings from environment
# variables too (CONFIG_FILE, HOST, PORT, MODEL, ...), and the caller's secrets are none of its business.
SERVER_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "LD_LIBRARY_PATH",
              "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
BOUND_BY_ORBIT = ("--host", "--port", "--config_file")  # extra_args may not rebind or reconfigure these


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: ``SERVER_ENV`` of the caller's, plus ``extra``."""
    env = {k: os.environ[k] for k in SERVER_ENV if k in os.environ}
    env.update(extra or {})
    return env


def check_extra_args(extra_args: Sequence[str]) -> list[str]:
    """``extra_args`` as a list, refused when one names the host, the port or a config file (argparse also
    takes an option by a prefix of its name, so ``--ho`` counts)."""
    args = [str(a) for a in extra_args]
    for arg in args:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and len(name) > 2 and any(bound.startswith(name) for bound in BOUND_BY_ORBIT):
            raise ValueError(f"extra_args may not set {arg.split('=', 1)[0]!r}: the server's address and "
                             f"settings are Orbit's (loopback, a port it picks)")
    return args


class LlamaServerError(RuntimeError):
    """The server could not be started or did not become ready."""


def server_python(python: str | os.PathLike | None = None) -> Path:
    """The Python of the venv holding ``llama-cpp-python[server]`` (argument, $ORBIT_LLAMA_PYTHON, .tools/llama)."""
    path = Path(python or os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)
    if not path.exists():
        raise LlamaServerError(f"no llama.cpp server Python at {path}: run `make test-model` (it builds "
                               f".tools/llama) or set ${PYTHON_ENV}")
    return path


def default_threads() -> int:
    """Half the CPUs (at least 1)."""
    return max(1, (os.cpu_count() or 2) // 2)


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def served_models(url: str, timeout_s: float = 5.0) -> list[str]:
    """Model ids listed by ``GET <url>/models`` (``url`` is the ``/v1`` base URL); raises ``OSError`` if unreachable."""
    with urllib.request.urlopen(f"{url}/models", timeout=timeout_s) as response:  # noqa: S310 (loopback URL)
        body = json.loads(response.read())
    return [m.get("id") for m in body.get("data") or [] if isinstance(m, dict)]


@dataclass
class LlamaServer:
    """A running llama.cpp server; ``url`` is its OpenAI base URL, ``alias`` the model id it serves."""

    model_path: Path
    host: str
    port: int
    alias: str
    chat_format: str | None
    process: subprocess.Popen
    log_path: Path
    _log_file: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def policy_uri(self) -> str:
        return f"openai:{self.url}#{self.alias}"

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = DEFAULT_READY_TIMEOUT_S) -> None:
        """Block until ``GET /v1/models`` lists the alias; raise ``LlamaServerError`` if the process dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running():
                raise LlamaServerError(f"llama.cpp server exited with code {self.process.returncode}:\n"
                                       f"{self.log_tail()}")
            try:
                if self.alias in served_models(self.url, timeout_s=5.0):
                    return
            except (OSError, ValueError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise LlamaServerError(f"llama.cpp server not ready after {timeout_s:.0f}s:\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL after ``grace_s``)."""
        if self.running():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=grace_s)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "LlamaServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_llama_server(model_path: str | os.PathLike, *, alias: str = "model", host: str = "127.0.0.1",
                       port: int = 0, chat_format: str | None = None, n_ctx: int = 2048,
                       n_threads: int | None = None, python: str | os.PathLike | None = None,
                       log_path: str | os.PathLike | None = None, extra_args: Sequence[str] = (),
                       ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S, wait: bool = True) -> LlamaServer:
    """Start ``python -m llama_cpp.server`` for ``model_path`` on loopback and (by default) wait until it serves.

    ``alias`` is the model id clients send (the ``#model`` of the policy URI). ``extra_args`` are passed
    to the server verbatim (e.g. ``["--n_batch", "256"]``), except options that set the host, the port
    or a config file (refused). The server gets a scrubbed environment (``server_env``). Raises
    ``LlamaServerError`` (with the log tail) when the server cannot start; the process is stopped then.
    """
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"refusing to bind {host!r}: the llama.cpp server is loopback-only ({', '.join(LOOPBACK_HOSTS)})")
    extra_args = check_extra_args(extra_args)
    model = Path(model_path)
    if not model.is_file():
        raise LlamaServerError(f"no GGUF model at {model}")
    exe = server_python(python)
    port = port or free_port(host)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"llama-server-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "-m", "llama_cpp.server", "--model", str(model), "--host", host, "--port", str(port),
           "--model_alias", alias, "--n_ctx", str(n_ctx)]
    if chat_format:
        cmd += ["--chat_format", chat_format]
    n_threads = n_threads or default_threads()
    cmd += ["--n_threads", str(n_threads), "--n_threads_batch", str(n_threads)]
    cmd += list(extra_args)
    log_file = open(log, "ab")
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                               start_new_session=True, env=server_env())
    server = LlamaServer(model, host, port, alias, chat_format, process, log, log_file)
    if wait:
        try:
            server.wait_ready(ready_timeout_s)
        except BaseException:
            server.stop()
            raise
    return server
