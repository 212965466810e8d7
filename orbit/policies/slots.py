"""Per-endpoint request slots shared by every process on the machine.

A round runs one Dagster run per env, and several runs may sample the same model
server at once; a llama.cpp server serves one request at a time and times out
the rest. ``EndpointSlots`` caps the requests in flight to one endpoint across
all processes: each slot is a lock file (``<root>/<endpoint hash>/slot-<i>``)
held with ``flock`` for the duration of one request, so a crashed process frees
its slots with its file descriptors. Whoever launched the run -- the UI, a
backfill, a sensor or ``orbit run`` -- the cap holds.
"""

import asyncio
import fcntl
import hashlib
import os
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import AsyncIterator, Iterator

POLL_S = 0.05


class EndpointSlots:
    def __init__(self, endpoint: str, limit: int, root: Path | str):
        if limit < 1:
            raise ValueError("an endpoint needs at least one slot")
        self.limit = int(limit)
        digest = hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:16]
        self.folder = Path(root) / digest
        self.folder.mkdir(parents=True, exist_ok=True)

    def _try_take(self) -> int | None:
        for i in range(self.limit):
            fd = os.open(self.folder / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return fd
        return None

    @staticmethod
    def _give_back(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextmanager
    def slot(self, timeout_s: float | None = None) -> Iterator[None]:
        """Hold one slot (blocking; TimeoutError after ``timeout_s``)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (fd := self._try_take()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no free request slot for the endpoint within {timeout_s} s")
            time.sleep(POLL_S)
        try:
            yield
        finally:
            self._give_back(fd)

    @asynccontextmanager
    async def aslot(self, timeout_s: float | None = None) -> AsyncIterator[None]:
        """Hold one slot without blocking the event loop."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (fd := self._try_take()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no free request slot for the endpoint within {timeout_s} s")
            await asyncio.sleep(POLL_S)
        try:
            yield
        finally:
            self._give_back(fd)
