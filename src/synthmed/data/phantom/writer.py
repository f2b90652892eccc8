"""Writing the phantom dataset: cases (or a longitudinal cohort's visits) synthesised in parallel into a BraTS-2021 folder, atomically."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import synthmed
from synthmed.atomic import atomic_directory
from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.layouts.brats import write_brats_case
from synthmed.data.layouts.manifest import LONGITUDINAL_MANIFEST
from synthmed.data.phantom.cue import CUE_STRENGTH, check_strength, cue_record
from synthmed.data.phantom.draws import is_tumour_free
from synthmed.data.phantom.geometry import DEFAULT_SHAPE, phantom_geometry
from synthmed.data.phantom.growth import BASELINE_ML, FAST_FRACTION, FAST_RATE, MAX_ML, SLOW_RATE
from synthmed.data.phantom.longitudinal import INTERVAL_MONTHS, VisitRecord, check_cohort, phantom_visits
from synthmed.data.phantom.simulate import case_id, phantom_case
from synthmed.errors import SynthmedError

_Job = TypeVar("_Job")
_Done = TypeVar("_Done")

#: ``longitudinal.csv`` columns before the file columns (``t1``, ``t1ce``, ``t2``, ``flair``, ``label``).
LONGITUDINAL_COLUMNS: tuple[str, ...] = (
    "case_id", "subject_id", "visit", "months", "wt_ml", "grade", "progressor", "centre_slice",
)


@dataclass(frozen=True)
class _CaseJob:
    index: int
    seed: int
    shape: tuple[int, int, int]
    tumour: bool
    root: str


@dataclass(frozen=True)
class _SubjectJob:
    subject: int
    seed: int
    shape: tuple[int, int, int]
    visits: int
    interval_months: float
    onset_fraction: float
    fast_fraction: float
    cue_strength: float
    root: str


def _write_case(job: _CaseJob) -> str:
    """Synthesise one case and write its BraTS files under ``job.root``; returns its id."""
    case = phantom_case(job.index, seed=job.seed, shape=job.shape, tumour=job.tumour)
    write_brats_case(case, job.root, image_dtype=np.int16)
    return case.id


def _write_subject(job: _SubjectJob) -> list[VisitRecord]:
    """Synthesise one subject's visits and write each as a BraTS case under ``job.root``; returns their records."""
    records = []
    for visit in phantom_visits(job.subject, seed=job.seed, visits=job.visits, shape=job.shape,
                                interval_months=job.interval_months, onset_fraction=job.onset_fraction,
                                fast_fraction=job.fast_fraction, cue_strength=job.cue_strength):
        write_brats_case(visit.case, job.root, image_dtype=np.int16)
        records.append(visit.record)
    return records


def _check(shape: Sequence[int], seed: int, workers: int, count: int, what: str) -> tuple[int, int, int]:
    """The shape as ints (checked by :func:`phantom_geometry`); raises for a bad count, seed or workers."""
    shape = tuple(int(n) for n in shape)
    phantom_geometry(shape)  # type: ignore[arg-type]
    if count < 1 or seed < 0 or workers < 1:
        raise SynthmedError(f"phantom needs {what} >= 1, seed >= 0 and workers >= 1; got {count}, {seed}, {workers}")
    return shape  # type: ignore[return-value]


@contextmanager
def _dataset(out: str | Path, *, cases: int, shape: tuple[int, int, int], workers: int, overwrite: bool,
             force: bool) -> Iterator[Path]:
    """Guard ``out``, check the estimate for ``cases`` cases, and give the temporary folder that becomes ``out``."""
    from synthmed.limits import check, phantom_estimate
    from synthmed.outputs import PHANTOM, guard_output

    guard_output(out, kind=PHANTOM, overwrite=overwrite)
    check("data phantom", phantom_estimate(cases, shape, workers), out, force=force)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        yield tmp


