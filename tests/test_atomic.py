import pytest

from synthmed.atomic import atomic_directory, atomic_file
from synthmed.errors import OutputExistsError


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_file(target) as tmp:
        assert tmp.name.endswith("out.txt") and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_directory_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "store"
    with pytest.raises(ValueError):
        with atomic_directory(target) as tmp:
            (tmp / "a").write_text("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_refuses_existing_unless_overwrite(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "keep").write_text("keep")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_directory(target):
            pass
    assert (target / "keep").read_text() == "keep"
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
