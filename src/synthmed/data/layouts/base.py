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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmed.data.case import Case
from synthmed.data.nifti import load_nifti, spacing_from_affine
from synthmed.errors import DataError

#: Layout names accepted by ``discover_cases`` (besides ``"auto"``).
LAYOUTS: tuple[str, ...] = ("brats", "msd", "nnunet", "csv")

#: Affine tolerance between a case's channels and its label: ``|a - b| <= ATOL + RTOL * |b|``.
AFFINE_ATOL = 1e-3
AFFINE_RTOL = 1e-4



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
        subject: the subject (patient) the case belongs to when the layout says so (a CSV
            manifest's ``subject_id``); ``None``: the case is its own subject.
        months: when the case was acquired, in months since the subject's baseline, when the
            layout says so (a CSV manifest's ``months``); ``None``: unknown.
    """

    id: str
    layout: str
    channels: tuple[ChannelFile, ...]
    label: Path | None
    label_map: tuple[tuple[int, int], ...]
    label_set: str
    problems: tuple[tuple[str, Path], ...] = ()
    subject: str | None = None
    months: float | None = None

    @property
    def subject_id(self) -> str:
        """The subject: :attr:`subject`, or the case id when the layout gives none."""
        return self.id if self.subject is None else self.subject

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

    def load_label(self) -> np.ndarray:
        """Read and validate only the label file: canonical uint8 ``[D, H, W]`` (as :meth:`load` gives it).

        Raises:
            DataError: a problem found by the reader, or a missing, unreadable or bad label file.
        """
        if self.problems:
            message, path = self.problems[0]
            raise DataError(message, path=path, case=self.id)
        if self.label is None:
            raise DataError("no label file", case=self.id)
        label, _ = self._read(self.label, "label", dtype=None)
        return self._map_label(self._squeeze(label, self.label))

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
