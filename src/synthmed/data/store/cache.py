"""An LRU cache of a store's decoded image and label chunks, and gathering samples by index out of it.

:class:`ChunkCache` keeps the last few decoded chunks; :func:`gather` copies any list of
sample indices into output buffers, decoding each touched chunk once per run of indices in it;
:func:`as_indices` turns the index forms readers accept into int64 arrays.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from synthmed.data.store.chunk_reader import ChunkReader


class ChunkCache:
    """LRU cache of decoded chunks of a store's image and label arrays.

    ``get(k)`` returns views ``(images [m, C, ...], labels [m, ...])`` into reused buffers:
    they stay valid until ``size`` other chunks have been decoded, so callers copy out
    what they keep. Memory: ``size`` chunks.
    """

    def __init__(self, image: ChunkReader, label: ChunkReader, size: int = 1):
        if size < 1:
            raise ValueError(f"cache size must be >= 1, got {size}")
        self.image, self.label, self.size = image, label, size
        self._entries: OrderedDict[int, tuple[np.ndarray, np.ndarray, int]] = OrderedDict()
        self.decoded = 0  # chunks decoded so far (for tests and benchmarks)

    def read_whole(self, k: int, out_img: np.ndarray, out_lab: np.ndarray) -> bool:
        """Decode full chunk ``k`` straight into ``out_img``/``out_lab`` (``[chunk, ...]``,
        C-contiguous), saving a copy, unless it is cached or partial. Returns whether it did."""
        if k in self._entries or self.image.count(k) != self.image.chunk:
            return False
        if not (out_img.flags.c_contiguous and out_lab.flags.c_contiguous):
            return False
        self.image.read_into(k, out_img)
        self.label.read_into(k, out_lab)
        self.decoded += 1
        return True

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``k`` as views ``(images [m, C, ...], labels [m, ...])``, decoding it if not cached."""
        entry = self._entries.get(k)
        if entry is not None:
            self._entries.move_to_end(k)
        else:
            if len(self._entries) >= self.size:
                _, (img, lab, _) = self._entries.popitem(last=False)
            else:
                img = np.empty((self.image.chunk, *self.image.sample_shape), self.image.dtype)
                lab = np.empty((self.label.chunk, *self.label.sample_shape), self.label.dtype)
            m = self.image.read_into(k, img)
            self.label.read_into(k, lab)
            self.decoded += 1
            entry = self._entries[k] = (img, lab, m)
        img, lab, m = entry
        return img[:m], lab[:m]


def gather(
    cache: ChunkCache, chunk: int, idx: np.ndarray, out_img: np.ndarray, out_lab: np.ndarray, *, sort: bool
) -> None:
    """Copy samples ``idx`` into ``out_img[i], out_lab[i]`` chunk by chunk.

    With ``sort`` the samples are visited in chunk order (each chunk decoded once however
    ``idx`` is ordered); without, in the given order (runs of one chunk decoded once).
    """
    if len(idx) == 0:
        return
    order = np.argsort(idx, kind="stable") if sort else None
    visit = idx[order] if sort else idx
    cid = visit // chunk
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(cid)) + 1, [len(visit)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        k = int(cid[a])
        local = visit[a:b] - k * chunk
        contiguous = order is None and int(local[-1]) - int(local[0]) == b - a - 1
        contiguous = contiguous and (b - a == 1 or bool(np.all(np.diff(local) == 1)))
        if contiguous and b - a == chunk and cache.read_whole(k, out_img[a:b], out_lab[a:b]):
            continue
        img, lab = cache.get(k)
        if order is None:
            lo = int(local[0])
            if contiguous:
                out_img[a:b] = img[lo : lo + b - a]
                out_lab[a:b] = lab[lo : lo + b - a]
            else:
                np.take(img, local, axis=0, out=out_img[a:b])
                np.take(lab, local, axis=0, out=out_lab[a:b])
        else:
            pos = order[a:b]
            out_img[pos] = img[local]
            out_lab[pos] = lab[local]


def as_indices(indices: slice | Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """Indices as int64 ``[k]`` in ``0..n-1`` (negative ones count from the end)."""
    if indices is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(indices, slice):
        return np.arange(*indices.indices(n), dtype=np.int64)
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be a slice or a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.min() < -n or arr.max() >= n:
        raise IndexError(f"sample index out of range for a store of {n} samples")
    return np.where(arr < 0, arr + n, arr)
