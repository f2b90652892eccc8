"""Tiny datasets in each layout, all holding the same three phantom cases.

Every phantom case is 8×10×12 voxels (``[D, H, W]``) with four channels and a small tumour
(NCR core, ET ring, ED shell), so each layout's reader must give the same canonical `Case`.
Files are written with nibabel directly (not through synthmed), in the file's
``(x, y, z)`` order.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

SHAPE = (8, 10, 12)  # [D, H, W]
#: RAS+ voxel-to-mm affine: spacing x 1.0, y 1.1, z 1.5 mm.
AFFINE = np.array([[1.0, 0, 0, -5.0], [0, 1.1, 0, -6.0], [0, 0, 1.5, -7.0], [0, 0, 0, 1]])
CHANNELS = ("t1", "t1ce", "t2", "flair")

#: canonical → file values.
TO_BRATS = np.array([0, 1, 2, 4], dtype=np.uint8)
TO_MSD = np.array([0, 2, 1, 3], dtype=np.uint8)  # MSD / nnU-Net BraTS: 1 ED, 2 NCR, 3 ET

BRATS_IDS = ("BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_003")
MSD_IDS = ("BRATS_001", "BRATS_002", "BRATS_003")
NNUNET_IDS = ("BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002")
CSV_IDS = ("P001", "P002", "P003")


@dataclass
class Phantom:
    """One case in canonical form: ``images[channel]`` float32 ``[D, H, W]``, ``label`` canonical."""

    images: dict[str, np.ndarray]
    label: np.ndarray


def make_phantom(index: int) -> Phantom:
    """A deterministic phantom; the tumour centre moves with ``index``."""
    rng = np.random.default_rng(index)
    d, h, w = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    centre = (4, 5, 5 + index)
    r = np.sqrt((d - centre[0]) ** 2 + (h - centre[1]) ** 2 + (w - centre[2]) ** 2)
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[r < 3.2] = 2
    label[r < 2.2] = 3
    label[r < 1.2] = 1
    images = {
        name: (100.0 * (k + 1) + 10.0 * label + rng.normal(0, 5, SHAPE)).astype(np.float32)
        for k, name in enumerate(CHANNELS)
    }
    return Phantom(images, label)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """Write ``[D, H, W]`` or ``[C, D, H, W]`` as NIfTI (file order ``(x, y, z[, c])``)."""
    order = (2, 1, 0) if array.ndim == 3 else (3, 2, 1, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array.transpose(order)), affine), path)
    return path


def write_dataset_json(root: Path, **fields: object) -> None:
    (root / "dataset.json").write_text(json.dumps(fields, indent=1))


@pytest.fixture
def phantoms() -> list[Phantom]:
    return [make_phantom(i) for i in range(3)]


@pytest.fixture
def brats_dir(tmp_path: Path, phantoms: list[Phantom]) -> Path:
    """BraTS 2020 naming; the third case uses ``.nii`` and an upper-case ``_SEG`` suffix."""
    root = tmp_path / "brats"
    for i, (case, p) in enumerate(zip(BRATS_IDS, phantoms)):
        ext = ".nii" if i == 2 else ".nii.gz"
        for name in CHANNELS:
            write_nifti(root / case / f"{case}_{name}{ext}", p.images[name])
        seg = "SEG" if i == 2 else "seg"
        write_nifti(root / case / f"{case}_{seg}{ext}", TO_BRATS[p.label])
    (root / "name_mapping.csv").write_text("BraTS_2020_subject_ID\n")  # ignored, as in the download
    return root


@pytest.fixture
def msd_dir(tmp_path: Path, phantoms: list[Phantom]) -> Path:
    """Task01_BrainTumour: 4D FLAIR, T1w, T1gd, T2w images, MSD labels, hidden ``._`` files."""
    root = tmp_path / "Task01_BrainTumour"
    order = ("flair", "t1", "t1ce", "t2")
    for case, p in zip(MSD_IDS, phantoms):
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", np.stack([p.images[c] for c in order]))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", TO_MSD[p.label])
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "labelsTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    write_dataset_json(
        root,
        name="BRATS",
        modality={"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        labels={"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
    )
    return root


def _write_nnunet(root: Path, phantoms: list[Phantom], names: dict[str, str]) -> None:
    """imagesTr/<case>_XXXX.nii.gz in the order of ``names`` ({"0": "FLAIR", ...}), MSD label values."""
    canonical = {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "t1gd": "t1ce", "t1w": "t1", "t2w": "t2"}
    for case, p in zip(NNUNET_IDS, phantoms):
        for index, name in names.items():
            channel = canonical[name.lower()]
            write_nifti(root / "imagesTr" / f"{case}_{int(index):04d}.nii.gz", p.images[channel])
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", TO_MSD[p.label])


@pytest.fixture
def nnunet_dir(tmp_path: Path, phantoms: list[Phantom]) -> Path:
    """nnU-Net v2 with plain labels and a non-canonical channel order."""
    root = tmp_path / "Dataset001_BraTS"
    names = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
    _write_nnunet(root, phantoms, names)
    write_dataset_json(
        root,
        channel_names=names,
        labels={"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumor": 3},
        numTraining=3,
        file_ending=".nii.gz",
    )
    return root


@pytest.fixture
def nnunet_regions_dir(tmp_path: Path, phantoms: list[Phantom]) -> Path:
    """nnU-Net v2 with region-based labels, as nnU-Net's own BraTS 2021 conversion writes."""
    root = tmp_path / "Dataset137_BraTS2021"
    names = {"0": "T1", "1": "T1ce", "2": "T2", "3": "Flair"}
    _write_nnunet(root, phantoms, names)
    write_dataset_json(
        root,
        channel_names=names,
        labels={"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
        regions_class_order=[1, 2, 3],
        numTraining=3,
        file_ending=".nii.gz",
    )
    return root


@pytest.fixture
def nnunet_v1_dir(tmp_path: Path, phantoms: list[Phantom]) -> Path:
    """nnU-Net v1 (Task001_BrainTumour converted from MSD): "modality" and value → name labels."""
    root = tmp_path / "Task001_BrainTumour"
    names = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    _write_nnunet(root, phantoms, names)
    write_dataset_json(
        root,
        modality=names,
        labels={"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
    )
    return root


@pytest.fixture
def csv_manifest(tmp_path: Path, phantoms: list[Phantom]) -> Path:
    """A manifest with relative paths; float32 label files in BraTS meaning (ET 4, or 3 in the last case)."""
    root = tmp_path / "manifest"
    rows = []
    for i, (case, p) in enumerate(zip(CSV_IDS, phantoms)):
        row = {"case_id": case}
        for name in CHANNELS:
            write_nifti(root / "images" / f"{case}-{name}.nii.gz", p.images[name])
            row[name] = f"images/{case}-{name}.nii.gz"
        values = np.array([0, 1, 2, 3 if i == 2 else 4], dtype=np.float32)
        write_nifti(root / "labels" / f"{case}.nii.gz", values[p.label])
        row["label"] = f"labels/{case}.nii.gz"
        row["site"] = "A"  # extra columns are ignored
        rows.append(row)
    path = root / "cases.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def kit() -> SimpleNamespace:
    """This module's constants and writers, for tests (importing ``conftest`` by name is fragile)."""
    return SimpleNamespace(
        SHAPE=SHAPE,
        AFFINE=AFFINE,
        CHANNELS=CHANNELS,
        TO_BRATS=TO_BRATS,
        TO_MSD=TO_MSD,
        BRATS_IDS=BRATS_IDS,
        MSD_IDS=MSD_IDS,
        NNUNET_IDS=NNUNET_IDS,
        CSV_IDS=CSV_IDS,
        make_phantom=make_phantom,
        write_nifti=write_nifti,
        write_dataset_json=write_dataset_json,
    )
