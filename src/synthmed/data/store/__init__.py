"""The Store: one on-disk format for real and synthetic image + label samples (see :mod:`.format`).

Modules: :mod:`.format` (layout and constants), :mod:`.writer` (:class:`StoreWriter`),
:mod:`.handle` (:class:`Store`), :mod:`.chunk_reader` (direct chunk decoding),
:mod:`.cache` (decoded-chunk cache, gathering), :mod:`.dataset` (torch Datasets, of samples or of
images alone, and Sampler).
"""

from synthmed.data.store.dataset import ChunkShuffleSampler, ImageDataset, StoreDataset
from synthmed.data.store.format import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CLEVEL,
    DEFAULT_CNAME,
    DEFAULT_SHUFFLE,
    FORMAT,
    FORMAT_VERSION,
    REQUIRED_ROW_KEYS,
    SAMPLE_COLUMNS,
    SUBJECT_COLUMNS,
    default_chunk_samples,
)
from synthmed.data.store.handle import Store
from synthmed.data.store.writer import StoreWriter

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CLEVEL",
    "DEFAULT_CNAME",
    "DEFAULT_SHUFFLE",
    "FORMAT",
    "FORMAT_VERSION",
    "REQUIRED_ROW_KEYS",
    "SAMPLE_COLUMNS",
    "SUBJECT_COLUMNS",
    "ChunkShuffleSampler",
    "ImageDataset",
    "Store",
    "StoreDataset",
    "StoreWriter",
    "default_chunk_samples",
]
