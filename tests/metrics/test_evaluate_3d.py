"""Fidelity of volumes: 2.5D features, 3D MS-SSIM diversity of synthetic and real pairs, slice consistency (API and CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_stores import make_store
from typer.testing import CliRunner

from synthmed.cli import app
from synthmed.data.store import Store, StoreWriter
from synthmed.evaluate import diversity, store_slice_consistency
from synthmed.metrics import compare_slice_consistency, ms_ssim_diversity


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Store]:
    """A real 3D store (8 volumes of 4 patients, the last 2 patients' 4 volumes in test) and a synthetic one: its 4 training
    volumes with the axial slices shuffled (the same slices, inconsistent neighbours)."""
    root = tmp_path_factory.mktemp("volumes")
    real = make_store(root / "real", dims=3, n=8, n_test=4)
    train = real.indices("train")
    images, labels = real.read(train)
    order = np.random.default_rng(0).permutation(images.shape[2])
    rows = [{"case_id": f"syn_{i:05d}", "slice": -1, "split": "train", "source": "test"} for i in range(len(train))]
    with StoreWriter(root / "syn", dims=3, channels=real.channels, sample_shape=real.sample_shape,
                     spacing=real.spacing, normalisation={"kind": "test"}, provenance={"made_by": "tests"},
                     synthetic=True) as writer:
        writer.append(images[:, :, order], labels[:, order], rows)
    return real, writer.store


def test_diversity_of_volumes_is_3d_ms_ssim_read_a_pair_at_a_time(volumes, monkeypatch):
    import synthmed.evaluate.fidelity as fidelity

    real, syn = volumes
    images, _ = real.read(slice(None))
    whole = ms_ssim_diversity(images, pairs=12, seed=1, spatial_dims=3, groups=real.subject_ids())
    out = diversity(real, pairs=12, seed=1)
    assert out["scales"] == 2 and out["pairs"] == 12
    assert out["ms_ssim"] == pytest.approx(whole["ms_ssim"], abs=1e-6)
    monkeypatch.setattr(fidelity, "DIVERSITY_BATCH_BYTES", 1)  # one pair per read
    assert diversity(real, pairs=12, seed=1)["ms_ssim"] == pytest.approx(whole["ms_ssim"], abs=1e-6)
    central = ms_ssim_diversity(images[:, :, 8], pairs=12, seed=1, groups=real.subject_ids())["ms_ssim"]
    assert abs(out["ms_ssim"] - central) > 1e-3  # not the central slices' 2D MS-SSIM
    test = real.indices("test")
    expected = ms_ssim_diversity(images[test], pairs=12, seed=1, spatial_dims=3, groups=real.subject_ids(test))
    assert diversity(real, indices=test, pairs=12, seed=1)["ms_ssim"] == pytest.approx(expected["ms_ssim"], abs=1e-6)


def test_store_slice_consistency_streams_the_metric_and_refuses_slices(volumes, store2d):
    real, syn = volumes
    test = real.indices("test")
    out = store_slice_consistency(syn, real, real_indices=test, batch_size=3)
    expected = compare_slice_consistency(syn.read(slice(None))[0], real.read(test)[0])
    assert out.keys() == expected.keys()
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    assert out["volumes"] == out["volumes_real"] == 4
    with pytest.raises(Exception, match="needs 3D stores"):
        store_slice_consistency(store2d, store2d)


def test_fidelity_of_volumes_in_json_and_in_the_printed_table(volumes, tmp_path):
    real, syn = volumes
    args = ["evaluate", "fidelity", "--real", str(real.path), "--synthetic", str(syn.path), "--weights",
            str(tmp_path / "enc"), "--encoder-steps", "2", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert "2.5D" in out["feature_space"] and "central axial, coronal and sagittal planes" in out["feature_space"]
    assert out["ms_ssim_of"] == "volumes (3D MS-SSIM)" and out["ms_ssim_scales"] == 2
    assert out["ms_ssim"] == pytest.approx(diversity(syn, pairs=100, seed=0)["ms_ssim"])
    test = real.indices("test")
    assert out["ms_ssim_real"] == pytest.approx(diversity(real, indices=test, pairs=100, seed=0)["ms_ssim"])
    assert out["ms_ssim_real_pairs"] == 100
    sc = out["slice_consistency"]
    assert sc == json.loads(json.dumps(store_slice_consistency(syn, real, real_indices=test)))  # floats round-trip
    assert sc["volumes"] == sc["volumes_real"] == 4 and sc["pairs"] == 4 * 4 * 15
    assert sc["correlation_ratio"] < 0.9 and sc["difference_ratio"] > 1.1  # shuffled slices are inconsistent
    printed = CliRunner().invoke(app, args, env={"COLUMNS": "200"})  # the encoder is reused
    assert printed.exit_code == 0, printed.output
    text = printed.stdout
    assert "MS-SSIM of real pairs" in text and "MS-SSIM of whole volumes (3D)" in text and "2.5D" in text
    line = next(row for row in text.splitlines() if "adjacent-slice correlation" in row)
    assert f"{sc['correlation']:.4g}" in line and f"{sc['correlation_real']:.4g}" in line
    assert f"ratio {sc['correlation_ratio']:.4g}" in line
    assert "Wasserstein" in text and "KS" in text and "percentile 95 (pairs)" in text
