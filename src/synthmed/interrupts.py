"""SIGINT and SIGTERM as an exception, so that every ``with`` block cleans up on the way out.

The CLI (:func:`synthmed.cli.main`) runs under :func:`handle_signals`: either signal raises
:class:`Interrupted` in the main thread, which unwinds through the atomic writers (their
hidden temporaries are removed), the process pools (their workers are stopped) and the run
locks (released), and ends as one line naming the command that continues the work
(:func:`resume_hint`) and exit code ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).

:class:`Interrupted` derives from :class:`BaseException`, not :class:`KeyboardInterrupt`:
click turns a ``KeyboardInterrupt`` into "Aborted!" and exit 1 before we could see it, and
``except Exception`` blocks must not swallow it. A few steps must not be cut in two (swapping
a finished folder into place): they run inside :func:`deferred`, and a signal arriving then
is raised when the block ends.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: commands that continue an interrupted run with ``--resume`` (and never with ``--overwrite``).
RESUME_FLAG = {("generator", "train"), ("segment", "train"), ("classify", "train"), ("progression", "fit")}
#: commands whose rerun continues where the interrupted one stopped (finished stages are kept; for
#: ``progression predict`` and ``evaluate``: the baselines' projection batches and baseline classifier
#: checkpoints in the run, their outputs being written only at the end).
CONTINUES = {("study", "run"), ("demo",), ("progression", "predict"), ("progression", "evaluate")}


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(signal.Signals(self.signum).name)


_state = {"depth": 0, "pending": None}


def _handler(signum: int, frame: object) -> None:
    if _state["depth"]:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` inside the block (main thread only;
    elsewhere a no-op); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold back :class:`Interrupted` until the block ends (for steps that must not be cut in two)."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if not _state["depth"] and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            raise Interrupted(signum)


def _command(args: Sequence[str]) -> tuple[str, ...]:
    """The (sub)command words of ``args``: the leading words that are not options."""
    words: list[str] = []
    for arg in args:
        if arg.startswith("-"):
            if words:
                break
            continue  # a global option such as --debug
        words.append(arg)
        if len(words) == 2 or tuple(words) in CONTINUES:
            break
    return tuple(words)


def resume_hint(args: Sequence[str]) -> str:
    """The line printed when the command ``synthmed ARGS`` is interrupted.

    Training runs resume from their last checkpoint (``--resume`` added, ``--overwrite``
    dropped); a study or the demo continues at its first unfinished stage when run again;
    every other command writes its output atomically, so nothing was written and running it
    again starts over.
    """
    command = _command(args)
    args = list(args)
    if command in RESUME_FLAG:
        args = [a for a in args if a != "--overwrite"]
        if "--resume" not in args:
            args.append("--resume")
        return f"interrupted; resume with: {shlex.join(['synthmed', *args])}"
    if command in CONTINUES:
        return f"interrupted; finished stages are kept; resume with: {shlex.join(['synthmed', *args])}"
    return f"interrupted; nothing was written; run again with: {shlex.join(['synthmed', *args])}"
