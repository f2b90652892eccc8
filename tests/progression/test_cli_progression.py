"""`synthmed progression fit|predict|evaluate` end to end on a tiny cohort (8 subjects × 3 visits, 32 px, a
StyleGAN 2 and a grade classifier trained a few steps), and the errors: one red line, exit 2, nothing written."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from cli_inprocess import invoke as cli
from tiny_stores import make_longitudinal_store

from synthmed.classify.api import train_classifier
from synthmed.data.store import Store
from synthmed.generators.api import train_generator
from synthmed.parallel import torch_threads
from synthmed.progression.api import ProgressionRun
from synthmed.training import FabricOptions
from synthmed.training.data import tensor_batches

CPU = ["--device", "cpu", "--no-progress"]
FIT = ["--steps", "5", "--batch", "8", *CPU]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """``(folder, store, generator run, grade classifier run)``: 8 subjects (odd ones fast), the last 4 in test."""
    folder = tmp_path_factory.mktemp("progression")
    store = make_longitudinal_store(folder / "cohort")
    cpu = FabricOptions(device="cpu")
    train_generator(store.path, folder / "gen", model="stylegan2", fabric=cpu, progress=False,
                    train_overrides={"steps": 3, "checkpoint_every": 3, "log_every": 1, "r1_interval": 2,
                                     "pl_interval": 2, "ada_interval": 1})
    train_classifier(folder / "grade", [store.path], task="grade", fabric=cpu, progress=False,
                     train_overrides={"steps": 4, "batch": 4, "validate_every": 2})
    return folder, store.path, folder / "gen", folder / "grade"


def error(monkeypatch, capsys, *args: str) -> str:
    code, _, err = cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    return " ".join(lines[0].split())


def in_unit(value) -> bool:
    return value is None or 0 <= value <= 1


def test_fit_predict_evaluate(cohort, monkeypatch, capsys):
    folder, store, gen, grade = cohort
    run = folder / "run"
    code, out, err = cli(monkeypatch, capsys, "progression", "fit", str(store), str(run), "--generator", str(gen),
                         "--classifier", str(grade), *FIT)
    assert code == 0 and "projected 12 visits of 4 training subjects" in out, err
    opened = ProgressionRun.open(run)
    assert opened.generator == gen.resolve() and opened.classifier == grade.resolve()
    assert opened.info["data"]["subjects_with_followup"] == 4 and opened.projection.steps == 5
    latents = opened.latents()
    assert len(latents) == 12 and set(latents.samples["split"]) == {"train"}
    assert sorted(latents.samples["visit"].unique()) == [0, 1, 2]

    code, out, err = cli(monkeypatch, capsys, "progression", "fit", str(store), str(run), "--generator", str(gen), *FIT)
    assert code == 2 and "exists" in err  # neither --resume nor --overwrite
    code, out, err = cli(monkeypatch, capsys, "progression", "fit", str(store), str(run), "--generator", str(gen),
                         "--classifier", str(grade), "--resume", *FIT)
    assert code == 0 and "projected 12 visits" in out, err  # a finished fit resumes to itself

    pred = folder / "pred"
    code, out, err = cli(monkeypatch, capsys, "progression", "predict", str(run), str(pred), "--baseline", str(store),
                         "--months", "24", "--k", "2", *CPU)
    assert code == 0 and "4 predicted follow-ups 24 months ahead" in out, err
    written = Store.open(pred)
    table = written.samples
    assert written.synthetic and written.sample_shape == (4, 32, 32)
    assert table["subject_id"].tolist() == ["subj4", "subj5", "subj6", "subj7"]
    assert (table["months"] == 24).all() and (table["visit"] == -1).all() and (table["split"] == "test").all()
    assert table["baseline_case_id"].tolist() == [f"subj{i}-v0" for i in range(4, 8)]
    assert ((table["wt_fraction_low"] <= table["wt_fraction_high"]) & table["wt_fraction"].between(0, 1)).all()
    assert all(len(n.split(";")) == 2 and "subj" in n for n in table["neighbours"])
    assert not any(s in n for s, n in zip(table["subject_id"], table["neighbours"]))  # never itself
    images, labels = written.read(slice(None))
    assert images.min() >= 0 and images.max() <= 1 and labels.max() <= 3
    assert written.meta["provenance"]["kind"] == "progression prediction"
    assert len(list((run / "projections").iterdir())) == 1  # the test baselines, projected once

    code, out, err = cli(monkeypatch, capsys, "progression", "evaluate", str(run), "--test", str(store), "--k", "2",
                         "--baseline-steps", "4", "--n-boot", "50", "--json", *CPU)
    assert code == 0, err
    result = json.loads(out)
    assert result["months"] == 24 and result["subjects"] == {"test": 4, "fast": 2, "slow": 2, "without_followup": []}
    for name in ("risk", "growth", "baseline", "risk_true_followup"):
        assert in_unit(result[f"{name}_auroc"]) and result[f"{name}_auroc"] is not None
        assert len(result[f"{name}_auroc_ci"]) == 2 and all(in_unit(v) for v in result[f"{name}_auroc_ci"])
    for group, n in (("all", 4), ("fast", 2)):
        assert result["followup"][group]["n"] == n
        for who in ("predicted", "copy_baseline"):
            m = result["followup"][group][who]
            assert 0 <= m["mae"] <= 1 and m["psnr"] > 0 and 0 <= m["wt_dice"] <= 1
    assert result["wt_spearman"]["predicted"] is None or -1 <= result["wt_spearman"]["predicted"] <= 1
    assert result["wt_spearman"]["copy_baseline"] is None  # every test baseline has 4 tumour pixels
    assert 0 <= result["wt_interval"]["coverage"] <= 1 and result["grade_classifier"]["run"] == str(grade.resolve())
    assert result["baseline_classifier"]["subjects"] == 4 and result["baseline_classifier"]["fast"] == 2
    assert result["skipped"] == {} and math.isfinite(result["projection_psnr"])
    files = result["files"]
    assert json.loads(open(files["json"]).read())["risk_auroc"] == result["risk_auroc"]
    assert open(files["gallery"], "rb").read(4) == b"\x89PNG"
    rows = open(files["csv"]).read().splitlines()
    assert len(rows) == 5 and rows[0].startswith("subject,months,fast")
    assert len(list((run / "projections").iterdir())) == 1  # the same baselines: the cached projection

    assert "exist" in error(monkeypatch, capsys, "progression", "evaluate", str(run), "--test", str(store),
                            "--n-boot", "50", *CPU)
    code, out, err = cli(monkeypatch, capsys, "progression", "evaluate", str(run), "--test", str(store), "--months", "12",
                         "--n-boot", "50", "--out", str(folder / "eval12"), *CPU)
    text = " ".join(out.split())  # at 12 months no subject has risen two grades yet
    assert code == 0 and "no fast progressor among the test subjects" in text, err
    assert "baseline_auroc:" in text and "slow progressors; the baseline classifier has nothing to learn" in text
    assert (folder / "eval12" / "cohort-m12_gallery.png").is_file()
    code, out, err = cli(monkeypatch, capsys, "progression", "evaluate", str(run), "--test", str(store), "--no-baseline",
                         "--classifier", str(grade), "--n-boot", "20", "--json", "--out", str(folder / "eval24"), *CPU)
    skipped = json.loads(out)["skipped"]
    assert code == 0 and skipped == {"baseline_auroc": "--no-baseline"}, err


def test_errors_leave_nothing_behind(cohort, tmp_path, monkeypatch, capsys):
    folder, store, gen, grade = cohort
    single = make_longitudinal_store(tmp_path / "single", single_visit=True)
    run = tmp_path / "run"
    assert "no training subject has a follow-up" in error(monkeypatch, capsys, "progression", "fit", str(single.path),
                                                          str(run), "--generator", str(gen), *FIT)
    progan = tmp_path / "progan"
    train_generator(store, progan, model="progan", fabric=FabricOptions(device="cpu"), progress=False,
                    train_overrides={"steps": 1, "checkpoint_every": 1, "growth_steps": 0})
    assert "needs a StyleGAN" in error(monkeypatch, capsys, "progression", "fit", str(store), str(run),
                                       "--generator", str(progan), *FIT)
    presence = tmp_path / "presence"
    train_classifier(presence, [store], task="presence", fabric=FabricOptions(device="cpu"), progress=False,
                     train_overrides={"steps": 1, "batch": 4, "validate_every": 0})
    assert "needs a grade classifier" in error(monkeypatch, capsys, "progression", "fit", str(store), str(run),
                                               "--generator", str(gen), "--classifier", str(presence), *FIT)
    assert "--steps" in error(monkeypatch, capsys, "progression", "fit", str(store), str(run), "--generator", str(gen),
                              "--steps", "0", *CPU)
    assert not run.exists()
    assert "not a progression run" in error(monkeypatch, capsys, "progression", "predict", str(gen),
                                            str(tmp_path / "p"), "--baseline", str(store), "--months", "12", *CPU)

    fitted = folder / "run-errors"
    code, _, err = cli(monkeypatch, capsys, "progression", "fit", str(store), str(fitted), "--generator", str(gen), *FIT)
    assert code == 0, err
    assert "--months must be a number of months >= 0" in error(
        monkeypatch, capsys, "progression", "predict", str(fitted), str(tmp_path / "p"), "--baseline", str(store),
        "--months", "-1", *CPU)
    assert "--metric must be one of cosine, euclidean" in error(
        monkeypatch, capsys, "progression", "predict", str(fitted), str(tmp_path / "p"), "--baseline", str(store),
        "--months", "12", "--metric", "manhattan", *CPU)
    assert not (tmp_path / "p").exists()
    message = error(monkeypatch, capsys, "progression", "evaluate", str(fitted), "--test", str(store), "--months", "7",
                    *CPU)
    assert "no subject of split 'test' has a follow-up 7 months after its baseline" in message and "[12.0, 24.0]" in message
    assert "no test split" in error(monkeypatch, capsys, "progression", "evaluate", str(fitted), "--test",
                                    str(make_longitudinal_store(tmp_path / "all-train", test_subjects=0).path), *CPU)
    assert "no fast progressor" not in message and not (fitted / "eval").exists()


def test_tensor_batches_resume_where_they_stopped():
    images, targets = torch.arange(5.0)[:, None], torch.arange(5)[:, None]
    stream = tensor_batches(images, targets, 3, seed=4)
    first = [next(stream) for _ in range(6)]
    again = tensor_batches(images, targets, 3, seed=4, start_step=4)
    for want in first[4:]:
        got = next(again)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    epoch = torch.cat([b[0] for b in first])[:15].view(3, 5)  # three epochs, each a permutation
    assert all(sorted(row.tolist()) == [0, 1, 2, 3, 4] for row in epoch)
    assert not np.array_equal(epoch[0].numpy(), epoch[1].numpy()) or not np.array_equal(epoch[1].numpy(),
                                                                                         epoch[2].numpy())
