"""Evaluations of stores: fidelity and memorization measured on whole stores, recorded as JSON and figures.

This layer opens stores, streams them through feature extractors (:mod:`synthmed.features`)
and the pure metrics (:mod:`synthmed.metrics`), and writes what it finds: the fidelity of a
synthetic store (:mod:`~synthmed.evaluate.fidelity`), its memorization audit
(:mod:`~synthmed.evaluate.memorization`, recorded by :mod:`~synthmed.evaluate.audit_record`)
and the audit's figures (:mod:`~synthmed.evaluate.plots`).
"""

from synthmed.evaluate.audit_record import AUDIT_RECORD_KEYS, MemorizationAudit
from synthmed.evaluate.fidelity import (bank_features, check_comparable, diversity, evaluate_fidelity,
                                        store_slice_consistency)
from synthmed.evaluate.memorization import (AUDIT_SUFFIX, DEFAULT_THRESHOLD, SIMILARITIES, add_embedding_distance, audit,
                                            audit_path)
from synthmed.evaluate.plots import plot_gallery, plot_histogram

__all__ = [
    "AUDIT_RECORD_KEYS",
    "AUDIT_SUFFIX",
    "DEFAULT_THRESHOLD",
    "MemorizationAudit",
    "SIMILARITIES",
    "add_embedding_distance",
    "audit",
    "audit_path",
    "bank_features",
    "check_comparable",
    "diversity",
    "evaluate_fidelity",
    "plot_gallery",
    "plot_histogram",
    "store_slice_consistency",
]
