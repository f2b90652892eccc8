"""`synthmed classify train|eval|saliency`: a tiny run of every mode through the CLI, resume, and the errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cli_inprocess import invoke as cli
from synthmed.classify.api import train_classifier
from synthmed.classify.targets import label_names
from synthmed.classify.task import ClassificationTask
from synthmed.training.checkpoint import latest_checkpoint
from synthmed.training.fabric import FabricOptions

TRAIN = ["--steps", "4", "--batch", "4", "--device", "cpu", "--no-progress", "--validate-every", "2"]


def error(monkeypatch, capsys, *args: str) -> str:
    code, _, err = cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    return " ".join(lines[0].split())


@pytest.mark.parametrize("mode", ["standard", "adversarial", "dual-bn"])
def test_every_mode_trains_evaluates_and_explains(mode, presence2d, tmp_path, monkeypatch, capsys):
    run = tmp_path / mode
    code, out, err = cli(monkeypatch, capsys, "classify", "train", str(run), "--train", str(presence2d.path),
                         "--mode", mode, *TRAIN)
    assert code == 0 and "step 4" in out, err
    weights = load_file(str(latest_checkpoint(run)[1] / "model.safetensors"))
    assert any(".adversarial." in k for k in weights) == (mode == "dual-bn")
    code, out, err = cli(monkeypatch, capsys, "classify", "eval", str(run), "--test", str(presence2d.path),
                         "--eps-sweep", "0,0.01", "--attack-steps", "2", "--n-boot", "50", "--json", "--device", "cpu",
                         "--no-progress")
    assert code == 0, err
    result = json.loads(out)
    assert result["labels"] == ["tumour"] and result["n"] == 8 and result["subjects"] == 4
    assert 0 <= result["clean"]["tumour"]["auroc"] <= 1 and len(result["clean"]["tumour"]["auroc_ci"]) == 2
    routes = result["robust"]["routes"]
    assert set(routes) == ({"clean", "adversarial"} if mode == "dual-bn" else {"clean"})
    assert [p["eps"] for p in routes["clean"]] == [0.0, 0.01]
    assert routes["clean"][0]["metrics"]["tumour"]["auroc"] == result["clean"]["tumour"]["auroc"]  # ε = 0 is clean
    for suffix in (".json", ".csv", "_eps.png"):
        assert (run / "eval" / f"presence2d{suffix}").is_file()
    code, out, err = cli(monkeypatch, capsys, "classify", "saliency", str(run), "--test", str(presence2d.path),
                         "--method", "gradient", "--n-boot", "50", "--json", "--device", "cpu", "--no-progress")
    assert code == 0, err
    saliency = json.loads(out)
    assert saliency["n"] == 4 and 0 <= saliency["runs"][0]["mass_in_mask"] <= 1
    assert (run / "saliency" / "presence2d_gradient.png").read_bytes()[:4] == b"\x89PNG"


def test_saliency_gallery_compares_runs_and_gradcam(presence2d, tmp_path, monkeypatch, capsys):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run, mode in zip(runs, ["standard", "dual-bn"]):
        assert cli(monkeypatch, capsys, "classify", "train", str(run), "--train", str(presence2d.path), "--mode", mode,
                   *TRAIN)[0] == 0
    out_png = tmp_path / "gallery.png"
    code, out, err = cli(monkeypatch, capsys, "classify", "saliency", *map(str, runs), "--test", str(presence2d.path),
                         "--method", "gradcam", "--out", str(out_png), "--n-boot", "20", "--device", "cpu",
                         "--no-progress")
    assert code == 0 and "pointing game" in out, err
    result = json.loads(out_png.with_suffix(".json").read_text())
    assert [r["mode"] for r in result["runs"]] == ["standard", "dual-bn"] and out_png.is_file()


def test_regions_and_grade_tasks_and_3d(presence2d, presence3d, tmp_path):
    cpu = FabricOptions(device="cpu")
    for task in ("regions", "grade"):
        assert train_classifier(tmp_path / task, [presence2d.path], task=task, mode="dual-bn",
                                train_overrides={"steps": 2, "batch": 4}, fabric=cpu, progress=False) == 2
        info = json.loads((tmp_path / task / "run.json").read_text())
        assert info["model"]["num_outputs"] == len(label_names(task))
    for model in ("resnet18", "densenet121"):
        assert train_classifier(tmp_path / f"3d-{model}", [presence3d.path], model=model, mode="adversarial",
                                train_overrides={"steps": 1, "batch": 2}, fabric=cpu, progress=False) == 1


def test_kill_and_resume_equals_uninterrupted(presence2d, tmp_path, monkeypatch):
    options = dict(mode="dual-bn", train_overrides={"steps": 4, "batch": 4, "checkpoint_every": 2},
                   fabric=FabricOptions(device="cpu"), progress=False)
    assert train_classifier(tmp_path / "full", [presence2d.path], **options) == 4
    original = ClassificationTask.training_step

    def killed(self, batch, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(ClassificationTask, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tmp_path / "cut", [presence2d.path], **options)
    monkeypatch.setattr(ClassificationTask, "training_step", original)
    assert latest_checkpoint(tmp_path / "cut")[0] == 2
    assert train_classifier(tmp_path / "cut", [presence2d.path], resume=True, **options) == 4
    full = load_file(str(latest_checkpoint(tmp_path / "full")[1] / "model.safetensors"))
    cut = load_file(str(latest_checkpoint(tmp_path / "cut")[1] / "model.safetensors"))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)


def test_errors_are_one_line_and_leave_nothing(presence2d, tmp_path, monkeypatch, capsys):
    out = tmp_path / "x"
    base = ["classify", "train", str(out), "--train", str(presence2d.path), *TRAIN]
    assert "--task must be one of presence, regions, grade" in error(monkeypatch, capsys, *base, "--task", "size")
    assert "--model must be one of" in error(monkeypatch, capsys, *base, "--model", "vgg")
    assert "--mode must be one of" in error(monkeypatch, capsys, *base, "--mode", "robust")
    assert "norm" in error(monkeypatch, capsys, *base, "--norm", "l1")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert "bad.safetensors" in error(monkeypatch, capsys, *base, "--weights", str(bad))
    assert not out.exists()
    assert "no such classifier run" in error(monkeypatch, capsys, "classify", "eval", str(tmp_path / "nope"),
                                             "--test", str(presence2d.path))
    assert "--eps-sweep" in error(monkeypatch, capsys, "classify", "eval", str(tmp_path / "nope"), "--test",
                                  str(presence2d.path), "--eps-sweep", "a,b")
    assert "--method must be one of" in error(monkeypatch, capsys, "classify", "saliency", str(tmp_path / "nope"),
                                              "--test", str(presence2d.path), "--method", "lime")
