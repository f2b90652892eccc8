"""CSV manifest layout: one row per case naming its files.

::

    case_id,t1,t1ce,t2,flair,label
    P001,P001/t1.nii.gz,P001/t1ce.nii.gz,P001/t2.nii.gz,P001/flair.nii.gz,P001/seg.nii.gz

Column names are case-insensitive; ``id`` may stand for ``case_id`` and ``seg`` for
``label``; other columns are ignored. Relative paths are relative to the CSV file's folder.
Label files use the **BraTS meaning**: 0 background, 1 necrotic / non-enhancing core (NCR),
2 edema (ED), 3 or 4 enhancing tumour (ET) (BraTS files use 4, some conversions 3); both map
to canonical 3.

Longitudinal data: two optional columns place each case in a subject's series —
``subject_id`` (or ``subject``), the patient the case (a visit) belongs to, and ``months``,
when it was acquired, in months since the subject's baseline (a finite number >= 0). An empty
``subject_id`` cell makes the case its own subject; an empty ``months`` cell leaves the time
unknown. ``data prepare`` splits by subject and carries both into the store's sample table.

A folder holding :data:`LONGITUDINAL_MANIFEST` (the longitudinal phantom writes one) is read
through that manifest.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.layouts.base import CaseSource, ChannelFile
from synthmed.errors import DataError

#: Manifest label values (BraTS meaning) → canonical labels.
MANIFEST_LABELS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 3))

#: Accepted column names (lower case) for each field, first the preferred one.
COLUMNS: dict[str, tuple[str, ...]] = {
    "case_id": ("case_id", "id"),
    **{channel: (channel,) for channel in CANONICAL_CHANNELS},
    "label": ("label", "seg"),
}
#: Optional columns (lower case aliases, the preferred one first): a case's subject and time.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "subject_id": ("subject_id", "subject"),
    "months": ("months",),
}
#: The manifest a dataset folder may hold to be read as a CSV manifest (the longitudinal phantom's).
LONGITUDINAL_MANIFEST = "longitudinal.csv"


def _columns(header: list[str] | None, path: Path) -> dict[str, str]:
    """``{field: column name in the file}`` (optional fields only when present); raises naming the missing columns."""
    if not header:
        raise DataError(f"empty CSV: expected a header row with {', '.join(COLUMNS)}", path=path)
    lookup = {name.strip().lower(): name for name in header}
    found, missing = {}, []
    for field, aliases in {**COLUMNS, **OPTIONAL_COLUMNS}.items():
        hits = [lookup[a] for a in aliases if a in lookup]
        if not hits:
            if field in COLUMNS:
                missing.append(" or ".join(aliases))
        elif len(hits) > 1:
            raise DataError(f"columns {' and '.join(hits)} both give the {field}; keep one", path=path)
        else:
            found[field] = hits[0]
    if missing:
        raise DataError(
            f"missing column {', '.join(missing)}; the header has {', '.join(h.strip() for h in header)} "
            f"(expected {', '.join(COLUMNS)})",
            path=path,
        )
    return found


def _resolve(base: Path, cell: str) -> Path:
    """A path from a cell, relative to the CSV's folder unless absolute."""
    path = Path(cell.strip()).expanduser()
    return path if path.is_absolute() else base / path


def _months(cell: str, line: int, column: str, path: Path) -> float | None:
    """The ``months`` of a row: None for an empty cell; raises for anything but a finite number >= 0."""
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise DataError(f"line {line}: {column} must be a number of months >= 0 (since the subject's baseline), "
                        f"got {cell!r}", path=path)
    return value


def discover(manifest: Path) -> list[CaseSource]:
    """One `CaseSource` per data row (unsorted; ``discover_cases`` sorts and checks).

    ``manifest`` is the CSV file, or a folder holding :data:`LONGITUDINAL_MANIFEST`. Empty
    cells for a file become the case's ``problems`` (raised by ``load``).

    Raises:
        DataError: not a readable CSV file, a missing column, an empty case id, a bad
            ``months`` value, or no rows.
    """
    if manifest.is_dir() and (manifest / LONGITUDINAL_MANIFEST).is_file():
        manifest = manifest / LONGITUDINAL_MANIFEST
    if not manifest.is_file():
        raise DataError("manifest not found: expected a CSV file", path=manifest)
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = _columns(reader.fieldnames, manifest)
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV ({exc})", path=manifest) from None
    base = manifest.parent
    sources = []
    for line, row in rows:
        cells = {field: (row.get(column) or "").strip() for field, column in columns.items()}
        if not any(cells.values()):
            continue  # blank line
        case = cells["case_id"]
        if not case:
            raise DataError(f"line {line}: empty {columns['case_id']}", path=manifest)
        problems = []
        for field in (*CANONICAL_CHANNELS, "label"):
            if not cells[field]:
                what = "label" if field == "label" else f"modality {field}"
                problems.append((f"missing {what}: line {line} has no path in column {columns[field]}", manifest))
        channels = tuple(ChannelFile(c, _resolve(base, cells[c]) if cells[c] else base) for c in CANONICAL_CHANNELS)
        months = _months(cells["months"], line, columns["months"], manifest) if "months" in columns else None
        sources.append(
            CaseSource(
                id=case,
                layout="csv",
                channels=channels,
                label=_resolve(base, cells["label"]) if cells["label"] else None,
                label_map=MANIFEST_LABELS,
                label_set="manifest (BraTS meaning: 1 NCR, 2 ED, 3 or 4 ET)",
                problems=tuple(problems),
                subject=cells.get("subject_id") or None,
                months=months,
            )
        )
    return sources
