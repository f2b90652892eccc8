"""Store: write/read round-trip, streaming, datasets, samplers, atomicity, errors, memory."""

from __future__ import annotations

import json
import pickle
import tracemalloc
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

import synthmed
from synthmed.data.case import CANONICAL_CHANNELS, LABEL_NAMES
from synthmed.data.store import (
    SAMPLE_COLUMNS,
    SUBJECT_COLUMNS,
    ChunkShuffleSampler,
    ImageDataset,
    Store,
    StoreWriter,
    default_chunk_samples,
)
from synthmed.data.store.chunk_reader import ChunkReader
from synthmed.errors import DataError, OutputExistsError


def _data(n: int, spatial: tuple[int, ...], c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    rng = np.random.default_rng(seed)
    images = rng.random((n, c, *spatial), dtype=np.float32)
    labels = rng.integers(0, 4, (n, *spatial), dtype=np.uint8)
    rows = [
        {"case_id": f"case{i // 3}", "slice": i % 3 if len(spatial) == 2 else -1,
         "split": "test" if i % 3 == 2 else "train", "source": "phantom"}
        for i in range(n)
    ]
    return images, labels, rows


def _write(path: Path, images: np.ndarray, labels: np.ndarray, rows: list[dict], *, chunk: int = 4,
           pieces: tuple[int, ...] = (5, 1, 7), **kwargs) -> Store:
    dims = images.ndim - 2
    options = dict(dims=dims, channels=CANONICAL_CHANNELS[: images.shape[1]], sample_shape=images.shape[1:],
                   spacing=(2.0, 1.0, 1.0), normalisation={"method": "percentile", "lower": 0.5},
                   provenance={"source": "test"}, synthetic=False, chunk_samples=chunk)
    options.update(kwargs)
    with StoreWriter(path, **options) as writer:
        start = 0
        for size in (*pieces, len(images)):  # uneven appends, then the rest
            stop = min(len(images), start + size)
            writer.append(images[start:stop], labels[start:stop], rows[start:stop])
            start = stop
        writer.provenance["skipped"] = ["case99"]
    assert writer.store is not None
    return writer.store


@pytest.mark.parametrize("spatial", [(6, 5), (3, 4, 5)], ids=["2d", "3d"])
def test_round_trip(tmp_path: Path, spatial: tuple[int, ...]) -> None:
    images, labels, rows = _data(15, spatial)
    labels[:4] = 0  # an all-background chunk: zarr does not write it; it must read back as 0
    written = _write(tmp_path / "s", images, labels, rows)
    store = Store.open(tmp_path / "s")

    got_images, got_labels = store.read(slice(None))
    assert got_images.dtype == np.float32 and got_labels.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    cache = store.chunk_cache()
    assert cache.image._root is not None and cache.label._root is not None  # the direct reader is used
    # the zarr-only path reads the same
    for a, b in zip(store.read(slice(None), fast=False), (images, labels)):
        np.testing.assert_array_equal(a, b)

    assert len(store) == len(written) == 15
    assert store.dims == len(spatial) and store.chunk_samples == 4 and store.n_chunks == 4
    assert store.sample_shape == (4, *spatial) and store.spatial_shape == spatial
    assert store.channels == CANONICAL_CHANNELS and store.spacing == (2.0, 1.0, 1.0)
    assert store.synthetic is False

    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["format"] == "synthmed-store" and meta["format_version"] == 1
    assert meta["dims"] == len(spatial) and meta["n"] == 15
    assert meta["sample_shape"] == [4, *spatial]
    assert meta["channels"] == list(CANONICAL_CHANNELS)
    assert meta["label_names"] == {str(k): v for k, v in LABEL_NAMES.items()}
    assert meta["spacing"] == [2.0, 1.0, 1.0]
    assert meta["normalisation"] == {"method": "percentile", "lower": 0.5}
    assert meta["provenance"] == {"source": "test", "skipped": ["case99"]}
    assert meta["synthetic"] is False and meta["synthmed_version"] == synthmed.__version__
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None
    assert store.meta == meta

    table = store.samples
    # a store written without subjects reads each case as its own subject, visit 0, months unknown
    assert list(table.columns) == [*SAMPLE_COLUMNS, *SUBJECT_COLUMNS]
    expected = pd.DataFrame(rows).assign(spacing_z=2.0, spacing_y=1.0, spacing_x=1.0)
    expected = expected.assign(subject_id=expected["case_id"], visit=0, months=np.nan)
    pd.testing.assert_frame_equal(table, expected[[*SAMPLE_COLUMNS, *SUBJECT_COLUMNS]], check_dtype=False)
    assert (tmp_path / "s" / "samples.csv").read_text().splitlines()[0] == ",".join(SAMPLE_COLUMNS)  # on disk: none
    assert table["slice"].dtype == np.int64 and table["spacing_x"].dtype == np.float64
    assert list(table["case_id"]) == [r["case_id"] for r in rows]


def test_row_spacing_and_extra_columns_are_kept(tmp_path: Path) -> None:
    images, labels, rows = _data(3, (4, 4))
    rows = [dict(r, spacing_z=5.0, generator="ddpm") for r in rows]
    rows[0]["case_id"] = "NA"  # must stay a string, not become NaN
    store = _write(tmp_path / "s", images, labels, rows, pieces=())
    assert store.samples["spacing_z"].tolist() == [5.0, 5.0, 5.0]
    assert store.samples["generator"].tolist() == ["ddpm"] * 3
    assert store.samples["case_id"][0] == "NA"


def test_subject_ids_are_the_patients(tmp_path: Path) -> None:
    """``subject_ids``: a longitudinal store's subjects (an empty cell: the case itself); without
    the column, the case ids."""
    images, labels, rows = _data(4, (4, 4))
    rows = [dict(r, case_id=f"c{i}", subject_id=s) for i, (r, s) in enumerate(zip(rows, ["A", "A", "", "B"]))]
    store = _write(tmp_path / "s", images, labels, rows, pieces=())
    assert store.subject_ids().tolist() == ["A", "A", "c2", "B"]
    assert store.samples["subject_id"].tolist() == ["A", "A", "c2", "B"]
    assert store.subject_ids([3, 0]).tolist() == ["B", "A"]
    plain = _write(tmp_path / "p", *_data(3, (4, 4)), pieces=())
    assert plain.subject_ids().tolist() == plain.samples["case_id"].tolist()


def test_zarr_opens_the_store(tmp_path: Path) -> None:
    images, labels, rows = _data(9, (6, 5))
    _write(tmp_path / "s", images, labels, rows)
    group = zarr.open_group(tmp_path / "s", mode="r")
    np.testing.assert_array_equal(group["image"][:], images)
    np.testing.assert_array_equal(group["label"][:], labels)
    assert group["image"].chunks == (4, 4, 6, 5) and group["label"].chunks == (4, 6, 5)
    assert group.attrs["synthmed"]["n"] == 9
    assert isinstance(zarr.open(tmp_path / "s", mode="r"), zarr.Group)


def test_default_chunking_fits_a_few_mib() -> None:
    assert default_chunk_samples((4, 256, 256)) == 8  # 1 MiB samples → 8 MiB chunks
    assert default_chunk_samples((4, 128, 128)) == 32
    assert default_chunk_samples((4, 155, 240, 240)) == 1  # a 3D BraTS volume is > 8 MiB


def test_split_indices(tmp_path: Path) -> None:
    images, labels, rows = _data(10, (4, 4))
    store = _write(tmp_path / "s", images, labels, rows)
    np.testing.assert_array_equal(store.indices(), np.arange(10))
    np.testing.assert_array_equal(store.indices("test"), [2, 5, 8])
    np.testing.assert_array_equal(store.indices("train"), [0, 1, 3, 4, 6, 7, 9])
    assert store.splits == ("test", "train")
    with pytest.raises(DataError, match="'val'.*splits present"):
        store.indices("val")


def test_read_any_indices(tmp_path: Path) -> None:
    images, labels, rows = _data(14, (4, 3))
    store = _write(tmp_path / "s", images, labels, rows)
    for idx in ([13, 0, 5, 5, 4, -1], [7], np.array([9, 8, 1]), slice(3, 12, 4), []):
        got_images, got_labels = store.read(idx)
        expected = np.arange(14)[idx]
        np.testing.assert_array_equal(got_images, images[expected])
        np.testing.assert_array_equal(got_labels, labels[expected])
    with pytest.raises(IndexError):
        store.read([14])


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the chunk index of every image-chunk decode."""
    calls: list[int] = []
    original = ChunkReader.read_into

    def read_into(self, k, out):  # type: ignore[no-untyped-def]
        if out.dtype == np.float32:
            calls.append(k)
        return original(self, k, out)

    monkeypatch.setattr(ChunkReader, "read_into", read_into)
    return calls


@pytest.mark.parametrize("batch_size", [1, 3, 4, 8, 100])
def test_iter_batches_covers_every_sample_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    images, labels, rows = _data(15, (5, 4))
    store = _write(tmp_path / "s", images, labels, rows)
    decodes = _count_decodes(monkeypatch)
    seen = []
    for batch_images, batch_labels, idx in store.iter_batches(batch_size):
        assert 1 <= len(idx) <= batch_size and idx.dtype == np.int64
        np.testing.assert_array_equal(batch_images, images[idx])
        np.testing.assert_array_equal(batch_labels, labels[idx])
        seen.extend(idx.tolist())
    assert seen == list(range(15))
    assert decodes == [0, 1, 2, 3]  # each chunk decoded exactly once

    subset = store.indices("test")
    got = np.concatenate([idx for _, _, idx in store.iter_batches(2, subset)])
    np.testing.assert_array_equal(got, subset)


def test_dataset_items_match_read(tmp_path: Path) -> None:
    images, labels, rows = _data(15, (5, 4))
    store = _write(tmp_path / "s", images, labels, rows)
    ds = store.dataset("test")
    assert len(ds) == 5
    for i, j in enumerate(store.indices("test")):
        image, label = ds[i]
        assert image.dtype == torch.float32 and label.dtype == torch.uint8
        assert tuple(image.shape) == (4, 5, 4) and tuple(label.shape) == (5, 4)
        ref_image, ref_label = store.read([j])
        np.testing.assert_array_equal(image.numpy(), ref_image[0])
        np.testing.assert_array_equal(label.numpy(), ref_label[0])
    assert store.dataset(indices=[3, 1], long_labels=True)[1][1].dtype == torch.int64
    with pytest.raises(ValueError):
        store.dataset("test", indices=[1])

    # batched fetching through a DataLoader, in the parent and in (forked/pickled) workers
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(store.dataset(), batch_size=4, num_workers=workers)
        got_images = torch.cat([b[0] for b in loader]).numpy()
        got_labels = torch.cat([b[1] for b in loader]).numpy()
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)

    clone = pickle.loads(pickle.dumps(ds))
    assert clone._chunk_cache is None and clone.store._arrays is None
    np.testing.assert_array_equal(clone[4][0].numpy(), images[14])


def test_dataset_decodes_each_chunk_once_in_chunk_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels, rows = _data(15, (5, 4))
    store = _write(tmp_path / "s", images, labels, rows)
    decodes = _count_decodes(monkeypatch)
    ds = store.dataset()
    sampler = ChunkShuffleSampler(ds, seed=3)
    for i in sampler:
        np.testing.assert_array_equal(ds[i][0].numpy(), images[i])
    assert sorted(decodes) == [0, 1, 2, 3]


def test_image_dataset_reads_images_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items are (image, empty label); only image chunks are decoded, each once per run of its
    items; it streams through batch_stream and pickles without its reader."""
    from synthmed.training import batch_stream

    images, labels, rows = _data(15, (5, 4))
    store = _write(tmp_path / "s", images, labels, rows)
    decoded: list[tuple[int, str]] = []
    original = ChunkReader.read_into

    def read_into(self, k, out):  # type: ignore[no-untyped-def]
        decoded.append((k, out.dtype.name))
        return original(self, k, out)

    monkeypatch.setattr(ChunkReader, "read_into", read_into)
    ds = ImageDataset(store, store.indices("train"))
    image, empty = ds[3]
    assert image.dtype == torch.float32 and tuple(empty.shape) == (0,) and empty.dtype == torch.uint8
    np.testing.assert_array_equal(image.numpy(), images[store.indices("train")[3]])
    got, none = ds.fetch([9, 0, 1, 2])  # runs of chunks 3, 0, 0, 0 (chunks of 4 samples)
    np.testing.assert_array_equal(got.numpy(), images[store.indices("train")[[9, 0, 1, 2]]])
    assert tuple(none.shape) == (4, 0) and ds.item_nbytes == 4 * 4 * 5 * 4
    assert decoded == [(1, "float32"), (3, "float32"), (0, "float32")]
    batch, empties = next(batch_stream(ds, 4, seed=1))
    assert tuple(batch.shape) == (4, 4, 5, 4) and tuple(empties.shape) == (4, 0)
    assert {name for _, name in decoded} == {"float32"}  # the label array was never read
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._reader is None and clone._buffer is None
    np.testing.assert_array_equal(clone[0][0].numpy(), images[0])


def test_chunk_shuffle_sampler(tmp_path: Path) -> None:
    images, labels, rows = _data(30, (2, 2))
    store = _write(tmp_path / "s", images, labels, rows)
    ds = store.dataset("train")  # 20 samples spread over 8 chunks
    sampler = ChunkShuffleSampler(ds, seed=7)
    first = list(sampler)
    assert sorted(first) == list(range(len(ds))) and len(sampler) == len(ds)
    assert list(ChunkShuffleSampler(ds, seed=7)) == first  # deterministic per seed and epoch
    assert list(ChunkShuffleSampler(ds, seed=8)) != first
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == sorted(first)
    sampler.set_epoch(0)
    assert list(sampler) == first
    # each chunk's samples come out consecutively
    chunks = ds.chunk_ids[second]
    runs = [int(c) for i, c in enumerate(chunks) if i == 0 or c != chunks[i - 1]]
    assert len(runs) == len(set(runs)) == len(np.unique(ds.chunk_ids))
    assert runs != sorted(runs) or list(ChunkShuffleSampler(ds, seed=9)) != first


def test_exception_inside_with_leaves_nothing(tmp_path: Path) -> None:
    images, labels, rows = _data(6, (4, 4))
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(tmp_path / "s", dims=2, channels="abcd", sample_shape=(4, 4, 4), spacing=(1, 1, 1),
                         normalisation={}, provenance={}, synthetic=True, chunk_samples=2) as writer:
            writer.append(images, labels, rows)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_path_needs_overwrite(tmp_path: Path) -> None:
    images, labels, rows = _data(6, (4, 4))
    _write(tmp_path / "s", images, labels, rows)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputExistsError, match=str(tmp_path / "s")):
        StoreWriter(tmp_path / "s", dims=2, channels="abcd", sample_shape=(4, 4, 4), spacing=(1, 1, 1),
                    normalisation={}, provenance={}, synthetic=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

    # a failed overwrite keeps the old store
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "s", dims=2, channels="abcd", sample_shape=(4, 4, 4), spacing=(1, 1, 1),
                         normalisation={}, provenance={}, synthetic=True, overwrite=True) as writer:
            writer.append(images[:2], labels[:2], rows[:2])
            raise RuntimeError("boom")
    assert len(Store.open(tmp_path / "s")) == 6

    new = _write(tmp_path / "s", images[:2], labels[:2], rows[:2], overwrite=True, synthetic=True)
    assert len(new) == 2 and Store.open(tmp_path / "s").synthetic is True
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporaries left


