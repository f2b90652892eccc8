"""Samples to stream through a search: an array, a store, or a store's subset, as float32 batches.

A *batch source* is anything with ``sample_shape``, ``len()`` and ``iter_batches(batch_size,
indices=None)`` yielding ``(images, labels, indices)`` (a :class:`~synthmed.data.Store`);
``(source, indices)`` restricts one to ``indices``. Arrays and tensors ``[N, *shape]`` are cut
into consecutive batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

#: ``batches(batch_size)``: an iterator of float32 numpy ``[b, *sample_shape]``.
Batches = Callable[[int], Iterator[np.ndarray]]


@runtime_checkable
class BatchSource(Protocol):
    """Samples that can be streamed in batches (a :class:`~synthmed.data.Store` is one)."""

    sample_shape: Sequence[int]

    def __len__(self) -> int: ...

    def iter_batches(self, batch_size: int, indices: Any = None) -> Iterator[tuple[np.ndarray, Any, Any]]: ...


def as_source(x: object) -> tuple[int, tuple[int, ...], Batches]:
    """``(n, sample_shape, batches)`` of a batch source, ``(source, indices)``, or an array/tensor.

    Raises:
        ValueError: an array of fewer than two dimensions.
    """
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], BatchSource):
        store, idx = x[0], np.asarray(x[1], dtype=np.int64)
        return len(idx), tuple(store.sample_shape), lambda b: (imgs for imgs, _, _ in store.iter_batches(b, idx))
    if isinstance(x, BatchSource):
        source = x
        return len(source), tuple(source.sample_shape), lambda b: (imgs for imgs, _, _ in source.iter_batches(b))
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"samples must be [N, C, *spatial] or [N, F], got shape {arr.shape}")
    return len(arr), tuple(arr.shape[1:]), lambda b: (arr[i : i + b] for i in range(0, len(arr), b))
