"""Layout readers: each layout gives the same canonical cases; each bad input a clear error."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.layouts import LAYOUTS, CaseSource, detect_layout, discover_cases
from synthmed.errors import DataError

DATASETS = {
    "brats_dir": ("brats", "BRATS_IDS"),
    "msd_dir": ("msd", "MSD_IDS"),
    "nnunet_dir": ("nnunet", "NNUNET_IDS"),
    "nnunet_regions_dir": ("nnunet", "NNUNET_IDS"),
    "nnunet_v1_dir": ("nnunet", "NNUNET_IDS"),
    "csv_manifest": ("csv", "CSV_IDS"),
}


def _case(sources: list[CaseSource], case: str) -> CaseSource:
    return next(s for s in sources if s.id == case)


def _load_error(src: Path, case: str, layout: str = "auto") -> str:
    """The message of the DataError that loading ``case`` raises; the other cases still load."""
    sources = discover_cases(src, layout)
    for source in sources:
        if source.id != case:
            source.load()
    with pytest.raises(DataError) as info:
        _case(sources, case).load()
    assert info.value.case == case
    return str(info.value)


# -- every layout reads the same phantom ------------------------------------------------------


@pytest.mark.parametrize("fixture", list(DATASETS))
@pytest.mark.parametrize("explicit", [False, True], ids=["auto", "explicit"])
def test_layout_reads_canonical_cases(fixture, explicit, request, phantoms, kit):
    layout, ids = DATASETS[fixture]
    ids = getattr(kit, ids)
    src = request.getfixturevalue(fixture)
    sources = discover_cases(src, layout if explicit else "auto")
    assert [s.id for s in sources] == list(ids)
    assert all(s.layout == layout for s in sources)
    for source, phantom in zip(sources, phantoms):
        case = source.load()
        assert case.id == source.id
        assert case.channels == CANONICAL_CHANNELS
        assert case.images.dtype == np.float32 and case.images.shape == (4, *kit.SHAPE)
        for k, name in enumerate(CANONICAL_CHANNELS):
            np.testing.assert_array_equal(case.images[k], phantom.images[name], err_msg=f"{fixture} {name}")
        assert case.label.dtype == np.uint8
        np.testing.assert_array_equal(case.label, phantom.label, err_msg=fixture)
        assert set(np.unique(case.label)) == {0, 1, 2, 3}
        np.testing.assert_allclose(case.spacing, (1.5, 1.1, 1.0))
        np.testing.assert_allclose(case.affine, kit.AFFINE, atol=1e-6)


@pytest.mark.parametrize("fixture", list(DATASETS))
def test_detect_layout(fixture, request):
    layout, _ = DATASETS[fixture]
    assert detect_layout(request.getfixturevalue(fixture)) == layout


def test_case_source_is_picklable_and_lists_its_files(brats_dir, msd_dir, kit):
    brats = discover_cases(brats_dir)[0]
    assert pickle.loads(pickle.dumps(brats)) == brats
    assert {p.name for p in brats.files()} == {f"{kit.BRATS_IDS[0]}_{s}.nii.gz" for s in (*CANONICAL_CHANNELS, "seg")}
    msd = discover_cases(msd_dir)[0]
    assert [p.name for p in msd.files()] == [f"{kit.MSD_IDS[0]}.nii.gz", f"{kit.MSD_IDS[0]}.nii.gz"]
    assert [p.parent.name for p in msd.files()] == ["imagesTr", "labelsTr"]


def test_non_ras_file_is_reoriented(tmp_path, phantoms, kit):
    """The same case stored LPS (x and y flipped, affine diag(-1, -1, 1)) reads as the RAS one."""
    flip = np.array([[-1, 0, 0, kit.SHAPE[2] - 1], [0, -1, 0, kit.SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    lps_affine = kit.AFFINE @ flip
    assert np.allclose(np.sign(np.diag(lps_affine)[:3]), (-1, -1, 1))
    case = "BraTS2021_00000"
    (tmp_path / case).mkdir()
    for name, array in (*phantoms[0].images.items(), ("seg", kit.TO_BRATS[phantoms[0].label])):
        data = array.transpose(2, 1, 0)[::-1, ::-1, :]  # (x, y, z), x and y reversed
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), lps_affine), tmp_path / case / f"{case}_{name}.nii.gz")
    loaded = discover_cases(tmp_path, "brats")[0].load()
    for k, name in enumerate(CANONICAL_CHANNELS):
        np.testing.assert_array_equal(loaded.images[k], phantoms[0].images[name])
    np.testing.assert_array_equal(loaded.label, phantoms[0].label)
    np.testing.assert_allclose(loaded.affine, kit.AFFINE, atol=1e-6)


# -- bad cases: DataError from load(), naming the case and the file -------------------------


def test_unreadable_file(brats_dir, kit):
    case = kit.BRATS_IDS[0]
    (brats_dir / case / f"{case}_t1.nii.gz").write_bytes(b"this is not a NIfTI file" * 20)
    message = _load_error(brats_dir, case)
    assert f"{case}_t1.nii.gz" in message and "cannot read" in message


def test_truncated_file(brats_dir, kit):
    case = kit.BRATS_IDS[1]
    path = brats_dir / case / f"{case}_flair.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _load_error(brats_dir, case)
    assert f"{case}_flair.nii.gz" in message


def test_truncated_uncompressed_file(brats_dir, kit):
    case = kit.BRATS_IDS[2]  # stored as .nii
    path = brats_dir / case / f"{case}_t2.nii"
    path.write_bytes(path.read_bytes()[:1000])
    assert f"{case}_t2.nii" in _load_error(brats_dir, case)


def test_missing_modality(brats_dir, kit):
    case = kit.BRATS_IDS[0]
    (brats_dir / case / f"{case}_t1ce.nii.gz").unlink()
    message = _load_error(brats_dir, case)
    assert "missing modality t1ce" in message
    assert f"expected {case}_t1ce.nii.gz (or .nii)" in message
    assert str(brats_dir / case) in message


def test_missing_label(brats_dir, kit):
    case = kit.BRATS_IDS[1]
    (brats_dir / case / f"{case}_seg.nii.gz").unlink()
    message = _load_error(brats_dir, case)
    assert "missing label" in message and f"{case}_seg.nii.gz" in message


def test_t1_does_not_match_t1ce(brats_dir, kit):
    """Removing t1 must not let the t1ce file stand in for it."""
    case = kit.BRATS_IDS[0]
    (brats_dir / case / f"{case}_t1.nii.gz").unlink()
    assert "missing modality t1:" in _load_error(brats_dir, case)


def test_shape_mismatch(brats_dir, kit):
    case = kit.BRATS_IDS[0]
    kit.write_nifti(brats_dir / case / f"{case}_t2.nii.gz", np.zeros((8, 10, 11), np.float32))
    message = _load_error(brats_dir, case)
    assert f"{case}_t2.nii.gz" in message
    assert "shape (11, 10, 8) differs from t1's (12, 10, 8)" in message


def test_label_shape_mismatch(brats_dir, kit):
    case = kit.BRATS_IDS[0]
    kit.write_nifti(brats_dir / case / f"{case}_seg.nii.gz", np.zeros((7, 10, 12), np.uint8))
    message = _load_error(brats_dir, case)
    assert f"{case}_seg.nii.gz" in message and "label shape" in message


def test_affine_mismatch(brats_dir, phantoms, kit):
    case = kit.BRATS_IDS[0]
    shifted = kit.AFFINE.copy()
    shifted[0, 3] += 2.0
    kit.write_nifti(brats_dir / case / f"{case}_flair.nii.gz", phantoms[0].images["flair"], shifted)
    message = _load_error(brats_dir, case)
    assert f"{case}_flair.nii.gz" in message and "affine differs from t1's" in message


def test_affine_within_tolerance_is_accepted(brats_dir, phantoms, kit):
    case = kit.BRATS_IDS[0]
    nudged = kit.AFFINE.copy()
    nudged[0, 3] += 1e-4  # float32 header rounding level
    kit.write_nifti(brats_dir / case / f"{case}_flair.nii.gz", phantoms[0].images["flair"], nudged)
    discover_cases(brats_dir)[0].load()


def test_label_values_outside_set(brats_dir, phantoms, kit):
    case = kit.BRATS_IDS[2]
    label = kit.TO_BRATS[phantoms[2].label]
    label[0, 0, 0] = 5
    label[0, 0, 1] = 3  # 3 is not a BraTS value either
    kit.write_nifti(brats_dir / case / f"{case}_SEG.nii", label)
    message = _load_error(brats_dir, case)
    assert f"{case}_SEG.nii" in message
    assert "label values {3, 5} outside the BraTS set {0, 1, 2, 4}" in message


def test_float_label_must_be_integer_valued(csv_manifest, phantoms, kit):
    case = kit.CSV_IDS[0]
    label = phantoms[0].label.astype(np.float32)
    label[1, 1, 1] = 0.5
    kit.write_nifti(csv_manifest.parent / "labels" / f"{case}.nii.gz", label)
    message = _load_error(csv_manifest, case)
    assert f"{case}.nii.gz" in message and "non-integer label values [0.5]" in message


def test_nan_voxels(brats_dir, phantoms, kit):
    case = kit.BRATS_IDS[1]
    image = phantoms[1].images["t1ce"].copy()
    image[2, 3, 4] = np.nan
    image[2, 3, 5] = np.inf
    kit.write_nifti(brats_dir / case / f"{case}_t1ce.nii.gz", image)
    message = _load_error(brats_dir, case)
    assert f"{case}_t1ce.nii.gz" in message and "2 NaN or Inf voxels" in message


def test_msd_wrong_channel_count(msd_dir, phantoms, kit):
    case = kit.MSD_IDS[1]
    kit.write_nifti(msd_dir / "imagesTr" / f"{case}.nii.gz", np.stack([phantoms[1].images["t1"]] * 3))
    message = _load_error(msd_dir, case)
    assert f"{case}.nii.gz" in message and "expected a 4D image with 4 channels" in message and "got 3" in message


def test_msd_label_values_outside_set(msd_dir, kit):
    case = kit.MSD_IDS[0]
    kit.write_nifti(msd_dir / "labelsTr" / f"{case}.nii.gz", np.full(kit.SHAPE, 4, np.uint8))
    message = _load_error(msd_dir, case)
    assert "labelsTr" in message and "label values {4} outside the MSD set {0, 1, 2, 3}" in message


def test_nnunet_missing_channel_file(nnunet_dir, kit):
    case = kit.NNUNET_IDS[2]
    (nnunet_dir / "imagesTr" / f"{case}_0002.nii.gz").unlink()  # T1ce in this dataset's order
    message = _load_error(nnunet_dir, case)
    assert "missing modality t1ce" in message and f"{case}_0002.nii.gz" in message


def test_csv_missing_file(csv_manifest, kit):
    case = kit.CSV_IDS[1]
    (csv_manifest.parent / "images" / f"{case}-t2.nii.gz").unlink()
    message = _load_error(csv_manifest, case)
    assert "missing modality t2" in message and f"{case}-t2.nii.gz" in message


def test_csv_empty_cell(csv_manifest, kit):
    text = csv_manifest.read_text().splitlines()
    text[1] = text[1].replace(f"images/{kit.CSV_IDS[0]}-flair.nii.gz", "")
    csv_manifest.write_text("\n".join(text) + "\n")
    message = _load_error(csv_manifest, kit.CSV_IDS[0])
    assert "missing modality flair" in message and csv_manifest.name in message


# -- dataset-level problems: DataError from discover_cases -----------------------------------


@pytest.mark.parametrize("layout", ["auto", *LAYOUTS[:3]])
def test_empty_folder(tmp_path, layout):
    empty = tmp_path / "empty_dataset"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"")
    with pytest.raises(DataError, match="empty") as info:
        discover_cases(empty, layout)
    assert "empty_dataset" in str(info.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        discover_cases(tmp_path / "nowhere")


def test_folder_without_cases(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.md").write_text("hello")
    with pytest.raises(DataError) as info:
        detect_layout(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "notes.txt" in message
    for layout in LAYOUTS:
        assert f"{layout}:" in message
    with pytest.raises(DataError, match="no BraTS case folders"):
        discover_cases(tmp_path, "brats")


def test_wrapper_folder_hint(brats_dir, tmp_path):
    wrapper = tmp_path / "download"
    shutil.move(brats_dir, wrapper / "MICCAI_BraTS2020_TrainingData")
    with pytest.raises(DataError, match="MICCAI_BraTS2020_TrainingData holds case folders"):
        discover_cases(wrapper, "brats")


def test_unknown_layout(brats_dir):
    with pytest.raises(DataError, match="unknown layout 'decathlon'"):
        discover_cases(brats_dir, "decathlon")


def test_csv_duplicate_ids(csv_manifest):
    lines = csv_manifest.read_text().splitlines()
    csv_manifest.write_text("\n".join([*lines, lines[2]]) + "\n")
    with pytest.raises(DataError) as info:
        discover_cases(csv_manifest)
    assert "duplicate case ids: P002" in str(info.value) and csv_manifest.name in str(info.value)


def test_csv_missing_column(csv_manifest):
    lines = csv_manifest.read_text().splitlines()
    lines[0] = lines[0].replace("t1ce", "contrast")
    csv_manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        discover_cases(csv_manifest)
    assert "missing column t1ce" in str(info.value) and csv_manifest.name in str(info.value)


def test_csv_accepts_id_and_seg_columns(csv_manifest, phantoms):
    lines = csv_manifest.read_text().splitlines()
    lines[0] = lines[0].replace("case_id", "ID").replace("label", "Seg")
    csv_manifest.write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(discover_cases(csv_manifest)[0].load().label, phantoms[0].label)


def test_msd_duplicate_ids(msd_dir):
    shutil.copy(msd_dir / "imagesTr" / "BRATS_002.nii.gz", msd_dir / "imagesTr" / "BRATS_002.nii")
    with pytest.raises(DataError, match=r"duplicate case ids.*BRATS_002 \(BRATS_002.nii, BRATS_002.nii.gz\)"):
        discover_cases(msd_dir)


def test_nnunet_unmappable_channel_names(nnunet_dir, kit):
    data = json.loads((nnunet_dir / "dataset.json").read_text())
    data["channel_names"] = {"0": "FLAIR", "1": "ADC", "2": "T1ce", "3": "T2"}
    kit.write_dataset_json(nnunet_dir, **data)
    with pytest.raises(DataError) as info:
        discover_cases(nnunet_dir)
    message = str(info.value)
    assert "dataset.json" in message and "'ADC' (channel 1)" in message and "no channel for t1" in message


def test_nnunet_unmappable_labels(nnunet_dir, kit):
    data = json.loads((nnunet_dir / "dataset.json").read_text())
    data["labels"] = {"background": 0, "liver": 1, "tumor": 2}
    kit.write_dataset_json(nnunet_dir, **data)
    with pytest.raises(DataError, match="cannot map label names.*'liver'"):
        discover_cases(nnunet_dir)


def test_nnunet_incomplete_regions(nnunet_regions_dir, kit):
    data = json.loads((nnunet_regions_dir / "dataset.json").read_text())
    del data["labels"]["tumor core"]
    kit.write_dataset_json(nnunet_regions_dir, **data)
    with pytest.raises(DataError, match="missing: TC"):
        discover_cases(nnunet_regions_dir)


def test_malformed_dataset_json(nnunet_dir, msd_dir):
    for root in (nnunet_dir, msd_dir):
        (root / "dataset.json").write_text('{"channel_names": {"0": "T1",}')
        with pytest.raises(DataError, match="malformed dataset.json") as info:
            discover_cases(root)
        assert str(root / "dataset.json") in str(info.value)


def test_nnunet_unsupported_file_ending(nnunet_dir, kit):
    data = json.loads((nnunet_dir / "dataset.json").read_text())
    data["file_ending"] = ".mha"
    kit.write_dataset_json(nnunet_dir, **data)
    with pytest.raises(DataError, match="file_ending '.mha' is not supported"):
        discover_cases(nnunet_dir, "nnunet")


def test_msd_without_dataset_json_uses_task01_defaults(msd_dir, phantoms):
    (msd_dir / "dataset.json").unlink()
    case = discover_cases(msd_dir, "msd")[0].load()
    np.testing.assert_array_equal(case.images[0], phantoms[0].images["t1"])
    np.testing.assert_array_equal(case.label, phantoms[0].label)


def test_detect_3d_images_not_named_like_nnunet(tmp_path, kit):
    kit.write_nifti(tmp_path / "imagesTr" / "case1.nii.gz", np.zeros(kit.SHAPE, np.float32))
    kit.write_dataset_json(tmp_path, name="x")
    with pytest.raises(DataError, match="neither"):
        detect_layout(tmp_path)


def test_detect_non_csv_file(tmp_path):
    path = tmp_path / "cases.txt"
    path.write_text("case_id\n")
    with pytest.raises(DataError, match="not a .csv"):
        detect_layout(path)


def test_gzip_sanity(brats_dir, kit):
    """The fixtures really write gzip for .nii.gz (so the truncation test truncates gzip)."""
    case = kit.BRATS_IDS[0]
    with gzip.open(brats_dir / case / f"{case}_t1.nii.gz") as handle:
        assert len(handle.read()) > 0
