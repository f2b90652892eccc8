"""Ordered, bounded parallel map over processes.

Results come back in input order with at most ``window`` tasks in flight, so a consumer
that writes each result as it arrives keeps memory flat however many items there are.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _single_thread_worker() -> None:
    """Worker initialiser: one intra-op thread per process, so N workers use N cores."""
    import torch

    torch.set_num_threads(1)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 1, window: int | None = None) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order.

    Args:
        fn: a picklable (module-level) function when ``workers > 1``.
        workers: 1 runs in this process; more uses a ``spawn`` process pool.
        window: most tasks submitted but not yet yielded (default ``2 * workers``).

    Exceptions raised by ``fn`` propagate at the item that raised them; pending tasks are
    cancelled.
    """
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    window = window or 2 * workers
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread_worker) as pool:
        pending: deque[Future[R]] = deque()
        iterator = iter(items)
        try:
            for item in iterator:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
