"""The domain encoder: a small convolutional network with projection and label-presence heads, as an extractor.

:class:`DomainEncoder` sees all image channels at once and gives ``F = 256`` features (by
default); its projection head serves the contrastive training
(:mod:`synthmed.features.domain_training`) and its classifier head predicts which tumour
labels a sample contains (:data:`DOMAIN_CLASSES` classes: the presence pattern of NCR, ED, ET,
:func:`presence_class`), whose logits give the domain Inception Score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

#: Classes of the domain classifier head: presence pattern of labels (NCR, ED, ET) as a 3-bit number.
DOMAIN_CLASSES = 8


@dataclass(frozen=True)
class DomainEncoderConfig:
    """Architecture and training of the domain encoder.

    Attributes:
        width: channels of the first level (doubled per level, at most 8×).
        feature_dim: ``F`` of the features.
        projection_dim: contrastive projection size.
        temperature: NT-Xent temperature.
        steps, batch, lr: training steps, batch per step, AdamW learning rate.
        seed: initial weights (:func:`~synthmed.training.seeding.seeded_init`), data order
            (:func:`~synthmed.training.batch_stream`) and augmentations (the loop's
            :class:`~synthmed.training.StepRandom`): nothing else is random.
    """

    width: int = 32
    feature_dim: int = 256
    projection_dim: int = 128
    temperature: float = 0.2
    steps: int = 500
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0


class DomainEncoder(nn.Module):
    """Conv encoder ``[B, C, H, W] → features [B, F]`` with a projection and a classifier head.

    Levels of (3×3 stride-2 conv, GroupNorm, SiLU) halve the image down to about 4 pixels;
    global average pooling and a linear layer give ``F`` features.
    """

    def __init__(self, in_channels: int, image_size: int, config: DomainEncoderConfig = DomainEncoderConfig()):
        super().__init__()
        from monai.networks.blocks import Convolution

        levels = max(1, int(math.log2(max(image_size, 8) / 4)))
        layers, ch = [], in_channels
        for k in range(levels):
            out = config.width * 2 ** min(k, 3)
            layers.append(Convolution(2, ch, out, strides=2, kernel_size=3, act="SWISH",
                                      norm=("group", {"num_groups": min(8, out)})))
            ch = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch, config.feature_dim)
        self.projection = nn.Sequential(nn.Linear(config.feature_dim, config.feature_dim), nn.ReLU(),
                                        nn.Linear(config.feature_dim, config.projection_dim))
        self.classifier = nn.Linear(config.feature_dim, DOMAIN_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [B, F], class logits [B, 8])``."""
        f = self.features(x)
        return f, self.classifier(f)


class DomainExtractor(nn.Module):
    """A trained :class:`DomainEncoder` as a :class:`FeatureExtractor`."""

    name = "domain"

    def __init__(self, encoder: DomainEncoder):
        super().__init__()
        self.encoder = encoder.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.encoder(images)


def presence_class(labels: torch.Tensor) -> torch.Tensor:
    """Class of each label map ``[B, *spatial]``: bit 0 NCR (1), bit 1 ED (2), bit 2 ET (3) present."""
    flat = labels.reshape(len(labels), -1)
    return sum(((flat == k).any(dim=1).long() << (k - 1)) for k in (1, 2, 3))
