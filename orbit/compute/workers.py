"""One long-lived worker pool per process, shared by generation and verification.

It is started by the first request that is worth it (a big self-play partition,
a big verify partition) and reused by every later one in the same process (a
Dagster step, a bench, a CLI run), so the start-up is paid once. ``start_pool``
starts it in the background, so the caller keeps working until every worker is up.
Workers come from a forkserver (never a fork of a process that may hold threads)
that has already imported what they need.

When ``ORBIT_RAY_ADDRESS`` names a Ray cluster, the same calls hand out a pool of Ray tasks on it
instead (``orbit.compute.ray_backend``): the callers submit the same chunks and get the same rows.
"""

import atexit
import multiprocessing
import os
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pyarrow as pa

PRELOAD = ["pandas", "orbit.envs.openspiel.family", "orbit.stages.verify"]  # pyarrow imports pandas lazily

_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()
POOL_STATS = {"requests": 0}  # requests that ran on the pool (read by the benches)


def batch_ipc(batch: pa.RecordBatch) -> bytes:
    """A record batch as one Arrow IPC stream, the way a worker hands a batch back: writing it is one
    copy of its buffers, where pickling a nested batch rebuilds every child array on both sides."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def ipc_batch(data: bytes) -> pa.RecordBatch:
    """The record batch of ``batch_ipc``: read in place, its arrays are views of ``data``."""
    return pa.ipc.open_stream(data).read_next_batch()


RAY_ADDRESS_ENV = "ORBIT_RAY_ADDRESS"


def ray_address() -> str | None:
    """The Ray cluster chunks run on (``ORBIT_RAY_ADDRESS``: ``auto``, ``<host>:<port>`` or
    ``ray://<host>:<port>``); None, the default, for this machine's process pool."""
    return os.environ.get(RAY_ADDRESS_ENV, "").strip() or None


def _ray():
    from orbit.compute import ray_backend

    return ray_backend


def pool_running(workers: int) -> bool:
    if ray_address():
        return _ray().running(workers)
    return _POOL is not None and _POOL_WORKERS >= workers


def pool_workers() -> int:
    if ray_address():
        return _ray().pool_workers()
    return _POOL_WORKERS if _POOL is not None else 0


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """This process's worker pool with at least ``workers`` processes (started once, then reused);
    on the Ray cluster when one is configured (``ray_address``)."""
    global _POOL, _POOL_WORKERS
    address = ray_address()
    if address:
        return _ray().worker_pool(address, workers)
    with _POOL_LOCK:
        if _POOL is not None and _POOL_WORKERS >= workers:
            return _POOL
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _POOL, _POOL_WORKERS = ProcessPoolExecutor(max_workers=workers, mp_context=ctx), workers
        return _POOL


def _ready() -> None:
    """A no-op run on each worker: its result means the worker is up."""


class PoolStartFailed(BrokenProcessPool):
    """A worker exited while the pool was starting (a ``BrokenProcessPool``, as callers catch it), with the
    likeliest cause named: the forkserver imports the main module in every worker, so a script that calls
    Orbit at its top level, without a ``__main__`` guard, runs again in each worker and fails there."""


def _start_failure(exc: BrokenProcessPool) -> PoolStartFailed:
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    hint = (f" Workers start from a forkserver, which imports the main module ({main}) in each of them: if it "
            "calls Orbit at its top level, put that call under `if __name__ == \"__main__\":`."
            if main else "")
    failed = PoolStartFailed(f"a worker of the pool exited while starting ({exc}).{hint} The worker's own "
                             "error, if any, is on its stderr.")
    failed.__cause__ = exc
    return failed


_READY: "tuple[ProcessPoolExecutor, Future] | None" = None  # the pool and its future from start_pool
_READY_LOCK = threading.Lock()


def start_pool(workers: int) -> "Future[ProcessPoolExecutor]":
    """This process's pool with at least ``workers`` processes, started in the background: the future
    resolves once every worker is up, so the caller keeps working meanwhile. The same future for every
    caller of the same pool (resolved long ago once it runs). With a Ray cluster configured, the pool of
    Ray tasks, resolved once this process has joined the cluster and ``workers`` workers are warm."""
    global _READY
    address = ray_address()
    if address:
        return _ray().start_pool(address, workers, PRELOAD)
    with _READY_LOCK:
        pool = worker_pool(workers)  # made here, its processes spawned by the first submits
        if _READY is not None and _READY[0] is pool:
            return _READY[1]
        done: Future = Future()
        _READY = (pool, done)
        count = _POOL_WORKERS

    def start() -> None:
        try:
            for ready in [pool.submit(_ready) for _ in range(count)]:  # a submit spawns a worker when none is idle
                ready.result()
        except BaseException as exc:  # handed to the caller; the next request starts a fresh pool
            shutdown_pool(only=pool, wait=False)
            done.set_exception(_start_failure(exc) if isinstance(exc, BrokenProcessPool) else exc)
        else:
            done.set_result(pool)

    threading.Thread(target=start, name="orbit-pool-start", daemon=True).start()
    return done


def shutdown_pool(only: ProcessPoolExecutor | None = None, wait: bool = True) -> None:
    """Stop the pool (after a worker died, or at exit); the next request starts a fresh one.
    With ``only``: stop it only if it is still that pool (one that failed to start). A Ray pool is
    forgotten the same way (the cluster stays up, and this process stays joined to it)."""
    global _POOL, _POOL_WORKERS
    if "orbit.compute.ray_backend" in sys.modules:
        sys.modules["orbit.compute.ray_backend"].drop_pool(only)
    with _POOL_LOCK:
        if _POOL is None or (only is not None and _POOL is not only):
            return
        pool, _POOL, _POOL_WORKERS = _POOL, None, 0
    pool.shutdown(wait=wait, cancel_futures=True)


atexit.register(shutdown_pool)
