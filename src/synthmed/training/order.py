"""The order of training batches: which samples each step draws, as a pure function of
``(seed, step)`` (the module docstring of :mod:`synthmed.training.data` explains it), and
the plan of which chunk groups a stream must decode, and when it may drop them."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from synthmed.data.store import ChunkShuffleSampler, StoreDataset

#: Share of a uniform draw's distinct chunks per batch that the mixing window must reach.
MIX_TARGET = 0.92
#: Most bytes of samples (images and labels) a default mixing window may hold.
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

    The order is the module docstring's. Read through :func:`batch_stream`, which decodes
    each chunk once and scatters its samples into the batches that draw them; a plain
    ``DataLoader`` over this sampler decodes each chunk once per epoch only if the dataset
    caches a whole window (``2 × window`` chunks).

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
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __copy__(self) -> StepBatchSampler:
        clone = object.__new__(StepBatchSampler)
        clone.__dict__.update(self.__dict__)
        clone.order_of = copy.copy(self.order_of)
        clone._epochs = {}
        return clone

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(order, window starts, inverse order)`` of ``epoch``; the previous epoch stays
        cached (a batch may straddle two)."""
        got = self._epochs.get(epoch)
        if got is None:
            self.order_of.set_epoch(epoch)
            order, starts = self.order_of.order_and_windows()
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            got = (order, starts, inverse)
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
            order, starts, _ = self._epoch(int(e))
            items[sel] = order[within[sel]]
            windows[sel] = np.searchsorted(starts, within[sel], side="right") - 1
        return items, epochs, windows

    def destinations(self, epoch: int, items: np.ndarray, start_step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where epoch ``epoch`` puts dataset positions ``items`` in this rank's batches.

        Returns:
            ``(rows, steps, slots)``, int64: ``items[rows[i]]`` is slot ``slots[i]`` of this
            rank's batch at step ``steps[i]``; items of other ranks' slices or of steps
            before ``start_step`` are left out.
        """
        _, _, inverse = self._epoch(epoch)
        steps, slots = np.divmod(epoch * self.n + inverse[items], self.batch_size * self.world_size)
        slots -= self.rank * self.batch_size
        rows = np.flatnonzero((slots >= 0) & (slots < self.batch_size) & (steps >= start_step))
        return rows, steps[rows], slots[rows]

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


def first_uses(sampler: StepBatchSampler, chunk_ids: np.ndarray, start_step: int) -> Iterator[list[GroupKey]]:
    """For steps ``start_step, …``: the chunk groups ``(epoch, chunk)`` whose first item (from
    ``start_step`` on) this rank's batch at that step holds, in batch order. A stream that
    decodes these at that step, and scatters each into all the batches that draw from it,
    has every batch complete when it is due, and decodes each chunk once per epoch."""
    seen: dict[GroupKey, tuple[int, int]] = {}  # group → (epoch, window), while the stream is in it
    step = start_step
    while True:
        items, epochs, windows = sampler.locate(step)
        first = (int(epochs[0]), int(windows[0]))  # a rank's positions only increase
        for key in [key for key, where in seen.items() if where < first]:
            del seen[key]
        new = []
        for key, where in zip(zip(epochs.tolist(), chunk_ids[items].tolist()), zip(epochs.tolist(), windows.tolist())):
            if key not in seen:
                seen[key] = where
                new.append(key)
        yield new
        step += 1


class ChunkGroups:
    """The dataset positions of each chunk (ascending, :meth:`items`), each position's row in
    its chunk (``row[position]``) and the chunks' sizes."""

    def __init__(self, chunk_ids: np.ndarray):
        by_chunk = np.argsort(chunk_ids, kind="stable")
        self.by_chunk = by_chunk
        self.ids, self.starts, sizes = np.unique(chunk_ids[by_chunk], return_index=True, return_counts=True)
        self.row = np.empty(len(chunk_ids), np.int64)
        self.row[by_chunk] = np.arange(len(chunk_ids)) - np.repeat(self.starts, sizes)
        self.sizes = sizes

    def items(self, chunk: int) -> np.ndarray:
        """int64 dataset positions of ``chunk``, ascending."""
        g = int(np.searchsorted(self.ids, chunk))
        return self.by_chunk[self.starts[g] : self.starts[g] + self.sizes[g]]


def group_requests(sampler: StepBatchSampler, groups: ChunkGroups, chunk_ids: np.ndarray,
                   start_step: int) -> Iterator[tuple[GroupKey, np.ndarray]]:
    """``(key, dataset positions)`` of every chunk group a stream from ``start_step`` decodes,
    in the order it needs them (:func:`first_uses`, walked on a copy of ``sampler``)."""
    for new in first_uses(copy.copy(sampler), chunk_ids, start_step):
        for key in new:
            yield key, groups.items(key[1])
