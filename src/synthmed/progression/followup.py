"""Baselines and follow-ups of a longitudinal store: each subject's first visit, its visit at a horizon, and the
fast-progressor ground truth read from their masks.

Conventions (on a store's sample table, whose ``subject_id``, ``visit`` and ``months`` columns
every store has, :data:`synthmed.data.store.format.SUBJECT_COLUMNS`):

* **One sample per visit.** Disease progression follows one image per visit (a 2D store
  prepared with ``--slices centre``, the default for longitudinal data, or a 3D store); a
  subject with several samples at one visit is refused (:func:`check_one_sample_per_visit`).
* **Baseline**: a subject's visit with the smallest ``visit`` number (its earliest; a
  cross-sectional store's every case is its own subject with visit 0, so every sample is a
  baseline).
* **Follow-up at a horizon of M months**: the subject's visit whose ``months`` since the
  baseline lies within :data:`MONTHS_TOLERANCE` (half a month) of ``baseline months + M``
  (the nearest one if several do); a subject without one has no follow-up at M.
* **Default horizon** (:func:`default_horizon`): the latest number of months after the
  baseline at which at least half of the subjects have a visit.
* **Fast progressor** (:func:`~synthmed.progression.risk.fast_progressor`): the grade
  (:func:`synthmed.data.grades.grade_of_label`: the WT share of the sample, binned) of the
  follow-up's mask minus that of the baseline's mask is at least 2. On the longitudinal phantom
  this is its ``longitudinal.csv``'s ``progressor`` label wherever the span lets fast
  progressors cross two grade bins (the README measures it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthmed.data.grades import grade_of_label
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.progression.risk import MIN_JUMP, fast_progressor

#: Months within which a visit counts as the follow-up at a horizon.
MONTHS_TOLERANCE = 0.5

__all__ = ["MONTHS_TOLERANCE", "Pairs", "baselines", "check_one_sample_per_visit", "default_horizon",
           "followup_pairs", "pair_grades", "subjects_with_followup"]


def _rows(samples: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """The rows of ``split`` (all when ``None``) with their store index in column ``index``."""
    table = samples.assign(index=np.arange(len(samples), dtype=np.int64))
    if split is not None:
        table = table[table["split"] == split]
    return table


def check_one_sample_per_visit(samples: pd.DataFrame, where: str, split: str | None = None) -> None:
    """Refuse a table with several samples at one visit of a subject.

    Raises:
        SynthmedError: naming ``where`` (the store), the subject, the visit and the count.
    """
    rows = _rows(samples, split)
    counts = rows.groupby(["subject_id", "visit"], sort=True).size()
    many = counts[counts > 1]
    if len(many):
        (subject, visit), n = many.index[0], int(many.iloc[0])
        raise SynthmedError(f"{where}: subject {subject} has {n} samples at visit {visit}; disease progression "
                            "needs one sample per visit (prepare 2D stores with --slices centre)")


def baselines(samples: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """One row per subject of ``split`` (all when ``None``), sorted by subject id: ``subject``,
    ``index`` (the baseline's store sample), ``visit`` and ``months``."""
    rows = _rows(samples, split).sort_values(["subject_id", "visit", "index"], kind="stable")
    first = rows.groupby("subject_id", sort=True).head(1)
    return pd.DataFrame({"subject": first["subject_id"].astype(str).to_numpy(),
                         "index": first["index"].to_numpy(np.int64), "visit": first["visit"].to_numpy(np.int64),
                         "months": first["months"].to_numpy(np.float64)})


def _offsets(samples: pd.DataFrame, split: str | None) -> pd.DataFrame:
    """Each timed row of ``split`` with ``after``: its months since its subject's baseline."""
    base = baselines(samples, split).set_index("subject")["months"]
    rows = _rows(samples, split)
    rows = rows.assign(after=rows["months"].to_numpy(np.float64) - base.loc[rows["subject_id"].astype(str)].to_numpy())
    return rows[np.isfinite(rows["after"].to_numpy())]


def subjects_with_followup(samples: pd.DataFrame, split: str | None = None) -> list[str]:
    """Subjects of ``split`` with a timed visit after their baseline (a follow-up span > 0)."""
    rows = _offsets(samples, split)
    return sorted(set(rows.loc[rows["after"] > 0, "subject_id"].astype(str)))


def default_horizon(samples: pd.DataFrame, split: str | None = None) -> float:
    """The latest months after the baseline at which at least half of the subjects of ``split`` have a
    visit (visit times rounded to :data:`MONTHS_TOLERANCE`).

    Raises:
        SynthmedError: no subject has a timed visit after its baseline.
    """
    rows = _offsets(samples, split)
    rows = rows[rows["after"] > 0]
    if not len(rows):
        raise SynthmedError("no subject has a follow-up visit (a visit with known months after its baseline)")
    subjects = _rows(samples, split)["subject_id"].nunique()
    step = 2 * MONTHS_TOLERANCE
    binned = rows.assign(at=np.round(rows["after"].to_numpy() / step) * step)
    counts = binned.groupby("at")["subject_id"].nunique()
    common = counts[counts >= subjects / 2]
    return float(common.index.max() if len(common) else counts.idxmax())


@dataclass(frozen=True)
class Pairs:
    """Baseline and follow-up samples of the subjects with a follow-up at a horizon.

    Attributes:
        subjects: str ``[S]``, sorted.
        baseline: int64 ``[S]`` store indices of the baselines.
        followup: int64 ``[S]`` store indices of the follow-ups.
        months: float64 ``[S]`` months from each baseline to its follow-up.
        horizon: the horizon asked for (months).
        without: subjects of the split that have no follow-up at the horizon.
    """

    subjects: np.ndarray
    baseline: np.ndarray
    followup: np.ndarray
    months: np.ndarray
    horizon: float
    without: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.subjects)


