"""An infinite, resumable batch stream over a store dataset whose batches mix patients like a
uniform draw.

**Order.** The samples of global step ``s`` are a pure function of ``(seed, s)``: positions
``s·G … (s+1)·G - 1`` (``G`` = per-rank batch × world size) of the endless sequence made by
concatenating epoch orders, where the order of epoch ``e`` is
:class:`~synthmed.data.ChunkShuffleSampler`'s order for ``(seed, e)`` with a **window** of
``K`` chunks: the chunks are shuffled, cut into consecutive windows of ``K`` chunks, and the
samples of each window are shuffled together. Rank ``r`` takes items ``r·B … (r+1)·B - 1``
of the global batch.

**Why windows.** Stores are written case by case, so a chunk holds neighbouring slices of one
or two patients: batches cut from a chunk-by-chunk order hold about 2 patients where a
uniform draw holds about 9 (a 64 px phantom store, 12 training cases, batch 16). A batch
drawn from ``K`` chunks at once holds about as many distinct chunks, hence patients, as a
uniform draw when ``K`` is a few times ``G``. :func:`mixing_window` picks the smallest such
``K``: batches drawn from ``K`` chunks hit in expectation at least :data:`MIX_TARGET` of the
distinct chunks a uniform draw over the whole dataset hits (patients, which span one chunk
or more, then mix at least as well), capped by :data:`MAX_MIX_BYTES` of decoded chunks; a
window of all chunks is a uniform permutation of the epoch.

**Reading.** :func:`batch_stream` decodes a chunk when its window first needs it and keeps
the window's chunks until the stream has passed the window, so each chunk is decoded once
per epoch and process, and memory is about ``K + B`` decoded chunks whatever the number of
samples. With ``num_workers`` > 0 worker processes decode the chunks ahead; the order is
unchanged. Each rank draws from all chunks of a window, so under DDP every rank decodes
every chunk once per epoch.

Consequences:

* a resumed run continues at the step it stopped at, without replaying data;
* ``W`` ranks with batch ``B`` see exactly the global batches of one process with batch ``W·B``
  (``K`` depends on ``G`` only);
* a dataset smaller than the global batch is simply cycled.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from synthmed.data.store import ChunkShuffleSampler, StoreDataset

#: Share of a uniform draw's distinct chunks per batch that the mixing window must reach.
MIX_TARGET = 0.92
#: Most bytes of decoded chunks a default mixing window may hold (per process).
MAX_MIX_BYTES = 2 * 2**30

#: A chunk group of one epoch: ``(epoch, chunk id)``.
GroupKey = tuple[int, int]


def _log_choose(a: float, b: int) -> float:
    """``log C(a, b)`` for real ``a`` (``-inf`` when ``a < b``)."""
    if a < b:
        return -math.inf
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _p_missed(total: float, size: float, draws: int) -> float:
    """Probability that ``draws`` items drawn without replacement from ``total`` miss a
    group of ``size`` items (hypergeometric, zero successes)."""
    return math.exp(_log_choose(total - size, draws) - _log_choose(total, draws))


def mixing_window(chunk_sizes: Sequence[int] | np.ndarray, global_batch: int, *, target: float = MIX_TARGET,
                  max_chunks: int | None = None) -> int:
    """The number ``K`` of chunks whose samples are shuffled together (see the module docstring).

    The smallest ``K`` (with ``K`` chunks holding at least one global batch) such that a
    batch of ``G`` drawn from ``K`` chunks of the mean size hits, in expectation, at least
    ``target`` × the distinct chunks hit by ``G`` samples drawn uniformly from all of them;
    both expectations are exact hypergeometric ones. At most ``max_chunks`` and at most the
    number of chunks.

    Args:
        chunk_sizes: items in each chunk (zeros are ignored).
        global_batch: ``G``, samples per step over all ranks.
        target: share of the uniform draw's distinct chunks to reach, in ``(0, 1]``.
        max_chunks: upper bound on ``K`` (e.g. from a memory budget).
    """
    sizes, counts = np.unique(np.asarray(chunk_sizes, np.int64), return_counts=True)
    counts, sizes = counts[sizes > 0], sizes[sizes > 0]
    chunks = int(counts.sum())
    if chunks == 0:
        return 1
    limit = chunks if max_chunks is None else max(1, min(chunks, int(max_chunks)))
    n = int((sizes * counts).sum())
    g = int(min(max(1, global_batch), n))
    uniform = sum(int(c) * (1 - _p_missed(n, int(s), g)) for s, c in zip(sizes, counts))
    mean = n / chunks
    for k in range(max(1, math.ceil(g / mean)), limit + 1):
        if k * (1 - _p_missed(k * mean, mean, g)) >= target * uniform:
            return k
    return limit


def _item_nbytes(dataset: Any) -> int:
    """Bytes of one ``(image, label)`` item: the dataset's ``item_nbytes``, else item 0's."""
    nbytes = getattr(dataset, "item_nbytes", None)
    if nbytes is None:
        image, label = dataset[0]
        nbytes = image.nbytes + label.nbytes
    return max(1, int(nbytes))


def default_window(dataset: Any, global_batch: int) -> int:
    """:func:`mixing_window` for ``dataset`` (with ``chunk_ids``), within :data:`MAX_MIX_BYTES`."""
    sizes = np.unique(np.asarray(dataset.chunk_ids, np.int64), return_counts=True)[1]
    chunk_bytes = int(sizes.max(initial=1)) * _item_nbytes(dataset)
    return mixing_window(sizes, global_batch, max_chunks=max(1, MAX_MIX_BYTES // chunk_bytes))


class StepBatchSampler(Sampler[list[int]]):
    """Yields, forever, the dataset positions of this rank's batch for steps ``start, start+1, …``.

    The order is the module docstring's. Read through :func:`batch_stream`, which keeps a
    window's chunks decoded; a plain ``DataLoader`` over this sampler decodes each chunk
    once per epoch only if the dataset caches ``window`` chunks.

    Args:
        dataset: a :class:`StoreDataset` (anything with ``chunk_ids``).
        batch_size: per-rank batch ``B``.
        seed: data-order seed.
        start_step: first step to yield.
        rank, world_size: this process and the number of processes.
        window: chunks mixed together; default :func:`default_window` for ``B × world_size``.
    """

    def __init__(self, dataset: StoreDataset, batch_size: int, *, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, window: int | None = None):
        if len(dataset) == 0:
            raise ValueError("cannot stream batches from an empty dataset")
        self.n = len(dataset)
        self.batch_size, self.start_step = int(batch_size), int(start_step)
        self.rank, self.world_size = int(rank), int(world_size)
        self.window = int(window) if window is not None else default_window(dataset, self.batch_size * self.world_size)
        self.order_of = ChunkShuffleSampler(dataset, seed=seed, window=self.window)
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __copy__(self) -> StepBatchSampler:
        clone = object.__new__(StepBatchSampler)
        clone.__dict__.update(self.__dict__)
        clone.order_of = copy.copy(self.order_of)
        clone._epochs = {}
        return clone

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(order, window starts)`` of ``epoch``; the previous epoch stays cached (a batch may straddle)."""
        got = self._epochs.get(epoch)
        if got is None:
            self.order_of.set_epoch(epoch)
            got = self.order_of.order_and_windows()
            self._epochs = {e: v for e, v in self._epochs.items() if e == epoch - 1}
            self._epochs[epoch] = got
        return got

    def locate(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's batch at ``step``: ``(items, epochs, windows)``, int64 ``[B]`` each: the
        dataset positions, and the epoch and window of the order each one comes from."""
        first = step * self.batch_size * self.world_size + self.rank * self.batch_size
        epochs, within = np.divmod(np.arange(first, first + self.batch_size, dtype=np.int64), self.n)
        items = np.empty(self.batch_size, np.int64)
        windows = np.empty(self.batch_size, np.int64)
        for e in np.unique(epochs):
            sel = epochs == e
            order, starts = self._epoch(int(e))
            items[sel] = order[within[sel]]
            windows[sel] = np.searchsorted(starts, within[sel], side="right") - 1
        return items, epochs, windows

    def positions(self, step: int) -> list[int]:
        """Dataset positions of this rank's batch at ``step``."""
        return self.locate(step)[0].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.positions(step)
            step += 1

    def __len__(self) -> int:  # DataLoader needs it only for len(); the stream is endless
        return 2**62


@dataclass(frozen=True)
class _StepPlan:
    """What one step reads: its items, the chunk group of each, the groups to decode first
    (in order) and the groups no longer needed."""

    items: np.ndarray
    keys: list[GroupKey]
    new: list[GroupKey]
    drop: list[GroupKey]


def _plans(sampler: StepBatchSampler, chunk_ids: np.ndarray, start_step: int) -> Iterator[_StepPlan]:
    """The read plan of steps ``start_step, …``: a group is decoded at its first use and
    dropped once the stream is past its window (a rank's positions only increase)."""
    live: dict[GroupKey, tuple[int, int]] = {}  # group → (epoch, window)
    step = start_step
    while True:
        items, epochs, windows = sampler.locate(step)
        first = (int(epochs[0]), int(windows[0]))
        drop = [key for key, where in live.items() if where < first]
        for key in drop:
            del live[key]
        keys = list(zip(epochs.tolist(), chunk_ids[items].tolist()))
        new = []
        for key, e, w in zip(keys, epochs.tolist(), windows.tolist()):
            if key not in live:
                live[key] = (e, w)
                new.append(key)
        yield _StepPlan(items, keys, new, drop)
        step += 1


class _Groups:
    """The dataset positions of each chunk (ascending) and each position's row in its chunk."""

    def __init__(self, chunk_ids: np.ndarray):
        by_chunk = np.argsort(chunk_ids, kind="stable")
        self.by_chunk = by_chunk
        self.ids, self.starts, sizes = np.unique(chunk_ids[by_chunk], return_index=True, return_counts=True)
        self.row = np.empty(len(chunk_ids), np.int64)
        self.row[by_chunk] = np.arange(len(chunk_ids)) - np.repeat(self.starts, sizes)
        self.sizes = sizes

    def items(self, chunk: int) -> np.ndarray:
        g = int(np.searchsorted(self.ids, chunk))
        return self.by_chunk[self.starts[g] : self.starts[g] + self.sizes[g]]


def _fetch(dataset: Any, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``items`` of ``dataset`` stacked, with the dataset's ``fetch`` when it has one."""
    fetch = getattr(dataset, "fetch", None)
    if fetch is not None:
        return fetch(items)
    return _collate([dataset[int(i)] for i in items])


class _GroupReads(Dataset):
    """Worker side: request ``(key, items)`` → ``(key, images, labels)``."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, request: tuple[GroupKey, np.ndarray]) -> tuple[GroupKey, torch.Tensor, torch.Tensor]:
        key, items = request
        return (key, *_fetch(self.dataset, items))


class _GroupRequests(Sampler):
    """The groups a stream decodes, in the order it needs them (its plan, walked ahead)."""

    def __init__(self, sampler: StepBatchSampler, chunk_ids: np.ndarray, groups: _Groups, start_step: int):
        self.sampler, self.chunk_ids, self.groups, self.start_step = sampler, chunk_ids, groups, start_step

    def __iter__(self) -> Iterator[tuple[GroupKey, np.ndarray]]:
        for plan in _plans(self.sampler, self.chunk_ids, self.start_step):
            for key in plan.new:
                yield key, self.groups.items(key[1])


def _identity(x: Any) -> Any:
    return x


class BatchStream(Iterator[tuple[torch.Tensor, torch.Tensor]]):
    """The iterator :func:`batch_stream` returns.

    Attributes:
        sampler: the :class:`StepBatchSampler` that defines the order.
        window: chunks mixed together (``sampler.window``).
        peak_chunks: most chunk groups held decoded at once so far.
    """

    def __init__(self, dataset: Any, batch_size: int, *, seed: int, start_step: int, rank: int, world_size: int,
                 num_workers: int, pin_memory: bool, window: int | None):
        self.sampler = StepBatchSampler(dataset, batch_size, seed=seed, start_step=start_step, rank=rank,
                                        world_size=world_size, window=window)
        self.window = self.sampler.window
        self.peak_chunks = 0
        self.dataset = dataset
        chunk_ids = np.asarray(dataset.chunk_ids, np.int64)
        self._groups = _Groups(chunk_ids)
        self._plans = _plans(self.sampler, chunk_ids, start_step)
        self._pin = bool(pin_memory) and torch.cuda.is_available()
        self._live: dict[GroupKey, tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]] = {}
        self._reads: Iterator[tuple[GroupKey, torch.Tensor, torch.Tensor]] | None = None
        if num_workers > 0:
            requests = _GroupRequests(copy.copy(self.sampler), chunk_ids, self._groups, start_step)
            loader = DataLoader(_GroupReads(dataset), sampler=requests, batch_size=None, num_workers=num_workers,
                                collate_fn=_identity, prefetch_factor=2, persistent_workers=False)
            self._reads = iter(loader)

    def __iter__(self) -> BatchStream:
        return self

    def _read(self, key: GroupKey) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reads is None:
            return _fetch(self.dataset, self._groups.items(key[1]))
        got, images, labels = next(self._reads)
        if tuple(got) != key:
            raise RuntimeError(f"batch stream out of step: read chunk group {got}, needed {key}")
        return images, labels

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        plan = next(self._plans)
        for key in plan.drop:
            del self._live[key]
        for key in plan.new:
            images, labels = self._read(key)
            self._live[key] = (images.numpy(), labels.numpy(), images, labels)
        self.peak_chunks = max(self.peak_chunks, len(self._live))
        first = self._live[plan.keys[0]]
        b = len(plan.items)
        images = torch.empty((b, *first[2].shape[1:]), dtype=first[2].dtype, pin_memory=self._pin)
        labels = torch.empty((b, *first[3].shape[1:]), dtype=first[3].dtype, pin_memory=self._pin)
        out_images, out_labels = images.numpy(), labels.numpy()
        for j, (key, row) in enumerate(zip(plan.keys, self._groups.row[plan.items].tolist())):
            group_images, group_labels, _, _ = self._live[key]
            out_images[j] = group_images[row]
            out_labels[j] = group_labels[row]
        return images, labels


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*items)
    return torch.stack(images), torch.stack(labels)


def batch_stream(dataset: StoreDataset, batch_size: int, *, seed: int = 0, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
                 window: int | None = None) -> BatchStream:
    """Endless ``(images float32 [B, C, *spatial] in [0, 1], labels uint8 [B, *spatial])`` batches
    for steps ``start_step, start_step + 1, …`` (see the module docstring).

    ``num_workers`` > 0 decodes ahead in worker processes; the order is unchanged.
    ``pin_memory`` allocates batches in pinned memory (when CUDA is available). ``window``
    overrides the number of chunks mixed together (:func:`default_window`).
    """
    return BatchStream(dataset, batch_size, seed=seed, start_step=start_step, rank=rank, world_size=world_size,
                       num_workers=num_workers, pin_memory=pin_memory, window=window)
