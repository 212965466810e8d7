"""A pool of worker processes with a hard per-job timeout: a job that overruns kills its worker.

For work that may never return -- a symbolic comparison that pins a core for minutes, a C routine that
ignores signals -- where ``signal.alarm`` (main thread only, blind to C code) and
``future.result(timeout)`` (the thread goes on computing) stop nothing. Here the deadline is
enforced by ``SIGKILL`` of the worker that holds the job, from the parent; the job's outcome is
``TIMEOUT``, the pool starts a replacement and the jobs queued behind it go on.

``map(jobs)`` sends the jobs to the workers in chunks (one pipe write per chunk, so a fast job pays
no round trip of its own) and the worker answers job by job, which is what the clock runs on: a job's
deadline is ``timeout`` seconds after the worker finished the previous one (or took the chunk). The
outcomes come back in the jobs' order, each ``(status, value)``: ``(OK, result)``, ``(TIMEOUT, None)``,
``(ERROR, "ExceptionType")`` when the target raised, ``(MEMORY, None)`` when it ran out of its
address space (``memory_mb``), ``(CRASHED, "detail")`` when the worker died otherwise (a segfault, a
kill from outside). A job is never retried: the jobs behind a killed one in its chunk are requeued.

Workers come from the multiprocessing forkserver (never a fork of a parent that may hold threads),
with ``preload`` imported there once (when the pool starts the forkserver), so a replacement starts in
milliseconds; a worker is given jobs only once it has imported its target and run ``warmup``, so an
import never eats into a job's time. They are started on
the first ``map`` and live until ``close`` (or the parent's exit: ``atexit``, and a worker whose
parent is gone exits by itself within a second, even in the middle of a job). ``map`` may be called
from any thread; calls are served one at a time.
"""

import atexit
import gc
import multiprocessing
import os
import threading
import time
import weakref
from collections import deque
from contextlib import contextmanager
from importlib import import_module
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

OK, TIMEOUT, ERROR, MEMORY, CRASHED = "ok", "timeout", "error", "memory", "crashed"
START_TIMEOUT = 300.0  # seconds a new worker may take to import its target (a cold sympy is slow)
MAX_CHUNK = 64


def resolve(target: str) -> Callable:
    """The function ``"module:function"`` names."""
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def _watch_parent(parent: int) -> None:
    """In a worker: exit once the pool's process is gone, whatever the main thread is doing."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # pid reused by another user's process: ours is gone
            os._exit(0)


def _worker_main(conn, target: str, parent: int, memory_mb: int | None, warmup: str | None = None) -> None:
    """A worker: ``target(job)`` for each job of each chunk, one answer per job. It reports ready once
    ``target`` is imported and ``warmup()`` has run, so no job's clock pays for the imports."""
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if memory_mb:
        import resource

        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        fn = resolve(target)
        if warmup:
            resolve(warmup)()
        gc.freeze()  # what the imports made is never garbage: keep the collector (and its page writes) off it
    except BaseException as exc:  # noqa: BLE001 -- reported to the pool, which fails the jobs
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for index, job in chunk:
            try:
                out = (OK, fn(job))
            except MemoryError:
                out = (MEMORY, None)
            except BaseException as exc:  # noqa: BLE001 -- one job's error is its outcome
                out = (ERROR, type(exc).__name__)
            try:
                conn.send((index, out))
            except MemoryError:
                conn.send((index, (MEMORY, None)))
            except Exception as exc:  # noqa: BLE001 -- a result that does not pickle
                conn.send((index, (ERROR, type(exc).__name__)))


def _context(preload: Sequence[str]):
    """The forkserver context, with ``preload`` added to what the forkserver imports if it is not running yet."""
    ctx = multiprocessing.get_context("forkserver")
    try:
        from multiprocessing import forkserver

        server = forkserver._forkserver
        running = getattr(server, "_forkserver_pid", None) is not None
        if not running and preload:
            current = list(getattr(server, "_preload_modules", []) or [])
            try:
                from orbit.compute.workers import PRELOAD as shared
            except Exception:  # noqa: BLE001
                shared = []
            wanted = [m for m in dict.fromkeys([*current, *shared, *preload]) if m != "__main__"]
            ctx.set_forkserver_preload(wanted)
    except Exception:  # noqa: BLE001 -- a preload is an optimisation only
        pass
    return ctx