def followup_pairs(samples: pd.DataFrame, horizon: float, split: str | None = None, *,
                   where: str = "the store") -> Pairs:
    """Each subject of ``split`` with a follow-up at ``horizon`` months (the module docstring).

    Raises:
        SynthmedError: a horizon that is not a positive number of months, or no subject with a
            follow-up at it (naming ``where`` and the months its subjects were seen at).
    """
    if not (np.isfinite(horizon) and horizon > 0):
        raise SynthmedError(f"the horizon must be a positive number of months, got {horizon}")
    base = baselines(samples, split)
    rows = _offsets(samples, split)
    rows = rows[rows["after"] > 0]
    rows = rows.assign(gap=(rows["after"] - float(horizon)).abs())
    near = rows[rows["gap"] <= MONTHS_TOLERANCE].sort_values(["subject_id", "gap", "index"], kind="stable")
    near = near.groupby("subject_id", sort=True).head(1)
    if not len(near):
        seen = sorted({round(float(m), 2) for m in rows["after"]})
        raise SynthmedError(f"{where}: no subject{'' if split is None else f' of split {split!r}'} has a follow-up "
                            f"{horizon:g} months after its baseline (visits seen at {seen} months); choose "
                            "--months among those")
    by_subject = base.set_index("subject")
    subjects = near["subject_id"].astype(str).to_numpy()
    return Pairs(subjects=subjects, baseline=by_subject.loc[subjects, "index"].to_numpy(np.int64),
                 followup=near["index"].to_numpy(np.int64), months=near["after"].to_numpy(np.float64),
                 horizon=float(horizon), without=tuple(sorted(set(base["subject"]) - set(subjects))))


def pair_grades(store: Store, pairs: Pairs, *, min_jump: int = MIN_JUMP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(baseline grades, follow-up grades, fast)`` of ``pairs`` read from ``store``'s masks:
    int64 ``[S]``, int64 ``[S]`` and bool ``[S]`` (the module docstring)."""
    _, base = store.read(pairs.baseline)
    _, follow = store.read(pairs.followup)
    b = np.array([grade_of_label(m) for m in base], np.int64)
    f = np.array([grade_of_label(m) for m in follow], np.int64)
    return b, f, fast_progressor(b, f, min_jump=min_jump)
