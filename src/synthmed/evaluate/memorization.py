"""The memorization audit of a synthetic store against its training store: the search over both stores, recorded.

Each synthetic sample's maximum Pearson correlation with any training sample, joint and per
channel (:mod:`synthmed.metrics.memorization`), optionally shift- and flip-tolerant
(:mod:`synthmed.metrics.shift_flip`) and in a feature space, recorded with both stores' paths
and content hashes as a :class:`~synthmed.evaluate.audit_record.MemorizationAudit`, saved
beside the synthetic store (:func:`audit_path`) where the export gate reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.evaluate.audit_record import MemorizationAudit
from synthmed.features import extract_features
from synthmed.metrics.memorization import nearest_correlation, nearest_embedding
from synthmed.metrics.shift_flip import DEFAULT_MAX_SHIFT, nearest_correlation_tolerant

#: Default near-copy threshold on the maximum Pearson correlation (the export gate's).
DEFAULT_THRESHOLD = 0.95
#: Name of the audit file written next to a synthetic store (``<store>-memorization.json``).
AUDIT_SUFFIX = "-memorization.json"
#: What the gate compares: ``pixel`` (the plain maximum Pearson correlation) or ``shift-flip``
#: (the maximum over small shifts and the left-right mirror, :func:`nearest_correlation_tolerant`).
SIMILARITIES: tuple[str, ...] = ("pixel", "shift-flip")


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
