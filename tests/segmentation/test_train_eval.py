"""Tiny training of both networks in 2D and 3D, resume, pre-training, slice reassembly,
evaluation and relative Dice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy
from safetensors.torch import load_file
from tiny_stores import make_store

from synthmed.data.store import StoreWriter
from synthmed.errors import SynthmedError
from synthmed.segmentation import (
    augment,
    case_volumes,
    evaluate_run,
    load_segmenter,
    predict_labels,
    relative_dice,
    train_segmenter,
)
from synthmed.segmentation.augment import AugmentOptions
from synthmed.training import FabricOptions, StepRandom

CPU = FabricOptions(device="cpu")


def fit(out, stores, **kw):
    kw.setdefault("train_overrides", {})
    kw["train_overrides"] = {"steps": 3, "batch": 2, "validate_every": 2, **kw["train_overrides"]}
    return train_segmenter(out, [s.path for s in stores], fabric=CPU, progress=False, **kw)


def test_unet_2d_trains_validates_evaluates(real2d, tmp_path):
    assert fit(tmp_path / "run", [real2d], model_overrides={"deep_supervision": True}) == 3
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == 3 and state["best"]["checkpoint"] == "checkpoints/best"
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["kind"] == "segmenter" and info["model"]["network"] == "unet" and info["training"]["aug"] is True
    assert info["data"]["kind"] == "real" and info["data"]["n_val"] == 2  # round(0.2 × 6 cases) = 1 case, 2 slices
    result = evaluate_run(tmp_path / "run", real2d.path, device="cpu")
    assert result["n"] == 2 and [c["case_id"] for c in result["cases"]] == ["case6", "case7"]
    assert set(result["mean"]) == {"WT", "TC", "ET"} and result["checkpoint"]["name"] == "best"
    # the per-case numbers are the metrics of the stacked slices (checked with medpy)
    net, _, _ = load_segmenter(tmp_path / "run", device="cpu")
    for case, row in zip(("case6", "case7"), result["cases"]):
        idx = np.flatnonzero(real2d.samples["case_id"].to_numpy() == case)
        images, ref = real2d.read(idx)
        pred = predict_labels(net, images)
        p, r = pred > 0, ref > 0
        assert row["WT"]["dice"] == pytest.approx(medpy.dc(p, r) if (p.any() or r.any()) else 1.0, abs=1e-9)
        if p.any() and r.any():
            assert row["WT"]["hd95"] == pytest.approx(medpy.hd95(p, r, voxelspacing=(1, 1, 1)), abs=1e-6)
    csv = (tmp_path / "run" / "eval" / "real2d.csv").read_text().splitlines()
    assert csv[0].startswith("case_id,WT_dice,WT_hd95,WT_hd95_max,TC_dice") and len(csv) == 3
    assert json.loads((tmp_path / "run" / "eval" / "real2d.json").read_text())["n"] == 2


def test_evaluation_rows_are_visits_with_their_subjects(longitudinal2d, tmp_path):
    """A longitudinal test split (2 subjects of 2 visits): one row per visit (case), each naming
    its subject; ``n`` counts visits, ``subjects`` patients."""
    fit(tmp_path / "run", [longitudinal2d], train_overrides={"steps": 1, "validate_every": 0})
    result = evaluate_run(tmp_path / "run", longitudinal2d.path, device="cpu", write=False)
    assert [c["case_id"] for c in result["cases"]] == ["case12", "case13", "case14", "case15"]
    assert [c["subject_id"] for c in result["cases"]] == ["subj6", "subj6", "subj7", "subj7"]
    assert result["n"] == 4 and result["subjects"] == 2


def test_slices_are_reassembled_in_slice_order(tmp_path):
    """A case whose slices are stored out of order and interleaved with another case."""
    rng = np.random.default_rng(0)
    images = rng.random((5, 4, 16, 16), dtype=np.float32)
    labels = rng.integers(0, 4, (5, 16, 16), dtype=np.uint8)
    rows = [{"case_id": c, "slice": s, "split": "test", "source": "t", "spacing_z": 2.0, "spacing_y": 0.5,
             "spacing_x": 0.5} for c, s in [("a", 7), ("b", 0), ("a", 3), ("a", 5), ("b", 1)]]
    with StoreWriter(tmp_path / "s", dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, 16, 16),
                     spacing=(1, 1, 1), normalisation={}, provenance={}, synthetic=False) as writer:
        writer.append(images, labels, rows)
    cases = list(case_volumes(writer.store))
    assert [(c, i.tolist(), sp) for c, i, sp in cases] == [("a", [2, 3, 0], (2.0, 0.5, 0.5)),
                                                             ("b", [1, 4], (2.0, 0.5, 0.5))]


def test_unet_3d_and_resume_equals_uninterrupted(store3d, tmp_path):
    fit(tmp_path / "full", [store3d], train_overrides={"steps": 3, "batch": 1, "checkpoint_every": 1})
    fit(tmp_path / "cut", [store3d], train_overrides={"steps": 2, "batch": 1, "checkpoint_every": 1})
    fit(tmp_path / "cut", [store3d], train_overrides={"steps": 3, "batch": 1, "checkpoint_every": 1}, resume=True)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "step_00000003" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    result = evaluate_run(tmp_path / "full", store3d.path, device="cpu", write=False)
    assert result["dims"] == 3 and [c["case_id"] for c in result["cases"]] == ["case2#0", "case2#1"]  # 2 volumes, 1 id
    with pytest.raises(SynthmedError, match="changed model config"):
        fit(tmp_path / "cut", [store3d], model="unet", model_overrides={"filters": (8, 16, 16)}, resume=True)


@pytest.mark.parametrize("dims", [2, 3])
def test_swin_trains(tmp_path, dims):
    store = make_store(tmp_path / "s", dims=dims, n=3 if dims == 3 else 6, side=64, n_test=1 if dims == 3 else 2)
    steps = 1 if dims == 3 else 2
    fit(tmp_path / "run", [store], model="swin", train_overrides={"steps": steps, "batch": 1, "aug": dims == 2})
    result = evaluate_run(tmp_path / "run", store.path, device="cpu", write=False)
    assert result["network"] == "swin" and result["n"] == 1 and 0 <= result["mean"]["WT"]["dice"] <= 1


def test_pretrain_on_synthetic_then_scarce_real(real2d, syn2d, tmp_path):
    fit(tmp_path / "ft", [real2d], pretrain=syn2d.path, pretrain_steps=2, subject_fraction=0.5)
    pre = json.loads((tmp_path / "ft" / "pretrain" / "run.json").read_text())
    assert pre["data"]["kind"] == "synthetic"
    info = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert info["training"]["pretrain"]["kind"] == "store" and info["data"]["subject_fraction"] == 0.5
    # from a finished run: the fine-tuning starts from its weights
    fit(tmp_path / "ft2", [real2d], pretrain=tmp_path / "ft" / "pretrain", train_overrides={"lr": 1e-12, "aug": False})
    a = load_file(str(tmp_path / "ft" / "pretrain" / "checkpoints" / "best" / "model.safetensors"))
    b = load_file(str(tmp_path / "ft2" / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    with pytest.raises(SynthmedError, match="differs from this run"):
        fit(tmp_path / "ft3", [real2d], pretrain=tmp_path / "ft" / "pretrain", model_overrides={"filters": (8, 8, 8)})


def test_relative_dice(real2d, syn2d, tmp_path):
    fit(tmp_path / "real", [real2d])
    fit(tmp_path / "syn", [syn2d])
    real = evaluate_run(tmp_path / "real", real2d.path, device="cpu")
    syn = evaluate_run(tmp_path / "syn", real2d.path, device="cpu")
    assert syn["train_set"]["kind"] == "synthetic"
    ratios = relative_dice(tmp_path / "syn" / "eval" / "real2d.json", tmp_path / "real" / "eval" / "real2d.json")
    for region in ("WT", "TC", "ET"):
        assert ratios[region] == pytest.approx(syn["mean"][region]["dice"] / real["mean"][region]["dice"])
    assert ratios["mean"] == pytest.approx(np.mean([ratios[r] for r in ("WT", "TC", "ET")]))
    with pytest.raises(SynthmedError, match="seed"):
        relative_dice(syn, dict(real, seed=1))
    with pytest.raises(SynthmedError, match="real data only"):
        relative_dice(real, syn)


def test_augmentation_is_seeded_and_keeps_labels_valid():
    images, labels = torch.rand(4, 4, 16, 16), torch.randint(0, 4, (4, 16, 16), dtype=torch.uint8)
    a = augment(images, labels, StepRandom(0, 5))
    b = augment(images, labels, StepRandom(0, 5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[1].dtype == torch.uint8
    same = AugmentOptions(rotate_deg=0, scale=(1, 1), p_affine=1, p_gamma=0, p_blur=0, p_noise=0)
    out = augment(images, labels, StepRandom(0, 5), same)
    assert torch.allclose(out[0], images, atol=1e-5) and torch.equal(out[1], labels)
    # two processes with half the batch each draw what one process draws (every augmentation on)
    every = AugmentOptions(p_affine=1, p_gamma=1, p_blur=1, p_noise=1)
    whole = augment(images, labels, StepRandom(0, 5), every)
    halves = [augment(images[r * 2 : r * 2 + 2], labels[r * 2 : r * 2 + 2], StepRandom(0, 5, rank=r, world_size=2),
                      every) for r in range(2)]
    assert torch.allclose(torch.cat([h[0] for h in halves]), whole[0], atol=1e-5)
    assert torch.equal(torch.cat([h[1] for h in halves]), whole[1])


def test_batched_blur_is_a_normalised_gaussian_per_sample():
    from synthmed.segmentation.augment import gaussian_blur

    impulse = torch.zeros(2, 1, 9, 9)
    impulse[:, 0, 4, 4] = 1
    out = gaussian_blur(impulse, torch.tensor([0.5, 1.0]))
    for i, sigma in enumerate((0.5, 1.0)):
        x = torch.arange(-4, 5.0)
        g = torch.exp(-(x**2) / (2 * sigma**2))
        g = g / g.sum()
        assert torch.allclose(out[i, 0], g[:, None] * g[None, :], atol=1e-6)
