"""Stages keyed by content: a changed dataset re-plans its dependents; stages made by older code
are reported, not rerun."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from synthmed.cli import app
from synthmed.data import fingerprint
from synthmed.data.fingerprint import source_hash
from synthmed.data.phantom import write_phantom
from synthmed.study import build_spec, make_plan, run_study
from synthmed.study.plan import DONE_JSON, code_version


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    write_phantom(tmp_path / "ds", cases=3, seed=0, shape=(16, 24, 24), progress=False)
    return tmp_path / "ds"


def spec_for(dataset: Path):
    return build_spec({"name": "s", "data": {"path": str(dataset), "size": 16, "test_fraction": 0.34},
                       "train_sets": ["real"]})


def prepare_key(dataset: Path, out: Path | None = None) -> str:
    return make_plan(spec_for(dataset), out=out).by_kind("prepare")[0].key


def plan_output(dataset: Path, out: Path) -> str:
    (out.parent / "s.yaml").write_text(json.dumps({"name": "s", "data": {"path": str(dataset), "size": 16,
                                                                         "test_fraction": 0.34},
                                                   "train_sets": ["real"]}))
    result = CliRunner().invoke(app, ["study", "plan", str(out.parent / "s.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def pending(text: str) -> bool:
    """Whether ``study plan``'s tree shows a pending stage (not the counts table's column)."""
    return re.search(r"-[0-9a-f]{12} pending", text) is not None


def edit_label(dataset: Path, case: str) -> None:
    path = dataset / case / f"{case}_seg.nii.gz"
    img = nib.load(path)
    seg = np.asarray(img.dataobj).copy()
    seg[seg == 2] = 0  # edema removed
    nib.save(nib.Nifti1Image(seg, img.affine, img.header), path)


def test_edited_label_or_deleted_case_replans_and_study_plan_shows_it(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    first = run_study(spec_for(dataset), out, progress=False)
    assert [s.kind for s in first.executed] == ["prepare"]
    text = plan_output(dataset, out)
    assert "prepare" in text and not pending(text) and "dataset changed" not in text
    key = prepare_key(dataset, out)
    for path in dataset.rglob("*.nii.gz"):  # touching files changes nothing: the key is their content
        os.utime(path)
    assert prepare_key(dataset, out) == key

    edit_label(dataset, "BraTS2021_00001")
    edited = prepare_key(dataset, out)
    assert edited != key
    text = plan_output(dataset, out)
    assert pending(text) and f"the dataset changed since stage prepare-{key[:12]}" in text
    again = run_study(spec_for(dataset), out, progress=False)
    assert [s.kind for s in again.executed] == ["prepare"]  # the store is made again from the edited files

    shutil.rmtree(dataset / "BraTS2021_00002")
    deleted = prepare_key(dataset, out)
    assert deleted not in (key, edited)
    assert pending(plan_output(dataset, out))
    last = run_study(spec_for(dataset), out, progress=False)
    store = json.loads((out / "stages" / last.executed[0].name / "store" / "store.json").read_text())
    assert sum(store["provenance"]["cases"].values()) == 2


def test_source_hash_cache_rehashes_only_what_changed(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    for path in dataset.rglob("*"):
        os.utime(path, (1e9, 1e9))  # old files: their digests may be cached
    cache = tmp_path / "cache.json"
    full = source_hash(dataset, cache=cache)
    assert full == source_hash(dataset)  # the cache does not change the hash
    read: list[Path] = []
    digest = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: read.append(Path(p)) or digest(p))
    assert source_hash(dataset, cache=cache) == full and read == []  # a rerun reads metadata only
    edit_label(dataset, "BraTS2021_00000")
    changed = source_hash(dataset, cache=cache)
    assert changed != full and [p.name for p in read] == ["BraTS2021_00000_seg.nii.gz"]
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    assert source_hash(moved) == changed  # not where the dataset is


def test_source_hash_cache_serves_every_dataset_of_a_study(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "other"
    shutil.copytree(dataset, other)
    for path in [*dataset.rglob("*"), *other.rglob("*")]:
        os.utime(path, (1e9, 1e9))
    cache = tmp_path / "cache.json"
    hashes = [source_hash(dataset, cache=cache), source_hash(other, cache=cache)]
    read: list[Path] = []
    digest = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: read.append(Path(p)) or digest(p))
    # a second plan of the two-dataset study: one shared cache, nothing read again
    assert [source_hash(dataset, cache=cache), source_hash(other, cache=cache)] == hashes and read == []
    shutil.rmtree(other / "BraTS2021_00001")  # a deleted case's digests leave the cache
    source_hash(other, cache=cache)
    assert not any("/other/BraTS2021_00001/" in key for key in json.loads(cache.read_text()))


def test_stages_record_their_code_and_older_ones_are_reported_not_rerun(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    outcome = run_study(spec_for(dataset), out, progress=False)
    stage = outcome.executed[0]
    done_file = out / "stages" / stage.name / DONE_JSON
    done = json.loads(done_file.read_text())
    assert done["code"] == code_version()["code"] and done["synthmed_version"] == code_version()["synthmed_version"]
    assert "older code" not in plan_output(dataset, out)
    done_file.write_text(json.dumps({**done, "code": "0123456789abcdef"}))
    text = plan_output(dataset, out)
    assert "done (older code)" in text and "1 finished stages were made by other synthmed code" in text
    assert not pending(text)
    assert run_study(spec_for(dataset), out, progress=False).executed == []


def test_a_missing_dataset_is_planned_with_a_warning(tmp_path: Path) -> None:
    text = plan_output(tmp_path / "nowhere", tmp_path / "study")
    assert "warning:" in text and "nowhere" in text and pending(text)
