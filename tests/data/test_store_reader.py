"""The direct chunk reader against zarr's own reading: a zarr upgrade that breaks its assumptions fails here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.store import StoreWriter
from synthmed.data.store.chunk_reader import ChunkReader


def _store_arrays(path: Path, spatial: tuple[int, ...], *, shuffle: str, n: int = 11,
                  chunk: int = 4) -> tuple[zarr.Array, zarr.Array]:
    """A store's image and label arrays as StoreWriter writes them: random values, one all-zero chunk."""
    rng = np.random.default_rng(len(spatial))
    images = rng.random((n, 4, *spatial), dtype=np.float32)
    labels = rng.integers(0, 4, (n, *spatial), dtype=np.uint8)
    images[chunk : 2 * chunk] = 0.0  # an all-fill chunk: zarr writes no file for it
    labels[chunk : 2 * chunk] = 0
    rows = [{"case_id": f"c{i}", "slice": i if len(spatial) == 2 else -1, "split": "train", "source": "test"}
            for i in range(n)]
    with StoreWriter(path, dims=len(spatial), channels=CANONICAL_CHANNELS, sample_shape=(4, *spatial),
                     spacing=(1.0, 1.0, 1.0), normalisation={}, provenance={}, synthetic=False,
                     chunk_samples=chunk, shuffle=shuffle) as writer:
        writer.append(images, labels, rows)
    assert writer.store is not None
    return writer.store.arrays()


def _assert_reads_like_zarr(array: zarr.Array, chunk: int) -> None:
    """Every chunk, the partial last one included, decodes directly to what zarr reads."""
    reader = ChunkReader(array, chunk)
    assert reader.direct, "the direct path no longer applies to the arrays the store writes"
    out = np.full((chunk, *array.shape[1:]), 7, dtype=array.dtype)  # not the fill value
    n_chunks = -(-array.shape[0] // chunk)
    for k in range(n_chunks):
        m = reader.read_into(k, out)
        expected = array[k * chunk : (k + 1) * chunk]
        assert m == len(expected)
        np.testing.assert_array_equal(out[:m], expected, err_msg=f"chunk {k}")


@pytest.mark.parametrize("shuffle", ["noshuffle", "shuffle", "bitshuffle"])
@pytest.mark.parametrize("spatial", [(6, 5), (3, 4, 5)], ids=["2d", "3d"])
def test_direct_reads_equal_zarr_reads(tmp_path: Path, spatial: tuple[int, ...], shuffle: str) -> None:
    image, label = _store_arrays(tmp_path / "s", spatial, shuffle=shuffle)
    for array in (image, label):
        _assert_reads_like_zarr(array, 4)


def test_direct_reads_of_uncompressed_chunks_equal_zarr_reads(tmp_path: Path) -> None:
    """The ``bytes`` codec alone (no Blosc): the chunk file is the raw C-order chunk."""
    array = zarr.create_array(tmp_path / "a", shape=(7, 3, 5), chunks=(3, 3, 5), dtype="float32",
                              compressors=None, fill_value=0.0)
    values = np.random.default_rng(0).random((7, 3, 5), dtype=np.float32)
    values[3:6] = 0.0
    array[:] = values
    _assert_reads_like_zarr(array, 3)


def test_other_layouts_fall_back_to_zarr(tmp_path: Path) -> None:
    """Arrays outside the direct path's assumptions are read through zarr, correctly."""
    values = np.random.default_rng(1).random((6, 2, 3), dtype=np.float32)
    sharded = zarr.create_array(tmp_path / "sharded", shape=(6, 2, 3), chunks=(2, 2, 3), shards=(6, 2, 3),
                                dtype="float32", fill_value=0.0)
    other_chunks = zarr.create_array(tmp_path / "other", shape=(6, 2, 3), chunks=(2, 1, 3), dtype="float32",
                                     compressors=[BloscCodec(cname="lz4", typesize=4)], fill_value=0.0)
    for array in (sharded, other_chunks):
        array[:] = values
        reader = ChunkReader(array, 2)
        assert not reader.direct
        out = np.empty((2, 2, 3), np.float32)
        for k in range(3):
            assert reader.read_into(k, out) == 2
            np.testing.assert_array_equal(out, values[2 * k : 2 * k + 2])
