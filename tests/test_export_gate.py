"""The privacy gate is bound to content: every way of walking around it is refused.

Each test builds a training store and a synthetic store whose provenance names it, then tries
one branch or attack: a saved audit used or refused (another store, a changed store, another
training store, the test split, no content hashes), a provenance without a usable training
store (none, relative, missing, changed), exporting from another working directory, and
mirrored / shifted copies (the pixel gate passes them; ``--similarity shift-flip`` does not).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from synthmed.data.fingerprint import store_hash
from synthmed.data.store import Store, StoreWriter
from synthmed.export import PrivacyGateError, export_store, training_provenance
from synthmed.evaluate import audit, audit_path
from tiny_stores import make_store

CHANNELS = ("t1", "t1ce", "t2", "flair")


def write_synthetic(path, train: Store, images: np.ndarray, provenance: dict) -> Store:
    """A synthetic store of ``images`` ``[n, C, H, W]`` (blank labels) with ``provenance``."""
    n = len(images)
    rows = [{"case_id": f"syn_{i:05d}", "slice": 0, "split": "train", "source": "g"} for i in range(n)]
    with StoreWriter(path, dims=2, channels=train.channels, sample_shape=train.sample_shape, spacing=train.spacing,
                     normalisation={}, provenance=provenance, synthetic=True) as w:
        w.append(images.astype(np.float32), np.zeros((n, *train.spatial_shape), np.uint8), rows)
    return w.store


def noise(n: int, shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)


@pytest.fixture
def train(tmp_path):
    return make_store(tmp_path / "data" / "train", n=8, side=16, n_test=2)


def with_copy(images: np.ndarray, train: Store, of: int, at: int = 0) -> np.ndarray:
    out = images.copy()
    out[at] = train.read([of])[0][0]
    return out


def inject(store: Store, images: np.ndarray) -> None:
    """The attack: replace the image chunks of ``store`` in place (store.json, samples.csv and
    its creation time stay as they were)."""
    other = write_synthetic(store.path.parent / ".inject", store, images, store.meta["provenance"])
    shutil.rmtree(store.path / "image")
    shutil.copytree(other.path / "image", store.path / "image")
    shutil.rmtree(other.path)


def test_audit_records_absolute_paths_and_content_hashes(train, tmp_path, monkeypatch):
    syn = write_synthetic(tmp_path / "syn", train, noise(4, train.sample_shape, 1), training_provenance(train))
    monkeypatch.chdir(tmp_path)
    result = audit(Store.open("syn"), Store.open("data/train"))
    assert result.synthetic_path == str(syn.path.resolve()) and result.train_path == str(train.path.resolve())
    assert result.extra["synthetic_hash"] == store_hash(syn.path) and result.extra["train_hash"] == store_hash(train.path)
    saved = json.loads(result.save(tmp_path / "a.json").read_text())
    assert saved["synthetic_hash"].startswith("sha256:") and saved["train_hash"] == result.extra["train_hash"]
    prov = syn.meta["provenance"]
    assert prov["trained_on"] == str(train.path.resolve()) and prov["trained_on_hash"] == store_hash(train.path)


def test_saved_audit_is_used_when_bound(train, tmp_path):
    syn = write_synthetic(tmp_path / "syn", train, noise(4, train.sample_shape, 1), training_provenance(train))
    audit(syn, train).save(audit_path(syn.path))
    result = export_store(syn, tmp_path / "out", fmt="nifti", progress=False)
    assert result.gate["source"] == "saved" and result.gate["n_above"] == 0
    assert result.gate["train"] == str(train.path.resolve())


def test_copy_injected_after_the_audit_is_refused(train, tmp_path):
    syn = write_synthetic(tmp_path / "syn", train, noise(4, train.sample_shape, 1), training_provenance(train))
    audit(syn, train).save(audit_path(syn.path))
    shutil.copy(audit_path(syn.path), tmp_path / "kept.json")
    created = syn.meta["created"]
    inject(syn, with_copy(noise(4, train.sample_shape, 1), train, of=1))
    syn = Store.open(syn.path)
    assert syn.meta["created"] == created and len(syn) == 4  # what the old gate compared: unchanged
    # the stale audit beside the store no longer fits: the gate audits again and finds the copy
    with pytest.raises(PrivacyGateError, match=r"1 of 4 synthetic samples are near copies.*train 1 "):
        export_store(syn, tmp_path / "out", fmt="nifti", progress=False)
    # the same audit given explicitly is refused for what it is
    with pytest.raises(PrivacyGateError, match="made for other content.*changed after the audit"):
        export_store(syn, tmp_path / "out", fmt="nifti", audit_file=tmp_path / "kept.json", progress=False)
    assert not (tmp_path / "out").exists()


def test_audit_of_another_store_is_refused(train, tmp_path):
    prov = training_provenance(train)
    clean = write_synthetic(tmp_path / "clean", train, noise(4, train.sample_shape, 1), prov)
    dirty = write_synthetic(tmp_path / "dirty", train, with_copy(noise(4, train.sample_shape, 2), train, of=3), prov)
    record = audit(clean, train).to_json()
    record["synthetic_created"] = dirty.meta["created"]  # what the old gate compared, forged
    (tmp_path / "clean.json").write_text(json.dumps(record))
    with pytest.raises(PrivacyGateError, match="made for other content"):
        export_store(dirty, tmp_path / "out", fmt="nnunet", audit_file=tmp_path / "clean.json", progress=False)


def test_audit_against_the_test_split_or_another_training_store_is_refused(train, tmp_path):
    # a copy of a *train* sample, audited against the test split only: that audit shows no near copy
    syn = write_synthetic(tmp_path / "syn", train, with_copy(noise(4, train.sample_shape, 1), train, of=2),
                          training_provenance(train))
    test_audit = audit(syn, train, train_split="test")
    assert test_audit.near_copies.size == 0
    test_audit.save(tmp_path / "test.json")
    with pytest.raises(PrivacyGateError, match="against the 'test' split, not the training split"):
        export_store(syn, tmp_path / "out", fmt="nifti", audit_file=tmp_path / "test.json", progress=False)
    other = make_store(tmp_path / "other", n=8, side=16, seed=5)
    audit(syn, other).save(tmp_path / "other.json")
    with pytest.raises(PrivacyGateError, match="measured against .*other.*not the generator's training store"):
        export_store(syn, tmp_path / "out", fmt="nifti", audit_file=tmp_path / "other.json", progress=False)
    # an audit without content hashes (an older synthmed's) is refused when named
    record = json.loads((tmp_path / "other.json").read_text())
    for key in ("synthetic_hash", "train_hash"):
        record.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(record))
    with pytest.raises(PrivacyGateError, match="records no content hashes"):
        export_store(syn, tmp_path / "out", fmt="nifti", audit_file=tmp_path / "old.json", progress=False)
    with pytest.raises(PrivacyGateError, match="audit file .*missing.json does not exist"):
        export_store(syn, tmp_path / "out", fmt="nifti", audit_file=tmp_path / "missing.json", progress=False)
    # a full audit against all samples (train included) is accepted
    audit(syn, train, train_split=None).save(tmp_path / "all.json")
    with pytest.raises(PrivacyGateError, match="1 of 4 synthetic samples are near copies"):
        export_store(syn, tmp_path / "out", fmt="nifti", audit_file=tmp_path / "all.json", progress=False)


def test_provenance_without_a_usable_training_store_is_refused(train, tmp_path):
    images = with_copy(noise(4, train.sample_shape, 1), train, of=0)
    # no trained_on: a saved audit beside the store does not make up for it
    orphan = write_synthetic(tmp_path / "orphan", train, images, {"run": "r"})
    decoy = write_synthetic(tmp_path / "decoy", train, noise(8, train.sample_shape, 9), {})
    audit(orphan, decoy).save(audit_path(orphan.path))  # an audit showing no near copy, against the wrong store
    with pytest.raises(PrivacyGateError, match="names no training store"):
        export_store(orphan, tmp_path / "out", fmt="nifti", progress=False)
    # a relative trained_on (an older synthmed's) would depend on the current directory
    relative = write_synthetic(tmp_path / "rel", train, images, {"trained_on": "data/train"})
    with pytest.raises(PrivacyGateError, match="relative path 'data/train'"):
        export_store(relative, tmp_path / "out", fmt="nifti", progress=False)
    # a training store that is gone, or that changed since the generator was trained on it
    prov = training_provenance(train)
    moved = write_synthetic(tmp_path / "moved", train, images, {**prov, "trained_on": str(tmp_path / "gone")})
    with pytest.raises(PrivacyGateError, match="gone .*does not exist"):
        export_store(moved, tmp_path / "out", fmt="nifti", progress=False)
    changed = write_synthetic(tmp_path / "changed", train, images, {**prov, "trained_on_hash": "sha256:0"})
    with pytest.raises(PrivacyGateError, match="changed since the generator was trained"):
        export_store(changed, tmp_path / "out", fmt="nifti", progress=False)
    assert not (tmp_path / "out").exists()
    # with a usable provenance the same images are audited and refused for their near copy
    ok = write_synthetic(tmp_path / "ok", train, images, prov)
    with pytest.raises(PrivacyGateError, match="near copies"):
        export_store(ok, tmp_path / "out", fmt="nifti", progress=False)


def test_export_from_another_directory_audits_the_real_training_store(tmp_path, monkeypatch):
    """A generator trained on ``train`` (relative path) in folder A; exporting from folder B,
    which holds another store called ``train``, still audits against A's."""
    from synthmed.generators.api import sample_run, train_generator

    a, b = tmp_path / "a", tmp_path / "b"
    make_store(a / "train", n=8, side=16, seed=0)
    make_store(b / "train", n=8, side=16, seed=7)
    monkeypatch.chdir(a)
    train_generator("train", "run", model="ddpm", preset="tiny", model_overrides={"train_timesteps": 100},
                    train_overrides={"steps": 1, "batch": 2}, progress=False)
    sampled = sample_run("run", "sampled", n=2, steps=2, batch=2, device="cpu", progress=False)
    prov = sampled.meta["provenance"]
    assert prov["trained_on"] == str((a / "train").resolve())
    assert prov["trained_on_hash"] == store_hash(a / "train")
    train_a = Store.open(a / "train")
    # a store carrying that provenance, with an exact copy of one of A's training slices
    syn = write_synthetic(a / "syn", train_a, with_copy(noise(3, train_a.sample_shape, 4), train_a, of=5), prov)
    monkeypatch.chdir(b)
    with pytest.raises(PrivacyGateError, match="near copies.*train 5 "):
        export_store(syn.path, b / "out", fmt="nifti", progress=False)
    assert not (b / "out").exists()


