"""What a dataset's names mean: channel and label names (and ``dataset.json`` tables) mapped to synthmed's canonical ones."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.errors import DataError

#: Names (lower-case, non-alphanumerics removed) accepted for each canonical channel.
CHANNEL_ALIASES: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1w", "t1n", "native", "t1native"),
    "t1ce": ("t1ce", "t1c", "t1gd", "t1post", "contrast", "t1wce", "t1wgd", "t1contrast"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2flair", "t2wflair"),
}


def _squash(name: str) -> str:
    """Lower case with everything but letters and digits removed: ``'T1-Gd'`` → ``'t1gd'``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_channel(name: str) -> str | None:
    """The canonical channel a modality name stands for (case-insensitive), or ``None``."""
    key = _squash(name)
    for channel, aliases in CHANNEL_ALIASES.items():
        if key in aliases:
            return channel
    return None


def map_channels(names: Mapping[int, str], *, path: Path) -> dict[str, int]:
    """Map a ``{file channel index: name}`` table onto the canonical channels.

    Returns:
        ``{canonical channel: file channel index}`` covering all of ``CANONICAL_CHANNELS``.

    Raises:
        DataError: naming ``path`` and listing the names when a name is unknown, two names
            mean the same channel, or a canonical channel is absent.
    """
    found: dict[str, int] = {}
    unknown: list[str] = []
    repeated: list[str] = []
    for index in sorted(names):
        channel = canonical_channel(names[index])
        if channel is None:
            unknown.append(f"{names[index]!r} (channel {index})")
        elif channel in found:
            repeated.append(f"{names[found[channel]]!r} and {names[index]!r} both mean {channel}")
        else:
            found[channel] = index
    missing = [c for c in CANONICAL_CHANNELS if c not in found]
    if unknown or repeated or missing:
        listed = ", ".join(f"{i}: {names[i]!r}" for i in sorted(names))
        problems = []
        if unknown:
            problems.append("unknown " + ", ".join(unknown))
        problems.extend(repeated)
        if missing:
            problems.append("no channel for " + ", ".join(missing))
        known = "; ".join(f"{c} = {'/'.join(a)}" for c, a in CHANNEL_ALIASES.items())
        raise DataError(
            f"cannot map channel names {{{listed}}} to {', '.join(CANONICAL_CHANNELS)}: "
            f"{'; '.join(problems)} (accepted names, case-insensitive: {known})",
            path=path,
        )
    return found


def _words(name: str) -> str:
    """Lower-case words, British spellings folded: ``'Peritumoral_Oedema'`` → ``'peritumoral edema'``."""
    text = re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()
    return text.replace("tumour", "tumor").replace("oedema", "edema")


def canonical_label(name: str) -> int | None:
    """The canonical label a class name stands for, or ``None``.

    background/bg → 0; necrotic / non-enhancing / NCR / NET → 1; edema / ED / SNFH → 2;
    enhancing / ET → 3 (``non-enhancing`` is checked before ``enhancing``).
    """
    words = _words(name)
    squashed = words.replace(" ", "")
    if squashed in ("background", "bg"):
        return 0
    if "necro" in words or "nonenhancing" in squashed or squashed in ("ncr", "net", "ncrnet"):
        return 1
    if "edema" in words or squashed in ("ed", "snfh"):
        return 2
    if "enhancing" in words or squashed == "et":
        return 3
    return None


