"""Captum saliency maps on tiny networks whose attributions are known by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from synthmed.classify.saliency import METHODS, clip_for_display, saliency_maps
from synthmed.metrics import mass_in_mask

SQUARE = (slice(4, 10), slice(6, 12))


def tiny_net(dims: int, channels: int = 2, k: int = 3) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    pool = nn.AdaptiveAvgPool2d if dims == 2 else nn.AdaptiveAvgPool3d
    torch.manual_seed(0)
    return nn.Sequential(conv(channels, 4, 3, padding=1), nn.ReLU(), conv(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                         pool(1), nn.Flatten(), nn.Linear(6, k))


class SquareModel(nn.Module):
    """Logit 0: the sum of channel 0 over :data:`SQUARE`; logit 1: the sum of channel 1 everywhere (both linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.scale * x[:, 0][(slice(None), *SQUARE)].sum((1, 2)),
                            self.scale * x[:, 1].sum((1, 2))], 1)


class Linear(nn.Module):
    """f(x) = Σ a·x with weights ``a`` of both signs."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a * x).flatten(1).sum(1, keepdim=True)


class Softplus(nn.Module):
    """f(x) = Σ softplus(w·x − 1) with w > 0: every IG attribution of an x ≥ 0 is ≥ 0."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.w * x - 1).flatten(1).sum(1, keepdim=True)


def images(shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_shapes_dtype_sign_and_no_grads_left(method, dims):
    net = tiny_net(dims)
    x = images((2, 2) + (8,) * dims)
    maps = saliency_maps(net, x, method=method, target=1, layer=net[2], smoothgrad_samples=3, ig_steps=4)
    assert maps.shape == (2,) + (8,) * dims
    assert maps.dtype == torch.float32 and maps.device.type == "cpu"
    assert bool((maps >= 0).all()) and bool(torch.isfinite(maps).all())
    assert float(maps.sum()) > 0
    assert all(p.grad is None for p in net.parameters())
    assert not x.requires_grad


def test_gradient_saliency_lies_in_the_square_the_model_looks_at():
    model = SquareModel()
    x = images((3, 2, 16, 16))
    maps = saliency_maps(model, x, method="gradient", target=0)
    expected = torch.zeros(16, 16)
    expected[SQUARE] = 1.0
    torch.testing.assert_close(maps, expected.expand(3, 16, 16))
    mask = expected.numpy() > 0
    assert all(mass_in_mask(m, mask) == 1.0 for m in maps.numpy())
    # the other logit looks at channel 1 everywhere: the target picks the logit
    torch.testing.assert_close(saliency_maps(model, x, method="gradient", target=1), torch.ones(3, 16, 16))


def test_integrated_gradients_of_a_signed_linear_model_sum_abs_over_channels():
    a = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(1))
    x = images((2, 2, 8, 8))
    maps = saliency_maps(Linear(a), x, method="integrated-gradients", ig_steps=4)
    torch.testing.assert_close(maps, (a * x).abs().sum(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_integrated_gradients_completeness(dims):
    w = 4 * torch.rand((1,) + (6,) * dims, generator=torch.Generator().manual_seed(2)) + 0.5
    model = Softplus(w)
    x = images((2, 1) + (6,) * dims, seed=3)
    maps = saliency_maps(model, x, method="integrated-gradients", ig_steps=32)
    with torch.no_grad():
        gain = (model(x) - model(torch.zeros_like(x)))[:, 0]
    torch.testing.assert_close(maps.flatten(1).sum(1), gain, rtol=1e-4, atol=1e-4)


def test_smoothgrad_is_reproducible_by_seed_and_leaves_the_global_rng_alone():
    net = tiny_net(2)
    x = images((2, 2, 8, 8))
    state = torch.get_rng_state()
    a = saliency_maps(net, x, method="smoothgrad", smoothgrad_samples=4, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # the caller's RNG does not matter either
    b = saliency_maps(net, x, method="smoothgrad", smoothgrad_samples=4, seed=5)
    c = saliency_maps(net, x, method="smoothgrad", smoothgrad_samples=4, seed=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    plain = saliency_maps(net, x, method="gradient")
    assert not torch.allclose(a, plain)


def test_smoothgrad_with_no_noise_is_the_gradient():
    net = tiny_net(2)
    x = images((2, 2, 8, 8))
    smooth = saliency_maps(net, x, method="smoothgrad", smoothgrad_samples=2, smoothgrad_sigma=0.0)
    torch.testing.assert_close(smooth, saliency_maps(net, x, method="gradient"))


def test_gradcam_of_a_named_layer_has_the_input_size():
    net = tiny_net(3)
    x = images((2, 2, 8, 10, 12))
    maps = saliency_maps(net, x, method="gradcam", target=2, layer=net[2])
    assert maps.shape == (2, 8, 10, 12)
    assert bool((maps >= 0).all())


def test_eval_mode_for_the_call_and_modes_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    net.train()
    net[1].eval()  # a frozen batch norm stays frozen
    x = images((2, 2, 8, 8))
    a = saliency_maps(net, x, method="gradient")
    b = saliency_maps(net, x, method="gradient")
    assert torch.equal(a, b)  # no dropout drawn, no batch statistics
    assert net.training and net[3].training and not net[1].training
    net.eval()
    torch.testing.assert_close(saliency_maps(net, x, method="gradient"), a)


def test_existing_parameter_grads_are_kept():
    net = tiny_net(2)
    grads = [torch.full_like(p, 7.0) for p in net.parameters()]
    for p, g in zip(net.parameters(), grads):
        p.grad = g
    saliency_maps(net, images((1, 2, 8, 8)), method="integrated-gradients", ig_steps=3)
    assert all(p.grad is g for p, g in zip(net.parameters(), grads))


def test_bad_arguments_are_refused():
    net = tiny_net(2)
    x = images((1, 2, 8, 8))
    with pytest.raises(ValueError, match="method"):
        saliency_maps(net, x, method="occlusion")
    with pytest.raises(ValueError, match="layer"):
        saliency_maps(net, x, method="gradcam")
    with pytest.raises(ValueError, match="images"):
        saliency_maps(net, x[0], method="gradient")


def test_clip_for_display_clips_at_three_sigma_and_scales():
    s = np.zeros(100)
    s[0] = 1000.0  # an outlier far beyond mean + 3 sd
    out = clip_for_display(s)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    mean, sd = s.mean(), s.std(ddof=1)
    np.testing.assert_allclose(out, (np.clip(s, mean - 3 * sd, mean + 3 * sd) - 0) / (mean + 3 * sd), rtol=1e-6)
    ramp = np.linspace(0, 1, 11).reshape(1, 11)  # nothing beyond 3 sd: plain min-max scaling
    np.testing.assert_allclose(clip_for_display(ramp * 5 + 2), ramp, rtol=1e-6)
    assert not clip_for_display(np.full((3, 3), 4.0)).any()
