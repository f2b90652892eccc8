"""MS-SSIM per pair: MONAI's values and an independent computation, 2D and 3D; scales by image size,
per-sample independence and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from synthmed.metrics import ms_ssim, ms_ssim_scales, ms_ssim_weights


def test_scales_fit_the_image_and_weights_sum_to_one():
    assert [ms_ssim_scales(s) for s in (6, 7, 16, 32, 55, 56, 62, 63, 64, 128, 256)] == [0, 1, 2, 3, 3, 3, 3, 4, 4, 5, 5]
    assert sum(ms_ssim_weights(32)) == pytest.approx(1.0) and ms_ssim_weights(6) == ()


def test_every_side_with_a_scale_is_accepted_by_monai():
    """The scales a side gets pass MONAI's size check (4 scales need a side of 63, not 56)."""
    for side in range(7, 140):
        x = torch.rand(1, 1, side, 7)
        assert ms_ssim(x, x, spatial_dims=2).shape == (1,), side  # the smallest side (7) sets one scale
        y = torch.rand(1, 1, side, side)
        ms_ssim(y, y)


def _ms_ssim_reference(x: np.ndarray, y: np.ndarray, weights: tuple[float, ...], kernel: int = 7,
                       sigma: float = 1.5) -> np.ndarray:
    """MS-SSIM of each pair, written out in NumPy/SciPy (float64): a separable Gaussian window over the
    valid region, 2× average pooling between scales, contrast-structure at every scale but the last,
    SSIM at the last, each clipped at 0, averaged over channels and positions, combined as Π v_s^w_s."""
    g = np.exp(-0.5 * ((np.arange(kernel) - (kernel - 1) / 2) / sigma) ** 2)
    g /= g.sum()
    c1, c2, r = 0.01**2, 0.03**2, kernel // 2
    dims = x.ndim - 2

    def window(a: np.ndarray) -> np.ndarray:
        for axis in range(2, 2 + dims):
            a = scipy.ndimage.correlate1d(a, g, axis=axis, mode="constant")
        return a[(slice(None), slice(None)) + (slice(r, -r),) * dims]  # the valid region

    def pool(a: np.ndarray) -> np.ndarray:
        for axis in range(2, 2 + dims):
            n = a.shape[axis] // 2 * 2
            a = np.take(a, np.arange(n), axis=axis)
            a = a.reshape(*a.shape[:axis], n // 2, 2, *a.shape[axis + 1:]).mean(axis=axis + 1)
        return a

    x, y = x.astype(np.float64), y.astype(np.float64)
    values = []
    for s in range(len(weights)):
        mx, my = window(x), window(y)
        vx, vy, cxy = window(x * x) - mx**2, window(y * y) - my**2, window(x * y) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        term = cs if s < len(weights) - 1 else cs * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        values.append(np.maximum(term.reshape(len(x), -1).mean(1), 0))
        x, y = pool(x), pool(y)
    return np.prod([v**w for v, w in zip(values, weights)], axis=0)


@pytest.mark.parametrize("shape", [(2, 32, 36), (2, 20, 24, 28)])
def test_2d_and_3d_ms_ssim_match_monai_and_an_independent_computation(shape):
    from monai.metrics import MultiScaleSSIMMetric

    dims = len(shape) - 1
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, *shape, generator=gen)
    y = (0.6 * x + 0.4 * torch.rand(3, *shape, generator=gen)).clamp(0, 1)
    weights = ms_ssim_weights(min(shape[1:]))
    assert len(weights) == (3 if dims == 2 else 2)  # chosen by the smallest side
    values = ms_ssim(x, y, spatial_dims=dims)
    monai = MultiScaleSSIMMetric(spatial_dims=dims, kernel_size=7, weights=weights)(x, y)[:, 0]
    torch.testing.assert_close(values, monai)
    np.testing.assert_allclose(values.numpy(), _ms_ssim_reference(x.numpy(), y.numpy(), weights), atol=1e-5)
    torch.testing.assert_close(ms_ssim(x, x, spatial_dims=dims), torch.ones(3))


def test_identical_is_one_each_value_depends_on_its_own_pair_and_it_backpropagates():
    from monai.metrics import MultiScaleSSIMMetric

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 32, 32, generator=gen)
    y = (x + 0.2 * torch.rand(3, 2, 32, 32, generator=gen)).clamp(0, 1)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(3))
    values = ms_ssim(x, y)
    reference = MultiScaleSSIMMetric(spatial_dims=2, kernel_size=7, weights=ms_ssim_weights(32))(x, y)[:, 0]
    torch.testing.assert_close(values, reference)
    torch.testing.assert_close(ms_ssim(x[1:2], y[1:2]), values[1:2])  # a pair's value is its own
    z = y.clone().requires_grad_(True)
    (1 - ms_ssim(x, z)).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="larger than 6 pixels"):
        ms_ssim(x[..., :6, :6], y[..., :6, :6])
