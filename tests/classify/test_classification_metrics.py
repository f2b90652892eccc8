"""Classification metrics against scikit-learn, and the subject-level bootstrap against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from synthmed.metrics.classification import (
    accuracy,
    auroc,
    balanced_accuracy,
    bootstrap_ci,
    classification_metrics,
    midranks,
    subject_resamples,
)


def tied_data(seed: int, n: int = 200):
    """Probabilities rounded to tenths (many ties, some exactly 0.5) and targets related to them."""
    rng = np.random.default_rng(seed)
    probs = np.round(rng.uniform(0, 1, n), 1)
    targets = (rng.uniform(0, 1, n) < 0.3 + 0.4 * probs).astype(np.uint8)
    return probs, targets


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn_with_ties(seed):
    probs, targets = tied_data(seed)
    assert (probs == 0.5).any()
    predicted = (probs > 0.5).astype(int)
    assert auroc(probs, targets) == pytest.approx(roc_auc_score(targets, probs), abs=1e-12)
    assert accuracy(probs, targets) == pytest.approx(accuracy_score(targets, predicted), abs=1e-12)
    assert balanced_accuracy(probs, targets) == pytest.approx(balanced_accuracy_score(targets, predicted), abs=1e-12)


def test_midranks_equal_scipy():
    values = np.round(np.random.default_rng(0).uniform(0, 1, 300), 1)
    assert np.array_equal(midranks(values), rankdata(values, method="average"))
    assert midranks(np.zeros(0)).shape == (0,)


def test_auroc_hand_made_ties():
    # positives 0.5, 0.8; negatives 0.5, 0.2: pairs (0.5>0.2)=1, (0.5=0.5)=.5, (0.8>·)=1+1 → 3.5/4
    assert auroc([0.5, 0.8, 0.5, 0.2], [1, 1, 0, 0]) == 0.875
    assert auroc([0.1, 0.9], [True, False]) == 0.0


def test_one_class_is_nan():
    assert math.isnan(auroc([0.1, 0.9], [1, 1]))
    assert math.isnan(balanced_accuracy([0.1, 0.9], [0, 0]))
    assert accuracy([0.1, 0.9], [0, 0]) == 0.5
    assert math.isnan(auroc([], []))
    assert math.isnan(accuracy([], []))


def test_bad_inputs():
    with pytest.raises(ValueError, match="0 or 1"):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan, 0.2], [0, 1])
    with pytest.raises(ValueError, match="length"):
        accuracy([0.1], [0, 1])


def test_classification_metrics_per_label_and_macro_mean():
    probs = np.stack([tied_data(0)[0], tied_data(1)[0], np.full(200, 0.7)], 1)
    targets = np.stack([tied_data(0)[1], tied_data(1)[1], np.zeros(200)], 1)
    out = classification_metrics(probs, targets, ["a", "b", "never"])
    assert list(out) == ["a", "b", "never", "mean"]
    for k, name in enumerate(["a", "b"]):
        assert out[name]["auroc"] == pytest.approx(roc_auc_score(targets[:, k], probs[:, k]))
        assert out[name]["positives"] == targets[:, k].sum() and out[name]["n"] == 200
    assert math.isnan(out["never"]["auroc"]) and out["never"]["accuracy"] == 0.0
    assert out["mean"]["auroc"] == pytest.approx((out["a"]["auroc"] + out["b"]["auroc"]) / 2)
    assert out["mean"]["accuracy"] == pytest.approx((out["a"]["accuracy"] + out["b"]["accuracy"]) / 3)
    with pytest.raises(ValueError, match="mean"):
        classification_metrics(probs, targets, ["a", "mean", "c"])
    with pytest.raises(ValueError, match="names"):
        classification_metrics(probs, targets, ["a"])


def test_resamples_take_whole_subjects():
    subjects = np.array(["p3", "p1", "p3", "p2", "p1", "p3"])
    for index in subject_resamples(subjects, 50, seed=1):
        drawn = subjects[index]
        # each subject appears a multiple of its sample count, its samples in input order
        for s, count in zip(*np.unique(subjects, return_counts=True)):
            assert (drawn == s).sum() % count == 0
        # three subject draws in all
        assert sum((drawn == s).sum() // c for s, c in zip(*np.unique(subjects, return_counts=True))) == 3
    # the draws are the seeded generator's, in code order (p1 = 0, p2 = 1, p3 = 2)
    rows = np.random.default_rng(1).integers(0, 3, size=(50, 3))
    members = {0: [1, 4], 1: [3], 2: [0, 2, 5]}
    for index, row in zip(subject_resamples(subjects, 50, seed=1), rows):
        assert index.tolist() == [i for code in row for i in members[code]]


def test_one_sample_per_subject_matches_a_brute_force_loop():
    probs, targets = tied_data(2, n=60)
    subjects = np.arange(60)[::-1]  # codes are the sorted ids: sample i has code 59 - i
    rows = np.random.default_rng(7).integers(0, 60, size=(300, 60))
    values = [auroc(probs[59 - row], targets[59 - row]) for row in rows]
    expected = np.quantile(values, [0.05, 0.95])
    got = bootstrap_ci(probs, targets, subjects, auroc, n_boot=300, level=0.9, seed=7)
    assert got == pytest.approx(tuple(expected), abs=1e-12)


def test_deterministic_contains_the_estimate_and_narrows_with_subjects():
    def interval(n, seed=0):
        probs, targets = tied_data(n, n=n)
        return bootstrap_ci(probs, targets, np.arange(n), auroc, n_boot=400, seed=seed), auroc(probs, targets)

    (lo, hi), estimate = interval(1000)
    assert (lo, hi) == interval(1000)[0]
    assert interval(1000, seed=1)[0] != (lo, hi)
    assert lo < estimate < hi
    (lo_small, hi_small), _ = interval(100)
    assert hi_small - lo_small > 2 * (hi - lo)


def test_subject_level_interval_is_wider_than_sample_level():
    # 20 subjects, 10 identical samples each: sample-level resampling pretends there are 200
    rng = np.random.default_rng(3)
    probs = np.repeat(rng.uniform(0, 1, 20), 10)
    targets = np.repeat((rng.uniform(0, 1, 20) < probs[::10]).astype(int), 10)
    subjects = np.repeat([f"s{i:02d}" for i in range(20)], 10)
    by_subject = bootstrap_ci(probs, targets, subjects, accuracy, n_boot=500)
    by_sample = bootstrap_ci(probs, targets, np.arange(200), accuracy, n_boot=500)
    assert (by_subject[1] - by_subject[0]) > 2 * (by_sample[1] - by_sample[0])


def test_undefined_resamples_are_skipped_or_give_nan():
    # one positive subject of 10: about 35 % of resamples miss it (auroc nan)
    probs = np.linspace(0, 1, 10)
    targets = np.zeros(10, dtype=int)
    targets[-1] = 1
    lo, hi = bootstrap_ci(probs, targets, np.arange(10), auroc, n_boot=200)
    assert lo == hi == 1.0
    assert all(math.isnan(v) for v in bootstrap_ci(probs, targets, np.arange(10), auroc, n_boot=200, min_valid=0.9))
    assert all(math.isnan(v) for v in bootstrap_ci(probs, np.zeros(10), np.arange(10), auroc, n_boot=20))
    assert all(math.isnan(v) for v in bootstrap_ci([], [], [], auroc))


def test_multi_label_statistic():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, (1000, 3))
    targets = (rng.uniform(0, 1, (1000, 3)) < probs).astype(int)
    subjects = rng.integers(0, 40, 1000)

    def mean_auroc(p, t):
        return classification_metrics(p, t, ["a", "b", "c"])["mean"]["auroc"]

    lo, hi = bootstrap_ci(probs[:, 0], targets[:, 0], subjects, auroc, n_boot=1000)
    assert lo < auroc(probs[:, 0], targets[:, 0]) < hi
    lo, hi = bootstrap_ci(probs, targets, subjects, mean_auroc, n_boot=50)
    assert lo < mean_auroc(probs, targets) < hi
