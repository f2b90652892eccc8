"""Export a store as NIfTI (BraTS layout), an nnU-Net raw dataset or a PNG grid — with a privacy gate.

This module is the one place that writes a store out in another format; ``synthmed export``
and ``synthmed generator sample --format nifti|png`` both call :func:`export_store`.

**The privacy gate.** A *synthetic* store (``store.json`` ``synthetic: true``) is exported
only when a memorization audit shows no near copy: no sample whose maximum Pearson
correlation with a training sample (joint, image channels) exceeds ``threshold`` (default
:data:`~synthmed.evaluate.memorization.DEFAULT_THRESHOLD`, 0.95). The audit is bound to
content: it records the content hashes (:func:`~synthmed.data.fingerprint.store_hash`) of
the synthetic store and of the training store it was measured against, and the gate
recomputes the synthetic store's hash now. The training store is the one the provenance
names: ``trained_on`` (an absolute path, never resolved against the current directory) and
``trained_on_hash`` (its content hash when the generator was trained). The audit is, in order:

1. ``audit_file`` when given: refused unless its synthetic hash is this store's, its
   training hash is ``trained_on_hash``, it was measured against the ``train`` split (or all
   samples) and has the similarity asked for;
2. else ``<store>-memorization.json`` beside the store (written by ``synthmed evaluate
   memorization``), used under the same conditions (otherwise ignored);
3. else computed now against the ``train`` split of ``trained_on``, after checking that the
   store there still has ``trained_on_hash``.

Refused, each with one :class:`PrivacyGateError` saying why and how to proceed: a sample above
the threshold; an audit of another or a changed store, of another training store or of the
test split; a provenance without ``trained_on``, with a relative one (written by an older
synthmed) or naming a missing or changed store. ``allow_near_copies=True``
(``--allow-near-copies``) skips the gate. Real stores are exported without an audit.

**What the gate does not catch.** It compares pixels: a left-right mirrored copy of a
training slice (r ≈ 0.82 on BraTS-like slices) or one shifted by 2 px (r ≈ 0.77) passes the
default ``similarity="pixel"``. ``similarity="shift-flip"`` (``--similarity shift-flip``)
gates on the maximum over shifts up to ``max_shift`` pixels and the mirror
(:func:`~synthmed.metrics.shift_flip.nearest_correlation_tolerant`, about 50× the cost);
neither catches rotations, scaling, intensity remapping or deformed copies.

**Formats** (case ids are new: ``syn_00000…`` for synthetic stores, ``case_00000…`` for real
ones; no source case id appears in a file name, and the NIfTI header text fields
``descrip``, ``aux_file``, ``intent_name``, ``db_name`` are blank):

* ``nifti`` → BraTS layout ``OUT/<id>/<id>_{<channel>…,seg}.nii.gz``, labels as BraTS
  values (ET = 4).
* ``nnunet`` → nnU-Net v2 raw: ``OUT/dataset.json``, ``imagesTr/<id>_0000.nii.gz`` … one
  file per channel (``_0000…_0003`` for the four MR channels), ``labelsTr/<id>.nii.gz``
  with consecutive canonical labels 0 background, 1 NCR, 2 ED, 3 ET, declared as the BraTS
  regions (``whole tumor`` [1, 2, 3], ``tumor core`` [1, 3], ``enhancing tumor`` [3],
  ``regions_class_order`` [2, 1, 3]). Samples of split ``test`` go to ``imagesTs`` /
  ``labelsTs``.
* ``png`` → ``OUT`` is one PNG file: the ``data inspect`` grid.

3D stores give one case per sample. 2D stores are stacked as the axial slices of volumes:
synthetic samples in groups of ``slices_per_case`` (slice ``k`` of case ``b`` is sample
``b·slices_per_case + k``), real samples per source case (in store order). The affine is
diagonal with the store's spacing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from synthmed.atomic import atomic_directory, atomic_file
from synthmed.data.case import LABEL_NAMES
from synthmed.data.fingerprint import store_hash
from synthmed.data.layouts.brats import TO_BRATS
from synthmed.data.store import Store
from synthmed.errors import DataError, SynthmedError
from synthmed.evaluate.audit_record import MemorizationAudit
from synthmed.evaluate.memorization import DEFAULT_THRESHOLD, SIMILARITIES, audit, audit_path
from synthmed.metrics.shift_flip import DEFAULT_MAX_SHIFT
from synthmed.outputs import NIFTI_EXPORT, NNUNET_EXPORT, PNG_FILE, OutputKind, guard_output
from synthmed.progress import progress_bar

ExportFormat = Literal["nifti", "nnunet", "png"]
FORMATS: tuple[str, ...] = ("nifti", "nnunet", "png")
#: what ``--overwrite`` may replace, per format.
OUTPUT_KINDS: dict[str, OutputKind] = {"nifti": NIFTI_EXPORT, "nnunet": NNUNET_EXPORT, "png": PNG_FILE}
#: NIfTI header text fields blanked on export.
TEXT_FIELDS: tuple[str, ...] = ("descrip", "aux_file", "intent_name", "db_name")
#: nnU-Net region declaration of the canonical labels.
NNUNET_LABELS: dict[str, int | list[int]] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3],
                                             "enhancing tumor": [3]}
NNUNET_REGIONS_CLASS_ORDER: list[int] = [2, 1, 3]


class PrivacyGateError(SynthmedError):
    """A synthetic store was not exported: near copies were found, or no audit was possible."""


@dataclass
class ExportResult:
    """What :func:`export_store` wrote: the output path, the cases, and the audit summary used."""

    path: Path
    format: str
    cases: int
    gate: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the gate


def training_provenance(store: Store) -> dict[str, str]:
    """What a synthetic store's provenance records about its generator's training store:
    ``{"trained_on": absolute path, "trained_on_hash": content hash}``."""
    return {"trained_on": str(Path(store.path).resolve()), "trained_on_hash": store_hash(store.path)}


@dataclass
class _Training:
    """The training store a synthetic store's provenance names: its absolute path and content
    hash (``hashed``: computed from the store now, rather than taken from the provenance)."""

    path: Path
    hash: str
    hashed: bool = False


def _refuse(store: Store, why: str) -> PrivacyGateError:
    return PrivacyGateError(f"{store.path}: not exported: {why}; or pass --allow-near-copies to export without "
                            "the check")


def _training_store(store: Store) -> _Training:
    """The generator's training store named by ``store``'s provenance, checked.

    Raises:
        PrivacyGateError: no ``trained_on``, a relative one, a missing store, or (without a
            saved ``trained_on_hash``) one that cannot be hashed.
    """
    prov = store.meta.get("provenance") or {}
    trained_on, expected = prov.get("trained_on"), prov.get("trained_on_hash")
    if not trained_on:
        raise _refuse(store, "cannot audit for near copies: its provenance names no training store (trained_on). "
                             "Audit it with synthmed evaluate memorization --train TRAIN --synthetic STORE --out A.json "
                             "only if you know TRAIN")
    path = Path(trained_on)
    if not path.is_absolute():
        raise _refuse(store, f"provenance.trained_on is the relative path {trained_on!r} (written by an older "
                             "synthmed), which would depend on the current directory; sample the store again")
    if expected:
        return _Training(path, str(expected))
    if not path.is_dir():
        raise _refuse(store, f"its training store {path} (provenance.trained_on) does not exist")
    return _Training(path, store_hash(path), hashed=True)


def _saved_audit(store: Store, synthetic_hash: str, path: Path, training: _Training, similarity: str,
                 max_shift: int, *, required: bool) -> MemorizationAudit | None:
    """The saved audit at ``path`` if it is bound to ``store``'s content (``synthetic_hash``) and
    its training store.

    Returns ``None`` for an audit that is missing or does not fit (when not ``required``).

    Raises:
        PrivacyGateError: ``required`` and the audit is missing, unreadable or not bound to
            this content (saying which binding failed).
    """
    if not path.is_file():
        if required:
            raise _refuse(store, f"audit file {path} does not exist")
        return None
    try:
        saved = MemorizationAudit.load(path)
    except SynthmedError as exc:
        if required:
            raise _refuse(store, str(exc)) from None
        return None
    extra = saved.extra
    why = None
    if not extra.get("synthetic_hash") or not extra.get("train_hash"):
        why = "it records no content hashes (made by an older synthmed)"
    elif extra["synthetic_hash"] != synthetic_hash:
        why = (f"it was made for other content ({saved.synthetic_path}); this store is not the one audited, or it "
               "changed after the audit")
    elif extra["train_hash"] != training.hash:
        why = (f"it was measured against {saved.train_path}, whose content is not the generator's training store "
               f"{training.path} (provenance.trained_on_hash)")
    elif saved.train_split not in ("train", None):
        why = f"it was measured against the {saved.train_split!r} split, not the training split"
    elif similarity == "shift-flip" and (saved.similarity != "shift-flip" or (saved.max_shift or 0) < max_shift):
        why = f"it has no shift-flip similarity up to {max_shift} px (evaluate memorization --similarity shift-flip)"
    if why is None:
        return saved
    if required:
        raise _refuse(store, f"audit {path} does not fit: {why}; run synthmed evaluate memorization again")
    return None


def check_privacy(
    store: Store,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    audit_file: str | Path | None = None,
    allow_near_copies: bool = False,
    device: str = "cpu",
    similarity: str = "pixel",
    max_shift: int = DEFAULT_MAX_SHIFT,
) -> dict:
    """Apply the privacy gate (see the module docstring) to ``store``.

    Returns:
        A summary: ``{"checked": bool, "source": "saved"|"computed"|"real store"|"skipped",
        "similarity", "threshold", "max", "n_above", "train", ...}``.

    Raises:
        PrivacyGateError: near copies found, or no audit bound to this content could be made.
    """
    if not store.synthetic:
        return {"checked": False, "source": "real store"}
    if allow_near_copies:
        return {"checked": False, "source": "skipped (--allow-near-copies)"}
    if similarity not in SIMILARITIES:
        raise SynthmedError(f"--similarity must be one of {', '.join(SIMILARITIES)}, got {similarity!r}")
    training = _training_store(store)
    synthetic_hash = store_hash(store.path)  # each store is read for its hash at most once
    result = _saved_audit(store, synthetic_hash, Path(audit_file) if audit_file else audit_path(store.path), training,
                          similarity, max_shift, required=audit_file is not None)
    source = "saved"
    if result is None:
        if not training.path.is_dir():
            raise _refuse(store, f"cannot audit for near copies: its training store {training.path} "
                                 "(provenance.trained_on) does not exist")
        if not training.hashed and store_hash(training.path) != training.hash:
            raise _refuse(store, f"its training store {training.path} changed since the generator was trained on "
                                 "it (content hash differs from provenance.trained_on_hash), so an audit against it "
                                 "would not be against the generator's training data")
        try:
            train = Store.open(training.path)
        except DataError as exc:
            raise _refuse(store, f"cannot audit for near copies against its training store: {exc}") from None
        result = audit(store, train, threshold=threshold, device=device, similarity=similarity, max_shift=max_shift,
                       hashes={"synthetic_hash": synthetic_hash, "train_hash": training.hash})
        source = "computed"
    values, indices = result.gate_values(similarity)
    above = np.flatnonzero(values > threshold)
    summary = {"checked": True, "source": source, "similarity": similarity, "train": str(training.path),
               "threshold": float(threshold), "max": float(values.max()) if len(values) else None,
               "n_above": int(len(above))}
    if len(above):
        worst = above[np.argsort(-values[above])][:5]
        pairs = ", ".join(f"synthetic {i} ~ train {indices[i]} (r={values[i]:.4f})" for i in worst)
        what = "maximum Pearson correlation" if similarity == "pixel" else "maximum Pearson correlation over shifts and mirror"
        raise PrivacyGateError(
            f"{store.path}: not exported: {len(above)} of {len(values)} synthetic samples are near copies of training "
            f"samples ({what} > threshold {threshold:g}; {pairs}). A dataset with near copies is not "
            "anonymous. Pass --allow-near-copies to export anyway, or --threshold to change the threshold")
    return summary


# ----------------------------------------------------------------------------- writing


def save_anonymous_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write ``[D, H, W]`` as NIfTI (file axes x, y, z) with blank header text fields, atomically."""
    img = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    for name in TEXT_FIELDS:
        img.header[name] = b""
    with atomic_file(path) as tmp:
        nib.save(img, tmp)


