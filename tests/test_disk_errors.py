"""A full disk, a read-only place or a forbidden one: one red line naming the path, exit 2.

The errors are injected (ENOSPC, EROFS, EACCES raised where the real write would fail), since a
size-limited file system cannot be mounted in every test environment.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from cli_inprocess import invoke
from synthmed.cli import main


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    code, _, err = invoke(monkeypatch, capsys, *args)
    return code, err


def one_red_line(code: int, err: str) -> str:
    """The error line; a progress bar's last frame (phantom has no --no-progress) may precede it."""
    lines = [line for line in err.splitlines() if line.strip() and " eta " not in line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return " ".join(lines[0].split())


def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], list(folder.iterdir())


def test_disk_full_in_phantom_and_prepare(tmp_path, monkeypatch, capsys):
    import synthmed.data.phantom.writer as phantom
    from synthmed.data.store import StoreWriter

    real_write = phantom.write_brats_case
    monkeypatch.setattr(phantom, "write_brats_case", full)
    line = one_red_line(*cli(monkeypatch, capsys, "data", "phantom", str(tmp_path / "ph"), "--cases", "2",
                             "--shape", "16", "24", "24"))
    assert line == f"error: {tmp_path / 'ph'}: cannot write: no space left on the device"
    assert not (tmp_path / "ph").exists()
    monkeypatch.setattr(phantom, "write_brats_case", real_write)
    code, err = cli(monkeypatch, capsys, "data", "phantom", str(tmp_path / "ph"), "--cases", "2", "--shape", "16",
                    "24", "24")
    assert code == 0, err
    monkeypatch.setattr(StoreWriter, "_flush", full)
    line = one_red_line(*cli(monkeypatch, capsys, "data", "prepare", str(tmp_path / "ph"), str(tmp_path / "store"),
                             "--size", "16", "--test-fraction", "0.5"))
    assert line == f"error: {tmp_path / 'store'}: cannot write: no space left on the device"
    assert not (tmp_path / "store").exists()
    no_leftovers(tmp_path)


def test_disk_full_in_train_and_sample(store2d, tmp_path, monkeypatch, capsys):
    import synthmed.training.checkpoint as checkpoint
    from synthmed.data.store import StoreWriter

    train = ["--steps", "2", "--batch", "2", "--train-timesteps", "100", "--device", "cpu", "--no-progress"]
    real_save = checkpoint.save_file

    def full_at(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(checkpoint, "save_file", full_at)
    run = tmp_path / "run"
    line = one_red_line(*cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(run), *train))
    assert line == f"error: {run / 'checkpoints' / 'step_00000002'}: cannot write: no space left on the device"
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    code, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(run), "--overwrite", *train)
    assert code == 0, err
    monkeypatch.setattr(StoreWriter, "_flush", full)
    line = one_red_line(*cli(monkeypatch, capsys, "generator", "sample", str(run), str(tmp_path / "syn"), "--n", "2",
                             "--steps", "2", "--device", "cpu", "--no-progress"))
    assert line == f"error: {tmp_path / 'syn'}: cannot write: no space left on the device"
    no_leftovers(tmp_path)


def test_read_only_or_forbidden_output_beside_the_input(store2d, tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    def read_only(self, fname, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", read_only)
    line = one_red_line(*cli(monkeypatch, capsys, "data", "inspect", str(store2d.path)))
    assert line == f"error: {store2d.path.with_name('s2d-samples.png')}: cannot write: read-only file system"

    def forbidden(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/locked")

    import synthmed.data.store as store

    monkeypatch.setattr(store.Store, "open", forbidden)  # an error no atomic writer wraps: main() names the path
    line = one_red_line(*cli(monkeypatch, capsys, "data", "inspect", str(store2d.path)))
    assert line == "error: /somewhere/locked: permission denied"


def test_other_os_errors_stay_bugs(tmp_path, monkeypatch, capsys):
    import synthmed.data.store as store

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(store.Store, "open", broken)
    monkeypatch.setattr(sys, "argv", ["synthmed", "data", "inspect", str(tmp_path)])
    with pytest.raises(OSError, match="Input/output error"):
        main()
