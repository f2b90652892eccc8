"""Writing the phantom dataset: cases synthesised in parallel into a BraTS-2021 folder, atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import synthmed
from synthmed.atomic import atomic_directory
from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.layouts.brats import write_brats_case
from synthmed.data.phantom.draws import is_tumour_free
from synthmed.data.phantom.geometry import DEFAULT_SHAPE, phantom_geometry
from synthmed.data.phantom.simulate import case_id, phantom_case
from synthmed.errors import SynthmedError


@dataclass(frozen=True)
class _CaseJob:
    index: int
    seed: int
    shape: tuple[int, int, int]
    tumour: bool
    root: str


def _write_case(job: _CaseJob) -> str:
    """Synthesise one case and write its BraTS files under ``job.root``; returns its id."""
    case = phantom_case(job.index, seed=job.seed, shape=job.shape, tumour=job.tumour)
    write_brats_case(case, job.root, image_dtype=np.int16)
    return case.id


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
    from contextlib import closing

    from synthmed.outputs import PHANTOM, guard_output
    from synthmed.parallel import ordered_map
    from synthmed.progress import progress_bar

    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing, _ = phantom_geometry(shape)
    if cases < 1 or seed < 0 or workers < 1:
        raise SynthmedError(f"phantom needs cases >= 1, seed >= 0 and workers >= 1; got {cases}, {seed}, {workers}")
    guard_output(out, kind=PHANTOM, overwrite=overwrite)
    from synthmed.limits import check, phantom_estimate

    check("data phantom", phantom_estimate(cases, shape, workers), out, force=force)
    tumour_free = [is_tumour_free(i, seed=seed, fraction=tumour_free_fraction) for i in range(cases)]
    ids: list[str] = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        jobs = [_CaseJob(i, seed, shape, not tumour_free[i], str(tmp)) for i in range(cases)]  # type: ignore[arg-type]
        # closing: if anything below fails, the workers stop before the temporary folder goes
        with progress_bar(enabled=progress) as bar, \
                closing(ordered_map(_write_case, jobs, workers=min(workers, cases))) as written:
            task = bar.add_task("phantom cases", total=cases)
            for done in written:
                ids.append(done)
                bar.advance(task)
        record = {
            "generator": "synthmed phantom (nilearn MNI152 2009a template)",
            "synthmed_version": synthmed.__version__,
            "layout": "BraTS2021",
            "seed": seed,
            "cases": cases,
            "shape": list(shape),
            "nifti_shape": list(shape[::-1]),
            "spacing_mm": list(spacing),
            "tumour_free_fraction": tumour_free_fraction,
            "tumour_free_cases": [case_id(i) for i in range(cases) if tumour_free[i]],
            "channels": list(CANONICAL_CHANNELS),
            "image_dtype": "int16",
            "seg_values": {"0": "background", "1": "NCR", "2": "ED", "4": "ET"},
        }
        (tmp / "phantom.json").write_text(json.dumps(record, indent=2) + "\n")
    return ids
