"""Properties of the shared GAN blocks: equalized LR, demodulation, FIR design (separable
Kaiser, radial jinc), fade-in, translation and rotation equivariance, R1, ADA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthmed.parallel import torch_threads
from synthmed.generators.gan import losses
from synthmed.generators.gan.ada import AugmentPipe
from synthmed.generators.gan.filters import (binomial, downsample2d, filtered_lrelu, jinc_lowpass, kaiser_lowpass,
                                             upfirdn2d, upsample2d)
from synthmed.generators.gan.layers import (EqualConv2d, EqualLinear, MappingNetwork, NoiseInjection, StyleGenerator,
                                            modulated_conv2d, modulated_conv2d_loop)
from synthmed.generators.gan.networks_progan import ProGANGenerator, ProgressiveDiscriminator, growth, upscale
from synthmed.generators.gan.networks_stylegan1 import Synthesis1
from synthmed.generators.gan.networks_stylegan2 import Synthesis2
from synthmed.generators.gan.networks_stylegan3 import Synthesis3
from synthmed.training.seeding import GeneratorDraws, StepRandom


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription."""
    with torch_threads(1):
        yield


def test_demodulated_conv_keeps_unit_variance_and_grouped_equals_loop():
    torch.manual_seed(0)
    x = torch.randn(8, 64, 16, 16)
    weight, styles = torch.randn(32, 64, 3, 3) * 3, torch.rand(8, 64) * 4 + 0.1
    y = modulated_conv2d(x, weight, styles, demodulate=True)
    assert y.shape == (8, 32, 14, 14) and abs(y.std().item() - 1) < 0.05
    assert all(abs(y[i].std().item() - 1) < 0.1 for i in range(8))  # per sample, whatever its style
    assert abs(modulated_conv2d(x, weight, styles, demodulate=False).std().item() - 1) > 1  # without: not unit
    torch.testing.assert_close(y, modulated_conv2d_loop(x, weight, styles), atol=1e-4, rtol=1e-4)
    for grouped in (True, False):  # both one-call implementations equal the per-sample loop
        for demod in (True, False):
            torch.testing.assert_close(modulated_conv2d(x[:3], weight, styles[:3], demodulate=demod, padding=1, grouped=grouped),
                                       modulated_conv2d_loop(x[:3], weight, styles[:3], demodulate=demod, padding=1),
                                       atol=1e-3, rtol=1e-4)


def test_equalized_layers_scale_by_the_he_constant_at_run_time():
    torch.manual_seed(0)
    lin, conv = EqualLinear(50, 20, lr_mul=0.1), EqualConv2d(6, 4, 3)
    assert abs(lin.weight.std().item() * 0.1 - 1) < 0.1 and abs(conv.weight.std().item() - 1) < 0.2  # stored ~N(0,1)/lr_mul
    x = torch.randn(3, 50)
    torch.testing.assert_close(lin(x), x @ (lin.weight * 0.1 / math.sqrt(50)).t() + lin.bias * 0.1)
    with torch.no_grad():
        lin.weight.mul_(2)  # a change of the stored weight acts through the run-time scale
        lin.bias.zero_()
    torch.testing.assert_close(lin(x), x @ (lin.weight * 0.1 / math.sqrt(50)).t())
    img = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(conv(img), F.conv2d(img, conv.weight / math.sqrt(6 * 9), conv.bias, padding=1))
    # the gradient reaching the stored weight is scaled by the same constant
    conv(img).sum().backward()
    w = conv.weight.detach().clone().requires_grad_(True)
    F.conv2d(img, w, padding=1).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad / math.sqrt(6 * 9))


def test_fir_design_matches_scipy_and_resampling_keeps_constants():
    signal = pytest.importorskip("scipy.signal")
    for taps, cutoff, width, fs in ((12, 4, 4, 32), (13, 5.5, 3, 64), (24, 8, 10, 64)):
        torch.testing.assert_close(kaiser_lowpass(taps, cutoff, width, fs).double(),
                                   torch.tensor(signal.firwin(taps, cutoff, width=width, fs=fs)), atol=1e-6, rtol=0)
    ones = torch.ones(1, 2, 8, 8)
    for f in (binomial(4), kaiser_lowpass(12, 4, 4, 32)):
        up, down = upsample2d(ones, f), downsample2d(ones, f)
        assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
        c = len(f)
        torch.testing.assert_close(up[..., c:-c, c:-c], torch.ones_like(up[..., c:-c, c:-c]))


