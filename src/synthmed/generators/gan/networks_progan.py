"""Progressive GAN (Karras et al. 2018): progressive growing with fade-in, pixel norm,
minibatch standard deviation, equalized learning rate.

Resolutions are indexed by *level*: level ``l`` works at ``4·2^l`` pixels. During growth
``forward(…, level, alpha)`` runs up to ``level`` and fades the new block in: the output is
``lerp(upsample(rgb_{l-1}), rgb_l, alpha)`` (G) and the input path
``lerp(from_rgb_{l-1}(avgpool(x)), block_l(from_rgb_l(x)), alpha)`` (D). At ``alpha = 0``
the generator's output is exactly the lower level's, up-sampled by pixel repetition.

:class:`ProgressiveDiscriminator` is shared with StyleGAN 1; :func:`growth` is the schedule.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthmed.generators.gan.config import GANModelConfig
from synthmed.generators.gan.layers import EqualConv2d, EqualLinear, MinibatchStd, PixelNorm, lrelu


def channels_at(level: int, base: int, cap: int) -> int:
    """Feature maps at ``level`` (``4·2^level`` px): ``min(base / 2^level, cap)``, at least 1."""
    return max(1, min(base >> level, cap))


def growth(step: int, phase_steps: int, max_level: int) -> tuple[int, float]:
    """``(level, alpha)`` at global ``step``: level 0 for ``phase_steps`` steps, then for each
    further level a fade-in phase (alpha 0 → 1) and a stable phase, ``phase_steps`` each.

    A pure function of the step, so a resumed run continues the schedule exactly;
    ``phase_steps = 0`` trains the full resolution from the start.
    """
    if phase_steps <= 0:
        return max_level, 1.0
    k = step // phase_steps
    level = (k + 1) // 2
    if level > max_level:
        return max_level, 1.0
    alpha = (step % phase_steps) / phase_steps if k % 2 == 1 else 1.0
    return level, alpha


def upscale(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour (pixel repetition) up-sampling."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


class ProGANGenerator(nn.Module):
    """``z [B, z_dim] → [B, img_channels, 4·2^level, …]``.

    Args:
        z_dim: latent size.
        img_channels: output channels, the joint encoding's (:attr:`GANModelConfig.img_channels`).
        max_level: ``log2(resolution) - 2``.
        channel_base, channel_max: feature maps per level (:func:`channels_at`).
    """

    def __init__(self, z_dim: int, img_channels: int, max_level: int, channel_base: int, channel_max: int):
        super().__init__()
        self.z_dim, self.max_level = z_dim, max_level
        ch = [channels_at(lv, channel_base, channel_max) for lv in range(max_level + 1)]
        self.norm = PixelNorm()
        self.dense = EqualLinear(z_dim, ch[0] * 16)
        self.blocks = nn.ModuleList([nn.ModuleList([EqualConv2d(ch[0], ch[0], 3)])])
        for lv in range(1, max_level + 1):
            self.blocks.append(nn.ModuleList([EqualConv2d(ch[lv - 1], ch[lv], 3), EqualConv2d(ch[lv], ch[lv], 3)]))
        self.to_rgb = nn.ModuleList(EqualConv2d(c, img_channels, 1) for c in ch)
        self.register_buffer("h_avg", torch.zeros(ch[0] * 16))  # running mean of the first features
        self.avg_beta = 0.995

    def forward(self, z: torch.Tensor, *, level: int | None = None, alpha: float = 1.0, psi: float = 1.0,
                update_emas: bool = False, **_: object) -> torch.Tensor:
        """``level`` (default: the last) and fade-in ``alpha``.

        ``psi`` < 1 truncates: the first ``4×4`` features (a function of ``z``'s direction
        only, since ``z`` is pixel-normalised) move towards their running mean, as StyleGAN
        moves ``w`` towards ``w_avg``. The mean moves only with ``update_emas`` (once per
        training iteration).
        """
        level = self.max_level if level is None else level
        h = self.norm(lrelu(self.dense(self.norm(z))))
        if update_emas:
            with torch.no_grad():
                self.h_avg.copy_(h.detach().mean(0).lerp(self.h_avg, self.avg_beta))
        if psi != 1.0:
            h = self.h_avg.lerp(h, psi)
        x = h.view(z.shape[0], -1, 4, 4)
        prev = x
        for lv in range(level + 1):
            if lv > 0:
                prev = x
                x = upscale(x)
            for conv in self.blocks[lv]:
                x = self.norm(lrelu(conv(x)))
        out = self.to_rgb[level](x)
        if level > 0 and alpha < 1:
            out = torch.lerp(upscale(self.to_rgb[level - 1](prev)), out, alpha)
        return out


class ProgressiveDiscriminator(nn.Module):
    """``[B, img_channels, 4·2^level, …] → logits [B, 1]`` (ProGAN, StyleGAN 1).

    ``forward(x, level, alpha)``: the mirror of the generator's fade-in.
    """

    def __init__(self, img_channels: int, max_level: int, channel_base: int, channel_max: int, mbstd_group: int = 4):
        super().__init__()
        self.max_level = max_level
        ch = [channels_at(lv, channel_base, channel_max) for lv in range(max_level + 1)]
        self.from_rgb = nn.ModuleList(EqualConv2d(img_channels, c, 1, activation="lrelu") for c in ch)
        self.blocks = nn.ModuleList([nn.Identity()])
        for lv in range(1, max_level + 1):
            self.blocks.append(nn.Sequential(EqualConv2d(ch[lv], ch[lv], 3, activation="lrelu"),
                                             EqualConv2d(ch[lv], ch[lv - 1], 3, activation="lrelu"), nn.AvgPool2d(2)))
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = EqualConv2d(ch[0] + 1, ch[0], 3, activation="lrelu")
        self.fc = EqualLinear(ch[0] * 16, ch[0], activation="lrelu")
        self.out = EqualLinear(ch[0], 1)

    def forward(self, x: torch.Tensor, *, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        level = self.max_level if level is None else level
        h = self.from_rgb[level](x)
        if level > 0:
            h = self.blocks[level](h)
            if alpha < 1:
                h = torch.lerp(self.from_rgb[level - 1](F.avg_pool2d(x, 2)), h, alpha)
        for lv in range(level - 1, 0, -1):
            h = self.blocks[lv](h)
        h = self.conv(self.mbstd(h))
        return self.out(self.fc(h.flatten(1)))


def build(config: GANModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` of a :class:`~synthmed.generators.gan.config.GANModelConfig`."""
    gen = ProGANGenerator(config.z_dim, config.img_channels, config.max_level, config.channel_base, config.channel_max)
    disc = ProgressiveDiscriminator(config.img_channels, config.max_level, config.channel_base, config.channel_max,
                                    config.mbstd_group)
    return gen, disc
