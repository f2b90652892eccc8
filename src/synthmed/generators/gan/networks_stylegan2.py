"""StyleGAN 2 (Karras et al. 2020): modulated/demodulated convolutions, skip generator,
residual discriminator (also StyleGAN 3's discriminator).

Synthesis: a learned constant ``4×4``, then per resolution ``r = 8 … R`` two modulated
``3×3`` convolutions (the first after a ``[1, 3, 3, 1]`` FIR up-sampling) with noise, bias
and leaky ReLU, and a ``1×1`` un-demodulated ``to_rgb`` whose output is added to the
up-sampled RGB of the previous resolution (skip architecture). One ``w`` per convolution
plus one for the last ``to_rgb``: ``num_ws = 2·log2(R) - 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from synthmed.generators.gan.config import GANModelConfig
from synthmed.generators.gan.filters import binomial, downsample2d, upsample2d
from synthmed.generators.gan.layers import (
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStd,
    NoiseInjection,
    StyleGenerator,
    lrelu,
    modulated_conv2d,
    noise_inputs,
)
from synthmed.generators.gan.networks_progan import channels_at
from synthmed.training.seeding import Draws


class ModulatedConv(nn.Module):
    """Style-modulated convolution ``[B, in, H, W] → [B, out, H', W']`` (``H' = 2H`` with ``up``).

    Args:
        kernel: 3 (synthesis) or 1 (``to_rgb``).
        demodulate: normalise each output feature to unit variance (off for ``to_rgb``).
        activate: add noise, bias and leaky ReLU (off for ``to_rgb``: bias only).
    """

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, *, kernel: int = 3, up: bool = False,
                 demodulate: bool = True, activate: bool = True):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.up, self.demodulate, self.activate, self.padding = up, demodulate, activate, kernel // 2
        self.noise = NoiseInjection(1) if activate else None
        self.register_buffer("filter", binomial(4))

    def forward(self, x: torch.Tensor, w: torch.Tensor, draws: Draws | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """``noise``: an explicit noise map ``[B or 1, 1, H', W']`` instead of one drawn from ``draws``."""
        if self.up:
            x = upsample2d(x, self.filter)
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight * self.weight_gain, styles, demodulate=self.demodulate, padding=self.padding)
        if not self.activate:
            return x + self.bias
        return lrelu(self.noise(x, draws, noise) + self.bias)


class Synthesis2(nn.Module):
    """``ws [B, num_ws, w_dim] → [B, img_channels, R, R]`` (skip generator).

    Every synthesis convolution has a noise input: ``noise_shapes()`` lists their sizes in
    order (``4, 8, 8, 16, 16, …``); ``forward(…, noise=[maps])`` uses the given maps instead
    of drawing them (nothing about training, sampling or the weights changes).
    """

    def __init__(self, w_dim: int, img_channels: int, max_level: int, channel_base: int, channel_max: int):
        super().__init__()
        ch = [channels_at(lv, channel_base, channel_max) for lv in range(max_level + 1)]
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        convs = [ModulatedConv(ch[0], ch[0], w_dim)]
        rgbs = [ModulatedConv(ch[0], img_channels, w_dim, kernel=1, demodulate=False, activate=False)]
        for lv in range(1, max_level + 1):
            convs += [ModulatedConv(ch[lv - 1], ch[lv], w_dim, up=True), ModulatedConv(ch[lv], ch[lv], w_dim)]
            rgbs.append(ModulatedConv(ch[lv], img_channels, w_dim, kernel=1, demodulate=False, activate=False))
        self.convs, self.to_rgb = nn.ModuleList(convs), nn.ModuleList(rgbs)
        self.num_ws = len(convs) + 1
        self.register_buffer("filter", binomial(4))

    def noise_shapes(self, **_: object) -> list[tuple[int, int]]:
        """``(H, W)`` of each convolution's noise input, in order: ``4`` then two per resolution."""
        sides = [4] + [4 * 2**lv for lv in range(1, len(self.to_rgb)) for _ in range(2)]
        return [(s, s) for s in sides]

    def forward(self, ws: torch.Tensor, *, draws: Draws | None = None, const: torch.Tensor | None = None,
                noise: Sequence[torch.Tensor] | None = None, **_: object) -> torch.Tensor:
        """``draws``: where the noise inputs are drawn, in layer order (``None``: no noise);
        ``const`` replaces the learned ``4×4`` input ``[1 or B, C, 4, 4]`` (equivariance tests);
        ``noise``: one map per :meth:`noise_shapes` entry (``[B or 1, 1, H, W]``), used instead of
        drawing."""
        maps = noise_inputs(noise, self.noise_shapes())
        x = (self.const if const is None else const).expand(ws.shape[0], -1, -1, -1)
        x = self.convs[0](x, ws[:, 0], draws, maps[0])
        img = self.to_rgb[0](x, ws[:, 1])
        for lv in range(1, len(self.to_rgb)):
            i = 2 * lv - 1
            x = self.convs[i](x, ws[:, i], draws, maps[i])
            x = self.convs[i + 1](x, ws[:, i + 1], draws, maps[i + 1])
            img = upsample2d(img, self.filter) + self.to_rgb[lv](x, ws[:, i + 2])
        return img


class ResidualBlock(nn.Module):
    """Discriminator block ``[B, in, H, W] → [B, out, H/2, W/2]``: two ``3×3`` convolutions
    (the second after FIR down-sampling) plus a ``1×1`` skip, summed and scaled by ``1/√2``."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3, activation="lrelu")
        self.conv1 = EqualConv2d(in_ch, out_ch, 3, activation="lrelu")
        self.skip = EqualConv2d(in_ch, out_ch, 1, bias=False)
        self.register_buffer("filter", binomial(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(downsample2d(x, self.filter))
        x = self.conv1(downsample2d(self.conv0(x), self.filter))
        return (x + skip) * (1 / math.sqrt(2))


class ResidualDiscriminator(nn.Module):
    """``[B, img_channels, R, R] → logits [B, 1]``: ``from_rgb``, residual blocks down to ``4×4``,
    minibatch std, conv, two FC layers."""

    def __init__(self, img_channels: int, max_level: int, channel_base: int, channel_max: int, mbstd_group: int = 4):
        super().__init__()
        ch = [channels_at(lv, channel_base, channel_max) for lv in range(max_level + 1)]
        self.from_rgb = EqualConv2d(img_channels, ch[max_level], 1, activation="lrelu")
        self.blocks = nn.Sequential(*(ResidualBlock(ch[lv], ch[lv - 1]) for lv in range(max_level, 0, -1)))
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(ch[0] + 1, ch[0], 3, activation="lrelu")
        self.fc = EqualLinear(ch[0] * 16, ch[0], activation="lrelu")
        self.out = EqualLinear(ch[0], 1)

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        h = self.conv(self.mbstd(self.blocks(self.from_rgb(x))))
        return self.out(self.fc(h.flatten(1)))


def build(config: GANModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` of a :class:`~synthmed.generators.gan.config.GANModelConfig`."""
    mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
    synthesis = Synthesis2(config.w_dim, config.img_channels, config.max_level, config.channel_base, config.channel_max)
    disc = ResidualDiscriminator(config.img_channels, config.max_level, config.channel_base, config.channel_max,
                                 config.mbstd_group)
    return StyleGenerator(mapping, synthesis), disc
