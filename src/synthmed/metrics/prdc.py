"""Precision/recall and density/coverage: k-NN balls of one feature set holding samples of the other.

* **Precision / recall** (Kynkäänniemi et al. 2019, k = 3) — precision: share of
  synthetic samples inside the k-NN ball of some real sample; recall: share of real samples
  inside the k-NN ball of some synthetic sample. Ball radius = distance to the k-th nearest
  sample of the same set **from another patient** (so a real slice's ball is not shrunk to
  its own neighbouring slices; with ``cases=None``, the k-th nearest *other* sample);
  "inside" means distance <= radius.
* **Density / coverage** (Naeem et al. 2020, k = 5) — density: ``1/(k M) Σ_j #{i: y_j in
  B(x_i)}``; coverage: share of real samples whose ball holds some synthetic sample; real
  balls as above (k-th nearest sample of another patient).

Features ``[N, F]``, computed in float64; patients as in :mod:`synthmed.metrics.samples`.
Distances are taken in blocks of rows of at most :data:`BLOCK_ENTRIES` distances (and at most
:data:`BLOCK_ROWS` rows), so memory beyond the features is bounded whatever the set sizes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from synthmed.metrics.samples import as_features, case_codes

#: Most rows of one block of distances.
BLOCK_ROWS = 2048
#: Most distances (float64) in one block: 8 MiB.
BLOCK_ENTRIES = 2**20


def block_rows(columns: int) -> int:
    """Rows per block of distances to ``columns`` points: :data:`BLOCK_ROWS`, fewer when the
    block would hold more than :data:`BLOCK_ENTRIES` distances (at least 1)."""
    return max(1, min(BLOCK_ROWS, BLOCK_ENTRIES // max(int(columns), 1)))


def _kth_radius(x: torch.Tensor, k: int, codes: np.ndarray) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest row of another patient (``codes``)."""
    groups = torch.from_numpy(codes)
    block = block_rows(len(x))
    out = []
    for s in range(0, len(x), block):
        d = torch.cdist(x[s : s + block], x)
        d.masked_fill_(groups[s : s + block, None] == groups[None, :], math.inf)  # itself and its patient
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out)


def _check_balls(what: str, codes: np.ndarray, k: int) -> None:
    n, most = len(codes), int(np.bincount(codes).max()) if len(codes) else 0
    if n - most < k:
        raise ValueError(f"k={k} balls need at least {k} {what} samples of other patients for every {what} sample "
                         f"(has {n}, up to {most} of one patient)")


def _inside_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(per point: #balls containing it, per centre: whether any point is inside)``."""
    block = block_rows(len(centres))
    counts = torch.zeros(len(points), dtype=torch.int64)
    hit = torch.zeros(len(centres), dtype=torch.bool)
    for s in range(0, len(points), block):
        inside = torch.cdist(points[s : s + block], centres) <= radii[None, :]
        counts[s : s + block] = inside.sum(1)
        hit |= inside.any(0)
    return counts, hit


def precision_recall(real: Any, synthetic: Any, *, k: int = 3, real_cases: Any | None = None,
                     synthetic_cases: Any | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al.), k-NN balls with ``k`` (default 3)
    whose radii skip each sample's own patient (``real_cases`` / ``synthetic_cases``: one id
    per sample; ``None``: every sample its own patient).

    Raises:
        ValueError: a set has ``k`` or fewer samples of other patients for some sample.
    """
    real, synthetic = as_features(real), as_features(synthetic)
    if min(len(real), len(synthetic)) <= k:
        raise ValueError(f"precision/recall with k={k} need more than {k} samples in each set")
    real_codes, syn_codes = case_codes(real_cases, len(real)), case_codes(synthetic_cases, len(synthetic))
    _check_balls("real", real_codes, k)
    _check_balls("synthetic", syn_codes, k)
    r_real, r_syn = _kth_radius(real, k, real_codes), _kth_radius(synthetic, k, syn_codes)
    syn_in_real, _ = _inside_counts(synthetic, real, r_real)
    real_in_syn, _ = _inside_counts(real, synthetic, r_syn)
    return float((syn_in_real > 0).double().mean()), float((real_in_syn > 0).double().mean())


def density_coverage(real: Any, synthetic: Any, *, k: int = 5, real_cases: Any | None = None) -> tuple[float, float]:
    """Density and coverage (Naeem et al.), real k-NN balls with ``k`` (default 5) whose radii
    skip each sample's own patient (``real_cases``; ``None``: every sample its own patient).

    Raises:
        ValueError: fewer than ``k + 1`` real samples (``k`` of other patients for each) or no
            synthetic sample.
    """
    real, synthetic = as_features(real), as_features(synthetic)
    if len(real) <= k or len(synthetic) < 1:
        raise ValueError(f"density/coverage with k={k} need more than {k} real samples and some synthetic ones")
    codes = case_codes(real_cases, len(real))
    _check_balls("real", codes, k)
    radii = _kth_radius(real, k, codes)
    counts, hit = _inside_counts(synthetic, real, radii)
    return float(counts.sum()) / (k * len(synthetic)), float(hit.double().mean())
