"""The built-in phantom: determinism, label structure, contrasts, files and atomic writing.

Small grids keep the file fast: ``SHAPE`` (40, 48, 48) voxels are the same 240 × 240 × 155 mm
field of view at ~4–5 mm.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.phantom import (
    DEFAULT_SHAPE,
    TISSUES,
    is_tumour_free,
    phantom_case,
    phantom_geometry,
    phantom_sample,
    phantom_tissues,
    write_phantom,
)
from synthmed.data.phantom import fields, template, writer
from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.outputs import NotOwnOutputError

SHAPE = (40, 48, 48)
CROSS = ndimage.generate_binary_structure(3, 1)
BRATS_TO_CANONICAL = {0: 0, 1: 1, 2: 2, 4: 3}


def test_same_seed_same_arrays_other_seed_other_arrays():
    a = phantom_case(0, seed=11, shape=SHAPE)
    b = phantom_case(0, seed=11, shape=SHAPE)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.label, b.label)
    c = phantom_case(0, seed=12, shape=SHAPE)
    assert not np.array_equal(a.images, c.images)
    d = phantom_case(1, seed=11, shape=SHAPE)
    assert not np.array_equal(a.images, d.images)
    assert a.id == "BraTS2021_00000" and d.id == "BraTS2021_00001"


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_tumour_labels_are_nested_and_all_present(index):
    case, tissues = phantom_sample(index, seed=3, shape=SHAPE, tissues=True)
    label, brain = case.label, tissues.brain
    assert case.label.dtype == np.uint8 and set(np.unique(label)) == {0, 1, 2, 3}
    assert not label[~brain].any(), "tumour outside the brain"
    # The necrotic core is wrapped in enhancing tumour: no NCR voxel touches a non-core voxel.
    core = np.isin(label, (1, 3))
    assert not (ndimage.binary_dilation(label == 1, CROSS) & ~core).any()
    # The core is wrapped in edema wherever it is inside the brain.
    assert not (ndimage.binary_dilation(core, CROSS) & brain & (label == 0)).any()
    # One whole tumour, not scattered islands.
    assert ndimage.label(label > 0)[1] == 1


def test_tumour_volumes_are_plausible():
    volumes = []
    for index in range(6):
        case = phantom_case(index, seed=5, shape=SHAPE)
        volumes.append((case.label > 0).sum() * np.prod(case.spacing) / 1000.0)  # cm³
    assert min(volumes) > 5.0 and max(volumes) < 200.0
    assert len({round(v) for v in volumes}) == len(volumes), "sizes should vary"


def test_tumour_free_case_is_the_same_anatomy_without_tumour():
    _, with_tumour = phantom_sample(2, seed=4, shape=SHAPE, tissues=True)
    case, without = phantom_sample(2, seed=4, shape=SHAPE, tumour=False, tissues=True)
    assert not case.label.any() and not without.fractions[3:].any()
    # Same warp away from the tumour: its mass effect and labels are local.
    brain = with_tumour.brain & without.brain
    same = (with_tumour.fractions == without.fractions).all(axis=0)
    assert 0.7 < same[brain].mean() < 1.0


def test_tumour_free_choice_is_per_case_and_seeded():
    assert not any(is_tumour_free(i, seed=1, fraction=0.0) for i in range(20))
    assert all(is_tumour_free(i, seed=1, fraction=1.0) for i in range(20))
    picks = [is_tumour_free(i, seed=1, fraction=0.5) for i in range(60)]
    assert 15 <= sum(picks) <= 45
    assert picks == [is_tumour_free(i, seed=1, fraction=0.5) for i in range(60)]
    assert picks != [is_tumour_free(i, seed=2, fraction=0.5) for i in range(60)]
    with pytest.raises(SynthmedError):
        is_tumour_free(0, seed=1, fraction=1.5)


def test_background_is_exactly_zero_and_brain_is_positive():
    case, tissues = phantom_sample(1, seed=0, shape=SHAPE, tissues=True)
    brain = tissues.brain
    assert case.images.dtype == np.float32 and case.images.shape == (4, *SHAPE)
    assert (case.images[:, ~brain] == 0).all()
    assert (case.images[:, brain] >= 1).all()
    assert np.array_equal((case.images > 0).any(axis=0), brain)
    assert np.array_equal(case.images, np.rint(case.images)) and case.images.max() < 32767
    # A skull-stripped brain with a margin: nothing touches the left, right, front or back faces.
    assert not brain[:, [0, -1], :].any() and not brain[:, :, [0, -1]].any()
    assert 0.1 < brain.mean() < 0.35
    fractions = tissues.fractions
    assert fractions.shape == (len(TISSUES), *SHAPE)
    np.testing.assert_allclose(fractions[:, brain].sum(axis=0), 1.0, atol=1e-5)
    assert not fractions[:, ~brain].any()
    assert np.array_equal(tissues["wm"], fractions[TISSUES.index("wm")])


def _class_means(case, tissues) -> dict[str, np.ndarray]:
    """Mean intensity per channel of voxels that are mostly (> 60 %) one tissue."""
    dominant = np.argmax(tissues.fractions, axis=0)
    mostly = tissues.fractions.max(axis=0) > 0.6
    means = {}
    for k, name in enumerate(TISSUES):
        voxels = (dominant == k) & mostly & tissues.brain
        assert voxels.sum() >= 5, f"too few {name} voxels"
        means[name] = case.images[:, voxels].mean(axis=1)
    return means


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_contrasts_follow_mri(seed):
    case, tissues = phantom_sample(seed, seed=seed, shape=SHAPE, tissues=True)
    m = {name: dict(zip(CANONICAL_CHANNELS, values)) for name, values in _class_means(case, tissues).items()}
    # T1: white matter brighter than grey matter, CSF dark.
    assert m["wm"]["t1"] > m["gm"]["t1"] > m["csf"]["t1"]
    # T1ce: like T1, enhancing rim brighter than anything, necrosis darker than grey matter.
    assert m["wm"]["t1ce"] > m["gm"]["t1ce"] > m["csf"]["t1ce"]
    assert m["et"]["t1ce"] > 1.2 * max(m[t]["t1ce"] for t in TISSUES if t != "et")
    assert m["ncr"]["t1ce"] < m["gm"]["t1ce"]
    # T2: CSF brightest of normal tissue, grey above white, edema bright.
    assert m["csf"]["t2"] > m["gm"]["t2"] > m["wm"]["t2"]
    assert m["ed"]["t2"] > m["gm"]["t2"]
    # FLAIR: CSF suppressed, edema the brightest normal-or-edema class.
    assert m["csf"]["flair"] < min(m["gm"]["flair"], m["wm"]["flair"])
    assert m["ed"]["flair"] > max(m["gm"]["flair"], m["wm"]["flair"], m["csf"]["flair"])
    # By label too, as a segmenter sees them.
    flair = case.images[3]
    assert flair[case.label == 2].mean() > flair[tissues.brain & (case.label == 0)].mean()


def test_geometry_is_ras_and_one_millimetre_by_default():
    spacing, affine = phantom_geometry(DEFAULT_SHAPE)
    assert spacing == (1.0, 1.0, 1.0)
    np.testing.assert_allclose(np.diag(affine), [1, 1, 1, 1])
    spacing, affine = phantom_geometry(SHAPE)
    np.testing.assert_allclose(spacing, (155 / 40, 5.0, 5.0))
    np.testing.assert_allclose(np.diag(affine)[:3], [5.0, 5.0, 155 / 40])
    case = phantom_case(0, seed=0, shape=SHAPE)
    assert case.spacing == spacing and np.array_equal(case.affine, affine)
    assert case.channels == CANONICAL_CHANNELS
    with pytest.raises(SynthmedError, match="at least 16"):
        phantom_geometry((8, 48, 48))


def test_bspline_weights_reproduce_linear_functions():
    """The warp writes its affine part as B-spline controls; that must be exact."""
    positions = np.linspace(-120.0, 120.0, 97)
    weights = fields.bspline_weights(positions, 11, -120.0, 240.0)
    controls = fields.control_positions(11, -120.0, 240.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(weights @ (3.0 * controls - 7.0), 3.0 * positions - 7.0, atol=1e-9)
    assert (weights >= 0).all()


def _read_case(root: Path, case_id: str) -> tuple[np.ndarray, np.ndarray, list[nib.Nifti1Image]]:
    """Images ``[4, D, H, W]`` and canonical labels of a written case, read with nibabel."""
    files = [root / case_id / f"{case_id}_{name}.nii.gz" for name in (*CANONICAL_CHANNELS, "seg")]
    imgs = [nib.load(f) for f in files]
    arrays = [np.asanyarray(img.dataobj).transpose(2, 1, 0) for img in imgs]
    seg = arrays[-1]
    assert set(np.unique(seg)) <= {0, 1, 2, 4}
    label = np.vectorize(BRATS_TO_CANONICAL.get)(seg).astype(np.uint8)
    return np.stack(arrays[:4]).astype(np.float32), label, imgs


def test_write_phantom_writes_brats_files(tmp_path):
    out = tmp_path / "phantom"
    ids = write_phantom(out, cases=3, seed=9, shape=SHAPE, tumour_free_fraction=0.5, progress=False)
    assert ids == [f"BraTS2021_{i:05d}" for i in range(3)]
    assert sorted(p.name for p in out.iterdir()) == [*ids, "phantom.json"]
    record = json.loads((out / "phantom.json").read_text())
    free = [i for i in range(3) if is_tumour_free(i, seed=9, fraction=0.5)]
    assert record["seed"] == 9 and record["cases"] == 3 and record["shape"] == list(SHAPE)
    assert record["tumour_free_fraction"] == 0.5 and "synthmed_version" in record
    assert record["tumour_free_cases"] == [ids[i] for i in free]
    for i, case_id in enumerate(ids):
        images, label, imgs = _read_case(out, case_id)
        assert imgs[0].shape == SHAPE[::-1] and imgs[0].get_data_dtype() == np.int16
        assert imgs[-1].get_data_dtype() == np.uint8
        np.testing.assert_allclose(imgs[0].affine, phantom_geometry(SHAPE)[1])
        expected = phantom_case(i, seed=9, shape=SHAPE, tumour=i not in free)
        assert np.array_equal(images, expected.images)
        assert np.array_equal(label, expected.label)
        if i in free:
            assert not label.any()
        else:
            assert set(np.unique(label)) == {0, 1, 2, 3}


def test_cases_do_not_depend_on_workers_or_case_count(tmp_path):
    """Case 1 is the same alone (in this process) and written by a 2-process pool with others."""
    out = tmp_path / "pool"
    write_phantom(out, cases=2, seed=6, shape=SHAPE, workers=2, progress=False)
    alone = phantom_case(1, seed=6, shape=SHAPE)
    images, label, _ = _read_case(out, "BraTS2021_00001")
    assert np.array_equal(images, alone.images) and np.array_equal(label, alone.label)


def test_existing_output_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "phantom"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        write_phantom(out, cases=1, seed=0, shape=SHAPE, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(NotOwnOutputError, match="replaces only"):  # not a phantom: --overwrite keeps it too
        write_phantom(out, cases=1, seed=0, shape=SHAPE, overwrite=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    write_phantom(out, cases=1, seed=0, shape=SHAPE, progress=False)  # an empty folder is free
    first = (out / "phantom.json").stat().st_ino
    write_phantom(out, cases=1, seed=0, shape=SHAPE, overwrite=True, progress=False)
    assert (out / "phantom.json").stat().st_ino != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom"]


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing_write(case, root, **options):
        calls.append(case.id)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real_write(case, root, **options)

    real_write = writer.write_brats_case
    monkeypatch.setattr(writer, "write_brats_case", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_phantom(tmp_path / "phantom", cases=3, seed=0, shape=SHAPE, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(SynthmedError):
        write_phantom(tmp_path / "a", cases=0, seed=0, shape=SHAPE, progress=False)
    with pytest.raises(SynthmedError):
        write_phantom(tmp_path / "b", cases=1, seed=0, shape=(10, 48, 48), progress=False)
    with pytest.raises(SynthmedError):
        write_phantom(tmp_path / "c", cases=1, seed=0, shape=SHAPE, tumour_free_fraction=-0.1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_phantom_tissues_matches_the_case():
    tissues = phantom_tissues(0, seed=2, shape=SHAPE)
    case = phantom_case(0, seed=2, shape=SHAPE)
    assert np.array_equal(tissues.brain, (case.images > 0).any(axis=0))
    # Labels are where their tissue fraction dominates, give or take the partial-volume edge.
    et = tissues["et"] > 0.5
    assert (case.label[et] == 3).mean() > 0.9


def test_template_matches_nilearn_loaders():
    """The bundled files are read as nilearn.datasets.load_mni152_* (resolution 1) would."""
    datasets = pytest.importorskip("nilearn.datasets")
    gm, wm, mask, affine = template.load_mni152()
    expected = [
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_wm_template(resolution=1),
        datasets.load_mni152_brain_mask(resolution=1),
    ]
    for ours, img in zip((gm, wm, mask), expected):
        np.testing.assert_allclose(ours, img.get_fdata(dtype=np.float32), atol=1e-6)
    np.testing.assert_allclose(affine, expected[0].affine)
