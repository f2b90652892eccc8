"""A training set in which some output of the task has one class only is refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_stores import make_store

from synthmed.classify.api import train_classifier
from synthmed.classify.samples import check_learnable
from synthmed.classify.targets import TASKS
from synthmed.data.store import StoreWriter
from synthmed.errors import SynthmedError
from synthmed.segmentation.data import build_training_set
from synthmed.training.fabric import FabricOptions

CPU = FabricOptions(device="cpu")


def test_a_training_set_with_both_classes_of_every_output_passes(presence2d) -> None:
    parts = build_training_set([presence2d], val_fraction=0.2).train.parts
    for task in TASKS:
        check_learnable(parts, task)


def test_volumes_that_all_hold_a_tumour_are_refused_naming_the_output_and_what_to_do(store3d, tmp_path) -> None:
    out = tmp_path / "run"
    with pytest.raises(SynthmedError) as info:  # every sample of store3d has a tumour blob
        train_classifier(out, [store3d.path], task="presence", fabric=CPU, progress=False)
    message = str(info.value)
    assert "task presence: output tumour is 1 for all" in message and str(store3d.path) in message
    assert "every volume holds a tumour" in message and "--tumour-free-fraction" in message
    assert not out.exists()
    with pytest.raises(SynthmedError, match="output grade>=1 is 1 for all"):
        train_classifier(out, [store3d.path], task="grade", fabric=CPU, progress=False)


def test_synthetic_samples_that_all_hold_a_tumour_point_at_the_generator(tmp_path) -> None:
    synthetic = make_store(tmp_path / "synthetic", synthetic=True)
    with pytest.raises(SynthmedError, match="the generator drew no sample where it is 0"):
        train_classifier(tmp_path / "run", [synthetic.path], fabric=CPU, progress=False)


def test_an_output_without_a_positive_sample_is_refused(tmp_path) -> None:
    """``regions`` on slices with edema but no NCR or ET voxel: the NCR output is 0 everywhere."""
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[::2, 2:5, 2:5] = 2
    rows = [{"case_id": f"case{i}", "slice": 0, "split": "train", "source": "test"} for i in range(4)]
    with StoreWriter(tmp_path / "edema", dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, 8, 8),
                     spacing=(1.0, 1.0, 1.0), normalisation={"kind": "test"}, provenance={"made_by": "tests"},
                     synthetic=False) as writer:
        writer.append(np.full((4, 4, 8, 8), 0.5, np.float32), labels, rows)
    parts = build_training_set([writer.store], val_fraction=0).train.parts
    check_learnable(parts, "presence")
    with pytest.raises(SynthmedError, match="output NCR is 0 for all 4 training samples .*no training sample is positive"):
        check_learnable(parts, "regions")
