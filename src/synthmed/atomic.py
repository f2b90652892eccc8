"""Atomic writes: a file or folder that exists under its final name is complete.

Both helpers write into a hidden temporary sibling and rename it into place on success;
on any error the temporary is removed and nothing that existed before is touched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthmed.errors import OutputExistsError


def _sibling(path: Path, tag: str) -> Path:
    """A hidden sibling of ``path`` that keeps its suffixes (nibabel picks gzip by suffix)."""
    return path.with_name(f".{uuid.uuid4().hex[:8]}-{tag}-{path.name}")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        os.replace(tmp, path)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputExistsError(path)
        old = _sibling(path, "old")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
