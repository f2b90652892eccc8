"""The latent dictionary: a store-like folder of projected latents with their subject, visit and months.

Layout (a Zarr v3 group, arrays chunked along ``N`` by the projection batch)::

    LATENTS/
      zarr.json      group metadata (attributes hold a copy of latents.json under "synthmed")
      w/             float32 [N, L, D]: L = 1 (space w, broadcast to every layer) or num_ws (wplus)
      noise_00/ …    float32 [N, 1, H_i, W_i]: the optimised noise maps, one array per noise input
                     (none for StyleGAN 3 or without noise optimisation)
      loss/, psnr/   float32 [N]: the final loss of each image and the PSNR (dB, [0, 1] scale) of its
                     reconstruction
      w_avg/         float32 [D]: the start of every projection
      samples.csv    index (sample in the source store), case_id, slice, split, subject, visit,
                     months, loss, psnr — one row per latent, in array order
      latents.json   format "synthmed-latents", format_version 1, n, space, generator (kind, run,
                     step, label_mode, num_ws, w_dim, noise_shapes, …), store (path, hash, split),
                     encoder, projection (the ProjectionConfig), w_std, created, synthmed_version

``subject``, ``visit`` and ``months`` are the source store's ``subject_id``, ``visit`` and
``months`` (:func:`longitudinal_table`; a cross-sectional store's: the case id, 0 and NaN).

Writing is resumable and atomic: :class:`LatentWork` fills a working folder ``LATENTS.partial/``
batch by batch (``progress.json`` counts the finished batches and is replaced after each batch's
arrays are written; ``job.json`` says what is being projected, so a resumed run continues only
the same job) and publishes it as ``LATENTS`` when every batch is done: a latent dictionary
that exists is complete.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from synthmed.atomic import atomic_file, publish_directory
from synthmed.errors import DataError, SynthmedError
from synthmed.locks import LOCK_FILE, FolderLock
from synthmed.outputs import OutputKind
from synthmed.progression.extrapolate import Trajectories

FORMAT = "synthmed-latents"
FORMAT_VERSION = 1
LATENTS_JSON = "latents.json"
SAMPLES_CSV = "samples.csv"
JOB_JSON = "job.json"
PROGRESS_JSON = "progress.json"
W, W_AVG, LOSS, PSNR = "w", "w_avg", "loss", "psnr"
#: Columns of ``samples.csv``, in order.
COLUMNS: tuple[str, ...] = ("index", "case_id", "slice", "split", "subject", "visit", "months", "loss", "psnr")
#: The output kind of ``guard_output``.
LATENTS = OutputKind("latent dictionary", marker=LATENTS_JSON,
                     entries=(LATENTS_JSON, SAMPLES_CSV, "zarr.json", W, W_AVG, LOSS, PSNR, "noise_[0-9]*"))


def noise_name(i: int) -> str:
    """The array of noise input ``i``: ``noise_00``, ``noise_01``, …"""
    return f"noise_{i:02d}"


def partial_path(out: str | Path) -> Path:
    """The working folder of a projection into ``out``: ``out.partial`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def longitudinal_table(samples: pd.DataFrame) -> pd.DataFrame:
    """``subject`` (str), ``visit`` (int) and ``months`` (float) of each row of a store's sample
    table, in its order: its ``subject_id``, ``visit`` and ``months`` columns
    (:data:`synthmed.data.store.format.SUBJECT_COLUMNS`, which every store's table has: a
    cross-sectional store's read as the case id, 0 and NaN)."""
    return pd.DataFrame({"subject": samples["subject_id"].astype(str).to_numpy(),
                         "visit": samples["visit"].to_numpy(np.int64),
                         "months": samples["months"].to_numpy(np.float64)})


def source_rows(samples: pd.DataFrame, indices: np.ndarray) -> pd.DataFrame:
    """The first seven columns of ``samples.csv`` for the store samples ``indices``."""
    rows = samples.iloc[indices]
    long = longitudinal_table(samples).iloc[indices]
    return pd.DataFrame({"index": np.asarray(indices, np.int64), "case_id": rows["case_id"].astype(str).to_numpy(),
                         "slice": rows["slice"].to_numpy(np.int64), "split": rows["split"].astype(str).to_numpy(),
                         "subject": long["subject"].to_numpy(), "visit": long["visit"].to_numpy(),
                         "months": long["months"].to_numpy()})


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable {what}: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise DataError(f"{what} must hold a JSON object", path=path)
    return data


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(dict(data), indent=2) + "\n")


@dataclass
class LatentDictionary:
    """A read-only handle on a latent dictionary (the layout: the module docstring).

    Attributes:
        path: the folder.
        meta: ``latents.json``.
        samples: ``samples.csv``, one row per latent in array order.
    """

    path: Path
    meta: dict[str, Any]
    samples: pd.DataFrame

    @classmethod
    def open(cls, path: str | Path) -> LatentDictionary:
        """Open and check a latent dictionary.

        Raises:
            DataError: naming ``path``: missing, not a latent dictionary (an unfinished projection's
                ``.partial`` folder included), another format version, or arrays and table that
                disagree with ``latents.json``.
        """
        path = Path(path)
        if not (path / LATENTS_JSON).is_file():
            hint = " (an unfinished projection: resume it)" if path.name.endswith(".partial") else ""
            raise DataError(f"not a latent dictionary: {LATENTS_JSON} missing{hint}", path=path)
        meta = _read_json(path / LATENTS_JSON, LATENTS_JSON)
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"not a {FORMAT} version {FORMAT_VERSION} folder (format {meta.get('format')!r}, "
                            f"version {meta.get('format_version')!r})", path=path)
        try:
            samples = pd.read_csv(path / SAMPLES_CSV, dtype={"case_id": str, "split": str, "subject": str},
                                  keep_default_na=False, na_values={"months": ["nan", "NaN", ""]})
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"unreadable {SAMPLES_CSV}: {exc}", path=path) from None
        missing = [c for c in COLUMNS if c not in samples.columns]
        if missing:
            raise DataError(f"{SAMPLES_CSV} lacks column(s) {missing}", path=path)
        handle = cls(path, meta, samples)
        w = handle.group()[W]
        if len(samples) != meta.get("n") or w.shape[0] != len(samples):
            raise DataError(f"{SAMPLES_CSV} has {len(samples)} rows and w {w.shape[0]} latents; "
                            f"{LATENTS_JSON} says n = {meta.get('n')}", path=path)
        return handle

    def group(self) -> zarr.Group:
        """The Zarr group, read-only."""
        try:
            return zarr.open_group(self.path, mode="r")
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise DataError(f"not a readable Zarr group: {exc}", path=self.path) from None

    def __len__(self) -> int:
        return int(self.meta["n"])

    @property
    def space(self) -> str:
        """``w`` or ``wplus``."""
        return str(self.meta["space"])

    def w(self, indices: Sequence[int] | np.ndarray | slice = slice(None)) -> np.ndarray:
        """float32 ``[k, L, D]`` latents of rows ``indices`` (default: all)."""
        return np.asarray(self.group()[W][indices if isinstance(indices, slice) else np.asarray(indices)])

    def noise(self, indices: Sequence[int] | np.ndarray | slice = slice(None)) -> list[np.ndarray]:
        """The noise maps of rows ``indices``, one float32 ``[k, 1, H_i, W_i]`` array per noise input
        (empty when none were optimised)."""
        group = self.group()
        sel = indices if isinstance(indices, slice) else np.asarray(indices)
        return [np.asarray(group[noise_name(i)][sel]) for i in range(int(self.meta["noise_maps"]))]

    def w_avg(self) -> np.ndarray:
        """float32 ``[D]``: where every projection started."""
        return np.asarray(self.group()[W_AVG][:])

    def trajectories(self, split: str | None = None) -> Trajectories:
        """The latents of ``split`` (default: all rows) with their subjects and months, for
        :mod:`~synthmed.progression.extrapolate`.

        Raises:
            SynthmedError: ``split`` has no rows.
        """
        rows = np.arange(len(self)) if split is None else np.flatnonzero((self.samples["split"] == split).to_numpy())
        if not len(rows):
            raise SynthmedError(f"{self.path}: no latents of split {split!r}")
        return Trajectories(self.w(rows).astype(np.float64), self.samples["subject"].to_numpy(str)[rows],
                            self.samples["months"].to_numpy(np.float64)[rows])


class LatentWork:
    """The working folder of one projection job (``out.partial``), resumable by batch.

    Use :meth:`start` (create it, or reopen it for the same ``job``), :meth:`write` each batch
    in order, then :meth:`publish`. The folder is locked (one writer) until published.

    Attributes:
        folder: the working folder; out: where it is published.
        done: batches already written.
    """

    def __init__(self, out: Path, folder: Path, lock: FolderLock, done: int):
        self.out, self.folder, self.lock, self.done = out, folder, lock, done

    @classmethod
    def start(cls, out: str | Path, job: Mapping[str, Any], *, n: int, layers: int, w_dim: int,
              noise_shapes: Sequence[tuple[int, int]], chunk: int, w_avg: np.ndarray,
              resume: bool = False, overwrite: bool = False) -> LatentWork:
        """Create the working folder of ``job``, or reopen it with ``resume``.

        Args:
            job: what is projected (JSON-able): a resumed folder must hold the same.
            n, layers, w_dim, noise_shapes, chunk: the arrays' sizes (``chunk``: the batch).

        Raises:
            SynthmedError: an unfinished projection is there without ``resume`` (or
                ``overwrite``, which starts it again), or it projects another job.
            LockedError: another live process is writing it.
        """
        out = Path(out)
        folder = partial_path(out)
        job = json.loads(json.dumps(dict(job)))
        if folder.exists() and overwrite:
            FolderLock(folder, "projection").release()  # refuse to remove a folder a live process writes
            shutil.rmtree(folder)
        if folder.exists() and (folder / JOB_JSON).is_file() and not resume:
            raise SynthmedError(f"{folder}: an unfinished projection is there; resume it (--resume) or start "
                                "it again (--overwrite)")
        lock = FolderLock(folder, "projection")
        try:
            if (folder / JOB_JSON).is_file():
                saved = _read_json(folder / JOB_JSON, JOB_JSON)
                if saved != job:
                    keys = sorted(k for k in set(saved) | set(job) if saved.get(k) != job.get(k))
                    raise SynthmedError(f"{folder}: the unfinished projection there differs in {', '.join(keys)}; "
                                        "resume it with the same inputs and settings, or start again (--overwrite)")
                done = int(_read_json(folder / PROGRESS_JSON, PROGRESS_JSON).get("batches", 0))
                return cls(out, folder, lock, done)
            for entry in folder.iterdir():  # what a run killed before job.json was written left
                if entry.name != LOCK_FILE:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            group = zarr.open_group(folder, mode="a", zarr_format=3)  # "w" would delete the lock file
            group.create_array(W, shape=(n, layers, w_dim), chunks=(chunk, layers, w_dim), dtype="float32")
            for i, (h, w) in enumerate(noise_shapes):
                group.create_array(noise_name(i), shape=(n, 1, h, w), chunks=(chunk, 1, h, w), dtype="float32")
            for name in (LOSS, PSNR):
                group.create_array(name, shape=(n,), chunks=(chunk,), dtype="float32")
            group.create_array(W_AVG, shape=(w_dim,), chunks=(w_dim,), dtype="float32")[:] = w_avg.astype(np.float32)
            _write_json(folder / PROGRESS_JSON, {"batches": 0})
            _write_json(folder / JOB_JSON, job)  # last: a folder with job.json is resumable
            return cls(out, folder, lock, 0)
        except BaseException:
            lock.release()
            raise

    def write(self, batch: int, start: int, w: np.ndarray, noise: Sequence[np.ndarray], loss: np.ndarray,
              psnr: np.ndarray) -> None:
        """Write batch number ``batch`` (rows ``start …``), then count it done.

        Raises:
            ValueError: not the next batch.
        """
        if batch != self.done:
            raise ValueError(f"batch {batch} written out of order (next is {self.done})")
        group = zarr.open_group(self.folder, mode="r+")
        stop = start + len(w)
        group[W][start:stop] = w.astype(np.float32)
        for i, n in enumerate(noise):
            group[noise_name(i)][start:stop] = n.astype(np.float32)
        group[LOSS][start:stop] = loss.astype(np.float32)
        group[PSNR][start:stop] = psnr.astype(np.float32)
        _write_json(self.folder / PROGRESS_JSON, {"batches": batch + 1})
        self.done = batch + 1

    def publish(self, rows: pd.DataFrame, meta: Mapping[str, Any], *, overwrite: bool = False) -> LatentDictionary:
        """Write ``samples.csv`` (``rows`` with the losses and PSNRs) and ``latents.json``, then move
        the folder to :attr:`out` (replacing it only with ``overwrite``)."""
        from synthmed import __version__

        group = zarr.open_group(self.folder, mode="r+")
        table = rows.assign(loss=np.asarray(group[LOSS][:], np.float64), psnr=np.asarray(group[PSNR][:], np.float64))
        table = table[list(COLUMNS)]
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, "n": len(table), **dict(meta),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "synthmed_version": __version__}
        full = json.loads(json.dumps(full))
        with atomic_file(self.folder / SAMPLES_CSV) as tmp:
            table.to_csv(tmp, index=False)
        group.attrs.update({"synthmed": full})
        _write_json(self.folder / LATENTS_JSON, full)
        for name in (JOB_JSON, PROGRESS_JSON):
            (self.folder / name).unlink()
        self.lock.release()
        (self.folder / LOCK_FILE).unlink(missing_ok=True)
        publish_directory(self.folder, self.out, overwrite=overwrite)
        return LatentDictionary.open(self.out)

    def release(self) -> None:
        """Release the lock (the folder stays, to be resumed)."""
        self.lock.release()


def n_batches(n: int, batch: int) -> int:
    """Batches of ``batch`` images that cover ``n``."""
    return math.ceil(n / batch)
