"""A direct chunk reader: decode a store's Zarr chunk files straight into caller-owned buffers, bypassing zarr.

zarr's per-call machinery costs about as much as decompressing a chunk, so the store reads
chunk files itself. Doing so relies on the following properties of zarr 3.x and numcodecs
0.1x. The first four are checked once per array (``ChunkReader._setup_fast``); an array that
lacks one of them is read through zarr instead:

1. the array is Zarr format 3 (``array.metadata.zarr_format == 3``), unsharded
   (``array.shards is None``) and kept in a ``zarr.storage.LocalStore``, so the chunk named
   ``key`` is the file ``Path(array.store.root) / array.path / key``;
2. its chunk grid is regular, ``array.metadata.chunk_grid.chunk_shape == (chunk,
   *sample_shape)``, and ``array.metadata.encode_chunk_key((k, 0, ..., 0))`` is the key of
   chunk ``k`` (the default encoding: ``c/k/0/...``);
3. its codecs are a ``zarr.codecs.BytesCodec`` (little-endian, or no endianness for one-byte
   types), optionally followed by exactly one ``zarr.codecs.BloscCodec``, and nothing else
   (no transpose, no checksum), so a decoded chunk is the C-order bytes of
   ``[chunk, *sample_shape]``;
4. the dtype is native and the machine little-endian.

The rest are properties of the files, relied on without a check in advance:

5. a chunk file that does not exist holds only ``array.metadata.fill_value`` (zarr does
   not write chunks that are all fill value);
6. every chunk file, the last (partial) chunk's included, decodes to a whole chunk (zarr
   pads edge chunks to the full chunk shape);
7. a Blosc-compressed chunk file is one Blosc frame whose 16-byte header holds the
   uncompressed size as a little-endian uint32 at bytes 4..8, and
   ``numcodecs.blosc.decompress(frame, out)`` decodes it into the buffer ``out``.

A chunk file that breaks 6 or 7 raises :class:`~synthmed.errors.DataError` (its size
disagrees with the chunk's). A zarr whose chunk keys or files changed (2, 5) would silently
read fill values instead: ``tests/data/test_store_reader.py`` compares this reader with
zarr's own reading, chunk by chunk, so such an upgrade fails loudly. Decoded float chunks are
checked for NaN and infinities, once per chunk and store.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numcodecs.blosc
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec
from zarr.storage import LocalStore

from synthmed.errors import DataError


class ChunkReader:
    """Decode the samples of chunk ``k`` of one Zarr array into caller-owned buffers.

    Chunk ``k`` holds samples ``[k * chunk, min((k + 1) * chunk, N))``. Arrays that meet the
    module's assumptions (as every array :class:`~synthmed.data.store.writer.StoreWriter`
    writes does) are read directly (:attr:`direct`); any other layout (e.g. a store
    rewritten by another tool), or ``fast=False``, is read through zarr.

    Args:
        array: the Zarr array, ``[N, *sample_shape]``.
        chunk: samples per chunk along ``N``.
        fast: read directly where the array allows it.
        describe: ``i -> "sample i (...)"`` for the message naming a non-finite sample.
        checked: the set of chunks already found finite, shared by the readers of one store
            (updated in place).
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

    @property
    def direct(self) -> bool:
        """Whether chunks are read directly from their files (else through zarr)."""
        return self._root is not None

    def _setup_fast(self) -> None:
        """Enable the direct path if the array meets every assumption of the module docstring."""
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