def _response(f: torch.Tensor, fs: float, radius: float, angle: float) -> float:
    """``|H(u)|`` of the 2D taps ``f`` at the frequency of that radius and angle (units of ``fs``)."""
    n = torch.arange(f.shape[0], dtype=torch.float64) - (f.shape[0] - 1) / 2
    u, v = radius * math.cos(angle), radius * math.sin(angle)
    return float((f.double() * torch.exp(-2j * math.pi * (u * n[None, :] + v * n[:, None]) / fs)).sum().abs())


def test_jinc_lowpass_is_radial_matches_the_bessel_formula_and_passes_all_orientations_alike():
    special, signal = pytest.importorskip("scipy.special"), pytest.importorskip("scipy.signal")
    for taps, cutoff, width, fs in ((12, 4, 4, 32), (9, 5.5, 3, 32), (24, 8, 10, 64)):
        f = jinc_lowpass(taps, cutoff, width, fs)
        assert f.shape == (taps, taps) and f.dtype == torch.float32
        torch.testing.assert_close(f, torch.rot90(f, 1).T, atol=1e-7, rtol=0)  # 90° rotation, then transpose
        torch.testing.assert_close(f, torch.rot90(f, 1), atol=1e-7, rtol=0)
        torch.testing.assert_close(f, f.flip(0), atol=1e-7, rtol=0)
        assert abs(f.double().sum().item() - 1) < 1e-6  # unit DC gain
        # reference: J1(2π·fc·r)/(π·r) (limit fc at r = 0) × radial Kaiser, β from scipy
        n = np.arange(taps) - (taps - 1) / 2
        r = np.hypot(*np.meshgrid(n, n)) / fs
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(r > 0, special.j1(2 * np.pi * cutoff * r) / (np.pi * r), cutoff)
        beta = signal.kaiser_beta(signal.kaiser_atten(taps, width / (fs / 2)))
        rho = np.hypot(*np.meshgrid(n, n)) / (taps / 2)
        h = h * np.where(rho <= 1, special.i0(beta * np.sqrt(np.clip(1 - rho**2, 0, None))) / special.i0(beta), 0)
        torch.testing.assert_close(f.double(), torch.tensor(h / h.sum()), atol=1e-6, rtol=0)
        # the response depends on the radius only (up to the grid); the separable Kaiser's does not
        sep = torch.outer(kaiser_lowpass(taps, cutoff, width, fs), kaiser_lowpass(taps, cutoff, width, fs))
        angles = [k * math.pi / 16 for k in range(5)]  # 0 … 45°
        radial = [_response(f, fs, cutoff, a) for a in angles]
        separable = [_response(sep, fs, cutoff, a) for a in angles]
        assert max(radial) - min(radial) < 0.02 and max(separable) - min(separable) > 0.1, (radial, separable)
        assert _response(f, fs, cutoff / 2, 0) > 0.75 and _response(f, fs, cutoff + width, math.pi / 4) < 0.05
    torch.testing.assert_close(jinc_lowpass(1, 4, 4, 32), torch.ones(1, 1))


@pytest.mark.parametrize("kw", [dict(), dict(padding=(2, 3)), dict(down=2, padding=(5, 5)),
                                dict(up=2, padding=(6, 5), gain=4.0), dict(up=2, down=2, padding=(-3, 7)),
                                dict(up=4, down=2, padding=(7, -2))])
