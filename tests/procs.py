"""Processes as the tests see them: children of a pid and whether a pid still lives (psutil if
installed, else /proc), and a real `python -m synthmed` started in the background."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        import psutil

        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    except ImportError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> dict[int, str]:
    """pid → command line of the living children of ``pid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and alive(int(entry.name)):
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return out


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` every 0.1 s until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def start_cli(*args: str, cwd: str | Path | None = None) -> subprocess.Popen:
    """`python -m synthmed ARGS` in the background, stdout and stderr captured as text."""
    return subprocess.Popen([sys.executable, "-m", "synthmed", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=cwd)


def pool_workers(pid: int) -> dict[int, str]:
    """The multiprocessing children of ``pid``: spawn workers and the resource tracker."""
    return {p: cmd for p, cmd in children(pid).items() if "multiprocessing" in cmd}
