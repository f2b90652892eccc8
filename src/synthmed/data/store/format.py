"""The store format: the on-disk layout, names, columns and chunking defaults that writer and reader share.

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

Longitudinal stores (:data:`SUBJECT_COLUMNS`; ``data prepare`` writes them when the dataset
gives subjects or times) add ``subject_id`` str (the patient), ``visit`` int (0-based rank of
the case among its subject's cases, by ``months`` then case id) and ``months`` float (months
since the subject's baseline; ``nan`` when unknown). A store without them (older stores,
cross-sectional data, synthetic stores) reads as ``subject_id = case_id``, ``visit = 0``,
``months = nan`` (an empty ``subject_id`` cell as its ``case_id``), so every :attr:`Store.samples`
table has them. ``subject_id`` is *the patient* everywhere a grouping means one (validation and
test splits, bootstrap intervals, patient-disjoint metric subsets); ``case_id`` is one scan
(a visit), the unit of per-case rows and file names.

``store.json``::

    {"format": "synthmed-store", "format_version": 1, "dims": 2 | 3, "n": N,
     "sample_shape": [C, *spatial], "channels": [...], "label_names": {"0": "background", ...},
     "spacing": [z, y, x] (nominal, mm), "normalisation": {...}, "synthetic": bool,
     "provenance": {...}, "created": ISO-8601 UTC time, "synthmed_version": "..."}

Writing is atomic (:class:`~synthmed.data.store.writer.StoreWriter`): a store that exists
is complete. Reading (:class:`~synthmed.data.store.handle.Store`) streams chunk by chunk, so
memory is about one chunk (plus the requested samples) whatever ``N`` is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: ``store.json["format"]`` of every store.
FORMAT = "synthmed-store"
#: The store format version this code writes and reads.
FORMAT_VERSION = 1
#: Columns every ``samples.csv`` holds, in this order.
SAMPLE_COLUMNS: tuple[str, ...] = ("case_id", "slice", "split", "source", "spacing_z", "spacing_y", "spacing_x")
#: Optional columns of longitudinal stores: a sample's subject, visit number and months since baseline.
SUBJECT_COLUMNS: tuple[str, ...] = ("subject_id", "visit", "months")
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

#: Names of the image and label arrays in the Zarr group.
IMAGE = "image"
LABEL = "label"
#: Names of the metadata files beside the arrays.
STORE_JSON = "store.json"
SAMPLES_CSV = "samples.csv"
#: Keys of ``store.json`` that readers rely on (checked when a store is opened).
META_KEYS: tuple[str, ...] = ("dims", "n", "sample_shape", "channels", "label_names", "spacing", "synthetic")


def default_chunk_samples(sample_shape: Sequence[int], target_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Samples per chunk: as many float32 samples of ``sample_shape`` as fit ``target_bytes``, >= 1."""
    sample_bytes = 4 * math.prod(int(s) for s in sample_shape)
    return max(1, int(target_bytes) // max(1, sample_bytes))


def spatial_names(dims: int) -> tuple[str, ...]:
    """Zarr dimension names of the spatial axes: ``("y", "x")`` (2D) or ``("z", "y", "x")`` (3D)."""
    return ("z", "y", "x") if dims == 3 else ("y", "x")

