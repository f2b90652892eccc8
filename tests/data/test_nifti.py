import nibabel as nib
import numpy as np
import pytest

from synthmed.data.nifti import load_nifti, save_nifti, spacing_from_affine
from synthmed.errors import DataError


def test_load_transposes_to_zyx_and_reorients_to_ras(tmp_path):
    xyz = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    ras = np.diag([1.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(xyz, ras), tmp_path / "ras.nii.gz")
    lps = np.diag([-1.0, -2.0, 3.0, 1.0])
    lps[:3, 3] = [3.0, 8.0, 0.0]  # same world positions as `ras` after flipping x and y
    nib.save(nib.Nifti1Image(xyz[::-1, ::-1].copy(), lps), tmp_path / "lps.nii.gz")
    a, aff_a = load_nifti(tmp_path / "ras.nii.gz")
    b, aff_b = load_nifti(tmp_path / "lps.nii.gz")
    assert a.shape == (6, 5, 4)
    np.testing.assert_array_equal(a, xyz.transpose(2, 1, 0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(aff_a, aff_b)
    assert spacing_from_affine(aff_a) == (3.0, 2.0, 1.0)


def test_round_trip_3d_and_4d(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.random((6, 5, 4), dtype=np.float32)
    multi = rng.random((3, 6, 5, 4), dtype=np.float32)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    save_nifti(tmp_path / "v.nii.gz", vol, affine)
    save_nifti(tmp_path / "m.nii", multi, affine)
    assert nib.load(tmp_path / "m.nii").shape == (4, 5, 6, 3)
    np.testing.assert_array_equal(load_nifti(tmp_path / "v.nii.gz")[0], vol)
    np.testing.assert_array_equal(load_nifti(tmp_path / "m.nii")[0], multi)


def test_bad_files_raise_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.nii.gz: file not found"):
        load_nifti(tmp_path / "missing.nii.gz")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not a nifti at all")
    with pytest.raises(DataError, match="garbage.nii.gz: cannot read NIfTI"):
        load_nifti(garbage)
    vol = np.ones((6, 5, 4), np.float32)
    vol[1, 2, 3] = np.nan
    save_nifti(tmp_path / "nan.nii.gz", vol, np.eye(4))
    with pytest.raises(DataError, match="nan.nii.gz: 1 NaN or Inf voxels"):
        load_nifti(tmp_path / "nan.nii.gz")


def test_nifti2_gz_and_big_endian_files_read_like_nifti1(tmp_path):
    xyz = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    nib.save(nib.Nifti2Image(xyz, np.eye(4)), tmp_path / "two.nii.gz")
    big = nib.Nifti1Image(xyz.astype(">i2"), np.eye(4))
    nib.save(big, tmp_path / "big.nii.gz")
    for name in ("two.nii.gz", "big.nii.gz"):
        np.testing.assert_array_equal(load_nifti(tmp_path / name)[0], xyz.transpose(2, 1, 0))


def test_truncated_gzip_is_a_data_error(tmp_path):
    save_nifti(tmp_path / "v.nii.gz", np.ones((6, 5, 4), np.float32), np.eye(4))
    data = (tmp_path / "v.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.nii.gz: cannot read NIfTI"):
        load_nifti(tmp_path / "cut.nii.gz")
