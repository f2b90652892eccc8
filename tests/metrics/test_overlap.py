"""Dice and HD95 against their references and hand-computed cases.

``hd95`` (pooled directions) against medpy's ``hd95``; ``hd95_max`` (the larger directed 95th
percentile) against MONAI's ``compute_hausdorff_distance(percentile=95)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy
from monai.metrics import compute_hausdorff_distance

from synthmed.metrics import OverlapAccumulator, dice, hausdorff95, hd95, hd95_max, image_diagonal, overlap_by_region


def monai_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """MONAI's HD95 of two masks (one batch item, one foreground channel)."""
    ya, yb = (torch.from_numpy(m[None, None].astype(np.float32)) for m in (a, b))
    return float(compute_hausdorff_distance(ya, yb, include_background=True, percentile=95, spacing=list(spacing)))


def blob(shape, centre, radii, rng, noise=0.15):
    """A random-ish ellipsoid with a jagged edge."""
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")).astype(float)
    r = np.sqrt(sum(((g - c) / rr) ** 2 for g, c, rr in zip(grid, centre, radii)))
    return r + noise * rng.standard_normal(shape) < 1.0


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_medpy_on_random_3d_shapes_with_anisotropic_spacing(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 40, 36)
    spacing = tuple(rng.uniform(0.5, 3.0, 3))
    a = blob(shape, rng.uniform(8, 16, 3), rng.uniform(3, 9, 3), rng)
    b = blob(shape, rng.uniform(8, 16, 3), rng.uniform(3, 9, 3), rng)
    if seed == 0:  # touching the array's edge: the outside counts as background for both
        a[0], b[:, -1] = True, True
    assert abs(dice(a, b) - medpy.dc(a, b)) <= 1e-6
    assert abs(hausdorff95(a, b, spacing) - medpy.hd95(a, b, voxelspacing=spacing)) <= 1e-6
    assert abs(hausdorff95(b, a, spacing) - hausdorff95(a, b, spacing)) <= 1e-9  # symmetric
    assert hd95(a, b, spacing) == hausdorff95(a, b, spacing)


