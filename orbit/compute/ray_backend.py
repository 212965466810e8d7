"""The worker pool on a Ray cluster: where a stage's chunks run when ``ORBIT_RAY_ADDRESS`` names one.

``orbit.compute.workers`` hands out this pool instead of its local process pool when the variable is
set, so the callers (the self-play chunks of generation, the batches of verification) submit the same
functions with the same arguments and get their results back in the same order: the rows are the same
as on the local pool. Each ``submit`` is one Ray task (one CPU) and returns a
``concurrent.futures.Future``.

The address is Ray's: ``auto`` (the cluster this machine belongs to), ``<host>:<port>`` (the head's
GCS port; this process joins the cluster as a driver, so it must run on one of its nodes) or
``ray://<host>:<port>`` (Ray Client, from outside the cluster). The orbit package of this process is
shipped with every job (``runtime_env`` ``py_modules``), so the workers run the driver's code; the
cluster's nodes need Orbit's dependencies (the same venv or image), and the ``ORBIT_*`` variables of
this process travel with the tasks.

Nothing fails silently or waits forever:

* an address that does not answer is refused at once (``RayUnavailable``), and a connection that
  takes over ``ORBIT_RAY_CONNECT_SECONDS`` (default 120) too;
* a task that raises fails its future with ``RayTaskFailed`` (the task's own exception is its
  ``cause``);
* a worker or node that dies is retried by Ray ``ORBIT_RAY_TASK_RETRIES`` times (default 2; a
  chunk is a pure function of its arguments, so a rerun gives the same rows), then fails with
  ``RayWorkerDied``, a ``BrokenProcessPool`` as the local pool raises, so the stage fails before
  its partition is renamed into place;
* when no task of the pool has finished for ``ORBIT_RAY_STALL_SECONDS`` (default 900) while some
  are pending, every pending task is cancelled and fails with ``RayTaskTimeout``.
"""

import atexit
import inspect
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

ADDRESS_ENV = "ORBIT_RAY_ADDRESS"
RETRIES_ENV = "ORBIT_RAY_TASK_RETRIES"
STALL_ENV = "ORBIT_RAY_STALL_SECONDS"
CONNECT_ENV = "ORBIT_RAY_CONNECT_SECONDS"
DEFAULT_RETRIES = 2
DEFAULT_STALL_S = 900.0
DEFAULT_CONNECT_S = 120.0
NAMESPACE = "orbit"
ORBIT_DIR = Path(__file__).resolve().parent.parent  # the orbit package, shipped to the workers

STATS = {"tasks": 0, "connects": 0}  # tasks submitted to Ray and connections made (read by tests, benches)


class RayComputeError(RuntimeError):
    """Chunks could not run on the Ray cluster."""


class RayUnavailable(RayComputeError):
    """The configured Ray cluster cannot be reached."""


class RayTaskFailed(RayComputeError):
    """A task raised on the Ray cluster; ``cause`` is the task's own exception."""

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


class RayWorkerDied(RayComputeError, BrokenProcessPool):
    """A Ray worker (or its node) died while running a task, and Ray's retries are spent."""


class RayTaskTimeout(RayComputeError, TimeoutError):
    """No task of the pool finished for ``ORBIT_RAY_STALL_SECONDS`` while some were pending."""


def configured_address() -> str | None:
    """The Ray address this process's chunks go to (``ORBIT_RAY_ADDRESS``), None for the local pool."""
    return os.environ.get(ADDRESS_ENV, "").strip() or None


def _env_number(name: str, default: float, low: float, cast=float) -> Any:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return cast(default)
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of at least {low}") from None
    if not value >= low:
        raise ValueError(f"{name}={raw!r}: expected a number of at least {low}")
    return value


def task_retries() -> int:
    return _env_number(RETRIES_ENV, DEFAULT_RETRIES, 0, int)


def stall_seconds() -> float:
    return _env_number(STALL_ENV, DEFAULT_STALL_S, 0.1)


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of an address that names one (``auto`` names none)."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str) -> None:
    target = _host_port(address)
    if address != "auto" and target is None:
        raise RayUnavailable(f"{ADDRESS_ENV}={address!r}: expected auto, <host>:<port> or ray://<host>:<port>")
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=5.0):
            pass
    except OSError as exc:
        raise RayUnavailable(f"the Ray cluster at {address} ({ADDRESS_ENV}) does not answer: {exc}") from None


