"""Building blocks shared by every GAN family (ProGAN, StyleGAN 1/2/3).

Conventions: images and feature maps are ``[B, C, H, W]``; latents ``z`` and styles ``w``
are ``[B, D]`` (or ``[B, L, D]`` for one ``w`` per synthesis layer).

*Equalized learning rate* (Karras et al. 2018): weights are stored as ``N(0, 1) / lr_mul``
and multiplied at run time by ``lr_mul / sqrt(fan_in)`` (the He constant), so every layer
learns at the same speed under Adam whatever its fan-in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synthmed.training.seeding import Draws

#: Gain that keeps the variance of a leaky ReLU's output (slope 0.2) equal to its input's.
LRELU_GAIN = math.sqrt(2.0)


def lrelu(x: torch.Tensor, slope: float = 0.2, gain: float = LRELU_GAIN) -> torch.Tensor:
    """``gain · leaky_relu(x, slope)``."""
    return F.leaky_relu(x, slope) * gain


class EqualLinear(nn.Module):
    """Fully connected layer with equalized learning rate.

    Args:
        in_features, out_features: sizes.
        bias_init: initial bias value.
        lr_mul: learning-rate multiplier (0.01 in the StyleGAN mapping network).
        activation: ``"linear"`` or ``"lrelu"`` (with gain √2).
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul, self.activation = lr_mul, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in] → [B, out]``."""
        b = None if self.bias is None else self.bias * self.lr_mul
        x = F.linear(x, self.weight * self.weight_gain, b)
        return lrelu(x) if self.activation == "lrelu" else x


class EqualConv2d(nn.Module):
    """2D convolution with equalized learning rate (same padding, stride 1).

    ``forward``: ``[B, in, H, W] → [B, out, H, W]`` (weight scaled by ``1/sqrt(in·k·k)``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: str = "linear"):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding, self.activation = kernel_size // 2, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return lrelu(x) if self.activation == "lrelu" else x


class PixelNorm(nn.Module):
    """Normalise each pixel's (or latent's) feature vector to unit RMS over dim 1."""

    def forward(self, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


class MinibatchStd(nn.Module):
    """Append the minibatch standard deviation as extra feature maps (Karras et al. 2018).

    Samples are split into groups of ``group_size`` (or the batch, if smaller and dividing
    it); the std over each group, averaged over channels and pixels, becomes
    ``num_channels`` constant maps: ``[B, C, H, W] → [B, C + num_channels, H, W]``.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        while b % g:
            g -= 1
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # [B/g, f, c/f, h, w]
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                     padding: int = 0, eps: float = 1e-8, grouped: bool | None = None) -> torch.Tensor:
    """StyleGAN 2 modulated (and demodulated) convolution, one convolution call for the batch.

    Sample ``i`` gets its own kernel ``w'_i[o, c] = w[o, c] · s_i[c]``, divided (with
    ``demodulate``) by ``||w'_i[o]||₂`` so that unit-variance input gives unit-variance output.

    Two exact implementations:

    * ``grouped=True``: the ``B`` kernels run as one ``conv2d`` with ``groups=B`` (fast on GPUs);
    * ``grouped=False``: scale the *input* channels by ``s_i``, convolve with the shared
      ``w``, scale the output by the demodulation coefficients (fast on CPUs, where grouped
      convolutions with per-sample kernels are slow).

    ``None`` picks grouped on CUDA, the other on CPU.

    Args:
        x: ``[B, C, H, W]``.
        weight: ``[O, C, k, k]`` (already scaled).
        styles: ``[B, C]``.
    Returns:
        ``[B, O, H + 2·padding - k + 1, W + …]``.
    """
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    if grouped is None:
        grouped = x.is_cuda
    if not grouped:
        y = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=padding)
        if demodulate:
            dcoef = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + eps)  # [B, O]
            y = y * dcoef[:, :, None, None].to(y.dtype)
        return y
    wts = weight[None] * styles[:, None, :, None, None]  # [B, O, C, k, k]
    if demodulate:
        wts = wts * torch.rsqrt(wts.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
    out = F.conv2d(x.reshape(1, b * c, h, w), wts.reshape(b * o, c, kh, kw).to(x.dtype), padding=padding, groups=b)
    return out.reshape(b, o, out.shape[2], out.shape[3])


def modulated_conv2d_loop(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, demodulate: bool = True,
                          padding: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Reference of :func:`modulated_conv2d`: one ``conv2d`` per sample (for tests and benchmarks)."""
    outs = []
    for i in range(x.shape[0]):
        wts = weight * styles[i][None, :, None, None]
        if demodulate:
            wts = wts * torch.rsqrt(wts.square().sum(dim=(1, 2, 3), keepdim=True) + eps)
        outs.append(F.conv2d(x[i : i + 1], wts, padding=padding))
    return torch.cat(outs)


