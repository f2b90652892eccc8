"""`synthmed generator train|sample`: the real CLI (DDP via torchrun) and its bad-input errors."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tiny_stores import make_store

from cli_inprocess import invoke_joined as cli
from procs import torchrun
from synthmed.training import open_run

TRAIN = ["--steps", "3", "--lr", "1e-3", "--train-timesteps", "100", "--device", "cpu", "--no-progress"]


def test_ddp_two_cpu_processes_agree_with_one(store2d, tmp_path, monkeypatch, capsys):
    """2 gloo processes × batch 2 see the same global batches and noise as 1 process × batch 4
    (synthmed.training.data / seeding), so after 3 Adam steps the weights agree to float
    reduction-order error: max |Δ| <= 1e-5."""
    args = ["generator", "train", str(store2d.path)]
    ddp = torchrun(*args, str(tmp_path / "ddp"), "--batch", "2", *TRAIN)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("trained") == 1  # rank 0 reports
    code, _, err = cli(monkeypatch, capsys, *args, str(tmp_path / "one"), "--batch", "4", *TRAIN)
    assert code == 0, err
    for name in ("model", "ema"):
        a = load_file(str(tmp_path / "ddp" / "checkpoints" / "step_00000003" / f"{name}.safetensors"))
        b = load_file(str(tmp_path / "one" / "checkpoints" / "step_00000003" / f"{name}.safetensors"))
        assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) <= 1e-5, name
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["training"]["batch"] == 2


def test_help(monkeypatch, capsys):
    for args in (["generator"], ["generator", "train"], ["generator", "sample"]):
        code, out, _ = cli(monkeypatch, capsys, *args, "--help")
        assert code == 0 and "Usage" in out
    _, out, _ = cli(monkeypatch, capsys, "generator", "train", "--help")
    assert all(opt in out for opt in ("--preset", "--checkpoint-every", "--resume", "--devices", "--overwrite"))


def test_train_and_sample_then_bad_inputs(store2d, store3d, tmp_path, monkeypatch, capsys):
    run, out = str(tmp_path / "run"), str(tmp_path / "syn")
    code, stdout, _ = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), run, "--batch", "2", *TRAIN)
    assert code == 0 and "step 3" in stdout
    code, stdout, _ = cli(monkeypatch, capsys, "generator", "sample", run, out, "--n", "3", "--steps", "2",
                          "--batch", "2", "--device", "cpu", "--no-progress")
    assert code == 0 and "3 synthetic samples" in stdout
    before = (tmp_path / "syn" / "store.json").read_text()
    state = (tmp_path / "run" / "state.json").read_text()

    def error(*args: str) -> str:
        code, _, err = cli(monkeypatch, capsys, *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
        return lines[0]

    # an output that exists without --overwrite
    assert "already exists" in error("generator", "sample", run, out, "--n", "2", "--device", "cpu")
    assert "already exists" in error("generator", "train", str(store2d.path), run, *TRAIN)
    # --resume with a changed model config
    assert "changed model config" in error("generator", "train", str(store2d.path), run, "--resume",
                                           *TRAIN[:2], "--train-timesteps", "200", *TRAIN[6:])
    # --resume on a store of another dimension
    assert "different store" in error("generator", "train", str(store3d.path), run, "--resume", *TRAIN)
    assert (tmp_path / "syn" / "store.json").read_text() == before
    assert (tmp_path / "run" / "state.json").read_text() == state
    # sampling from a run without a checkpoint
    open_run(tmp_path / "empty-run", kind="ddpm", model={}, training={}, seed=0)
    assert "no checkpoint" in error("generator", "sample", str(tmp_path / "empty-run"), str(tmp_path / "x"), "--device", "cpu")
    assert not (tmp_path / "x").exists()
    # a store without a train split; a sampler that does not fit the model
    only_test = make_store(tmp_path / "only-test", n=2, n_test=2)
    assert "train" in error("generator", "train", str(only_test.path), str(tmp_path / "r2"), *TRAIN)
    assert not (tmp_path / "r2").exists()
    assert "rflow" in error("generator", "sample", run, str(tmp_path / "y"), "--sampler", "rflow", "--device", "cpu")
    assert not (tmp_path / "y").exists()
    # --resume continues to more steps
    code, stdout, _ = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), run, "--resume", "--batch", "2",
                          "--steps", "4", *TRAIN[2:])
    assert code == 0 and "step 4" in stdout
