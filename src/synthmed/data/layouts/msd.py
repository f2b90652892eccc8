"""Medical Segmentation Decathlon layout (``Task01_BrainTumour``): one 4D image per case.

::

    SRC/
      dataset.json        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
                          "labels": {"0": "background", "1": "edema",
                                     "2": "non-enhancing tumor", "3": "enhancing tumour"}
      imagesTr/BRATS_001.nii.gz     4D, channels last in the file, in "modality" order
      labelsTr/BRATS_001.nii.gz     3D

The case id is the file name without ``.nii[.gz]``. Channels and labels are mapped to
canonical by the names in ``dataset.json`` (see ``names.map_channels`` / ``names.map_labels``);
without a ``dataset.json`` (or without those keys) the Task01 defaults above are used:
labels 1 = edema → 2, 2 = non-enhancing → 1, 3 = enhancing → 3. Hidden files (the tarball's
``._*`` files) are ignored.
"""

from __future__ import annotations

from pathlib import Path

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.layouts.base import CaseSource, ChannelFile
from synthmed.data.layouts.files import nifti_files, unique_files
from synthmed.data.layouts.names import index_table, map_channels, map_labels, read_dataset_json
from synthmed.errors import DataError

#: Task01_BrainTumour channel order, used when dataset.json has no "modality".
MSD_MODALITIES: dict[int, str] = {0: "FLAIR", 1: "T1w", 2: "T1gd", 3: "T2w"}

#: Task01_BrainTumour labels → canonical, used when dataset.json has no "labels".
MSD_LABELS: dict[int, int] = {0: 0, 1: 2, 2: 1, 3: 3}

LAYOUT_HELP = (
    "the MSD layout is dataset.json + imagesTr/<case>.nii.gz (4D, one channel per modality) "
    "+ labelsTr/<case>.nii.gz"
)


def _mappings(src: Path) -> tuple[dict[int, str], dict[str, int], dict[int, int]]:
    """``(modality names, canonical → file channel, file label → canonical)`` from dataset.json."""
    names, labels = MSD_MODALITIES, MSD_LABELS
    meta = src / "dataset.json"
    if meta.is_file():
        data = read_dataset_json(meta)
        if "modality" in data:
            names = index_table(data["modality"], key="modality", path=meta)
        if "labels" in data:
            labels = map_labels(data["labels"], path=meta)
    return names, map_channels(names, path=meta), labels


def discover(src: Path) -> list[CaseSource]:
    """One `CaseSource` per image or label file (unsorted; ``discover_cases`` sorts and checks).

    Raises:
        DataError: no ``imagesTr`` or ``labelsTr`` folder, a malformed ``dataset.json``,
            unmappable channel or label names, or two files for one case id.
    """
    for sub in ("imagesTr", "labelsTr"):
        if not (src / sub).is_dir():
            raise DataError(f"no {sub} folder: {LAYOUT_HELP}", path=src)
    names, channel_index, label_map = _mappings(src)
    images = unique_files(nifti_files(src / "imagesTr"), folder=src / "imagesTr")
    labels = unique_files(nifti_files(src / "labelsTr"), folder=src / "labelsTr")
    sources = []
    for case in sorted(set(images) | set(labels)):
        problems = []
        image = images.get(case)
        if image is None:
            image = src / "imagesTr" / f"{case}.nii.gz"
            problems.append((f"missing image: expected {case}.nii.gz (or .nii) in this folder", image.parent))
        label = labels.get(case)
        if label is None:
            label = src / "labelsTr" / f"{case}.nii.gz"
            problems.append((f"missing label: expected {case}.nii.gz (or .nii) in this folder", label.parent))
        channels = tuple(
            ChannelFile(channel, image, index=channel_index[channel], count=len(names))
            for channel in CANONICAL_CHANNELS
        )
        sources.append(
            CaseSource(
                id=case,
                layout="msd",
                channels=channels,
                label=label,
                label_map=tuple(sorted(label_map.items())),
                label_set="MSD",
                problems=tuple(problems),
            )
        )
    return sources
