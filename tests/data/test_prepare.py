import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import zarr

from synthmed.config import PrepareConfig
from synthmed.data.phantom import write_phantom
from synthmed.data.prepare import prepare, split_cases
from synthmed.data.store import Store
from synthmed.errors import DataError, OutputExistsError

SHAPE = (32, 40, 40)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "brats"
    write_phantom(out, cases=5, seed=3, shape=SHAPE, progress=False)
    return out


def test_split_is_by_subject_seeded_and_never_empty():
    ids = [f"case{i}" for i in range(10)]
    split = split_cases(ids, 0.3, seed=1)
    assert sorted(split) == ids
    assert sum(v == "test" for v in split.values()) == 3
    assert split == split_cases(list(reversed(ids)), 0.3, seed=1)
    assert split != split_cases(ids, 0.3, seed=2)
    assert list(split_cases(ids[:2], 0.01, seed=0).values()).count("test") == 1
    assert set(split_cases(ids, 0.0, seed=0).values()) == {"train"}


def test_prepare_2d_writes_a_complete_store(phantom, tmp_path):
    result = prepare(phantom, tmp_path / "s", PrepareConfig(size=24, test_fraction=0.2), progress=False)
    store = result.store
    assert result.layout == "brats" and result.cases == {"train": 4, "test": 1}
    assert store.dims == 2 and list(store.channels) == ["t1", "t1ce", "t2", "flair"]
    images, labels = store.read(slice(0, len(store)))
    assert images.shape == (len(store), 4, 24, 24) and labels.shape == (len(store), 24, 24)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and {1, 2, 3} <= set(np.unique(labels))
    table = store.samples
    per_case = table.groupby("case_id")["split"].nunique()
    assert (per_case == 1).all(), "a case must be in exactly one split"
    assert len(store.indices("train")) + len(store.indices("test")) == len(store)
    provenance = store.meta["provenance"]
    assert provenance["layout"] == "brats" and len(provenance["source_hash"]) == 64
    assert provenance["skipped"] == []
    assert not store.synthetic
    group = zarr.open_group(str(tmp_path / "s"), mode="r")
    assert group["image"].shape == images.shape


def test_workers_do_not_change_the_store(phantom, tmp_path):
    one = prepare(phantom, tmp_path / "a", PrepareConfig(size=16), progress=False).store
    two = prepare(phantom, tmp_path / "b", PrepareConfig(size=16, workers=2), progress=False).store
    for x, y in zip(one.read(slice(0, len(one))), two.read(slice(0, len(two)))):
        np.testing.assert_array_equal(x, y)
    assert one.samples.equals(two.samples)
    assert one.meta["provenance"]["source_hash"] == two.meta["provenance"]["source_hash"]


def test_prepare_3d_gives_one_volume_per_case(phantom, tmp_path):
    store = prepare(phantom, tmp_path / "v", PrepareConfig(dims=3, size=16), progress=False).store
    assert store.dims == 3 and len(store) == 5
    assert store.read([0])[0].shape == (1, 4, 16, 16, 16)
    assert (store.samples["slice"] == -1).all()


def _corrupt_copy(phantom, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(phantom, bad)
    target = bad / "BraTS2021_00002" / "BraTS2021_00002_t2.nii.gz"
    target.write_bytes(target.read_bytes()[:200])
    return bad


def test_bad_case_stops_and_leaves_nothing(phantom, tmp_path):
    bad = _corrupt_copy(phantom, tmp_path)
    with pytest.raises(DataError, match=r"BraTS2021_00002.*BraTS2021_00002_t2\.nii\.gz"):
        prepare(bad, tmp_path / "out", PrepareConfig(size=16), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_skip_bad_records_the_skipped_case(phantom, tmp_path):
    bad = _corrupt_copy(phantom, tmp_path)
    result = prepare(bad, tmp_path / "out", PrepareConfig(size=16, skip_bad=True), progress=False)
    assert [s["case"] for s in result.skipped] == ["BraTS2021_00002"]
    assert "t2" in result.skipped[0]["reason"]
    assert "BraTS2021_00002" not in set(result.store.samples["case_id"])
    assert result.store.meta["provenance"]["skipped"] == result.skipped


def test_existing_store_needs_overwrite(phantom, tmp_path):
    prepare(phantom, tmp_path / "s", PrepareConfig(size=16), progress=False)
    with pytest.raises(OutputExistsError):
        prepare(phantom, tmp_path / "s", PrepareConfig(size=20), progress=False)
    assert Store.open(tmp_path / "s").sample_shape[-1] == 16
    prepare(phantom, tmp_path / "s", PrepareConfig(size=20), overwrite=True, progress=False)
    assert Store.open(tmp_path / "s").sample_shape[-1] == 20


def test_cli_prepare_then_inspect(phantom, tmp_path):
    store = tmp_path / "store"
    run = [sys.executable, "-m", "synthmed", "data"]
    done = subprocess.run([*run, "prepare", str(phantom), str(store), "--size", "16"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and store.exists()
    shown = subprocess.run([*run, "inspect", str(store), "--json", "--samples", "3"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary["samples"] == len(Store.open(store))
    assert set(summary["splits"]) == {"train", "test"}
    grid = matplotlib.image.imread(summary["grid"])
    assert grid.ndim == 3 and grid.shape[0] > 100
    again = subprocess.run([*run, "prepare", str(phantom), str(store)], capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
