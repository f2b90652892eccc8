"""BraTS layout: one folder per case holding ``<case>_{t1,t1ce,t2,flair,seg}.nii[.gz]``.

::

    SRC/
      BraTS20_Training_001/            (BraTS 2020; BraTS 2021 names cases BraTS2021_00000)
        BraTS20_Training_001_t1.nii.gz
        BraTS20_Training_001_t1ce.nii.gz
        BraTS20_Training_001_t2.nii.gz
        BraTS20_Training_001_flair.nii.gz
        BraTS20_Training_001_seg.nii.gz

The case id is the folder name. Files are matched by their suffix, case-insensitively
(``_t1`` never matches ``_t1ce``), with ``.nii`` or ``.nii.gz``; when several files carry the
same suffix, the one named ``<folder>_<suffix>`` wins. ``_segm`` is accepted for the label
(one BraTS 2020 case ships ``..._Segm.nii``). Labels are BraTS values 0, 1 (NCR), 2 (ED),
4 (ET), mapped to canonical 0, 1, 2, 3. Hidden entries and subfolders without NIfTI files
are ignored. :func:`write_brats_case` writes a `Case` in this layout (the phantom and the
NIfTI export of synthetic stores use it).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from synthmed.data.case import CANONICAL_CHANNELS, Case
from synthmed.data.layouts.base import CaseSource, ChannelFile
from synthmed.data.layouts.files import nifti_stem
from synthmed.data.nifti import save_nifti
from synthmed.errors import DataError

#: BraTS label values → canonical labels.
BRATS_LABELS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (4, 3))
#: Canonical label → BraTS file value (indexed by the canonical label).
TO_BRATS = np.array([brats for brats, _ in sorted(BRATS_LABELS, key=lambda pair: pair[1])], dtype=np.uint8)

#: Accepted file-name suffixes (lower case, before ``.nii[.gz]``) per channel and for the label.
SUFFIXES: dict[str, tuple[str, ...]] = {
    **{channel: (f"_{channel}",) for channel in CANONICAL_CHANNELS},
    "seg": ("_seg", "_segm"),
}


def role_of(stem: str) -> str | None:
    """``'t1'``, ``'t1ce'``, ``'t2'``, ``'flair'`` or ``'seg'`` from a file stem's suffix."""
    lower = stem.lower()
    for role, suffixes in SUFFIXES.items():
        if lower.endswith(suffixes):
            return role
    return None


def is_case_folder(folder: Path) -> bool:
    """True for a visible folder holding at least one NIfTI file named like a BraTS modality or label."""
    return not folder.name.startswith(".") and _holds_case_files(folder)


def _holds_case_files(folder: Path) -> bool:
    """Whether ``folder`` holds a file (or a link, even a broken one) named like a BraTS modality or label."""
    if not folder.is_dir():
        return False
    return any((stem := nifti_stem(f.name)) is not None and role_of(stem) is not None and (f.is_file() or f.is_symlink())
               for f in folder.iterdir())


