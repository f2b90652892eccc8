"""`CaseSource`: where one case's files are and how to read them into a canonical `Case`.

Readers (one module per layout) only *find* files and describe them as `CaseSource` objects;
all reading and validation lives here, so every layout checks the same things and words its
errors the same way.

Error split. Problems with one case (a missing modality file, an unreadable or truncated
file, shape or affine mismatches, label values outside the layout's set, NaN/Inf voxels)
are raised by :meth:`CaseSource.load` so a caller can skip just that case. Problems a reader
sees while listing a case's files (a missing or ambiguous file) are stored on the source as
``problems`` and raised by ``load`` too. Dataset-level problems are the readers' to raise.

Every :class:`~synthmed.errors.DataError` names the case and the file and says what was
expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmed.data.case import CANONICAL_CHANNELS, Case
from synthmed.data.nifti import load_nifti, spacing_from_affine
from synthmed.errors import DataError

#: Layout names accepted by ``discover_cases`` (besides ``"auto"``).
LAYOUTS: tuple[str, ...] = ("brats", "msd", "nnunet", "csv")

#: Affine tolerance between a case's channels and its label: ``|a - b| <= ATOL + RTOL * |b|``.
AFFINE_ATOL = 1e-3
AFFINE_RTOL = 1e-4

#: Names (lower-case, non-alphanumerics removed) accepted for each canonical channel.
CHANNEL_ALIASES: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1w", "t1n", "native", "t1native"),
    "t1ce": ("t1ce", "t1c", "t1gd", "t1post", "contrast", "t1wce", "t1wgd", "t1contrast"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f", "t2flair", "t2wflair"),
}


@dataclass(frozen=True)
class ChannelFile:
    """One canonical channel of a case.

    Attributes:
        channel: canonical channel name (``"t1"``, ``"t1ce"``, ``"t2"`` or ``"flair"``).
        path: the NIfTI file holding it.
        index: channel index inside a 4D file (MSD); ``None`` for a 3D file.
        count: number of channels the 4D file must have; ``None`` for a 3D file.
    """

    channel: str
    path: Path
    index: int | None = None
    count: int | None = None


@dataclass(frozen=True)
class CaseSource:
    """The files of one case and how to map them to canonical channels and labels.

    Cheap to create (nothing is read) and picklable, so it can be sent to worker processes.

    Attributes:
        id: case identifier, unique within the dataset.
        layout: the layout it was found in (one of :data:`LAYOUTS`).
        channels: one :class:`ChannelFile` per canonical channel, in canonical order.
        label: the label file (``None`` when the reader found none; ``problems`` then says so).
        label_map: ``(file value, canonical value)`` pairs; values not listed are an error.
        label_set: name of the layout's label convention, for messages (e.g. ``"BraTS"``).
        problems: ``(message, path)`` pairs the reader found while listing the case's files
            (a missing or ambiguous file); ``load`` raises the first.
    """

    id: str
    layout: str
    channels: tuple[ChannelFile, ...]
    label: Path | None
    label_map: tuple[tuple[int, int], ...]
    label_set: str
    problems: tuple[tuple[str, Path], ...] = ()

    def files(self) -> tuple[Path, ...]:
        """Every file this case reads, each once, in reading order (for provenance hashing).

        Files that do not exist (a case whose ``load`` will fail) are left out.
        """
        paths = [c.path for c in self.channels]
        if self.label is not None:
            paths.append(self.label)
        return tuple(p for p in dict.fromkeys(paths) if p.is_file())

    def load(self) -> Case:
        """Read and validate the case.

        Returns:
            a `Case` with float32 ``images [4, D, H, W]`` in canonical channel order, uint8
            canonical ``label [D, H, W]``, the RAS+ affine of the first channel and its spacing.

        Raises:
            DataError: naming the case and the file: a problem found by the reader, a
                missing, unreadable or truncated file, NaN/Inf voxels, a shape or affine
                that differs from the first channel's, non-integer label values or label
                values outside the layout's set.
        """
        if self.problems:
            message, path = self.problems[0]
            raise DataError(message, path=path, case=self.id)
        if self.label is None:  # readers record a problem instead; guard anyway
            raise DataError("no label file", case=self.id)
        cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}
        images = np.empty(0, dtype=np.float32)
        ref_name, ref_shape, ref_affine = "", (), np.eye(4)
        for c, spec in enumerate(self.channels):
            array, affine = self._channel(spec, cache)
            if c == 0:  # one float32 array for all channels; each file's values are cast into it
                ref_name, ref_shape, ref_affine = spec.channel, array.shape, affine
                images = np.empty((len(self.channels), *array.shape), dtype=np.float32)
            else:
                self._check_grid(spec.path, f"{spec.channel} ", array.shape, affine, ref_name, ref_shape, ref_affine)
            images[c] = array
        cache.clear()
        label, affine = self._read(self.label, "label", dtype=None)
        label = self._squeeze(label, self.label)
        self._check_grid(self.label, "label ", label.shape, affine, ref_name, ref_shape, ref_affine)
        return Case(
            id=self.id,
            images=images,
            label=self._map_label(label),
            channels=tuple(spec.channel for spec in self.channels),
            spacing=spacing_from_affine(ref_affine),
            affine=ref_affine,
        )

    # -- helpers -------------------------------------------------------------------------

    def _read(self, path: Path, what: str, dtype: type | None = np.float32) -> tuple[np.ndarray, np.ndarray]:
        """``load_nifti`` with the case id added to its errors; ``what`` names the file's role."""
        if not path.is_file():
            raise DataError(f"missing {what}: file not found", path=path, case=self.id)
        try:
            return load_nifti(path, dtype=dtype)
        except DataError as exc:
            raise DataError(exc.reason, path=exc.path or path, case=self.id) from None

    def _squeeze(self, array: np.ndarray, path: Path) -> np.ndarray:
        """A 3D volume from a 3D file or a 4D file with a single channel."""
        if array.ndim == 4 and array.shape[0] == 1:
            return array[0]
        if array.ndim != 3:
            raise DataError(
                f"expected a 3D volume, got a 4D image with {array.shape[0]} channels", path=path, case=self.id
            )
        return array

    def _channel(
        self, spec: ChannelFile, cache: dict[Path, tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``[D, H, W]`` array and affine of one channel (4D files are read once)."""
        if spec.path not in cache:
            cache[spec.path] = self._read(spec.path, f"modality {spec.channel}", dtype=None)
        array, affine = cache[spec.path]
        if spec.index is None:
            return self._squeeze(array, spec.path), affine
        if array.ndim != 4 or array.shape[0] != spec.count:
            got = "a 3D volume" if array.ndim == 3 else f"{array.shape[0]} channels"
            raise DataError(
                f"expected a 4D image with {spec.count} channels (one per modality), got {got}",
                path=spec.path,
                case=self.id,
            )
        return array[spec.index], affine

    def _check_grid(
        self,
        path: Path,
        what: str,
        shape: tuple[int, ...],
        affine: np.ndarray,
        ref_name: str,
        ref_shape: tuple[int, ...],
        ref_affine: np.ndarray,
    ) -> None:
        """Same shape exactly and same affine within tolerance as the reference channel.

        Shapes are reported in NIfTI ``(x, y, z)`` order (of the RAS+ grid), as tools show them.
        """
        if tuple(shape) != tuple(ref_shape):
            raise DataError(
                f"{what}shape {tuple(shape)[::-1]} differs from {ref_name}'s {tuple(ref_shape)[::-1]} "
                "(x, y, z); all channels and the label must share one voxel grid",
                path=path,
                case=self.id,
            )
        if not np.allclose(affine, ref_affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL):
            diff = float(np.abs(np.asarray(affine) - np.asarray(ref_affine)).max())
            raise DataError(
                f"{what}affine differs from {ref_name}'s (largest difference {diff:.4g}); "
                "all channels and the label must be co-registered on one voxel grid",
                path=path,
                case=self.id,
            )

    def _map_label(self, label: np.ndarray) -> np.ndarray:
        """File label values → canonical uint8, rejecting non-integers and unknown values."""
        assert self.label is not None
        whole = label if np.issubdtype(label.dtype, np.integer) else np.rint(label)
        if whole is not label and not np.array_equal(whole, label):
            bad = np.unique(label[whole != label])[:5]
            raise DataError(
                f"non-integer label values {sorted(float(v) for v in bad)}; label values must be whole numbers",
                path=self.label,
                case=self.id,
            )
        mapping = dict(self.label_map)
        lo, hi = float(whole.min()), float(whole.max())
        if lo >= 0 and hi < 1024:  # the usual case: one pass through a lookup table
            unmapped = 255
            lut = np.full(int(hi) + 1, unmapped, dtype=np.uint8)
            for value, canonical in mapping.items():
                if value <= hi:
                    lut[value] = canonical
            out = lut[whole if whole.dtype == np.uint8 else whole.astype(np.int16)]
            bad = out == unmapped
            unknown = sorted(int(v) for v in np.unique(whole[bad])) if bad.any() else []
        else:
            unknown = sorted(int(v) for v in np.unique(whole) if int(v) not in mapping)
            out = np.zeros(whole.shape, dtype=np.uint8)
            if not unknown:
                for value, canonical in mapping.items():
                    out[whole == value] = canonical
        if unknown:
            allowed = ", ".join(str(v) for v in sorted(mapping))
            raise DataError(
                f"label values {{{', '.join(map(str, unknown))}}} outside the {self.label_set} set {{{allowed}}}",
                path=self.label,
                case=self.id,
            )
        return out


# -- name mapping shared by MSD and nnU-Net dataset.json files ------------------------------


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
