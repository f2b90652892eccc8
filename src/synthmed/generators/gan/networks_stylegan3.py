"""StyleGAN 3, configs T and R (Karras et al. 2021): alias-free generator; StyleGAN 2's
residual discriminator.

Signals are treated as continuous and band-limited. The input is a grid of Fourier
features (random frequencies inside the first cutoff, phases, rotated and translated by an
affine of ``w``), sampled with a margin around the image. Each layer is a modulated
convolution followed by a *filtered* leaky ReLU: up-sample ×2 with a windowed-sinc
(Kaiser) low-pass, apply the non-linearity at the higher rate, low-pass to the layer's
cutoff and down-sample to its sampling rate. Cutoffs grow geometrically from 2 to
``R/2``; the last two layers are critically sampled at ``R`` and the margin is cropped.
No noise inputs.

Layers (the paper's appendix F, NVlabs' names): ``N = num_layers`` layers ``L0 … L(N-1)``
and ``to_rgb`` (``LN``) between the ``N + 1`` indices of :func:`layer_specs`; ``L0`` maps
index 0 (the Fourier features) to index 0 again, ``Li`` index ``i - 1`` to ``i``. Styles:
``num_ws = N + 2`` (the input's affine and one per layer). The paper's ``N = 14``.

Each layer normalises its input by the running RMS of its activations: the *input gain*
``1/sqrt(magnitude_ema)``, ``magnitude_ema`` a moving average of ``mean(x²)`` (updated with
``update_emas``), multiplies the convolution *after* the demodulation (before it, the
demodulation would cancel it), ``to_rgb`` included.

Configurations (:data:`VARIANTS`, one layer code for both):

* ``t`` — translation equivariant: ``3×3`` modulated convolutions, separable Kaiser filters;
* ``r`` — rotation equivariant too: ``1×1`` convolutions in every layer (a ``k×k`` kernel
  has a preferred orientation, a ``1×1`` one none), the down-sampling filter of every layer
  that is not critically sampled is the radially symmetric windowed jinc of
  :func:`~synthmed.generators.gan.filters.jinc_lowpass` (a separable filter passes more of
  the diagonal than of the axes, so its output depends on the orientation), and twice the
  feature maps (``channel_base`` and ``channel_max`` ×2) to make up for the smaller kernels.

Coordinates: the output image spans one unit (``R`` pixels per unit); a layer with
sampling rate ``s`` and size ``n`` samples the pixel centres ``(i + ½ - n/2) / s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from synthmed.generators.gan.config import GANModelConfig
from synthmed.generators.gan.filters import filtered_lrelu, jinc_lowpass, kaiser_lowpass
from synthmed.generators.gan.layers import EqualLinear, MappingNetwork, StyleGenerator, modulated_conv2d, noise_inputs
from synthmed.generators.gan.networks_stylegan2 import ResidualDiscriminator


def layer_specs(resolution: int, num_layers: int, margin: int, channel_base: int, channel_max: int,
                num_critical: int = 2, img_channels: int = 5) -> list[dict]:
    """Per-index (0 = the Fourier input and ``L0``'s output, ``i`` = ``Li``'s output,
    ``num_layers`` = ``to_rgb``'s) cutoff, stop-band, sampling rate, transition half-width,
    size, channels and ``critical`` (cutoff at Nyquist: the last ``num_critical + 1``
    indices) of the StyleGAN 3 schedule (the paper's appendix F)."""
    first_cutoff, last_cutoff = 2.0, resolution / 2
    first_stop, last_stop = 2 ** 2.1, resolution / 2 * 2 ** 0.3
    specs = []
    for i in range(num_layers + 1):
        e = min(i / (num_layers - num_critical), 1.0)
        cutoff = first_cutoff * (last_cutoff / first_cutoff) ** e
        stop = first_stop * (last_stop / first_stop) ** e
        rate = 2 ** math.ceil(math.log2(min(stop * 2, resolution)))
        specs.append(dict(cutoff=cutoff, stop=stop, rate=rate, half_width=max(stop, rate / 2) - cutoff,
                          size=rate + 2 * margin, channels=max(1, min(round(channel_base / 2 / cutoff), channel_max)),
                          critical=i >= num_layers - num_critical))
    for s in specs[-2:]:
        s["size"] = resolution
    specs[-1]["channels"] = img_channels
    return specs


class FourierInput(nn.Module):
    """``w [B, w_dim] → [B, C, size, size]`` Fourier features.

    Exact continuous transforms of the content, for the equivariance tests (x along W, y along
    H, origin at the image centre):

    * ``shift`` ``[B, 2]`` (x, y) translates it by that many output pixels (units of ``1/resolution``);
    * ``rotate`` ``[B]`` rotates it by that angle (radians) about the centre, after the shift:
      the new features at ``p`` are the old ones at ``rot(-angle)·p``, ``rot(a) = [[cos a, -sin a],
      [sin a, cos a]]`` — with y pointing down a positive angle turns the picture clockwise, and
      ``π/2`` is ``torch.rot90(x, -1, dims=(-2, -1))`` on the square grid.
    """

    def __init__(self, w_dim: int, channels: int, size: int, rate: float, bandwidth: float, resolution: int):
        super().__init__()
        self.size, self.rate, self.bandwidth, self.resolution = size, rate, bandwidth, resolution
        freqs = torch.randn(channels, 2)
        radii = freqs.norm(dim=1, keepdim=True)
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)
        self.affine = EqualLinear(w_dim, 4)
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.weight = nn.Parameter(torch.randn(channels, channels))

    def forward(self, w: torch.Tensor, shift: torch.Tensor | None = None,
                rotate: torch.Tensor | None = None) -> torch.Tensor:
        b = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # (cos, sin, tx, ty)
        c, s = t[:, 0], t[:, 1]
        rot = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)  # [B, 2, 2]
        freqs = self.freqs[None] @ rot  # [B, C, 2]
        offset = t[:, 2:]
        if shift is not None:
            offset = offset - shift.to(w.dtype) / self.resolution
        phases = self.phases[None] + (freqs @ offset[:, :, None])[..., 0]  # [B, C]
        if rotate is not None:  # f·(rot(-a)·p) = (rot(a)·f)·p: rotate the frequencies (rows) by a
            ca, sa = torch.cos(rotate).to(w.dtype), torch.sin(rotate).to(w.dtype)
            freqs = freqs @ torch.stack([torch.stack([ca, sa], 1), torch.stack([-sa, ca], 1)], 1)
        pos = (torch.arange(self.size, device=w.device, dtype=w.dtype) + 0.5 - self.size / 2) / self.rate
        gy, gx = torch.meshgrid(pos, pos, indexing="ij")
        grid = torch.stack([gx, gy], -1).view(1, -1, 2)  # [1, HW, 2]
        x = torch.sin(2 * math.pi * ((grid @ freqs.transpose(1, 2)) + phases[:, None]))  # [B, HW, C]
        amp = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.rate / 2 - self.bandwidth)).clamp(0, 1)
        x = x * amp[:, None]
        x = x @ (self.weight / math.sqrt(self.weight.shape[0])).t()
        return x.transpose(1, 2).reshape(b, -1, self.size, self.size)