def smooth(n: int, side: int, seed: int) -> np.ndarray:
    """Smooth random fields (σ = 2 px), ``[n, 4, side, side]`` in [0, 1] on a zero background
    3 px wide (like a brain in its field of view): no symmetry to hide behind."""
    rng = np.random.default_rng(seed)
    fields = gaussian_filter(rng.standard_normal((n, 4, side, side)), sigma=(0, 0, 2, 2))
    fields = (fields - fields.min()) / (fields.max() - fields.min())
    border = np.zeros((side, side))
    border[3:-3, 3:-3] = 1
    return (fields * border).astype(np.float32)


def test_mirrored_or_shifted_copy_passes_pixel_gate_and_not_shift_flip(tmp_path):
    images = smooth(6, 32, 0)
    rows = [{"case_id": f"c{i}", "slice": 0, "split": "train", "source": "t"} for i in range(6)]
    with StoreWriter(tmp_path / "train", dims=2, channels=CHANNELS, sample_shape=(4, 32, 32), spacing=(1, 1, 1),
                     normalisation={}, provenance={}, synthetic=False) as w:
        w.append(images, np.zeros((6, 32, 32), np.uint8), rows)
    train = w.store
    prov = training_provenance(train)
    mirrored = images[2, :, :, ::-1]
    shifted = np.zeros_like(images[4])
    shifted[:, 2:, :] = images[4, :, :-2, :]  # 2 px along y
    syn_images = np.concatenate([smooth(2, 32, 1), mirrored[None], shifted[None]])
    syn = write_synthetic(tmp_path / "syn", train, syn_images, prov)
    passed = export_store(syn, tmp_path / "pixel", fmt="nifti", progress=False)
    assert passed.gate["similarity"] == "pixel" and passed.gate["max"] < 0.95
    with pytest.raises(PrivacyGateError, match=r"2 of 4 .*over shifts and mirror.*synthetic \d ~ train \d"):
        export_store(syn, tmp_path / "tolerant", fmt="nifti", similarity="shift-flip", progress=False)
    # a saved pixel audit does not stand in for a shift-flip one; a saved shift-flip audit does
    audit(syn, train).save(audit_path(syn.path))
    with pytest.raises(PrivacyGateError, match="near copies"):
        export_store(syn, tmp_path / "tolerant", fmt="nifti", similarity="shift-flip", progress=False)
    saved = audit(syn, train, similarity="shift-flip")
    assert saved.shift_flip[1][2:].tolist() == [2, 4]
    saved.save(audit_path(syn.path))
    with pytest.raises(PrivacyGateError, match="2 of 4"):
        export_store(syn, tmp_path / "tolerant", fmt="nifti", similarity="shift-flip", progress=False)
    assert not (tmp_path / "tolerant").exists()


