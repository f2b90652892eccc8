"""Classification targets read from a sample's tumour mask: every task is K sigmoid outputs.

A classifier sees one store sample (a 2D slice or a 3D volume) and predicts ``K`` logits; all
:data:`TASKS` are trained with multi-label BCE on the float32 ``[B, K]`` targets of
:func:`targets_from_labels` (canonical labels: 0 background, 1 NCR, 2 ED, 3 ET; WT = labels > 0):

* ``presence`` (K = 1, ``("tumour",)``): 1 iff the sample holds a WT voxel.
* ``regions`` (K = 3, ``("NCR", "ED", "ET")``): 1 iff the sample holds a voxel of that label.
* ``grade`` (K = 3, ``("grade>=1", "grade>=2", "grade>=3")``): the ordinal tumour-burden grade
  of :func:`grade_of` in the cumulative (CORAL-style) encoding, output ``k`` = 1 iff
  grade >= k + 1; :func:`predicted_grade` decodes probabilities back to a grade.

**Grade.** ``grade_of`` bins the WT *fraction of the whole sample* (WT voxels / all voxels of
the slice or volume, background and zero padding included), so it depends on the field of view:
the same tumour is a larger share of a tight crop than of a wide one, and a 2D slice's share
differs from its volume's. Grade 0 is no tumour; :data:`GRADE_BINS` are the upper edges of
grades 0, 1, 2 (inclusive: a fraction exactly on an edge takes the lower grade), grade 3 is
everything above the last edge.

**Measured on the phantom** (``data phantom --cases 16 --shape 48 64 64 --tumour-free-fraction
0.5``, phantom seeds 0–6, ``data prepare --size 32``, default split: 13 train and 3 test
cases; 3,165 slices and 112 volumes in all):

* Tumour-bearing share: 2D slices 23.5 % (train 25.2 %, test 16.5 %; per seed train
  20–32 %, test 0–54 %); 3D volumes 47.3 %. Tumour-free cases are drawn independently per
  case, so a small test split can hold no tumour at all: 3 of the 7 seeds' 3-case test
  splits did, which leaves every ``presence`` AUROC on them undefined.
* WT fraction of tumour-bearing samples, quantiles 0 / 25 / 50 / 75 / 100 %: 2D 0.001 /
  0.0078 / 0.0137 / 0.0234 / 0.060 (745 slices; 0.001 is one voxel of 1,024); 3D 0.0029 /
  0.0046 / 0.0073 / 0.0136 / 0.027 (53 volumes).
* ``GRADE_BINS = (0, 0.007, 0.014)`` (defined in :mod:`synthmed.data.grades`, which the
  longitudinal phantom shares) maximises the smallest grade share over both: grades 1 /
  2 / 3 are 24 / 26 / 50 % of tumour-bearing 2D slices and 47 / 30 / 23 % of 3D volumes.
* Slice position is a weak cue, not a shortcut: the AUROC of ``|slice − centre|`` (centre =
  the middle of the case's stored slices) for tumour-bearing vs tumour-free slices is 0.29–0.44
  per seed (median 0.34; tumour slices lie nearer the centre), i.e. 0.56–0.71 for
  ``−|slice − centre|``; within tumour-bearing cases only, 0.62–0.82. A slice classifier does
  not see the index, but it does see the brain's cross-section, which encodes position.
* ``regions`` is nearly degenerate on the phantom: ED is in every tumour-bearing slice (so the
  ED output equals ``presence``), NCR in 36 %, ET in 62 %; every tumour-bearing 3D volume holds
  ED and ET and 98 % hold NCR.
"""

from __future__ import annotations

import torch

from synthmed.classify.names import TASKS
from synthmed.data.case import LABEL_NAMES, REGIONS
from synthmed.data.grades import GRADE_BINS, N_GRADES
from synthmed.errors import SynthmedError

