"""`prepare`: a labelled dataset on disk → a Store split by subject.

Cases are discovered by layout, split into train / test at the subject level (a case is
wholly in one split), read and validated, normalised and cut into 2D slices or 3D volumes
(:mod:`synthmed.data.preprocess`), and streamed into the store in case order whatever the
number of workers. Memory is bounded by the cases in flight, not by the dataset size. The
store appears only when complete; a bad case stops everything (nothing is left behind)
unless ``skip_bad`` is set, in which case it is skipped and listed in the store's
provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import synthmed
from synthmed.config import PrepareConfig
from synthmed.data.case import CANONICAL_CHANNELS, Case
from synthmed.data.fingerprint import file_digest
from synthmed.data.layouts import CaseSource, detect_layout, discover_cases
from synthmed.data.preprocess import CaseSamples, case_to_slices, case_to_volume, normalisation_record
from synthmed.data.store import Store, StoreWriter
from synthmed.errors import DataError
from synthmed.outputs import STORE, guard_output
from synthmed.parallel import ordered_map, torch_threads
from synthmed.progress import progress_bar


@dataclass
class PrepareResult:
    """What `prepare` wrote: the store, counts per split and the skipped cases with reasons."""

    store: Store
    layout: str
    cases: dict[str, int]
    samples: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)


def split_cases(case_ids: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each case to ``"train"`` or ``"test"``.

    ``round(test_fraction * n)`` cases go to test — at least one when ``test_fraction > 0``
    and there are two or more cases, never all of them — chosen by a seeded permutation of
    the sorted ids, so the split depends only on the ids, the fraction and the seed.
    """
    ids = sorted(case_ids)
    n_test = int(round(test_fraction * len(ids)))
    if test_fraction > 0 and len(ids) >= 2:
        n_test = min(max(n_test, 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    test = {ids[i] for i in order[:n_test]}
    return {case_id: ("test" if case_id in test else "train") for case_id in ids}


@dataclass(frozen=True)
class _Job:
    source: CaseSource
    dims: int
    size: int
    min_brain_fraction: float


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
        if job.dims == 2:
            outcome.samples = case_to_slices(case, job.size, job.min_brain_fraction)
        else:
            outcome.samples = case_to_volume(case, job.size)
    return outcome


def _process(job: _Job) -> _Outcome:
    """Worker: load and cut one case."""
    return _cut(job, _load(job))


def _outcomes(jobs: list[_Job], workers: int) -> Iterator[_Outcome]:
    """Outcomes in job order. One worker: two threads of this process (decompression,
    numpy and torch release the GIL, so reading one case overlaps cutting another); more:
    ``workers`` processes each load and cut whole cases."""
    if workers > 1:
        return ordered_map(_process, jobs, workers=workers)
    return ordered_map(_process, jobs, workers=2, window=2, threads=True)


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
    splits = split_cases([s.id for s in sources], config.test_fraction, config.seed)
    size = config.size
    spatial = (size,) * config.dims
    jobs = [_Job(s, config.dims, size, config.min_brain_fraction) for s in sources]
    skipped: list[dict[str, str]] = []
    digests: list[str] = []
    cases = {"train": 0, "test": 0}
    samples = {"train": 0, "test": 0}
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
            digests.append(f"{outcome.case_id}:{outcome.digest}")
            split = splits[outcome.case_id]
            n = len(part.slices)
            if n == 0:
                skipped.append({"case": outcome.case_id, "reason": "no slice or volume with enough brain"})
                continue
            if not cases["train"] + cases["test"]:
                writer.spacing = list(part.spacing)
            cases[split] += 1
            samples[split] += n
            rows = [
                {"case_id": part.case_id, "slice": int(s), "split": split, "source": layout,
                 "spacing_z": part.spacing[0], "spacing_y": part.spacing[1], "spacing_x": part.spacing[2]}
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
    return PrepareResult(store=Store.open(store_path), layout=layout, cases=cases, samples=samples, skipped=skipped)
