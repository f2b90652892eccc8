"""Memorization: how close is each synthetic sample to its nearest training sample?

The reference study's measure: the maximum Pearson correlation of a synthetic image with
every training image. Here it is computed exactly as blocked matrix products: every synthetic sample is flattened, centred
and scaled to unit norm, so that its Pearson correlation with a training sample ``t`` is
``a · t / ||t - mean(t)||`` (``a`` is centred, so ``t``'s mean drops out and training rows
are used as read, without a copy); ``corr = A @ T.T`` is taken block by block while a
running maximum (and its index) is kept.

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

**Shift- and flip-tolerant similarity** (:func:`nearest_correlation_tolerant`, the gate's
``--similarity shift-flip``): the maximum Pearson correlation over variants of each synthetic
sample — every shift by ``(dy, dx)`` in ``[-s, s]²`` pixels of the in-plane axes (y, x;
zero-filled, so the brain's zero background fills the border), of the sample and of its
left-right mirror (x reversed) — against every training sample. ``V = 2 (2s + 1)²`` variants
(50 for ``s = 2``), so it costs about ``V`` times the pixel search. It catches a mirrored or
slightly shifted copy, which the pixel correlation misses; it does not catch rotations, scaling,
larger shifts, intensity remapping or deformations.

Inputs are arrays/tensors ``[N, C, *spatial]`` or :class:`~synthmed.data.Store` objects
(optionally restricted to ``indices``, e.g. ``store.indices("train")``); returned indices
are positions in the training *input* (for a store with ``indices``: positions in that
index array; :func:`audit` maps them back to store sample indices).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from synthmed.data.store import Store
from synthmed.errors import SynthmedError

Mode = Literal["joint", "channel"]

#: Default near-copy threshold on the maximum Pearson correlation (the export gate's).
DEFAULT_THRESHOLD = 0.95
#: Name of the audit file written next to a synthetic store (``<store>-memorization.json``).
AUDIT_SUFFIX = "-memorization.json"
#: What the gate compares: ``pixel`` (the plain maximum Pearson correlation) or ``shift-flip``
#: (the maximum over small shifts and the left-right mirror, :func:`nearest_correlation_tolerant`).
SIMILARITIES: tuple[str, ...] = ("pixel", "shift-flip")
#: Default largest shift, in pixels along each in-plane axis, of the ``shift-flip`` similarity.
DEFAULT_MAX_SHIFT = 2
#: What an audit records about the stores it measured (beyond their paths).
AUDIT_RECORD_KEYS: tuple[str, ...] = ("synthetic_created", "train_created", "synthetic_hash", "train_hash")


# ----------------------------------------------------------------------------- inputs


def _as_source(x: object) -> tuple[int, tuple[int, ...], callable]:
    """``(n, sample_shape, batches(batch_size) -> iterator of float32 numpy [b, C, ...])``."""
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], Store):
        store, idx = x[0], np.asarray(x[1], dtype=np.int64)
        return len(idx), store.sample_shape, lambda b: (imgs for imgs, _, _ in store.iter_batches(b, idx))
    if isinstance(x, Store):
        return len(x), x.sample_shape, lambda b: (imgs for imgs, _, _ in x.iter_batches(b))
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"samples must be [N, C, *spatial] or [N, F], got shape {arr.shape}")
    return len(arr), tuple(arr.shape[1:]), lambda b: (arr[i : i + b] for i in range(0, len(arr), b))


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
    m, shape_s, syn_batches = _as_source(synthetic)
    n, shape_t, train_batches = _as_source(train)
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


def shift_flip_variants(images: torch.Tensor, max_shift: int = DEFAULT_MAX_SHIFT) -> torch.Tensor:
    """Every shifted and mirrored variant of each image.

    Args:
        images: ``[b, C, *spatial]`` (2D ``[H, W]`` or 3D ``[D, H, W]``).
        max_shift: largest shift ``s`` in pixels along each of the last two axes (y, x).

    Returns:
        ``[b, V, C, *spatial]`` with ``V = 2 (2s + 1)²``: variant ``k`` is the image (``k < V/2``)
        or its left-right mirror (x reversed), shifted by :func:`variant_shift` ``(k)``; pixels
        shifted in are 0. Variant 0 is the image itself.
    """
    s = int(max_shift)
    if s < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    h, w = images.shape[-2:]
    out = []
    for image in (images, images.flip(-1)):
        padded = torch.nn.functional.pad(image, (s, s, s, s))  # zeros around y and x
        for dy, dx in _shifts(s):  # variant[y, x] = image[y - dy, x - dx]
            out.append(padded[..., s - dy : s - dy + h, s - dx : s - dx + w])
    return torch.stack(out, dim=1)


def _shifts(max_shift: int) -> list[tuple[int, int]]:
    """``(dy, dx)`` pairs in ``[-s, s]²``, ``(0, 0)`` first, then row by row."""
    r = range(-max_shift, max_shift + 1)
    return [(0, 0)] + [(dy, dx) for dy in r for dx in r if (dy, dx) != (0, 0)]


def variant_shift(k: int, max_shift: int = DEFAULT_MAX_SHIFT) -> tuple[bool, int, int]:
    """``(mirrored, dy, dx)`` of variant ``k`` of :func:`shift_flip_variants`."""
    shifts = _shifts(int(max_shift))
    mirrored, j = divmod(int(k), len(shifts))
    return bool(mirrored), *shifts[j]


def nearest_correlation_tolerant(
    synthetic: object,
    train: object,
    *,
    max_shift: int = DEFAULT_MAX_SHIFT,
    block: int = 512,
    train_batch: int = 256,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum Pearson correlation (joint) of each synthetic sample's shifted and mirrored
    variants (:func:`shift_flip_variants`) with any training sample.

    The variants of ``block // V`` synthetic samples at a time go through
    :func:`nearest_correlation` as one block, so the cost is about ``V`` times the pixel
    search's (the training samples stream once per block).

    Returns:
        ``(values, indices, variants)``: float64 ``[M]``, int64 ``[M]`` training positions and
        int64 ``[M]`` the variant reaching the maximum (see :func:`variant_shift`; ties go to the
        lowest variant, so an exact copy reports variant 0). ``values`` >= the pixel maximum.
    """
    m, shape_s, syn_batches = _as_source(synthetic)
    v = 2 * (2 * int(max_shift) + 1) ** 2
    per = max(1, block // v)
    values, indices, variants = np.empty(m), np.zeros(m, np.int64), np.zeros(m, np.int64)
    start = 0
    for syn in syn_batches(per):
        b = syn.shape[0]
        rows = shift_flip_variants(torch.from_numpy(np.ascontiguousarray(syn, dtype=np.float32)), max_shift)
        vals, idx = nearest_correlation(rows.reshape(b * v, *shape_s), train, mode="joint", block=b * v,
                                        train_batch=train_batch, device=device, dtype=dtype)
        vals, idx = vals.reshape(b, v), idx.reshape(b, v)
        best = vals.argmax(axis=1)  # first maximum: the lowest variant
        values[start : start + b] = vals[np.arange(b), best]
        indices[start : start + b] = idx[np.arange(b), best]
        variants[start : start + b] = best
        start += b
    return values, indices, variants


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


# ----------------------------------------------------------------------------- the audit


@dataclass
class MemorizationAudit:
    """The result of :func:`audit`: one row per synthetic sample and the summary.

    Attributes:
        values: float64 ``[M]`` joint maximum correlation per synthetic sample.
        indices: int64 ``[M]`` the training *store* sample index reaching it.
        channel_values: float64 ``[M, C]`` the per-channel maxima.
        channel_indices: int64 ``[M, C]``.
        threshold: near-copy threshold on ``values``.
        channels: channel names.
        synthetic_path / train_path: the stores, absolute (``None`` for arrays).
        train_split: the split of the training store compared with (``None``: all samples).
        extra: ``synthetic_created`` / ``train_created`` and the stores' content hashes
            ``synthetic_hash`` / ``train_hash`` (:func:`~synthmed.data.fingerprint.store_hash`),
            which bind the audit to what it measured.
        embedding: nearest domain-embedding distances and store indices, if computed.
        shift_flip: ``(values, store indices, variants)`` of the shift- and flip-tolerant
            similarity (:func:`nearest_correlation_tolerant`), if computed, with ``max_shift``.
    """

    values: np.ndarray
    indices: np.ndarray
    channel_values: np.ndarray
    channel_indices: np.ndarray
    threshold: float
    channels: Sequence[str]
    synthetic_path: str | None = None
    train_path: str | None = None
    train_split: str | None = "train"
    extra: dict = field(default_factory=dict)
    embedding: tuple[np.ndarray, np.ndarray] | None = None
    shift_flip: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    max_shift: int | None = None

    @property
    def similarity(self) -> str:
        """``shift-flip`` when the tolerant similarity was computed, else ``pixel``."""
        return "shift-flip" if self.shift_flip is not None else "pixel"

    def gate_values(self, similarity: str = "pixel") -> tuple[np.ndarray, np.ndarray]:
        """``(values, store indices)`` the privacy gate compares with its threshold.

        Raises:
            SynthmedError: ``shift-flip`` asked of an audit without it.
        """
        if similarity == "pixel":
            return self.values, self.indices
        if similarity == "shift-flip" and self.shift_flip is not None:
            return self.shift_flip[0], self.shift_flip[1]
        raise SynthmedError(f"this audit has no {similarity!r} similarity (it has {self.similarity})")

    @property
    def near_copies(self) -> np.ndarray:
        """Synthetic sample indices whose joint maximum correlation exceeds the threshold (> t)."""
        return np.flatnonzero(self.values > self.threshold)

    @property
    def fraction_above(self) -> float:
        return float(len(self.near_copies) / max(len(self.values), 1))

    def histogram(self, bins: int = 20) -> dict:
        """Counts of the joint values over ``bins`` equal bins of [-1, 1]."""
        counts, edges = np.histogram(self.values, bins=bins, range=(-1.0, 1.0))
        return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}

    def table(self) -> list[dict]:
        """One row per synthetic sample: index, value, nearest train index, per-channel values."""
        rows = []
        for i in range(len(self.values)):
            row = {"synthetic": i, "correlation": float(self.values[i]), "train": int(self.indices[i])}
            for c, name in enumerate(self.channels):
                row[f"correlation_{name}"] = float(self.channel_values[i, c])
                row[f"train_{name}"] = int(self.channel_indices[i, c])
            if self.embedding is not None:
                row["embedding_distance"] = float(self.embedding[0][i])
                row["embedding_train"] = int(self.embedding[1][i])
            if self.shift_flip is not None:
                mirrored, dy, dx = variant_shift(int(self.shift_flip[2][i]), self.max_shift or 0)
                row["correlation_shift_flip"] = float(self.shift_flip[0][i])
                row["train_shift_flip"] = int(self.shift_flip[1][i])
                row["variant_shift_flip"] = {"mirrored": mirrored, "dy": dy, "dx": dx}
            rows.append(row)
        return rows

    def summary(self) -> dict:
        v = self.values
        return {
            "synthetic": self.synthetic_path,
            "train": self.train_path,
            "train_split": self.train_split,
            "n_synthetic": int(len(v)),
            "threshold": float(self.threshold),
            "n_above": int(len(self.near_copies)),
            "fraction_above": self.fraction_above,
            "max": float(v.max()) if len(v) else None,
            "mean": float(v.mean()) if len(v) else None,
            "median": float(np.median(v)) if len(v) else None,
            "max_per_channel": {name: float(self.channel_values[:, c].max()) for c, name in enumerate(self.channels)}
            if len(v) else {},
            "histogram": self.histogram(),
            "similarity": self.similarity,
            **({"shift_flip": {"max_shift": int(self.max_shift or 0),
                               "max": float(self.shift_flip[0].max()) if len(v) else None,
                               "n_above": int((self.shift_flip[0] > self.threshold).sum())}}
               if self.shift_flip is not None else {}),
            **self.extra,
        }

    def to_json(self) -> dict:
        return {"format": "synthmed-memorization", "format_version": 1, **self.summary(), "samples": self.table()}

    @classmethod
    def load(cls, path: str | Path) -> MemorizationAudit:
        """Read an audit written by :meth:`save` (summary and per-sample table).

        Raises:
            SynthmedError: not a synthmed memorization file.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SynthmedError(f"{path}: cannot read the memorization audit ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != "synthmed-memorization":
            raise SynthmedError(f"{path}: not a synthmed memorization audit (format synthmed-memorization)")
        rows, channels = data.get("samples", []), tuple(data.get("max_per_channel", {}))

        def column(key: str, dtype: type) -> np.ndarray:
            return np.array([r[key] for r in rows], dtype=dtype)

        def per_channel(prefix: str, dtype: type) -> np.ndarray:
            values = [[r[f"{prefix}_{c}"] for c in channels] for r in rows]
            return np.array(values, dtype=dtype).reshape(len(rows), len(channels))

        try:
            embedding = shift_flip = max_shift = None
            if rows and "embedding_distance" in rows[0]:
                embedding = (column("embedding_distance", np.float64), column("embedding_train", np.int64))
            if data.get("similarity") == "shift-flip":
                max_shift = int(data["shift_flip"]["max_shift"])
                shifts = _shifts(max_shift)
                variants = [int(r["variant_shift_flip"]["mirrored"]) * len(shifts)
                            + shifts.index((r["variant_shift_flip"]["dy"], r["variant_shift_flip"]["dx"])) for r in rows]
                shift_flip = (column("correlation_shift_flip", np.float64), column("train_shift_flip", np.int64),
                              np.array(variants, np.int64))
            return cls(column("correlation", np.float64), column("train", np.int64),
                       per_channel("correlation", np.float64), per_channel("train", np.int64), float(data["threshold"]),
                       channels, data.get("synthetic"), data.get("train"), data.get("train_split"),
                       extra={k: data[k] for k in AUDIT_RECORD_KEYS if k in data},
                       embedding=embedding, shift_flip=shift_flip, max_shift=max_shift)
        except (KeyError, TypeError, ValueError) as exc:
            raise SynthmedError(f"{path}: not a readable synthmed memorization audit ({type(exc).__name__}: "
                                f"{str(exc)[:200]})") from None

    def save(self, path: str | Path) -> Path:
        """Write the summary and the per-sample table as JSON (atomically)."""
        from synthmed.atomic import atomic_file

        path = Path(path)
        with atomic_file(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path


def audit(
    synthetic: Store,
    train: Store,
    *,
    train_split: str | None = "train",
    threshold: float = DEFAULT_THRESHOLD,
    device: str | torch.device = "cpu",
    block: int = 512,
    train_batch: int = 256,
    similarity: str = "pixel",
    max_shift: int = DEFAULT_MAX_SHIFT,
    hashes: Mapping[str, str] | None = None,
) -> MemorizationAudit:
    """Audit a synthetic store against a training store (its ``train_split``; ``None``: all).

    The record holds both stores' absolute paths and content hashes
    (:func:`~synthmed.data.fingerprint.store_hash`), which the export gate checks; a caller
    that has just computed them passes ``hashes`` (``synthetic_hash``, ``train_hash``) instead.
    ``similarity="shift-flip"`` adds the shift- and flip-tolerant maxima
    (:func:`nearest_correlation_tolerant`, shifts up to ``max_shift`` pixels).

    Raises:
        SynthmedError: mismatched channels or sample sizes, an empty split or an unknown similarity.
    """
    from synthmed.data.fingerprint import store_hash

    if similarity not in SIMILARITIES:
        raise SynthmedError(f"--similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    if int(max_shift) < 0:
        raise SynthmedError(f"--max-shift must be >= 0, got {max_shift}")
    if tuple(synthetic.channels) != tuple(train.channels) or synthetic.sample_shape != train.sample_shape:
        raise SynthmedError(
            f"cannot compare {synthetic.path} (channels {list(synthetic.channels)}, shape {list(synthetic.sample_shape)}) "
            f"with {train.path} (channels {list(train.channels)}, shape {list(train.sample_shape)}): "
            "channels and sample sizes must match")
    idx = train.indices(train_split) if train_split is not None else train.indices()
    kw = dict(device=device, block=block, train_batch=train_batch)
    hashes = dict(hashes) if hashes is not None else {"synthetic_hash": store_hash(synthetic.path),
                                                      "train_hash": store_hash(train.path)}
    values, pos = nearest_correlation(synthetic, (train, idx), mode="joint", **kw)
    cvalues, cpos = nearest_correlation(synthetic, (train, idx), mode="channel", **kw)
    shift_flip = None
    if similarity == "shift-flip":
        tv, tpos, tvar = nearest_correlation_tolerant(synthetic, (train, idx), max_shift=max_shift, **kw)
        shift_flip = (tv, idx[tpos], tvar)
    return MemorizationAudit(values, idx[pos], cvalues, idx[cpos], float(threshold), tuple(synthetic.channels),
                             str(Path(synthetic.path).resolve()), str(Path(train.path).resolve()), train_split,
                             extra={"synthetic_created": synthetic.meta.get("created"),
                                    "train_created": train.meta.get("created"), **hashes},
                             shift_flip=shift_flip, max_shift=int(max_shift) if shift_flip is not None else None)


def add_embedding_distance(result: MemorizationAudit, synthetic: Store, train: Store, extractor: object,
                           *, batch_size: int = 32) -> MemorizationAudit:
    """Add the Euclidean distance of each synthetic sample to its nearest ``train_split`` sample in a
    feature space (e.g. the domain encoder's): ``extra["embedding_distance"]`` / ``["embedding_train"]``
    (store indices), per sample, shown in :meth:`MemorizationAudit.table`."""
    from synthmed.features import extract_features

    idx = train.indices(result.train_split) if result.train_split else train.indices()
    syn_f, _ = extract_features(synthetic, extractor, batch_size=batch_size)
    train_f, _ = extract_features(train, extractor, indices=idx, batch_size=batch_size)
    dist, pos = nearest_embedding(syn_f, train_f)
    result.embedding = (dist, idx[pos])
    return result


def audit_path(store_path: str | Path) -> Path:
    """Where the audit of a synthetic store is saved: ``<store>-memorization.json`` beside it."""
    p = Path(store_path)
    return p.with_name(p.name + AUDIT_SUFFIX)


# ----------------------------------------------------------------------------- figures


def plot_histogram(result: MemorizationAudit, path: str | Path) -> Path:
    """PNG histogram of the joint maximum correlations with the threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthmed.atomic import atomic_file

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(result.values, bins=40, range=(min(-0.05, float(result.values.min(initial=0))), 1.0), color="0.4")
    ax.axvline(result.threshold, color="red", linestyle="--", label=f"threshold {result.threshold:g}")
    ax.set_xlabel("max Pearson correlation with a training sample")
    ax.set_ylabel("synthetic samples")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def _view(image: np.ndarray, channel: int) -> np.ndarray:
    """2D view of one channel: the sample itself (2D) or its middle axial slice (3D)."""
    x = image[channel]
    return x if x.ndim == 2 else x[x.shape[0] // 2]


def plot_gallery(result: MemorizationAudit, synthetic: Store, train: Store, path: str | Path, *, top_k: int = 8,
                 channel: int = -1) -> Path:
    """PNG of the ``top_k`` closest pairs: synthetic | nearest real | absolute difference.

    Rows are sorted by decreasing correlation; ``channel`` is the channel shown (default the
    last, FLAIR for canonical stores); 3D samples show their middle axial slice.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthmed.atomic import atomic_file

    order = np.argsort(-result.values, kind="stable")[: max(1, top_k)]
    syn, _ = synthetic.read(order)
    real, _ = train.read(result.indices[order])
    ch = channel % len(synthetic.channels)
    rows = len(order)
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for r, i in enumerate(order):
        a, b = _view(syn[r], ch), _view(real[r], ch)
        for ax, img, title, cmap, vmax in ((axes[r, 0], a, f"synthetic {i}", "gray", 1),
                                           (axes[r, 1], b, f"train {int(result.indices[i])}", "gray", 1),
                                           (axes[r, 2], np.abs(a - b), f"|diff|, r={result.values[i]:.3f}", "magma", 1)):
            ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, origin="lower")  # anterior up, as synthmed inspect
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path

