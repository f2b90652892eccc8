"""The Store: one on-disk format for real and synthetic image + label samples.

A store is a directory that is itself a Zarr v3 group, so ``zarr.open_group(path)`` works
from any tool::

    store/
      zarr.json        group metadata (attributes hold a copy of store.json under "synthmed")
      image/           float32 [N, C, H, W] (2D) or [N, C, D, H, W] (3D), values in [0, 1]
      label/           uint8   [N, H, W]    or [N, D, H, W], canonical labels 0..3
      samples.csv      one row per sample, in array order
      store.json       what the arrays are (see below)

Both arrays are chunked along ``N`` only: a chunk holds ``chunk_samples`` whole samples
(about 8 MiB of image, at least one sample) and the label chunks hold the same samples as
the image chunks. Chunks are compressed with Blosc/LZ4 (no shuffle by default; see
:data:`DEFAULT_SHUFFLE`).

``samples.csv`` columns (:data:`SAMPLE_COLUMNS`): ``case_id`` str, ``slice`` int (the axial
index of a 2D sample in its case, ``-1`` for 3D), ``split`` str (``"train"``, ``"test"``, …),
``source`` str (dataset or generator), ``spacing_z``, ``spacing_y``, ``spacing_x`` float mm
of the sample's grid. Extra columns given by the writer are kept.

``store.json``::

    {"format": "synthmed-store", "format_version": 1, "dims": 2 | 3, "n": N,
     "sample_shape": [C, *spatial], "channels": [...], "label_names": {"0": "background", ...},
     "spacing": [z, y, x] (nominal, mm), "normalisation": {...}, "synthetic": bool,
     "provenance": {...}, "created": ISO-8601 UTC time, "synthmed_version": "..."}

Reading streams chunk by chunk: :meth:`Store.iter_batches`, :class:`StoreDataset` and
:meth:`Store.read` decode one chunk at a time into reused buffers, so memory is about one
chunk (plus the requested samples) whatever ``N`` is. Writing is atomic
(:func:`synthmed.atomic.atomic_directory`): a store that exists is complete.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numcodecs.blosc
import numpy as np
import pandas as pd
import torch
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.storage import LocalStore

from synthmed import __version__
from synthmed.atomic import atomic_directory
from synthmed.data.case import LABEL_NAMES
from synthmed.errors import DataError, reraise_naming

#: ``store.json["format"]`` of every store.
FORMAT = "synthmed-store"
#: The store format version this code writes and reads.
FORMAT_VERSION = 1
#: Columns every ``samples.csv`` holds, in this order.
SAMPLE_COLUMNS: tuple[str, ...] = ("case_id", "slice", "split", "source", "spacing_z", "spacing_y", "spacing_x")
#: Columns a row given to :meth:`StoreWriter.append` must hold (spacing defaults to nominal).
REQUIRED_ROW_KEYS: tuple[str, ...] = ("case_id", "slice", "split", "source")
#: Uncompressed image bytes a chunk aims for; a chunk holds ``max(1, this // sample bytes)`` samples.
DEFAULT_CHUNK_BYTES = 8 * 2**20
#: Blosc compressor. LZ4 decompresses at several GB/s per core.
DEFAULT_CNAME = "lz4"
#: Blosc compression level (for LZ4 it trades write speed for size; reading is unaffected).
DEFAULT_CLEVEL = 5
#: Blosc shuffle of image chunks. Byte shuffle makes normalised float32 images ~15 % smaller
#: but decompresses ~2.5x slower (benchmarks/store_stream.py: 0.59 instead of 0.82 of the
#: memory-mapped .npy throughput on 2 cores), so images are not shuffled.
DEFAULT_SHUFFLE = "noshuffle"

IMAGE = "image"
LABEL = "label"
STORE_JSON = "store.json"
SAMPLES_CSV = "samples.csv"
_META_KEYS = ("dims", "n", "sample_shape", "channels", "label_names", "spacing", "synthetic")


def default_chunk_samples(sample_shape: Sequence[int], target_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Samples per chunk: as many float32 samples of ``sample_shape`` as fit ``target_bytes``, >= 1."""
    sample_bytes = 4 * math.prod(int(s) for s in sample_shape)
    return max(1, int(target_bytes) // max(1, sample_bytes))


def _spatial_names(dims: int) -> tuple[str, ...]:
    return ("z", "y", "x") if dims == 3 else ("y", "x")


# ----------------------------------------------------------------------------- writing


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
            names = _spatial_names(dims)
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


# ----------------------------------------------------------------------------- reading


class _ChunkReader:
    """Decode the samples of chunk ``k`` of one Zarr array into caller-owned buffers.

    Chunk ``k`` holds samples ``[k * chunk, min((k + 1) * chunk, N))``. Stores written by
    :class:`StoreWriter` (local directory, regular chunks of whole samples, ``bytes`` +
    optional ``blosc`` codecs) are read on a fast path that reads the chunk file and
    decompresses it straight into the buffer, skipping zarr's per-call machinery (which
    costs about as much as the decompression itself). Any other layout (e.g. a store
    rewritten by another tool) is read through zarr.
    """

    def __init__(self, array: zarr.Array, chunk: int, *, fast: bool = True,
                 describe: Callable[[int], str] | None = None, checked: set[int] | None = None):
        self.array = array
        self.describe = describe or (lambda i: f"sample {i}")
        # chunks found finite (stores are immutable: once per store object is enough)
        self._checked: set[int] = checked if checked is not None else set()
        self.n = int(array.shape[0])
        self.chunk = int(chunk)
        self.sample_shape = tuple(int(s) for s in array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self._root: Path | None = None
        self._blosc = False
        self._raw = bytearray()
        self._fill: Any = 0
        if fast:
            self._setup_fast()

    def _setup_fast(self) -> None:
        a = self.array
        meta = a.metadata
        if meta.zarr_format != 3 or a.shards is not None or not isinstance(a.store, LocalStore):
            return
        if tuple(getattr(meta.chunk_grid, "chunk_shape", ())) != (self.chunk, *self.sample_shape):
            return  # not a regular grid of whole-sample chunks aligned with the store's chunks
        if not self.dtype.isnative or sys.byteorder != "little":
            return
        codecs = list(meta.codecs)
        if not codecs or not isinstance(codecs[0], BytesCodec):
            return
        endian = codecs[0].endian
        if endian is not None and getattr(endian, "value", endian) != "little":
            return
        rest = codecs[1:]
        if len(rest) > 1 or (rest and not isinstance(rest[0], BloscCodec)):
            return
        self._blosc = bool(rest)
        self._fill = np.asarray(meta.fill_value, dtype=self.dtype) if meta.fill_value is not None else self.dtype.type(0)
        self._root = Path(a.store.root) / a.path

    def count(self, k: int) -> int:
        """Number of samples in chunk ``k``."""
        return min(self.chunk, self.n - k * self.chunk)

    def read_into(self, k: int, out: np.ndarray) -> int:
        """Decode chunk ``k`` into ``out`` (C-contiguous ``[chunk, *sample_shape]``).

        Returns:
            ``m``, the number of valid samples: ``out[:m]`` holds them.
        """
        m = self.count(k)
        if m <= 0:
            raise IndexError(f"chunk {k} out of range")
        if self._root is None:
            out[:m] = self.array[k * self.chunk : k * self.chunk + m]
            self._check_finite(k, out[:m])
            return m
        key = self.array.metadata.encode_chunk_key((k,) + (0,) * len(self.sample_shape))
        try:
            f = open(self._root / key, "rb", buffering=0)
        except FileNotFoundError:  # zarr does not write chunks that are all fill value
            out.fill(self._fill)
            return m
        with f:
            size = os.fstat(f.fileno()).st_size
            if len(self._raw) < size:
                self._raw = bytearray(size)
            view = memoryview(self._raw)[:size]
            got = f.readinto(view)
        if got != size:
            raise DataError(f"short read of chunk {key}", path=self._root)
        if self._blosc:
            nbytes = int.from_bytes(view[4:8], "little") if size >= 16 else -1  # blosc header: nbytes
            if nbytes != out.nbytes:
                raise DataError(f"chunk {key} decodes to {nbytes} bytes, expected {out.nbytes}", path=self._root)
            numcodecs.blosc.decompress(view, out)
        else:
            if size != out.nbytes:
                raise DataError(f"chunk {key} has {size} bytes, expected {out.nbytes}", path=self._root)
            memoryview(out).cast("B")[:] = view
        self._check_finite(k, out[:m])
        return m

    def _check_finite(self, k: int, values: np.ndarray) -> None:
        """Raise if decoded float samples hold NaN or infinities, naming the first such sample.

        One BLAS dot product per chunk (NaN and inf propagate through it; ~0.4 ms per 8 MiB
        chunk, about a quarter of streaming it), the first time this reader decodes the chunk
        only; only a non-finite result looks for the sample.
        """
        if values.dtype.kind != "f" or not values.size or k in self._checked:
            return
        flat = values.reshape(-1)
        if np.isfinite(np.dot(flat, flat)):
            self._checked.add(k)
            return
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if not bad.any():  # a finite dot product that overflowed
            self._checked.add(k)
        else:
            i = k * self.chunk + int(np.flatnonzero(bad)[0])
            raise DataError(f"{self.describe(i)} holds NaN or infinite values (a store holds finite values in "
                            "[0, 1]: the store is damaged or was written by another tool)",
                            path=Path(self.array.store.root) if isinstance(self.array.store, LocalStore) else None)


class _ChunkCache:
    """LRU cache of decoded chunks of a store's image and label arrays.

    ``get(k)`` returns views ``(images [m, C, ...], labels [m, ...])`` into reused buffers:
    they stay valid until ``size`` other chunks have been decoded, so callers copy out
    what they keep. Memory: ``size`` chunks.
    """

    def __init__(self, image: _ChunkReader, label: _ChunkReader, size: int = 1):
        if size < 1:
            raise ValueError(f"cache size must be >= 1, got {size}")
        self.image, self.label, self.size = image, label, size
        self._entries: OrderedDict[int, tuple[np.ndarray, np.ndarray, int]] = OrderedDict()
        self.decoded = 0  # chunks decoded so far (for tests and benchmarks)

    def read_whole(self, k: int, out_img: np.ndarray, out_lab: np.ndarray) -> bool:
        """Decode full chunk ``k`` straight into ``out_img``/``out_lab`` (``[chunk, ...]``,
        C-contiguous), saving a copy, unless it is cached or partial. Returns whether it did."""
        if k in self._entries or self.image.count(k) != self.image.chunk:
            return False
        if not (out_img.flags.c_contiguous and out_lab.flags.c_contiguous):
            return False
        self.image.read_into(k, out_img)
        self.label.read_into(k, out_lab)
        self.decoded += 1
        return True

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        entry = self._entries.get(k)
        if entry is not None:
            self._entries.move_to_end(k)
        else:
            if len(self._entries) >= self.size:
                _, (img, lab, _) = self._entries.popitem(last=False)
            else:
                img = np.empty((self.image.chunk, *self.image.sample_shape), self.image.dtype)
                lab = np.empty((self.label.chunk, *self.label.sample_shape), self.label.dtype)
            m = self.image.read_into(k, img)
            self.label.read_into(k, lab)
            self.decoded += 1
            entry = self._entries[k] = (img, lab, m)
        img, lab, m = entry
        return img[:m], lab[:m]


def _gather(
    cache: _ChunkCache, chunk: int, idx: np.ndarray, out_img: np.ndarray, out_lab: np.ndarray, *, sort: bool
) -> None:
    """Copy samples ``idx`` into ``out_img[i], out_lab[i]`` chunk by chunk.

    With ``sort`` the samples are visited in chunk order (each chunk decoded once however
    ``idx`` is ordered); without, in the given order (runs of one chunk decoded once).
    """
    if len(idx) == 0:
        return
    order = np.argsort(idx, kind="stable") if sort else None
    visit = idx[order] if sort else idx
    cid = visit // chunk
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(cid)) + 1, [len(visit)]])
    for a, b in zip(bounds[:-1], bounds[1:]):
        k = int(cid[a])
        local = visit[a:b] - k * chunk
        contiguous = order is None and int(local[-1]) - int(local[0]) == b - a - 1
        contiguous = contiguous and (b - a == 1 or bool(np.all(np.diff(local) == 1)))
        if contiguous and b - a == chunk and cache.read_whole(k, out_img[a:b], out_lab[a:b]):
            continue
        img, lab = cache.get(k)
        if order is None:
            lo = int(local[0])
            if contiguous:
                out_img[a:b] = img[lo : lo + b - a]
                out_lab[a:b] = lab[lo : lo + b - a]
            else:
                np.take(img, local, axis=0, out=out_img[a:b])
                np.take(lab, local, axis=0, out=out_lab[a:b])
        else:
            pos = order[a:b]
            out_img[pos] = img[local]
            out_lab[pos] = lab[local]


