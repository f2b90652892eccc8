"""Memorization search: each synthetic sample's maximum Pearson correlation with any training sample.

The reference study's measure: the maximum Pearson correlation of a synthetic image with
every training image. Here it is computed exactly as blocked matrix products: every
synthetic sample is flattened, centred and scaled to unit norm, so that its Pearson
correlation with a training sample ``t`` is ``a · t / ||t - mean(t)||`` (``a`` is centred, so
``t``'s mean drops out and training rows are used as read, without a copy); ``corr = A @ T.T``
is taken block by block while a running maximum (and its index) is kept.
:func:`nearest_embedding` is the same search by Euclidean distance in a feature space.

Conventions
-----------

* **Which values.** The image channels as stored (``[0, 1]`` normalised); the label is not
  used. ``mode="joint"``: all image channels of a sample flattened together into one
  vector. ``mode="channel"``: each image channel separately, giving ``[N, C]`` values
  (channel ``c`` of a synthetic sample against channel ``c`` of every training sample).
* **Constant images.** A sample (or channel) with zero variance has no defined Pearson
  correlation (``scipy.stats.pearsonr`` returns NaN); here its normalised row is all zeros,
  so its correlation with anything is **0** — a blank image is never called a copy.
* **Ties.** The index is the *first* training sample (in the order given) reaching the
  maximum.
* **Memory.** Synthetic samples are taken ``block`` at a time; for each block the training
  samples stream through in batches of ``train_batch``; memory is
  ``O((block + train_batch) · F)`` whatever the sizes of both stores. (With more synthetic
  samples than ``block`` the training store is read once per block.)

Inputs are arrays/tensors ``[N, C, *spatial]`` or batch sources such as a
:class:`~synthmed.data.Store` (optionally restricted to ``indices``, e.g.
``store.indices("train")``; :mod:`synthmed.metrics.sources`); returned indices are positions
in the training *input* (for a store with ``indices``: positions in that index array;
:func:`synthmed.evaluate.audit` maps them back to store sample indices). The audit over
stores, its record and figures are in :mod:`synthmed.evaluate`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from synthmed.errors import SynthmedError
from synthmed.metrics.sources import as_source

Mode = Literal["joint", "channel"]


def standardize(x: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows of ``x`` ``[..., N, F]`` centred and scaled to unit L2 norm, as a new ``dtype`` tensor.

    The Pearson correlation of rows ``i`` and ``j`` is then ``z[i] · z[j]``. Sums use
    torch's cascade summation (float32 data: correlations exact to ~1e-7). Rows with zero
    variance become zeros (correlation 0 with everything); near-constant rows are centred in
    float64. ``x`` is not modified.
    """
    x = x.to(dtype)
    z = x - x.mean(dim=-1, keepdim=True)  # a new tensor
    norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    bad = (norm.square() <= 1e-3 * torch.linalg.vector_norm(x, dim=-1, keepdim=True).square()).squeeze(-1)
    if bool(bad.any()):  # near-constant rows: centre again in float64 (constant rows become exactly 0)
        rows = x[bad].to(torch.float64)
        z[bad] = (rows - rows.mean(dim=-1, keepdim=True)).to(dtype)
        norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    return z.mul_(torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(norm)))


def centred_norm(x: torch.Tensor) -> torch.Tensor:
    """``||row - mean(row)||`` of each row of ``x`` ``[..., N, F]`` without forming the centred rows.

    From the row sum and the row norm, ``sqrt(Σx² - (Σx)²/F)``; rows where that difference
    cancels badly (below 1e-3 of ``Σx²``, e.g. near-constant images) are recomputed exactly
    in float64. Constant rows give exactly 0.
    """
    f = x.shape[-1]
    s1 = x.sum(dim=-1, dtype=x.dtype)
    s2 = torch.linalg.vector_norm(x, dim=-1).square()
    out = (s2 - s1.square() / f).clamp_min(0)
    bad = out <= 1e-3 * s2
    if bool(bad.any()):
        rows = x[bad].to(torch.float64)
        exact = torch.linalg.vector_norm(rows - rows.mean(dim=-1, keepdim=True), dim=-1).square()
        out[bad] = exact.to(out.dtype)
    return out.sqrt()


