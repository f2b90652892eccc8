"""Features of a store's samples, streamed batch by batch through an extractor (2D, or 3D as 2.5D)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from synthmed.data.store import Store
from synthmed.features.embedding import FeatureExtractor, embed


def iter_features(
    store: Store,
    extractor: FeatureExtractor,
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Stream ``store`` (or its ``indices``, in their order) through ``extractor`` (:func:`embed`).

    Memory is one batch of images (and one decoded chunk) whatever the store's size.

    Yields:
        ``(features float64 [b, F], logits float64 [b, K] or None)`` on the CPU, one per batch.
    """
    for images, _, _ in store.iter_batches(batch_size, indices):
        f, lg = embed(extractor, torch.from_numpy(images).to(device))
        yield f.double().cpu(), (None if lg is None else lg.double().cpu())


def extract_features(
    store: Store,
    extractor: FeatureExtractor,
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray | None]:
    """All the features of ``store`` (or its ``indices``), streamed by :func:`iter_features`.

    Returns:
        ``(features float64 [N, F], logits float64 [N, K] or None)``.
    """
    feats, logits = [], []
    for f, lg in iter_features(store, extractor, indices=indices, batch_size=batch_size, device=device):
        feats.append(f)
        if lg is not None:
            logits.append(lg)
    if not feats:
        return np.zeros((0, 0)), None
    return torch.cat(feats).numpy(), (torch.cat(logits).numpy() if logits else None)
