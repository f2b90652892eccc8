"""Run locks with two real processes: a live writer refuses a second one with one red line; a
writer killed with SIGKILL leaves a lock that the next writer takes over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from procs import ENV, start_cli, wait_for
from tiny_stores import make_store

from synthmed.locks import LOCK_FILE, FolderLock, LockedError

HOLD = textwrap.dedent("""
    import sys, time
    from synthmed.locks import FolderLock
    lock = FolderLock(sys.argv[1], "study folder")
    print("locked", flush=True)
    time.sleep(600)
""")


def _holder(pid: int, folder) -> bool:
    try:
        return json.loads((folder / LOCK_FILE).read_text() or "{}").get("pid") == pid
    except (OSError, ValueError):
        return False


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(tmp_path):
    folder = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"in use by process {holder.pid}"):
            FolderLock(folder, "study folder")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with FolderLock(folder, "study folder") as lock:  # the kernel released the dead holder's lock
            assert lock.held and _holder(os.getpid(), folder)
        assert FolderLock(folder).held  # released: free again
    finally:
        holder.kill()


def test_a_study_in_use_refuses_a_second_study_run(tmp_path):
    folder = tmp_path / "study"
    spec = tmp_path / "study.yaml"
    spec.write_text("name: locked\ndata: {phantom: {cases: 3, shape: [32, 48, 48]}, size: 16}\n"
                    "generators: [{name: ddpm, steps: 1}]\nsegmenters: [{name: unet, steps: 1}]\ntrain_sets: [real]\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-m", "synthmed", "study", "run", str(spec), "--out", str(folder),
                                 "--no-progress"], capture_output=True, text=True, env=ENV, timeout=300)
        assert second.returncode == 2
        assert f"in use by process {holder.pid}" in one_error_line(second.stderr)
        assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing was run
    finally:
        holder.kill()


@pytest.mark.slow(seconds=50)
def test_two_concurrent_resumes_of_one_run(tmp_path):
    store = make_store(tmp_path / "store")
    run = tmp_path / "run"
    base = ["generator", "train", str(store.path), str(run), "--train-timesteps", "100", "--device", "cpu",
            "--no-progress"]
    assert subprocess.run([sys.executable, "-m", "synthmed", *base, "--steps", "1"], env=ENV,
                          capture_output=True).returncode == 0
    first = start_cli(*base, "--resume", "--steps", "1000000", "--checkpoint-every", "1000000")
    try:
        wait_for(lambda: _holder(first.pid, run) or first.poll() is not None, 120, "the first resume to hold the lock")
        assert first.poll() is None, first.communicate()[1][-3000:]
        second = subprocess.run([sys.executable, "-m", "synthmed", *base, "--resume", "--steps", "2"],
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert second.returncode == 2
        line = one_error_line(second.stderr)
        assert f"in use by process {first.pid}" in line and str(run) in line
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        third = subprocess.run([sys.executable, "-m", "synthmed", *base, "--resume", "--steps", "2"],
                               capture_output=True, text=True, env=ENV, timeout=300)
        assert third.returncode == 0, third.stderr[-3000:]  # the dead writer's lock is taken over
        assert json.loads((run / "state.json").read_text())["step"] == 2
    finally:
        first.kill()
