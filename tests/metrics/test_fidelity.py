"""Fidelity metrics against reference implementations: scipy sqrtm, brute-force KID and PRDC."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from synthmed.errors import SynthmedError
from synthmed.metrics import (
    FeatureBank,
    FrechetDistance,
    case_halves,
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
    assert inception_score(uniform_confident, splits=1)[0] == pytest.approx(k, rel=1e-3)
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


def test_diversity_pairs_join_different_patients():
    from synthmed.metrics import diversity_pairs

    i, j = diversity_pairs(10, 500, seed=3)
    assert (i != j).all() and set(i) == set(j) == set(range(10))
    distinct = np.array([f"s{k}" for k in range(10)])  # every sample its own patient: the same draw
    np.testing.assert_array_equal(np.stack(diversity_pairs(10, 500, seed=3, groups=distinct)), np.stack([i, j]))
    groups = np.array(["a", "a", "a", "b", "c", "c", "d", "d", "d", "d"])
    i, j = diversity_pairs(10, 2000, seed=4, groups=groups)
    assert (groups[i] != groups[j]).all() and set(j) == set(range(10))
    counts = np.bincount(j[i == 0], minlength=10)  # from sample 0: uniform over the 7 samples of other patients
    assert counts[:3].sum() == 0 and counts[3:].min() > 0
    assert len(diversity_pairs(4, 10, groups=["a"] * 4)[0]) == 0 and len(diversity_pairs(1, 10)[0]) == 0
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(4, 1, 16, 16)).astype(np.float32)
    images[1] = images[0]  # one patient's two identical slices: never a pair
    assert ms_ssim_diversity(images, pairs=20, groups=["p", "p", "q", "r"])["ms_ssim"] < 0.5
    with pytest.warns(UserWarning, match="at least 2 patients"):
        assert ms_ssim_diversity(images, pairs=4, groups=["p"] * 4)["ms_ssim"] is None




def test_evaluate_fidelity_cli_on_stores(store2d, patients_store, tmp_path):
    from typer.testing import CliRunner

    from synthmed.cli import app
    from tiny_stores import make_store

    syn = make_store(tmp_path / "syn", n=8, seed=1, n_test=0)
    args = ["evaluate", "fidelity", "--real", str(patients_store.path), "--synthetic", str(syn.path), "--weights",
            str(tmp_path / "enc"), "--encoder-steps", "2", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["features"] == "domain" and out["real_split"] == "test" and out["feature_dim"] == 256
    assert out["n_real"] == 12 and out["n_synthetic"] == 8 and out["fd_train"] > 0
    assert out["fd"] > 0 and out["relative_fd"] > 0 and out["kid_subset_size"] == 8 and out["is_mean"] >= 1
    assert out["precision"] is not None and 0 <= out["ms_ssim"] <= 1
    assert out["ms_ssim_of"] == "slices (2D MS-SSIM)" and out["feature_space"] == "domain features of each 2D slice"
    assert 0 <= out["ms_ssim_real"] <= 1 and out["ms_ssim_real_pairs"] == 100 and "slice_consistency" not in out
    other = make_store(tmp_path / "small", side=8)
    bad = CliRunner().invoke(app, ["evaluate", "fidelity", "--real", str(store2d.path), "--synthetic", str(other.path)])
    assert isinstance(bad.exception, SynthmedError) and "channels and sizes must match" in str(bad.exception)


# ----------------------------------------------------------------------------- patients


@pytest.fixture(scope="module")
def patients_store(tmp_path_factory: pytest.TempPathFactory):
    """40 samples of 20 patients (2 slices each); the last 6 patients (12 samples) in split test."""
    from tiny_stores import make_store

    return make_store(tmp_path_factory.mktemp("patients") / "real", n=40, n_test=12)


def _patients(rng: np.random.Generator, cases: int, slices: int, dim: int, *, within: float = 0.3,
              prefix: str = "p") -> tuple[np.ndarray, np.ndarray]:
    """Features ``[cases·slices, dim]`` in case-then-slice order: each patient a random centre, its
    slices that centre plus ``within`` noise (neighbouring slices of one patient are alike)."""
    centres = rng.standard_normal((cases, dim))
    x = np.repeat(centres, slices, axis=0) + within * rng.standard_normal((cases * slices, dim))
    return x, np.repeat(np.array([f"{prefix}{i}" for i in range(cases)]), slices)


def test_relative_fd_halves_share_no_patient_and_have_equal_sizes():
    rng = np.random.default_rng(6)
    sizes = rng.integers(3, 12, size=9)
    cases = np.repeat(np.array([f"p{i}" for i in range(9)]), sizes)
    a, b = case_halves(cases, seed=0)
    assert len(a) == len(b) and 2 * len(a) >= len(cases) - sizes.max()  # balanced up to one patient
    assert not set(cases[a]) & set(cases[b])
    assert len(np.intersect1d(a, b)) == 0 and len(np.unique(a)) == len(a)
    a1, _ = case_halves(cases, seed=1)
    assert set(cases[a1]) != set(cases[a]) or not np.array_equal(a1, a)
    a2, b2 = case_halves(None, n=10, seed=0)  # no patients: every sample is its own
    assert len(a2) == len(b2) == 5 and not set(a2) & set(b2)


def test_relative_fd_of_new_patients_from_the_real_distribution_is_about_one():
    """Real features come as slices of 40 patients; a perfect generator draws new patients. With
    sample-level halves every patient is in both halves, FD(A, B) is only the slice noise and the
    relative FD explodes; with patient-level halves it is about 1."""
    rng = np.random.default_rng(7)
    real, cases = _patients(rng, 40, 10, 4)
    synthetic, _ = _patients(rng, 400, 1, 4)
    rel = relative_frechet_distance(real, synthetic, cases=cases, seed=0)
    assert 0.3 < rel["relative_fd"] < 2, rel


def test_relative_fd_compares_equal_sample_sizes():
    """2000 real and 100 synthetic samples from one distribution: FD's finite-sample bias must
    be the same above and below the fraction, so the ratio is about 1 (not about 2.7)."""
    values = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        real, synthetic = rng.standard_normal((2000, 8)), rng.standard_normal((100, 8))
        rel = relative_frechet_distance(real, synthetic, seed=seed)
        assert rel["relative_fd_n"] == 100
        values.append(rel["relative_fd"])
    assert 0.6 < np.mean(values) < 1.5, values


def _case_balls(x: np.ndarray, cases: np.ndarray, k: int) -> np.ndarray:
    """Brute force: distance of each sample to its k-th nearest sample of *another* case."""
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    return np.array([np.sort(d[i, cases != cases[i]])[k - 1] for i in range(len(x))])


def test_prdc_radii_never_come_from_the_samples_own_patient():
    rng = np.random.default_rng(8)
    real, cases = _patients(rng, 12, 4, 3, within=0.05)
    fake, fake_cases = _patients(rng, 10, 3, 3, within=0.05, prefix="s")
    r3, f3, r5 = _case_balls(real, cases, 3), _case_balls(fake, fake_cases, 3), _case_balls(real, cases, 5)
    n, m = len(real), len(fake)
    prec = np.mean([any(np.linalg.norm(y - real[i]) <= r3[i] for i in range(n)) for y in fake])
    rec = np.mean([any(np.linalg.norm(x - fake[j]) <= f3[j] for j in range(m)) for x in real])
    dens = sum(np.linalg.norm(y - real[i]) <= r5[i] for y in fake for i in range(n)) / (5 * m)
    cov = np.mean([any(np.linalg.norm(y - real[i]) <= r5[i] for y in fake) for i in range(n)])
    got = precision_recall(real, fake, real_cases=cases, synthetic_cases=fake_cases)
    assert got == pytest.approx((prec, rec), abs=1e-12)
    assert density_coverage(real, fake, real_cases=cases) == pytest.approx((dens, cov), abs=1e-12)
    # on these data the rule matters: balls from a patient's own neighbouring slices hold almost nothing
    assert precision_recall(real, fake)[0] < prec - 0.3


def test_inception_score_splits_are_a_seeded_shuffle_of_the_samples():
    k = 5
    blocks = np.eye(k)[np.repeat(np.arange(k), 40)] * 50  # case-then-slice order: one class per block
    assert inception_score(blocks, splits=5, seed=0)[0] > 0.8 * k  # in order, every split is one class: IS 1
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((97, 6)) * 3
    perm = rng.permutation(97)
    assert inception_score(logits[perm], splits=10, seed=3) == inception_score(logits, splits=10, seed=3)
    assert inception_score(logits, splits=10, seed=4) != inception_score(logits, splits=10, seed=3)


def test_fd_train_is_below_fd_for_a_copy_of_the_training_patients_only():
    """A 'generator' that returns its training split is nearer the training patients than the
    test patients; one that draws new patients is as near to both (equal reference sizes)."""
    rng = np.random.default_rng(10)
    train, train_cases = _patients(rng, 40, 10, 32, within=0.5)
    test, test_cases = _patients(rng, 10, 10, 32, within=0.5, prefix="t")
    honest, _ = _patients(rng, 400, 1, 32, within=0.5)
    kw = {"real_cases": test_cases, "train": train, "train_cases": train_cases, "kid_subsets": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier, fair = fidelity_metrics(test, train, **kw), fidelity_metrics(test, honest, **kw)
    assert copier["n_real"] == 100 and copier["fd_train_subsets"] == 4
    assert copier["fd_train"] < 0.75 * copier["fd"], copier
    assert 0.8 * fair["fd"] < fair["fd_train"] < 1.25 * fair["fd"], fair


def test_evaluate_fidelity_scores_against_the_test_patients(patients_store, tmp_path):
    from synthmed.data.store import StoreWriter
    from synthmed.evaluate import evaluate_fidelity
    from synthmed.features import DomainEncoderConfig

    train = patients_store.indices("train")
    images, labels = patients_store.read(train)
    rows = [{"case_id": f"syn_{i:05d}", "slice": 0, "split": "train", "source": "copy"} for i in range(len(train))]
    with StoreWriter(tmp_path / "copy", dims=2, channels=patients_store.channels,
                     sample_shape=patients_store.sample_shape, spacing=patients_store.spacing,
                     normalisation={"kind": "test"}, provenance={"made_by": "tests"}, synthetic=True) as writer:
        writer.append(images, labels, rows)
    config = DomainEncoderConfig(width=8, feature_dim=16, projection_dim=8, steps=20, batch=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = evaluate_fidelity(patients_store, writer.store, encoder_config=config, device="cpu", progress=False)
    assert out["real_split"] == "test" and out["train_split"] == "train"
    assert out["n_real"] == 12 and out["n_synthetic"] == 28 and out["fd_train_subsets"] == 2
    assert out["fd_train"] < out["fd"], out


def test_evaluate_fidelity_cli_is_reproducible_with_a_retrained_encoder(patients_store, tmp_path):
    """The same command twice, the encoder folder deleted in between: identical numbers."""
    from typer.testing import CliRunner

    from synthmed.cli import app
    from tiny_stores import make_store

    syn = make_store(tmp_path / "syn", n=16, seed=1, n_test=0)
    enc = tmp_path / "enc"
    args = ["evaluate", "fidelity", "--real", str(patients_store.path), "--synthetic", str(syn.path), "--weights",
            str(enc), "--encoder-steps", "3", "--device", "cpu", "--no-progress", "--json"]
    outs = []
    for global_seed in (1, 2):
        shutil.rmtree(enc, ignore_errors=True)
        torch.manual_seed(global_seed)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        outs.append(json.loads(result.stdout[result.stdout.index("{"):]))
    assert outs[0] == outs[1]


def test_evaluate_fidelity_groups_samples_by_subject(tmp_path, monkeypatch):
    """On a longitudinal store the metrics' patients are subjects: the visits of one subject are
    one patient (relative-FD halves, fd_train subsets and PRDC radii never split them)."""
    import synthmed.evaluate.fidelity as evaluate
    from synthmed.features import DomainEncoderConfig
    from tiny_stores import make_store

    real = make_store(tmp_path / "real", n=40, n_test=12, visits=2)  # 10 subjects of 2 visits, 3 in test
    syn = make_store(tmp_path / "syn", n=8, seed=1, n_test=0, synthetic=True)
    seen: dict = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return fidelity_metrics(*args, **kwargs)

    monkeypatch.setattr(evaluate, "fidelity_metrics", spy)
    config = DomainEncoderConfig(width=8, feature_dim=16, projection_dim=8, steps=2, batch=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate.evaluate_fidelity(real, syn, encoder_config=config, device="cpu", progress=False)
    subjects = real.samples["subject_id"].to_numpy()
    assert list(seen["real_cases"]) == list(subjects[real.indices("test")])
    assert list(seen["train_cases"]) == list(subjects[real.indices("train")])
    assert len(set(seen["real_cases"])) == 3 and len(set(seen["train_cases"])) == 7
    assert list(seen["synthetic_cases"]) == list(syn.samples["case_id"])  # a generator's samples: one patient each
