"""nearest_correlation against a scipy.stats.pearsonr loop; audits of planted copies and of a store against itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
from tiny_stores import make_store

from synthmed.data.store import Store, StoreWriter
from synthmed.errors import SynthmedError
from synthmed.evaluate import MemorizationAudit, audit, plot_gallery, plot_histogram
from synthmed.metrics.memorization import nearest_correlation, nearest_embedding


def _reference(syn: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference study's way: pearsonr pair by pair."""
    values, indices = [], []
    for s in syn:
        r = [scipy.stats.pearsonr(s.ravel(), t.ravel())[0] for t in train]
        values.append(max(r))
        indices.append(int(np.argmax(r)))
    return np.array(values), np.array(indices)


def test_nearest_correlation_matches_pearsonr_loop():
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(23, 2, 8, 8)).astype(np.float32)
    syn = rng.uniform(size=(9, 2, 8, 8)).astype(np.float32)
    syn[3] = 0.9 * train[17] + 0.05 * rng.uniform(size=(2, 8, 8))  # a near copy
    ref_v, ref_i = _reference(syn, train)
    values, indices = nearest_correlation(syn, train, block=4, train_batch=5)  # several blocks and batches
    np.testing.assert_allclose(values, ref_v, atol=1e-5)
    np.testing.assert_array_equal(indices, ref_i)
    assert indices[3] == 17 and values[3] > 0.95
    cv, ci = nearest_correlation(syn, train, mode="channel", block=4, train_batch=5)
    assert cv.shape == ci.shape == (9, 2)
    for c in range(2):
        rv, ri = _reference(syn[:, c], train[:, c])
        np.testing.assert_allclose(cv[:, c], rv, atol=1e-5)
        np.testing.assert_array_equal(ci[:, c], ri)


def test_constant_images_and_shape_mismatch():
    rng = np.random.default_rng(1)
    train = rng.uniform(size=(5, 1, 4, 4)).astype(np.float32)
    syn = np.stack([np.full((1, 4, 4), 0.3, np.float32), train[2]])
    values, indices = nearest_correlation(syn, train)
    assert values[0] == 0.0 and indices[0] == 0  # zero variance: correlation 0, first index
    assert values[1] == pytest.approx(1.0, abs=1e-6) and indices[1] == 2
    with pytest.raises(SynthmedError, match="must match"):
        nearest_correlation(syn, rng.uniform(size=(5, 2, 4, 4)))


def test_store_against_itself_and_streaming(store2d, tmp_path):
    values, indices = nearest_correlation(store2d, store2d, train_batch=3)
    np.testing.assert_allclose(values, 1.0, atol=1e-6)
    np.testing.assert_array_equal(indices, np.arange(len(store2d)))
    images, _ = store2d.read(slice(None))
    v2, i2 = nearest_correlation(images, (store2d, store2d.indices("train")))
    np.testing.assert_array_equal(i2[:6], np.arange(6))
    dist, idx = nearest_embedding(images.reshape(len(images), -1), images.reshape(len(images), -1)[::-1])
    np.testing.assert_array_equal(idx, np.arange(len(images))[::-1])


