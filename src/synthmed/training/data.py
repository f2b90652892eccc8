"""An infinite, resumable batch stream over a store dataset whose batches mix patients like a
uniform draw.

**Order.** The samples of global step ``s`` are a pure function of ``(seed, s)``: positions
``s·G … (s+1)·G - 1`` (``G`` = per-rank batch × world size) of the endless sequence made by
concatenating epoch orders, where the order of epoch ``e`` is
:class:`~synthmed.data.ChunkShuffleSampler`'s order for ``(seed, e)`` with a **window** of
``K`` chunks: the chunks are shuffled, cut into ``chunks // K`` consecutive windows of
near-equal size (``K`` to ``2K - 1`` chunks each), and the samples of each window are
shuffled together. Rank ``r`` takes items ``r·B … (r+1)·B - 1`` of the global batch.

**Why windows.** Stores are written case by case, so a chunk holds neighbouring slices of one
or two patients: batches cut from a chunk-by-chunk order held 2.1 distinct patients where a
uniform draw holds 9.0 (a 64 px phantom store, 12 training cases, batch 16). A batch drawn
from ``K`` chunks at once holds about as many distinct chunks, hence patients, as a uniform
draw when ``K`` is a few times ``G``. :func:`mixing_window` picks the smallest such ``K``:
batches drawn from ``K`` chunks hit in expectation at least :data:`MIX_TARGET` (0.92) of the
distinct chunks a uniform draw over the whole dataset hits (exact hypergeometric
expectations), capped by :data:`MAX_MIX_BYTES` of samples; a window of all chunks is a
uniform permutation of the epoch. Distinct patients per batch then come out at 0.9–1.0 of a
uniform draw's (``tests/training/test_batch_mixing.py``, ``benchmarks/batch_diversity.py``).

**Reading.** :class:`BatchStream` decodes a chunk at the first step that draws from it and
at once copies each of its samples into the slot of the (future) batch of this rank that
holds it; the step's batch is then complete. So each chunk is decoded once per epoch and
process, and memory is the batches being filled (at most a window's samples, ``2K`` chunks'
worth, divided among the ranks) whatever the number of samples. With ``num_workers=0`` a
thread builds the batches ahead of the training loop (decompression, file reads and copies
release Python's lock, so this overlaps the step); with ``num_workers`` > 0 worker processes
decode the chunks. The order is the same either way. Every rank draws from all chunks of a
window, so under DDP each rank decodes every chunk once per epoch.

Consequences:

* a resumed run continues at the step it stopped at, without replaying data;
* ``W`` ranks with batch ``B`` see exactly the global batches of one process with batch ``W·B``
  (``K`` depends on ``G`` only);
* a dataset smaller than the global batch is simply cycled.

:func:`tensor_batches` is the same idea for a few samples held in memory with targets of their
own (e.g. one baseline image per subject and its progression label): uniform epoch permutations
of the samples, step ``s``'s batch a pure function of ``(seed, s)``.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import queue
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from synthmed.data.store import StoreDataset
from synthmed.training.order import (
    MAX_MIX_BYTES,
    MIX_TARGET,
    ChunkGroups,
    GroupKey,
    StepBatchSampler,
    default_window,
    first_uses,
    group_requests,
    mixing_window,
)

#: Batches the read-ahead thread keeps ready.
READY_BATCHES = 2

__all__ = ["MAX_MIX_BYTES", "MIX_TARGET", "BatchStream", "StepBatchSampler", "batch_stream", "default_window",
           "mixing_window"]


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*items)
    return torch.stack(images), torch.stack(labels)


def _fetch(dataset: Any, items: np.ndarray,
           out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``items`` of ``dataset`` stacked, with the dataset's ``fetch`` when it has one (into
    ``out`` when given, for :class:`StoreDataset`-like datasets: see :func:`_takes_out`)."""
    fetch = getattr(dataset, "fetch", None)
    if fetch is not None:
        return fetch(items) if out is None else fetch(items, out)
    return _collate([dataset[int(i)] for i in items])


def _takes_out(dataset: Any) -> bool:
    """Whether ``dataset.fetch`` fills caller buffers (``out=``), as :class:`StoreDataset`'s does."""
    fetch = getattr(dataset, "fetch", None)
    try:
        return fetch is not None and "out" in inspect.signature(fetch).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class _Decoded:
    """A decoded chunk group: its items' images and labels (rows in ascending dataset
    position), what owns their memory, and the reusable full-size buffers they live in."""

    key: GroupKey
    images: np.ndarray
    labels: np.ndarray
    owners: tuple[Any, ...]
    buffers: tuple[np.ndarray, np.ndarray] | None


def _decode(dataset: Any, requests: Iterator[tuple[GroupKey, np.ndarray]], spare: list, largest: int,
            stop: threading.Event) -> Iterator[_Decoded]:
    """Decode the requested groups in order, into the full-size buffers handed back in
    ``spare`` when the dataset's ``fetch`` takes them (no fresh pages per chunk); end at ``stop``."""
    reuse, shapes = _takes_out(dataset), None
    for key, items in requests:
        if stop.is_set():
            return
        buffers = None
        if reuse and shapes is not None:
            buffers = spare.pop() if spare else (np.empty((largest, *shapes[0]), np.float32),
                                                 np.empty((largest, *shapes[1]), np.uint8))
        images, labels = _fetch(dataset, items, buffers)
        shapes = (tuple(images.shape[1:]), tuple(labels.shape[1:]))
        yield _Decoded(key, images.numpy(), labels.numpy(), (images, labels), buffers)