def _affine(spacing: tuple[float, ...]) -> np.ndarray:
    z, y, x = spacing
    return np.diag([x, y, z, 1.0])


def case_groups(store: Store, slices_per_case: int = 64) -> list[np.ndarray]:
    """Sample indices of each exported case (see the module docstring), in store order."""
    n = len(store)
    if store.dims == 3:
        return [np.array([i]) for i in range(n)]
    if store.synthetic:
        per = max(1, int(slices_per_case))
        return [np.arange(s, min(n, s + per)) for s in range(0, n, per)]
    table = store.samples
    keys = list(zip(table["split"], table["case_id"]))
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return [np.array(g) for g in groups.values()]


def iter_cases(store: Store, slices_per_case: int = 64) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """``(new_id, split, images [C, D, H, W], label [D, H, W])`` for each exported case."""
    prefix = "syn" if store.synthetic else "case"
    split = store.samples["split"].to_numpy()
    for c, idx in enumerate(case_groups(store, slices_per_case)):
        images, labels = store.read(idx)
        if store.dims == 2:  # [k, C, H, W] → [C, k, H, W]: samples become axial slices
            images = images.transpose(1, 0, 2, 3)
        else:
            images, labels = images[0], labels[0]
        yield f"{prefix}_{c:05d}", str(split[idx[0]]), images, labels


