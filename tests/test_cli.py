"""The CLI as a user meets it: a real `python -m synthmed` process, its output and exit code."""

import subprocess
import sys

import pytest

import synthmed


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthmed", *args], capture_output=True, text=True, cwd=cwd)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"synthmed {synthmed.__version__}"


def test_help_on_every_command():
    for args in ([], ["data"], ["data", "phantom"], ["data", "prepare"], ["data", "inspect"], ["demo"]):
        result = run_cli(*args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage" in result.stdout


def test_bad_option_value_is_one_red_line_and_exit_2(tmp_path):
    result = run_cli("data", "prepare", str(tmp_path), str(tmp_path / "store"), "--size", "3")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: options: --size")
    assert "Traceback" not in result.stderr


def test_missing_input_names_the_path_and_debug_shows_traceback(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_cli("data", "prepare", str(missing), str(tmp_path / "store"))
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()
    debug = run_cli("--debug", "data", "prepare", str(missing), str(tmp_path / "store"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_unknown_command_is_usage_error():
    assert run_cli("frobnicate").returncode == 2


@pytest.mark.slow(seconds=65)
def test_demo_runs_the_study_and_reuses_it(tmp_path):
    out = tmp_path / "demo"
    first = run_cli("demo", str(out), "--smoke", "--no-progress")
    assert first.returncode == 0, first.stderr
    assert f"report: {out / 'report.html'}" in first.stdout
    assert "ran 40 of 40 stages" in first.stdout
    assert (out / "results.csv").is_file() and "<h2" in (out / "report.html").read_text()
    again = run_cli("demo", str(out), "--smoke", "--no-progress")
    assert again.returncode == 0 and "ran 0 of 40 stages" in again.stdout
