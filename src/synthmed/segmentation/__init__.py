"""Utility of synthetic data: segmentation networks (MONAI U-Net / Swin) trained on real,
synthetic or mixed stores and evaluated on real test patients (Dice, HD95 per BraTS region).

See :mod:`synthmed.segmentation.regions` for the output convention, :mod:`.data` for how
training sets are built, :mod:`.task` for the loss and validation, :mod:`.api` for training,
evaluation and relative Dice.
"""

from synthmed.segmentation.api import (
    case_volumes,
    evaluate_run,
    load_segmenter,
    predict_labels,
    relative_dice,
    resolve_configs,
    train_segmenter,
)
from synthmed.segmentation.augment import AugmentOptions, augment
from synthmed.segmentation.config import PRESETS, SegmentModelConfig, SegmentTrainConfig
from synthmed.segmentation.data import MixedDataset, TrainingSet, build_training_set
from synthmed.segmentation.networks import build_network
from synthmed.segmentation.regions import REGION_NAMES, labels_to_regions, logits_to_labels, regions_to_labels
from synthmed.segmentation.task import SegmentationTask

__all__ = [
    "PRESETS",
    "REGION_NAMES",
    "AugmentOptions",
    "MixedDataset",
    "SegmentModelConfig",
    "SegmentTrainConfig",
    "SegmentationTask",
    "TrainingSet",
    "augment",
    "build_network",
    "build_training_set",
    "case_volumes",
    "evaluate_run",
    "labels_to_regions",
    "load_segmenter",
    "logits_to_labels",
    "predict_labels",
    "regions_to_labels",
    "relative_dice",
    "resolve_configs",
    "train_segmenter",
]
