"""Fidelity metrics against reference implementations: scipy sqrtm, brute-force KID and PRDC."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from synthmed.errors import SynthmedError
from synthmed.metrics.fidelity import (
    FeatureBank,
    FrechetDistance,
    density_coverage,
    fidelity_metrics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    ms_ssim_diversity,
    precision_recall,
    relative_frechet_distance,
)


def _fd_scipy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 16))
    b = rng.standard_normal((150, 16)) @ rng.standard_normal((16, 16)) * 0.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(_fd_scipy(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    metric = FrechetDistance(16)
    for part in np.array_split(a, 3):
        metric.update(torch.from_numpy(part), real=True)
    metric.update(torch.from_numpy(b).float(), real=False)
    assert float(metric.compute()) == pytest.approx(_fd_scipy(a, b.astype(np.float32).astype(np.float64)), rel=1e-6)


def test_frechet_distance_rank_deficient_warns_and_is_finite():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((10, 32))
    with pytest.warns(UserWarning, match="rank-deficient"):
        fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd >= 0
    rel = relative_frechet_distance(rng.standard_normal((400, 4)), rng.standard_normal((200, 4)) + 2)
    assert rel["relative_fd"] > 10 and rel["fd_real_real"] > 0


def _kid_brute(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_matches_brute_force_and_adapts_subset_size():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((20, 5)), rng.standard_normal((20, 5)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_kid_brute(x, y), rel=1e-10)
    with pytest.warns(UserWarning, match="subset size reduced from 1000 to 20"):
        mean, std, size = kernel_inception_distance(x, y, subsets=3)
    assert size == 20 and mean == pytest.approx(_kid_brute(x, y), rel=1e-10) and std == pytest.approx(0, abs=1e-12)


def _balls(x: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    return np.sort(d, axis=1)[:, k]


def test_prdc_match_brute_force():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) * 1.3 + 0.4
    r3, f3, r5 = _balls(real, 3), _balls(fake, 3), _balls(real, 5)
    prec = np.mean([any(np.linalg.norm(y - real[i]) <= r3[i] for i in range(40)) for y in fake])
    rec = np.mean([any(np.linalg.norm(x - fake[j]) <= f3[j] for j in range(30)) for x in real])
    dens = sum(np.linalg.norm(y - real[i]) <= r5[i] for y in fake for i in range(40)) / (5 * 30)
    cov = np.mean([any(np.linalg.norm(y - real[i]) <= r5[i] for y in fake) for i in range(40)])
    assert precision_recall(real, fake) == pytest.approx((prec, rec), abs=1e-12)
    assert density_coverage(real, fake) == pytest.approx((dens, cov), abs=1e-12)


def test_inception_score_bounds():
    k = 7
    uniform_confident = np.eye(k)[np.arange(70) % k] * 50
    assert inception_score(uniform_confident, splits=10)[0] == pytest.approx(k, rel=1e-3)
    assert inception_score(np.zeros((20, k)), splits=2)[0] == pytest.approx(1.0)


def test_fidelity_metrics_computes_what_is_valid():
    rng = np.random.default_rng(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fidelity_metrics(rng.standard_normal((5, 3)), rng.standard_normal((3, 3)), kid_subsets=2)
    assert out["fd"] is not None and out["kid_subset_size"] == 3 and out["precision"] is None and out["density"] is None
    assert "precision_recall" in out["skipped"] and any("at least 4" in str(w.message) for w in caught)
    with pytest.raises(SynthmedError, match="no fidelity metric"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fidelity_metrics(rng.standard_normal((1, 3)), rng.standard_normal((1, 3)))
    bank = FeatureBank()
    bank.update(torch.from_numpy(rng.standard_normal((30, 3))), real=True)
    bank.update(torch.from_numpy(rng.standard_normal((30, 3))), real=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert 0 <= bank.compute()["coverage"] <= 1


def test_ms_ssim_diversity_collapsed_vs_diverse():
    rng = np.random.default_rng(5)
    same = np.repeat(rng.uniform(size=(1, 1, 32, 32)), 4, axis=0).astype(np.float32)
    noise = rng.uniform(size=(4, 1, 32, 32)).astype(np.float32)
    assert ms_ssim_diversity(same, pairs=4)["ms_ssim"] == pytest.approx(1.0, abs=1e-4)
    assert ms_ssim_diversity(noise, pairs=4)["ms_ssim"] < 0.5




def test_evaluate_fidelity_cli_on_stores(store2d, tmp_path):
    from typer.testing import CliRunner

    from synthmed.cli import app
    from tiny_stores import make_store

    syn = make_store(tmp_path / "syn", n=8, seed=1, n_test=0)
    args = ["evaluate", "fidelity", "--real", str(store2d.path), "--synthetic", str(syn.path), "--weights",
            str(tmp_path / "enc"), "--encoder-steps", "2", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["features"] == "domain" and out["n_real"] == 6 and out["n_synthetic"] == 8 and out["feature_dim"] == 256
    assert out["fd"] > 0 and out["relative_fd"] > 0 and out["kid_subset_size"] == 6 and out["is_mean"] >= 1
    assert out["precision"] is not None and 0 <= out["ms_ssim"] <= 1
    other = make_store(tmp_path / "small", side=8)
    bad = CliRunner().invoke(app, ["evaluate", "fidelity", "--real", str(store2d.path), "--synthetic", str(other.path)])
    assert isinstance(bad.exception, SynthmedError) and "channels and sizes must match" in str(bad.exception)