def test_append_validates(tmp_path: Path) -> None:
    images, labels, rows = _data(2, (4, 4))
    with StoreWriter(tmp_path / "s", dims=2, channels="abcd", sample_shape=(4, 4, 4), spacing=(1, 1, 1),
                     normalisation={}, provenance={}, synthetic=True) as writer:
        with pytest.raises(ValueError, match="float32"):
            writer.append(images.astype(np.float64), labels, rows)
        with pytest.raises(ValueError, match="uint8"):
            writer.append(images, labels.astype(np.int64), rows)
        with pytest.raises(ValueError, match="images must be"):
            writer.append(images[:, :3], labels, rows)
        with pytest.raises(ValueError, match="labels must have shape"):
            writer.append(images, labels[:, :3], rows)
        with pytest.raises(ValueError, match="1 rows for 2 samples"):
            writer.append(images, labels, rows[:1])
        with pytest.raises(ValueError, match="split"):
            writer.append(images, labels, [{k: v for k, v in r.items() if k != "split"} for r in rows])
        bad = images.copy()
        bad[0, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            writer.append(bad, labels, rows)
        writer.append(images, labels, rows)
    assert len(Store.open(tmp_path / "s")) == 2
    with pytest.raises(ValueError):
        StoreWriter(tmp_path / "t", dims=2, channels="abc", sample_shape=(4, 4, 4), spacing=(1, 1, 1),
                    normalisation={}, provenance={}, synthetic=True)
    with pytest.raises(ValueError):
        StoreWriter(tmp_path / "t", dims=3, channels="abcd", sample_shape=(4, 4, 4), spacing=(1, 1, 1),
                    normalisation={}, provenance={}, synthetic=True)
    assert not (tmp_path / "t").exists()


def _corrupt(path: Path, what: str) -> None:
    meta_file = path / "store.json"
    meta = json.loads(meta_file.read_text())
    if what == "json":
        meta_file.write_text("{not json")
    elif what == "format":
        meta_file.write_text(json.dumps(dict(meta, format="other")))
    elif what == "version":
        meta_file.write_text(json.dumps(dict(meta, format_version=99)))
    elif what == "n":
        meta_file.write_text(json.dumps(dict(meta, n=meta["n"] + 1)))
    elif what == "shape":
        meta_file.write_text(json.dumps(dict(meta, sample_shape=[4, 4, 5])))
    elif what == "rows":
        table = pd.read_csv(path / "samples.csv")
        table.iloc[:-1].to_csv(path / "samples.csv", index=False)
    elif what == "columns":
        pd.read_csv(path / "samples.csv").drop(columns="split").to_csv(path / "samples.csv", index=False)
    elif what == "array":
        import shutil

        shutil.rmtree(path / "label")


@pytest.mark.parametrize("what", ["json", "format", "version", "n", "shape", "rows", "columns", "array"])
def test_open_errors_name_the_path(tmp_path: Path, what: str) -> None:
    images, labels, rows = _data(6, (4, 4))
    _write(tmp_path / "s", images, labels, rows)
    _corrupt(tmp_path / "s", what)
    with pytest.raises(DataError) as info:
        Store.open(tmp_path / "s")
    assert str(tmp_path / "s") in str(info.value)


def test_open_missing_or_not_a_store(tmp_path: Path) -> None:
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(DataError) as info:
            Store.open(path)
        assert str(path) in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        Store.open(tmp_path / "file")


def _peak_streaming(path: Path, n: int) -> tuple[int, int]:
    """(peak traced bytes while writing, peak while streaming) a store of n 8 KiB samples."""
    images, labels, rows = _data(16, (32, 32), c=2)
    tracemalloc.start()
    with StoreWriter(path, dims=2, channels="ab", sample_shape=(2, 32, 32), spacing=(1, 1, 1),
                     normalisation={}, provenance={}, synthetic=True, chunk_samples=8) as writer:
        for start in range(0, n, 16):
            writer.append(images, labels, [dict(r, slice=start + i) for i, r in enumerate(rows)])
    write_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    store = Store.open(path)
    tracemalloc.start()
    total = 0
    for batch_images, _, _ in store.iter_batches(4):
        total += float(batch_images.sum())
    ds = store.dataset()
    for i in range(len(ds)):
        ds[i]
    read_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return write_peak, read_peak


def test_memory_does_not_grow_with_n(tmp_path: Path) -> None:
    small = _peak_streaming(tmp_path / "small", 64)
    large = _peak_streaming(tmp_path / "large", 256)
    large_bytes = 256 * (2 * 4 + 1) * 32 * 32  # 2.3 MB of image + label
    for a, b in zip(small, large):
        assert b < a + 0.1 * large_bytes, (small, large)  # 4x the samples, (nearly) same peak
        assert b < 0.5 * large_bytes, (small, large)  # never the whole array


def test_store_pickles(tmp_path: Path) -> None:
    images, labels, rows = _data(6, (4, 4))
    store = _write(tmp_path / "s", images, labels, rows)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read([5])[0][0], images[5])


def test_store_rechunked_by_another_tool_reads_the_same(tmp_path: Path) -> None:
    """Labels chunked differently from images (e.g. rewritten with zarr) fall back to zarr reads."""
    images, labels, rows = _data(11, (4, 4))
    _write(tmp_path / "s", images, labels, rows)
    group = zarr.open_group(tmp_path / "s", mode="r+")
    del group["label"]
    group.create_array("label", data=labels, chunks=(3, 2, 4))
    store = Store.open(tmp_path / "s")
    got = np.concatenate([b[1] for b in store.iter_batches(5)])
    np.testing.assert_array_equal(got, labels)
    np.testing.assert_array_equal(store.read([10, 0])[1], labels[[10, 0]])
    np.testing.assert_array_equal(store.read([10, 0])[0], images[[10, 0]])