def random_pair(dims: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Two overlapping jagged blobs (the second with a far satellite for odd seeds), random anisotropic spacing."""
    rng = np.random.default_rng(100 + seed)
    shape = (20, 36, 32)[-dims:] if dims == 3 else (48, 56)
    spacing = tuple(float(x) for x in rng.uniform(0.4, 3.0, dims))
    hi = np.array(shape) * 0.6
    a = blob(shape, rng.uniform(hi / 2, hi), rng.uniform(3, 7, dims), rng)
    b = blob(shape, rng.uniform(hi / 2, hi), rng.uniform(3, 7, dims), rng)
    if seed % 2:  # an outlier component: the two directions' distance sets then differ a lot
        b |= blob(shape, np.array(shape) * 0.85, np.full(dims, 2.5), rng, noise=0.0)
    if seed == 1:  # touching the array's edge: the outside counts as background for both
        a[0] = True
    return a, b, spacing


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_hd95_max_equals_monai_and_hd95_equals_medpy(dims, seed):
    """Same surfaces (one face-connected erosion), same Euclidean distances in mm, same
    linear-interpolation percentile; MONAI computes in float32, hence the 1e-4 relative tolerance."""
    a, b, spacing = random_pair(dims, seed)
    assert a.any() and b.any()
    theirs = monai_hd95(a, b, spacing)
    assert hd95_max(a, b, spacing) == pytest.approx(theirs, rel=1e-4, abs=1e-4)
    assert hd95_max(b, a, spacing) == hd95_max(a, b, spacing)  # symmetric
    assert abs(hd95(a, b, spacing) - medpy.hd95(a, b, voxelspacing=spacing)) <= 1e-6
    # a percentile of the pooled distances lies between the two directed ones: pooled <= max
    assert hd95(a, b, spacing) <= hd95_max(a, b, spacing) + 1e-9


def test_the_two_definitions_differ_where_one_direction_has_outliers():
    seeds = range(1, 8, 2)  # the pairs with a far satellite
    gaps = [hd95_max(*random_pair(3, s)) - hd95(*random_pair(3, s)) for s in seeds]
    assert min(gaps) > 1.0  # mm: the pooled definition dilutes the far satellite with the near surface


def test_equal_to_medpy_in_2d_and_with_several_components():
    rng = np.random.default_rng(7)
    a = blob((50, 60), (10, 12), (5, 7), rng) | blob((50, 60), (40, 45), (6, 4), rng)
    b = blob((50, 60), (12, 14), (6, 6), rng)
    assert abs(hausdorff95(a, b, (0.7, 1.3)) - medpy.hd95(a, b, voxelspacing=(0.7, 1.3))) <= 1e-6
    assert abs(dice(a, b) - medpy.dc(a, b)) <= 1e-6


def test_hand_computed_cases():
    # 1D-like 2D strips: P = columns 0..3 of a 1×10 row, R = columns 0..5.
    p, r = np.zeros((1, 10), bool), np.zeros((1, 10), bool)
    p[0, :4], r[0, :6] = True, True
    assert dice(p, r) == pytest.approx(2 * 4 / 10)
    # every voxel of a one-row strip is surface; P→R distances: 0,0,0,0; R→P: 0,0,0,0,1,2 (spacing 1)
    expected = np.percentile([0, 0, 0, 0] + [0, 0, 0, 0, 1, 2], 95)
    assert hausdorff95(p, r) == pytest.approx(expected)
    assert hausdorff95(p, r, spacing=(1.0, 2.0)) == pytest.approx(2 * expected)
    # directed: P→R 95th percentile of [0, 0, 0, 0] = 0; R→P of [0, 0, 0, 0, 1, 2] = 1.75
    assert hd95_max(p, r) == pytest.approx(np.percentile([0, 0, 0, 0, 1, 2], 95)) == pytest.approx(1.75)
    assert expected == pytest.approx(1.55)
    # identical masks
    assert dice(r, r) == 1.0 and hausdorff95(r, r) == 0.0 and hd95_max(r, r) == 0.0


def test_empty_conventions():
    empty, full = np.zeros((155, 240, 240), bool), np.zeros((155, 240, 240), bool)
    full[70:80, 100:110, 100:110] = True
    assert dice(empty, empty) == 1.0 and hausdorff95(empty, empty) == 0.0
    assert dice(full, empty) == 0.0 and dice(empty, full) == 0.0
    assert hausdorff95(full, empty) == pytest.approx(373.13, abs=0.01)
    assert hausdorff95(empty, full, spacing=(2.0, 1.0, 1.0)) == pytest.approx(math.sqrt(310**2 + 2 * 240**2))
    assert image_diagonal((240, 240, 155)) == pytest.approx(373.1287, abs=1e-4)
    assert hd95_max(empty, empty) == 0.0 and hd95_max(full, empty) == hausdorff95(full, empty)
    small = np.zeros((8, 8), bool)
    small[2:4, 2:4] = True
    with pytest.warns(UserWarning):  # MONAI: nan as soon as one mask is empty (the 95th percentile of infs)
        assert math.isnan(monai_hd95(small, np.zeros_like(small), (1, 1)))
        assert math.isnan(monai_hd95(np.zeros_like(small), np.zeros_like(small), (1, 1)))
    with pytest.raises(RuntimeError):  # medpy refuses
        medpy.hd95(small, np.zeros_like(small))


def test_bad_inputs():
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="one value per axis"):
        hausdorff95(np.ones((3, 3)), np.ones((3, 3)), spacing=(1, 1, 1))


def test_regions_and_accumulator():
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[2:6, 2:6, 2:6] = 2
    ref[3:5, 3:5, 3:5] = 3
    pred = ref.copy()
    pred[3:5, 3:5, 3:5] = 1  # ET predicted as NCR: WT and TC right... TC: ref {3} region vs pred {1} region
    scores = overlap_by_region(pred, ref, (1, 1, 1))
    assert scores["WT"] == {"dice": 1.0, "hd95": 0.0, "hd95_max": 0.0}
    assert scores["TC"]["dice"] == 1.0  # TC = {1, 3}
    assert scores["ET"]["dice"] == 0.0 and scores["ET"]["hd95"] == pytest.approx(math.sqrt(3 * 64))
    assert scores["ET"]["hd95_max"] == scores["ET"]["hd95"]  # one mask empty: the diagonal for both
    acc = OverlapAccumulator()
    acc.update(pred, ref, (1, 1, 1), "a")
    acc.update(ref, ref, (1, 1, 1), "b")
    out = acc.compute()
    assert out["n"] == 2 and [c["case_id"] for c in out["cases"]] == ["a", "b"]
    assert out["mean"]["ET"]["dice"] == 0.5 and out["sd"]["ET"]["dice"] == pytest.approx(math.sqrt(0.5))
    assert out["mean"]["WT"] == {"dice": 1.0, "hd95": 0.0, "hd95_max": 0.0}
    rng = np.random.default_rng(3)
    a, b = (np.where(blob((8, 20, 20), (4, 9, 9), (3, 6, 6), rng), 2, 0).astype(np.uint8) for _ in range(2))
    one = OverlapAccumulator().update(a, b, (2.0, 1.0, 1.0))
    assert one["WT"]["hd95_max"] == pytest.approx(monai_hd95(a > 0, b > 0, (2.0, 1.0, 1.0)), rel=1e-4)
