"""Classification targets on hand-made masks whose presence, regions and grades are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmed.classify.targets import (
    GRADE_BINS,
    N_GRADES,
    TASKS,
    grade_of,
    label_names,
    n_outputs,
    predicted_grade,
    targets_from_labels,
    wt_fraction,
)
from synthmed.errors import SynthmedError


def masks_2d() -> torch.Tensor:
    """Four 10×10 slices (100 voxels): empty; 1 ED voxel; NCR + ET (2 voxels); 20 voxels of all three."""
    x = torch.zeros(4, 10, 10, dtype=torch.uint8)
    x[1, 0, 0] = 2
    x[2, 3, 3] = 1
    x[2, 5, 5] = 3
    x[3, :2, :] = 2
    x[3, 4, 4] = 1
    x[3, 6, 6] = 3
    return x


def test_names_and_sizes():
    assert TASKS == ("presence", "regions", "grade")
    assert label_names("presence") == ("tumour",)
    assert label_names("regions") == ("NCR", "ED", "ET")
    assert label_names("grade") == ("grade>=1", "grade>=2", "grade>=3")
    assert [n_outputs(t) for t in TASKS] == [1, 3, 3]
    assert N_GRADES == 4


def test_unknown_task_names_the_option_and_choices():
    with pytest.raises(SynthmedError, match=r"--task.*'size'.*presence, regions, grade"):
        targets_from_labels(masks_2d(), "size")
    with pytest.raises(SynthmedError, match="--task"):
        label_names("Presence")


def test_presence_and_regions_2d():
    x = masks_2d()
    presence = targets_from_labels(x, "presence")
    assert presence.dtype == torch.float32 and presence.shape == (4, 1)
    assert presence[:, 0].tolist() == [0, 1, 1, 1]
    regions = targets_from_labels(x, "regions")
    assert regions.tolist() == [[0, 0, 0], [0, 1, 0], [1, 0, 1], [1, 1, 1]]


def test_3d_presence_regions_and_grades():
    x = torch.zeros(3, 10, 10, 10, dtype=torch.uint8)  # 1,000 voxels each
    x[1, 2, 2, :5] = 3  # 5 voxels: fraction 0.005, grade 1
    x[2, :2, :5, :] = 2  # 100 ED voxels: 0.1, grade 3
    x[2, 5, 5, 5] = 1
    assert targets_from_labels(x, "presence")[:, 0].tolist() == [0, 1, 1]
    assert targets_from_labels(x, "regions").tolist() == [[0, 0, 0], [0, 0, 1], [1, 1, 0]]
    assert grade_of(x).tolist() == [0, 1, 3]
    assert targets_from_labels(x, "grade").tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 1]]


def test_grades_2d_against_the_bins():
    x = masks_2d()
    assert wt_fraction(x).tolist() == [0.0, 0.01, 0.02, 0.22]
    # 0.01 lies in (0.007, 0.014], 0.02 and 0.22 above 0.014
    assert grade_of(x).tolist() == [0, 2, 3, 3]
    assert grade_of(x).dtype == torch.int64


def test_fraction_exactly_on_an_edge_takes_the_lower_grade():
    # 1,000 voxels: k voxels give k / 1000 exactly as the float literal (correctly rounded division)
    x = torch.zeros(4, 1000, dtype=torch.uint8)
    x[0, :7] = 1  # 0.007: on grade 1's upper edge
    x[1, :8] = 1  # 0.008: above it
    x[2, :14] = 2  # 0.014: on grade 2's upper edge
    x[3, :15] = 3  # 0.015
    assert GRADE_BINS == (0.0, 0.007, 0.014)
    assert grade_of(x).tolist() == [1, 2, 2, 3]


def test_grades_independent_of_dtype_and_labels_values_beyond_wt():
    x = masks_2d()
    assert torch.equal(grade_of(x.long()), grade_of(x))
    assert torch.equal(grade_of((x > 0).to(torch.uint8)), grade_of(x))


@pytest.mark.parametrize("shape", [(64, 16, 16), (48, 6, 6, 6)])
def test_cumulative_encoding_round_trip(shape):
    g = torch.Generator().manual_seed(0)
    n = int(np.prod(shape[1:]))
    # 0 to 7 tumour voxels of 256 or 216: every grade
    sizes = torch.randint(0, 8, (shape[0],), generator=g)
    x = torch.zeros(shape[0], n, dtype=torch.uint8)
    for i, k in enumerate(sizes.tolist()):
        x[i, :k] = torch.randint(1, 4, (k,), generator=g, dtype=torch.uint8)
    x = x.reshape(shape)
    grades = grade_of(x)
    assert set(grades.tolist()) == set(range(N_GRADES))
    targets = targets_from_labels(x, "grade")
    assert torch.equal(predicted_grade(targets), grades)
    assert torch.equal(predicted_grade(targets * 0.4 + 0.3), grades)  # 0.7 / 0.3 still decode


def test_predicted_grade_monotone_fix_and_threshold():
    probs = torch.tensor([[0.9, 0.3, 0.8], [0.4, 0.9, 0.9], [0.6, 0.6, 0.5], [0.51, 0.52, 0.53], [0.5, 0.5, 0.5]])
    assert predicted_grade(probs).tolist() == [1, 0, 2, 3, 0]
    assert predicted_grade(probs.numpy()).tolist() == [1, 0, 2, 3, 0]
    assert predicted_grade(torch.zeros(0, 3)).shape == (0,)
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        predicted_grade(torch.zeros(2, 2))


def test_bad_labels():
    with pytest.raises(ValueError, match="integer"):
        grade_of(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="B, \\*spatial"):
        targets_from_labels(torch.zeros(4, dtype=torch.uint8), "presence")


def test_empty_batch():
    x = torch.zeros(0, 4, 4, dtype=torch.uint8)
    for task in TASKS:
        assert targets_from_labels(x, task).shape == (0, n_outputs(task))
    assert grade_of(x).shape == (0,)