def test_cli_export_refuses_a_stale_audit_with_one_red_line(train, tmp_path):
    import subprocess
    import sys

    syn = write_synthetic(tmp_path / "syn", train, noise(4, train.sample_shape, 1), training_provenance(train))
    audit(syn, train).save(tmp_path / "a.json")
    inject(syn, with_copy(noise(4, train.sample_shape, 1), train, of=1))
    proc = subprocess.run([sys.executable, "-m", "synthmed", "export", str(syn.path), str(tmp_path / "out"),
                           "--audit", str(tmp_path / "a.json"), "--device", "cpu", "--no-progress"],
                          capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "made for other content" in lines[0]


def test_cli_shift_flip_audit_then_export(tmp_path):
    from typer.testing import CliRunner

    from synthmed import cli_evaluate
    from synthmed.cli import app
    from synthmed.metrics.shift_flip import DEFAULT_MAX_SHIFT

    assert cli_evaluate.DEFAULT_MAX_SHIFT == DEFAULT_MAX_SHIFT
    images = smooth(4, 32, 3)
    rows = [{"case_id": f"c{i}", "slice": 0, "split": "train", "source": "t"} for i in range(4)]
    with StoreWriter(tmp_path / "train", dims=2, channels=CHANNELS, sample_shape=(4, 32, 32), spacing=(1, 1, 1),
                     normalisation={}, provenance={}, synthetic=False) as w:
        w.append(images, np.zeros((4, 32, 32), np.uint8), rows)
    syn = write_synthetic(tmp_path / "syn", w.store, np.concatenate([smooth(1, 32, 4), images[1:2, :, :, ::-1]]),
                          training_provenance(w.store))
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "memorization", "--train", str(tmp_path / "train"), "--synthetic",
                                 str(syn.path), "--similarity", "shift-flip", "--max-shift", "1", "--device", "cpu",
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_above"] == 0 and summary["shift_flip"] == {"max_shift": 1, "max": pytest.approx(1.0, abs=1e-5),
                                                                 "n_above": 1}
    refused = runner.invoke(app, ["export", str(syn.path), str(tmp_path / "out"), "--similarity", "shift-flip",
                                  "--max-shift", "1", "--no-progress"])
    assert isinstance(refused.exception, PrivacyGateError) and "1 of 2" in str(refused.exception)
    passed = runner.invoke(app, ["export", str(syn.path), str(tmp_path / "out"), "--no-progress"])
    assert passed.exit_code == 0 and "saved audit" in passed.stdout