def _matrix(images: np.ndarray, mode: Mode, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[G, b, F']`` rows as a view of ``images`` where possible: G = 1 (joint) or C (channel)."""
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
    b = t.shape[0]
    if dtype != torch.float32:
        t = t.to(dtype)
    if mode == "joint":
        return t.reshape(1, b, -1)
    return t.reshape(b, t.shape[1], -1).transpose(0, 1)  # strided [C, b, HW], no copy


# ----------------------------------------------------------------------------- the search


def nearest_correlation(
    synthetic: object,
    train: object,
    *,
    mode: Mode = "joint",
    block: int = 512,
    train_batch: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact maximum Pearson correlation of each synthetic sample with any training sample.

    Args:
        synthetic: ``[M, C, *spatial]`` array/tensor, a Store, or ``(store, indices)``.
        train: the same kinds, ``[N, C, *spatial]`` with the same sample shape.
        mode: ``"joint"`` (all channels flattened together) or ``"channel"`` (each channel).
        block: synthetic samples compared at once.
        train_batch: training samples streamed at once.
        device: where the products run (``"cuda"`` works when present).
        dtype: dtype of the products: float32 (default; error ~1e-6) or float64.

    Returns:
        ``(values, indices)``: float64 ``[M]`` and int64 ``[M]`` (joint), or ``[M, C]`` each
        (channel). ``indices`` are positions in ``train``. See the module docstring for the
        constant-image and tie conventions.

    Raises:
        SynthmedError: the sample shapes differ, or ``train`` is empty.
    """
    if mode not in ("joint", "channel"):
        raise ValueError(f"mode must be 'joint' or 'channel', got {mode!r}")
    m, shape_s, syn_batches = as_source(synthetic)
    n, shape_t, train_batches = as_source(train)
    if tuple(shape_s) != tuple(shape_t):
        raise SynthmedError(f"synthetic samples have shape {tuple(shape_s)} but training samples {tuple(shape_t)}: "
                            "channels and sizes must match")
    if n == 0:
        raise SynthmedError("no training samples to compare with")
    device = torch.device(device)
    groups = 1 if mode == "joint" else int(shape_s[0])
    best_v = np.full((m, groups), -np.inf)
    best_i = np.zeros((m, groups), np.int64)
    start = 0
    for syn in syn_batches(block):
        a = standardize(_matrix(syn, mode, device, dtype), dtype=dtype)  # [G, b, F], centred, unit norm
        b = a.shape[1]
        run_v = torch.full((groups, b), -math.inf, dtype=dtype, device=device)
        run_i = torch.zeros((groups, b), dtype=torch.int64, device=device)
        offset = 0
        for tr in train_batches(train_batch):
            # a is centred, so a · t = a · (t - mean t): the training rows need only their centred norm
            t = _matrix(tr, mode, device, dtype)  # [G, k, F], raw
            norm = centred_norm(t)  # [G, k]
            inv = torch.where(norm > 0, 1.0 / norm.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(norm))
            corr = torch.bmm(a, t.transpose(1, 2)).mul_(inv[:, None, :])  # [G, b, k]
            v, i = corr.max(dim=2)  # first maximum within the batch
            better = v > run_v  # strict: earlier batches win ties
            run_v = torch.where(better, v, run_v)
            run_i = torch.where(better, i + offset, run_i)
            offset += t.shape[1]
        best_v[start : start + b] = run_v.T.to(torch.float64).cpu().numpy()
        best_i[start : start + b] = run_i.T.cpu().numpy()
        start += b
    np.clip(best_v, -1.0, 1.0, out=best_v)
    if mode == "joint":
        return best_v[:, 0], best_i[:, 0]
    return best_v, best_i


def nearest_embedding(synthetic: np.ndarray, train: np.ndarray, *, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Nearest training feature (Euclidean) of each synthetic feature.

    Args:
        synthetic: float ``[M, F]`` (e.g. domain-encoder features); train: ``[N, F]``.

    Returns:
        ``(distances, indices)``: float64 ``[M]``, int64 ``[M]`` (first index on ties).
    """
    a = torch.as_tensor(np.array(synthetic, dtype=np.float64))
    b = torch.as_tensor(np.array(train, dtype=np.float64))
    dist, idx = [], []
    for s in range(0, len(a), block):
        d = torch.cdist(a[s : s + block], b)
        v, i = d.min(dim=1)
        dist.append(v)
        idx.append(i)
    return torch.cat(dist).numpy(), torch.cat(idx).numpy()
