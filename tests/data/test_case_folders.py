"""BraTS case folders that are empty, hidden or hold unreadable links are errors naming them, not
silently skipped or called a missing modality."""

from __future__ import annotations

import os

import pytest

from synthmed.config import PrepareConfig
from synthmed.data.layouts import discover_cases
from synthmed.data.prepare import prepare
from synthmed.errors import DataError


def by_id(brats_dir):
    return {s.id: s for s in discover_cases(brats_dir, "brats")}


def test_empty_case_folder_is_an_error_and_skip_bad_lists_it(brats_dir, tmp_path):
    (brats_dir / "BraTS20_Training_999").mkdir()
    (brats_dir / "BraTS20_Training_999" / ".DS_Store").write_bytes(b"")
    sources = by_id(brats_dir)
    with pytest.raises(DataError, match=r"case BraTS20_Training_999, .*BraTS20_Training_999: empty case folder"):
        sources["BraTS20_Training_999"].load()
    with pytest.raises(DataError, match="empty case folder"):
        prepare(brats_dir, tmp_path / "store", PrepareConfig(size=16), progress=False)
    result = prepare(brats_dir, tmp_path / "store", PrepareConfig(size=16, skip_bad=True), progress=False)
    assert [s["case"] for s in result.skipped] == ["BraTS20_Training_999"]


def test_hidden_case_folder_is_an_error_but_other_hidden_folders_are_not(brats_dir):
    first = sorted(p for p in brats_dir.iterdir() if p.is_dir())[0]
    (brats_dir / ".git").mkdir()
    (brats_dir / ".git" / "HEAD").write_text("ref")
    first.rename(brats_dir / f".{first.name}")
    sources = by_id(brats_dir)
    assert ".git" not in sources and first.name not in sources
    with pytest.raises(DataError, match="a hidden case folder"):
        sources[f".{first.name}"].load()


@pytest.mark.parametrize("kind", ["loop", "broken"])
def test_unreadable_link_is_named_not_called_missing(brats_dir, kind):
    case = sorted(p for p in brats_dir.iterdir() if p.is_dir())[0]
    t1 = next(case.glob("*_t1.nii*"))
    t1.unlink()
    if kind == "loop":
        os.symlink(t1.name, t1)  # points at itself
    else:
        os.symlink(case / "nowhere.nii.gz", t1)
    with pytest.raises(DataError) as info:
        by_id(brats_dir)[case.name].load()
    message = str(info.value)
    assert "missing modality" not in message
    assert ("symbolic link loop" if kind == "loop" else "broken symbolic link") in message and t1.name in message


def test_test_fraction_zero_means_no_test_split_and_above_zero_at_least_one():
    """Documented in README (What prepare does): 0 keeps every case in train."""
    from synthmed.data.prepare import split_cases

    ids = [f"c{i}" for i in range(10)]
    assert set(split_cases(ids, 0.0, 0).values()) == {"train"}
    assert list(split_cases(ids, 0.01, 0).values()).count("test") == 1