def _as_indices(indices: slice | Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    """Indices as int64 ``[k]`` in ``0..n-1`` (negative ones count from the end)."""
    if indices is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(indices, slice):
        return np.arange(*indices.indices(n), dtype=np.int64)
    arr = np.asarray(indices)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be a slice or a 1-D sequence of integers, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.min() < -n or arr.max() >= n:
        raise IndexError(f"sample index out of range for a store of {n} samples")
    return np.where(arr < 0, arr + n, arr)


class Store:
    """A read-only handle on a store directory (see the module docstring).

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
        samples: the per-sample table, one row per sample in array order.
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
        self._finite_chunks: set[int] = set()  # image chunks checked for NaN/inf (see _ChunkReader)

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

    def _cache(self, size: int = 1, *, fast: bool = True) -> _ChunkCache:
        image, label = self.arrays()
        chunk = self.chunk_samples
        return _ChunkCache(_ChunkReader(image, chunk, fast=fast, describe=self.describe_sample,
                                        checked=self._finite_chunks), _ChunkReader(label, chunk, fast=fast), size)

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

    def read(self, indices: slice | Sequence[int] | np.ndarray, *, fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Read some samples, in the order given.

        Each touched chunk is decoded once; memory is one chunk plus the result.

        Args:
            indices: a slice or a 1-D sequence of sample indices (negative count from the end).
            fast: use the direct chunk reader where possible (``False``: always go through zarr).

        Returns:
            ``(images, labels)``: float32 ``[k, *sample_shape]`` and uint8 ``[k, *spatial]``.
        """
        idx = _as_indices(indices, len(self))
        images = np.empty((len(idx), *self.sample_shape), np.float32)
        labels = np.empty((len(idx), *self.spatial_shape), np.uint8)
        ascending = len(idx) < 2 or bool(np.all(np.diff(idx) >= 0))
        _gather(self._cache(1, fast=fast), self.chunk_samples, idx, images, labels, sort=not ascending)
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
        idx = _as_indices(indices, len(self))
        cache = self._cache(1, fast=fast)
        for start in range(0, len(idx), batch_size):
            batch = idx[start : start + batch_size]
            images = np.empty((len(batch), *self.sample_shape), np.float32)
            labels = np.empty((len(batch), *self.spatial_shape), np.uint8)
            _gather(cache, self.chunk_samples, batch, images, labels, sort=False)
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
        idx = self.indices(split) if split is not None else _as_indices(indices, len(self))
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
    missing = [k for k in _META_KEYS if k not in meta]
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
            dtype={"case_id": str, "split": str, "source": str},
            keep_default_na=False,
            na_values={c: ["nan", "NaN", ""] for c in ("spacing_z", "spacing_y", "spacing_x")},
        )
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"unreadable {SAMPLES_CSV}: {exc}", path=path) from None
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{SAMPLES_CSV} lacks column(s) {missing}", path=path)
    if len(frame) != n:
        raise DataError(f"{SAMPLES_CSV} has {len(frame)} rows, store.json says n = {n}", path=path)
    try:
        frame["slice"] = frame["slice"].astype(np.int64)
        for c in ("spacing_z", "spacing_y", "spacing_x"):
            frame[c] = frame[c].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{SAMPLES_CSV}: bad slice or spacing value: {exc}", path=path) from None
    return frame


