"""Run locks: one writer at a time in a run directory or a study folder.

A writer holds an exclusive ``fcntl.flock`` on ``FOLDER/.lock`` for as long as it works
there, with its pid, host and command line written into the file for the message a second
writer gets. The kernel releases the lock when its holder dies, however it dies (``kill -9``
included), so a lock left by a dead process is simply taken over by the next writer. Where
``flock`` is unavailable (some network filesystems), the pid in the file decides: a lock
whose process is gone on this host is taken over; one held from another host is refused.

The lock file stays in the folder (removing it would race with a new holder); commands that
check whether a folder is empty, or only their own, ignore it (:data:`LOCK_FILE`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from synthmed.errors import SynthmedError

LOCK_FILE = ".lock"


def this_host() -> str:
    """A short tag of this machine's host name (6 hex digits), used to tell whose a pid is."""
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) said it exists
    return state not in ("Z", "X")


class LockedError(SynthmedError):
    """Another live process is writing in the folder."""


class FolderLock:
    """An exclusive lock on ``folder`` (created if missing), held until :meth:`release`.

    Use as a context manager, or keep the object and call :meth:`release` (garbage
    collection and process death release it too)::

        with FolderLock(run_dir, "run directory"):
            ...

    Raises:
        LockedError: a live process holds the lock (the message names it), at construction.
    """

    def __init__(self, folder: str | Path, what: str = "folder"):
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_FILE
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = None
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            if not self._flock(handle):
                holder = self._holder(handle)
                raise LockedError(f"{self.folder}: this {what} is in use by {self._describe(holder)}; wait for it "
                                  "to finish or stop it, then run again")
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": this_host(), "since": time.time(),
                                     "command": " ".join(sys.argv).replace("\n", " ")}) + "\n")
            handle.flush()
        except BaseException:
            handle.close()
            raise
        self._file = handle

    def _flock(self, handle: IO[str]) -> bool:
        """Take the kernel lock; False if another holder has it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._pid_free(handle)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return self._pid_free(handle)  # no flock on this filesystem
            raise
        return True

    def _pid_free(self, handle: IO[str]) -> bool:
        holder = self._holder(handle)
        if not holder or holder.get("pid") == os.getpid():
            return True
        if holder.get("host") != this_host():
            return False
        return not pid_alive(int(holder.get("pid", -1)))

    @staticmethod
    def _holder(handle: IO[str]) -> dict[str, Any]:
        handle.seek(0)
        try:
            value = json.loads(handle.read() or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        if not holder.get("pid"):
            return "another process"
        command = str(holder.get("command", "")).strip()
        where = "" if holder.get("host") == this_host() else " on another host"
        return f"process {holder['pid']}{where}" + (f" ({command[:120]})" if command else "")

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Release the lock (the file stays); a second call does nothing."""
        if self._file is not None:
            try:
                self._file.seek(0)
                self._file.truncate()  # no stale pid for filesystems without flock
            except OSError:
                pass
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
