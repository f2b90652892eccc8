"""Ordered, bounded parallel map over processes, and worker processes that never outlive us.

Results come back in input order with at most ``window`` tasks in flight, so a consumer
that writes each result as it arrives keeps memory flat however many items there are.

**No orphans.** Every pool worker runs :func:`worker_init`: it ignores SIGINT (the parent
handles Ctrl-C and stops its workers) and dies within about a second of its parent, however
the parent dies (``kill -9`` included, see :func:`die_with_parent`). When a consumer stops
early (an error, SIGINT/SIGTERM, closing the iterator) the workers are killed at once
(:func:`stop_workers`) rather than left to finish tasks whose results nobody wants, so the
caller's temporary folder can be removed with nothing still writing into it. With the
workers gone, the ``multiprocessing`` resource tracker sees its last user leave and exits too.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
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


#: prctl(2) option: the signal this process gets when its parent dies.
PR_SET_PDEATHSIG = 1
#: seconds between checks of the watcher thread (platforms without PR_SET_PDEATHSIG).
WATCH_INTERVAL = 0.5


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(WATCH_INTERVAL)


def die_with_parent(parent: int) -> None:
    """Make this process exit as soon as its parent ``parent`` (a pid) dies, whatever the signal.

    On Linux the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``;
    it fires when the parent *thread* that started this process ends, so pools are fed from
    a thread that outlives them: the main thread, in synthmed). If the parent already died
    before the call, the process exits at once. Elsewhere, or if ``prctl`` fails, a daemon
    thread polls :func:`os.getppid` every :data:`WATCH_INTERVAL` seconds.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
        if armed:
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)
            return
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="synthmed-watch-parent").start()


def worker_init(parent: int, threads: int | None = 1) -> None:
    """Initialiser of every synthmed pool worker: dies with ``parent``, leaves SIGINT to the
    parent, and (unless ``threads`` is None) runs torch with ``threads`` intra-op threads, so
    N workers use N cores."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def process_pool(workers: int, threads: int | None = 1) -> ProcessPoolExecutor:
    """A ``spawn`` pool of ``workers`` processes initialised by :func:`worker_init`."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init,
                               initargs=(os.getpid(), threads))


def stop_workers(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """Kill the worker processes of ``pool`` now (their tasks are lost: their futures end with
    ``BrokenProcessPool``) and wait for them and for the pool to shut down."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)
    pool.shutdown(wait=True)  # the pool's manager thread has marked the lost tasks broken


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
    cancelled. If the consumer stops early (an exception, including SIGINT/SIGTERM, or the
    iterator is closed: wrap it in :func:`contextlib.closing` when the consumer may fail), the
    worker processes are killed before control returns, so nothing keeps writing on their behalf.
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
        pool = process_pool(workers)
    with pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BaseException:
            if isinstance(pool, ProcessPoolExecutor):
                stop_workers(pool)  # their futures end as broken; cancelling them first trips a CPython 3.11 bug
            else:
                for future in pending:
                    future.cancel()
            raise
