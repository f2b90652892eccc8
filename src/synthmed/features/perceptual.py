"""Perceptual distances from frozen feature networks (LPIPS without learned weights), with nothing downloaded.

A distance compares two batches level by level: at each level of the network the feature
vector of every pixel is scaled to unit length, and the level's distance is the mean over
pixels of the squared difference summed over channels; an image's value is the mean over
levels, ``[B]``. The networks are frozen and act on each sample alone (GroupNorm, or BatchNorm
in eval mode), so a value depends on its own image only.

Inputs are **jointly encoded** 2D samples ``[B, C + L, H, W]`` in ``[-1, 1]``
(:class:`~synthmed.data.JointEncoding`); only the ``C`` image channels are seen, back in
``[0, 1]``, never the mask.

* :class:`DomainPerceptual`: the convolution levels of the domain encoder
  (:func:`~synthmed.features.load_domain_encoder`), which is trained on the store itself:
  the offline default. :func:`load_domain_perceptual` loads it from an encoder run and checks
  its channels.
* :class:`RadImageNetPerceptual`: the four residual stages of RadImageNet's ResNet-50 from the
  user's weight file (:class:`~synthmed.features.RadImageNetExtractor`'s loading and
  preprocessing); each image channel goes through as a grey image and the channels' distances
  are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from synthmed.errors import SynthmedError


def per_image_mean(x: torch.Tensor) -> torch.Tensor:
    """``[B, …] → [B]``: the mean over everything but the batch."""
    return x.reshape(x.shape[0], -1).mean(1)


def unit_features(levels: Sequence[nn.Module], h: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps of ``h`` after each of ``levels`` (applied in turn), each pixel's
    feature vector scaled to unit length."""
    out = []
    for level in levels:
        h = level(h)
        out.append(h * torch.rsqrt(h.square().sum(dim=1, keepdim=True) + 1e-10))
    return out


def feature_distance(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[B]``: the mean over levels of the per-pixel squared distance of unit features, summed
    over channels and averaged over pixels."""
    return torch.stack([per_image_mean((x - y).square().sum(dim=1)) for x, y in zip(a, b)]).mean(0)


class DomainPerceptual(nn.Module):
    """The domain encoder's perceptual distance (see the module docstring).

    Args:
        encoder: a trained domain encoder (:func:`~synthmed.features.load_domain_encoder`).
        image_channels: ``C``, the image channels of the encoding (the mask is not an input).
    """

    def __init__(self, encoder: nn.Module, image_channels: int):
        super().__init__()
        self.levels = encoder.body.eval().requires_grad_(False)
        self.image_channels = image_channels

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-length feature maps of each level of encoded samples ``x``."""
        return unit_features(self.levels, (x[:, : self.image_channels] + 1) / 2)

    def forward(self, x: torch.Tensor, target_features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[B]`` distances of ``x`` to targets whose :meth:`features` are given."""
        return feature_distance(self.features(x), target_features)

    def distance(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B]`` distances of ``x`` to ``target`` (no gradient through the target)."""
        with torch.no_grad():
            wanted = self.features(target)
        return self(x, wanted)


def load_domain_perceptual(run_dir: str | Path, image_channels: int) -> DomainPerceptual:
    """The :class:`DomainPerceptual` of the domain encoder trained in ``run_dir``.

    Raises:
        SynthmedError: not a domain-encoder run, no checkpoint yet, or an encoder of another
            number of image channels (naming both).
    """
    from synthmed.features.domain_training import load_domain_encoder

    net = load_domain_encoder(run_dir)
    in_channels = next(m.in_channels for m in net.body.modules() if isinstance(m, nn.Conv2d))
    if in_channels != image_channels:
        raise SynthmedError(f"{run_dir}: the domain encoder takes {in_channels} image channels, the samples have "
                            f"{image_channels}")
    return DomainPerceptual(net, image_channels)


class RadImageNetPerceptual(nn.Module):
    """RadImageNet ResNet-50's perceptual distance (see the module docstring).

    Args:
        weights: the user's RadImageNet ResNet-50 file (``.pt``/``.pth``/``.safetensors``,
            torchvision key names).
        image_channels: ``C``, the image channels of the encoding.

    Raises:
        SynthmedError: the file is missing or holds no ResNet-50 weights.
    """

    def __init__(self, weights: str | Path, image_channels: int):
        super().__init__()
        from synthmed.features.pretrained import RadImageNetExtractor

        extractor = RadImageNetExtractor(weights)
        net = extractor.net
        stem = nn.Sequential(net.conv1, net.bn1, net.act, net.maxpool, net.layer1)
        self.levels = nn.ModuleList([stem, net.layer2, net.layer3, net.layer4]).eval().requires_grad_(False)
        self.register_buffer("mean", extractor.mean.clone(), persistent=False)
        self.image_channels = image_channels

    def train(self, mode: bool = True) -> RadImageNetPerceptual:
        """Stays in eval mode (frozen BatchNorm statistics) whatever ``mode`` is asked for."""
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-length feature maps of each stage, channel by channel: ``[B · C, F_l, h_l, w_l]``."""
        b, c = x.shape[0], self.image_channels
        grey = ((x[:, :c] + 1) / 2).reshape(b * c, 1, *x.shape[2:])
        bgr = grey.repeat(1, 3, 1, 1) - self.mean  # grey → 3 channels; BGR order is the same for grey
        return unit_features(self.levels, bgr)

    def forward(self, x: torch.Tensor, target_features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[B]`` distances of ``x`` to targets whose :meth:`features` are given (mean over channels)."""
        return feature_distance(self.features(x), target_features).view(x.shape[0], self.image_channels).mean(1)

    def distance(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B]`` distances of ``x`` to ``target`` (no gradient through the target)."""
        with torch.no_grad():
            wanted = self.features(target)
        return self(x, wanted)
