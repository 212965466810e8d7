"""Step stdout/stderr in Dagster's local files, mirrored to the console by a thread instead of subprocesses.

Dagster's ``LocalComputeLogManager`` points the process's stdout and stderr (the file descriptors, so output
of C code and child processes is caught too) at a file per run or step, and mirrors each file back to the
console with a ``tail -F`` process plus a Python process watching for orphans: four processes started and
stopped for every capture. Under ``execute_in_process`` that is one capture per run; with the multiprocess
executor, one per step. On these 2-core machines it cost about 0.1 s of every run (``bench/bench_round.py``'s
floor: five no-op runs took 1.15 s with it and 0.58 s without any capture).

``OrbitComputeLogManager`` is the same manager (same files under ``$DAGSTER_HOME/storage``, the same reading
side the UI uses) whose mirror is a thread of the capturing process that follows the file and copies what
arrives to the console's descriptor. A killed process takes its thread with it, so there is no orphan to
watch for; when the capture ends, the thread copies what is left and stops.

``orbit home`` writes it into ``dagster.yaml`` (``compute_logs``).
"""

import os
import sys
import threading
from contextlib import contextmanager
from typing import Generator, Iterator, Sequence

from dagster._core.execution.compute_logs import _fileno, redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

FOLLOW_INTERVAL_S = 0.1  # how often the mirror looks for new output while a capture runs
CHUNK = 1 << 16


def _follow(path: str, console: int, stop: threading.Event) -> None:
    """Copy what is appended to ``path`` to the descriptor ``console`` until ``stop`` is set, then the rest."""
    with open(path, "rb") as f:
        while True:
            stopping = stop.is_set()  # read before draining: output written before the stop is copied
            while chunk := f.read(CHUNK):
                try:
                    os.write(console, chunk)
                except OSError:  # the console went away (a closed pipe): keep capturing to the file
                    pass
            if stopping:
                return
            stop.wait(FOLLOW_INTERVAL_S)


@contextmanager
def mirror_to_file(stream, path: str) -> Iterator[None]:
    """Send ``stream``'s descriptor to ``path`` for the block, and copy the file's new bytes to where the
    stream went before (a thread). A stream without a descriptor (a test's captured output) is left alone,
    as Dagster's mirror leaves it."""
    ensure_file(path)
    fd = _fileno(stream)
    if fd is None:
        with redirect_to_file(stream, path):
            yield
        return
    stream.flush()
    console = os.dup(fd)
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(path, console, stop), name="orbit-log-mirror", daemon=True)
    follower.start()
    try:
        with redirect_to_file(stream, path):
            yield
    finally:
        stop.set()
        follower.join(timeout=30)
        os.close(console)


class OrbitComputeLogManager(LocalComputeLogManager):
    """``LocalComputeLogManager`` whose console mirror is a thread (``mirror_to_file``), not subprocesses."""

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with mirror_to_file(sys.stdout, outpath), mirror_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        # leave artifact on filesystem so that we know the capture is completed (as Dagster's manager does)
        touch_file(self.complete_artifact_path(log_key))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> "OrbitComputeLogManager":
        return cls(inst_data=inst_data, **config_value)
