"""Shift- and flip-tolerant memorization search against a brute-force scipy reference, and the
store content hash the audit records."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.stats

from synthmed.data.fingerprint import store_hash
from synthmed.evaluate import MemorizationAudit, audit
from synthmed.metrics.shift_flip import nearest_correlation_tolerant, shift_flip_variants, variant_shift
from tiny_stores import make_store


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[..., y, x] = image[..., y - dy, x - dx]``, zero where that is outside (np.roll + masking)."""
    out = np.roll(image, (dy, dx), axis=(-2, -1))
    h, w = image.shape[-2:]
    ys, xs = np.arange(h) - dy, np.arange(w) - dx
    out[..., (ys < 0) | (ys >= h), :] = 0
    out[..., :, (xs < 0) | (xs >= w)] = 0
    return out


def reference(syn: np.ndarray, train: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over mirror × shifts × training samples of scipy.stats.pearsonr, first index on ties."""
    best_v = np.full(len(syn), -np.inf)
    best_i = np.zeros(len(syn), np.int64)
    for m, image in enumerate(syn):
        for mirror in (False, True):
            base = image[..., ::-1] if mirror else image
            for dy in range(-s, s + 1):
                for dx in range(-s, s + 1):
                    v = shifted(base, dy, dx).ravel()
                    for j, t in enumerate(train):
                        r = scipy.stats.pearsonr(v, t.ravel())[0] if v.std() > 0 else 0.0
                        if r > best_v[m] + 1e-9:
                            best_v[m], best_i[m] = r, j
    return best_v, best_i


@pytest.mark.parametrize("spatial", [(10, 12), (4, 8, 9)])
def test_tolerant_search_matches_brute_force(spatial):
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(5, 2, *spatial)).astype(np.float32)
    syn = rng.uniform(size=(4, 2, *spatial)).astype(np.float32)
    syn[1] = shifted(train[3, :, ..., ::-1], 1, -2)  # a mirrored, shifted copy
    values, indices, variants = nearest_correlation_tolerant(syn, train, max_shift=2, block=7, train_batch=2)
    ref_v, ref_i = reference(syn, train, 2)
    np.testing.assert_allclose(values, ref_v, atol=1e-5)
    np.testing.assert_array_equal(indices, ref_i)
    assert indices[1] == 3 and values[1] > 0.5  # noise loses its border: r < 1
    mirrored, dy, dx = variant_shift(int(variants[1]), 2)
    assert (mirrored, dy, dx) == (True, -1, -2)  # the variant undoing the copy: mirror, then shift back
    np.testing.assert_allclose(shift_flip_variants(__import__("torch").from_numpy(syn[1:2]), 2)[0, variants[1]].numpy(),
                               shifted(syn[1, ..., ::-1], dy, dx), atol=0)


def test_variant_zero_is_the_image_and_an_exact_copy_reports_it():
    import torch

    x = torch.rand(3, 2, 8, 8)
    v = shift_flip_variants(x, 1)
    assert v.shape == (3, 18, 2, 8, 8) and torch.equal(v[:, 0], x)
    assert variant_shift(0, 1) == (False, 0, 0) and variant_shift(9, 1) == (True, 0, 0)
    train = x.numpy()
    values, indices, variants = nearest_correlation_tolerant(train, train, max_shift=1)
    np.testing.assert_allclose(values, 1.0, atol=1e-6)
    assert indices.tolist() == [0, 1, 2] and variants.tolist() == [0, 0, 0]


def test_audit_with_shift_flip_round_trips(store2d, tmp_path):
    result = audit(store2d, store2d, similarity="shift-flip", max_shift=1)
    assert (result.shift_flip[0] >= result.values - 1e-6).all()
    summary = result.summary()
    assert summary["similarity"] == "shift-flip" and summary["shift_flip"]["max_shift"] == 1
    loaded = MemorizationAudit.load(result.save(tmp_path / "a.json"))
    for a, b in zip(loaded.shift_flip, result.shift_flip):
        np.testing.assert_array_equal(a, b)
    assert loaded.max_shift == 1 and loaded.summary() == summary
    with pytest.raises(Exception, match="--similarity must be one of pixel, shift-flip"):
        audit(store2d, store2d, similarity="rotation")


def test_store_hash_depends_on_content_only(tmp_path):
    store = make_store(tmp_path / "a", n=4, side=8)
    h = store_hash(store.path)
    shutil.copytree(store.path, tmp_path / "elsewhere" / "b")
    assert store_hash(tmp_path / "elsewhere" / "b") == h  # not the location
    (store.path / ".DS_Store").write_bytes(b"finder")
    chunk = next(p for p in (store.path / "image").rglob("*") if p.is_file() and p.name != "zarr.json")
    import os

    os.utime(chunk, (0, 0))
    assert store_hash(store.path) == h  # not file times or hidden files
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    assert store_hash(store.path) != h  # one bit of one chunk
    csv = store.path / "samples.csv"
    shutil.copytree(tmp_path / "elsewhere" / "b", tmp_path / "c")
    csv = tmp_path / "c" / "samples.csv"
    csv.write_text(csv.read_text().replace(",train,", ",test,", 1))
    assert store_hash(tmp_path / "c") != h  # the splits are content
