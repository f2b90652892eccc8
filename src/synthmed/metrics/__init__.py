"""Metrics: pure functions on arrays plus update/compute accumulators; conventions in each docstring.

One module per family: overlap (Dice, HD95), Fréchet distance, KID, Inception Score,
precision/recall and density/coverage, all of them at once (:mod:`~synthmed.metrics.fidelity`),
MS-SSIM (per pair, differentiable) and MS-SSIM diversity, slice consistency of volumes, the memorization search
(pixel and shift-flip), sample statistics, scores of saliency maps against tumour masks and the linear CKA of two
representations.
Nothing here opens a store, trains a network or draws a figure: that is
:mod:`synthmed.evaluate`; feature extractors are :mod:`synthmed.features`.
"""

from synthmed.metrics.cka import UndefinedCKAError, centred_gram, gram_cka, linear_cka
from synthmed.metrics.diversity import diversity_pairs, ms_ssim_diversity
from synthmed.metrics.fidelity import FeatureBank, fidelity_metrics
from synthmed.metrics.frechet import FrechetDistance, frechet_distance, relative_frechet_distance, train_frechet_distance
from synthmed.metrics.inception_score import inception_score
from synthmed.metrics.kid import kernel_inception_distance, mmd2_unbiased
from synthmed.metrics.memorization import nearest_correlation, nearest_embedding
from synthmed.metrics.ms_ssim import ms_ssim, ms_ssim_scales, ms_ssim_weights
from synthmed.metrics.overlap import (
    OVERLAP_METRICS,
    OverlapAccumulator,
    dice,
    hausdorff95,
    hd95,
    hd95_max,
    image_diagonal,
    overlap_by_region,
    region_masks,
    surface_distances,
)
from synthmed.metrics.prdc import density_coverage, precision_recall
from synthmed.metrics.saliency import (
    SALIENCY_SCORES,
    dilate,
    mass_in_mask,
    pointing_game,
    saliency_auroc,
    saliency_scores,
    summarise_saliency,
)
from synthmed.metrics.samples import case_groups, case_halves
from synthmed.metrics.shift_flip import nearest_correlation_tolerant
from synthmed.metrics.slice_consistency import (
    SliceConsistency,
    compare_slice_consistency,
    headline_gap,
    slice_consistency,
)

__all__ = [
    "UndefinedCKAError",
    "centred_gram",
    "gram_cka",
    "linear_cka",
    "FeatureBank",
    "FrechetDistance",
    "case_groups",
    "case_halves",
    "density_coverage",
    "diversity_pairs",
    "fidelity_metrics",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "mmd2_unbiased",
    "ms_ssim",
    "ms_ssim_diversity",
    "ms_ssim_scales",
    "ms_ssim_weights",
    "nearest_correlation",
    "nearest_correlation_tolerant",
    "nearest_embedding",
    "precision_recall",
    "SliceConsistency",
    "compare_slice_consistency",
    "headline_gap",
    "slice_consistency",
    "relative_frechet_distance",
    "train_frechet_distance",
    "OverlapAccumulator",
    "dice",
    "OVERLAP_METRICS",
    "hausdorff95",
    "hd95",
    "hd95_max",
    "image_diagonal",
    "overlap_by_region",
    "region_masks",
    "surface_distances",
    "SALIENCY_SCORES",
    "dilate",
    "mass_in_mask",
    "pointing_game",
    "saliency_auroc",
    "saliency_scores",
    "summarise_saliency",
]