def write_nifti(store: Store, folder: str | Path, *, overwrite: bool = False, slices_per_case: int = 64,
                progress: bool = True) -> int:
    """Write ``store`` in BraTS layout (ungated; use :func:`export_store`). Returns the case count."""
    affine = _affine(store.spacing)
    groups = len(case_groups(store, slices_per_case))
    with atomic_directory(folder, overwrite=overwrite) as tmp, progress_bar(enabled=progress) as bar:
        task = bar.add_task("writing NIfTI", total=groups)
        for case_id, _, images, label in iter_cases(store, slices_per_case):
            case_dir = tmp / case_id
            case_dir.mkdir()
            for channel, image in zip(store.channels, images):
                save_anonymous_nifti(case_dir / f"{case_id}_{channel}.nii.gz", image.astype(np.float32), affine)
            save_anonymous_nifti(case_dir / f"{case_id}_seg.nii.gz", TO_BRATS[label], affine)
            bar.advance(task)
    return groups


def nnunet_dataset_json(store: Store, n_train: int) -> dict:
    """The nnU-Net v2 ``dataset.json`` of an export of ``store``."""
    return {
        "channel_names": {str(i): name for i, name in enumerate(store.channels)},
        "labels": dict(NNUNET_LABELS),
        "regions_class_order": list(NNUNET_REGIONS_CLASS_ORDER),
        "numTraining": int(n_train),
        "file_ending": ".nii.gz",
        "name": "synthmed synthetic export" if store.synthetic else "synthmed export",
        "description": "canonical labels: " + ", ".join(f"{k} {v}" for k, v in LABEL_NAMES.items()),
    }


