"""Atomic writes: a file or folder that exists under its final name is complete.

Both helpers write into a hidden temporary sibling and rename it into place on success;
on any error the temporary is removed and nothing that existed before is touched. A full
disk or a read-only or forbidden place (``ENOSPC``, ``EROFS``, ``EACCES``, …) becomes a
:class:`~synthmed.errors.FileSystemError` naming the output.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthmed.errors import OutputExistsError, file_system_error


def _sibling(path: Path, tag: str) -> Path:
    """A hidden sibling of ``path`` that keeps its suffixes (nibabel picks gzip by suffix)."""
    return path.with_name(f".{uuid.uuid4().hex[:8]}-{tag}-{path.name}")


def _reraise(exc: OSError, path: Path) -> None:
    """Raise ``exc`` as a :class:`~synthmed.errors.FileSystemError` naming ``path`` when it is one, else as is."""
    error = file_system_error(exc, path)
    if error is None:
        raise exc
    raise error from None


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _reraise(exc, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``path``.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (checked before any
            work is done).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    tmp = _sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        _reraise(exc, path)
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise(exc, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists() and not overwrite:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputExistsError(path)
    try:
        if path.exists():
            old = _sibling(path, "old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _reraise(exc, path)
