"""Torch access to a store: a map-style Dataset of its samples (or of their images alone) and a
Sampler that shuffles without re-decoding."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from synthmed.data.store.cache import ChunkCache, as_indices, gather
from synthmed.data.store.chunk_reader import ChunkReader


class ChunkedSamples(Protocol):
    """What a dataset needs of a store (:class:`~synthmed.data.store.handle.Store` has it; the Store makes
    datasets, so this module does not import it)."""

    chunk_samples: int
    sample_shape: tuple[int, ...]
    spatial_shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def chunk_cache(self, size: int = 1, *, fast: bool = True) -> ChunkCache: ...


class _ChunkIndexed:
    """Items ``indices`` of a chunked ``store``: the length and each item's chunk, for the samplers."""

    store: ChunkedSamples | ChunkedImages
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def chunk_ids(self) -> np.ndarray:
        """int64 ``[n]``: the store chunk holding each item."""
        return self.indices // self.store.chunk_samples


class StoreDataset(_ChunkIndexed, torch.utils.data.Dataset):
    """Map-style dataset over some samples of a store.

    Item ``i`` is sample ``indices[i]``: ``(image, label)`` with image a float32 tensor
    ``[C, *spatial]`` in ``[0, 1]`` and label a **uint8** tensor ``[*spatial]`` (compact and
    exact; call ``.long()`` on the batch for a loss, or pass ``long_labels=True`` to get
    int64 items).

    Each process keeps an LRU cache of the last ``cache_chunks`` decoded chunks, so
    sequential or chunk-grouped access (:class:`ChunkShuffleSampler`) decodes each chunk
    once per process. The dataset pickles without open files; Zarr is opened lazily in
    each DataLoader worker. Not safe to share between threads.

    Args:
        store: the store.
        indices: int64 ``[n]`` sample indices (default all).
        long_labels: return labels as int64 instead of uint8.
        cache_chunks: decoded chunks kept per process (memory: this many chunks).
    """

    def __init__(
        self,
        store: ChunkedSamples,
        indices: np.ndarray | Sequence[int] | None = None,
        *,
        long_labels: bool = False,
        cache_chunks: int = 1,
    ):
        self.store = store
        self.indices = as_indices(indices, len(store))
        self.long_labels = long_labels
        self.cache_chunks = int(cache_chunks)
        self._chunk_cache: ChunkCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_chunk_cache"] = None
        return state

    @property
    def cache(self) -> ChunkCache:
        """This process's chunk cache (created on first use)."""
        if self._chunk_cache is None:
            self._chunk_cache = self.store.chunk_cache(self.cache_chunks)
        return self._chunk_cache

    def _labels(self, lab: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(lab)
        return t.long() if self.long_labels else t

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = int(self.indices[i])
        k, r = divmod(j, self.store.chunk_samples)
        img, lab = self.cache.get(k)
        return torch.from_numpy(img[r].copy()), self._labels(lab[r].copy())

    @property
    def item_nbytes(self) -> int:
        """Bytes of one item (image and label tensors)."""
        label_bytes = 8 if self.long_labels else 1
        return 4 * math.prod(self.store.sample_shape) + label_bytes * math.prod(self.store.spatial_shape)

    def fetch(self, items: Sequence[int] | np.ndarray,
              out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``items`` stacked: ``(images float32 [k, C, *spatial], labels [k, *spatial])``.

        One vectorised copy per run of items in one chunk (items of one chunk: one decode).
        ``out``: C-contiguous float32 ``[>= k, C, *spatial]`` and uint8 ``[>= k, *spatial]``
        buffers to fill (their first ``k`` samples are returned, without a copy for uint8 labels).
        """
        idx = self.indices[np.asarray(items, dtype=np.int64)]
        if out is not None:
            images, labels = out[0][: len(idx)], out[1][: len(idx)]
        else:
            images = np.empty((len(idx), *self.store.sample_shape), np.float32)
            labels = np.empty((len(idx), *self.store.spatial_shape), np.uint8)
        gather(self.cache, self.store.chunk_samples, idx, images, labels, sort=False)
        return torch.from_numpy(images), self._labels(labels)

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch (used by ``DataLoader``): :meth:`fetch`, as a list of items."""
        images, labels = self.fetch(items)
        return list(zip(images.unbind(0), labels.unbind(0)))


class ChunkedImages(Protocol):
    """What an :class:`ImageDataset` needs of a store (:class:`~synthmed.data.store.handle.Store` has it)."""

    chunk_samples: int
    sample_shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def image_reader(self, *, fast: bool = True) -> ChunkReader: ...


class ImageDataset(_ChunkIndexed, torch.utils.data.Dataset):
    """Map-style dataset over the *images* of some samples of a store, without their labels.

    Item ``i`` is sample ``indices[i]``: ``(image, no_label)`` with image a float32 tensor
    ``[C, *spatial]`` in ``[0, 1]`` and ``no_label`` an empty uint8 tensor ``[0]``. The pairs have
    :class:`StoreDataset`'s form, so :func:`~synthmed.training.batch_stream` streams this
    dataset unchanged (its batches' second member is then an empty ``[B, 0]`` tensor); the
    store's ``label`` array is never read (only :meth:`Store.image_reader
    <synthmed.data.store.handle.Store.image_reader>`'s chunks are decoded). For training that
    must see no mask, e.g. self-supervised pre-training.

    Each process keeps the last decoded image chunk, so items of one chunk requested together
    decode it once. Pickles without open files; not safe to share between threads.

    Args:
        store: the store.
        indices: int64 ``[n]`` sample indices (default all).
    """

    def __init__(self, store: ChunkedImages, indices: np.ndarray | Sequence[int] | None = None):
        self.store = store
        self.indices = as_indices(indices, len(store))
        self._reader: ChunkReader | None = None
        self._buffer: np.ndarray | None = None
        self._decoded = (-1, 0)  # (chunk held in _buffer, its valid samples)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_reader=None, _buffer=None, _decoded=(-1, 0))
        return state

    @property
    def item_nbytes(self) -> int:
        """Bytes of one item (the image; the empty label has none)."""
        return 4 * math.prod(self.store.sample_shape)

    def _chunk(self, k: int) -> np.ndarray:
        """Image chunk ``k``, ``[m, C, *spatial]`` (a view of the reused buffer)."""
        if self._decoded[0] != k:
            if self._reader is None:
                self._reader = self.store.image_reader()
            if self._buffer is None:
                self._buffer = np.empty((self.store.chunk_samples, *self.store.sample_shape), np.float32)
            self._decoded = (k, self._reader.read_into(k, self._buffer))
        return self._buffer[: self._decoded[1]]

    def fetch(self, items: Sequence[int] | np.ndarray,
              out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``items`` stacked: ``(images float32 [k, C, *spatial], empty uint8 [k, 0])``.

        Each run of consecutive items in one chunk decodes it at most once. ``out``: a C-contiguous
        float32 ``[>= k, C, *spatial]`` buffer to fill and a uint8 ``[>= k, 0]`` one (their first
        ``k`` rows are returned).
        """
        idx = self.indices[np.asarray(items, dtype=np.int64)]
        if out is not None:
            images, empty = out[0][: len(idx)], out[1][: len(idx)]
        else:
            images = np.empty((len(idx), *self.store.sample_shape), np.float32)
            empty = np.empty((len(idx), 0), np.uint8)
        chunk = self.store.chunk_samples
        cid = idx // chunk
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(cid)) + 1, [len(idx)]]) if len(idx) else [0]
        for a, b in zip(bounds[:-1], bounds[1:]):
            k = int(cid[a])
            images[a:b] = self._chunk(k)[idx[a:b] - k * chunk]
        return torch.from_numpy(images), torch.from_numpy(empty)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, empty = self.fetch([i])
        return images[0], empty[0]

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch (used by ``DataLoader``): :meth:`fetch`, as a list of items."""
        images, empty = self.fetch(items)
        return list(zip(images.unbind(0), empty.unbind(0)))


class ChunkShuffleSampler(torch.utils.data.Sampler[int]):
    """Shuffle for training without re-decoding: chunk order, then samples within windows of chunks.

    Yields every position ``0..len(dataset)-1`` once per epoch. The order depends only on
    ``(seed, epoch)``; call :meth:`set_epoch` each epoch for a new order. The chunks are
    permuted and cut into ``max(1, chunks // window)`` consecutive **windows** of near-equal
    size (so each holds ``window`` to ``2·window - 1`` chunks, or all chunks); the samples of
    each window are permuted together (``window=1``: within each chunk), and the windows
    follow each other. So a reader holding the chunks of the current window (e.g. a
    :class:`StoreDataset` with ``cache_chunks >= 2·window``, or
    :func:`~synthmed.training.batch_stream`) decodes each chunk once per epoch, while
    consecutive items mix the samples of at least ``window`` chunks.

    Args:
        dataset: a :class:`StoreDataset` (or anything with ``chunk_ids`` int ``[n]``).
        seed: base seed.
        shuffle_within_chunk: permute the samples inside each window (``False``: keep the
            chunks' own order, chunk after chunk).
        window: chunks whose samples are mixed together, >= 1.
    """

    def __init__(self, dataset: StoreDataset, *, seed: int = 0, shuffle_within_chunk: bool = True, window: int = 1):
        if int(window) < 1:
            raise ValueError(f"window must be >= 1 chunk, got {window}")
        self.chunk_ids = np.asarray(dataset.chunk_ids, dtype=np.int64)
        self.seed = int(seed)
        self.shuffle_within_chunk = shuffle_within_chunk
        self.window = int(window)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def order_and_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's order and where its windows start.

        Returns:
            ``(order, starts)``: int64 ``[n]``, a permutation of dataset positions, and
            int64 ``[w + 1]``, the offsets in ``order`` of the ``w`` windows (then ``n``).
        """
        rng = np.random.default_rng([self.seed, self.epoch])
        by_chunk = np.argsort(self.chunk_ids, kind="stable")
        chunks, starts = np.unique(self.chunk_ids[by_chunk], return_index=True)
        groups = np.split(by_chunk, starts[1:]) if len(chunks) else []
        perm = rng.permutation(len(groups))
        cuts = np.linspace(0, len(perm), max(1, len(perm) // self.window) + 1).round().astype(np.int64)
        parts, bounds = [], [0]
        for a, b in zip(cuts[:-1], cuts[1:]):
            items = np.concatenate([groups[g] for g in perm[a:b]])
            parts.append(rng.permutation(items) if self.shuffle_within_chunk else items)
            bounds.append(bounds[-1] + len(items))
        order = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return order, np.asarray(bounds, np.int64)

    def order(self) -> np.ndarray:
        """int64 ``[n]``: this epoch's permutation of dataset positions."""
        return self.order_and_windows()[0]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())
