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
from synthmed.features import DomainEncoderConfig, FeatureExtractor, extract_features, iter_features, make_extractor
from synthmed.metrics.diversity import ms_ssim_diversity
from synthmed.metrics.fidelity import FeatureBank, fidelity_metrics

#: Synthetic samples (at most) whose MS-SSIM diversity is measured.
DIVERSITY_SAMPLES = 256


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


def diversity(store: Store, *, pairs: int = 100, seed: int = 0) -> dict[str, Any]:
    """MS-SSIM diversity (:func:`~synthmed.metrics.diversity.ms_ssim_diversity`) of up to
    :data:`DIVERSITY_SAMPLES` seeded random samples of ``store`` (3D: their central axial slices)."""
    pick = np.sort(np.random.default_rng(seed).permutation(len(store))[:DIVERSITY_SAMPLES])
    images, _ = store.read(pick)
    if store.dims == 3:
        images = images[:, :, images.shape[2] // 2]
    return ms_ssim_diversity(images, pairs=pairs, seed=seed)


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
    batch by batch (:func:`bank_features`). Adds MS-SSIM diversity of the synthetic samples
    (:func:`diversity`).

    Returns:
        :func:`~synthmed.metrics.fidelity_metrics`'s dict plus ``"features"``, ``"real"``,
        ``"synthetic"``, ``"real_split"``, ``"train_split"`` and ``"ms_ssim"`` (with
        ``"ms_ssim_pairs"``, ``"ms_ssim_scales"``).

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
    div = diversity(synthetic, pairs=diversity_pairs, seed=seed)
    out.update(ms_ssim=div["ms_ssim"], ms_ssim_pairs=div["pairs"], ms_ssim_scales=div["scales"])
    return {"features": features, "real": str(real.path), "real_split": real_split, "train_split": train_split,
            "synthetic": str(synthetic.path), **out}
