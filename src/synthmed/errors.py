"""Errors a user can act on.

Anything raised as a :class:`SynthmedError` is the user's to fix (a bad file, a missing
option, an output that already exists). The CLI prints its message as one red line and
exits with :attr:`SynthmedError.exit_code` (2); every other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
