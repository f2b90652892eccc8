"""`synthmed segment train|eval|relative` and `synthmed metrics overlap`: the CLI and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_synthetic
import torch
from medpy.metric import binary as medpy
from monai.metrics import compute_hausdorff_distance

from cli_inprocess import invoke as cli
from synthmed.data.nifti import save_nifti

TRAIN = ["--steps", "2", "--batch", "2", "--device", "cpu", "--no-progress"]


def error(monkeypatch, capsys, *args: str) -> str:
    code, _, err = cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    return " ".join(lines[0].split())


def test_train_eval_relative_and_errors(real2d, syn2d, tmp_path, monkeypatch, capsys):
    run, syn = str(tmp_path / "run"), str(tmp_path / "syn")
    code, out, err = cli(monkeypatch, capsys, "segment", "train", run, "--train", str(real2d.path), "--no-aug", *TRAIN)
    assert code == 0 and "step 2" in out, err
    code, out, _ = cli(monkeypatch, capsys, "segment", "train", syn, "--train", str(syn2d.path), "--no-aug", *TRAIN)
    assert code == 0
    code, out, _ = cli(monkeypatch, capsys, "segment", "eval", run, "--test", str(real2d.path), "--json", "--device", "cpu")
    result = json.loads(out)
    assert code == 0 and set(result["mean"]) == {"WT", "TC", "ET"} and len(result["cases"]) == 2
    assert set(result["cases"][0]["ET"]) == {"dice", "hd95", "hd95_max"} and result["aug"] is False
    assert set(result["mean"]["ET"]) == set(result["sd"]["ET"]) == {"dice", "hd95", "hd95_max"}
    code, out, _ = cli(monkeypatch, capsys, "segment", "eval", syn, "--test", str(real2d.path), "--device", "cpu")
    assert code == 0 and "WT" in out and "HD95" in out and "HD95-max" in out
    code, out, _ = cli(monkeypatch, capsys, "segment", "relative", f"{syn}/eval/real2d.json", f"{run}/eval/real2d.json",
                       "--json")
    assert code == 0 and set(json.loads(out)) == {"WT", "TC", "ET", "mean"}

    mix = tmp_path / "mix"
    code, _, err = cli(monkeypatch, capsys, "segment", "train", str(mix), "--train", str(real2d.path), "--train",
                       str(syn2d.path), "--real-fraction", "0.25", "--budget", "4", "--steps", "1", "--device", "cpu",
                       "--no-progress")
    data = json.loads((mix / "run.json").read_text())["data"]
    assert code == 0 and data["kind"] == "mix" and (data["n_real"], data["n_synthetic"]) == (1, 3), err

    other = make_synthetic(tmp_path / "other", channels=("flair", "t1", "t1ce", "t2"))
    assert "channels" in error(monkeypatch, capsys, "segment", "train", str(tmp_path / "x"), "--train",
                               str(real2d.path), "--train", str(other.path), *TRAIN)
    assert not (tmp_path / "x").exists()
    assert "test split is empty" in error(monkeypatch, capsys, "segment", "eval", run, "--test", str(syn2d.path),
                                          "--device", "cpu")
    assert "no such segmenter run" in error(monkeypatch, capsys, "segment", "eval", str(tmp_path / "nope"),
                                            "--test", str(real2d.path))
    assert "channels" in error(monkeypatch, capsys, "segment", "eval", run, "--test", str(other.path))
    assert "already exists" in error(monkeypatch, capsys, "segment", "train", run, "--train", str(real2d.path), *TRAIN)
    assert "do not fit the swin" in error(monkeypatch, capsys, "segment", "train", str(tmp_path / "y"), "--train",
                                    str(real2d.path), "--model", "swin", *TRAIN)  # 16 px is too small for swin
    assert "nothing to resume" in error(monkeypatch, capsys, "segment", "train", str(tmp_path / "z"), "--train",
                                        str(real2d.path), "--resume", *TRAIN)


def test_help(monkeypatch, capsys):
    for args in (["segment", "train"], ["segment", "eval"], ["metrics", "overlap"]):
        code, out, _ = cli(monkeypatch, capsys, *args, "--help")
        assert code == 0 and "Usage" in out
    _, out, _ = cli(monkeypatch, capsys, "segment", "train", "--help")
    assert all(o in out for o in ("--real-fraction", "--pretrain", "--pretrain-mode", "--no-aug", "--preset",
                                  "--resume"))
    assert "in-painting" in " ".join(out.split())


def test_metrics_overlap_files(tmp_path, monkeypatch, capsys):
    affine = np.diag([1.0, 1.0, 2.5, 1.0])  # x, y 1 mm; z 2.5 mm
    ref = np.zeros((12, 20, 20), np.uint8)
    ref[3:8, 5:15, 5:15] = 2
    ref[4:7, 7:12, 7:12] = 4  # BraTS ET
    pred = np.zeros_like(ref)
    pred[4:9, 6:15, 5:14] = 2
    pred[4:6, 7:12, 8:12] = 1
    save_nifti(tmp_path / "ref.nii.gz", ref, affine)
    save_nifti(tmp_path / "pred.nii.gz", pred, affine)
    code, out, _ = cli(monkeypatch, capsys, "metrics", "overlap", str(tmp_path / "pred.nii.gz"),
                       str(tmp_path / "ref.nii.gz"), "--json")
    scores = json.loads(out)["scores"]
    assert code == 0 and set(scores) == {"WT", "TC", "ET"}
    assert scores["WT"]["dice"] == pytest.approx(medpy.dc(pred > 0, ref > 0))
    assert scores["WT"]["hd95"] == pytest.approx(medpy.hd95(pred > 0, ref > 0, voxelspacing=(2.5, 1, 1)))
    diagonal = pytest.approx(np.sqrt(30**2 + 20**2 + 20**2))
    assert scores["ET"] == {"dice": 0.0, "hd95": diagonal, "hd95_max": diagonal}
    # the directed-max definition: MONAI's compute_hausdorff_distance(percentile=95)
    monai = compute_hausdorff_distance(torch.from_numpy((pred > 0)[None, None]).float(),
                                       torch.from_numpy((ref > 0)[None, None]).float(),
                                       include_background=True, percentile=95, spacing=[2.5, 1.0, 1.0])
    assert scores["WT"]["hd95_max"] == pytest.approx(float(monai), rel=1e-4)
    assert scores["WT"]["hd95_max"] > scores["WT"]["hd95"]
    code, out, _ = cli(monkeypatch, capsys, "metrics", "overlap", str(tmp_path / "pred.nii.gz"),
                       str(tmp_path / "ref.nii.gz"))
    assert code == 0 and "WT" in out and "HD95-max" in out
    save_nifti(tmp_path / "p01.nii.gz", (pred > 0).astype(np.uint8), affine)  # 0/1 masks: one "foreground" entry
    save_nifti(tmp_path / "r01.nii.gz", (ref > 0).astype(np.uint8), affine)
    code, out, _ = cli(monkeypatch, capsys, "metrics", "overlap", str(tmp_path / "p01.nii.gz"),
                       str(tmp_path / "r01.nii.gz"), "--json")
    assert code == 0 and json.loads(out)["scores"] == {"foreground": scores["WT"]}
    save_nifti(tmp_path / "small.nii.gz", ref[:6], affine)
    assert "shape" in error(monkeypatch, capsys, "metrics", "overlap", str(tmp_path / "small.nii.gz"),
                            str(tmp_path / "ref.nii.gz"))
    assert "not found" in error(monkeypatch, capsys, "metrics", "overlap", str(tmp_path / "missing.nii.gz"),
                                str(tmp_path / "ref.nii.gz"))


def test_relative_refuses_a_reference_that_differs_in_more_than_the_training_data(real2d, syn2d, tmp_path,
                                                                                   monkeypatch, capsys):
    """A real-only reference on another share of subjects, preset or step count is no reference: one red
    line naming what differs, exit 2, no number; the matched one gives the ratio of the means."""

    def trained(name: str, store, *extra: str) -> str:
        run = tmp_path / name
        code, _, err = cli(monkeypatch, capsys, "segment", "train", str(run), "--train", str(store.path), "--no-aug",
                           *TRAIN, *extra)
        assert code == 0, err
        code, out, err = cli(monkeypatch, capsys, "segment", "eval", str(run), "--test", str(real2d.path), "--json",
                             "--device", "cpu")
        assert code == 0, err
        return str(run / "eval" / "real2d.json")

    syn = trained("syn", syn2d)
    real = trained("real", real2d)
    code, out, err = cli(monkeypatch, capsys, "segment", "relative", syn, real, "--json")
    assert code == 0, err
    ratios, (a, b) = json.loads(out), (json.loads(open(p).read()) for p in (syn, real))
    assert ratios["WT"] == pytest.approx(a["mean"]["WT"]["dice"] / b["mean"]["WT"]["dice"])
    for name, extra, word in [("half", ("--subject-fraction", "0.5"), "subject"),
                              ("small", ("--preset", "small"), "preset"),
                              ("longer", ("--steps", "3"), "steps"),
                              ("pretrained", ("--pretrain", str(syn2d.path)), "real data only"),
                              ("ssl", ("--pretrain", str(syn2d.path), "--pretrain-mode", "ssl"), "real data only")]:
        message = error(monkeypatch, capsys, "segment", "relative", syn, trained(name, real2d, *extra))
        assert word in message and "relative Dice" in message, message
