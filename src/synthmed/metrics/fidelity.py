"""Every fidelity metric at once on two feature sets (:func:`fidelity_metrics`), and its batch-by-batch accumulator.

The metrics and their conventions are in their own modules: FD, relative FD and fd_train
(:mod:`~synthmed.metrics.frechet`), KID (:mod:`~synthmed.metrics.kid`), IS
(:mod:`~synthmed.metrics.inception_score`), precision/recall and density/coverage
(:mod:`~synthmed.metrics.prdc`); patients as in :mod:`~synthmed.metrics.samples`. Every
function takes features ``[N, F]`` (numpy or torch; any float dtype) and computes in float64.
:class:`FeatureBank` is a torchmetrics ``Metric`` (``update`` / ``compute`` / ``reset``,
DDP-synchronised) that collects the features of a stream of batches, so that no more than one
batch of images is ever held to compute them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torchmetrics import Metric

from synthmed.errors import SynthmedError
from synthmed.metrics.frechet import frechet_distance, relative_frechet_distance, train_frechet_distance
from synthmed.metrics.inception_score import inception_score
from synthmed.metrics.kid import kernel_inception_distance
from synthmed.metrics.prdc import density_coverage, precision_recall
from synthmed.metrics.samples import as_features


def fidelity_metrics(
    real: Any,
    synthetic: Any,
    *,
    real_cases: Any | None = None,
    synthetic_cases: Any | None = None,
    train: Any | None = None,
    train_cases: Any | None = None,
    real_logits: Any | None = None,
    synthetic_logits: Any | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Every metric that the sample counts allow; the rest are ``None`` with a warning naming
    how many samples they need (``skipped`` lists them).

    Args:
        real: the reference real features ``[N, F]`` (:func:`synthmed.evaluate.evaluate_fidelity`:
            the test patients); ``real_cases`` their patient ids (a store's ``subject_id``, as in
            :mod:`~synthmed.metrics.samples`; ``None``: one patient per sample).
        synthetic: ``[M, F]``; ``synthetic_cases`` likewise (a generator's samples are each
            their own).
        train: optionally the generator's training features, for ``fd_train``
            (:func:`train_frechet_distance` at the reference size ``N``); ``train_cases``
            their patient ids.
        real_logits, synthetic_logits: classifier logits for IS.

    Returns:
        ``{"n_real", "n_synthetic", "feature_dim", "fd", "fd_train", "fd_train_subsets",
        "fd_real_real", "relative_fd", "relative_fd_n", "kid_mean", "kid_std",
        "kid_subset_size", "precision", "recall", "density", "coverage", "is_mean",
        "is_std", "is_real_mean", "skipped": {metric: reason}}``.

    Raises:
        SynthmedError: nothing at all can be computed.
    """
    real, synthetic = as_features(real), as_features(synthetic)
    if real.shape[1] != synthetic.shape[1]:
        raise SynthmedError(f"feature dimensions differ: real {real.shape[1]}, synthetic {synthetic.shape[1]}")
    n, m = len(real), len(synthetic)
    out: dict[str, Any] = {"n_real": n, "n_synthetic": m, "feature_dim": int(real.shape[1])}
    skipped: dict[str, str] = {}

    def need(name: str, ok: bool, reason: str) -> bool:
        if not ok:
            skipped[name] = reason
            warnings.warn(f"{name} not computed: {reason}", stacklevel=3)
        return ok

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ValueError as exc:
            need(name, False, str(exc))
            return None

    out.update(fd=None, fd_train=None, fd_train_subsets=None, fd_real_real=None, relative_fd=None, relative_fd_n=None)
    if need("fd", min(n, m) >= 2, f"needs at least 2 samples per set (has {n} real, {m} synthetic)"):
        out["fd"] = frechet_distance(real, synthetic)
        rel = attempt("relative_fd", lambda: relative_frechet_distance(real, synthetic, cases=real_cases, seed=seed))
        if rel is not None:
            out.update(fd_real_real=rel["fd_real_real"], relative_fd=rel["relative_fd"],
                       relative_fd_n=rel["relative_fd_n"])
        if train is not None and need("fd_train", len(train) >= 2, f"needs at least 2 training samples (has {len(train)})"):
            out["fd_train"], out["fd_train_subsets"] = train_frechet_distance(train, synthetic, n, cases=train_cases,
                                                                              seed=seed)
    out.update(kid_mean=None, kid_std=None, kid_subset_size=None)
    if need("kid", min(n, m) >= 2, f"needs at least 2 samples per set (has {n} real, {m} synthetic)"):
        mean, std, size = kernel_inception_distance(real, synthetic, subsets=kid_subsets, subset_size=kid_subset_size,
                                                    seed=seed)
        out.update(kid_mean=mean, kid_std=std, kid_subset_size=size)
    out.update(precision=None, recall=None)
    if need("precision_recall", min(n, m) > 3, f"needs at least 4 samples per set (k=3; has {n} real, {m} synthetic)"):
        pr = attempt("precision_recall", lambda: precision_recall(real, synthetic, k=3, real_cases=real_cases,
                                                                   synthetic_cases=synthetic_cases))
        if pr is not None:
            out["precision"], out["recall"] = pr
    out.update(density=None, coverage=None)
    if need("density_coverage", n > 5 and m >= 1, f"needs at least 6 real samples (k=5; has {n})"):
        dc = attempt("density_coverage", lambda: density_coverage(real, synthetic, k=5, real_cases=real_cases))
        if dc is not None:
            out["density"], out["coverage"] = dc
    out.update(is_mean=None, is_std=None, is_real_mean=None)
    if synthetic_logits is not None:
        sl = as_features(synthetic_logits)
        splits = min(10, len(sl))
        if need("is", len(sl) >= 2, f"needs at least 2 synthetic samples (has {len(sl)})"):
            if splits < 10:
                warnings.warn(f"IS: {len(sl)} samples, {splits} splits instead of 10 (10 need 10 samples)", stacklevel=2)
            out["is_mean"], out["is_std"] = inception_score(sl, splits=splits, seed=seed)
            if real_logits is not None and len(as_features(real_logits)) >= splits:
                out["is_real_mean"] = inception_score(real_logits, splits=splits, seed=seed)[0]
    if all(out[key] is None for key in ("fd", "kid_mean", "precision", "density", "is_mean")):
        raise SynthmedError(f"no fidelity metric can be computed from {n} real and {m} synthetic samples: "
                            "FD and KID need at least 2 of each")
    out["skipped"] = skipped
    return out


