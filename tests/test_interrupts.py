"""SIGINT / SIGTERM to real commands: one line naming the command that resumes, exit 128 + signal,
no hidden temporaries and no workers left; after a SIGKILL (which nothing can catch) the next run
of the same command removes what the killed one left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from procs import ENV, alive, children, pool_workers, start_cli, wait_for
from tiny_stores import make_store

from synthmed.interrupts import resume_hint
from synthmed.locks import LOCK_FILE, this_host


def temporaries(folder) -> list[str]:
    """Hidden temporaries of the atomic writers anywhere under ``folder``."""
    return [str(p) for p in folder.rglob(".*") if "-tmp-" in p.name or "-old-" in p.name]


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_phantom_cleans_up_and_says_how_to_run_again(tmp_path, sig):
    out = tmp_path / "ph"
    args = ["data", "phantom", str(out), "--cases", "400", "--shape", "64", "64", "64", "--workers", "2"]
    proc = start_cli(*args)
    try:
        workers = wait_for(lambda: len(pool_workers(proc.pid)) >= 3 and temporaries(tmp_path) and pool_workers(proc.pid),
                           120, "the phantom workers and their temporary folder")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig
    assert last_line(err) == "interrupted; nothing was written; run again with: synthmed " + " ".join(args)
    assert temporaries(tmp_path) == [] and not out.exists()
    wait_for(lambda: not any(alive(p) for p in workers), 10, "the workers to exit")


def test_interrupted_training_resumes_with_the_printed_command(tmp_path):
    store = make_store(tmp_path / "store")
    run = tmp_path / "run"
    args = ["generator", "train", str(store.path), str(run), "--train-timesteps", "100", "--device", "cpu",
            "--no-progress", "--steps", "1000000", "--checkpoint-every", "3"]
    proc = start_cli(*args)
    try:
        wait_for(lambda: (run / "state.json").is_file() or proc.poll() is not None, 120, "a first checkpoint")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    hint = last_line(err)
    assert hint == "interrupted; resume with: synthmed " + " ".join(args) + " --resume"
    assert temporaries(tmp_path) == []
    command = hint.split(": ", 1)[1].split()[1:]  # drop "synthmed"
    command[command.index("1000000")] = "6"  # train to step 6 only
    resumed = subprocess.run([sys.executable, "-m", "synthmed", *command], capture_output=True, text=True, env=ENV,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "state.json").read_text())["step"] == 6


def test_the_next_run_removes_what_a_sigkill_left(tmp_path):
    out = tmp_path / "ph"
    proc = start_cli("data", "phantom", str(out), "--cases", "400", "--shape", "64", "64", "64", "--workers", "2")
    try:
        wait_for(lambda: temporaries(tmp_path) and len(list(tmp_path.glob(".*-tmp-ph/*"))) >= 1, 120,
                 "a temporary folder with a case in it")
        proc.kill()  # SIGKILL: no cleanup possible
        proc.wait()
    finally:
        proc.kill()
    left = temporaries(tmp_path)
    assert left and not out.exists()
    again = subprocess.run([sys.executable, "-m", "synthmed", "data", "phantom", str(out), "--cases", "1", "--shape",
                            "24", "24", "24"], capture_output=True, text=True, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert temporaries(tmp_path) == [] and (out / "phantom.json").is_file()


@pytest.mark.slow(seconds=25)
def test_resume_removes_a_dead_writers_checkpoint_temporary(tmp_path):
    store = make_store(tmp_path / "store")
    run = tmp_path / "run"
    base = [sys.executable, "-m", "synthmed", "generator", "train", str(store.path), str(run), "--train-timesteps",
            "100", "--device", "cpu", "--no-progress"]
    assert subprocess.run([*base, "--steps", "1"], env=ENV, capture_output=True).returncode == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run / "checkpoints" / f".0123abcd.{this_host()}.{dead.pid}-tmp-step_00000099"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    ours = run / f".0123abcd.{this_host()}.{os.getpid()}-tmp-notes"  # a live owner: kept
    ours.write_text("x")
    assert subprocess.run([*base, "--steps", "2", "--resume"], env=ENV, capture_output=True).returncode == 0
    assert not stale.exists() and ours.exists()
    from synthmed.training import checkpoint, run as run_module

    assert run_module.CHECKPOINTS == checkpoint.CHECKPOINTS  # the run module names the folder it cleans


def test_interrupted_study_pool_stops_its_stages(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ndata: {phantom: {cases: 40, shape: [64, 64, 64]}, size: 16}\n"
                    "generators: [{name: ddpm, steps: 1}]\nsegmenters: [{name: unet, steps: 1}]\ntrain_sets: [real]\n")
    out = tmp_path / "s"
    proc = start_cli("study", "run", str(spec), "--workers", "2", "--no-progress")
    try:
        workers = wait_for(lambda: temporaries(out / "stages") if (out / "stages").is_dir() else None, 120,
                           "a stage at work") and pool_workers(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert last_line(err) == f"interrupted; finished stages are kept; resume with: synthmed study run {spec} " \
                             "--workers 2 --no-progress"
    assert temporaries(tmp_path) == []
    wait_for(lambda: not any(alive(p) for p in workers) and not children(proc.pid), 10, "the stage workers to exit")
    assert (out / LOCK_FILE).read_text() == ""  # released


def test_resume_hint():
    assert resume_hint(["generator", "train", "S", "R", "--overwrite", "--steps", "9"]) == \
        "interrupted; resume with: synthmed generator train S R --steps 9 --resume"
    assert resume_hint(["--debug", "segment", "train", "O", "--train", "S", "--resume"]) == \
        "interrupted; resume with: synthmed --debug segment train O --train S --resume"
    assert resume_hint(["classify", "train", "O", "--train", "S", "--mode", "dual-bn"]) == \
        "interrupted; resume with: synthmed classify train O --train S --mode dual-bn --resume"
    assert resume_hint(["progression", "fit", "S", "R", "--generator", "G", "--overwrite"]) == \
        "interrupted; resume with: synthmed progression fit S R --generator G --resume"
    assert resume_hint(["progression", "evaluate", "R", "--test", "S"]).startswith("interrupted; finished stages are kept")
    assert resume_hint(["demo", "my dir"]) == "interrupted; finished stages are kept; resume with: synthmed demo 'my dir'"
    assert resume_hint(["data", "prepare", "a", "b"]) == \
        "interrupted; nothing was written; run again with: synthmed data prepare a b"
