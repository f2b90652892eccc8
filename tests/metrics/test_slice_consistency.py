"""Slice consistency against a brute-force np.corrcoef loop and scipy's two-sample distances; constructed volumes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch

from synthmed.metrics import SliceConsistency, compare_slice_consistency, headline_gap, slice_consistency
from synthmed.metrics.slice_consistency import FLAT_STD, PERCENTILES, SET_KEYS


def _reference(volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair by pair: np.corrcoef of the flattened slices (NaN where a slice is flat) and mean |x[k+1] - x[k]|."""
    n, c, d = volumes.shape[:3]
    r, diff = np.full((n, c, d - 1), np.nan), np.zeros((n, c, d - 1))
    for i in range(n):
        for ch in range(c):
            for k in range(d - 1):
                a, b = volumes[i, ch, k].astype(np.float64), volumes[i, ch, k + 1].astype(np.float64)
                diff[i, ch, k] = np.abs(b - a).mean()
                if a.std() > FLAT_STD and b.std() > FLAT_STD:
                    r[i, ch, k] = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    return r, diff


def _smooth(rng: np.random.Generator, n: int, c: int = 2, d: int = 12, side: int = 16) -> np.ndarray:
    """Volumes whose slices change slowly along D (a random smooth pattern drifting with k) plus a little noise."""
    z, y, x = np.meshgrid(*(np.linspace(0, 1, s) for s in (d, side, side)), indexing="ij")
    out = np.empty((n, c, d, side, side), np.float32)
    for i in range(n):
        for ch in range(c):
            f = rng.uniform(2, 4, size=3)
            out[i, ch] = 0.5 + 0.3 * np.sin(f[0] * y + f[1] * x + f[2] * z) + 0.02 * rng.standard_normal(z.shape)
    return np.clip(out, 0, 1)


