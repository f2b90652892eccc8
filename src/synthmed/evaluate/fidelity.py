"""Fidelity of a synthetic store against a real one, streamed: batches of features into a bank, then every metric.

The reference is a split of the real store (default ``test``: the held-out patients);
``fd_train`` compares with the training patients at the reference's sample size
(:mod:`synthmed.metrics.frechet`). Images are read one batch at a time and only their
features are kept (:class:`~synthmed.metrics.FeatureBank`, ``O(N F)``): memory does not grow
with the images of either store. The metrics themselves are :func:`~synthmed.metrics.fidelity_metrics`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.features import (
    DomainEncoderConfig,
    FeatureExtractor,
    describe_embedding,
    extract_features,
    iter_features,
    make_extractor,
)
from synthmed.metrics.diversity import UNMEASURED, diversity_plan, pair_ms_ssim
from synthmed.metrics.fidelity import FeatureBank, fidelity_metrics
from synthmed.metrics.slice_consistency import SliceConsistency, compare_slice_consistency

#: Samples (at most) of each store whose MS-SSIM diversity is measured.
DIVERSITY_SAMPLES = 256
#: Images (bytes, at most) read at once for the MS-SSIM of their pairs (at least one pair).
DIVERSITY_BATCH_BYTES = 64 * 2**20


def check_comparable(a: Any, b: Any) -> None:
    """Raise a :class:`SynthmedError` naming both stores unless channels and sample shapes match."""
    if tuple(a.channels) != tuple(b.channels) or tuple(a.sample_shape) != tuple(b.sample_shape):
        raise SynthmedError(
            f"cannot compare {a.path} (channels {list(a.channels)}, sample shape {list(a.sample_shape)}) with "
            f"{b.path} (channels {list(b.channels)}, sample shape {list(b.sample_shape)}): channels and sizes must match")


def bank_features(bank: FeatureBank, store: Store, extractor: FeatureExtractor, *, real: bool,
                  indices: np.ndarray | None = None, batch_size: int = 32, device: str | torch.device = "cpu"
                  ) -> FeatureBank:
    """Stream ``store`` (or its ``indices``) through ``extractor`` into one side of ``bank``
    (``real``), one batch of images at a time; returns ``bank``."""
    for features, logits in iter_features(store, extractor, indices=indices, batch_size=batch_size, device=device):
        bank.update(features, real=real, logits=logits)
    return bank


def diversity(store: Store, *, indices: np.ndarray | None = None, pairs: int = 100, seed: int = 0,
              device: str | torch.device = "cpu") -> dict[str, Any]:
    """MS-SSIM diversity of up to :data:`DIVERSITY_SAMPLES` seeded random samples of ``store`` (or of
    its ``indices``): the mean MS-SSIM of ``pairs`` seeded pairs of samples of different patients
    (:mod:`synthmed.metrics.diversity`), in 2D for slices and in 3D for whole volumes.

    Only the samples of a few pairs are read at once (:data:`DIVERSITY_BATCH_BYTES`), so memory
    does not grow with the volumes' number; MS-SSIM runs on ``device`` (3D: about 0.3 s a pair
    of 4 × 64³ volumes on one CPU thread, 3.4 s at 128³).

    Returns:
        ``{"ms_ssim": mean or None, "pairs": used, "scales": s}``.
    """
    pool = store.indices() if indices is None else np.asarray(indices, np.int64)
    pick = np.sort(pool[np.random.default_rng(seed).permutation(len(pool))[:DIVERSITY_SAMPLES]])
    plan = diversity_plan(len(pick), tuple(store.sample_shape[1:]), pairs=pairs, seed=seed,
                          groups=store.subject_ids(pick))
    if plan is None:
        return dict(UNMEASURED)
    i, j, scales = plan
    per_batch = max(1, DIVERSITY_BATCH_BYTES // (2 * 4 * int(np.prod(store.sample_shape))))
    values = []
    for start in range(0, len(i), per_batch):
        a, b = pick[i[start:start + per_batch]], pick[j[start:start + per_batch]]
        images, _ = store.read(np.concatenate([a, b]))
        values.append(pair_ms_ssim(images[: len(a)], images[len(a):], spatial_dims=store.dims, device=device))
    return {"ms_ssim": float(torch.cat(values).mean()), "pairs": int(len(i)), "scales": scales}


def store_slice_consistency(synthetic: Store, real: Store, *, real_indices: np.ndarray | None = None,
                            batch_size: int = 8, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Slice consistency of every volume of ``synthetic`` against the volumes of ``real`` (or its
    ``real_indices``): :func:`~synthmed.metrics.slice_consistency.compare_slice_consistency`,
    streamed ``batch_size`` volumes at a time, computed on ``device`` (about 0.6 s a 4 × 128³
    volume on one CPU thread).

    Raises:
        SynthmedError: the stores do not hold volumes.
    """
    if synthetic.dims != 3 or real.dims != 3:
        raise SynthmedError(f"slice consistency needs 3D stores; {synthetic.path} has dims {synthetic.dims}, "
                            f"{real.path} has dims {real.dims}")
    accumulators = []
    for store, idx in ((synthetic, None), (real, real_indices)):
        acc = SliceConsistency(device=device)
        for images, _, _ in store.iter_batches(batch_size, idx):
            acc.update(images)
        accumulators.append(acc)
    return compare_slice_consistency(*accumulators)


