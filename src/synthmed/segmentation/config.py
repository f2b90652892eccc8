"""Segmentation configuration (pydantic) and the ``tiny`` / ``laptop`` / ``small`` / ``paper`` presets.

A run's config has two parts: :class:`SegmentModelConfig` (what the weights depend on; fixed
for the life of a run: ``--resume`` refuses a change) and :class:`SegmentTrainConfig` (how
long and how fast to train, the augmentation and the training-set options).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthmed.config import Config, LoopConfig

NetworkName = Literal["unet", "swin"]


class SegmentModelConfig(Config):
    """The network: MONAI ``DynUNet`` (``unet``) or ``SwinUNETR`` (``swin``).

    ``spatial_dims``, ``in_channels`` and ``image_shape`` come from the training stores. The
    output has :data:`~synthmed.segmentation.regions.N_REGIONS` sigmoid channels, the BraTS
    regions WT, TC, ET (see :mod:`synthmed.segmentation.regions`).
    """

    network: NetworkName = Field("unet", description="unet (DynUNet, nnU-Net style) or swin (SwinUNETR)")
    filters: tuple[int, ...] = Field((8, 16, 32), description="unet: channels per level (levels = len)")
    deep_supervision: bool = Field(False, description="unet: loss on deep-supervision heads too")
    deep_supr_num: int = Field(1, ge=1, description="unet: deep-supervision heads (< levels - 1)")
    feature_size: int = Field(12, ge=12, description="swin: embedding size (a multiple of 12)")
    depths: tuple[int, int, int, int] = Field((1, 1, 1, 1), description="swin: transformer blocks per stage")
    num_heads: tuple[int, int, int, int] = Field((3, 6, 12, 24), description="swin: attention heads per stage")
    window_size: int = Field(7, ge=2, description="swin: attention window")
    spatial_dims: int = Field(2, ge=2, le=3, description="2 or 3 (from the store)")
    in_channels: int = Field(4, ge=1, description="image channels (from the store)")
    image_shape: tuple[int, ...] = Field((64, 64), description="spatial shape (from the store)")

    @model_validator(mode="after")
    def _consistent(self) -> SegmentModelConfig:
        if len(self.image_shape) != self.spatial_dims:
            raise ValueError(f"image_shape {self.image_shape} is not {self.spatial_dims}D")
        if self.network == "unet":
            if len(self.filters) < 3:
                raise ValueError("unet needs at least 3 levels (filters)")
            factor = 2 ** (len(self.filters) - 1)
            if self.deep_supervision and self.deep_supr_num >= len(self.filters) - 1:
                raise ValueError(f"deep_supr_num must be < {len(self.filters) - 1} (levels - 1)")
        else:
            if self.feature_size % 12:
                raise ValueError(f"swin feature_size must be a multiple of 12, got {self.feature_size}")
            factor = 32
        if self.network == "swin" and min(self.image_shape) < 64:
            raise ValueError(f"swin needs image sides of at least 64 (its bottleneck is 1/32 of the size), got {self.image_shape}")
        if any(s % factor for s in self.image_shape):
            raise ValueError(f"image sides {self.image_shape} must be divisible by {factor} for {self.network} "
                             f"({'its levels halve the size' if self.network == 'unet' else 'patch 2 and 4 merges'})")
        return self


class SegmentTrainConfig(LoopConfig):
    """How to train (may change on ``--resume``)."""

    steps: int = Field(20, ge=1, description="total optimiser steps (equal whatever the training set, so runs compare)")
    batch: int = Field(4, ge=1, description="batch per process")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay")
    aug: bool = Field(True, description="rotation ±30°, scaling 0.9-1.1, noise, blur, gamma")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="share of training subjects held out for validation")
    validate_every: int = Field(10, ge=0, description="validate (and keep the best checkpoint) every N steps (0: at the end only)")
    val_batch: int = Field(16, ge=1, description="validation batch")
    grad_clip: float = Field(12.0, ge=0, description="gradient norm clip (0: none)")


class SegmentPreset(Config):
    """Named model and training settings per network."""

    unet: SegmentModelConfig
    swin: SegmentModelConfig
    train: SegmentTrainConfig
    description: str


#: ``tiny``: CPU seconds at 16-32 px (tests); ``laptop``: real results on a 2-core CPU in about
#: 30 s per run at 32 px (the demo); ``small``: one GPU at 64-128 px;
#: ``paper``: the reference study's 256² slices (nnU-Net-like 2D U-Net, SwinUNETR at feature size 48).
PRESETS: dict[str, SegmentPreset] = {
    "tiny": SegmentPreset(
        description="CPU seconds: unet filters (8, 16, 32), swin feature size 12 with 1 block per stage",
        unet=SegmentModelConfig(network="unet", filters=(8, 16, 32)),
        swin=SegmentModelConfig(network="swin", feature_size=12, depths=(1, 1, 1, 1)),
        train=SegmentTrainConfig(steps=20, batch=4, lr=1e-3, validate_every=10, checkpoint_every=10, log_every=5),
    ),
    "laptop": SegmentPreset(
        description="a 2-core CPU in minutes at 32 px: unet filters (16, 32, 64), 400 steps at batch 16",
        unet=SegmentModelConfig(network="unet", filters=(16, 32, 64)),
        swin=SegmentModelConfig(network="swin", feature_size=12, depths=(1, 1, 1, 1)),
        train=SegmentTrainConfig(steps=400, batch=16, lr=2e-3, validate_every=100, checkpoint_every=100,
                                 log_every=20),
    ),
    "small": SegmentPreset(
        description="one GPU, 64-128 px: unet filters (32, 64, 128, 256) with deep supervision, swin feature size 24",
        unet=SegmentModelConfig(network="unet", filters=(32, 64, 128, 256), deep_supervision=True, deep_supr_num=1),
        swin=SegmentModelConfig(network="swin", feature_size=24, depths=(2, 2, 2, 2)),
        train=SegmentTrainConfig(steps=20_000, batch=16, lr=3e-4, validate_every=1000, checkpoint_every=1000,
                                 log_every=50),
    ),
    "paper": SegmentPreset(
        description="reference study, 256²: nnU-Net 2D U-Net (32 … 512, deep supervision), SwinUNETR feature size 48",
        unet=SegmentModelConfig(network="unet", filters=(32, 64, 128, 256, 512, 512), deep_supervision=True,
                                deep_supr_num=2),
        swin=SegmentModelConfig(network="swin", feature_size=48, depths=(2, 2, 2, 2)),
        train=SegmentTrainConfig(steps=100_000, batch=32, lr=1e-4, validate_every=2500, checkpoint_every=2500,
                                 log_every=100),
    ),
}