# ----------------------------------------------------------------------------- torch


class StoreDataset(torch.utils.data.Dataset):
    """Map-style dataset over some samples of a store.

    Item ``i`` is sample ``indices[i]``: ``(image, label)`` with image a float32 tensor
    ``[C, *spatial]`` in ``[0, 1]`` and label a **uint8** tensor ``[*spatial]`` (compact and
    exact; call ``.long()`` on the batch for a loss, or pass ``long_labels=True`` to get
    int64 items).

    Each process keeps an LRU cache of the last ``cache_chunks`` decoded chunks, so
    sequential or chunk-grouped access (:class:`ChunkShuffleSampler`) decodes each chunk
    once per process. The dataset pickles without open files; Zarr is opened lazily in
    each DataLoader worker. Not safe to share between threads.

    Args:
        store: the store.
        indices: int64 ``[n]`` sample indices (default all).
        long_labels: return labels as int64 instead of uint8.
        cache_chunks: decoded chunks kept per process (memory: this many chunks).
    """

    def __init__(
        self,
        store: Store,
        indices: np.ndarray | Sequence[int] | None = None,
        *,
        long_labels: bool = False,
        cache_chunks: int = 1,
    ):
        self.store = store
        self.indices = _as_indices(indices, len(store))
        self.long_labels = long_labels
        self.cache_chunks = int(cache_chunks)
        self._chunk_cache: _ChunkCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_chunk_cache"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def chunk_ids(self) -> np.ndarray:
        """int64 ``[n]``: the store chunk holding each item."""
        return self.indices // self.store.chunk_samples

    @property
    def cache(self) -> _ChunkCache:
        """This process's chunk cache (created on first use)."""
        if self._chunk_cache is None:
            self._chunk_cache = self.store._cache(self.cache_chunks)
        return self._chunk_cache

    def _labels(self, lab: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(lab)
        return t.long() if self.long_labels else t

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = int(self.indices[i])
        k, r = divmod(j, self.store.chunk_samples)
        img, lab = self.cache.get(k)
        return torch.from_numpy(img[r].copy()), self._labels(lab[r].copy())

    @property
    def item_nbytes(self) -> int:
        """Bytes of one item (image and label tensors)."""
        label_bytes = 8 if self.long_labels else 1
        return 4 * math.prod(self.store.sample_shape) + label_bytes * math.prod(self.store.spatial_shape)

    def fetch(self, items: Sequence[int] | np.ndarray,
              out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``items`` stacked: ``(images float32 [k, C, *spatial], labels [k, *spatial])``.

        One vectorised copy per run of items in one chunk (items of one chunk: one decode).
        ``out``: C-contiguous float32 ``[>= k, C, *spatial]`` and uint8 ``[>= k, *spatial]``
        buffers to fill (their first ``k`` samples are returned, without a copy for uint8 labels).
        """
        idx = self.indices[np.asarray(items, dtype=np.int64)]
        if out is not None:
            images, labels = out[0][: len(idx)], out[1][: len(idx)]
        else:
            images = np.empty((len(idx), *self.store.sample_shape), np.float32)
            labels = np.empty((len(idx), *self.store.spatial_shape), np.uint8)
        _gather(self.cache, self.store.chunk_samples, idx, images, labels, sort=False)
        return torch.from_numpy(images), self._labels(labels)

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch (used by ``DataLoader``): :meth:`fetch`, as a list of items."""
        images, labels = self.fetch(items)
        return list(zip(images.unbind(0), labels.unbind(0)))


class ChunkShuffleSampler(torch.utils.data.Sampler[int]):
    """Shuffle for training without re-decoding: chunk order, then samples within windows of chunks.

    Yields every position ``0..len(dataset)-1`` once per epoch. The order depends only on
    ``(seed, epoch)``; call :meth:`set_epoch` each epoch for a new order. The chunks are
    permuted and cut into ``max(1, chunks // window)`` consecutive **windows** of near-equal
    size (so each holds ``window`` to ``2·window - 1`` chunks, or all chunks); the samples of
    each window are permuted together (``window=1``: within each chunk), and the windows
    follow each other. So a reader holding the chunks of the current window (e.g. a
    :class:`StoreDataset` with ``cache_chunks >= 2·window``, or
    :func:`~synthmed.training.batch_stream`) decodes each chunk once per epoch, while
    consecutive items mix the samples of at least ``window`` chunks.

    Args:
        dataset: a :class:`StoreDataset` (or anything with ``chunk_ids`` int ``[n]``).
        seed: base seed.
        shuffle_within_chunk: permute the samples inside each window (``False``: keep the
            chunks' own order, chunk after chunk).
        window: chunks whose samples are mixed together, >= 1.
    """

    def __init__(self, dataset: StoreDataset, *, seed: int = 0, shuffle_within_chunk: bool = True, window: int = 1):
        if int(window) < 1:
            raise ValueError(f"window must be >= 1 chunk, got {window}")
        self.chunk_ids = np.asarray(dataset.chunk_ids, dtype=np.int64)
        self.seed = int(seed)
        self.shuffle_within_chunk = shuffle_within_chunk
        self.window = int(window)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def order_and_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """This epoch's order and where its windows start.

        Returns:
            ``(order, starts)``: int64 ``[n]``, a permutation of dataset positions, and
            int64 ``[w + 1]``, the offsets in ``order`` of the ``w`` windows (then ``n``).
        """
        rng = np.random.default_rng([self.seed, self.epoch])
        by_chunk = np.argsort(self.chunk_ids, kind="stable")
        chunks, starts = np.unique(self.chunk_ids[by_chunk], return_index=True)
        groups = np.split(by_chunk, starts[1:]) if len(chunks) else []
        perm = rng.permutation(len(groups))
        cuts = np.linspace(0, len(perm), max(1, len(perm) // self.window) + 1).round().astype(np.int64)
        parts, bounds = [], [0]
        for a, b in zip(cuts[:-1], cuts[1:]):
            items = np.concatenate([groups[g] for g in perm[a:b]])
            parts.append(rng.permutation(items) if self.shuffle_within_chunk else items)
            bounds.append(bounds[-1] + len(items))
        order = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return order, np.asarray(bounds, np.int64)

    def order(self) -> np.ndarray:
        """int64 ``[n]``: this epoch's permutation of dataset positions."""
        return self.order_and_windows()[0]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())