def evaluate_fidelity(
    real: Any,
    synthetic: Any,
    *,
    features: str = "domain",
    weights: Any = None,
    real_split: str | None = "test",
    train_split: str | None = "train",
    encoder_config: Any = None,
    channel_reduce: str = "mean",
    batch_size: int = 32,
    device: str = "auto",
    diversity_pairs: int = 100,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """All fidelity metrics of the store ``synthetic`` against the store ``real``.

    The reference is the ``real_split`` of ``real`` (default ``test``: the held-out patients;
    ``None``: every sample); every metric is computed against it, except ``fd_train``: FD
    against the ``train_split`` (the generator's training patients) at the reference's sample
    size (see :mod:`synthmed.metrics.frechet`; left out when ``train_split`` is ``None`` or the
    reference itself). Patients are the stores' subjects
    (:meth:`~synthmed.data.store.Store.subject_ids`: a longitudinal store's ``subject_id``, so a
    patient's visits are one patient to the relative-FD halves, the ``fd_train`` subsets and
    the PRDC radii; a cross-sectional store's case ids; a generator's samples, one each).

    Features come from :func:`synthmed.features.make_extractor` (``domain``: the encoder of
    ``real`` is loaded from beside it or trained first, on its ``train`` split) and are banked
    batch by batch (:func:`bank_features`); a volume is embedded in 2.5D (its three central
    orthogonal planes, :func:`synthmed.features.embed`), which ``"feature_space"`` says. Adds
    MS-SSIM diversity (:func:`diversity`) of the synthetic samples and, beside it, of the
    reference's (pairs of different patients): 2D MS-SSIM of slices, 3D MS-SSIM of volumes. For
    volumes, adds their slice consistency against the reference's (:func:`store_slice_consistency`).

    Returns:
        :func:`~synthmed.metrics.fidelity_metrics`'s dict plus ``"features"``, ``"feature_space"``
        (how samples were embedded), ``"real"``, ``"synthetic"``, ``"real_split"``,
        ``"train_split"``, ``"ms_ssim"`` (with ``"ms_ssim_pairs"``, ``"ms_ssim_scales"``),
        ``"ms_ssim_real"`` (with ``"ms_ssim_real_pairs"``), ``"ms_ssim_of"`` (``"slices (2D
        MS-SSIM)"`` or ``"volumes (3D MS-SSIM)"``) and, for 3D stores, ``"slice_consistency"``
        (:func:`~synthmed.metrics.slice_consistency.compare_slice_consistency`'s flat dict).

    Raises:
        SynthmedError: mismatched channels or sizes, missing weights or splits, nothing computable.
    """
    from synthmed.training.fabric import resolve_device

    real = real if isinstance(real, Store) else Store.open(real)
    synthetic = synthetic if isinstance(synthetic, Store) else Store.open(synthetic)
    check_comparable(real, synthetic)
    if real_split is None or train_split == real_split:  # the reference already holds the training patients
        train_split = None
    idx = real.indices(real_split) if real_split else real.indices()
    train_idx = real.indices(train_split) if train_split else None
    dev = resolve_device(device)
    extractor = make_extractor(features, real=real, weights=weights, channel_reduce=channel_reduce, device=dev,
                               encoder_config=encoder_config or DomainEncoderConfig(), progress=progress)
    if isinstance(extractor, torch.nn.Module):
        extractor = extractor.to(dev)
    stream = dict(batch_size=batch_size, device=dev)
    bank = bank_features(FeatureBank(), real, extractor, real=True, indices=idx, **stream)
    train_f = None if train_idx is None else extract_features(real, extractor, indices=train_idx, **stream)[0]
    bank_features(bank, synthetic, extractor, real=False, **stream)
    (real_f, real_logits), (syn_f, syn_logits) = bank.banked(True), bank.banked(False)
    patients = real.subject_ids()
    out = fidelity_metrics(real_f, syn_f, real_cases=patients[idx], synthetic_cases=synthetic.subject_ids(),
                           train=train_f, train_cases=None if train_idx is None else patients[train_idx],
                           real_logits=real_logits, synthetic_logits=syn_logits,
                           kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, seed=seed)
    if syn_logits is None:
        out["skipped"]["is"] = f"the {features} features have no classifier head"
    div = diversity(synthetic, pairs=diversity_pairs, seed=seed, device=dev)
    real_div = diversity(real, indices=idx, pairs=diversity_pairs, seed=seed, device=dev)
    out.update(ms_ssim=div["ms_ssim"], ms_ssim_pairs=div["pairs"], ms_ssim_scales=div["scales"],
               ms_ssim_real=real_div["ms_ssim"], ms_ssim_real_pairs=real_div["pairs"],
               ms_ssim_of="volumes (3D MS-SSIM)" if synthetic.dims == 3 else "slices (2D MS-SSIM)")
    if synthetic.dims == 3:
        out["slice_consistency"] = store_slice_consistency(synthetic, real, real_indices=idx, device=dev)
    return {"features": features, "feature_space": describe_embedding(features, synthetic.dims),
            "real": str(real.path), "real_split": real_split, "train_split": train_split,
            "synthetic": str(synthetic.path), **out}
