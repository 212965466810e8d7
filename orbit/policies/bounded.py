"""Run an async function over many items with a bound on how many are in flight."""

import asyncio
from typing import Awaitable, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(fn: Callable[[T], Awaitable[R]], items: Sequence[T], concurrency: int) -> list[R]:
    """``[await fn(x) for x in items]`` with at most ``concurrency`` calls in flight; results in input order.

    ``concurrency`` workers pull the next item as they finish, so memory stays
    bounded by the number of workers. The first exception cancels the rest and is raised.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    pending = iter(range(len(items)))

    async def worker() -> None:
        for i in pending:
            results[i] = await fn(items[i])

    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return results
