"""The one guard every writing command calls before any work: :func:`guard_output`.

Rules (the same for every command):

1. **An output is never an input, inside one, or containing one.** Paths are compared after
   resolving symlinks (real paths); such an output is refused whatever ``--overwrite`` says.
2. **Nothing is replaced without ``--overwrite``.** An existing output is refused; an empty
   folder (or one holding only a lock file) counts as free.
3. **``--overwrite`` replaces only the command's own kind of output** (:class:`OutputKind`):
   a store is recognised by its ``store.json`` and holds nothing but a store's files, a run
   directory by its ``run.json``, a PNG file by its signature, and so on. Anything else — a
   folder with other files in it, a file of another format — is refused: ``--overwrite``
   never deletes what the command did not write.

The guard also removes what an earlier run of the same command left when it was killed
outright (its hidden temporaries, :func:`synthmed.atomic.remove_stale`).
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from synthmed.atomic import TEMP_NAME, is_empty_dir, remove_stale
from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.locks import LOCK_FILE


class OutputIsInputError(SynthmedError):
    """The output is, is inside, or contains an input."""


class NotOwnOutputError(SynthmedError):
    """``--overwrite`` on something that is not the command's own kind of output."""


@dataclass(frozen=True)
class OutputKind:
    """What a command writes, and how to recognise one on disk.

    Attributes:
        name: for messages ("store", "run directory", "PNG file", …).
        folder: a folder (else a file).
        marker: a file every folder of this kind holds (e.g. ``store.json``).
        entries: ``fnmatch`` patterns of everything such a folder may hold at its top
            level (besides the lock file and hidden temporaries); empty: anything.
        signature: the first bytes of a file of this kind (e.g. the PNG signature).
        run_kinds: for run directories, the ``run.json`` ``kind`` values of this command's
            runs (empty: any).
    """

    name: str
    folder: bool = True
    marker: str | None = None
    entries: tuple[str, ...] = ()
    signature: bytes | None = None
    run_kinds: tuple[str, ...] = ()

    def stranger(self, path: Path) -> str | None:
        """Why ``path`` (which exists) is not of this kind, or ``None`` if it is."""
        if self.folder:
            if not path.is_dir():
                return "it is a file"
            if self.marker is not None and not (path / self.marker).is_file():
                return f"it has no {self.marker}"
            for entry in sorted(os.listdir(path)):
                if entry == LOCK_FILE or TEMP_NAME.match(entry):
                    continue
                if self.entries and not any(fnmatch.fnmatchcase(entry, p) for p in self.entries):
                    return f"it holds {entry}, which is not part of one"
            if self.run_kinds:
                try:
                    run_kind = json.loads((path / "run.json").read_text()).get("kind")
                except (OSError, ValueError, AttributeError):
                    return "its run.json is unreadable"
                if run_kind not in self.run_kinds:
                    return f"it is a {run_kind} run"
            return None
        if not path.is_file():
            return "it is a folder" if path.is_dir() else "it is not a regular file"
        if self.signature is not None:
            with open(path, "rb") as handle:
                if handle.read(len(self.signature)) != self.signature:
                    return "its content is of another format"
        return None


#: What a run directory may hold: every run's files, a segmenter's eval/ and pretrain/, a
#: classifier's saliency/, and the ldm generator's first stage and latent scaling
#: (generators.latent.model).
_RUN_ENTRIES = ("run.json", "state.json", "checkpoints", "tensorboard", "eval", "pretrain", "saliency",
                "autoencoder", "latent_scaling.json")

STORE = OutputKind("store", marker="store.json", entries=("store.json", "zarr.json", "image", "label", "samples.csv"))
PHANTOM = OutputKind("phantom dataset", marker="phantom.json",
                   entries=("phantom.json", "BraTS2021_[0-9]*", "longitudinal.csv", "phantom-[0-9]*-v[0-9]*"))
RUN_DIR = OutputKind("run directory", marker="run.json", entries=_RUN_ENTRIES)


def run_directory(name: str, kinds: Iterable[str]) -> OutputKind:
    """A run directory whose ``run.json`` ``kind`` is one of ``kinds`` (e.g. a segmenter run)."""
    return OutputKind(name, marker="run.json", entries=_RUN_ENTRIES, run_kinds=tuple(kinds))
NIFTI_EXPORT = OutputKind("NIfTI export", entries=("syn_[0-9]*", "case_[0-9]*"))
NNUNET_EXPORT = OutputKind("nnU-Net export", marker="dataset.json",
                           entries=("dataset.json", "imagesTr", "labelsTr", "imagesTs", "labelsTs"))
PNG_FILE = OutputKind("PNG file", folder=False, signature=b"\x89PNG\r\n\x1a\n")
JSON_FILE = OutputKind("JSON file", folder=False, signature=b"{")
CSV_FILE = OutputKind("CSV file", folder=False)


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def check_not_input(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output that is an input, lies inside one, or contains one (real paths).

    Raises:
        OutputIsInputError: naming both paths.
    """
    real_out = _real(out)
    for item in inputs:
        if item is None:
            continue
        real_in = _real(item)
        if real_out == real_in:
            how = f"is the input {item}"
        elif real_in in real_out.parents:
            how = f"is inside the input {item}"
        elif real_out in real_in.parents:
            how = f"contains the input {item}"
        else:
            continue
        raise OutputIsInputError(f"{out}: the output {how}; writing it would destroy that input; "
                                 "choose an output outside every input")


def guard_output(
    out: str | Path,
    inputs: Iterable[str | Path | None] = (),
    *,
    kind: OutputKind,
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Check, before any work, that the command may write ``out`` (see the module docstring).

    Args:
        out: the output path the command will write (a folder or a file).
        inputs: every path the command reads (``None`` entries are skipped).
        kind: what the command writes at ``out``.
        overwrite: ``--overwrite`` was given.
        resume: the command continues ``out`` (``--resume``): an existing output is
            expected, and whether it is the right kind is the resuming code's to check.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        OutputIsInputError: ``out`` is, is inside or contains an input (whatever ``overwrite``).
        OutputExistsError: ``out`` exists (and is not an empty folder) without ``overwrite``.
        NotOwnOutputError: ``overwrite`` on something that is not a ``kind``.
    """
    out = Path(out)
    check_not_input(out, inputs)
    remove_stale(out.parent, out.name)  # what a killed run of this command left
    if not os.path.lexists(out) or (kind.folder and is_empty_dir(out)) or resume:
        return out
    if not overwrite:
        raise OutputExistsError(out)
    why = kind.stranger(out)
    if why is not None:
        raise NotOwnOutputError(f"{out}: --overwrite replaces only this command's own output ({kind.name}), and "
                                f"this is not one ({why}); remove it yourself or choose another output")
    return out