def _region(name: str) -> str | None:
    """``'WT'``, ``'TC'`` or ``'ET'`` for a region-based label name, or ``None``."""
    words = _words(name)
    squashed = words.replace(" ", "")
    if "whole" in words or squashed == "wt":
        return "WT"
    if "core" in words or squashed == "tc":
        return "TC"
    if ("enhancing" in words and "nonenhancing" not in squashed) or squashed == "et":
        return "ET"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def map_labels(labels: Mapping[str, object], *, path: Path) -> dict[int, int]:
    """Map a dataset.json ``"labels"`` table onto canonical labels.

    Accepts nnU-Net v1 / MSD style ``{"0": "background", "1": "edema", ...}``, v2 style
    ``{"background": 0, "edema": 1, ...}`` and v2 region-based style
    ``{"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}``,
    where each file value is derived from the regions it belongs to: in ET → ET; in TC but
    not ET → NCR; in WT but not TC → ED.

    Returns:
        ``{file value: canonical value}``, always with ``0 → 0``.

    Raises:
        DataError: naming ``path`` when the table is malformed or a name cannot be mapped.
    """
    if not isinstance(labels, Mapping) or not labels:
        raise DataError('"labels" must be a non-empty object', path=path)
    if all(isinstance(v, str) for v in labels.values()):  # v1 / MSD: value -> name
        try:
            named = {int(k): str(v) for k, v in labels.items()}
        except ValueError:
            raise DataError(f'"labels" keys must be integers in the v1 style, got {list(labels)}', path=path) from None
    elif all(_is_int(v) or (isinstance(v, list) and v and all(_is_int(x) for x in v)) for v in labels.values()):
        if any(isinstance(v, list) for v in labels.values()):
            return _map_regions(labels, path=path)  # type: ignore[arg-type]
        named = {int(v): str(k) for k, v in labels.items()}  # type: ignore[call-overload]
        if len(named) != len(labels):
            raise DataError(f'"labels" gives one value to several names: {dict(labels)}', path=path)
    else:
        raise DataError(
            '"labels" must map values to names ({"0": "background", ...}) or names to values '
            f'({{"background": 0, ...}}), got {dict(labels)}',
            path=path,
        )
    mapping: dict[int, int] = {0: 0}
    unknown = []
    for value, name in sorted(named.items()):
        canonical = canonical_label(name)
        if canonical is None or (canonical == 0) != (value == 0):
            unknown.append(f"{value}: {name!r}")
        else:
            mapping[value] = canonical
    if unknown:
        raise DataError(
            f"cannot map label names {{{', '.join(unknown)}}} to the canonical labels "
            "(background = 0; necrotic/non-enhancing/NCR/NET → 1; edema/ED → 2; enhancing/ET → 3)",
            path=path,
        )
    return mapping


def _map_regions(labels: Mapping[str, int | list[int]], *, path: Path) -> dict[int, int]:
    """Region-based labels (nnU-Net's BraTS conversion) → ``{file value: canonical value}``."""
    regions: dict[str, set[int]] = {}
    unknown = []
    for name, value in labels.items():
        values = set(value) if isinstance(value, list) else {value}
        if values == {0}:
            continue
        region = _region(name)
        if region is None or region in regions:
            unknown.append(repr(name))
        else:
            regions[region] = values
    missing = [r for r in ("WT", "TC", "ET") if r not in regions]
    if unknown or missing:
        raise DataError(
            f"cannot derive canonical labels from region-based labels {dict(labels)}: need exactly one "
            "whole tumor (WT), one tumor core (TC) and one enhancing tumor (ET) region"
            + (f"; not understood: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else ""),
            path=path,
        )
    mapping: dict[int, int] = {0: 0}
    for value in sorted(set().union(*regions.values())):
        if value in regions["ET"]:
            mapping[value] = 3
        elif value in regions["TC"]:
            mapping[value] = 1
        elif value in regions["WT"]:
            mapping[value] = 2
    return mapping


def read_dataset_json(path: Path) -> dict:
    """Parse an MSD / nnU-Net ``dataset.json`` into a dict.

    Raises:
        DataError: naming ``path`` when it cannot be read, is not JSON or not a JSON object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read dataset.json ({exc})", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed dataset.json: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise DataError(f"dataset.json must hold a JSON object, got {type(data).__name__}", path=path)
    return data


def index_table(table: object, *, key: str, path: Path) -> dict[int, str]:
    """A dataset.json ``{"0": "name", ...}`` table (``"modality"``, ``"channel_names"``) as ``{0: "name"}``.

    Raises:
        DataError: naming ``path`` and ``key`` unless it is an object with keys ``"0"`` … ``"N-1"``
            and string values.
    """
    if not isinstance(table, dict) or not table:
        raise DataError(f'"{key}" must be a non-empty object like {{"0": "T1", ...}}, got {table!r}', path=path)
    try:
        out = {int(k): str(v) for k, v in table.items() if isinstance(v, str)}
    except ValueError:
        out = {}
    if len(out) != len(table) or sorted(out) != list(range(len(out))):
        raise DataError(f'"{key}" must map "0" … "{len(table) - 1}" to names, got {table!r}', path=path)
    return out
