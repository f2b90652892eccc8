"""Does a generator match its data? Summary statistics of image + mask samples, real against synthetic.

The checks behind the "it learns" tests and ``benchmarks/validity.py``: each is a number a
reader can interpret, and each catches a known failure.

* ``background``: mean image value (all channels) of the pixels outside the sample's brain.
  Preprocessing makes the real background exactly 0; a diffusion model that never reached noise
  leaves it grey (0.15–0.35 in [0, 1] units).
* ``brain_fraction``: share of pixels inside the brain, ``brain = mean over channels > 0.1``.
* ``brain_mean``: per-channel mean intensity inside each sample's own brain, averaged over
  samples (``[C]``).
* ``label_fractions``: share of all pixels with each label 1 … L (``[L]``; BraTS: NCR, ED, ET).
  A background decoded as NCR shows up as an NCR share near the background's.
* ``ms_ssim``: mean MS-SSIM of random pairs of distinct samples
  (:func:`synthmed.metrics.diversity.ms_ssim_diversity`): near 1 for a collapsed generator.
* ``pooled_fd``: Fréchet distance in a fixed, training-free feature space
  (:func:`pooled_features`): each image channel and each label's indicator average-pooled to
  ``4 × 4``. It compares layouts and intensities, not texture; its value is meaningful only
  against a reference such as the same generator with untrained weights.

Arrays: images float32 ``[N, C, *spatial]`` in ``[0, 1]`` (a store's convention), labels uint8
``[N, *spatial]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.metrics.diversity import ms_ssim_diversity
from synthmed.metrics.frechet import frechet_distance

#: ``mean over channels > BRAIN_LEVEL`` is brain: the normalised background is 0, and a generator's
#: background noise of a few hundredths must not count as brain.
BRAIN_LEVEL = 0.1
#: Side of the average-pooled maps of :func:`pooled_features`.
POOLED_SIDE = 4


@dataclass(frozen=True)
class SampleStats:
    """Statistics of one set of samples (see the module)."""

    n: int
    background: float
    brain_fraction: float
    brain_mean: tuple[float, ...]
    label_fractions: tuple[float, ...]
    ms_ssim: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def brain_masks(images: np.ndarray) -> np.ndarray:
    """bool ``[N, *spatial]``: the pixels whose mean over channels exceeds :data:`BRAIN_LEVEL`."""
    return np.asarray(images, np.float32).mean(axis=1) > BRAIN_LEVEL


def sample_stats(images: np.ndarray, labels: np.ndarray, *, n_labels: int = 3, seed: int = 0,
                 pairs: int = 100) -> SampleStats:
    """The statistics of ``images`` / ``labels`` (shapes in the module docstring).

    ``background`` is 0 when no pixel is background (and ``brain_mean`` 0 for a channel of a
    set with no brain pixel); the MS-SSIM pairs are drawn with ``seed``.
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    brain = brain_masks(images)
    outside = ~brain
    per_pixel = images.mean(axis=1)
    background = float(per_pixel[outside].mean()) if outside.any() else 0.0
    means = []
    for c in range(images.shape[1]):
        channel = images[:, c]
        per_sample = [float(channel[i][brain[i]].mean()) for i in range(len(images)) if brain[i].any()]
        means.append(float(np.mean(per_sample)) if per_sample else 0.0)
    fractions = tuple(float((labels == k).mean()) for k in range(1, n_labels + 1))
    dims = images.ndim - 2
    diversity = ms_ssim_diversity(torch.from_numpy(images), pairs=pairs, seed=seed, spatial_dims=dims)["ms_ssim"]
    return SampleStats(len(images), background, float(brain.mean()), tuple(means), fractions, diversity)


def pooled_features(images: np.ndarray, labels: np.ndarray, *, n_labels: int = 3, side: int = POOLED_SIDE
                    ) -> torch.Tensor:
    """float64 ``[N, (C + L) · side^d]``: image channels and label indicators average-pooled to ``side^d``."""
    x = torch.as_tensor(np.asarray(images, np.float32))
    lab = torch.as_tensor(np.asarray(labels).astype(np.int64))
    onehot = torch.stack([(lab == k).float() for k in range(1, n_labels + 1)], dim=1)
    both = torch.cat([x, onehot], dim=1)
    pool = F.adaptive_avg_pool2d if both.ndim == 4 else F.adaptive_avg_pool3d
    return pool(both, side).flatten(1).double()


def pooled_fd(real: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray], *,
              n_labels: int = 3) -> float:
    """Fréchet distance between the :func:`pooled_features` of two ``(images, labels)`` sets."""
    return frechet_distance(pooled_features(*real, n_labels=n_labels), pooled_features(*synthetic, n_labels=n_labels))
