"""Processes as the tests see them: children of a pid and whether a pid still lives (psutil if
installed, else /proc), a real `python -m synthmed` started in the background, and one run on
two gloo processes through torchrun."""

from __future__ import annotations

import os
import socket
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


def torchrun(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """``python -m synthmed ARGS`` on ``processes`` CPU processes (torchrun, gloo, a free port),
    output captured. ``PYTHONFAULTHANDLER`` is set, so a rank that aborts prints its Python stack."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                           "--master-port", str(port), "-m", "synthmed", *args],
                          capture_output=True, text=True, env={**ENV, "PYTHONFAULTHANDLER": "1"})
