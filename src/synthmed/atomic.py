"""Atomic writes: a file or folder that exists under its final name is complete.

Both helpers write into a hidden temporary sibling and rename it into place on success;
on any error (SIGINT and SIGTERM included, see :mod:`synthmed.interrupts`) the temporary is
removed and nothing that existed before is touched.

A temporary's name says whose it is: ``.<id>.<host>.<pid>-tmp-<name>`` (``-old-`` for the
previous version of a folder being swapped out). A process killed outright (``kill -9``)
cannot clean up; :func:`remove_stale` removes what such a process left, and the next run of
the same command calls it (through :func:`synthmed.outputs.guard_output`, or when a run
directory or study folder is opened): a temporary whose process is gone on this host is
removed, an ``-old-`` folder whose replacement never arrived is put back.

A full disk or a read-only or forbidden place (``ENOSPC``, ``EROFS``, ``EACCES``, …) becomes a
:class:`~synthmed.errors.FileSystemError` naming the output.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthmed.errors import OutputExistsError, reraise_naming
from synthmed.interrupts import deferred
from synthmed.locks import LOCK_FILE, pid_alive, this_host

#: ``.<id>[.<host>.<pid>]-<tmp|old>-<name>``; names without an owner come from older versions.
TEMP_NAME = re.compile(r"^\.(?P<id>[0-9a-f]{8})(?:\.(?P<host>[0-9a-f]{6})\.(?P<pid>\d+))?-(?P<tag>tmp|old)-(?P<name>.+)$")


def _sibling(path: Path, tag: str) -> Path:
    """A hidden sibling of ``path`` that keeps its suffixes (nibabel picks gzip by suffix)."""
    return path.with_name(f".{uuid.uuid4().hex[:8]}.{this_host()}.{os.getpid()}-{tag}-{path.name}")


def is_empty_dir(path: Path) -> bool:
    """A folder holding nothing but (perhaps) a lock file: replacing it loses nothing."""
    try:
        return path.is_dir() and not path.is_symlink() and all(p.name == LOCK_FILE for p in path.iterdir())
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(folder: str | Path, name: str | None = None, *, ownerless: bool = False) -> list[Path]:
    """Clean up after writers that were killed: the temporaries in ``folder`` (of the output
    ``name`` only, if given) whose process is no longer alive on this host.

    A temporary is removed; an ``-old-`` folder (a previous version being swapped out) is
    renamed back to its name if that name is free, else removed. Temporaries without an owner
    in their name (older versions) are removed only with ``ownerless`` (the caller holds the
    folder's lock, so nobody else can be writing there).

    Returns:
        The paths removed or restored.
    """
    folder = Path(folder)
    done: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if match["pid"] is None:
            if not ownerless:
                continue
        elif match["host"] != this_host() or pid_alive(int(match["pid"])):
            continue
        path = folder / entry.name
        target = folder / match["name"]
        if match["tag"] == "old" and not os.path.lexists(target):
            os.replace(path, target)
        else:
            _remove(path)
        done.append(path)
    return done


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
        reraise_naming(exc, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``path``.

    An existing empty folder is replaced without ``overwrite`` (nothing is lost).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (checked before any
            work is done).
    """
    path = Path(path)
    if os.path.lexists(path) and not overwrite and not is_empty_dir(path):
        raise OutputExistsError(path)
    tmp = _sibling(path, "tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as exc:
        reraise_naming(exc, path)
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reraise_naming(exc, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        publish_directory(tmp, path, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_directory(folder: str | Path, path: str | Path, *, overwrite: bool = False) -> None:
    """Rename the complete ``folder`` to ``path`` (same file system), replacing what is there
    only with ``overwrite`` (or if it is an empty folder); the previous version goes through an
    ``-old-`` sibling and is removed after the swap. ``folder`` is left in place on failure.

    :func:`atomic_directory` ends with this; a resumable job that builds its output in a
    working folder of its own publishes it with it.

    Raises:
        OutputExistsError: ``path`` exists (and is not an empty folder) without ``overwrite``.
    """
    folder, path = Path(folder), Path(path)
    old = None
    try:
        with deferred():  # a signal between the two renames would leave the old version hidden
            if os.path.lexists(path):
                if not overwrite and not is_empty_dir(path):
                    raise OutputExistsError(path)
                old = _sibling(path, "old")
                os.replace(path, old)
            os.replace(folder, path)
    except OSError as exc:
        reraise_naming(exc, path)
    if old is not None:
        _remove(old)
