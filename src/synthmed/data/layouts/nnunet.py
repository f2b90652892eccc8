"""nnU-Net raw dataset layout (v2, and v1 ``dataset.json`` files).

::

    SRC/
      dataset.json
          v2: "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
              "labels": {"background": 0, "edema": 1, "non-enhancing": 2, "enhancing": 3}
              or region-based: {"background": 0, "whole tumor": [1, 2, 3],
                                "tumor core": [2, 3], "enhancing tumor": 3},
              "file_ending": ".nii.gz"
          v1: "modality": {"0": "FLAIR", ...}, "labels": {"0": "background", "1": "edema", ...}
      imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ...   one 3D file per channel
      labelsTr/<case>.nii.gz

Channel names map to canonical channels case-insensitively (``names.CHANNEL_ALIASES``), label
names to canonical labels (``names.map_labels``; region-based labels are derived from region
membership). Only NIfTI file endings are supported. Hidden files are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.layouts.base import CaseSource, ChannelFile
from synthmed.data.layouts.names import index_table, map_channels, map_labels, read_dataset_json
from synthmed.errors import DataError

LAYOUT_HELP = (
    "the nnU-Net layout is dataset.json (channel_names or modality, labels) + "
    "imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ... + labelsTr/<case>.nii.gz"
)

#: ``<case>_XXXX`` image file stems.
CHANNEL_STEM = re.compile(r"^(?P<case>.+)_(?P<index>\d{4})$")


def _file_ending(data: dict, meta: Path) -> str:
    """The dataset's NIfTI file ending (``.nii.gz`` when not given)."""
    ending = data.get("file_ending", ".nii.gz")
    if ending not in (".nii.gz", ".nii"):
        raise DataError(
            f'file_ending {ending!r} is not supported: only ".nii.gz" and ".nii" files can be read', path=meta
        )
    return ending


def _files(folder: Path, ending: str) -> dict[str, Path]:
    """Visible files of ``folder`` ending in ``ending``, by name without the ending."""
    return {
        p.name[: -len(ending)]: p
        for p in sorted(folder.iterdir())
        if p.name.endswith(ending) and not p.name.startswith(".") and p.is_file()
    }


def discover(src: Path) -> list[CaseSource]:
    """One `CaseSource` per case found in ``imagesTr`` or ``labelsTr`` (unsorted).

    Raises:
        DataError: no ``dataset.json``, ``imagesTr`` or ``labelsTr``; malformed
            ``dataset.json``; unmappable channel or label names; unsupported file ending;
            image files not named ``<case>_XXXX``.
    """
    meta = src / "dataset.json"
    if not meta.is_file():
        raise DataError(f"no dataset.json: {LAYOUT_HELP}", path=src)
    for sub in ("imagesTr", "labelsTr"):
        if not (src / sub).is_dir():
            raise DataError(f"no {sub} folder: {LAYOUT_HELP}", path=src)
    data = read_dataset_json(meta)
    key = "channel_names" if "channel_names" in data else "modality"
    if key not in data:
        raise DataError('no "channel_names" (v2) or "modality" (v1) in dataset.json', path=meta)
    if "labels" not in data:
        raise DataError('no "labels" in dataset.json', path=meta)
    names = index_table(data[key], key=key, path=meta)
    channel_index = map_channels(names, path=meta)
    label_map = map_labels(data["labels"], path=meta)
    ending = _file_ending(data, meta)

    images: dict[str, dict[int, Path]] = {}
    misnamed = []
    for stem, path in _files(src / "imagesTr", ending).items():
        match = CHANNEL_STEM.match(stem)
        if match is None:
            misnamed.append(path.name)
        else:
            images.setdefault(match["case"], {})[int(match["index"])] = path
    if misnamed:
        raise DataError(
            f"image files not named <case>_XXXX{ending}: {', '.join(misnamed[:5])}"
            + (f" and {len(misnamed) - 5} more" if len(misnamed) > 5 else ""),
            path=src / "imagesTr",
        )
    labels = _files(src / "labelsTr", ending)

    sources = []
    for case in sorted(set(images) | set(labels)):
        files = images.get(case, {})
        problems: list[tuple[str, Path]] = []
        channels = []
        for channel in CANONICAL_CHANNELS:
            index = channel_index[channel]
            path = src / "imagesTr" / f"{case}_{index:04d}{ending}"
            if index not in files:
                message = f"missing modality {channel} ({names[index]!r} in dataset.json): expected {path.name}"
                problems.append((f"{message} in this folder", path.parent))
            channels.append(ChannelFile(channel, path))
        extra = sorted(set(files) - set(names))
        if extra:
            listed = ", ".join(files[i].name for i in extra)
            message = f"unexpected channel files {listed}: dataset.json names {len(names)} channels"
            problems.append((message, files[extra[0]].parent))
        label = src / "labelsTr" / f"{case}{ending}"
        if case not in labels:
            problems.append((f"missing label: expected {label.name} in this folder", label.parent))
        sources.append(
            CaseSource(
                id=case,
                layout="nnunet",
                channels=tuple(channels),
                label=label,
                label_map=tuple(sorted(label_map.items())),
                label_set="dataset.json",
                problems=tuple(problems),
            )
        )
    return sources