def runtime_env() -> dict:
    """What every task of this process's jobs carries: the orbit package and the ``ORBIT_*`` variables."""
    env_vars = {k: v for k, v in os.environ.items() if k.startswith("ORBIT_") and not k.startswith("ORBIT_RAY_")}
    return {"py_modules": [str(ORBIT_DIR)], "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars}


_LOCK = threading.RLock()
_CONNECTED: str | None = None  # the address ray.init connected this process to


def connect(address: str) -> None:
    """Join the cluster at ``address`` as a driver (once per process and address)."""
    global _CONNECTED
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # read when ray is imported
    target = _host_port(address)
    if target is not None and target[0] in ("127.0.0.1", "localhost", "::1"):
        # a head on loopback: this driver stays on loopback too (Ray's switch, read when ray is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and "ray" in sys.modules:
            try:  # ray was imported before: without this it rewrites 127.0.0.1 to the machine's address
                sys.modules["ray"]._private.ray_constants.ENABLE_RAY_CLUSTER = False
            except AttributeError:
                pass
    import ray

    with _LOCK:
        if _CONNECTED == address and ray.is_initialized():
            return
        try:  # ray imported before this module set RAY_ENABLE_AUTO_CONNECT: a task after ray.shutdown
            ray._private.auto_init_hook.enable_auto_connect = False  # must never start a local Ray instead
        except AttributeError:
            pass
        if ray.is_initialized():
            ray.shutdown()
            _CONNECTED = None
        _check_reachable(address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        failure: list[BaseException] = []

        def init() -> None:
            try:
                ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env(), logging_level="WARNING",
                         log_to_driver=False)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller
                failure.append(exc)

        limit = _env_number(CONNECT_ENV, DEFAULT_CONNECT_S, 1.0)
        # In a thread of its own: bounded by ``limit``, and ray.init leaves this process's SIGTERM handler
        # alone (in the main thread it would install its own, over the host's: a Dagster step's).
        _quiet_sigterm_warning()
        thread = threading.Thread(target=init, name="orbit-ray-connect", daemon=True)
        thread.start()
        thread.join(limit)
        if thread.is_alive():
            raise RayUnavailable(f"connecting to the Ray cluster at {address} ({ADDRESS_ENV}) took over {limit:.0f}s")
        if failure:
            raise RayUnavailable(f"cannot join the Ray cluster at {address} ({ADDRESS_ENV}): "
                                 f"{type(failure[0]).__name__}: {failure[0]}") from failure[0]
        _CONNECTED = address
        STATS["connects"] += 1


class _NoSigtermWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def _quiet_sigterm_warning() -> None:
    """ray.init off the main thread warns that it set no SIGTERM handler: that is the point."""
    log = logging.getLogger("ray._private.worker")
    if not any(isinstance(f, _NoSigtermWarning) for f in log.filters):
        log.addFilter(_NoSigtermWarning())


def disconnect() -> None:
    """Leave the cluster (the next request joins it again)."""
    global _CONNECTED, _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if _CONNECTED is not None:
            import ray

            ray.shutdown()
            _CONNECTED = None


def _ready(modules: list[str]) -> int:
    """Run on a worker before the first chunk: imports what the chunks need (as the local pool's
    forkserver preloads it)."""
    import importlib

    for name in modules:
        importlib.import_module(name)
    return os.getpid()


def _call(fn: Callable, *args: Any) -> Any:
    return fn(*args)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip()


def translate(exc: BaseException, what: str) -> BaseException:
    """The named error of a Ray failure of the task ``what``."""
    from ray import exceptions as rex

    if isinstance(exc, RayComputeError):
        return exc
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        if isinstance(cause, (rex.WorkerCrashedError, rex.NodeDiedError)):
            return RayWorkerDied(f"{what}: a Ray worker died ({_describe(cause)})")
        return RayTaskFailed(f"{what} failed on the Ray cluster: {_describe(cause or exc)}", cause)
    dead = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                            "OutOfMemoryError", "LocalRayletDiedError", "RaySystemError",
                                            "OwnerDiedError") if hasattr(rex, n))
    if isinstance(exc, dead):
        return RayWorkerDied(f"{what}: a Ray worker died after {task_retries()} retries ({_describe(exc)})")
    if isinstance(exc, rex.TaskCancelledError):
        return RayTaskFailed(f"{what} was cancelled on the Ray cluster", exc)
    return RayTaskFailed(f"{what} failed on the Ray cluster: {_describe(exc)}", exc)


