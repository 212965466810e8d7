"""A cross-process limit on requests in flight to one endpoint: N lock files, one per slot.

Several Dagster runs (one per env partition, in separate processes) may sample the same
server at once; llama.cpp serves one request at a time and a queue of timed-out requests
helps nobody. ``EndpointSlots(dir, base_url, n)`` keeps at most ``n`` requests in flight
across every process that uses the same ``dir`` (``flock`` on ``slot-<i>.lock`` files under
a folder named by the base URL's hash). A slot is free again as soon as its holder closes
the file, including when the holder dies.

They limit requests, on one machine. How many partitions sample at once, instance-wide and across hosts, is
Dagster's: the sampling step is in the ``orbit_sampling`` pool (``dagster instance concurrency set
orbit_sampling N``; docs/deployment.md).
"""

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path
from typing import AsyncIterator

from orbit.io.locks import open_lock
from orbit.io.schema import stable_hash

POLL_S = 0.02


class EndpointSlots:
    def __init__(self, root: Path | str, base_url: str, slots: int):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.dir = Path(root) / stable_hash("endpoint-slots", base_url.rstrip("/"), length=16)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.slots = slots

    def try_acquire(self) -> int | None:
        """A locked file descriptor of a free slot, or None when all are taken."""
        for i in range(self.slots):
            fd = open_lock(self.dir / f"slot-{i}.lock", 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        fd = self.try_acquire()
        while fd is None:
            await asyncio.sleep(POLL_S)
            fd = self.try_acquire()
        try:
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock
