"""synthmed export: nnU-Net / BraTS / PNG structure, anonymity, and the privacy gate on synthetic stores."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from metrics.test_memorization import synthetic_copy

from synthmed.data.layouts.brats import discover as discover_brats
from synthmed.data.layouts.nnunet import discover as discover_nnunet
from synthmed.data.store import StoreWriter
from synthmed.export import TEXT_FIELDS, PrivacyGateError, export_store
from synthmed.evaluate import audit, audit_path


def _headers_blank(folder) -> None:
    for path in folder.rglob("*.nii.gz"):
        header = nib.load(path).header
        assert all(bytes(header[name].tobytes()).strip(b"\x00 ") == b"" for name in TEXT_FIELDS), path


def test_nnunet_export_structure_and_round_trip(store2d, tmp_path):
    result = export_store(store2d, tmp_path / "nn", fmt="nnunet", progress=False)
    out = tmp_path / "nn"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "t1", "1": "t1ce", "2": "t2", "3": "flair"}
    assert meta["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3], "enhancing tumor": [3]}
    assert meta["regions_class_order"] == [2, 1, 3] and meta["file_ending"] == ".nii.gz"
    train_cases = sorted(p.name[: -len(".nii.gz")] for p in (out / "labelsTr").iterdir())
    assert meta["numTraining"] == len(train_cases) == 3 and result.cases == 4  # 3 train + 1 test source case
    images = sorted(p.name for p in (out / "imagesTr").iterdir())
    assert images == sorted(f"{c}_{k:04d}.nii.gz" for c in train_cases for k in range(4))
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == ["case_00003.nii.gz"]
    source_ids = set(store2d.samples["case_id"])
    assert not any(sid in p.name for p in out.rglob("*") for sid in source_ids)
    _headers_blank(out)
    for name in train_cases:  # consecutive labels 0..3, same grid as the images
        label = np.asarray(nib.load(out / "labelsTr" / f"{name}.nii.gz").dataobj)
        assert set(np.unique(label)) <= {0, 1, 2, 3} and label.shape == nib.load(out / "imagesTr" / f"{name}_0000.nii.gz").shape
    # our own nnU-Net reader reads it back to the stored samples (slices of source case 0 = samples 0, 1)
    case = next(c for c in discover_nnunet(out) if c.id == "case_00000").load()
    images_s, labels_s = store2d.read([0, 1])
    np.testing.assert_allclose(case.images, images_s.transpose(1, 0, 2, 3), atol=1e-6)
    np.testing.assert_array_equal(case.label, labels_s)


def test_privacy_gate_blocks_planted_copy(store2d, tmp_path):
    syn = synthetic_copy(tmp_path / "syn", store2d, copy_of=1)
    with pytest.raises(PrivacyGateError, match=r"1 of 6 synthetic samples are near copies.*threshold 0.95.*train 1 "):
        export_store(syn, tmp_path / "out", fmt="nnunet", progress=False)
    assert not (tmp_path / "out").exists()
    result = export_store(syn, tmp_path / "out", fmt="nifti", allow_near_copies=True, progress=False)
    assert result.gate["checked"] is False and (tmp_path / "out" / "syn_00000" / "syn_00000_seg.nii.gz").is_file()
    # a saved audit beside the store is used (and its values decide, at the threshold given)
    audit(syn, store2d).save(audit_path(syn.path))
    with pytest.raises(PrivacyGateError, match="near copies"):
        export_store(syn, tmp_path / "png.png", fmt="png")
    ok = export_store(syn, tmp_path / "png.png", fmt="png", threshold=1.0)
    assert ok.gate["source"] == "saved" and (tmp_path / "png.png").read_bytes()[:4] == b"\x89PNG"


def test_gate_computes_audit_and_requires_a_training_store(store3d, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, *store3d.sample_shape)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, *store3d.spatial_shape)).astype(np.uint8)
    rows = [{"case_id": f"x{i}", "slice": -1, "split": "train", "source": "g"} for i in range(2)]

    def write(name, provenance):
        with StoreWriter(tmp_path / name, dims=3, channels=store3d.channels, sample_shape=store3d.sample_shape,
                         spacing=(2.0, 1.0, 1.0), normalisation={}, provenance=provenance, synthetic=True) as w:
            w.append(images, labels, rows)
        return w.store

    clean = write("clean", {"run": "r", "trained_on": str(store3d.path)})
    result = export_store(clean, tmp_path / "brats", fmt="nifti", progress=False)
    assert result.gate["source"] == "computed" and result.gate["n_above"] == 0 and result.cases == 2
    case = discover_brats(tmp_path / "brats")[1].load()
    np.testing.assert_array_equal(case.label, labels[1])
    assert case.spacing == (2.0, 1.0, 1.0)
    _headers_blank(tmp_path / "brats")
    orphan = write("orphan", {"run": "r"})
    with pytest.raises(PrivacyGateError, match="names no training store.*--allow-near-copies"):
        export_store(orphan, tmp_path / "o", fmt="nifti", progress=False)


def test_cli_export_refuses_near_copies_with_one_red_line(store2d, tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from synthmed.cli import app

    syn = synthetic_copy(tmp_path / "syn", store2d, copy_of=0)
    proc = subprocess.run([sys.executable, "-m", "synthmed", "export", str(syn.path), str(tmp_path / "nn"),
                           "--format", "nnunet", "--device", "cpu"], capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "near copies" in lines[0] and "threshold 0.95" in lines[0] and "--allow-near-copies" in lines[0]
    assert not (tmp_path / "nn").exists()
    ok = CliRunner().invoke(app, ["export", str(syn.path), str(tmp_path / "nn"), "--format", "nnunet",
                                  "--allow-near-copies", "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "nn" / "dataset.json").is_file() and "skipped" in ok.stdout