def test_matches_a_brute_force_corrcoef_loop_with_flat_and_blank_slices():
    rng = np.random.default_rng(0)
    vols = rng.uniform(size=(3, 2, 6, 8, 9)).astype(np.float32)
    vols[:, :, 3] = (vols[:, :, 3] + vols[:, :, 2]) / 2  # correlated neighbours
    vols[0, 1, 0] = 0.4  # a constant slice: pair (0, 1) has no correlation
    vols[1, 0, 4:] = 0.0  # blank slices at the top: pairs (3, 4) and (4, 5) flat, (4, 5) differs by 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # np.corrcoef of a constant slice warns
        assert np.isnan(np.corrcoef(vols[0, 1, 0].ravel(), vols[0, 1, 1].ravel())[0, 1])
    ref_r, ref_d = _reference(vols)
    acc = SliceConsistency().update(vols[:2]).update(torch.from_numpy(vols[2:]))  # numpy and torch batches
    np.testing.assert_allclose(acc.correlations, ref_r, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(acc.differences, ref_d, atol=1e-12)
    out = acc.compute()
    assert out == slice_consistency(vols)  # batches or at once: the same
    assert out["volumes"] == 3 and out["pairs"] == 3 * 2 * 5 and out["flat_pairs"] == 3 == np.isnan(ref_r).sum()
    per_channel = [np.nanmean(ref_r[:, c]) for c in range(2)]
    np.testing.assert_allclose(out["correlation_per_channel"], per_channel)
    assert out["correlation"] == pytest.approx(np.mean(per_channel))
    np.testing.assert_allclose(out["difference_per_channel"], ref_d.mean(axis=(0, 2)))
    voxelwise = np.abs(np.diff(vols.astype(np.float64), axis=2)).mean()  # the mean over pairs is the voxel mean
    assert out["difference"] == pytest.approx(voxelwise)
    for p in PERCENTILES:
        assert out[f"difference_p{p}"] == pytest.approx(np.percentile(ref_d.ravel(), p))
    assert ref_d[1, 0, 4] == 0.0


def test_identical_slices_correlate_one_and_do_not_differ_independent_noise_does_not_correlate():
    rng = np.random.default_rng(1)
    base = rng.uniform(size=(3, 1, 1, 20, 20))
    same = np.repeat(base, 10, axis=2)  # every slice the same image
    out = slice_consistency(same)
    assert out["correlation"] == pytest.approx(1.0, abs=1e-12) and out["difference"] == 0.0
    assert out["difference_p95"] == 0.0 and out["flat_pairs"] == 0
    noise = rng.uniform(size=(4, 2, 16, 32, 32))  # independent slices
    out = slice_consistency(noise)
    assert abs(out["correlation"]) < 0.02  # 4 · 15 pairs of 1,024 voxels per channel: sd of the mean ~0.004
    assert out["difference"] == pytest.approx(1 / 3, abs=0.01)  # E|U - V| for independent uniforms
    assert all(abs(r) < 0.03 for r in out["correlation_per_channel"])
    assert slice_consistency(_smooth(rng, 3))["correlation"] > 0.9


def test_all_flat_volumes_have_no_correlation_and_bad_shapes_are_refused():
    out = slice_consistency(np.zeros((2, 1, 4, 8, 8)))
    assert out["correlation"] is None and out["correlation_per_channel"] == [None]
    assert out["flat_pairs"] == out["pairs"] == 6 and out["difference"] == 0.0
    with pytest.raises(ValueError, match=r"\[N, C, D, H, W\]"):
        slice_consistency(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match="at least 2 slices"):
        slice_consistency(np.zeros((2, 1, 1, 8, 8)))
    with pytest.raises(ValueError, match="every batch must match"):
        SliceConsistency().update(np.zeros((1, 1, 4, 8, 8))).update(np.zeros((1, 2, 4, 8, 8)))
    with pytest.raises(ValueError, match="no volumes"):
        SliceConsistency().compute()
    with pytest.raises(ValueError, match="cannot compare"):
        compare_slice_consistency(np.zeros((1, 1, 4, 8, 8)), np.zeros((1, 1, 5, 8, 8)))


def test_comparison_ratios_and_scipy_two_sample_distances():
    rng = np.random.default_rng(2)
    real = _smooth(rng, 4)
    shuffled = real[:, :, rng.permutation(real.shape[2])]  # the same slices in a random order: inconsistent
    same = compare_slice_consistency(real, real)
    assert same["correlation_ratio"] == pytest.approx(1.0) and same["difference_ratio"] == pytest.approx(1.0)
    assert same["difference_wasserstein"] == 0.0 and same["difference_ks"] == 0.0 and headline_gap(same) < 1e-12
    out = compare_slice_consistency(SliceConsistency().update(shuffled), real)
    assert set(SET_KEYS) | {f"{k}_real" for k in SET_KEYS} <= set(out)
    syn_d, real_d = _reference(shuffled)[1].ravel(), _reference(real)[1].ravel()
    assert out["difference_wasserstein"] == pytest.approx(scipy.stats.wasserstein_distance(syn_d, real_d))
    assert out["difference_ks"] == pytest.approx(scipy.stats.ks_2samp(syn_d, real_d).statistic)
    alone, ref = slice_consistency(shuffled), slice_consistency(real)
    assert out["correlation"] == alone["correlation"] and out["correlation_real"] == ref["correlation"]
    assert out["correlation_ratio"] == pytest.approx(alone["correlation"] / ref["correlation"])
    assert out["difference_ratio"] == pytest.approx(alone["difference"] / ref["difference"])
    assert out["difference_ratio"] > 1.5 and out["difference_ks"] > 0.5
    assert headline_gap(out) == pytest.approx(abs(out["correlation_ratio"] - 1)) and headline_gap(out) > 0.1
    blank = compare_slice_consistency(real, np.zeros((2, 2, 12, 16, 16)))
    assert blank["correlation_ratio"] is None and blank["difference_ratio"] is None and headline_gap(blank) is None
