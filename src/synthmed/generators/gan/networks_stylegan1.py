"""StyleGAN 1 (Karras et al. 2019): mapping network, AdaIN styles, per-layer noise,
style mixing, truncation, progressive growing (ProGAN's schedule and discriminator).

Synthesis: a learned constant ``4×4``; at each level two layers of
``conv → noise → leaky ReLU → AdaIN(w)`` (level 0 starts from the constant instead of a
convolution; higher levels up-sample first with the ``[1, 3, 3, 1]`` filter). Styles:
``num_ws = 2·(max_level + 1)``, one per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from synthmed.generators.gan.config import GANModelConfig
from synthmed.generators.gan.filters import binomial, upsample2d
from synthmed.generators.gan.layers import (EqualConv2d, EqualLinear, MappingNetwork, NoiseInjection, StyleGenerator, lrelu,
                                           noise_inputs)
from synthmed.generators.gan.networks_progan import ProgressiveDiscriminator, channels_at, upscale
from synthmed.training.seeding import Draws


class AdaIN(nn.Module):
    """Instance norm, then the style: ``x̂ · (1 + a(w)) + b(w)`` per channel."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.style = EqualLinear(w_dim, 2 * channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(dim=(2, 3), keepdim=True)) * torch.rsqrt(x.var(dim=(2, 3), keepdim=True, unbiased=False) + 1e-8)
        scale, shift = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class StyleLayer(nn.Module):
    """``[conv] → noise → leaky ReLU → AdaIN``; ``up`` up-samples first (FIR ``[1, 3, 3, 1]``)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, *, conv: bool = True, up: bool = False):
        super().__init__()
        self.conv = EqualConv2d(in_ch, out_ch, 3) if conv else None
        self.up = up
        self.noise = NoiseInjection(out_ch)
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.adain = AdaIN(w_dim, out_ch)
        self.register_buffer("filter", binomial(4))

    def forward(self, x: torch.Tensor, w: torch.Tensor, draws: Draws | None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """``noise``: an explicit noise map ``[B or 1, 1, H', W']`` instead of one drawn from ``draws``."""
        if self.up:
            x = upsample2d(x, self.filter)
        if self.conv is not None:
            x = self.conv(x)
        return self.adain(lrelu(self.noise(x, draws, noise) + self.bias), w)


class Synthesis1(nn.Module):
    """``ws [B, num_ws, w_dim] → [B, img_channels, 4·2^level, …]`` with ProGAN-style fade-in.

    Every layer has a noise input: ``noise_shapes(level)`` lists the sizes of those the level
    runs (two per resolution up to it); ``forward(…, noise=[maps])`` uses the given maps
    instead of drawing them.
    """

    def __init__(self, w_dim: int, img_channels: int, max_level: int, channel_base: int, channel_max: int):
        super().__init__()
        ch = [channels_at(lv, channel_base, channel_max) for lv in range(max_level + 1)]
        self.max_level, self.num_ws = max_level, 2 * (max_level + 1)
        self.const = nn.Parameter(torch.ones(1, ch[0], 4, 4))
        layers = [StyleLayer(ch[0], ch[0], w_dim, conv=False), StyleLayer(ch[0], ch[0], w_dim)]
        for lv in range(1, max_level + 1):
            layers += [StyleLayer(ch[lv - 1], ch[lv], w_dim, up=True), StyleLayer(ch[lv], ch[lv], w_dim)]
        self.layers = nn.ModuleList(layers)
        self.to_rgb = nn.ModuleList(EqualConv2d(c, img_channels, 1) for c in ch)

    def noise_shapes(self, level: int | None = None, **_: object) -> list[tuple[int, int]]:
        """``(H, W)`` of the noise input of each layer run at ``level`` (default: the last), in order."""
        level = self.max_level if level is None else level
        return [(4 * 2 ** (i // 2),) * 2 for i in range(2 * (level + 1))]

    def forward(self, ws: torch.Tensor, *, level: int | None = None, alpha: float = 1.0,
                draws: Draws | None = None, noise: Sequence[torch.Tensor] | None = None,
                **_: object) -> torch.Tensor:
        """``draws``: where the noise inputs are drawn, in layer order (``None``: no noise);
        ``noise``: one map per :meth:`noise_shapes` entry of ``level``, used instead of drawing."""
        level = self.max_level if level is None else level
        maps = noise_inputs(noise, self.noise_shapes(level))
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        prev = x
        for i in range(2 * (level + 1)):
            if i % 2 == 0 and i > 0:
                prev = x
            x = self.layers[i](x, ws[:, i], draws, maps[i])
        out = self.to_rgb[level](x)
        if level > 0 and alpha < 1:
            out = torch.lerp(upscale(self.to_rgb[level - 1](prev)), out, alpha)
        return out


def build(config: GANModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` of a :class:`~synthmed.generators.gan.config.GANModelConfig`."""
    mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
    synthesis = Synthesis1(config.w_dim, config.img_channels, config.max_level, config.channel_base, config.channel_max)
    disc = ProgressiveDiscriminator(config.img_channels, config.max_level, config.channel_base, config.channel_max,
                                    config.mbstd_group)
    return StyleGenerator(mapping, synthesis), disc
