"""The intensities: tissue fractions mixed into MR signal per sequence, times a bias field, with Rician noise."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.phantom.draws import Contrast
from synthmed.data.phantom.fields import bspline_weights
from synthmed.data.phantom.geometry import FIELD_OF_VIEW_MM, FOV_LOW_MM
from synthmed.data.phantom.tissues import TISSUES
from synthmed.data.phantom.tumour import TumourBox


def tissue_fractions(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray, brain: np.ndarray, where: np.ndarray,
                     tumour: TumourBox | None) -> tuple[np.ndarray, np.ndarray]:
    """Tissue fractions and tumour texture of the ``N`` brain voxels ``where`` (flat crop indices).

    CSF is ``clip(mask - GM - WM, 0, 1)``; CSF, GM and WM are normalised to sum to 1, then
    the tumour's partial-volume fractions replace their share.

    Returns:
        ``(fractions, modulation)``: float32 ``[6, N]`` in :data:`TISSUES` order, summing to 1,
        and float32 ``[3, N]`` texture of NCR, ED and ET (1 where there is no tumour).
    """
    fractions = np.zeros((len(TISSUES), len(where)), dtype=np.float32)
    fractions[1], fractions[2] = gm.ravel()[where], wm.ravel()[where]
    np.clip(mask.ravel()[where] - fractions[1] - fractions[2], 0.0, 1.0, out=fractions[0])
    fractions[:3] /= fractions[:3].sum(axis=0, keepdims=True)
    modulation = np.ones((3, len(where)), dtype=np.float32)
    if tumour is None:
        return fractions, modulation
    # Position of each tumour-box brain voxel among the brain voxels.
    inside = brain[tumour.box]
    box_vox = tuple(i + sl.start for i, sl in zip(np.nonzero(inside), tumour.box))
    idx = np.searchsorted(where, np.ravel_multi_index(box_vox, brain.shape))
    soft = np.stack([
        ndimage.gaussian_filter((tumour.labels == value).astype(np.float32), 0.6, mode="constant")
        for value in (1, 2, 3)
    ])[:, inside]
    fractions[:3, idx] *= np.clip(1.0 - soft.sum(axis=0), 0.0, 1.0)
    fractions[3:, idx] = soft
    fractions[:, idx] /= fractions[:, idx].sum(axis=0, keepdims=True)
    modulation[:, idx] = tumour.modulation[:, inside]
    return fractions, modulation


def _bias_field(contrast: Contrast, lines: tuple[np.ndarray, np.ndarray, np.ndarray], where: np.ndarray) -> np.ndarray:
    """Multiplicative bias field float32 ``[4, N]`` at the brain voxels ``where`` (flat indices of the box ``lines``).

    ``exp(plane(y, x) + axial(z))``: a smooth in-plane field (cubic B-spline, 5 × 5 controls
    over the field of view) plus a smooth through-plane one (4 controls), per sequence;
    evaluated only at the brain voxels.
    """
    z, y, x = lines
    low, length = FOV_LOW_MM, np.array(FIELD_OF_VIEW_MM)
    wz = bspline_weights(z, contrast.bias_axial.shape[1], low[2], length[2])
    wy = bspline_weights(y, contrast.bias_plane.shape[1], low[1], length[1])
    wx = bspline_weights(x, contrast.bias_plane.shape[2], low[0], length[0])
    plane = np.einsum("kbc,yb,xc->kyx", contrast.bias_plane, wy, wx).reshape(len(contrast.bias_plane), -1)
    axial = np.einsum("ka,za->kz", contrast.bias_axial, wz)
    per_slice = len(y) * len(x)
    log_bias = plane.astype(np.float32)[:, where % per_slice] + axial.astype(np.float32)[:, where // per_slice]
    return np.exp(log_bias, out=log_bias)


def sequence_intensities(fractions: np.ndarray, modulation: np.ndarray, contrast: Contrast,
                         noise_rng: np.random.Generator,
                         lines: tuple[np.ndarray, np.ndarray, np.ndarray], where: np.ndarray) -> np.ndarray:
    """Intensities float32 ``[4, N]`` of the brain voxels.

    Partial-volume mixture of the tissue means; edema's signal fades from its mean to white
    matter's with its strength (``modulation[1]``), NCR and ET are textured multiplicatively;
    times a smooth bias field per sequence; Rician noise; rounded and clipped to 1..32000.
    """
    means = contrast.means
    ncr, ed, et, wm = (TISSUES.index(t) for t in ("ncr", "ed", "et", "wm"))
    values = np.empty((len(CANONICAL_CHANNELS), fractions.shape[1]), dtype=np.float32)
    for c in range(len(CANONICAL_CHANNELS)):  # explicit sums: no BLAS, thread-count independent
        v = means[c, 0] * fractions[0] + means[c, 1] * fractions[1] + means[c, 2] * fractions[2]
        v += means[c, ncr] * modulation[0] * fractions[ncr] + means[c, et] * modulation[2] * fractions[et]
        v += (means[c, wm] + (means[c, ed] - means[c, wm]) * modulation[1]) * fractions[ed]
        values[c] = v

    values *= _bias_field(contrast, lines, where)

    # Rician noise: magnitude of the signal plus complex Gaussian noise. The imaginary part
    # reuses the real part's draws at other voxels (independent samples, half the draws).
    sd = contrast.noise * means[:, 1:2]
    generator = torch.Generator().manual_seed(int(noise_rng.integers(2**62)))
    real = torch.randn(values.shape, generator=generator).numpy()
    imag = np.roll(real, shift=values.shape[1] // 2 + 1, axis=1)
    noisy = np.sqrt((values + sd * real) ** 2 + (sd * imag) ** 2)
    return np.clip(np.rint(noisy), 1.0, 32000.0).astype(np.float32)