def write_nnunet(store: Store, folder: str | Path, *, overwrite: bool = False, slices_per_case: int = 64,
                 progress: bool = True) -> int:
    """Write ``store`` as an nnU-Net v2 raw dataset (ungated; use :func:`export_store`). Returns the case count."""
    affine = _affine(store.spacing)
    groups = len(case_groups(store, slices_per_case))
    n_train = 0
    with atomic_directory(folder, overwrite=overwrite) as tmp, progress_bar(enabled=progress) as bar:
        task = bar.add_task("writing nnU-Net", total=groups)
        for case_id, split, images, label in iter_cases(store, slices_per_case):
            suffix = "Ts" if split == "test" else "Tr"
            n_train += suffix == "Tr"
            (tmp / f"images{suffix}").mkdir(exist_ok=True)
            (tmp / f"labels{suffix}").mkdir(exist_ok=True)
            for k, image in enumerate(images):
                save_anonymous_nifti(tmp / f"images{suffix}" / f"{case_id}_{k:04d}.nii.gz", image.astype(np.float32), affine)
            save_anonymous_nifti(tmp / f"labels{suffix}" / f"{case_id}.nii.gz", label.astype(np.uint8), affine)
            bar.advance(task)
        (tmp / "imagesTr").mkdir(exist_ok=True)
        (tmp / "labelsTr").mkdir(exist_ok=True)
        (tmp / "dataset.json").write_text(json.dumps(nnunet_dataset_json(store, n_train), indent=2) + "\n")
    return groups


