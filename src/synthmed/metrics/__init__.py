"""Metrics: pure functions on arrays plus update/compute accumulators; conventions in each docstring."""

from synthmed.metrics.overlap import (
    OverlapAccumulator,
    dice,
    hausdorff95,
    image_diagonal,
    overlap_by_region,
    region_masks,
    surface_distances,
)
from synthmed.metrics.fidelity import (
    FeatureBank,
    FrechetDistance,
    case_groups,
    case_halves,
    density_coverage,
    fidelity_metrics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    ms_ssim_diversity,
    precision_recall,
    relative_frechet_distance,
    train_frechet_distance,
)
from synthmed.metrics.memorization import MemorizationAudit, audit, nearest_correlation, nearest_embedding

__all__ = [
    "FeatureBank",
    "FrechetDistance",
    "MemorizationAudit",
    "audit",
    "case_groups",
    "case_halves",
    "density_coverage",
    "fidelity_metrics",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "ms_ssim_diversity",
    "nearest_correlation",
    "nearest_embedding",
    "precision_recall",
    "relative_frechet_distance",
    "train_frechet_distance",
    "OverlapAccumulator",
    "dice",
    "hausdorff95",
    "image_diagonal",
    "overlap_by_region",
    "region_masks",
    "surface_distances",
]