#: The tumour labels (all canonical labels but background), in label order: 1 NCR, 2 ED, 3 ET.
TUMOUR_LABELS: tuple[int, ...] = REGIONS["WT"]


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`.

    Raises:
        SynthmedError: naming ``--task`` and the choices.
    """
    if task not in TASKS:
        raise SynthmedError(f"--task: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def label_names(task: str) -> tuple[str, ...]:
    """The names of the ``K`` outputs of ``task``, in output order."""
    check_task(task)
    if task == "presence":
        return ("tumour",)
    if task == "regions":
        return tuple(LABEL_NAMES[value] for value in TUMOUR_LABELS)
    return tuple(f"grade>={g}" for g in range(1, N_GRADES))


def n_outputs(task: str) -> int:
    """``K``, the number of outputs (logits) of ``task``."""
    return len(label_names(task))


def _flat(labels: torch.Tensor) -> torch.Tensor:
    """Labels ``[B, *spatial]`` as ``[B, V]``, checked."""
    if labels.ndim < 2:
        raise ValueError(f"labels must be [B, *spatial], got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of canonical labels, got {labels.dtype}")
    voxels = labels[0].numel() if labels.shape[0] else int(torch.tensor(labels.shape[1:]).prod())
    if voxels == 0:
        raise ValueError(f"labels have no voxels: shape {tuple(labels.shape)}")
    return labels.reshape(labels.shape[0], voxels)


def wt_fraction(labels: torch.Tensor) -> torch.Tensor:
    """float64 ``[B]``: WT voxels / all voxels of each sample of ``labels`` ``[B, *spatial]``."""
    flat = _flat(labels)
    return (flat > 0).sum(dim=1, dtype=torch.float64) / flat.shape[1]


def grade_of(labels: torch.Tensor) -> torch.Tensor:
    """int64 ``[B]`` grades in ``0 .. N_GRADES − 1`` of canonical labels ``[B, *spatial]``.

    Grade ``g < 3`` holds the WT fractions (:func:`wt_fraction`, computed in float64) in
    ``(GRADE_BINS[g − 1], GRADE_BINS[g]]`` (grade 0: exactly 0, no tumour); grade 3 those
    above ``GRADE_BINS[-1]``. A fraction on an edge takes the lower grade. The fraction is of
    the whole sample, so the grade depends on the field of view (see the module docstring).
    """
    fraction = wt_fraction(labels)
    edges = torch.tensor(GRADE_BINS, dtype=torch.float64, device=fraction.device)
    return torch.bucketize(fraction, edges, right=False).to(torch.int64)


def targets_from_labels(labels: torch.Tensor, task: str) -> torch.Tensor:
    """float32 ``[B, K]`` targets in {0, 1} of ``task`` from canonical labels ``[B, *spatial]``.

    On the labels' device; ``K = n_outputs(task)``. ``presence``: any WT voxel; ``regions``:
    any voxel of NCR, ED, ET (in that order); ``grade``: output ``k`` is 1 iff
    ``grade_of(labels) >= k + 1``.
    """
    check_task(task)
    flat = _flat(labels)
    if task == "presence":
        out = (flat > 0).any(dim=1, keepdim=True)
    elif task == "regions":
        out = torch.stack([(flat == value).any(dim=1) for value in TUMOUR_LABELS], dim=1)
    else:
        thresholds = torch.arange(1, N_GRADES, device=labels.device)
        out = grade_of(labels)[:, None] >= thresholds[None, :]
    return out.to(torch.float32)


def predicted_grade(probs: torch.Tensor) -> torch.Tensor:
    """int64 ``[B]`` grades from the ``grade`` task's probabilities ``[B, N_GRADES − 1]``.

    The monotone fix: P(grade >= k + 1) cannot exceed P(grade >= k), so the probabilities are
    first replaced by their running minimum along the outputs; the grade is then the number of
    outputs above 0.5 (strictly), i.e. the length of the leading run of outputs above 0.5
    (``[0.9, 0.3, 0.8]`` → 1, not 2). Without inconsistencies this is CORAL's count of
    outputs above 0.5, and ``predicted_grade(targets_from_labels(x, "grade")) == grade_of(x)``.
    A numpy array is taken as a tensor; the result is on the input's device.
    """
    probs = torch.as_tensor(probs)
    if probs.ndim != 2 or probs.shape[1] != N_GRADES - 1:
        raise ValueError(f"grade probabilities must be [B, {N_GRADES - 1}], got shape {tuple(probs.shape)}")
    monotone = torch.cummin(probs, dim=1).values if probs.shape[0] else probs
    return (monotone > 0.5).sum(dim=1).to(torch.int64)
