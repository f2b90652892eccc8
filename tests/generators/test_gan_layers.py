"""Properties of the shared GAN blocks: equalized LR, demodulation, FIR design, fade-in,
translation equivariance, R1, ADA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from synthmed.parallel import torch_threads
from synthmed.generators.gan import losses
from synthmed.generators.gan.ada import AugmentPipe
from synthmed.generators.gan.filters import binomial, downsample2d, kaiser_lowpass, upsample2d
from synthmed.generators.gan.layers import EqualConv2d, EqualLinear, modulated_conv2d, modulated_conv2d_loop
from synthmed.generators.gan.networks_progan import ProGANGenerator, ProgressiveDiscriminator, growth, upscale
from synthmed.generators.gan.networks_stylegan1 import Synthesis1
from synthmed.generators.gan.networks_stylegan2 import Synthesis2
from synthmed.generators.gan.networks_stylegan3 import Synthesis3


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
    output on the central 16×16 (band-limited shift of the reference)."""
    res, d, crop = 32, 0.5, 8
    for seed in (0, 1):
        torch.manual_seed(seed)
        sg3, sg2 = Synthesis3(32, 5, res, 6, 4, 256, 32).eval(), Synthesis2(32, 5, 3, 256, 32).eval()
        ws3, ws2 = torch.randn(2, sg3.num_ws, 32), torch.randn(2, sg2.num_ws, 32)
        ref3, out3 = sg3(ws3), sg3(ws3, shift=torch.tensor([[d, 0.0]] * 2))
        ref2, out2 = sg2(ws2), sg2(ws2, const=_fourier_shift(sg2.const, d * 4 / res))
        c = slice(crop, -crop)
        psnr3 = _psnr(_fourier_shift(ref3, d)[..., c, c], out3[..., c, c])
        psnr2 = _psnr(_fourier_shift(ref2, d)[..., c, c], out2[..., c, c])
        assert psnr3 > psnr2 + 10, (psnr3, psnr2)


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
    y = pipe(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and not torch.allclose(y, x)
    for i in range(6):  # colour ops are affine per sample: each image channel is a·label + b
        img, lab = y[i, 0].flatten(), y[i, 4].flatten()
        assert torch.corrcoef(torch.stack([img, lab]))[0, 1] > 0.999
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0  # differentiable
    const = torch.cat([torch.zeros(2, 4, 8, 8), torch.full((2, 1, 8, 8), float(levels[2]))], 1)
    out = pipe(const, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out[:, 4], const[:, 4])  # a label level survives geometry and colour
    assert not torch.allclose(out[:, :4], const[:, :4])
    mirror = AugmentPipe(4, p=0.0, mirror=True)(pattern.repeat(1, 5, 1, 1), torch.Generator().manual_seed(0))
    flipped = [torch.allclose(mirror[i], pattern[i].repeat(5, 1, 1).flip(-1), atol=1e-5) for i in range(6)]
    kept = [torch.allclose(mirror[i], pattern[i].repeat(5, 1, 1), atol=1e-5) for i in range(6)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
