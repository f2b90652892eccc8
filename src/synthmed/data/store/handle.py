"""Reading a store: :class:`Store`, a read-only handle that checks the store when opened and streams its samples."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from synthmed.data.store.cache import ChunkCache, as_indices, gather
from synthmed.data.store.chunk_reader import ChunkReader
from synthmed.data.store.dataset import StoreDataset
from synthmed.data.store.format import (
    FORMAT,
    FORMAT_VERSION,
    IMAGE,
    LABEL,
    META_KEYS,
    SAMPLE_COLUMNS,
    SAMPLES_CSV,
    STORE_JSON,
)
from synthmed.errors import DataError


class Store:
    """A read-only handle on a store directory (the format: :mod:`synthmed.data.store.format`).

    Open with :meth:`Store.open`. Zarr arrays are opened lazily, so a store (and a
    :class:`StoreDataset`) pickles cheaply into DataLoader worker processes.

    Attributes:
        path: the store directory.
        meta: the ``store.json`` content.
        dims: 2 or 3.
        channels: channel names.
        sample_shape: ``(C, *spatial)``.
        spatial_shape: ``(H, W)`` or ``(D, H, W)``.
        spacing: nominal ``(z, y, x)`` spacing in mm.
        synthetic: whether the samples come from a generator.
        samples: the per-sample table, one row per sample in array order; it always has
            ``subject_id``, ``visit`` and ``months`` (filled as ``case_id``, 0 and NaN where
            ``samples.csv`` lacks them, :data:`~.format.SUBJECT_COLUMNS`; an empty
            ``subject_id`` cell reads as the case id). :meth:`subject_ids` gives the patients.
        chunk_samples: samples per chunk along ``N``.
    """

    def __init__(self, path: Path, meta: dict[str, Any], samples: pd.DataFrame, chunk_samples: int):
        self.path = path
        self.meta = meta
        self.dims: int = int(meta["dims"])
        self.channels: tuple[str, ...] = tuple(meta["channels"])
        self.sample_shape: tuple[int, ...] = tuple(int(s) for s in meta["sample_shape"])
        self.spatial_shape: tuple[int, ...] = self.sample_shape[1:]
        self.spacing: tuple[float, ...] = tuple(float(s) for s in meta["spacing"])
        self.synthetic: bool = bool(meta["synthetic"])
        self.samples = samples
        self.chunk_samples = chunk_samples
        self._arrays: tuple[zarr.Array, zarr.Array] | None = None
        self._finite_chunks: set[int] = set()  # image chunks checked for NaN/inf (see ChunkReader)

    # -- opening

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open and check a store.

        Raises:
            DataError: naming ``path``, if it is missing, not a store, has a bad
                ``store.json``, or its arrays or ``samples.csv`` disagree with ``store.json``.
        """
        path = Path(path)
        if not path.exists():
            raise DataError("no such store", path=path)
        if not path.is_dir():
            raise DataError("not a store: not a directory", path=path)
        meta = _read_meta(path)
        image, label = _open_arrays(path)
        n = int(meta["n"])
        sample_shape = tuple(int(s) for s in meta["sample_shape"])
        if tuple(image.shape) != (n, *sample_shape):
            raise DataError(f"image array has shape {tuple(image.shape)}, store.json says {(n, *sample_shape)}", path=path)
        if tuple(label.shape) != (n, *sample_shape[1:]):
            raise DataError(f"label array has shape {tuple(label.shape)}, store.json says {(n, *sample_shape[1:])}", path=path)
        if np.dtype(image.dtype) != np.float32 or np.dtype(label.dtype) != np.uint8:
            raise DataError(f"arrays must be float32 image and uint8 label, got {image.dtype} and {label.dtype}", path=path)
        samples = _read_samples(path, n)
        store = cls(path, meta, samples, max(1, int(image.chunks[0])))
        store._arrays = (image, label)
        return store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None  # reopened lazily in the receiving process
        return state

    def arrays(self) -> tuple[zarr.Array, zarr.Array]:
        """The Zarr ``(image, label)`` arrays, opened read-only on first use."""
        if self._arrays is None:
            self._arrays = _open_arrays(self.path)
        return self._arrays

    def chunk_cache(self, size: int = 1, *, fast: bool = True) -> ChunkCache:
        """A new LRU cache of up to ``size`` decoded chunks of this store (memory: ``size`` chunks).

        Args:
            size: chunks kept, >= 1.
            fast: read chunk files directly where possible (``False``: always through zarr).
        """
        label = self.arrays()[1]
        return ChunkCache(self.image_reader(fast=fast), ChunkReader(label, self.chunk_samples, fast=fast), size)

    def image_reader(self, *, fast: bool = True) -> ChunkReader:
        """A reader of the ``image`` array's chunks alone (the ``label`` array is not read), for
        readers of images only (:class:`~synthmed.data.store.dataset.ImageDataset`).

        Args:
            fast: read chunk files directly where possible (``False``: always through zarr).
        """
        return ChunkReader(self.arrays()[0], self.chunk_samples, fast=fast, describe=self.describe_sample,
                           checked=self._finite_chunks)

    def describe_sample(self, i: int) -> str:
        """``sample i (case ID, slice S)`` for messages."""
        row = self.samples.iloc[int(i)]
        where = f", slice {row['slice']}" if int(row["slice"]) >= 0 else ""
        return f"sample {int(i)} (case {row['case_id']}{where})"

    # -- queries

    def __len__(self) -> int:
        return int(self.meta["n"])

    def __repr__(self) -> str:
        kind = "synthetic" if self.synthetic else "real"
        return f"Store({str(self.path)!r}, n={len(self)}, sample_shape={self.sample_shape}, {kind})"

    @property
    def n_chunks(self) -> int:
        """Number of chunks along ``N``."""
        return -(-len(self) // self.chunk_samples)

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names present, sorted."""
        return tuple(sorted(self.samples["split"].unique()))

    def indices(self, split: str | None = None) -> np.ndarray:
        """int64 sample indices, ascending: all, or those of ``split``.

        Raises:
            DataError: ``split`` does not occur in the store.
        """
        if split is None:
            return np.arange(len(self), dtype=np.int64)
        mask = (self.samples["split"] == split).to_numpy()
        if not mask.any():
            raise DataError(f"no samples in split {split!r}; splits present: {list(self.splits)}", path=self.path)
        return np.flatnonzero(mask).astype(np.int64)

    def subject_ids(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The patient of each sample, as str ``[k]`` (all samples, or those of ``indices`` in that order).

        The patient is the ``subject_id`` column: a longitudinal store's subject (all visits of
        one patient share it), a cross-sectional or synthetic store's case id. Every grouping
        that means "patient" — validation and test splits, bootstrap resamples, patient-disjoint
        subsets of the set metrics — groups by it.
        """
        ids = self.samples["subject_id"].to_numpy().astype(str)
        return ids if indices is None else ids[np.asarray(indices, np.int64)]

    def read(self, indices: slice | Sequence[int] | np.ndarray, *, fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Read some samples, in the order given.

        Each touched chunk is decoded once; memory is one chunk plus the result.

        Args:
            indices: a slice or a 1-D sequence of sample indices (negative count from the end).
            fast: use the direct chunk reader where possible (``False``: always go through zarr).

        Returns:
            ``(images, labels)``: float32 ``[k, *sample_shape]`` and uint8 ``[k, *spatial]``.
        """
        idx = as_indices(indices, len(self))
        images = np.empty((len(idx), *self.sample_shape), np.float32)
        labels = np.empty((len(idx), *self.spatial_shape), np.uint8)
        ascending = len(idx) < 2 or bool(np.all(np.diff(idx) >= 0))
        gather(self.chunk_cache(1, fast=fast), self.chunk_samples, idx, images, labels, sort=not ascending)
        return images, labels

    def iter_batches(
        self, batch_size: int, indices: slice | Sequence[int] | np.ndarray | None = None, *, fast: bool = True
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Stream batches in the order of ``indices`` (default: all samples in order).

        Memory is one decoded chunk plus one batch whatever ``N`` is. Each chunk is decoded
        once when ``indices`` is ascending or grouped by chunk (as :class:`ChunkShuffleSampler`
        orders them); arbitrary orders are correct but may decode a chunk many times.

        Yields:
            ``(images, labels, idx)``: fresh float32 ``[b, *sample_shape]``, uint8
            ``[b, *spatial]`` and int64 ``[b]`` sample indices, ``b <= batch_size``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        idx = as_indices(indices, len(self))
        cache = self.chunk_cache(1, fast=fast)
        for start in range(0, len(idx), batch_size):
            batch = idx[start : start + batch_size]
            images = np.empty((len(batch), *self.sample_shape), np.float32)
            labels = np.empty((len(batch), *self.spatial_shape), np.uint8)
            gather(cache, self.chunk_samples, batch, images, labels, sort=False)
            yield images, labels, batch

    def dataset(
        self,
        split: str | None = None,
        indices: slice | Sequence[int] | np.ndarray | None = None,
        **kwargs: Any,
    ) -> StoreDataset:
        """A :class:`StoreDataset` over all samples, one split, or given ``indices``.

        ``kwargs`` go to :class:`StoreDataset` (``long_labels``, ``cache_chunks``).
        """
        if split is not None and indices is not None:
            raise ValueError("give split or indices, not both")
        idx = self.indices(split) if split is not None else as_indices(indices, len(self))
        return StoreDataset(self, idx, **kwargs)


def _read_meta(path: Path) -> dict[str, Any]:
    """``store.json``, checked for format, version and the keys readers rely on."""
    file = path / STORE_JSON
    if not file.is_file():
        raise DataError(f"not a synthmed store: {STORE_JSON} missing", path=path)
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable {STORE_JSON}: {exc}", path=path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"not a synthmed store: {STORE_JSON} lacks \"format\": \"{FORMAT}\"", path=path)
    version = meta.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise DataError(f"unsupported store format_version {version!r} (this synthmed reads 1..{FORMAT_VERSION})", path=path)
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise DataError(f"{STORE_JSON} lacks {missing}", path=path)
    dims, shape, channels, spacing = meta["dims"], meta["sample_shape"], meta["channels"], meta["spacing"]
    if dims not in (2, 3):
        raise DataError(f"{STORE_JSON}: dims must be 2 or 3, got {dims!r}", path=path)
    if not isinstance(meta["n"], int) or meta["n"] < 0:
        raise DataError(f"{STORE_JSON}: n must be a non-negative integer, got {meta['n']!r}", path=path)
    if not (isinstance(shape, list) and len(shape) == dims + 1 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise DataError(f"{STORE_JSON}: sample_shape must be [C, *spatial] for dims {dims}, got {shape!r}", path=path)
    if not isinstance(channels, list) or len(channels) != shape[0]:
        raise DataError(f"{STORE_JSON}: {channels!r} does not name {shape[0]} channels", path=path)
    if not (isinstance(spacing, list) and len(spacing) == 3 and all(isinstance(s, (int, float)) for s in spacing)):
        raise DataError(f"{STORE_JSON}: spacing must be [z, y, x], got {spacing!r}", path=path)
    if not isinstance(meta["synthetic"], bool):
        raise DataError(f"{STORE_JSON}: synthetic must be true or false, got {meta['synthetic']!r}", path=path)
    return meta


def _open_arrays(path: Path) -> tuple[zarr.Array, zarr.Array]:
    """The ``image`` and ``label`` arrays of the Zarr group at ``path``, read-only."""
    try:
        group = zarr.open_group(path, mode="r")
        image, label = group[IMAGE], group[LABEL]
    except (KeyError, FileNotFoundError, ValueError, TypeError, OSError) as exc:
        raise DataError(f"not a readable Zarr store with '{IMAGE}' and '{LABEL}' arrays: {exc}", path=path) from None
    if not isinstance(image, zarr.Array) or not isinstance(label, zarr.Array):
        raise DataError(f"'{IMAGE}' and '{LABEL}' must be Zarr arrays", path=path)
    return image, label


def _read_samples(path: Path, n: int) -> pd.DataFrame:
    """``samples.csv`` with typed columns, checked to have ``n`` rows."""
    file = path / SAMPLES_CSV
    if not file.is_file():
        raise DataError(f"{SAMPLES_CSV} missing", path=path)
    try:
        frame = pd.read_csv(
            file,
            dtype={"case_id": str, "split": str, "source": str, "subject_id": str},
            keep_default_na=False,
            na_values={c: ["nan", "NaN", ""] for c in ("spacing_z", "spacing_y", "spacing_x", "months")},
        )
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"unreadable {SAMPLES_CSV}: {exc}", path=path) from None
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{SAMPLES_CSV} lacks column(s) {missing}", path=path)
    if len(frame) != n:
        raise DataError(f"{SAMPLES_CSV} has {len(frame)} rows, store.json says n = {n}", path=path)
    if "subject_id" not in frame.columns:
        frame["subject_id"] = frame["case_id"]
    else:  # an empty cell: the case is its own subject (as in a manifest)
        frame["subject_id"] = frame["subject_id"].where(frame["subject_id"] != "", frame["case_id"])
    if "visit" not in frame.columns:
        frame["visit"] = 0
    if "months" not in frame.columns:
        frame["months"] = np.nan
    try:
        frame["slice"] = frame["slice"].astype(np.int64)
        frame["visit"] = frame["visit"].astype(np.int64)
        for c in ("spacing_z", "spacing_y", "spacing_x", "months"):
            frame[c] = frame[c].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{SAMPLES_CSV}: bad slice, visit, spacing or months value: {exc}", path=path) from None
    return frame