class _GroupReads(Dataset):
    """Worker side of the ``num_workers`` > 0 path: request ``(key, items)`` → ``(key, images, labels)``."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, request: tuple[GroupKey, np.ndarray]) -> tuple[GroupKey, torch.Tensor, torch.Tensor]:
        key, items = request
        return (key, *_fetch(self.dataset, items))


class _Requests(Sampler):
    """The group requests as a ``DataLoader`` sampler (iterated once, in the main process)."""

    def __init__(self, requests: Iterator[tuple[GroupKey, np.ndarray]]):
        self.requests = requests

    def __iter__(self) -> Iterator[tuple[GroupKey, np.ndarray]]:
        return self.requests


def _identity(x: Any) -> Any:
    return x


def _from_workers(dataset: Any, requests: Iterator[tuple[GroupKey, np.ndarray]], num_workers: int) -> Iterator[_Decoded]:
    """The requested groups decoded in ``DataLoader`` worker processes (in request order)."""
    loader = DataLoader(_GroupReads(dataset), sampler=_Requests(requests), batch_size=None, num_workers=num_workers,
                        collate_fn=_identity, prefetch_factor=2, persistent_workers=False)
    for key, images, labels in loader:
        yield _Decoded(tuple(key), images.numpy(), labels.numpy(), (images, labels), None)


@dataclass
class _Pending:
    """A batch being filled: its buffers and how many of its slots are filled."""

    images: np.ndarray
    labels: np.ndarray
    filled: int = 0


class _Assembler:
    """Builds this rank's batches for steps ``start_step, …``: at each step the groups first
    needed then are taken from ``decoded`` and each is scattered at once into all the batches
    that draw from it, so the step's batch is complete. Yields ``(images, labels)`` arrays."""

    def __init__(self, sampler: StepBatchSampler, groups: ChunkGroups, chunk_ids: np.ndarray, start_step: int,
                 decoded: Iterator[_Decoded], spare: list, pin: bool):
        self.sampler, self.groups, self.start, self.pin = sampler, groups, int(start_step), pin
        self.first_uses = first_uses(sampler, chunk_ids, start_step)
        self.decoded, self.spare = decoded, spare
        self.pending: dict[int, _Pending] = {}
        self.peak_pending = 0

    def _empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A batch buffer: pinned when asked for (torch's pinned allocator), else numpy's
        (which reuses freed memory, where a fresh torch tensor faults in new pages)."""
        if self.pin:
            return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True).numpy()
        return np.empty(shape, dtype)

    def _scatter(self, group: _Decoded) -> None:
        """Copy each sample of ``group`` into the slot of the batch that draws it."""
        epoch, chunk = group.key
        rows, steps, slots = self.sampler.destinations(epoch, self.groups.items(chunk), self.start)
        b = self.sampler.batch_size
        for row, step, slot in zip(rows.tolist(), steps.tolist(), slots.tolist()):
            batch = self.pending.get(step)
            if batch is None:
                batch = self.pending[step] = _Pending(self._empty((b, *group.images.shape[1:]), group.images.dtype),
                                                      self._empty((b, *group.labels.shape[1:]), group.labels.dtype))
            batch.images[slot] = group.images[row]
            batch.labels[slot] = group.labels[row]
            batch.filled += 1
        self.peak_pending = max(self.peak_pending, len(self.pending))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        step = self.start
        for new in self.first_uses:
            for key in new:
                group = next(self.decoded, None)
                if group is None:  # the reader was stopped
                    return
                if group.key != key:
                    raise RuntimeError(f"batch stream out of step: read chunk group {group.key}, needed {key}")
                self._scatter(group)
                if group.buffers is not None:
                    self.spare.append(group.buffers)
            batch = self.pending.pop(step, None)
            if batch is None or batch.filled != self.sampler.batch_size:
                raise RuntimeError(f"batch stream: the batch of step {step} is incomplete")
            yield batch.images, batch.labels
            step += 1


def _produce(batches: Iterator[tuple[np.ndarray, np.ndarray]], out: queue.Queue, stop: threading.Event) -> None:
    """Thread body: put the assembled batches into ``out`` (bounded) until ``stop``; an
    error is passed on to the consumer."""

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return not stop.is_set()
            except queue.Full:
                continue
        return False

    try:
        for batch in batches:
            if not put(batch):
                return
    except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
        put(exc)


class BatchStream(Iterator[tuple[torch.Tensor, torch.Tensor]]):
    """The iterator :func:`batch_stream` returns (see the module docstring).

    With ``num_workers=0`` a thread of this process reads a copy of the dataset (its own
    chunk cache), decodes, assembles and keeps up to :data:`READY_BATCHES` batches ready, so
    the data work overlaps the training step (decompression, file reads and copies release
    Python's lock); it stops when the stream is closed or garbage-collected. With
    ``num_workers`` > 0 worker processes decode and this process assembles.

    Attributes:
        sampler: the :class:`StepBatchSampler` that defines the order.
        window: chunks mixed together (``sampler.window``).
    """

    def __init__(self, dataset: Any, batch_size: int, *, seed: int = 0, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, pin_memory: bool = False, window: int | None = None):
        self.sampler = StepBatchSampler(dataset, batch_size, seed=seed, start_step=start_step, rank=rank,
                                        world_size=world_size, window=window)
        self.window = self.sampler.window
        chunk_ids = np.asarray(dataset.chunk_ids, np.int64)
        groups = ChunkGroups(chunk_ids)
        requests = group_requests(self.sampler, groups, chunk_ids, start_step)
        pin = bool(pin_memory) and torch.cuda.is_available()
        spare: list = []
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if num_workers > 0:
            decoded = _from_workers(dataset, requests, num_workers)
        else:
            try:
                dataset = pickle.loads(pickle.dumps(dataset))  # the thread's own chunk cache
            except (pickle.PicklingError, TypeError, AttributeError):
                pass
            decoded = _decode(dataset, requests, spare, int(groups.sizes.max()), self._stop)
        self._assembler = _Assembler(copy.copy(self.sampler), groups, chunk_ids, start_step, decoded, spare, pin)
        self._batches = iter(self._assembler)
        self._thread: threading.Thread | None = None
        if num_workers == 0:
            self._queue = queue.Queue(maxsize=READY_BATCHES)
            self._thread = threading.Thread(target=_produce, args=(self._batches, self._queue, self._stop),
                                            name="synthmed-batch-stream", daemon=True)
            self._thread.start()
        weakref.finalize(self, self._stop.set)

    @property
    def peak_pending(self) -> int:
        """Most batches held being filled at once so far (besides the ready ones)."""
        return self._assembler.peak_pending

    def __iter__(self) -> BatchStream:
        return self

    def close(self) -> None:
        """Stop the read-ahead thread and wait for it (a garbage-collected stream's thread
        stops by itself)."""
        self._stop.set()
        if self._queue is not None:
            try:  # make room, so that a thread waiting to hand over a batch sees the stop now
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
        if self._thread is not None:
            self._thread.join()

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._queue is None:
            images, labels = next(self._batches)
        else:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            images, labels = item
        return torch.from_numpy(images), torch.from_numpy(labels)


def batch_stream(dataset: StoreDataset, batch_size: int, *, seed: int = 0, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
                 window: int | None = None) -> BatchStream:
    """Endless ``(images float32 [B, C, *spatial] in [0, 1], labels uint8 [B, *spatial])`` batches
    for steps ``start_step, start_step + 1, …`` (see the module docstring).

    Chunks are decoded ahead of the batches, in a thread (``num_workers=0``) or in
    ``num_workers`` worker processes; the order is the same either way. ``pin_memory``
    allocates batches in pinned memory (when CUDA is available). ``window`` overrides the
    number of chunks mixed together (:func:`default_window`).
    """
    return BatchStream(dataset, batch_size, seed=seed, start_step=start_step, rank=rank, world_size=world_size,
                       num_workers=num_workers, pin_memory=pin_memory, window=window)


#: :func:`~synthmed.training.seeding.derive_seed` stream of :func:`tensor_batches`' epoch orders.
TENSOR_ORDER_STREAM = 11


def tensor_batches(images: torch.Tensor, targets: torch.Tensor, batch_size: int, *, seed: int = 0,
                   start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``(images[items], targets[items])`` batches of a few samples held in memory (e.g. one
    image per subject with a target that no mask holds), for steps ``start_step, start_step + 1, …``.

    Step ``s`` takes positions ``s·B … (s+1)·B − 1`` of the endless concatenation of epoch orders,
    epoch ``e``'s a uniform permutation of the ``N`` samples drawn from
    ``derive_seed(seed, TENSOR_ORDER_STREAM, e)``: a pure function of ``(seed, s)``, so a resumed
    run draws what an uninterrupted one draws; a set smaller than the batch is cycled.

    Raises:
        ValueError: no samples, or images and targets of different lengths.
    """
    from synthmed.training.seeding import derive_seed

    n = len(images)
    if n == 0 or len(targets) != n:
        raise ValueError(f"tensor_batches needs as many targets as images (> 0), got {n} and {len(targets)}")
    orders: dict[int, np.ndarray] = {}

    def order(epoch: int) -> np.ndarray:
        if epoch not in orders:
            for old in [e for e in orders if e < epoch - 1]:  # a batch may straddle two epochs
                del orders[old]
            orders[epoch] = np.random.default_rng(derive_seed(seed, TENSOR_ORDER_STREAM, epoch)).permutation(n)
        return orders[epoch]

    step = int(start_step)
    while True:
        positions = np.arange(step * batch_size, (step + 1) * batch_size)
        items = np.array([order(int(p // n))[p % n] for p in positions], np.int64)
        index = torch.from_numpy(items)
        yield images[index], targets[index]
        step += 1
