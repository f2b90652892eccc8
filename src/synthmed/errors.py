"""Errors a user can act on.

Anything raised as a :class:`SynthmedError` is the user's to fix (a bad file, a missing
option, an output that already exists). The CLI prints its message as one red line and
exits with :attr:`SynthmedError.exit_code` (2); every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import NoReturn

#: ``OSError`` numbers that are the user's to fix (a full disk, a read-only or forbidden
#: place), with how they are worded.
FILE_SYSTEM_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class SynthmedError(Exception):
    """An error caused by the user's input; the message says what is wrong and where."""

    exit_code: int = 2


class DataError(SynthmedError):
    """Input data that cannot be used: unreadable, inconsistent or out of range.

    Args:
        message: what is wrong.
        path: the file or folder at fault; prefixed to the message.
        case: the case id at fault, if known; prefixed to the message.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, case: str | None = None):
        self.reason = message
        self.path = None if path is None else Path(path)
        self.case = case
        where = []
        if case is not None:
            where.append(f"case {case}")
        if path is not None:
            where.append(str(path))
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class OutputExistsError(SynthmedError):
    """The output path exists and ``--overwrite`` was not given; ``detail`` follows the path."""

    def __init__(self, path: str | Path, detail: str = "already exists; pass --overwrite to replace it"):
        super().__init__(f"{path} {detail}")


class FileSystemError(SynthmedError):
    """The disk is full, or a place is read-only or forbidden: one line naming the path."""


def file_system_error(exc: OSError, output: str | Path | None = None) -> FileSystemError | None:
    """The :class:`FileSystemError` for ``exc`` when its errno is in :data:`FILE_SYSTEM_ERRNOS`, else ``None``.

    Args:
        exc: the error.
        output: what was being written, if known: named instead of a hidden temporary file
            inside it (``exc.filename``), which says nothing to the user.
    """
    what = FILE_SYSTEM_ERRNOS.get(getattr(exc, "errno", None) or -1)
    if what is None:
        return None
    name = exc.filename
    hidden = name is not None and any(part.startswith(".") and "-tmp-" in part for part in Path(str(name)).parts)
    if output is not None and (name is None or hidden):
        return FileSystemError(f"{output}: cannot write: {what}")
    if output is not None and Path(str(name)) != Path(output):
        return FileSystemError(f"{name}: {what} (writing {output})")
    if name is not None:
        return FileSystemError(f"{name}: {what}")
    return FileSystemError(f"{what} ({exc.strerror or exc})")


def reraise_naming(exc: OSError, output: str | Path) -> NoReturn:
    """Raise ``exc`` as the :class:`FileSystemError` naming ``output`` when it is one
    (:func:`file_system_error`), else as it is."""
    error = file_system_error(exc, output)
    if error is None:
        raise exc
    raise error from None
