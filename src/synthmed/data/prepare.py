"""`prepare`: a labelled dataset on disk → a Store split by subject.

Cases are discovered by layout, split into train / test at the subject level (a subject's
cases are wholly in one split), read and validated, normalised and cut into 2D slices or 3D
volumes (:mod:`synthmed.data.preprocess`), and streamed into the store in case order whatever
the number of workers. Memory is bounded by the cases in flight, not by the dataset size. The
store appears only when complete; a bad case stops everything (nothing is left behind)
unless ``skip_bad`` is set, in which case it is skipped and listed in the store's
provenance.

Longitudinal datasets (a CSV manifest with ``subject_id`` or ``months``, such as the
longitudinal phantom's ``longitudinal.csv``): a case is a visit of its subject; the split
keeps each subject's visits together, and the sample table gets ``subject_id``, ``visit``
(the case's rank among its subject's cases by months, then case id) and ``months``
(:data:`~synthmed.data.store.format.SUBJECT_COLUMNS`). In 2D they get one slice per visit
(``slices="centre"``, the default for them): the axial index of the WT centroid of the
subject's earliest tumour-bearing visit (:func:`~synthmed.data.preprocess.tumour_centre_slice`,
found by reading the label files first), the same index at every visit, whatever its brain
share — one image per visit, as Han et al. (2021) have one radiograph. A subject with no
tumour at any visit gets each case's middle axial slice. A subject's visits must share one
voxel grid (co-registered), as the phantom's do.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

import synthmed
from synthmed.config import PrepareConfig
from synthmed.data.case import CANONICAL_CHANNELS, Case
from synthmed.data.fingerprint import file_digest
from synthmed.data.layouts import CaseSource, detect_layout, discover_cases
from synthmed.data.preprocess import (
    CaseSamples,
    case_to_slices,
    case_to_volume,
    normalisation_record,
    tumour_centre_slice,
)
from synthmed.data.store import Store, StoreWriter
from synthmed.errors import DataError, SynthmedError
from synthmed.outputs import STORE, guard_output
from synthmed.parallel import ordered_map, torch_threads
from synthmed.progress import progress_bar

_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass
class PrepareResult:
    """What `prepare` wrote: the store, counts per split (cases, samples, subjects) and the skipped cases with reasons."""

    store: Store
    layout: str
    cases: dict[str, int]
    samples: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    subjects: dict[str, int] = field(default_factory=dict)  # distinct subjects per split
    longitudinal: bool = False  # the dataset gave subjects or months


def split_cases(case_ids: list[str], test_fraction: float, seed: int,
                subjects: Mapping[str, str] | None = None) -> dict[str, str]:
    """Assign each case to ``"train"`` or ``"test"``, by subject.

    Of the ``S`` distinct subjects (``subjects[case]``; a case missing from ``subjects``, or
    every case when it is None, is its own subject), ``round(test_fraction * S)`` go to test
    — at least one when ``test_fraction > 0`` and there are two or more subjects, never all
    of them — chosen by a seeded permutation of the sorted subject ids; each case takes its
    subject's split. The split depends only on the ids, the fraction and the seed (with one
    case per subject it is the same as splitting the cases).
    """
    subject_of = {case: (subjects or {}).get(case, case) for case in case_ids}
    ids = sorted(set(subject_of.values()))
    n_test = int(round(test_fraction * len(ids)))
    if test_fraction > 0 and len(ids) >= 2:
        n_test = min(max(n_test, 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    test = {ids[i] for i in order[:n_test]}
    return {case: ("test" if subject_of[case] in test else "train") for case in sorted(case_ids)}


def is_longitudinal(sources: Sequence[CaseSource]) -> bool:
    """Whether the dataset gives any case a subject or a time (a longitudinal manifest)."""
    return any(s.subject is not None or s.months is not None for s in sources)


def visit_numbers(sources: Sequence[CaseSource]) -> dict[str, int]:
    """Each case's 0-based rank among its subject's cases, by months (unknown last), then case id."""
    by_subject: dict[str, list[CaseSource]] = {}
    for source in sources:
        by_subject.setdefault(source.subject_id, []).append(source)
    visits = {}
    for group in by_subject.values():
        ordered = sorted(group, key=lambda s: (math.inf if s.months is None else s.months, s.id))
        visits.update({s.id: rank for rank, s in enumerate(ordered)})
    return visits


def _subject_centre(group: list[CaseSource]) -> int | None:
    """The tumour-centre axial index of a subject's earliest tumour-bearing visit (``group`` in visit order).

    Reads label files only, visit by visit, until one holds a tumour; an unreadable label is
    passed over (its case's own load reports it).
    """
    for source in group:
        try:
            centre = tumour_centre_slice(source.load_label())
        except DataError:
            continue
        if centre is not None:
            return centre
    return None


def centre_slices(sources: Sequence[CaseSource], *, workers: int = 1, progress: bool = False) -> dict[str, int | None]:
    """Each subject's tumour-centre axial index (``None``: no visit holds a tumour), by subject id."""
    visits = visit_numbers(sources)
    groups: dict[str, list[CaseSource]] = {}
    for source in sorted(sources, key=lambda s: visits[s.id]):
        groups.setdefault(source.subject_id, []).append(source)
    names = sorted(groups)
    jobs = [groups[name] for name in names]
    out: dict[str, int | None] = {}
    with progress_bar(enabled=progress) as bar, closing(_in_order(_subject_centre, jobs, workers)) as centres:
        task = bar.add_task(f"finding {len(names)} subjects' tumour centres", total=len(names))
        for name, centre in zip(names, centres):
            out[name] = centre
            bar.advance(task)
    return out


@dataclass(frozen=True)
class _Job:
    source: CaseSource
    dims: int
    size: int
    min_brain_fraction: float
    centre: bool = False  # 2D: one slice, at ``slice_index`` (the middle one when None)
    slice_index: int | None = None


@dataclass
class _Outcome:
    case_id: str
    digest: str = ""
    case: Case | None = None
    samples: CaseSamples | None = None
    error: DataError | None = None


def _load(job: _Job) -> _Outcome:
    """Read and validate one case and hash its files; a data problem is returned, not raised."""
    try:
        case = job.source.load()
        digest = hashlib.blake2b(
            "".join(f"{p.name}:{file_digest(p, hashlib.blake2b(digest_size=32))};" for p in job.source.files()).encode(), digest_size=32
        ).hexdigest()
    except DataError as exc:
        return _Outcome(job.source.id, error=exc)
    return _Outcome(case.id, digest, case=case)


def _cut(job: _Job, outcome: _Outcome) -> _Outcome:
    """Normalise and cut a loaded case into slices or a volume (drops the raw case)."""
    if outcome.case is not None:
        case, outcome.case = outcome.case, None
        if job.dims == 3:
            outcome.samples = case_to_volume(case, job.size)
        elif not job.centre:
            outcome.samples = case_to_slices(case, job.size, job.min_brain_fraction)
        else:
            depth = case.images.shape[1]
            index = depth // 2 if job.slice_index is None else job.slice_index
            if not 0 <= index < depth:
                outcome.error = DataError(
                    f"the subject's tumour-centre slice {index} is outside this visit's {depth} axial slices; "
                    "a subject's visits must share one voxel grid", case=case.id)
            else:
                outcome.samples = case_to_slices(case, job.size, only=index)
    return outcome


def _process(job: _Job) -> _Outcome:
    """Worker: load and cut one case."""
    return _cut(job, _load(job))


def _in_order(function: Callable[[_In], _Out], jobs: list[_In], workers: int) -> Iterator[_Out]:
    """``function`` over ``jobs``, results in job order. One worker: two threads of this process
    (decompression, numpy and torch release the GIL, so reading one case overlaps cutting
    another); more: ``workers`` processes each doing whole jobs."""
    if workers > 1:
        return ordered_map(function, jobs, workers=workers)
    return ordered_map(function, jobs, workers=2, window=2, threads=True)


def _outcomes(jobs: list[_Job], workers: int) -> Iterator[_Outcome]:
    """Outcomes of loading and cutting each case, in job order."""
    return _in_order(_process, jobs, workers)


def _source_shape(sources: list[CaseSource]) -> tuple[int, ...]:
    """The voxel grid ``(D, H, W)`` of the first case, from its label file's header (nothing else is read);
    ``()`` when it cannot be read (the case's own load will say why)."""
    import nibabel as nib

    for source in sources[:1]:
        try:
            path = source.label if source.label is not None else source.channels[0].path
            shape = nib.load(str(path)).shape[:3]
            return tuple(int(s) for s in shape[::-1])  # file axes x, y, z → D, H, W
        except Exception:  # noqa: BLE001 - any unreadable header: no estimate, load reports it
            return ()
    return ()


def prepare(src: str | Path, store_path: str | Path, config: PrepareConfig, *,
            overwrite: bool = False, progress: bool = True, force: bool = False) -> PrepareResult:
    """Turn the dataset at ``src`` into a Store at ``store_path`` (see module docstring).

    Before any case is read, memory and disk are estimated from the first case's grid, the
    number of cases and the output size (:func:`synthmed.limits.prepare_estimate`) and refused
    if this machine cannot hold them, unless ``force``.

    Raises:
        OutputIsInputError, OutputExistsError, NotOwnOutputError: see
            :func:`~synthmed.outputs.guard_output` (checked before any work).
        ResourceError: the estimate does not fit and ``force`` is false.
        DataError: the dataset cannot be read, a case is bad (without ``skip_bad``), or no
            sample is left.
    """
    src, store_path = Path(src), Path(store_path)
    guard_output(store_path, [src], kind=STORE, overwrite=overwrite)
    layout = detect_layout(src) if config.layout == "auto" else config.layout
    sources = discover_cases(src, layout)
    shape = _source_shape(sources)
    if shape:
        from synthmed.limits import check, prepare_estimate

        in_flight = 2 * config.workers if config.workers > 1 else 2  # ordered_map's window
        check("data prepare", prepare_estimate(len(sources), shape, config.dims, config.size, in_flight), store_path,
              force=force)
    longitudinal = is_longitudinal(sources)
    mode = ("centre" if longitudinal else "brain") if config.slices == "auto" else config.slices
    if config.dims == 3:
        if config.slices == "centre":
            raise SynthmedError("--slices centre cuts one axial slice per case: it needs --dims 2")
        mode = "volume"
    splits = split_cases([s.id for s in sources], config.test_fraction, config.seed,
                         {s.id: s.subject_id for s in sources})
    visits = visit_numbers(sources)
    centres = centre_slices(sources, workers=config.workers, progress=progress) if mode == "centre" else {}
    size = config.size
    spatial = (size,) * config.dims
    jobs = [_Job(s, config.dims, size, config.min_brain_fraction, centre=mode == "centre",
                 slice_index=centres.get(s.subject_id)) for s in sources]
    by_id = {s.id: s for s in sources}
    skipped: list[dict[str, str]] = []
    digests: list[str] = []
    cases = {"train": 0, "test": 0}
    samples = {"train": 0, "test": 0}
    subjects: dict[str, set[str]] = {"train": set(), "test": set()}
    writer = StoreWriter(
        store_path,
        dims=config.dims,
        channels=CANONICAL_CHANNELS,
        sample_shape=(len(CANONICAL_CHANNELS), *spatial),
        spacing=(1.0, 1.0, 1.0),
        normalisation=normalisation_record(),
        provenance={},
        synthetic=False,
        overwrite=overwrite,
    )
    # one torch thread per Python thread or process: the cases run side by side already
    # closing: a bad case (or a signal) stops the workers before the store's temporary goes
    with writer, torch_threads(1), progress_bar(enabled=progress) as bar, \
            closing(_outcomes(jobs, config.workers)) as outcomes:
        task = bar.add_task(f"preparing {len(jobs)} cases", total=len(jobs))
        for outcome in outcomes:
            bar.advance(task)
            if outcome.error is not None:
                if not config.skip_bad:
                    raise outcome.error
                skipped.append({"case": outcome.case_id, "reason": str(outcome.error)})
                continue
            part = outcome.samples
            assert part is not None
            source = by_id[outcome.case_id]
            extra = f":{source.subject_id}:{source.months}" if longitudinal else ""
            digests.append(f"{outcome.case_id}:{outcome.digest}{extra}")
            split = splits[outcome.case_id]
            n = len(part.slices)
            if n == 0:
                skipped.append({"case": outcome.case_id, "reason": "no slice or volume with enough brain"})
                continue
            if not cases["train"] + cases["test"]:
                writer.spacing = list(part.spacing)
            cases[split] += 1
            samples[split] += n
            subjects[split].add(source.subject_id)
            series = {}
            if longitudinal:
                series = {"subject_id": source.subject_id, "visit": visits[source.id],
                          "months": math.nan if source.months is None else source.months}
            rows = [
                {"case_id": part.case_id, "slice": int(s), "split": split, "source": layout,
                 "spacing_z": part.spacing[0], "spacing_y": part.spacing[1], "spacing_x": part.spacing[2], **series}
                for s in part.slices
            ]
            writer.append(part.images, part.labels, rows)
        if not samples["train"] + samples["test"]:
            raise DataError("no usable case: every case was skipped or had no brain", path=src)
        writer.provenance.update({
            "source": str(src.resolve()),
            "layout": layout,
            "source_hash": hashlib.blake2b("\n".join(sorted(digests)).encode(), digest_size=32).hexdigest(),
            "cases": cases,
            "skipped": skipped,
            "prepare": config.model_dump(exclude={"workers"}),
            "synthmed_version": synthmed.__version__,
        })
        if longitudinal:
            writer.provenance["subjects"] = {split: len(names) for split, names in subjects.items()}
        if mode == "centre":
            writer.provenance["slices"] = "centre"
            writer.provenance["centre_slices"] = {name: centres[name] for name in sorted(centres)}
    return PrepareResult(store=Store.open(store_path), layout=layout, cases=cases, samples=samples, skipped=skipped,
                         subjects={split: len(names) for split, names in subjects.items()}, longitudinal=longitudinal)