def _unreadable_link(path: Path) -> str | None:
    """Why the symlink ``path`` cannot be read (a loop, or a missing target), or ``None``."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path.name} is a symbolic link loop"
        return f"{path.name} is a broken symbolic link (its target {os.readlink(path)} does not exist)"
    return None


def _bad_folder(folder: Path, problem: str) -> CaseSource:
    """A case that ``load`` refuses with ``problem`` (``--skip-bad`` skips it)."""
    return CaseSource(id=folder.name, layout="brats", channels=(), label=None, label_map=BRATS_LABELS,
                      label_set="BraTS", problems=((problem, folder),))


def _expected(folder: Path, role: str) -> Path:
    """The file name a role should have: ``<folder>/<folder>_<role>.nii.gz``."""
    return folder / f"{folder.name}_{role}.nii.gz"


def _pick(folder: Path, role: str, candidates: list[Path]) -> tuple[Path, tuple[str, Path] | None]:
    """The file for one role, with a ``(problem, path)`` when it is missing or ambiguous."""
    if len(candidates) == 1:
        return candidates[0], None
    if not candidates:
        what = "label" if role == "seg" else f"modality {role}"
        problem = f"missing {what}: expected {folder.name}_{role}.nii.gz (or .nii) in this folder"
        return _expected(folder, role), (problem, folder)
    exact = [p for p in candidates if (nifti_stem(p.name) or "").lower() == f"{folder.name}_{role}".lower()]
    if len(exact) == 1:
        return exact[0], None
    names = ", ".join(p.name for p in candidates)
    return candidates[0], (f"several files for {role}: {names}; keep one", folder)


def case_source(folder: Path) -> CaseSource:
    """Describe one case folder; missing or ambiguous files become the source's ``problems``."""
    by_role: dict[str, list[Path]] = {role: [] for role in SUFFIXES}
    links: dict[str, list[tuple[str, Path]]] = {role: [] for role in SUFFIXES}
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        role = role_of(stem) if stem is not None else None
        if role is None:
            continue
        why = _unreadable_link(path)
        if why is not None:
            links[role].append((why, path))
        elif path.is_file():
            by_role[role].append(path)
    picked = {role: _pick(folder, role, by_role[role]) for role in (*CANONICAL_CHANNELS, "seg")}
    for role, bad in links.items():  # an unreadable link is that, not a missing file
        if role in picked and not by_role[role] and bad:
            picked[role] = (bad[0][1], bad[0])
    return CaseSource(
        id=folder.name,
        layout="brats",
        channels=tuple(ChannelFile(c, picked[c][0]) for c in CANONICAL_CHANNELS),
        label=picked["seg"][0],
        label_map=BRATS_LABELS,
        label_set="BraTS",
        problems=tuple(problem for _, problem in picked.values() if problem is not None),
    )


def discover(src: Path) -> list[CaseSource]:
    """One `CaseSource` per case folder of ``src`` (unsorted; ``discover_cases`` sorts and checks).

    An empty folder, or a hidden one (``.name``) holding BraTS files, becomes a case that
    ``load`` refuses (``--skip-bad`` skips it), naming the folder.

    Raises:
        DataError: ``src`` is not a folder or holds no case folders.
    """
    if not src.is_dir():
        raise DataError("the BraTS layout expects a folder of case folders", path=src)
    folders = sorted(p for p in src.iterdir() if is_case_folder(p))
    if not folders:
        raise DataError(_no_cases_message(src), path=src)
    sources = [case_source(folder) for folder in folders]
    for other in sorted(p for p in src.iterdir() if p.is_dir() and p not in folders):
        if other.name.startswith("."):  # .git and the like are not cases; a hidden case folder is an error
            if _holds_case_files(other):
                sources.append(_bad_folder(other, "a hidden case folder (its name starts with '.'): rename it to "
                                                  "read it, or remove it"))
        elif not [f for f in other.iterdir() if not f.name.startswith(".")]:
            sources.append(_bad_folder(other, "empty case folder: no NIfTI files"))
    return sources


def _no_cases_message(src: Path) -> str:
    """Explain that no case folder was found, hinting at one wrapper level if there is one."""
    subfolders = [p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")]
    hint = ""
    if len(subfolders) == 1 and any(is_case_folder(p) for p in subfolders[0].iterdir() if p.is_dir()):
        hint = f"; {subfolders[0].name} holds case folders: pass {subfolders[0]} instead"
    return (
        "no BraTS case folders found: expected folders like BraTS20_Training_001/ holding "
        f"BraTS20_Training_001_{{t1,t1ce,t2,flair,seg}}.nii.gz{hint}"
    )


def write_brats_case(case: Case, root: str | Path, *, image_dtype: type = np.float32) -> Path:
    """Write ``root/<id>/<id>_{<channel>…,seg}.nii.gz``; returns the case folder.

    Images are cast to ``image_dtype`` (the phantom's integer intensities fit int16), the
    label is written as uint8 BraTS values (ET = 4). Each file is written atomically.
    """
    folder = Path(root) / case.id
    folder.mkdir(parents=True, exist_ok=True)
    for channel, image in zip(case.channels, case.images):
        save_nifti(folder / f"{case.id}_{channel}.nii.gz", image, case.affine, dtype=image_dtype)
    save_nifti(folder / f"{case.id}_seg.nii.gz", TO_BRATS[case.label], case.affine)
    return folder