def _run(function: Callable[[_Job], _Done], jobs: list[_Job], *, workers: int, progress: bool, label: str,
         weight: int = 1) -> Iterator[_Done]:
    """``function`` over ``jobs`` in a pool, in order, with a progress bar of ``len(jobs) × weight`` steps."""
    from synthmed.parallel import ordered_map
    from synthmed.progress import progress_bar

    # closing: if anything below fails, the workers stop before the temporary folder goes
    with progress_bar(enabled=progress) as bar, \
            closing(ordered_map(function, jobs, workers=min(workers, len(jobs)))) as written:
        task = bar.add_task(label, total=len(jobs) * weight)
        for done in written:
            yield done
            bar.advance(task, weight)


def _record(seed: int, shape: tuple[int, int, int], **fields: Any) -> dict[str, Any]:
    """``phantom.json``: what was written and how."""
    spacing, _ = phantom_geometry(shape)
    return {
        "generator": "synthmed phantom (nilearn MNI152 2009a template)",
        "synthmed_version": synthmed.__version__,
        "layout": "BraTS2021",
        "seed": seed,
        **fields,
        "shape": list(shape),
        "nifti_shape": list(shape[::-1]),
        "spacing_mm": list(spacing),
        "channels": list(CANONICAL_CHANNELS),
        "image_dtype": "int16",
        "seg_values": {"0": "background", "1": "NCR", "2": "ED", "4": "ET"},
    }


def write_phantom(out: str | Path, *, cases: int, seed: int, shape: tuple[int, int, int] = DEFAULT_SHAPE,
                  tumour_free_fraction: float = 0.0, workers: int = 1, overwrite: bool = False,
                  progress: bool = True, force: bool = False) -> list[str]:
    """Write a BraTS-2021-layout phantom dataset to ``out``, atomically.

    Layout: ``out/<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz`` for ids ``BraTS2021_00000`` …
    (images int16, ``seg`` uint8 with BraTS values 0, 1 NCR, 2 ED, 4 ET) and
    ``out/phantom.json`` with the parameters. Case ``i`` is :func:`phantom_case` ``(i, seed=seed,
    shape=shape)``, tumour-free when :func:`is_tumour_free` says so (each case independently
    with probability ``tumour_free_fraction``); its files depend neither on ``cases`` nor on
    ``workers``. Nothing is left behind on error.

    Args:
        workers: processes synthesising cases in parallel (spawn pool, one thread each).
        overwrite: replace ``out`` if it exists.
        progress: show a progress bar (cases done, ETA) on stderr.
        force: go ahead even when the memory or disk estimate (:func:`synthmed.limits.phantom_estimate`)
            exceeds what this machine has.

    Returns:
        The case ids, in order.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false (nothing is computed).
        NotOwnOutputError: ``overwrite`` on a folder that is not a phantom dataset.
        ResourceError: the estimate does not fit this machine and ``force`` is false (nothing is computed).
        SynthmedError: bad ``cases``, ``seed``, ``shape``, ``tumour_free_fraction`` or ``workers``.
    """
    shape = _check(shape, seed, workers, cases, "cases")
    with _dataset(out, cases=cases, shape=shape, workers=workers, overwrite=overwrite, force=force) as tmp:
        tumour_free = [is_tumour_free(i, seed=seed, fraction=tumour_free_fraction) for i in range(cases)]
        jobs = [_CaseJob(i, seed, shape, not tumour_free[i], str(tmp)) for i in range(cases)]
        ids = list(_run(_write_case, jobs, workers=workers, progress=progress, label="phantom cases"))
        record = _record(seed, shape, cases=cases, tumour_free_fraction=tumour_free_fraction,
                         tumour_free_cases=[case_id(i) for i in range(cases) if tumour_free[i]])
        (tmp / "phantom.json").write_text(json.dumps(record, indent=2) + "\n")
    return ids