class NoiseInjection(nn.Module):
    """Add per-pixel Gaussian noise scaled by a learned weight (per channel or one scalar).

    ``forward(x, draws, noise=None)``: an explicit ``noise`` ``[B or 1, 1, H, W]`` is
    added as given and nothing is drawn (projection optimises per-image noise maps);
    otherwise noise ``[B, 1, H, W]`` (``x``'s dtype) is drawn from ``draws`` (a training
    step's :meth:`~synthmed.training.seeding.StepRandom.stream`, whose ranks draw their rows
    of one world-size-invariant draw, or a sampling generator's
    :class:`~synthmed.training.seeding.GeneratorDraws`: reproducible either way); ``None``
    for both → no noise (deterministic).
    """

    def __init__(self, channels: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, draws: Draws | None, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is not None:
            return x + noise.to(x.dtype) * self.weight
        if draws is None:
            return x
        b, _, h, w = x.shape
        return x + draws.randn((b, 1, h, w), x.dtype).to(x.device) * self.weight


def noise_inputs(noise: Sequence[torch.Tensor] | None, shapes: Sequence[tuple[int, int]]) -> list[torch.Tensor | None]:
    """The explicit noise map of each noise layer of a synthesis network, in layer order.

    Args:
        noise: ``None`` (every layer draws from its ``draws``, or adds none) or one tensor
            ``[B or 1, 1, H_i, W_i]`` per layer of ``shapes``.
        shapes: ``(H_i, W_i)`` of each noise layer (a synthesis network's ``noise_shapes()``).

    Raises:
        ValueError: a different number of maps, or a map of another shape.
    """
    if noise is None:
        return [None] * len(shapes)
    noise = list(noise)
    if len(noise) != len(shapes):
        raise ValueError(f"expected {len(shapes)} noise maps (one per noise layer), got {len(noise)}")
    for i, (n, shape) in enumerate(zip(noise, shapes)):
        if n.ndim != 4 or n.shape[1] != 1 or tuple(n.shape[2:]) != tuple(shape):
            raise ValueError(f"noise map {i} must be [B or 1, 1, {shape[0]}, {shape[1]}], got {tuple(n.shape)}")
    return noise


class MappingNetwork(nn.Module):
    """``z → w``: pixel-normalised latent through ``num_layers`` equalized FC layers (lr × 0.01).

    Tracks the average ``w`` (``w_avg ← lerp(mean(w), w_avg, avg_beta)``) for truncation:
    ``w ← w_avg + psi·(w - w_avg)``. The average moves only in a forward with
    ``update_emas=True`` (the trainer asks for it once per iteration), never in other
    forwards (style-mixing latents, regularisers, sampling).

    ``forward(z [B, z_dim], psi=1, update_emas=False) → w [B, w_dim]``.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, *, lr_mul: float = 0.01, avg_beta: float = 0.995):
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.norm = PixelNorm()
        self.layers = nn.Sequential(*(EqualLinear(a, b, lr_mul=lr_mul, activation="lrelu") for a, b in zip(dims, dims[1:])))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.avg_beta = avg_beta

    def forward(self, z: torch.Tensor, psi: float = 1.0, *, update_emas: bool = False) -> torch.Tensor:
        w = self.layers(self.norm(z))
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, self.avg_beta))
        if psi != 1.0:
            w = self.w_avg.lerp(w, psi)
        return w


def mix_styles(w1: torch.Tensor, w2: torch.Tensor | None, num_ws: int, cutoff: torch.Tensor | None) -> torch.Tensor:
    """Broadcast ``w`` to ``[B, num_ws, D]``; with ``w2`` and per-sample ``cutoff`` ``[B]`` (style
    mixing), layers ``>= cutoff`` take ``w2``."""
    ws = w1[:, None].repeat(1, num_ws, 1)
    if w2 is None or cutoff is None:
        return ws
    layer = torch.arange(num_ws, device=w1.device)[None, :, None]
    return torch.where(layer >= cutoff[:, None, None], w2[:, None], ws)


class StyleGenerator(nn.Module):
    """Mapping network + a family's synthesis network (StyleGAN 1, 2 and 3 share this).

    ``synthesis`` has an attribute ``num_ws`` and ``forward(ws [B, num_ws, w_dim], *,
    update_emas, **kwargs)`` (those without running statistics ignore ``update_emas``).

    ``forward(z, z2=None, mix_cutoff=None, psi=1, return_ws=False, update_emas=False, **kwargs)``:
    ``z`` and the optional second latent ``z2`` (style mixing: layers ``>= mix_cutoff[i]`` of
    sample ``i`` take ``w2``) are mapped, truncated towards ``w_avg`` by ``psi`` and passed to
    the synthesis with ``kwargs`` (the noise inputs' ``draws``, growth level, …). With ``return_ws`` the
    styles are returned too (for the path-length regulariser). ``update_emas`` moves the
    running averages (``w_avg`` from ``z``'s styles, not ``z2``'s, and the synthesis's own,
    e.g. StyleGAN 3's magnitude EMAs): the trainer passes it in one forward per iteration.
    """

    def __init__(self, mapping: MappingNetwork, synthesis: nn.Module):
        super().__init__()
        self.mapping, self.synthesis = mapping, synthesis
        self.z_dim = mapping.layers[0].weight.shape[1]

    def forward(self, z: torch.Tensor, *, z2: torch.Tensor | None = None, mix_cutoff: torch.Tensor | None = None,
                psi: float = 1.0, return_ws: bool = False, update_emas: bool = False,
                **kwargs: object):  # noqa: ANN201
        if "generator" in kwargs:  # the synthesis networks take and ignore unknown keywords: no silent noise-free call
            raise TypeError("the noise inputs draw from draws= (a Draws: StepRandom.stream() in training, "
                            "GeneratorDraws(generator) elsewhere), not generator=")
        w2 = None if z2 is None else self.mapping(z2, psi)
        ws = mix_styles(self.mapping(z, psi, update_emas=update_emas), w2, self.synthesis.num_ws, mix_cutoff)
        img = self.synthesis(ws, update_emas=update_emas, **kwargs)
        return (img, ws) if return_ws else img
