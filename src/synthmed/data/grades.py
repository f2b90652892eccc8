"""Tumour-burden grades: the whole tumour's share of a sample, binned (the bins, and the grade of an array).

The grade of a sample (a 2D slice or a 3D volume) bins its WT fraction (WT voxels / all voxels
of the sample, background included): grade 0 is no tumour, :data:`GRADE_BINS` are the upper
edges (inclusive) of grades 0, 1, 2 and grade 3 is everything above the last edge. The bins
were chosen on the phantom (their measurement is in :mod:`synthmed.classify.targets`, whose
``grade`` task uses them); the longitudinal phantom reports each visit's grade with them.
"""

from __future__ import annotations

import numpy as np

#: Upper edges (inclusive) of the WT fraction of grades 0, 1, 2; grade 3 lies above the last.
GRADE_BINS: tuple[float, ...] = (0.0, 0.007, 0.014)

#: Number of grades, 0 (no tumour) included.
N_GRADES = len(GRADE_BINS) + 1


def grade_of_fraction(fraction: float | np.ndarray) -> np.ndarray:
    """int64 grades (shaped like ``fraction``) of WT fractions: the number of edges strictly below each.

    A fraction on an edge takes the lower grade, as ``torch.bucketize(..., right=False)``.
    """
    return np.searchsorted(np.asarray(GRADE_BINS, dtype=np.float64), np.asarray(fraction, dtype=np.float64),
                           side="left").astype(np.int64)


def grade_of_label(label: np.ndarray) -> int:
    """The grade of one sample's canonical labels (any shape, at least one voxel)."""
    if label.size == 0:
        raise ValueError("a sample with no voxels has no grade")
    return int(grade_of_fraction(np.count_nonzero(label) / label.size))