@dataclass(frozen=True)
class Variant:
    """What a StyleGAN 3 configuration changes (the layer code is shared).

    Attributes:
        kernel: modulated-convolution kernel of the synthesis layers (``to_rgb``: always 1).
        radial: radially symmetric (jinc) down-sampling filters in the layers whose output
            is not critically sampled; separable Kaiser filters elsewhere.
        channel_mult: multiplier of ``channel_base`` and ``channel_max``.
    """

    kernel: int
    radial: bool
    channel_mult: int


#: ``t``: translation equivariant; ``r``: rotation equivariant (see the module docstring).
VARIANTS: dict[str, Variant] = {"t": Variant(kernel=3, radial=False, channel_mult=1),
                                "r": Variant(kernel=1, radial=True, channel_mult=2)}


class AliasFreeLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU between two index specs of :func:`layer_specs`.

    ``forward(x, w, update_emas=False)``: ``x [B, C_in, n_in, n_in]``, ``w [B, w_dim]`` →
    ``[B, C_out, n_out, n_out]`` (sizes ``spec["size"]``). ``update_emas`` first moves
    ``magnitude_ema ← lerp(mean(x²), magnitude_ema, ema_beta)``; the convolution is then
    scaled by ``1/sqrt(magnitude_ema)`` after the demodulation (the input gain).
    ``kernel``: convolution side (3 for config T, 1 for R).
    ``radial``: the down filter ``fd`` is the 2D radial :func:`jinc_lowpass` ``[6·down, 6·down]``
    unless the output is critically sampled (then, as always for T, the 1D :func:`kaiser_lowpass`).
    ``to_rgb``: ``1×1`` kernel, no demodulation (styles × ``1/sqrt(C_in)`` instead), the
    input gain, linear, no resampling.
    """

    def __init__(self, w_dim: int, spec_in: dict, spec_out: dict, *, to_rgb: bool = False, kernel: int = 3,
                 radial: bool = False, ema_beta: float = 0.999):
        super().__init__()
        cin, cout = spec_in["channels"], spec_out["channels"]
        self.to_rgb, self.kernel = to_rgb, 1 if to_rgb else kernel
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(cout, cin, self.kernel, self.kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.register_buffer("magnitude_ema", torch.ones(()))
        self.ema_beta = ema_beta
        self.weight_gain = 1 / math.sqrt(cin * self.kernel**2) if to_rgb else 1.0
        tmp_rate = max(spec_in["rate"], spec_out["rate"]) * (1 if to_rgb else 2)
        self.up, self.down = round(tmp_rate / spec_in["rate"]), round(tmp_rate / spec_out["rate"])
        up_taps = 6 * self.up if self.up > 1 and not to_rgb else 1
        down_taps = 6 * self.down if self.down > 1 and not to_rgb else 1
        self.register_buffer("fu", kaiser_lowpass(up_taps, spec_in["cutoff"], spec_in["half_width"] * 2, tmp_rate))
        design = jinc_lowpass if radial and down_taps > 1 and not spec_out["critical"] else kaiser_lowpass
        self.register_buffer("fd", design(down_taps, spec_out["cutoff"], spec_out["half_width"] * 2, tmp_rate))
        total = (spec_out["size"] - 1) * self.down + 1 - (spec_in["size"] + self.kernel - 1) * self.up + up_taps + down_taps - 2
        lo = (total + self.up) // 2
        self.padding = (lo, total - lo)

    def forward(self, x: torch.Tensor, w: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        if update_emas:
            with torch.no_grad():
                self.magnitude_ema.copy_(x.detach().float().square().mean().lerp(self.magnitude_ema, self.ema_beta))
        styles = self.affine(w)
        if self.to_rgb:
            styles = styles * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.to_rgb, padding=self.kernel - 1)
        x = x * torch.rsqrt(self.magnitude_ema).to(x.dtype)  # the input gain (the conv is linear in x)
        x = x + self.bias[None, :, None, None]
        if self.to_rgb:
            return filtered_lrelu(x, self.fu, self.fd, up=1, down=1, padding=self.padding, gain=1.0, slope=1.0)
        return filtered_lrelu(x, self.fu, self.fd, up=self.up, down=self.down, padding=self.padding)


class Synthesis3(nn.Module):
    """``ws [B, num_layers + 2, w_dim] → [B, img_channels, R, R]`` (alias-free): the Fourier
    input, ``L0 … L(num_layers - 1)`` and ``to_rgb`` (module docstring).

    ``config``: ``"t"`` or ``"r"`` (:data:`VARIANTS`); for ``"r"`` the feature maps are
    ``channel_mult``× those ``channel_base``/``channel_max`` give config T.
    """

    def __init__(self, w_dim: int, img_channels: int, resolution: int, num_layers: int, margin: int,
                 channel_base: int, channel_max: int, output_scale: float = 0.25, *, config: str = "t"):
        super().__init__()
        if config not in VARIANTS:
            raise ValueError(f"StyleGAN 3 config must be one of {', '.join(VARIANTS)}, not {config!r}")
        v = VARIANTS[config]
        specs = layer_specs(resolution, num_layers, margin, channel_base * v.channel_mult,
                            channel_max * v.channel_mult, img_channels=img_channels)
        self.specs, self.config = specs, config
        self.input = FourierInput(w_dim, specs[0]["channels"], specs[0]["size"], specs[0]["rate"], specs[0]["cutoff"],
                                  resolution)
        self.layers = nn.ModuleList(AliasFreeLayer(w_dim, specs[max(i - 1, 0)], specs[i], to_rgb=i == num_layers,
                                                   kernel=v.kernel, radial=v.radial)
                                    for i in range(num_layers + 1))
        self.num_ws, self.output_scale = num_layers + 2, output_scale

    def noise_shapes(self, **_: object) -> list[tuple[int, int]]:
        """None: StyleGAN 3 has no noise inputs (the same protocol as the other synthesis networks)."""
        return []

    def forward(self, ws: torch.Tensor, *, shift: torch.Tensor | None = None, rotate: torch.Tensor | None = None,
                update_emas: bool = False, noise: Sequence[torch.Tensor] | None = None, **_: object) -> torch.Tensor:
        """``shift`` ``[B, 2]`` (output pixels), ``rotate`` ``[B]`` (radians): transform the
        input features (see :class:`FourierInput`). ``update_emas``: move every layer's
        magnitude EMA (training, once per iteration). ``noise``: ``None`` or empty (no noise inputs)."""
        noise_inputs(noise, self.noise_shapes())
        x = self.input(ws[:, 0], shift, rotate)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i + 1], update_emas)
        return x * self.output_scale


def build(config: GANModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` of a :class:`~synthmed.generators.gan.config.GANModelConfig`."""
    mapping = MappingNetwork(config.z_dim, config.w_dim, config.mapping_layers)
    synthesis = Synthesis3(config.w_dim, config.img_channels, config.resolution, config.num_layers, config.margin,
                           config.sg3_channel_base, config.channel_max, config.sg3_output_scale,
                           config=config.sg3_config)
    disc = ResidualDiscriminator(config.img_channels, config.max_level, config.channel_base, config.channel_max,
                                 config.mbstd_group)
    return StyleGenerator(mapping, synthesis), disc


__all__ = ["VARIANTS", "AliasFreeLayer", "FourierInput", "Synthesis3", "Variant", "build", "layer_specs"]