class RayPool:
    """The local pool's interface (``submit``, ``shutdown``) over Ray tasks; see the module docstring."""

    def __init__(self, address: str, workers: int):
        self.address, self.workers = address, workers
        self._remotes: dict[Callable, Any] = {}
        self._pending: dict[Future, Any] = {}  # our future -> its ObjectRef
        self._lock = threading.Lock()
        self._progress = time.monotonic()
        self._closed = False
        self._watchdog: threading.Thread | None = None

    def _remote(self, fn: Callable):
        import ray

        remote = self._remotes.get(fn)
        if remote is None:
            remote = self._remotes[fn] = ray.remote(fn)
        return remote

    def _task(self, fn: Callable, args: tuple):
        """The remote function and arguments of ``fn(*args)``: a Python function is a remote function
        itself, any other callable (a builtin, a bound method) is called by ``_call``."""
        if inspect.isfunction(fn):
            return self._remote(fn), args
        return self._remote(_call), (fn, *args)

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Run ``fn(*args)`` as a Ray task; the future holds its result or its named error."""
        import ray

        if self._closed:
            raise RuntimeError("cannot submit to a Ray pool that was shut down")
        if _CONNECTED != self.address or not ray.is_initialized():
            raise RayUnavailable(f"this process is not joined to the Ray cluster at {self.address} any more")
        what = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        out: Future = Future()
        remote, args = self._task(fn, args)
        ref = remote.options(num_cpus=1, max_retries=task_retries(), retry_exceptions=False).remote(*args)
        STATS["tasks"] += 1
        with self._lock:
            if not self._pending:
                self._progress = time.monotonic()
            self._pending[out] = ref
        self._watch()

        def finished(done: Future) -> None:
            with self._lock:
                self._pending.pop(out, None)
                self._progress = time.monotonic()
            try:
                value = done.result()
            except BaseException as exc:  # noqa: BLE001 -- every failure becomes a named error
                _settle(out, error=translate(exc, what))
            else:
                _settle(out, value=value)

        def cancelled(mine: Future) -> None:
            if mine.cancelled():
                with self._lock:
                    self._pending.pop(out, None)
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 -- the task may be done already
                    pass

        out.add_done_callback(cancelled)
        ref.future().add_done_callback(finished)
        return out

    def _watch(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._stall_loop, name="orbit-ray-watchdog", daemon=True)
            self._watchdog.start()

    def _stall_loop(self) -> None:
        import ray

        while not self._closed:
            limit = stall_seconds()
            time.sleep(min(1.0, limit / 4))
            with self._lock:
                stalled = self._pending and time.monotonic() - self._progress > limit
                victims = list(self._pending.items()) if stalled else []
                if stalled:
                    self._pending.clear()
            for out, ref in victims:
                _settle(out, error=RayTaskTimeout(
                    f"no task finished on the Ray cluster at {self.address} for {limit:.0f}s "
                    f"({STALL_ENV}); {len(victims)} pending task(s) cancelled"))
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 -- the task may be done already
                    pass

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop handing out work; with ``cancel_futures`` cancel what is pending. The cluster stays up."""
        self._closed = True
        if cancel_futures:
            with self._lock:
                pending = list(self._pending)
            for out in pending:
                out.cancel()


def _settle(out: Future, value: Any = None, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            out.set_exception(error)
        else:
            out.set_result(value)
    except InvalidStateError:  # cancelled or timed out already
        pass


_POOL: RayPool | None = None
_READY: tuple[str, int, Future] | None = None  # (address, workers, the future of start_pool)


def running(workers: int) -> bool:
    """Whether this process's Ray pool for the configured address is up for ``workers`` (warm)."""
    ready = _READY
    return (ready is not None and ready[0] == configured_address() and ready[1] >= workers and ready[2].done()
            and ready[2].exception() is None and _POOL is not None and not _POOL._closed)


def pool_workers() -> int:
    return _POOL.workers if _POOL is not None else 0


def worker_pool(address: str, workers: int) -> RayPool:
    """This process's pool on the cluster at ``address`` (joined first if need be)."""
    global _POOL
    with _LOCK:
        connect(address)
        if _POOL is None or _POOL._closed or _POOL.address != address or _POOL.workers < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False, cancel_futures=False)
            _POOL = RayPool(address, workers)
        return _POOL


def start_pool(address: str, workers: int, preload: list[str]) -> "Future[RayPool]":
    """This process's Ray pool, joined and warmed in the background: the future resolves once
    ``workers`` workers have imported ``preload``; a failure to join is its named exception. The same
    future for every caller while it starts or once it runs."""
    global _READY
    with _LOCK:
        ready = _READY
        if ready is not None and ready[0] == address and ready[1] >= workers and not (
                ready[2].done() and (ready[2].exception() is not None or _POOL is None or _POOL._closed)):
            return ready[2]
        done: Future = Future()
        _READY = (address, workers, done)

    def start() -> None:
        try:
            pool = worker_pool(address, workers)
            for warm in [pool.submit(_ready, preload) for _ in range(workers)]:
                warm.result()
        except BaseException as exc:  # noqa: BLE001 -- handed to the caller; the next request tries again
            done.set_exception(exc)
        else:
            done.set_result(pool)

    threading.Thread(target=start, name="orbit-ray-start", daemon=True).start()
    return done


def drop_pool(only: Any = None) -> None:
    """Forget this process's Ray pool (after a worker died); the next request makes a new one. With
    ``only``: only if it is still that pool."""
    global _POOL, _READY
    with _LOCK:
        if _POOL is None or (only is not None and _POOL is not only):
            return
        pool, _POOL, _READY = _POOL, None, None
    pool.shutdown(wait=False, cancel_futures=True)


def _at_exit() -> None:
    global _READY
    _READY = None
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)


atexit.register(_at_exit)  # no task is submitted once the interpreter exits