class _Worker:
    __slots__ = ("process", "conn", "ready", "pending", "started", "spawned")

    def __init__(self, process, conn):
        self.process, self.conn = process, conn
        self.ready = False
        self.pending: deque = deque()  # (index, job) sent and not answered, in order
        self.started = 0.0  # when the job at the head of ``pending`` started
        self.spawned = time.monotonic()


_POOLS: "weakref.WeakSet[KillablePool]" = weakref.WeakSet()
_SPAWN_LOCK = threading.Lock()


@contextmanager
def _without_main():
    """Start a worker without re-running the parent's ``__main__`` in it: a worker needs only its target,
    and a trainer's or a notebook's script that is not guarded by ``if __name__ == "__main__"`` would
    otherwise run again (and start pools) in every worker."""
    from multiprocessing import spawn

    with _SPAWN_LOCK:
        original = spawn.get_preparation_data

        def preparation_data(name):
            data = original(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = preparation_data
        try:
            yield
        finally:
            spawn.get_preparation_data = original


class KillablePool:
    def __init__(self, target: str, workers: int = 1, timeout: float = 5.0, *, preload: Sequence[str] = (),
                 memory_mb: int | None = None, warmup: str | None = None, start_timeout: float = START_TIMEOUT):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.target, self.workers, self.timeout = target, int(workers), float(timeout)
        self.preload, self.memory_mb, self.start_timeout = tuple(preload), memory_mb, float(start_timeout)
        self.warmup = warmup
        self._lock = threading.Lock()
        self._live: list[_Worker] = []
        self._owner = os.getpid()
        self.stats = {"jobs": 0, "timeouts": 0, "crashes": 0, "started": 0}
        _POOLS.add(self)

    # ---- workers ----------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        ctx = _context(self.preload)
        parent_conn, child_conn = ctx.Pipe()
        process = ctx.Process(target=_worker_main, args=(child_conn, self.target, os.getpid(), self.memory_mb, self.warmup),
                              daemon=True, name="orbit-killable")
        with _without_main():
            process.start()
        child_conn.close()
        self.stats["started"] += 1
        return _Worker(process, parent_conn)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        try:
            worker.process.kill()
        except Exception:  # noqa: BLE001 -- already gone
            pass
        worker.process.join(5)
        worker.conn.close()

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and benches)."""
        return [w.process.pid for w in self._live if w.process.pid is not None]

    def close(self) -> None:
        """Stop every worker (the pool starts new ones if used again)."""
        with self._lock:
            live, self._live = self._live, []
        for worker in live:
            try:
                worker.conn.send(None)
            except Exception:  # noqa: BLE001
                pass
        deadline = time.monotonic() + 1.0
        for worker in live:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                self._kill(worker)
            else:
                worker.conn.close()

    def __del__(self):
        try:
            if self._owner == os.getpid():
                self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---- jobs --------------------------------------------------------------------------------------

    def map(self, jobs: Sequence[Any], chunksize: int | None = None) -> list[tuple[str, Any]]:
        """Each job's ``(status, value)``, in order (see the module doc)."""
        jobs = list(jobs)
        if not jobs:
            return []
        with self._lock:
            if self._owner != os.getpid():  # a forked child: the parent's workers are not ours
                self._live, self._owner = [], os.getpid()
            return self._map(jobs, chunksize)

    def _map(self, jobs: list, chunksize: int | None) -> list[tuple[str, Any]]:
        n = len(jobs)
        size = chunksize or max(1, min(MAX_CHUNK, -(-n // (self.workers * 4))))
        queue: deque = deque(list(enumerate(jobs))[i:i + size] for i in range(0, n, size))
        results: list = [None] * n
        done = 0
        self.stats["jobs"] += n
        self._live = [w for w in self._live if w.process.is_alive()]
        while len(self._live) < self.workers:  # the pool at its full size, whatever this call needs
            self._live.append(self._spawn())

        def finish(index: int, outcome: tuple) -> None:
            nonlocal done
            if results[index] is None:
                results[index] = outcome
                done += 1

        def lose(worker: _Worker, outcome: tuple) -> None:
            """The worker is gone: its current job gets ``outcome``, the rest of its chunk is requeued."""
            self._live.remove(worker)
            if worker.pending:
                index, _ = worker.pending.popleft()
                finish(index, outcome)
                if worker.pending:
                    queue.appendleft(list(worker.pending))
            self._kill(worker)

        while done < n:
            now = time.monotonic()
            for worker in self._live:  # hand out chunks
                if worker.ready and not worker.pending and queue:
                    chunk = queue.popleft()
                    try:
                        worker.conn.send(chunk)
                    except (OSError, ValueError):
                        queue.appendleft(chunk)
                        continue
                    worker.pending.extend(chunk)
                    worker.started = now
            # replace lost workers while work remains
            while queue and len(self._live) < self.workers:
                self._live.append(self._spawn())
            deadlines = [w.started + self.timeout for w in self._live if w.pending]
            deadlines += [w.spawned + self.start_timeout for w in self._live if not w.ready]
            wait_for = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            by_handle = {}
            for worker in self._live:
                by_handle[worker.conn] = worker
                by_handle[worker.process.sentinel] = worker
            ready = wait(list(by_handle), wait_for)
            for handle in ready:
                worker = by_handle[handle]
                if worker not in self._live:
                    continue
                if handle is worker.conn:
                    try:
                        while worker.conn.poll():
                            message = worker.conn.recv()
                            if not worker.ready:
                                if message[0] == "failed":
                                    raise RuntimeError(f"worker for {self.target} failed to start: {message[1]}")
                                worker.ready = True
                                continue
                            index, outcome = message
                            if worker.pending and worker.pending[0][0] == index:
                                worker.pending.popleft()
                            finish(index, outcome)
                            worker.started = time.monotonic()
                    except (EOFError, OSError):
                        self.stats["crashes"] += 1
                        lose(worker, (CRASHED, self._exit_detail(worker)))
                elif not worker.process.is_alive() or worker.process.exitcode is not None:
                    if worker.conn.poll():  # answers written before it died: read them first
                        continue
                    self.stats["crashes"] += 1
                    if not worker.ready and not worker.pending:
                        self._live.remove(worker)
                        self._kill(worker)
                        raise RuntimeError(f"worker for {self.target} died while starting "
                                           f"({self._exit_detail(worker)})")
                    lose(worker, (CRASHED, self._exit_detail(worker)))
            now = time.monotonic()
            for worker in list(self._live):
                if worker.pending and now >= worker.started + self.timeout:
                    self.stats["timeouts"] += 1
                    lose(worker, (TIMEOUT, None))
                elif not worker.ready and now >= worker.spawned + self.start_timeout:
                    self._live.remove(worker)
                    self._kill(worker)
                    raise RuntimeError(f"worker for {self.target} did not start in {self.start_timeout:.0f} s")
        return results

    @staticmethod
    def _exit_detail(worker: _Worker) -> str:
        worker.process.join(1)
        code = worker.process.exitcode
        if code is None:
            return "exit:unknown"
        if code < 0:
            import signal

            try:
                return f"signal:{signal.Signals(-code).name}"
            except ValueError:
                return f"signal:{-code}"
        return f"exit:{code}"


def _close_all() -> None:
    for pool in list(_POOLS):
        try:
            if pool._owner == os.getpid():
                pool.close()
        except Exception:  # noqa: BLE001
            pass


atexit.register(_close_all)