def synthetic_copy(path, train: Store, copy_of: int, n: int = 6, seed: int = 3, shift: int = 0) -> Store:
    """A synthetic store of smooth noise with sample 0 a near copy of ``train`` sample ``copy_of``
    (moved ``shift`` pixels along x, zeros shifted in)."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(n, *train.sample_shape)).astype(np.float32)
    real, label = train.read([copy_of])
    copy = np.clip(real[0] + 0.01 * rng.standard_normal(real[0].shape), 0, 1)
    if shift:
        copy = np.concatenate([np.zeros_like(copy[..., :shift]), copy[..., :-shift]], axis=-1)
    images[0] = copy
    labels = np.repeat(label, n, axis=0)
    rows = [{"case_id": f"syn_{i:05d}", "slice": 0 if train.dims == 2 else -1, "split": "train", "source": "test"}
            for i in range(n)]
    with StoreWriter(path, dims=train.dims, channels=train.channels, sample_shape=train.sample_shape,
                     spacing=train.spacing, normalisation={}, provenance={"run": "r", "trained_on": str(train.path)},
                     synthetic=True) as w:
        w.append(images, labels, rows)
    return w.store


def test_audit_finds_planted_copy(store2d, tmp_path):
    syn = synthetic_copy(tmp_path / "syn", store2d, copy_of=4)
    result = audit(syn, store2d, threshold=0.9)
    assert result.near_copies.tolist() == [0] and result.indices[0] == 4
    assert result.channel_values.shape == (6, 4) and (result.channel_indices[0] == 4).all()
    summary = result.summary()
    assert summary["n_above"] == 1 and summary["fraction_above"] == pytest.approx(1 / 6)
    assert sum(summary["histogram"]["counts"]) == 6
    saved = json.loads(result.save(tmp_path / "audit.json").read_text())
    assert saved["samples"][0]["train"] == 4 and "correlation_flair" in saved["samples"][0]
    loaded = MemorizationAudit.load(tmp_path / "audit.json")
    for name in ("values", "indices", "channel_values", "channel_indices"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert loaded.channels == tuple(result.channels) and loaded.summary() == summary
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(SynthmedError, match="not a synthmed memorization audit"):
        MemorizationAudit.load(tmp_path / "other.json")
    assert plot_histogram(result, tmp_path / "h.png").stat().st_size > 0
    assert plot_gallery(result, syn, store2d, tmp_path / "g.png", top_k=2).read_bytes()[:4] == b"\x89PNG"
    # test-split samples are not training data: a copy of one is not reported against the train split
    syn_test = synthetic_copy(tmp_path / "syn_t", store2d, copy_of=7)
    assert audit(syn_test, store2d).values[0] < 0.99


def test_audit_rejects_mismatched_stores(store2d, tmp_path):
    other = make_store(tmp_path / "big", side=8)
    with pytest.raises(SynthmedError, match="channels and sample sizes must match"):
        audit(other, store2d)


def test_cli_memorization_writes_audit_histogram_gallery(store2d, tmp_path):
    from typer.testing import CliRunner

    from synthmed import cli_evaluate
    from synthmed.cli import app
    from synthmed.evaluate import DEFAULT_THRESHOLD

    assert cli_evaluate.DEFAULT_THRESHOLD == DEFAULT_THRESHOLD
    syn = synthetic_copy(tmp_path / "syn", store2d, copy_of=2)
    result = CliRunner().invoke(app, ["evaluate", "memorization", "--train", str(store2d.path), "--synthetic",
                                      str(syn.path), "--threshold", "0.9", "--top-k", "2", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_above"] == 1 and summary["threshold"] == 0.9
    assert summary["audit"] == str(tmp_path / "syn-memorization.json")
    assert all((tmp_path / name).is_file() for name in ("syn-memorization-histogram.png", "syn-memorization-gallery.png"))


def test_audit_of_volumes_finds_the_copied_training_volume(store3d, tmp_path):
    """3D: whole-volume correlation; the copy of a training volume is its nearest, r ~ 1, flagged (API and CLI)."""
    from typer.testing import CliRunner

    from synthmed.cli import app

    syn = synthetic_copy(tmp_path / "syn", store3d, copy_of=1)
    assert syn.dims == 3 and syn.sample_shape == store3d.sample_shape == (4, 16, 16, 16)
    images, _ = syn.read(slice(None))
    train_idx = store3d.indices("train")
    train, _ = store3d.read(train_idx)
    ref_v, ref_i = _reference(images, train)  # pearsonr of the flattened volumes
    result = audit(syn, store3d, threshold=0.95)
    np.testing.assert_allclose(result.values, ref_v, atol=1e-5)
    np.testing.assert_array_equal(result.indices, train_idx[ref_i])
    assert result.indices[0] == 1 and result.values[0] > 0.99 and result.near_copies.tolist() == [0]
    assert (result.channel_indices[0] == 1).all() and (result.channel_values[0] > 0.99).all()
    assert result.values[1:].max() < 0.5  # the uniform-noise volumes are near nothing
    assert audit(synthetic_copy(tmp_path / "syn_t", store3d, copy_of=5), store3d).values[0] < 0.99  # a test volume
    shifted = synthetic_copy(tmp_path / "syn_s", store3d, copy_of=2, shift=1)  # a copy moved one voxel along x
    tolerant = audit(shifted, store3d, similarity="shift-flip", max_shift=1)
    moved, _ = shifted.read([0])
    back = np.concatenate([moved[0][..., 1:], np.zeros_like(moved[0][..., :1])], axis=-1)  # shifted back, 0 fill
    best = scipy.stats.pearsonr(back.ravel(), store3d.read([2])[0].ravel())[0]
    assert tolerant.shift_flip[1][0] == 2 and tolerant.shift_flip[0][0] == pytest.approx(best, abs=1e-5)
    assert tolerant.shift_flip[0][0] > tolerant.values[0] + 0.05  # (the zero column keeps it below 1 here)
    out = CliRunner().invoke(app, ["evaluate", "memorization", "--train", str(store3d.path), "--synthetic",
                                   str(syn.path), "--top-k", "2", "--device", "cpu", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["n_above"] == 1 and summary["max"] > 0.99
    assert (tmp_path / "syn-memorization-gallery.png").read_bytes()[:4] == b"\x89PNG"
