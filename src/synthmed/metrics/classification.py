"""Classification metrics of multi-label probabilities, with percentile bootstrap intervals over subjects.

Conventions:

* Inputs are numpy-convertible; scores / probabilities are finite floats, targets are in
  {0, 1} (bool or numeric). A label is *predicted positive* when its probability is
  **> 0.5** (0.5 itself is negative).
* **AUROC** (:func:`auroc`) is the Mann–Whitney statistic with midranks (:func:`midranks`):
  tied scores count one half, as ``sklearn.metrics.roc_auc_score``. With only one class present (or no
  samples) it is undefined: ``nan`` (sklearn raises).
* **Accuracy** (:func:`accuracy`): share of samples predicted right; ``nan`` without samples.
* **Balanced accuracy** (:func:`balanced_accuracy`): (sensitivity + specificity) / 2. With
  only one class present it is ``nan``, like AUROC; ``sklearn``'s
  ``balanced_accuracy_score`` returns that class's rate instead (on a test split without a
  tumour it would call specificity "balanced accuracy").
* :func:`classification_metrics` gives each label's numbers and their macro ``mean`` over
  labels, skipping ``nan`` (``nan`` if every label's is).
* **Bootstrap** (:func:`bootstrap_ci`): samples of one subject (a patient's slices, and a
  longitudinal patient's visits) are not independent, so a resample draws *subjects* with
  replacement (as many as there are) and takes all samples of each draw
  (:func:`subject_resamples`). Callers pass a store's patients,
  :meth:`~synthmed.data.store.Store.subject_ids` (its ``subject_id``; a cross-sectional store's
  case ids). Resamples on which the statistic
  is undefined (``nan``: one class only) are skipped; with fewer valid resamples than
  ``min_valid`` × ``n_boot`` the interval is ``(nan, nan)``. The interval is the percentile one
  (``numpy.quantile``, linear interpolation) at ``(1 − level) / 2`` and ``(1 + level) / 2``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CLASSIFICATION_METRICS",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "bootstrap_ci",
    "classification_metrics",
    "midranks",
    "subject_resamples",
]

#: The keys of each label's entry in :func:`classification_metrics`.
CLASSIFICATION_METRICS: tuple[str, ...] = ("auroc", "accuracy", "balanced_accuracy", "positives", "n")

#: Probabilities above this are predicted positive.
THRESHOLD = 0.5


def _pair(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 ``[N]`` and ``targets`` as bool ``[N]``, checked."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(targets)
    if t.size != s.size:
        raise ValueError(f"scores ({s.size}) and targets ({t.size}) differ in length")
    t = t.reshape(-1)
    if not ((t == 0) | (t == 1)).all():
        raise ValueError("targets must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s, t.astype(bool)


def midranks(values: np.ndarray) -> np.ndarray:
    """float64 ranks 1..N of ``values`` ``[N]``, ties sharing their mean rank (``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    counts = np.diff(np.append(first, values.size))
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def auroc(scores: Any, targets: Any) -> float:
    """Area under the ROC curve of ``scores`` ``[N]`` for binary ``targets`` ``[N]``.

    Midranks for ties (a tied positive–negative pair counts 1/2); ``nan`` when only one class
    is present or there are no samples.
    """
    s, t = _pair(scores, targets)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = midranks(s)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(probs: Any, targets: Any) -> float:
    """Share of the ``N`` samples whose prediction (probability > 0.5) equals the target; ``nan`` if ``N = 0``."""
    p, t = _pair(probs, targets)
    if t.size == 0:
        return float("nan")
    return float(np.mean((p > THRESHOLD) == t))


def balanced_accuracy(probs: Any, targets: Any) -> float:
    """Mean of sensitivity and specificity at probability > 0.5; ``nan`` with only one class present."""
    p, t = _pair(probs, targets)
    n_pos = int(t.sum())
    if n_pos == 0 or n_pos == t.size:
        return float("nan")
    predicted = p > THRESHOLD
    sensitivity = predicted[t].mean()
    specificity = (~predicted[~t]).mean()
    return float((sensitivity + specificity) / 2)


def _matrix(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N, K], got shape {a.shape}")
    return a


def classification_metrics(probs: Any, targets: Any, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each label's metrics and their macro mean.

    Args:
        probs: probabilities ``[N, K]`` (``[N]`` is one label).
        targets: ``[N, K]`` in {0, 1}.
        names: ``K`` label names (none of them ``"mean"``).

    Returns:
        ``{name: {"auroc", "accuracy", "balanced_accuracy", "positives", "n"}}`` in label
        order (``positives``: how many targets are 1; ``n`` = N), then ``"mean"``: each
        metric's mean over the labels, ``nan`` skipped.
    """
    p, t = _matrix(probs, "probs"), _matrix(targets, "targets")
    names = list(names)
    if p.shape != t.shape:
        raise ValueError(f"probs {p.shape} and targets {t.shape} differ in shape")
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} names for {p.shape[1]} labels")
    if "mean" in names or len(set(names)) != len(names):
        raise ValueError(f"label names must be distinct and not 'mean', got {names}")
    out: dict[str, dict[str, float]] = {}
    for k, name in enumerate(names):
        out[name] = {
            "auroc": auroc(p[:, k], t[:, k]),
            "accuracy": accuracy(p[:, k], t[:, k]),
            "balanced_accuracy": balanced_accuracy(p[:, k], t[:, k]),
            "positives": float(np.asarray(t[:, k], dtype=np.float64).sum()),
            "n": float(p.shape[0]),
        }
    out["mean"] = {key: _nanmean([out[name][key] for name in names]) for key in CLASSIFICATION_METRICS}
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def subject_resamples(subjects: Any, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """The ``n_boot`` bootstrap resamples of :func:`bootstrap_ci`, as int64 sample indices.

    With ``S`` distinct subjects, resample ``b`` draws ``S`` subject codes (codes: the sorted
    distinct ids) with replacement from ``numpy.random.default_rng(seed)`` (all ``n_boot × S``
    draws at once) and lists, subject draw by subject draw, every sample of that subject in
    the input order.
    """
    codes = np.unique(np.asarray(subjects).reshape(-1), return_inverse=True)[1].reshape(-1)
    n_subjects = int(codes.max()) + 1 if codes.size else 0
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_subjects)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    draws = np.random.default_rng(seed).integers(0, max(n_subjects, 1), size=(n_boot, n_subjects))
    for drawn in draws:
        lengths = counts[drawn]
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[drawn], lengths) + offsets]


def bootstrap_ci(
    probs: Any,
    targets: Any,
    subjects: Any,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    min_valid: float = 0.5,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(probs, targets)``, resampling subjects.

    Args:
        probs: ``[N]`` or ``[N, K]``; rows are samples.
        targets: the same rows as ``probs``.
        subjects: ``[N]`` subject (patient) ids (str or int), e.g. a store's ``subject_id``; a
            subject's samples — all its slices and visits — are drawn together.
        statistic: called on the rows of one resample (numpy arrays); ``nan`` when undefined.
        n_boot: number of resamples.
        level: coverage of the interval, in (0, 1).
        seed: seed of the draws (same seed and inputs, same interval).
        min_valid: the share of resamples that must give a finite statistic, else ``(nan, nan)``.

    Returns:
        ``(low, high)``; ``(nan, nan)`` without samples or with too few valid resamples.
    """
    p, t = np.asarray(probs), np.asarray(targets)
    ids = np.asarray(subjects).reshape(-1)
    if not (len(p) == len(t) == ids.size):
        raise ValueError(f"probs ({len(p)}), targets ({len(t)}) and subjects ({ids.size}) differ in length")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if ids.size == 0:
        return float("nan"), float("nan")
    resamples = subject_resamples(ids, n_boot, seed)
    values = np.array([statistic(p[index], t[index]) for index in resamples], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.size < min_valid * n_boot:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
