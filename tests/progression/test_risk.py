"""Progression risk: class probabilities from cumulative grade outputs, the risk against a brute-force sum, and
the baselines, follow-ups and fast-progressor ground truth of a longitudinal store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_stores import make_longitudinal_store

from synthmed.classify.targets import predicted_grade, targets_from_labels
from synthmed.data.grades import N_GRADES
from synthmed.errors import SynthmedError
from synthmed.progression.followup import (baselines, check_one_sample_per_visit, default_horizon, followup_pairs,
                                           pair_grades, subjects_with_followup)
from synthmed.progression.risk import fast_progressor, grade_probabilities, progression_risk


def brute_force_risk(pb: np.ndarray, pf: np.ndarray, min_jump: int = 2) -> np.ndarray:
    out = np.zeros(len(pb))
    for n in range(len(pb)):
        for a in range(pb.shape[1]):
            for b in range(pf.shape[1]):
                if b - a >= min_jump:
                    out[n] += pb[n, a] * pf[n, b]
    return out


def random_classes(rng: np.random.Generator, n: int) -> np.ndarray:
    return grade_probabilities(rng.uniform(size=(n, N_GRADES - 1)))  # not monotone: the fix applies


@pytest.mark.parametrize("min_jump", [1, 2, 3])
def test_risk_equals_the_brute_force_double_loop_and_lies_in_0_1(min_jump):
    rng = np.random.default_rng(0)
    pb, pf = random_classes(rng, 200), random_classes(rng, 200)
    risk = progression_risk(pb, pf, min_jump=min_jump)
    np.testing.assert_allclose(risk, brute_force_risk(pb, pf, min_jump), rtol=0, atol=1e-12)
    assert ((risk >= 0) & (risk <= 1)).all()
    dirichlet = rng.dirichlet(np.full(N_GRADES, 0.2), size=(2, 200))  # near one-hot rows too
    np.testing.assert_allclose(progression_risk(*dirichlet, min_jump=min_jump), brute_force_risk(*dirichlet, min_jump),
                               rtol=0, atol=1e-12)


def test_risk_extremes():
    top, bottom = np.eye(N_GRADES)[[-1]], np.eye(N_GRADES)[[0]]
    rng = np.random.default_rng(1)
    for pf in random_classes(rng, 20):
        assert progression_risk(top, pf[None])[0] == 0  # nothing lies two grades above the top
        assert progression_risk(np.eye(N_GRADES)[[-2]], pf[None])[0] == 0
    assert progression_risk(bottom, top)[0] == 1 and progression_risk(bottom, np.eye(N_GRADES)[[1]])[0] == 0
    assert progression_risk(bottom, np.eye(N_GRADES)[[1]], min_jump=1)[0] == 1
    with pytest.raises(ValueError, match="differ in shape"):
        progression_risk(top, np.ones((2, N_GRADES)) / N_GRADES)
    with pytest.raises(ValueError, match=">= 0"):
        progression_risk(-top, top)


def test_grade_probabilities_from_cumulative_outputs():
    p = grade_probabilities([[0.9, 0.3, 0.8], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.2, 0.5, -0.1]])
    np.testing.assert_allclose(p, [[0.1, 0.6, 0.0, 0.3], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0.5, 0.5, 0]], atol=1e-12)
    rng = np.random.default_rng(2)
    p = random_classes(rng, 100)
    assert (p >= 0).all() and np.allclose(p.sum(1), 1)
    labels = torch.zeros(4, 32, 32, dtype=torch.uint8)  # grades 0 to 3: 0, 5, 10 and 40 pixels
    for g, pixels in enumerate((0, 5, 10, 40)):
        labels[g].view(-1)[:pixels] = 2
    targets = targets_from_labels(labels, "grade").numpy()
    np.testing.assert_array_equal(grade_probabilities(targets), np.eye(N_GRADES))
    assert predicted_grade(targets).tolist() == grade_probabilities(targets).argmax(1).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        grade_probabilities(np.zeros((2, 4)))


def test_fast_progressor():
    assert fast_progressor([0, 1, 1, 2], [2, 2, 3, 3]).tolist() == [True, False, True, False]
    assert fast_progressor([0], [1], min_jump=1).tolist() == [True]


def visits_table(rows: list[tuple[str, int, float, str]]) -> pd.DataFrame:
    return pd.DataFrame([{"case_id": f"{s}-v{v}", "slice": 0, "split": split, "subject_id": s, "visit": v,
                          "months": m} for s, v, m, split in rows])


def test_baselines_followups_and_the_default_horizon():
    table = visits_table([("a", 0, 0, "test"), ("a", 1, 12, "test"), ("a", 2, 24, "test"),
                          ("b", 0, 3, "test"), ("b", 1, 15.3, "test"),  # its baseline is at 3 months
                          ("c", 0, 0, "test"), ("c", 1, float("nan"), "test"),
                          ("d", 0, 0, "train"), ("d", 1, 12, "train")])
    base = baselines(table, "test")
    assert base["subject"].tolist() == ["a", "b", "c"] and base["index"].tolist() == [0, 3, 5]
    assert subjects_with_followup(table, "test") == ["a", "b"] and subjects_with_followup(table) == ["a", "b", "d"]
    pairs = followup_pairs(table, 12, "test")
    assert pairs.subjects.tolist() == ["a", "b"] and pairs.followup.tolist() == [1, 4]
    np.testing.assert_allclose(pairs.months, [12, 12.3])
    assert pairs.without == ("c",)
    assert followup_pairs(table, 24, "test").subjects.tolist() == ["a"]
    assert default_horizon(table, "test") == 12  # 24 months: one subject of three
    with pytest.raises(SynthmedError, match=r"no subject of split 'test' has a follow-up 6 months .*\[12.0, 12.3, 24.0\]"):
        followup_pairs(table, 6, "test")
    with pytest.raises(SynthmedError, match="positive number of months"):
        followup_pairs(table, 0, "test")
    check_one_sample_per_visit(table, "S")
    with pytest.raises(SynthmedError, match="S: subject a has 2 samples at visit 1; .* --slices centre"):
        check_one_sample_per_visit(pd.concat([table, table.iloc[[1]]]), "S")


def test_fast_progressors_from_the_store_masks(tmp_path):
    store = make_longitudinal_store(tmp_path / "cohort")
    pairs = followup_pairs(store.samples, 24, "test")
    base, follow, fast = pair_grades(store, pairs)
    assert pairs.subjects.tolist() == ["subj4", "subj5", "subj6", "subj7"]
    assert base.tolist() == [1, 1, 1, 1] and follow.tolist() == [1, 3, 1, 3]
    assert fast.tolist() == [False, True, False, True]
    _, _, fast12 = pair_grades(store, followup_pairs(store.samples, 12, "test"))
    assert not fast12.any()  # one grade up at 12 months: not yet fast
    train = followup_pairs(store.samples, 24, "train")
    assert pair_grades(store, train)[0].tolist() == [0, 1, 1, 1]  # subj0's baseline is tumour-free
