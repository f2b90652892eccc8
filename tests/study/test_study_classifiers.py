"""A tiny study with a `classifiers:` section through `synthmed study run`: its stages, its rows in the
results table beside the segmenter's, and the report's Classifiers section with its figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_inprocess import invoke, run
from report_html import report_tables

from synthmed.study import STAGES_DIR

YAML = """name: classifiers
data: {phantom: {cases: 4, shape: [24, 32, 32], seed: 1, tumour_free_fraction: 0.5}, size: 16, test_fraction: 0.5}
generators: [{name: ddpm, steps: 2, sample_steps: 2}]
samples: 8
fidelity: []
segmenters: [{name: unet, steps: 1}]
augmentation: [false]
train_sets: [real, synthetic+real]
device: cpu
classifiers:
  - {task: presence, modes: [standard, dual-bn], steps: 4, eval_eps: [0, 0.005], eval_attack_steps: 2, n_boot: 20}
"""
RUNS = [(train_set, mode) for train_set in ("real", "synthetic+real") for mode in ("standard", "dual-bn")]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classifiers")
    (root / "study.yaml").write_text(YAML)
    assert run("study", "run", str(root / "study.yaml"), "--no-progress") == 0  # in this process, shared by the module
    return root / "study"


def test_classifier_rows_sit_in_the_tidy_table_beside_the_segmenters(study: Path) -> None:
    table = pd.read_csv(study / "results.csv")
    rows = table[table.classifier.notna()]
    assert set(rows.classifier) == {"presence-resnet18"} and set(rows.task) == {"presence"}
    assert rows.segmenter.isna().all() and rows.augmentation.isna().all() and set(rows.seed) == {0}
    assert sorted(set(zip(rows.train_set, rows["mode"]))) == sorted(RUNS)
    assert set(rows.region) == {"tumour", "mean"}
    metrics = set(rows.metric)
    assert {"auroc", "accuracy", "balanced_accuracy", "robust_auroc@0", "robust_auroc@0.005",
            "robust_balanced_accuracy@0.005", "saliency_mass_in_mask", "saliency_pointing_game",
            "saliency_auroc"} <= metrics
    adversarial_bn = rows[rows.metric.str.startswith("robust_adv_bn_")]
    assert set(adversarial_bn["mode"]) == {"dual-bn"} and "robust_adv_bn_auroc@0.005" in set(adversarial_bn.metric)
    for (train_set, mode), run in rows.groupby(["train_set", "mode"]):
        value = run.set_index(["metric", "region"]).value
        assert 0 <= value["auroc", "tumour"] <= 1 and 0 <= value["robust_auroc@0.005", "tumour"] <= 1
        assert value["robust_auroc@0", "tumour"] == value["auroc", "tumour"] == value["auroc", "mean"]  # ε 0 is clean
        assert 0 <= value["saliency_mass_in_mask", "tumour"] <= 1
    # the columns a classifier run shares with the segmenter's runs of the same train set say the same
    segmenter = table[table.segmenter.notna()]
    for train_set in ("real", "synthetic+real"):
        ours, theirs = rows[rows.train_set == train_set], segmenter[segmenter.train_set == train_set]
        for column in ("dataset", "generator", "seed", "real_fraction", "subject_fraction"):
            assert set(ours[column].astype(str)) == set(theirs[column].astype(str)), (train_set, column)
    assert set(rows[rows.train_set == "synthetic+real"].generator) == {"ddpm"}
    assert rows[rows.train_set == "real"].generator.isna().all()
    assert segmenter.classifier.isna().all() and segmenter.task.isna().all() and segmenter["mode"].isna().all()


def test_each_evaluation_stage_holds_its_result_and_figures(study: Path) -> None:
    folders = sorted((study / STAGES_DIR).glob("classify_eval-*"))
    assert len(folders) == len(RUNS) == len(list((study / STAGES_DIR).glob("classify-*")))
    for folder in folders:
        result = json.loads((folder / "result.json").read_text())
        assert result["saliency"]["gallery"] == "saliency.png" and result["saliency_skipped"] is None
        assert [p["eps"] for p in result["robust"]["routes"]["clean"]] == [0.0, 0.005]
        for png in ("eps.png", "saliency.png"):
            assert (folder / png).read_bytes()[:4] == b"\x89PNG"
        assert not (folder / "saliency.json").exists()


def test_report_has_the_classifiers_section_with_its_tables_curve_and_galleries(study: Path) -> None:
    page = (study / "report.html").read_text()
    ids = re.findall(r'<h2 id="([^"]+)"', page)
    assert ids.index("pretraining") + 1 == ids.index("classifiers")
    tables, texts = report_tables(page)
    auroc, saliency = tables["classifiers"]
    assert [(r["train_set"], r["mode"]) for r in auroc] == RUNS
    assert {r["generator"] for r in auroc} == {"—", "ddpm"}
    results = pd.read_csv(study / "results.csv")
    for row in auroc:
        run = results[(results.train_set == row["train_set"]) & (results["mode"] == row["mode"]) &
                      (results.region == "mean")].set_index("metric").value
        assert row["AUROC, clean"] == f"{run['auroc']:.4g}"
        assert row["AUROC, ε 0.005"] == f"{run['robust_auroc@0.005']:.4g}"
        assert row["AUROC, ε 0.005, adversarial BN"] == (
            f"{run['robust_adv_bn_auroc@0.005']:.4g}" if row["mode"] == "dual-bn" else "—")
    assert [(r["train_set"], r["mode"]) for r in saliency] == RUNS
    assert all(0 <= float(r["mass in mask"]) <= 1 for r in saliency)
    assert any("Saliency (gradient)" in t for t in texts["classifiers"])
    section = page.split('id="classifiers"')[1].split("</section>")[0]
    alts = re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', section)
    assert alts[0] == "phantom: presence-resnet18 AUROC against ε"
    assert alts[1:] == [f"phantom: presence-resnet18 {mode}, {train_set}{' (ddpm)' if train_set != 'real' else ''}, "
                        "seed 0: gradient saliency of tumour" for train_set, mode in RUNS]
    markdown = (study / "report.md").read_text()
    assert "## Classifiers" in markdown and markdown.count("](data:image/png;base64,") >= 5


def test_a_rerun_runs_nothing(study: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = invoke(monkeypatch, capsys, "study", "run", str(study.with_suffix(".yaml")), "--no-progress")
    assert code == 0 and re.search(r"ran 0 of \d+ stages", out)
    assert np.isfinite(pd.read_csv(study / "results.csv").value.dropna()).all()


def test_a_test_split_without_a_tumour_gets_no_saliency_and_the_report_says_why(tmp_path: Path) -> None:
    from synthmed.classify.api import train_classifier
    from synthmed.data.store import StoreWriter
    from synthmed.study import build_spec, make_plan
    from synthmed.study.classifier_section import write_classifiers
    from synthmed.study.results import classifier_rows
    from synthmed.study.sections import Section
    from synthmed.study.stages import run_classify_eval
    from synthmed.training.fabric import FabricOptions

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (12, 4, 16, 16)).astype(np.float32)
    labels = np.zeros((12, 16, 16), np.uint8)
    labels[0:8:2, 4:9, 4:9] = 2  # tumours in the training cases only; the last 2 cases are tumour-free
    rows = [{"case_id": f"case{i // 2}", "slice": i % 2, "split": "test" if i >= 8 else "train", "source": "test"}
            for i in range(12)]
    with StoreWriter(tmp_path / "prepare" / "store", dims=2, channels=("t1", "t1ce", "t2", "flair"),
                     sample_shape=(4, 16, 16), spacing=(1.0, 1.0, 1.0), normalisation={"kind": "test"},
                     provenance={"made_by": "tests"}, synthetic=False) as writer:
        writer.append(images, labels, rows)
    train_classifier(tmp_path / "classify" / "run", [writer.store.path], train_overrides={"steps": 2, "batch": 4},
                     fabric=FabricOptions(device="cpu"), progress=False)
    spec = build_spec({"data": {"phantom": {"cases": 3}}, "train_sets": ["real"], "device": "cpu",
                       "classifiers": [{"eval_attack_steps": 1, "n_boot": 5}]})
    (stage,) = [s for s in make_plan(spec).by_kind("classify_eval") if s.labels["mode"] == "standard"]
    out = tmp_path / "eval"  # the stage's temporary folder
    out.mkdir()
    run_classify_eval(stage, spec, {"classify": tmp_path / "classify", "prepare": tmp_path / "prepare"}, out, False)
    result = json.loads((out / "result.json").read_text())
    assert result["saliency"] is None and "no test sample has a tumour" in result["saliency_skipped"]
    assert not (out / "saliency.png").exists() and (out / "eps.png").is_file()
    found = classifier_rows(result)
    assert not any(metric.startswith("saliency_") for metric, _, _ in found)
    assert np.isnan(dict(((m, r), v) for m, r, v in found)["auroc", "tumour"])  # one class in the test split
    frame = pd.DataFrame([{**stage.labels, "metric": m, "region": r, "value": v} for m, r, v in found])
    section = Section("classifiers", "Classifiers")
    write_classifiers([{"kind": "classify_eval", "folder": out, "labels": stage.labels}], frame, section)
    texts = [value for kind, value in section.blocks if kind == "text"]
    assert any(t.startswith("No saliency for 1 run(s) (phantom: presence-resnet18 standard real seed 0): no test "
                            "sample has a tumour") for t in texts), texts