class FeatureBank(Metric):
    """Collects real and synthetic features (and classifier logits) batch by batch for :func:`fidelity_metrics`.

    ``update(features [B, F], real: bool, logits [B, K] or None)`` keeps a float64 copy of
    each batch; :meth:`banked` gives one side's ``[N, F]`` rows in the order they came;
    ``compute()`` is :func:`fidelity_metrics` of the two sides (with IS when both banked
    logits). Memory is the features, ``O(N F)``, never the images they came from.
    """

    full_state_update = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        for state in ("real", "fake", "real_logits", "fake_logits"):
            self.add_state(state, [], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor, real: bool, logits: torch.Tensor | None = None) -> None:  # type: ignore[override]
        side = "real" if real else "fake"
        getattr(self, side).append(torch.as_tensor(features).to(torch.float64).reshape(len(features), -1))
        if logits is not None:
            getattr(self, f"{side}_logits").append(torch.as_tensor(logits).to(torch.float64).reshape(len(logits), -1))

    def banked(self, real: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features float64 [N, F], logits float64 [N, K] or None)`` of one side (``[0, 0]``
        features when nothing was banked; ``None`` logits when no batch came with logits)."""
        side = "real" if real else "fake"
        parts = [getattr(self, side), getattr(self, f"{side}_logits")]
        feats, logits = (torch.cat(p) if isinstance(p, list) and p else p for p in parts)
        if isinstance(feats, list):
            feats = torch.zeros((0, 0), dtype=torch.float64)
        return feats, (None if isinstance(logits, list) else logits)

    def compute(self) -> dict[str, Any]:
        (real, real_logits), (fake, fake_logits) = self.banked(True), self.banked(False)
        return fidelity_metrics(real, fake, real_logits=real_logits, synthetic_logits=fake_logits)
