"""Classifier configuration (pydantic) and the ``tiny`` / ``laptop`` / ``small`` / ``paper`` presets.

A run's config has two parts, as for segmenters: :class:`ClassifierModelConfig` (what the
weights depend on: task, network, training mode — ``dual-bn`` has two sets of batch norms;
fixed for the life of a run) and :class:`ClassifierTrainConfig` (steps, optimiser, the attack
used in training, validation; may change on ``--resume``).

The learning rate is a pure function of the step (:meth:`ClassifierTrainConfig.lr_at`: ``lr``
times ``lr_gamma`` for each milestone passed, the paper's MultiStepLR with milestones given as
shares of ``steps``), so a resumed run needs no scheduler state.

The best checkpoint (``checkpoints/best``) is chosen by :attr:`ClassifierTrainConfig.select`:
``clean`` keeps the lowest validation clean BCE (Han et al.'s rule); ``robust`` keeps the lowest
validation *robust* BCE, the loss adversarial training minimises, as in Rice et al. 2020's early
stopping against robust overfitting. On the phantom the clean rule keeps an early checkpoint,
before the adversarial runs have become robust; the robust rule matches the last checkpoint for
``adversarial`` and keeps an earlier, less robust one for ``dual-bn``, whose robust BCE rises with
over-confidence while its robust AUROC still rises (the README's benchmark).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from synthmed.classify.attacks import AttackSpec
from synthmed.classify.names import MODES, ModeName, NetworkName, NormName, Selection, Stem, TaskName
from synthmed.config import Config, LoopConfig

__all__ = ["MODES", "PRESETS", "ClassifierModelConfig", "ClassifierPreset", "ClassifierTrainConfig", "ModeName",
           "NetworkName", "NormName", "Stem", "TaskName"]


class ClassifierModelConfig(Config):
    """The network and what it is trained for.

    ``spatial_dims``, ``in_channels`` and ``image_shape`` come from the training store;
    ``num_outputs`` from the task (:func:`synthmed.classify.targets.label_names`).
    """

    task: TaskName = Field("presence", description="presence, regions (NCR/ED/ET) or grade (ordinal WT burden)")
    network: NetworkName = Field("resnet18", description="MONAI resnet18, resnet50 or densenet121")
    mode: ModeName = Field("standard", description="standard, adversarial (adversarial examples only) or dual-bn")
    stem: Stem = Field(
        "compact", description="standard: 7x7 stride-2 conv + max-pool (ImageNet); compact: 3x3 stride 1 (16-64 px)")
    width: float = Field(1.0, gt=0, le=4, description="channel multiplier of the network")
    spatial_dims: int = Field(2, ge=2, le=3, description="2 or 3 (from the store)")
    in_channels: int = Field(4, ge=1, description="image channels (from the store)")
    image_shape: tuple[int, ...] = Field((32, 32), description="spatial shape (from the store)")
    num_outputs: int = Field(1, ge=1, description="logits (from the task)")

    @property
    def dual_bn(self) -> bool:
        """Whether the network has a clean and an adversarial batch norm (mode ``dual-bn``)."""
        return self.mode == "dual-bn"

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierModelConfig:
        if len(self.image_shape) != self.spatial_dims:
            raise ValueError(f"image_shape {self.image_shape} is not {self.spatial_dims}D")
        return self


class ClassifierTrainConfig(LoopConfig):
    """How to train (may change on ``--resume``)."""

    steps: int = Field(20, ge=1, description="total optimiser steps")
    batch: int = Field(8, ge=1, description="batch per process")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")
    lr_milestones: tuple[float, ...] = Field((0.5, 0.75), description="shares of steps where lr is multiplied by lr_gamma")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="lr factor at each milestone")
    eps: float = Field(0.005, ge=0, description="attack radius in [0, 1] image units (training)")
    alpha: float = Field(0.0025, gt=0, description="attack step size (training)")
    attack_steps: int = Field(10, ge=1, description="PGD steps (training)")
    norm: NormName = Field("linf", description="attack norm: linf or l2")
    random_start: bool = Field(True, description="PGD starts from a uniform point of the eps-ball")
    clean_weight: float = Field(
        1.0, ge=0, description="dual-bn: weight of the clean term, loss = w·clean + adversarial (the paper: 1)")
    select: Selection = Field(
        "clean", description="best checkpoint by validation clean BCE (the paper's) or robust BCE (on the "
                             "training attack's PGD examples of the validation images, through the clean BN)")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of training subjects held out for validation")
    validate_every: int = Field(10, ge=0, description="validate (and keep the best checkpoint) every N steps (0: at the end)")
    val_batch: int = Field(32, ge=1, description="validation batch")

    @model_validator(mode="after")
    def _milestones(self) -> ClassifierTrainConfig:
        if any(not 0 < m < 1 for m in self.lr_milestones) or list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing shares in (0, 1), got {self.lr_milestones}")
        return self

    @property
    def attack(self) -> AttackSpec:
        """The training attack."""
        return AttackSpec(eps=self.eps, alpha=self.alpha, steps=self.attack_steps, norm=self.norm,
                          random_start=self.random_start)

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based ``step``: ``lr · lr_gamma^k``, k = milestones with ``share · steps ≤ step``."""
        passed = sum(1 for m in self.lr_milestones if step >= round(m * self.steps))
        return self.lr * self.lr_gamma ** passed


