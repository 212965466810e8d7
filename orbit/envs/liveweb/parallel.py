"""Ordered parallel map over chunks: a forkserver pool plus the calling process itself.

With ``workers`` cores, ``workers - 1`` pool processes take chunks while the
calling process builds chunks too whenever it would otherwise wait, so no core
idles while a pool process starts up (importing, warming its caches). Results
come out in chunk order whoever built them, so the output does not depend on
scheduling.
"""

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Iterator, Sequence, TypeVar

C = TypeVar("C")
R = TypeVar("R")


def ordered_map(local: Callable[[C], R], remote: Callable[[C], R], chunks: Sequence[C], workers: int,
                initializer: Callable[..., None], initargs: tuple[Any, ...] = ()) -> Iterator[R]:
    """``local(chunk)`` here or ``remote(chunk)`` in a pool process, for every chunk, in order.

    ``remote`` and ``initializer`` must be importable module-level functions.
    """
    context = multiprocessing.get_context("forkserver")
    ahead = 2 * (workers - 1)
    with ProcessPoolExecutor(workers - 1, mp_context=context, initializer=initializer,
                             initargs=initargs) as pool:
        submitted: dict[int, Future] = {}
        built_here: dict[int, R] = {}
        claimed = 0  # chunks before this index are assigned, to the pool or to this process

        def top_up() -> None:
            nonlocal claimed
            while claimed < len(chunks) and len(submitted) < ahead:
                submitted[claimed] = pool.submit(remote, chunks[claimed])
                claimed += 1

        for index in range(len(chunks)):
            top_up()
            if index in built_here:
                yield built_here.pop(index)
                continue
            future = submitted.pop(index)
            while not future.done() and claimed < len(chunks):
                built_here[claimed] = local(chunks[claimed])
                claimed += 1
                top_up()
            yield future.result()
