"""Training sets: region conversion, subject-level validation, mixing proportions, store checks."""

from __future__ import annotations

import pytest
import torch
from conftest import make_synthetic

from synthmed.errors import SynthmedError
from synthmed.segmentation import build_training_set, labels_to_regions, regions_to_labels
from synthmed.training import batch_stream


def test_regions_round_trip_and_nesting():
    labels = torch.tensor([[0, 1, 2, 3]], dtype=torch.uint8)
    regions = labels_to_regions(labels)
    assert regions[0].T.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1]]  # WT, TC, ET per label
    assert torch.equal(regions_to_labels(regions), labels)
    # an ET voxel predicted outside WT/TC is still ET; TC without ET is NCR; WT only is ED
    odd = torch.tensor([[[0, 0, 1, 1], [0, 1, 1, 0], [0, 0, 0, 1]]]).permute(0, 1, 2)
    assert regions_to_labels(odd).tolist() == [[0, 1, 1, 3]]


def _case_ids(dataset, column="case_id"):
    out = []
    for part in dataset.parts:
        out += part.store.samples[column].to_numpy()[part.indices].tolist()
    return out


def test_validation_split_is_by_subject_and_seeded(real2d):
    ts = build_training_set([real2d], seed=0, val_fraction=0.34)
    train, val = set(_case_ids(ts.train)), set(_case_ids(ts.val))
    assert not train & val and len(val) == 2 and len(train) == 4  # 6 train cases, round(0.34 * 6) = 2
    assert len(ts.train) == 8 and len(ts.val) == 4  # both slices of each case go together
    assert set(_case_ids(build_training_set([real2d], seed=0, val_fraction=0.34).val)) == val
    assert ts.description["kind"] == "real"
    scarce = build_training_set([real2d], seed=0, val_fraction=0.34, subject_fraction=0.5)
    assert len(set(_case_ids(scarce.train))) == 2 and set(_case_ids(scarce.val)) == val


@pytest.mark.parametrize("seed", range(6))
def test_validation_and_scarce_splits_hold_out_whole_subjects(longitudinal2d, seed):
    """A longitudinal store: 6 training subjects of 2 visits each. The validation split holds out
    round(0.34 × 6) = 2 subjects with all their visits; the scarce-data share keeps whole subjects."""
    ts = build_training_set([longitudinal2d], seed=seed, val_fraction=0.34)
    train, val = set(_case_ids(ts.train, "subject_id")), set(_case_ids(ts.val, "subject_id"))
    assert not train & val, f"subjects {sorted(train & val)} are in training and validation"
    assert len(val) == 2 and len(train) == 4 and len(ts.val) == 2 * 2 * 2  # 2 subjects × 2 visits × 2 slices
    assert set(_case_ids(ts.val)) == set(longitudinal2d.samples.case_id[longitudinal2d.samples.subject_id.isin(val)])
    store = ts.description["stores"][0]
    assert (store["train_subjects"], store["val_subjects"], store["train_cases"], store["val_cases"]) == (4, 2, 8, 4)
    scarce = build_training_set([longitudinal2d], seed=seed, val_fraction=0.34, subject_fraction=0.5)
    kept = set(_case_ids(scarce.train, "subject_id"))
    assert len(kept) == 2 and not kept & val and len(scarce.train) == 2 * 2 * 2  # whole subjects kept
    assert set(_case_ids(scarce.val, "subject_id")) == val


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_real_fraction_gives_the_requested_proportion(real2d, syn2d, fraction):
    ts = build_training_set([real2d, syn2d], seed=0, val_fraction=0.0, real_fraction=fraction, budget=6)
    synthetic = [part.store.synthetic for part in ts.train.parts for _ in range(len(part))]
    assert len(synthetic) == 6 and synthetic.count(False) == round(fraction * 6)
    assert ts.description["kind"] == "mix" and ts.description["n_real"] == round(fraction * 6)
    # over one epoch of the batch stream every sample is drawn once: the proportion holds
    stream = batch_stream(ts.train, 3, seed=0)
    drawn = torch.cat([next(stream)[1] for _ in range(2)])
    assert drawn.shape[0] == 6
    mixed = build_training_set([real2d, syn2d], seed=0, val_fraction=0.0)
    assert mixed.description["kind"] == "synthetic+real" and len(mixed.train) == 12 + 6


def test_mixed_dataset_items_come_from_the_right_store(real2d, syn2d):
    ts = build_training_set([real2d, syn2d], seed=0, val_fraction=0.0)
    items = ts.train.__getitems__([0, 11, 12, 17])
    image, label = syn2d.read([0])
    assert torch.equal(items[2][0], torch.from_numpy(image[0])) and torch.equal(items[2][1], torch.from_numpy(label[0]))
    ids = ts.train.chunk_ids  # chunks of different stores never share an id
    assert ids[12:].min() >= real2d.n_chunks and ids[:12].max() < real2d.n_chunks


def test_bad_sets(real2d, syn2d, store3d, tmp_path):
    other = make_synthetic(tmp_path / "t1only", channels=("t1", "t2", "flair", "t1ce"))
    with pytest.raises(SynthmedError, match="channels"):
        build_training_set([real2d, other])
    with pytest.raises(SynthmedError, match="3D samples"):
        build_training_set([real2d, store3d])
    with pytest.raises(SynthmedError, match="needs at least one real and one synthetic"):
        build_training_set([real2d], real_fraction=0.5)
    with pytest.raises(SynthmedError, match="needs 10 real"):
        build_training_set([real2d, syn2d], real_fraction=1.0, budget=10, val_fraction=0.5)
