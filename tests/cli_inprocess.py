"""Run the ``synthmed`` console entry point inside the test process (faster than a subprocess,
and the code under test shows in tracebacks and coverage)."""

from __future__ import annotations

import sys

import pytest

from synthmed.cli import main


def invoke(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run `synthmed ARGS`; return (exit code, stdout, stderr) as printed."""
    monkeypatch.setattr(sys, "argv", ["synthmed", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


def run(*args: str) -> int:
    """Run `synthmed ARGS` without the function-scoped fixtures (for module-scoped fixtures that
    share one run across a module's tests); return the exit code. Output is not captured."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exit_info:
        patch.setattr(sys, "argv", ["synthmed", *args])
        main()
    return exit_info.value.code or 0


def invoke_joined(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """As :func:`invoke`, with stdout's white space folded to single spaces (Rich wraps tables)."""
    code, out, err = invoke(monkeypatch, capsys, *args)
    return code, " ".join(out.split()), err
