import numpy as np
import pytest

from synthmed.data.case import Case
from synthmed.data.preprocess import (
    brain_mask,
    case_to_slices,
    case_to_volume,
    normalise_intensities,
    resize_labels,
)


def _case(shape=(10, 24, 20)) -> Case:
    rng = np.random.default_rng(0)
    d, h, w = shape
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    brain = (zz**2 + yy**2 + xx**2) < 0.8
    images = np.where(brain, rng.uniform(100, 1000, (4, *shape)), 0).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[3:7, 8:16, 6:14] = 2
    label[5, 11:13, 9:11] = 3
    return Case("c0", images, label, spacing=(2.0, 1.0, 1.0))


def test_normalisation_maps_brain_percentiles_to_unit_range():
    case = _case()
    mask = brain_mask(case.images)
    out = normalise_intensities(case.images, mask)
    assert out.dtype == np.float32 and out.shape == case.images.shape
    assert (out[:, ~mask] == 0).all()
    for c in range(4):
        inside = out[c][mask]
        assert inside.min() == 0.0 and inside.max() == 1.0
        raw = case.images[c][mask]
        lo, hi = np.percentile(raw, [0.5, 99.5])
        j = np.argmax((raw > lo) & (raw < hi))
        assert inside[j] == pytest.approx((raw[j] - lo) / (hi - lo), rel=1e-5)


def test_slices_keep_only_brain_rich_axial_slices():
    case = _case()
    fraction = brain_mask(case.images).mean(axis=(1, 2))
    samples = case_to_slices(case, size=16, min_brain_fraction=0.3)
    np.testing.assert_array_equal(samples.slices, np.flatnonzero(fraction > 0.3))
    assert samples.images.shape == (len(samples.slices), 4, 16, 16)
    assert samples.labels.shape == (len(samples.slices), 16, 16) and samples.labels.dtype == np.uint8
    assert samples.spacing == pytest.approx((2.0, 24 / 16, 20 / 16))
    assert 0.0 <= samples.images.min() and samples.images.max() <= 1.0


def test_volume_is_cropped_padded_and_resized():
    case = _case()
    samples = case_to_volume(case, size=12)
    assert samples.images.shape == (1, 4, 12, 12, 12)
    assert samples.slices.tolist() == [-1]
    assert set(np.unique(samples.labels)) <= {0, 2, 3} and (samples.labels == 2).any()


def test_label_resize_is_exact_at_same_size_and_keeps_classes():
    labels = np.random.default_rng(1).integers(0, 4, (2, 16, 16)).astype(np.uint8)
    np.testing.assert_array_equal(resize_labels(labels, (16, 16)), labels)
    blocks = np.kron(labels, np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(resize_labels(blocks, (16, 16)), labels)
