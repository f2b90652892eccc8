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


def test_remove_stale_takes_only_what_dead_writers_left(tmp_path):
    import os
    import subprocess
    import sys

    from synthmed.atomic import remove_stale
    from synthmed.locks import this_host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = this_host()
    tmp_dead = tmp_path / f".0123abcd.{host}.{dead.pid}-tmp-store"
    tmp_live = tmp_path / f".0123abcd.{host}.{os.getpid()}-tmp-store"
    tmp_other = tmp_path / f".0123abcd.{host}.{dead.pid}-tmp-other"
    old_lost = tmp_path / f".0123abcd.{host}.{dead.pid}-old-run"  # killed between the two renames
    legacy = tmp_path / ".0123abcd-tmp-store"
    for p in (tmp_dead, tmp_live, tmp_other, old_lost, legacy):
        p.mkdir()
    (old_lost / "weights").write_text("w")
    assert sorted(remove_stale(tmp_path, "store")) == [tmp_dead]
    assert tmp_live.exists() and tmp_other.exists() and legacy.exists()
    remove_stale(tmp_path)
    assert not tmp_other.exists() and (tmp_path / "run" / "weights").read_text() == "w"  # put back
    remove_stale(tmp_path, ownerless=True)
    assert not legacy.exists() and tmp_live.exists()


def test_an_empty_folder_is_replaced_without_overwrite(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
