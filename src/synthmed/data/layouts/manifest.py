"""CSV manifest layout: one row per case naming its files.

::

    case_id,t1,t1ce,t2,flair,label
    P001,P001/t1.nii.gz,P001/t1ce.nii.gz,P001/t2.nii.gz,P001/flair.nii.gz,P001/seg.nii.gz

Column names are case-insensitive; ``id`` may stand for ``case_id`` and ``seg`` for
``label``; other columns are ignored. Relative paths are relative to the CSV file's folder.
Label files use the **BraTS meaning**: 0 background, 1 necrotic / non-enhancing core (NCR),
2 edema (ED), 3 or 4 enhancing tumour (ET) (BraTS files use 4, some conversions 3); both map
to canonical 3.
"""

from __future__ import annotations

import csv
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


def _columns(header: list[str] | None, path: Path) -> dict[str, str]:
    """``{field: column name in the file}``; raises naming the missing columns."""
    if not header:
        raise DataError(f"empty CSV: expected a header row with {', '.join(COLUMNS)}", path=path)
    lookup = {name.strip().lower(): name for name in header}
    found, missing = {}, []
    for field, aliases in COLUMNS.items():
        hits = [lookup[a] for a in aliases if a in lookup]
        if not hits:
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


def discover(manifest: Path) -> list[CaseSource]:
    """One `CaseSource` per data row (unsorted; ``discover_cases`` sorts and checks).

    Empty cells for a file become the case's ``problems`` (raised by ``load``).

    Raises:
        DataError: not a readable CSV file, a missing column, an empty case id, or no rows.
    """
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
        sources.append(
            CaseSource(
                id=case,
                layout="csv",
                channels=channels,
                label=_resolve(base, cells["label"]) if cells["label"] else None,
                label_map=MANIFEST_LABELS,
                label_set="manifest (BraTS meaning: 1 NCR, 2 ED, 3 or 4 ET)",
                problems=tuple(problems),
            )
        )
    return sources
