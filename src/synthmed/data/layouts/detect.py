"""Which layout a dataset is in, and the entry point that lists its cases.

Detection rules, in order:

- a ``.csv`` file → ``csv``;
- a folder holding ``longitudinal.csv`` (a longitudinal phantom cohort) → ``csv``, read
  through that manifest (so its subjects and months come along);
- a folder with ``imagesTr/``: image files named ``<case>_0000.nii[.gz]`` → ``nnunet``;
  otherwise 4D images → ``msd``;
- a folder of case folders holding ``*_{t1,t1ce,t2,flair,seg}.nii[.gz]`` → ``brats``;
- anything else → a `DataError` that says what was found and what each layout looks like.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nibabel as nib

from synthmed.data.layouts import brats, manifest, msd, nnunet
from synthmed.data.layouts.base import LAYOUTS, CaseSource
from synthmed.data.layouts.files import nifti_stem
from synthmed.errors import DataError

#: One line per layout, for error messages.
LAYOUT_DESCRIPTIONS: dict[str, str] = {
    "brats": "a folder of case folders, each with <case>_{t1,t1ce,t2,flair,seg}.nii.gz",
    "msd": "dataset.json + imagesTr/<case>.nii.gz (4D: one channel per modality) + labelsTr/<case>.nii.gz",
    "nnunet": "dataset.json + imagesTr/<case>_0000.nii.gz, <case>_0001.nii.gz, ... + labelsTr/<case>.nii.gz",
    "csv": "a .csv file with columns case_id, t1, t1ce, t2, flair, label (optional: subject_id, months), "
           f"or a folder holding {manifest.LONGITUDINAL_MANIFEST}",
}

_READERS = {"brats": brats.discover, "msd": msd.discover, "nnunet": nnunet.discover, "csv": manifest.discover}


def _layouts_help() -> str:
    return "; ".join(f"{name}: {text}" for name, text in LAYOUT_DESCRIPTIONS.items())


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _images_tr_layout(src: Path) -> str:
    """``nnunet`` or ``msd`` for a folder with ``imagesTr/``, from its image files."""
    images = [p for p in _visible(src / "imagesTr") if nifti_stem(p.name) is not None and p.is_file()]
    if not images:
        raise DataError(
            f"imagesTr holds no NIfTI files; expected msd: {LAYOUT_DESCRIPTIONS['msd']}, "
            f"or nnunet: {LAYOUT_DESCRIPTIONS['nnunet']}",
            path=src / "imagesTr",
        )
    if all(nnunet.CHANNEL_STEM.match(nifti_stem(p.name) or "") for p in images):
        return "nnunet"
    try:
        ndim = len(nib.load(images[0]).shape)
    except Exception:  # unreadable: let the MSD reader report it for its case
        return "msd"
    if ndim == 4:
        return "msd"
    raise DataError(
        f"imagesTr holds {ndim}D images not named <case>_XXXX (e.g. {images[0].name}): neither "
        f"msd ({LAYOUT_DESCRIPTIONS['msd']}) nor nnunet ({LAYOUT_DESCRIPTIONS['nnunet']})",
        path=src / "imagesTr",
    )


def detect_layout(src: Path) -> str:
    """The layout of ``src``: one of :data:`LAYOUTS`.

    Raises:
        DataError: ``src`` does not exist, is an empty folder, or matches no layout; the
            message says what was found and what each layout looks like.
    """
    src = Path(src)
    if not src.exists():
        raise DataError("not found", path=src)
    if src.is_file():
        if src.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"a file that is not a .csv manifest; expected one of: {_layouts_help()}", path=src)
    entries = _visible(src)
    if not entries:
        raise DataError("folder is empty: no cases found", path=src)
    if (src / manifest.LONGITUDINAL_MANIFEST).is_file():
        return "csv"
    if (src / "imagesTr").is_dir():
        return _images_tr_layout(src)
    if any(brats.is_case_folder(p) for p in entries):
        return "brats"
    folders = [p.name for p in entries if p.is_dir()]
    files = [p.name for p in entries if p.is_file()]
    kinds = Counter("NIfTI" if nifti_stem(f) is not None else "other" for f in files)
    found = (
        f"found {len(folders)} folder(s)"
        + (f" (e.g. {', '.join(folders[:3])})" if folders else "")
        + f" and {len(files)} file(s)"
        + (f" ({kinds['NIfTI']} NIfTI)" if kinds["NIfTI"] else "")
        + (f" (e.g. {', '.join(files[:3])})" if files else "")
    )
    raise DataError(f"cannot tell the dataset layout: {found}; expected one of: {_layouts_help()}", path=src)


def discover_cases(src: Path, layout: str = "auto") -> list[CaseSource]:
    """List the cases of a dataset, sorted by id, without reading any image.

    Args:
        src: the dataset folder (``brats``, ``msd``, ``nnunet``) or manifest file (``csv``).
        layout: one of :data:`LAYOUTS`, or ``"auto"`` to use :func:`detect_layout`.

    Returns:
        one `CaseSource` per case; per-case problems (a missing modality, an unreadable
        file, ...) are raised later by `CaseSource.load`, so a caller can skip those cases.

    Raises:
        DataError: dataset-level problems: unknown layout name, undetectable layout, missing
            or empty folder, no cases, duplicate case ids, malformed ``dataset.json`` or CSV
            header, unmappable channel or label names.
    """
    src = Path(src)
    if layout != "auto" and layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}: expected auto or one of {', '.join(LAYOUTS)}")
    if not src.exists():
        raise DataError("not found", path=src)
    if src.is_dir() and not _visible(src):
        raise DataError("folder is empty: no cases found", path=src)
    if layout == "auto":
        layout = detect_layout(src)
    elif layout != "csv" and not src.is_dir():
        raise DataError(f"the {layout} layout expects a folder: {LAYOUT_DESCRIPTIONS[layout]}", path=src)
    sources = _READERS[layout](src)
    if not sources:
        raise DataError(f"no cases found; the {layout} layout is {LAYOUT_DESCRIPTIONS[layout]}", path=src)
    counts = Counter(s.id for s in sources)
    duplicates = sorted(case for case, n in counts.items() if n > 1)
    if duplicates:
        raise DataError(f"duplicate case ids: {', '.join(duplicates)}; each case id must appear once", path=src)
    return sorted(sources, key=lambda s: s.id)
