"""Inception score (IS) from classifier logits, over seeded splits independent of the sample order.

IS is ``exp(E_x KL(p(y|x) || p(y)))`` from classifier logits, mean and std over ``splits``
splits of a seeded shuffle of the samples (like torchmetrics, which shuffles unseeded): the
samples are first put in a canonical order (their logits sorted), so the splits do not depend
on the order the samples come in (real ones come patient by patient).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from synthmed.metrics.samples import as_features


def inception_score(logits: Any, *, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """Inception score from classifier logits ``[N, K]``: ``(mean, std)`` over ``splits`` splits.

    The splits are consecutive parts of a seeded shuffle of the samples taken in a canonical
    order (rows sorted by their logits): a seeded random partition that does not depend on
    the order of the rows (real samples come patient by patient; in-order splits would each
    hold a few patients).

    Raises:
        ValueError: fewer samples than splits.
    """
    logits = as_features(logits)
    if len(logits) < splits:
        raise ValueError(f"IS needs at least {splits} samples (one per split), got {len(logits)}")
    canonical = np.lexsort(logits.numpy().T[::-1])  # by the first column, then the second, …
    logits = logits[torch.from_numpy(canonical[np.random.default_rng(seed).permutation(len(logits))])]
    scores = []
    for part in torch.tensor_split(logits, splits):
        logp = torch.log_softmax(part, dim=1)
        p = logp.exp()
        logpy = torch.logsumexp(logp, dim=0) - math.log(len(part))
        kl = (p * (logp - logpy)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
