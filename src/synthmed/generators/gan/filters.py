"""FIR filters and resampling in pure PyTorch (no compiled kernels).

A filter is either *separable* — a 1D float32 tensor ``f`` of taps applied along W then H
(the fast path) — or *non-separable* — a square 2D float32 tensor ``f [n, n]`` (rows: H,
columns: W) applied as one depthwise 2D correlation with the flipped taps. Sizes
follow the ``upfirdn`` convention: up-sampling by ``up`` inserts ``up - 1`` zeros after each
sample (``n → n·up``), the result is padded by ``(pad_lo, pad_hi)`` per side, filtered
("valid" convolution) and every ``down``-th sample is kept::

    out = ceil((n·up + pad_lo + pad_hi - len(f) + 1) / down)

with ``len(f)`` the side of ``f`` for a 2D filter.

Separable filtering runs either as depthwise convolutions over the zero-inserted input (the
reference; used on GPUs) or, on CPUs, as two products with the banded matrices of the same
1D operators (:func:`upfirdn2d`'s ``impl``).

Designs: :func:`binomial` (StyleGAN 2's ``[1, 3, 3, 1]``), :func:`kaiser_lowpass`
(separable windowed sinc with a Kaiser window, StyleGAN 3 config T's alias-free filters) and
:func:`jinc_lowpass` (radially symmetric windowed jinc, config R's down-sampling filters).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F


def binomial(taps: int = 4) -> torch.Tensor:
    """Normalised binomial filter of ``taps`` taps (``[1, 3, 3, 1] / 8`` for 4)."""
    f = np.array([math.comb(taps - 1, k) for k in range(taps)], np.float64)
    return torch.tensor(f / f.sum(), dtype=torch.float32)


def kaiser_beta(numtaps: int, width: float) -> float:
    """Kaiser window β for a transition band ``width`` (fraction of Nyquist) with ``numtaps`` taps
    (Kaiser's empirical attenuation and β formulas)."""
    atten = 2.285 * (numtaps - 1) * math.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def kaiser_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> torch.Tensor:
    """Windowed-sinc low-pass: cutoff ``cutoff`` and transition ``width`` (both in the units of
    the sampling rate ``fs``), normalised to unit DC gain. ``numtaps == 1`` → identity."""
    if numtaps == 1:
        return torch.ones(1)
    n = np.arange(numtaps) - (numtaps - 1) / 2
    fc = 2 * cutoff / fs  # cutoff as a fraction of Nyquist
    h = fc * np.sinc(fc * n) * np.kaiser(numtaps, kaiser_beta(numtaps, 2 * width / fs))
    return torch.tensor(h / h.sum(), dtype=torch.float32)


def radial_kaiser(numtaps: int, beta: float) -> np.ndarray:
    """``[numtaps, numtaps]`` radial Kaiser window ``I0(β·√(1 - (r/ρ)²)) / I0(β)`` for ``r ≤ ρ``,
    0 outside, with ``r`` the distance of a tap from the centre and ``ρ = numtaps / 2`` (in
    taps): a Kaiser window turned about the centre, its support the disk inscribed in the
    ``numtaps × numtaps`` square of the filter (corner taps are 0)."""
    n = np.arange(numtaps) - (numtaps - 1) / 2
    r = np.hypot(*np.meshgrid(n, n, indexing="ij")) / (numtaps / 2)
    return np.where(r <= 1, np.i0(beta * np.sqrt(np.clip(1 - r * r, 0, None))) / np.i0(beta), 0.0)


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> torch.Tensor:
    """Radially symmetric 2D low-pass ``[numtaps, numtaps]``: the ideal disk low-pass of radius
    ``cutoff`` (its impulse response, the *jinc* ``J1(2π·cutoff·r) / (π·r)`` at the tap
    positions ``r = |(i, j) - centre| / fs``) times :func:`radial_kaiser` with the β that
    :func:`kaiser_lowpass` uses for the same ``numtaps`` and transition ``width``; unit DC gain.
    ``cutoff``, ``width`` in the units of ``fs``. Invariant under 90° rotations and transposition
    (and, up to the grid, any rotation). ``numtaps == 1`` → ``[[1.]]`` (identity)."""
    if numtaps == 1:
        return torch.ones(1, 1)
    n = torch.arange(numtaps, dtype=torch.float64) - (numtaps - 1) / 2
    r = torch.hypot(n[:, None], n[None, :]) / fs
    safe = torch.where(r > 0, r, torch.ones_like(r))
    # J1(x)/x → 1/2 at 0: the centre tap (odd numtaps) is the limit ``cutoff``
    h = torch.where(r > 0, torch.special.bessel_j1(2 * math.pi * cutoff * safe) / (math.pi * safe),
                    torch.full_like(r, cutoff))
    h = h.numpy() * radial_kaiser(numtaps, kaiser_beta(numtaps, 2 * width / fs))
    return torch.tensor(h / h.sum(), dtype=torch.float32)


def _filter_axis(x: torch.Tensor, f: torch.Tensor, dim: int) -> torch.Tensor:
    """Valid depthwise correlation of ``[B, C, H, W]`` with the flipped 1D ``f`` along ``dim`` (2: H, 3: W)."""
    c = x.shape[1]
    taps = f.flip(0).to(x.dtype)
    kernel = taps.view(1, 1, -1, 1) if dim == 2 else taps.view(1, 1, 1, -1)
    return F.conv2d(x, kernel.expand(c, 1, *kernel.shape[2:]).contiguous(), groups=c)


def _upfirdn_axis(x: torch.Tensor, f: torch.Tensor, up: int, down: int, padding: tuple[int, int],
                  dim: int) -> torch.Tensor:
    """Along ``dim`` (2: H, 3: W) of ``[B, C, H, W]``: insert ``up - 1`` zeros after each sample,
    pad by ``padding`` (negative: crop), correlate with the flipped 1D ``f`` and keep every
    ``down``-th sample."""
    x = x.movedim(dim, -1)
    if up > 1:
        x = F.pad(x[..., None], (0, up - 1)).flatten(-2)
    lo, hi = padding
    x = F.pad(x, (max(lo, 0), max(hi, 0)))
    x = x[..., max(-lo, 0) : x.shape[-1] - max(-hi, 0)]
    x = _filter_axis(x, f.to(x.device), 3)
    return (x[..., ::down] if down > 1 else x).movedim(-1, dim)


def _upfirdn_conv(x: torch.Tensor, f: torch.Tensor, up: int, down: int, padding: tuple[int, int],
                  gain: float) -> torch.Tensor:
    """:func:`upfirdn2d` by zero insertion, padding and depthwise convolutions (the reference)."""
    if f.ndim == 2:  # non-separable: one depthwise correlation, strided (only the kept samples)
        b, c, h, w = x.shape
        if up > 1:
            x = F.pad(x.reshape(b, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(b, c, h * up, w * up)
        lo, hi = padding
        x = F.pad(x, (max(lo, 0), max(hi, 0), max(lo, 0), max(hi, 0)))
        x = x[:, :, max(-lo, 0) : x.shape[2] - max(-hi, 0), max(-lo, 0) : x.shape[3] - max(-hi, 0)]
        kernel = f.to(x.device).flip(0, 1).to(x.dtype)[None, None].expand(c, 1, *f.shape).contiguous()
        x = F.conv2d(x, kernel, stride=down, groups=c)
    else:
        x = _upfirdn_axis(_upfirdn_axis(x, f, up, down, padding, 3), f, up, down, padding, 2)
    return x * gain if gain != 1.0 else x


@functools.lru_cache(maxsize=256)
def _axis_operator(n: int, taps: tuple[float, ...], up: int, down: int, padding: tuple[int, int],
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[n_out, n]`` matrix of the 1D operator of :func:`_upfirdn_axis` on ``n`` samples (that
    path applied to each unit vector, in float64: the two are the same map)."""
    basis = torch.eye(n, dtype=torch.float64)[:, None, None, :]  # [n, 1, 1, n]: unit vectors along W
    columns = _upfirdn_axis(basis, torch.tensor(taps, dtype=torch.float64), up, down, padding, 3)
    return columns[:, 0, 0, :].T.contiguous().to(dtype=dtype, device=device)


def _upfirdn_matmul(x: torch.Tensor, f: torch.Tensor, up: int, down: int, padding: tuple[int, int],
                    gain: float) -> torch.Tensor:
    """Separable :func:`upfirdn2d` as two matrix products ``A_H · x · A_Wᵀ`` with the banded
    operators of :func:`_axis_operator`: zero insertion, padding and down-sampling are folded in,
    so no zero is stored or multiplied and only the kept samples are computed."""
    taps = tuple(f.tolist())
    a_h = _axis_operator(x.shape[2], taps, up, down, padding, x.dtype, x.device)
    a_w = _axis_operator(x.shape[3], taps, up, down, padding, x.dtype, x.device)
    x = a_h @ x @ a_w.T
    return x * gain if gain != 1.0 else x


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1, padding: tuple[int, int] = (0, 0),
              gain: float = 1.0, impl: str = "auto") -> torch.Tensor:
    """Up-sample (zero insertion), pad, FIR-filter, down-sample ``[B, C, H, W]`` (module docstring).

    ``f``: 1D taps ``[n]`` (separable, along W then H) or 2D taps ``[n, n]`` (non-separable;
    the correlation is strided by ``down`` rather than computed everywhere and subsampled).

    ``gain`` scales the output; up-sampling by ``up`` needs ``gain = up²`` to keep the
    mean (the zeros dilute it), which the resampling helpers pass.

    ``impl`` (separable filters): ``conv`` — depthwise convolutions over the zero-inserted,
    padded input (the reference); ``matmul`` — two products with the banded matrices of the
    same 1D operators (several times faster on CPUs, where depthwise convolutions with long
    1D kernels are slow; the operators are cached by size); ``auto`` — ``matmul`` on the CPU,
    ``conv`` elsewhere. Both give the same values up to float rounding (tested).
    """
    if impl not in ("auto", "conv", "matmul"):
        raise ValueError(f"impl must be auto, conv or matmul, not {impl!r}")
    if f.ndim == 1 and (impl == "matmul" or (impl == "auto" and x.device.type == "cpu")):
        return _upfirdn_matmul(x, f, up, down, padding, gain)
    return _upfirdn_conv(x, f, up, down, padding, gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """``[B, C, H, W] → [B, C, up·H, up·W]`` with the low-pass ``f`` (mean preserved)."""
    p = len(f) - up
    return upfirdn2d(x, f, up=up, padding=((p + 1) // 2 + up - 1, p // 2), gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """``[B, C, H, W] → [B, C, H/down, W/down]`` after the low-pass ``f``."""
    p = len(f) - down
    return upfirdn2d(x, f, down=down, padding=((p + 1) // 2, p // 2))


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor, *, up: int, down: int,
                   padding: tuple[int, int], gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: float | None = None) -> torch.Tensor:
    """Alias-free non-linearity (StyleGAN 3): up-sample by ``up`` with ``fu``, leaky ReLU
    (× ``gain``, optional clamp) at the high sampling rate, low-pass ``fd`` and down-sample by
    ``down``. All padding is applied before ``fu`` (``upfirdn`` sizes: with
    ``pad_lo + pad_hi = (out - 1)·down + 1 - n·up + len(fu) + len(fd) - 2`` the output has ``out`` samples).
    Either filter may be 1D (separable) or 2D ``[n, n]`` (e.g. config R's radial ``fd``).
    """
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up * up)
    x = F.leaky_relu(x, slope) * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)
