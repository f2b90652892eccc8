"""Writing a store: buffer samples to whole chunks, then publish the store atomically on close."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from synthmed import __version__
from synthmed.atomic import atomic_directory
from synthmed.data.case import LABEL_NAMES
from synthmed.data.store.format import (
    DEFAULT_CLEVEL,
    DEFAULT_CNAME,
    DEFAULT_SHUFFLE,
    FORMAT,
    FORMAT_VERSION,
    IMAGE,
    LABEL,
    REQUIRED_ROW_KEYS,
    SAMPLE_COLUMNS,
    SAMPLES_CSV,
    STORE_JSON,
    default_chunk_samples,
    spatial_names,
)
from synthmed.data.store.handle import Store
from synthmed.errors import reraise_naming


class StoreWriter:
    """Write a store sample batch by sample batch; the store appears only on :meth:`close`.

    Use as a context manager: leaving the ``with`` block normally closes (publishes) the
    store, leaving it with an exception removes everything written::

        with StoreWriter(path, dims=2, channels=CANONICAL_CHANNELS, sample_shape=(4, 240, 240),
                         spacing=(1, 1, 1), normalisation={...}, provenance={...},
                         synthetic=False) as writer:
            writer.append(images, labels, rows)
        store = writer.store

    Memory is bounded by one chunk (plus the batch being appended) whatever ``N`` is:
    samples are buffered to whole chunks and written chunk-aligned.

    Args:
        path: the store directory to create.
        dims: 2 (slices ``[C, H, W]``) or 3 (volumes ``[C, D, H, W]``).
        channels: channel names, ``len(channels) == C``.
        sample_shape: ``(C, *spatial)`` of one image sample.
        spacing: nominal voxel size ``(z, y, x)`` in mm.
        normalisation: how intensities were mapped to ``[0, 1]`` (JSON-serialisable).
        provenance: source data hash or generator run, etc. (JSON-serialisable); the
            :attr:`provenance` attribute may be updated until :meth:`close`.
        synthetic: whether samples come from a generator.
        overwrite: replace an existing ``path`` on close.
        chunk_samples: samples per chunk; default :func:`default_chunk_samples`.
        label_names: label value → name; default the canonical :data:`LABEL_NAMES`.
        cname, clevel, shuffle: Blosc settings of the image array (labels use the same
            compressor without shuffle).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (at construction).
        ValueError: inconsistent arguments (a programming error).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dims: int,
        channels: Sequence[str],
        sample_shape: Sequence[int],
        spacing: Sequence[float],
        normalisation: dict,
        provenance: dict,
        synthetic: bool,
        overwrite: bool = False,
        chunk_samples: int | None = None,
        label_names: Mapping[int, str] | None = None,
        cname: str = DEFAULT_CNAME,
        clevel: int = DEFAULT_CLEVEL,
        shuffle: str = DEFAULT_SHUFFLE,
    ):
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        sample_shape = tuple(int(s) for s in sample_shape)
        if len(sample_shape) != dims + 1 or min(sample_shape) < 1:
            raise ValueError(f"sample_shape must be (C, *spatial) with {dims} positive spatial sizes, got {sample_shape}")
        channels = tuple(str(c) for c in channels)
        if len(channels) != sample_shape[0]:
            raise ValueError(f"{len(channels)} channel names for {sample_shape[0]} channels")
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be 3 positive (z, y, x) values in mm, got {spacing}")
        if chunk_samples is None:
            chunk_samples = default_chunk_samples(sample_shape)
        if int(chunk_samples) < 1:
            raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
        for name, value in (("normalisation", normalisation), ("provenance", provenance)):
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name} must be JSON-serialisable: {exc}") from None

        self.path = Path(path)
        self.dims = dims
        self.channels = channels
        self.sample_shape = sample_shape
        self.spatial_shape = sample_shape[1:]
        self.spacing = spacing
        self.normalisation = normalisation
        self.provenance = provenance
        self.synthetic = bool(synthetic)
        self.chunk_samples = int(chunk_samples)
        self.label_names = {str(int(k)): str(v) for k, v in (label_names or LABEL_NAMES).items()}
        self.store: Store | None = None

        self._n = 0  # samples appended
        self._columns: list[str] | None = None  # samples.csv columns, fixed by the first row
        self._csv: Any = None  # samples.csv, written row by row (memory stays bounded)
        self._written = 0  # samples already in the zarr arrays
        self._filled = 0  # samples in the chunk buffers
        self._closed = False
        self._atomic = atomic_directory(self.path, overwrite=overwrite)
        self._tmp = self._atomic.__enter__()  # raises OutputExistsError before any work
        try:
            group = zarr.open_group(self._tmp, mode="w", zarr_format=3)
            names = spatial_names(dims)
            self._image = group.create_array(
                IMAGE,
                shape=(0, *sample_shape),
                chunks=(self.chunk_samples, *sample_shape),
                dtype="float32",
                compressors=[BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle, typesize=4)],
                fill_value=0.0,
                dimension_names=("sample", "channel", *names),
            )
            self._label = group.create_array(
                LABEL,
                shape=(0, *self.spatial_shape),
                chunks=(self.chunk_samples, *self.spatial_shape),
                dtype="uint8",
                compressors=[BloscCodec(cname=cname, clevel=clevel, shuffle="noshuffle", typesize=1)],
                fill_value=0,
                dimension_names=("sample", *names),
            )
        except BaseException:
            self.abort()
            raise
        self._image_buf = np.empty((self.chunk_samples, *sample_shape), np.float32)
        self._label_buf = np.empty((self.chunk_samples, *self.spatial_shape), np.uint8)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
            if isinstance(exc, OSError):  # a full disk or a read-only place: one line naming the store
                reraise_naming(exc, self.path)

    def __len__(self) -> int:
        """Samples appended so far."""
        return self._n

    def append(self, images: np.ndarray, labels: np.ndarray, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``n`` samples.

        Args:
            images: float32 ``[n, *sample_shape]``, finite.
            labels: uint8 ``[n, *spatial]``.
            rows: ``n`` mappings with at least :data:`REQUIRED_ROW_KEYS`; ``spacing_z/y/x``
                default to the nominal spacing; extra keys become extra columns. Every row
                has the keys of the store's first row.

        Raises:
            ValueError: wrong shape, dtype, row count or row columns, non-finite images, or
                the writer is closed.
        """
        if self._closed:
            raise ValueError(f"{self.path}: append to a closed StoreWriter")
        if not isinstance(images, np.ndarray) or images.dtype != np.float32:
            raise ValueError(f"images must be a float32 numpy array, got {getattr(images, 'dtype', type(images))}")
        if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8:
            raise ValueError(f"labels must be a uint8 numpy array, got {getattr(labels, 'dtype', type(labels))}")
        if images.ndim != len(self.sample_shape) + 1 or images.shape[1:] != self.sample_shape:
            raise ValueError(f"images must be [n, {', '.join(map(str, self.sample_shape))}], got {images.shape}")
        n = images.shape[0]
        if labels.shape != (n, *self.spatial_shape):
            raise ValueError(f"labels must have shape {(n, *self.spatial_shape)}, got {labels.shape}")
        if len(rows) != n:
            raise ValueError(f"{len(rows)} rows for {n} samples")
        if not np.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")
        if n == 0:
            return
        columns = self._columns
        if columns is None:
            first = rows[0] if isinstance(rows[0], Mapping) else {}
            columns = [*SAMPLE_COLUMNS, *(str(k) for k in first if k not in SAMPLE_COLUMNS)]
        new_rows = [self._row(r, columns) for r in rows]
        self._columns = columns
        start = 0
        while start < n:
            take = min(n - start, self.chunk_samples - self._filled)
            self._image_buf[self._filled : self._filled + take] = images[start : start + take]
            self._label_buf[self._filled : self._filled + take] = labels[start : start + take]
            self._filled += take
            start += take
            if self._filled == self.chunk_samples:
                self._flush()
        self._write_rows(new_rows)
        self._n += n

    def _row(self, row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
        """Validate one samples.csv row; fill the spacing from the nominal spacing."""
        if not isinstance(row, Mapping):
            raise ValueError(f"each row must be a mapping, got {type(row).__name__}")
        missing = [k for k in REQUIRED_ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"row {dict(row)} lacks column(s) {missing}")
        out = dict(row)
        out["case_id"] = str(row["case_id"])
        out["split"] = str(row["split"])
        out["source"] = str(row["source"])
        try:
            out["slice"] = int(row["slice"])
        except (TypeError, ValueError):
            raise ValueError(f"row slice must be an integer, got {row['slice']!r}") from None
        for axis, nominal in zip(("z", "y", "x"), self.spacing):
            key = f"spacing_{axis}"
            out[key] = float(row.get(key, nominal))
        if set(out) != set(columns):
            raise ValueError(f"row columns {sorted(out)} differ from the first row's {sorted(columns)}")
        return out

    def _write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows to ``samples.csv`` (the header first)."""
        if self._csv is None:
            self._csv = open(self._tmp / SAMPLES_CSV, "w", newline="", encoding="utf-8")
            self._csv_writer = csv.writer(self._csv)
            self._csv_writer.writerow(self._columns or SAMPLE_COLUMNS)
        columns = self._columns or SAMPLE_COLUMNS
        self._csv_writer.writerows([row[c] for c in columns] for row in rows)

    def _flush(self) -> None:
        """Write the buffered samples at the end of the arrays (chunk-aligned)."""
        m = self._filled
        if m == 0:
            return
        end = self._written + m
        self._image.resize((end, *self.sample_shape))
        self._label.resize((end, *self.spatial_shape))
        self._image[self._written : end] = self._image_buf[:m]
        self._label[self._written : end] = self._label_buf[:m]
        self._written = end
        self._filled = 0

    def metadata(self) -> dict[str, Any]:
        """The ``store.json`` content for the samples appended so far."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dims": self.dims,
            "n": self._n,
            "sample_shape": list(self.sample_shape),
            "channels": list(self.channels),
            "label_names": dict(self.label_names),
            "spacing": list(self.spacing),
            "normalisation": self.normalisation,
            "synthetic": self.synthetic,
            "provenance": self.provenance,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "synthmed_version": __version__,
        }

    def close(self) -> Store:
        """Flush, write ``samples.csv`` and ``store.json`` and move the store into place.

        Returns:
            The finished store, opened (also kept as :attr:`store`).
        """
        if self._closed:
            if self.store is None:
                raise ValueError(f"{self.path}: StoreWriter was aborted")
            return self.store
        try:
            self._flush()
            meta = self.metadata()
            if self._csv is None:  # no samples: header only
                self._write_rows([])
            self._csv.close()
            (self._tmp / STORE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
            zarr.open_group(self._tmp, mode="r+").attrs.update({"synthmed": meta})
        except OSError as exc:
            self.abort()
            reraise_naming(exc, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._image_buf = self._label_buf = None  # type: ignore[assignment]
        self._atomic.__exit__(None, None, None)
        self.store = Store.open(self.path)
        return self.store

    def abort(self) -> None:
        """Discard everything written; nothing is left at :attr:`path` (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._image_buf = self._label_buf = None  # type: ignore[assignment]
        if self._csv is not None:
            self._csv.close()
        self._atomic.__exit__(RuntimeError, RuntimeError("store writing aborted"), None)

