"""Test subjects are patients: on a longitudinal store (several visits per subject) the
intervals of ``classify eval`` resample subjects, each with all its visits, not visits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmed.classify.api import load_classifier, train_classifier
from synthmed.classify.config import ClassifierModelConfig
from synthmed.classify.dual_bn import bn_route
from synthmed.classify.robustness import evaluate_classifier
from synthmed.classify.samples import eval_samples, predict
from synthmed.classify.samples import test_samples as read_test_samples
from synthmed.classify.targets import targets_from_labels
from synthmed.metrics.classification import auroc, bootstrap_ci
from synthmed.training.fabric import FabricOptions


def test_test_samples_carry_the_subject_of_each_visit(visits2d):
    config = ClassifierModelConfig(spatial_dims=2, in_channels=4, image_shape=(16, 16))
    images, labels, subjects = read_test_samples(visits2d, config)
    table = visits2d.samples.iloc[visits2d.indices("test")]
    assert len(images) == len(labels) == 16 and table["case_id"].nunique() == 8
    assert subjects.tolist() == table["subject_id"].tolist() and len(set(subjects)) == 4


def test_eval_samples_are_the_test_samples_with_the_task_targets_and_a_subject_count(visits2d):
    config = ClassifierModelConfig(task="regions", num_outputs=3, spatial_dims=2, in_channels=4, image_shape=(16, 16))
    images, labels, subjects = read_test_samples(visits2d, config, max_samples=10, seed=1)
    test = eval_samples(visits2d.path, config, max_samples=10, seed=1)
    assert test.store.path == visits2d.path and test.images.dtype == torch.float32
    np.testing.assert_array_equal(test.images.numpy(), images)
    np.testing.assert_array_equal(test.labels, labels)
    assert test.subjects.tolist() == subjects.tolist() and test.n_subjects == len(set(subjects.tolist()))
    assert test.targets.shape == (10, 3)
    torch.testing.assert_close(test.targets, targets_from_labels(torch.from_numpy(labels), "regions"))


def test_evaluation_intervals_resample_whole_subjects(visits2d, tmp_path):
    run = tmp_path / "run"
    train_classifier(run, [visits2d.path], fabric=FabricOptions(device="cpu"),
                     train_overrides={"steps": 2, "batch": 8, "validate_every": 0}, progress=False)
    result = evaluate_classifier(run, visits2d.path, eps_sweep=[0.0], n_boot=40, device="cpu", write=False,
                                 progress=False)
    assert result["n"] == 16 and result["subjects"] == 4
    net, config, _, _ = load_classifier(run, device="cpu")
    images, labels, _ = read_test_samples(visits2d, config)
    with bn_route("clean"):
        probs = predict(net, torch.from_numpy(images))[:, 0]
    targets = targets_from_labels(torch.from_numpy(labels), config.task).numpy()[:, 0]
    test = visits2d.samples.iloc[visits2d.indices("test")]
    by_subject = bootstrap_ci(probs, targets, test["subject_id"].to_numpy(), auroc, n_boot=40, seed=0)
    by_visit = bootstrap_ci(probs, targets, test["case_id"].to_numpy(), auroc, n_boot=40, seed=0)
    got = result["clean"]["tumour"]["auroc_ci"]
    np.testing.assert_allclose(got, by_subject, equal_nan=True)
    assert not np.allclose(got, by_visit, equal_nan=True), "the interval resampled visits"
