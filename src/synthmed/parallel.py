"""Ordered, bounded parallel map over processes.

Results come back in input order with at most ``window`` tasks in flight, so a consumer
that writes each result as it arrives keeps memory flat however many items there are.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads inside the block, restoring the setting after.

    For memory-bound CPU work, or work already spread over processes or Python threads,
    more OpenMP threads than cores make barriers wait for descheduled threads. The setting
    is process-wide: use it around whole jobs, not inside library code called concurrently.
    """
    import torch

    previous = torch.get_num_threads()
    if previous != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if previous != n:
            torch.set_num_threads(previous)


def _single_thread_worker() -> None:
    """Worker initialiser: one intra-op thread per process, so N workers use N cores."""
    import torch

    torch.set_num_threads(1)


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int = 1, window: int | None = None, threads: bool = False
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in order.

    Args:
        fn: a picklable (module-level) function when running in processes.
        workers: 1 runs in this process (unless ``threads``); more uses a ``spawn`` process
            pool with one torch thread per process.
        window: most tasks submitted but not yet yielded (default ``2 * workers``).
        threads: run ``fn`` in ``workers`` background threads of this process instead, e.g.
            to overlap file decompression (which releases the GIL) with the caller's work.

    Exceptions raised by ``fn`` propagate at the item that raised them; pending tasks are
    cancelled.
    """
    if workers <= 1 and not threads:
        for item in items:
            yield fn(item)
        return
    window = window or 2 * workers
    pool: Executor
    if threads:
        pool = ThreadPoolExecutor(workers)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_single_thread_worker)
    with pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