def write_longitudinal_phantom(out: str | Path, *, subjects: int, visits: int, seed: int,
                               shape: tuple[int, int, int] = DEFAULT_SHAPE,
                               interval_months: float = INTERVAL_MONTHS, onset_fraction: float = 0.0,
                               fast_fraction: float = FAST_FRACTION, cue_strength: float = CUE_STRENGTH,
                               workers: int = 1,
                               overwrite: bool = False, progress: bool = True,
                               force: bool = False) -> list[VisitRecord]:
    """Write a longitudinal phantom cohort to ``out``, atomically.

    Subject ``s`` (``0 .. subjects − 1``) has ``visits`` visits ``v`` at ``v × interval_months``
    months, :func:`~.longitudinal.phantom_visits` ``(s, seed=seed, ...)``; each visit is a
    BraTS case ``out/phantom-SSSS-vVV/phantom-SSSS-vVV_{t1,t1ce,t2,flair,seg}.nii.gz`` (as
    :func:`write_phantom` writes them). ``out/longitudinal.csv`` has one row per visit, in
    subject then visit order, with :data:`LONGITUDINAL_COLUMNS` and the case's files
    (``t1``, ``t1ce``, ``t2``, ``flair``, ``label``, relative to ``out``): it is a CSV manifest
    with ``subject_id`` and ``months``, which ``data prepare OUT`` reads, so a prepared store
    carries each sample's subject, visit and months. ``out/phantom.json`` records the
    parameters, the growth model and the baseline cue. A subject's files depend neither on ``subjects`` nor on
    ``workers``. Nothing is left behind on error.

    Args:
        onset_fraction: share of subjects whose first visit is tumour-free (each drawn independently).
        fast_fraction: share of fast progressors (each drawn independently).
        cue_strength: how much the tumour's composition shows the growth class at baseline
            (:mod:`~.cue`; 0: not at all, the negative control).
        workers, overwrite, progress, force: as :func:`write_phantom` (a worker writes one subject).

    Returns:
        The visits' records, in subject then visit order.

    Raises:
        OutputExistsError, NotOwnOutputError, ResourceError: as :func:`write_phantom`.
        SynthmedError: bad ``subjects``, ``visits``, ``interval_months``, a fraction, ``cue_strength``,
            ``seed``, ``shape`` or ``workers``.
    """
    shape = _check(shape, seed, workers, subjects, "subjects")
    check_cohort(visits=visits, interval_months=interval_months)
    cue_strength = check_strength(cue_strength)
    for name, value in (("onset_fraction", onset_fraction), ("fast_fraction", fast_fraction)):
        if not 0.0 <= value <= 1.0:
            raise SynthmedError(f"{name} must be in [0, 1], got {value}")
    with _dataset(out, cases=subjects * visits, shape=shape, workers=min(workers, subjects), overwrite=overwrite,
                  force=force) as tmp:
        jobs = [_SubjectJob(s, seed, shape, visits, float(interval_months), onset_fraction, fast_fraction,
                            cue_strength, str(tmp)) for s in range(subjects)]
        records = [r for done in _run(_write_subject, jobs, workers=workers, progress=progress,
                                      label="phantom visits", weight=visits) for r in done]
        _write_longitudinal_csv(tmp / LONGITUDINAL_MANIFEST, records)
        record = _record(
            seed, shape, subjects=subjects, visits=visits, cases=len(records), interval_months=float(interval_months),
            onset_fraction=onset_fraction, fast_fraction=fast_fraction,
            onset_subjects=sorted({r.subject_id for r in records if r.visit == 0 and r.wt_ml == 0}),
            growth={"law": "V(t) = min(V0 exp(g t), max_ml), t in months", "baseline_ml_log_uniform": list(BASELINE_ML),
                    "slow_rate_per_month": list(SLOW_RATE), "fast_rate_per_month": list(FAST_RATE), "max_ml": MAX_ML},
            cue=cue_record(cue_strength), manifest=LONGITUDINAL_MANIFEST,
        )
        (tmp / "phantom.json").write_text(json.dumps(record, indent=2) + "\n")
    return records


def _write_longitudinal_csv(path: Path, records: list[VisitRecord]) -> None:
    """``longitudinal.csv``: the records and each case's files (relative paths)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*LONGITUDINAL_COLUMNS, *CANONICAL_CHANNELS, "label"])
        for r in records:
            files = [f"{r.case_id}/{r.case_id}_{name}.nii.gz" for name in (*CANONICAL_CHANNELS, "seg")]
            writer.writerow([r.case_id, r.subject_id, r.visit, repr(float(r.months)), f"{r.wt_ml:.4f}", r.grade,
                             r.progressor, r.centre_slice, *files])
