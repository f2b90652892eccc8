"""Saliency scores against hand-made maps, sklearn's AUROC and a brute-force dilation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from synthmed.metrics import dilate, mass_in_mask, pointing_game, saliency_auroc, saliency_scores, summarise_saliency


def square_mask(shape=(16, 16), lo=4, hi=9):
    m = np.zeros(shape, bool)
    m[tuple(slice(lo, hi) for _ in shape)] = True
    return m


def test_all_mass_inside_the_mask_gives_one():
    m = square_mask()
    s = np.where(m, np.arange(m.size).reshape(m.shape) + 1.0, 0.0)
    assert mass_in_mask(s, m) == 1.0
    assert mass_in_mask(s, ~m) == 0.0


def test_uniform_saliency_gives_the_area_fraction():
    m = square_mask()
    assert mass_in_mask(np.full(m.shape, 0.3), m) == pytest.approx(25 / 256)
    assert pointing_game(np.full(m.shape, 0.3), m) == pytest.approx(25 / 256)


def test_negative_values_are_ignored():
    m = square_mask()
    s = np.where(m, 2.0, -5.0)
    assert mass_in_mask(s, m) == 1.0
    s[0, 0] = 2.0  # one positive voxel outside: 25·2 inside, 2 outside
    assert mass_in_mask(s, m) == pytest.approx(50 / 52)


def test_mass_is_nan_without_positive_saliency():
    m = square_mask()
    assert math.isnan(mass_in_mask(np.zeros(m.shape), m))
    assert math.isnan(mass_in_mask(-np.ones(m.shape), m))


def test_labels_count_as_a_mask():
    labels = np.zeros((8, 8), np.uint8)
    labels[2, 2], labels[2, 3] = 1, 3
    s = np.zeros((8, 8))
    s[2, 2] = s[2, 3] = s[5, 5] = 1.0
    assert mass_in_mask(s, labels) == pytest.approx(2 / 3)


def test_pointing_game_on_hand_made_maps_with_ties():
    m = square_mask((8, 8), 2, 4)  # 2×2 at rows/cols 2–3
    s = np.zeros((8, 8))
    s[3, 3] = 5.0
    assert pointing_game(s, m) == 1.0
    s[7, 7] = 6.0
    assert pointing_game(s, m) == 0.0
    s[3, 3] = 6.0  # one maximum inside, one outside
    assert pointing_game(s, m) == 0.5
    s[2, 2] = s[2, 3] = 6.0  # three of four maxima inside
    assert pointing_game(s, m) == 0.75
    assert pointing_game(-np.ones((8, 8)), m) == pytest.approx(4 / 64)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_on_integer_maps_with_ties(seed):
    rng = np.random.default_rng(seed)
    shape = (12, 10) if seed % 2 else (5, 6, 7)
    s = rng.integers(0, 4, shape).astype(float)
    m = rng.random(shape) < 0.3
    s = s + m * rng.integers(0, 2, shape)  # a mild signal, many ties
    assert saliency_auroc(s, m) == pytest.approx(roc_auc_score(m.ravel(), s.ravel()), abs=1e-12)


def test_auroc_extremes_and_undefined_cases():
    m = square_mask((8, 8), 2, 4)
    assert saliency_auroc(m.astype(float), m) == 1.0
    assert saliency_auroc(-m.astype(float), m) == 0.0
    assert saliency_auroc(np.ones((8, 8)), m) == 0.5
    assert math.isnan(saliency_auroc(np.ones((8, 8)), np.zeros((8, 8), bool)))
    assert math.isnan(saliency_auroc(np.ones((8, 8)), np.ones((8, 8), bool)))


def brute_dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    points = np.argwhere(mask)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in mask.shape), indexing="ij"), -1).reshape(-1, mask.ndim)
    if len(points) == 0:
        return np.zeros(mask.shape, bool)
    d2 = ((grid[:, None, :] - points[None, :, :]) ** 2).sum(-1).min(1)
    return (d2 <= radius * radius).reshape(mask.shape)


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(13, 11), (7, 9, 8)])
def test_dilation_equals_a_brute_force_distance_check(shape, radius):
    rng = np.random.default_rng(radius + len(shape))
    m = rng.random(shape) < 0.03
    m[0, 0] = True  # a mask voxel at the array's corner
    out = dilate(m, radius)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, brute_dilate(m, radius))
    if radius == 0:
        np.testing.assert_array_equal(out, m)


def test_dilation_rejects_a_negative_radius():
    with pytest.raises(ValueError, match="radius"):
        dilate(np.zeros((4, 4), bool), -1)


def test_batch_scores_skip_empty_masks_and_dilate():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 3, 3] = True
    masks[2] = True
    maps = np.zeros((3, 8, 8))
    maps[0, 3, 4] = 1.0  # one voxel beside the mask: inside once dilated by 1
    maps[1, 0, 0] = maps[2, 1, 1] = 1.0
    plain = saliency_scores(maps, masks)
    assert plain["mass_in_mask"][0] == 0.0 and plain["pointing_game"][0] == 0.0
    assert all(math.isnan(plain[k][1]) for k in ("mass_in_mask", "pointing_game", "auroc"))
    assert plain["mass_in_mask"][2] == 1.0 and math.isnan(plain["auroc"][2])  # a full mask
    grown = saliency_scores(maps, masks, dilation=1)
    assert grown["mass_in_mask"][0] == 1.0 and grown["pointing_game"][0] == 1.0
    summary = summarise_saliency(plain)
    assert summary["n_scored"] == 2
    assert summary["mass_in_mask"] == pytest.approx(0.5)
    assert summary["auroc"] == pytest.approx(plain["auroc"][0])


def test_batch_scores_in_3d_match_the_single_sample_functions():
    rng = np.random.default_rng(7)
    maps = rng.normal(size=(4, 6, 7, 8))
    masks = rng.random((4, 6, 7, 8)) < 0.2
    scores = saliency_scores(maps, masks)
    for i in range(4):
        assert scores["mass_in_mask"][i] == mass_in_mask(maps[i], masks[i])
        assert scores["pointing_game"][i] == pointing_game(maps[i], masks[i])
        assert scores["auroc"][i] == pytest.approx(roc_auc_score(masks[i].ravel(), maps[i].ravel()))


def test_mismatched_shapes_and_non_finite_maps_are_refused():
    with pytest.raises(ValueError, match="differ"):
        saliency_scores(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        mass_in_mask(np.full((4, 4), np.nan), np.ones((4, 4)))