class ClassifierPreset(Config):
    """Named network and training settings."""

    model: ClassifierModelConfig
    train: ClassifierTrainConfig
    description: str


#: ``tiny``: CPU seconds at 16-32 px (tests); ``laptop``: the phantom at 32 px on a 2-core CPU in
#: minutes (the benchmark); ``small``: one GPU at 64-128 px; ``paper``: Han et al.'s recipe
#: (ImageNet stem, Adam 1e-2 with steps down at 1/3 and 2/3, PGD L∞ ε 0.005, α 0.0025, 10 steps).
PRESETS: dict[str, ClassifierPreset] = {
    "tiny": ClassifierPreset(
        description="CPU seconds: width 0.125, compact stem, 20 steps at batch 8, PGD 2 steps",
        model=ClassifierModelConfig(width=0.125, stem="compact"),
        train=ClassifierTrainConfig(steps=20, batch=8, lr=1e-3, attack_steps=2, alpha=0.005, validate_every=10,
                                    checkpoint_every=10, log_every=5),
    ),
    "laptop": ClassifierPreset(
        description="a 2-core CPU in minutes at 32 px: width 0.25, compact stem, 600 steps at batch 32, PGD 5 steps",
        model=ClassifierModelConfig(width=0.25, stem="compact"),
        train=ClassifierTrainConfig(steps=600, batch=32, lr=1e-3, attack_steps=5, alpha=0.002, validate_every=100,
                                    checkpoint_every=100, log_every=20),
    ),
    "small": ClassifierPreset(
        description="one GPU, 64-128 px: full width, compact stem, 10,000 steps at batch 64, PGD 10 steps",
        model=ClassifierModelConfig(width=1.0, stem="compact"),
        train=ClassifierTrainConfig(steps=10_000, batch=64, lr=1e-3, validate_every=500, checkpoint_every=1000,
                                    log_every=50),
    ),
    "paper": ClassifierPreset(
        description="Han et al. 2020: full width, ImageNet stem, Adam 1e-2, 30,000 steps at batch 32, PGD 10 steps",
        model=ClassifierModelConfig(width=1.0, stem="standard"),
        train=ClassifierTrainConfig(steps=30_000, batch=32, lr=1e-2, lr_milestones=(1 / 3, 2 / 3), validate_every=1000,
                                    checkpoint_every=1000, log_every=100),
    ),
}
