"""Finding a layout's NIfTI files: file stems, files grouped by stem, one file per case id."""

from __future__ import annotations

from pathlib import Path

from synthmed.errors import DataError


def nifti_stem(name: str) -> str | None:
    """File name without ``.nii`` / ``.nii.gz`` (any case); ``None`` for other and hidden files.

    Hidden files include the macOS ``._*`` files of the official MSD tarball.
    """
    if name.startswith("."):
        return None
    lower = name.lower()
    for suffix in (".nii.gz", ".nii"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return None


def nifti_files(folder: Path) -> dict[str, list[Path]]:
    """Visible NIfTI files of ``folder`` grouped by stem (``a.nii`` and ``a.nii.gz`` share one)."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = nifti_stem(path.name)
        if stem is not None and path.is_file():
            groups.setdefault(stem, []).append(path)
    return groups


def unique_files(groups: dict[str, list[Path]], *, folder: Path) -> dict[str, Path]:
    """One file per stem.

    Raises:
        DataError: naming ``folder`` and the clashing files when a stem has several files
            (the same case id would be read twice).
    """
    clashes = {stem: paths for stem, paths in groups.items() if len(paths) > 1}
    if clashes:
        listed = "; ".join(f"{stem} ({', '.join(p.name for p in paths)})" for stem, paths in sorted(clashes.items()))
        raise DataError(f"duplicate case ids, one file each expected: {listed}", path=folder)
    return {stem: paths[0] for stem, paths in groups.items()}