def write_png(store: Store, path: str | Path, *, samples: int = 16, seed: int = 0) -> int:
    """The ``data inspect`` grid of up to ``samples`` samples, rows named by new ids (ungated). Returns the rows."""
    from synthmed.data.inspect import render_grid

    prefix = "syn" if store.synthetic else "case"
    render_grid(store, path, n=samples, seed=seed, row_label=lambda index: f"{prefix}_{index:05d}")
    return min(samples, len(store))


def export_store(
    store: Store | str | Path,
    out: str | Path,
    *,
    fmt: str = "nifti",
    allow_near_copies: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    audit_file: str | Path | None = None,
    overwrite: bool = False,
    slices_per_case: int = 64,
    samples: int = 16,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    similarity: str = "pixel",
    max_shift: int = DEFAULT_MAX_SHIFT,
) -> ExportResult:
    """Export ``store`` to ``out`` in ``fmt`` after the privacy gate (see the module docstring).

    Raises:
        SynthmedError: unknown format; OutputIsInputError, OutputExistsError, NotOwnOutputError:
            see :func:`~synthmed.outputs.guard_output` (checked first); PrivacyGateError: the
            gate refused.
    """
    if fmt not in FORMATS:
        raise SynthmedError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 0 < threshold <= 1:
        raise SynthmedError(f"--threshold must be in (0, 1], got {threshold}")
    store = store if isinstance(store, Store) else Store.open(store)
    # inputs: the store, its audit and the generator's training store (both read by the gate)
    trained_on = (store.meta.get("provenance") or {}).get("trained_on")
    out = guard_output(out, [store.path, audit_file or audit_path(store.path), trained_on], kind=OUTPUT_KINDS[fmt],
                       overwrite=overwrite)
    gate = check_privacy(store, threshold=threshold, audit_file=audit_file, allow_near_copies=allow_near_copies,
                         device=device, similarity=similarity, max_shift=max_shift)
    if fmt == "nifti":
        cases = write_nifti(store, out, overwrite=overwrite, slices_per_case=slices_per_case, progress=progress)
    elif fmt == "nnunet":
        cases = write_nnunet(store, out, overwrite=overwrite, slices_per_case=slices_per_case, progress=progress)
    else:
        cases = write_png(store, out, samples=samples, seed=seed)
    return ExportResult(out, fmt, cases, gate)