def test_matmul_resampling_equals_the_convolution_reference(kw):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 17, dtype=torch.float64)
    for f in (binomial(4), kaiser_lowpass(12, 4, 4, 32)):
        ref = upfirdn2d(x, f, impl="conv", **kw)
        out = upfirdn2d(x, f, impl="matmul", **kw)
        assert out.shape == ref.shape and out.dtype == torch.float64
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    assert upfirdn2d(x.float(), f, **kw).dtype == torch.float32  # auto: the matmul path on the CPU
    torch.testing.assert_close(upfirdn2d(x.float(), f, **kw), ref.float(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="impl"):
        upfirdn2d(x, f, impl="fft")


def test_non_separable_path_equals_the_separable_one_for_an_outer_product():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 20, 20)
    k = kaiser_lowpass(12, 4, 4, 32)
    k2 = torch.outer(k, k)
    for kw in (dict(down=2, padding=(5, 5)), dict(up=2, padding=(6, 5), gain=4.0), dict(padding=(2, 3))):
        torch.testing.assert_close(upfirdn2d(x, k2, **kw), upfirdn2d(x, k, impl="conv", **kw), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(filtered_lrelu(x, k, k2, up=2, down=2, padding=(11, 11)),
                               filtered_lrelu(x, k, k, up=2, down=2, padding=(11, 11)), atol=1e-6, rtol=1e-5)


def test_progressive_fade_in_at_alpha_zero_is_the_lower_resolution():
    torch.manual_seed(0)
    g, d = ProGANGenerator(16, 5, 2, 64, 16), ProgressiveDiscriminator(5, 2, 64, 16)
    z = torch.randn(3, 16)
    low = g(z, level=1, alpha=1.0)
    assert low.shape == (3, 5, 8, 8)
    torch.testing.assert_close(g(z, level=2, alpha=0.0), upscale(low))
    assert not torch.allclose(g(z, level=2, alpha=0.5), upscale(low))
    x = torch.randn(3, 5, 16, 16)
    torch.testing.assert_close(d(x, level=2, alpha=0.0), d(F.avg_pool2d(x, 2), level=1, alpha=1.0))
    s1 = Synthesis1(16, 5, 2, 64, 16)
    ws = torch.randn(3, s1.num_ws, 16)
    torch.testing.assert_close(s1(ws, level=2, alpha=0.0), upscale(s1(ws, level=1)))
    # the schedule: level 0, then fade-in / stable phases per level, then the last level
    assert [growth(s, 2, 2) for s in range(0, 12, 1)][:9] == [
        (0, 1.0), (0, 1.0), (1, 0.0), (1, 0.5), (1, 1.0), (1, 1.0), (2, 0.0), (2, 0.5), (2, 1.0)]
    assert growth(100, 2, 2) == (2, 1.0) and growth(5, 0, 3) == (3, 1.0)


@torch.no_grad()
def test_explicit_noise_maps_replace_the_drawn_ones_and_change_nothing_else():
    """Synthesis 1 and 2 take one explicit noise map per noise layer (projection optimises them):
    the maps a generator would draw, given explicitly, give the drawn output bit for bit; the
    weights' names are those of a network without the option; a wrong map count or shape is
    refused; StyleGAN 3 has none."""
    torch.manual_seed(0)
    for synthesis, kwargs in ((Synthesis2(16, 5, 2, 64, 16), {}), (Synthesis1(16, 5, 2, 64, 16), {"level": 1})):
        for module in synthesis.modules():
            if hasattr(module, "noise") and module.noise is not None:
                module.noise.weight.data.fill_(0.5)  # trained networks have non-zero noise strengths
        ws = torch.randn(3, synthesis.num_ws, 16)
        shapes = synthesis.noise_shapes(**kwargs)
        drawn = synthesis(ws, draws=GeneratorDraws(torch.Generator().manual_seed(7)), **kwargs)
        gen = torch.Generator().manual_seed(7)
        maps = [torch.randn((3, 1, *shape), generator=gen) for shape in shapes]  # the draw order: layer order
        assert torch.equal(synthesis(ws, noise=maps, **kwargs), drawn)
        assert not torch.equal(synthesis(ws, noise=[m * 2 for m in maps], **kwargs), drawn)
        assert not any("noise_map" in k for k in synthesis.state_dict())
        with pytest.raises(ValueError, match="noise maps"):
            synthesis(ws, noise=maps[:-1], **kwargs)
        with pytest.raises(ValueError, match="noise map 0"):
            synthesis(ws, noise=[m[..., :2] for m in maps], **kwargs)
    assert Synthesis2(16, 5, 2, 64, 16).noise_shapes() == [(4, 4), (8, 8), (8, 8), (16, 16), (16, 16)]
    assert Synthesis1(16, 5, 2, 64, 16).noise_shapes(level=1) == [(4, 4), (4, 4), (8, 8), (8, 8)]
    s3 = Synthesis3(16, 5, 16, 4, 2, 128, 16, 1.0)
    assert s3.noise_shapes() == []
    with pytest.raises(ValueError, match="expected 0 noise maps"):
        s3(torch.randn(1, s3.num_ws, 16), noise=[torch.zeros(1, 1, 4, 4)])


def test_a_generator_passed_as_generator_is_refused_not_ignored():
    """The synthesis networks accept and ignore keywords they do not use, so a ``generator=`` of
    the old API would give a noise-free image without a word: the style generator refuses it."""
    net = StyleGenerator(MappingNetwork(16, 16, 2), Synthesis2(16, 5, 2, 64, 16))
    z = torch.randn(2, 16)
    with pytest.raises(TypeError, match="draws="):
        net(z, generator=torch.Generator().manual_seed(0))
    assert net(z, draws=GeneratorDraws(torch.Generator().manual_seed(0))).shape == (2, 5, 16, 16)


def _fourier_shift(x: torch.Tensor, dx: float) -> torch.Tensor:
    """Band-limited (periodic) translation of ``[…, H, W]`` by ``dx`` pixels along W."""
    fx = torch.fft.fftfreq(x.shape[-1])
    return torch.fft.ifft(torch.fft.fft(x, dim=-1) * torch.exp(-2j * math.pi * fx * dx), dim=-1).real


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (peak 2, i.e. a [-1, 1] signal range) after scaling both by ``a``'s std."""
    s = a.std()
    return float(10 * torch.log10(4 / ((a - b) / s).square().mean()))


@torch.no_grad()
def test_stylegan3_is_more_translation_equivariant_than_stylegan2():
    """EQ-T: translate the input by half an output pixel (Fourier features: exact phase
    shift; StyleGAN 2: band-limited shift of its 4×4 constant), compare with the translated
    output on the central 16×16 (band-limited shift of the reference). Configs T and R. Four
    styles per random network: single samples of a random StyleGAN 3 range from about 37 to
    62 dB (StyleGAN 2: 28 to 34)."""
    res, d, crop, n = 32, 0.5, 8, 4
    for seed in (0, 1):
        torch.manual_seed(seed)
        sg3, sg2 = Synthesis3(32, 5, res, 6, 4, 256, 32).eval(), Synthesis2(32, 5, 3, 256, 32).eval()
        ws3, ws2 = torch.randn(n, sg3.num_ws, 32), torch.randn(n, sg2.num_ws, 32)
        ref3, out3 = sg3(ws3), sg3(ws3, shift=torch.tensor([[d, 0.0]] * n))
        ref2, out2 = sg2(ws2), sg2(ws2, const=_fourier_shift(sg2.const, d * 4 / res))
        c = slice(crop, -crop)
        psnr3 = _psnr(_fourier_shift(ref3, d)[..., c, c], out3[..., c, c])
        psnr2 = _psnr(_fourier_shift(ref2, d)[..., c, c], out2[..., c, c])
        assert psnr3 > psnr2 + 10, (psnr3, psnr2)
        sgr = Synthesis3(32, 5, res, 6, 4, 256, 32, config="r").eval()  # config R keeps EQ-T
        ref_r, out_r = sgr(ws3), sgr(ws3, shift=torch.tensor([[d, 0.0]] * n))
        assert _psnr(_fourier_shift(ref_r, d)[..., c, c], out_r[..., c, c]) > psnr2 + 10


def _lanczos(t: torch.Tensor, a: int) -> torch.Tensor:
    return torch.where(t.abs() < a, torch.sinc(t) * torch.sinc(t / a), torch.zeros_like(t))


def _rotated_disk(x: torch.Tensor, angle: float, radius: float, a: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, C, H, W]`` rotated by ``angle`` (the convention of ``Synthesis3(rotate=…)``: the
    new image at ``p`` is the old one at ``rot(-angle)·p``, pixel centres about the image
    centre) by Lanczos-``a`` interpolation, at the pixels of the central disk of ``radius``:
    ``([B, C, P], disk mask [H, W])``."""
    h = x.shape[-1]
    c = torch.arange(h, dtype=torch.float64) + 0.5 - h / 2
    py, px = torch.meshgrid(c, c, indexing="ij")
    disk = px.square() + py.square() <= radius**2
    px, py = px[disk], py[disk]
    ca, sa = math.cos(angle), math.sin(angle)
    wx, wy = _lanczos(ca * px + sa * py - c[:, None], a).T, _lanczos(-sa * px + ca * py - c[:, None], a).T
    return torch.einsum("bchw,ph,pw->bcp", x.double(), wy, wx).float(), disk


@torch.no_grad()
def test_stylegan3_config_r_is_more_rotation_equivariant_than_config_t():
    """EQ-R: rotate the input Fourier features (exact: the frequencies turn), compare with the
    rotated output. 90°: exact on the pixel grid (``rot90``); config R (1×1 kernels, symmetric
    filters) is equivariant to float precision, T (3×3 kernels) is not. 0.3 and 0.8 rad: both
    outputs low-passed by the same radial jinc (it commutes with rotations) to half the
    Nyquist rate, the reference rotated by Lanczos interpolation, compared on the central disk."""
    res = 32
    blur = jinc_lowpass(9, res / 4, res / 8, res)
    psnr = {}
    for config in ("t", "r"):
        for seed in (0, 1):
            torch.manual_seed(seed)
            g = Synthesis3(32, 5, res, 6, 4, 256, 32, config=config).eval()
            ws = torch.randn(2, g.num_ws, 32)
            ref = g(ws)
            out = g(ws, rotate=torch.full((2,), math.pi / 2))
            psnr[config, seed, 90] = _psnr(torch.rot90(ref, -1, dims=(-2, -1)), out)
            for angle in (0.3, 0.8):
                out = upfirdn2d(g(ws, rotate=torch.full((2,), angle)), blur, padding=(4, 4))
                rotated, disk = _rotated_disk(upfirdn2d(ref, blur, padding=(4, 4)), angle, 8)
                psnr[config, seed, angle] = _psnr(rotated, out[..., disk])
            same, disk = _rotated_disk(ref, 0.0, 8)  # the helper is exact at angle 0
            torch.testing.assert_close(same, ref[..., disk])
    for seed in (0, 1):
        assert psnr["r", seed, 90] > 100 and psnr["t", seed, 90] < 20, psnr
        for angle in (0.3, 0.8):
            assert psnr["r", seed, angle] > 40 and psnr["r", seed, angle] > psnr["t", seed, angle] + 20, psnr


def test_stylegan3_config_r_layers_have_1x1_kernels_radial_down_filters_and_twice_the_channels():
    torch.manual_seed(0)
    t, r = Synthesis3(32, 5, 32, 6, 4, 256, 32), Synthesis3(32, 5, 32, 6, 4, 256, 32, config="r")
    assert [s["channels"] for s in t.specs[:-1]] == [min(round(256 / 2 / s["cutoff"]), 32) for s in t.specs[:-1]]
    assert [s["channels"] for s in r.specs[:-1]] == [min(round(512 / 2 / s["cutoff"]), 64) for s in t.specs[:-1]]
    assert r.specs[-1]["channels"] == t.specs[-1]["channels"] == 5
    for lt, lr in zip(t.layers, r.layers):
        assert lr.weight.shape[-2:] == (1, 1) and lt.weight.shape[-1] == (1 if lt.to_rgb else 3)
        assert lt.fd.ndim == 1 and torch.equal(lt.fu, lr.fu)  # up filters: separable Kaiser in both
    critical = [spec["critical"] for spec in r.specs[1:]]
    assert critical == [False, False, False, True, True, True]
    # L0 (index 0 → 0) and L1-L3 down-sample to a non-critical rate: jinc; the rest are critically sampled
    assert [layer.fd.ndim for layer in r.layers] == [2, 2, 2, 2, 1, 1, 1]
    with pytest.raises(ValueError, match="config"):
        Synthesis3(32, 5, 32, 6, 4, 256, 32, config="q")


def test_r1_equals_an_autograd_reference_and_backpropagates():
    torch.manual_seed(0)
    d = ProgressiveDiscriminator(5, 1, 32, 16, mbstd_group=1)  # group 1: samples independent
    real = torch.randn(3, 5, 8, 8, requires_grad=True)
    r1 = losses.r1_penalty(d(real), real)
    jac = torch.autograd.functional.jacobian(lambda x: d(x).squeeze(1), real.detach())  # [B, B, C, H, W]
    ref = torch.stack([jac[i, i].square().sum() for i in range(3)])
    torch.testing.assert_close(r1, ref, rtol=1e-4, atol=1e-6)
    r1.sum().backward()
    grads = [p.grad for p in d.parameters() if p.grad is not None]  # (biases of the last layer get none)
    assert len(grads) > 5 and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_path_length_is_the_norm_of_the_jacobian_transpose_product():
    ws = torch.randn(2, 3, 4, requires_grad=True)
    a = torch.randn(4, 16)
    fake = (ws.sum(1) @ a).view(2, 1, 4, 4)  # linear in ws: J^T y = a·y, the same for every layer
    noise = torch.randn(2, 1, 4, 4)
    lengths = losses.path_length(fake, ws, noise)
    ref = ((noise.view(2, 16) / 4) @ a.t()).square().sum(1).sqrt()
    torch.testing.assert_close(lengths, ref)


def test_ada_p_follows_the_overfitting_heuristic():
    pipe = AugmentPipe(4, target=0.6, speed_kimg=0.01)  # 10 images move p from 0 to 1
    for _ in range(4):
        pipe.accumulate(torch.full((2, 1), 3.0))  # D confident on every real: r_t = 1 > 0.6
    assert pipe.update() == 1.0 and pipe.p.item() == pytest.approx(0.8)
    pipe.accumulate(torch.tensor([[1.0], [-1.0], [-2.0], [0.5]]))  # r_t = 0 < 0.6
    assert pipe.update() == 0.0 and pipe.p.item() == pytest.approx(0.4)
    assert pipe.update() is None and pipe.p.item() == pytest.approx(0.4)  # no new statistics
    fixed = AugmentPipe(4, p=0.3, adaptive=False)
    fixed.accumulate(torch.ones(8, 1))
    fixed.update()
    assert fixed.p.item() == pytest.approx(0.3)


def test_ada_geometry_is_shared_and_colour_spares_the_label_channel():
    torch.manual_seed(0)
    pattern = torch.randn(6, 1, 16, 16).tanh()
    levels = torch.tensor([-1, -1 / 3, 1 / 3, 1.0])
    x = torch.cat([pattern.repeat(1, 4, 1, 1), pattern], 1).requires_grad_(True)  # images = label = pattern
    pipe = AugmentPipe(4, p=1.0, mirror=False)
    y = pipe(x, GeneratorDraws(torch.Generator().manual_seed(1)))
    assert y.shape == x.shape and not torch.allclose(y, x)
    for i in range(6):  # colour ops are affine per sample: each image channel is a·label + b
        img, lab = y[i, 0].flatten(), y[i, 4].flatten()
        assert torch.corrcoef(torch.stack([img, lab]))[0, 1] > 0.999
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0  # differentiable
    const = torch.cat([torch.zeros(2, 4, 8, 8), torch.full((2, 1, 8, 8), float(levels[2]))], 1)
    out = pipe(const, GeneratorDraws(torch.Generator().manual_seed(2)))
    torch.testing.assert_close(out[:, 4], const[:, 4])  # a label level survives geometry and colour
    assert not torch.allclose(out[:, :4], const[:, :4])
    mirror = AugmentPipe(4, p=0.0, mirror=True)(pattern.repeat(1, 5, 1, 1),
                                              GeneratorDraws(torch.Generator().manual_seed(0)))
    flipped = [torch.allclose(mirror[i], pattern[i].repeat(5, 1, 1).flip(-1), atol=1e-5) for i in range(6)]
    kept = [torch.allclose(mirror[i], pattern[i].repeat(5, 1, 1), atol=1e-5) for i in range(6)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def _by_rank(f, x: torch.Tensor, seed: int = 3, step: int = 9) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``f(x, draws)`` by one process on the whole batch, and by each rank of two on its half."""
    whole = f(x, StepRandom(seed, step).stream())
    h = x.shape[0] // 2
    return whole, [f(x[r * h : (r + 1) * h], StepRandom(seed, step, rank=r, world_size=2).stream()) for r in range(2)]


@torch.no_grad()
def test_noise_and_augmentation_draws_do_not_depend_on_the_world_size():
    """Noise inputs and ADA draw from a training step's stream: two ranks on half batches draw
    the rows one process draws on the whole batch, and their local samples get different noise
    and transforms (the same local images on both ranks come out different)."""
    torch.manual_seed(0)
    noise = NoiseInjection(3)
    noise.weight.data.fill_(0.5)
    x = torch.randn(4, 3, 8, 8)
    twin = torch.cat([x[:2], x[:2]])  # rank 0 and rank 1 hold the same local images
    whole, parts = _by_rank(noise, x)
    assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(*_by_rank(noise, twin)[1])
    pipe = AugmentPipe(4, p=1.0, mirror=True)
    images = torch.randn(4, 5, 16, 16).tanh()
    for real in (True, False):
        whole, parts = _by_rank(lambda v, d: pipe(v, d, real=real), images)
        torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-6)
        twins = _by_rank(lambda v, d: pipe(v, d, real=real), torch.cat([images[:2], images[:2]]))[1]
        assert not torch.allclose(*twins)
    synthesis = Synthesis2(16, 5, 2, 64, 16)
    for module in synthesis.modules():
        if isinstance(module, NoiseInjection):
            module.weight.data.fill_(0.5)
    ws = torch.randn(4, synthesis.num_ws, 16)
    whole, parts = _by_rank(lambda w, d: synthesis(w, draws=d), ws)
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-5)
    assert not torch.allclose(*_by_rank(lambda w, d: synthesis(w, draws=d), torch.cat([ws[:2], ws[:2]]))[1])
