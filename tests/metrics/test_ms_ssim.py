"""MS-SSIM per pair: MONAI's values, scales by image size, per-sample independence and gradients."""

from __future__ import annotations

import pytest
import torch

from synthmed.metrics import ms_ssim, ms_ssim_scales, ms_ssim_weights


def test_scales_fit_the_image_and_weights_sum_to_one():
    assert [ms_ssim_scales(s) for s in (6, 7, 16, 32, 64, 128, 256)] == [0, 1, 2, 3, 4, 5, 5]
    assert sum(ms_ssim_weights(32)) == pytest.approx(1.0) and ms_ssim_weights(6) == ()


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
