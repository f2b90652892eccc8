"""Stream a generator's samples into a synthetic Store, and export it as NIfTI or PNG.

``sample_to_store`` writes batch by batch (:class:`~synthmed.data.StoreWriter` buffers one
chunk), so memory does not grow with ``n``. Rows: ``case_id`` ``syn_00000``, … (one per
sample), ``slice`` 0 (2D) or -1 (3D), ``split`` ``train`` (a synthetic store is training
data), ``source`` the generator name. ``store.json`` has ``synthetic: true`` and provenance
``{"generator", "run", "checkpoint_step", "sampler", "steps", "seed", "batch", "n", "trained_on",
"trained_on_hash"}`` (plus ``truncation`` when given: GANs only): ``trained_on`` is the absolute
path of the generator's training store and ``trained_on_hash`` its content hash when it was
trained, which the export's privacy gate checks.

Exports (sibling of the store ``OUT``):

* ``nifti`` → ``OUT-nifti/``, BraTS layout ``syn_XXXXX/syn_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz``
  with BraTS labels (ET written as 4) and a diagonal affine of the store's spacing. 3D: one
  case per sample. 2D: samples are stacked in groups of ``slices_per_case`` (default 64) as
  the axial slices of one volume: slice ``k`` of ``syn_0000b`` is sample ``b·64 + k``.
* ``png`` → ``OUT-samples.png``, the ``data inspect`` grid (each channel + the mask over
  the last channel) of up to 16 samples.

Both exports go through :func:`synthmed.export.export_store`, the one exporter, and so
through its privacy gate: they are refused (after the store is written) when a sample is a
near copy of a training sample (``synthmed export --allow-near-copies`` exports anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from synthmed.data.case import CANONICAL_CHANNELS
from synthmed.data.store import Store, StoreWriter
from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.generators.base import Generator
from synthmed.progress import progress_bar

ExportFormat = Literal["store", "nifti", "png"]
FORMATS: tuple[str, ...] = ("store", "nifti", "png")


def export_path(out: str | Path, fmt: str) -> Path | None:
    """Where ``fmt`` exports go for the store ``out`` (``None`` for ``store``)."""
    out = Path(out)
    if fmt == "nifti":
        return out.with_name(f"{out.name}-nifti")
    if fmt == "png":
        return out.with_name(f"{out.name}-samples.png")
    return None


def sample_to_store(
    generator: Generator,
    out: str | Path,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 16,
    sampler: str | None = None,
    steps: int | None = None,
    fmt: str = "store",
    overwrite: bool = False,
    progress: bool = True,
    slices_per_case: int = 64,
    truncation: float | None = None,
    force: bool = False,
) -> Store:
    """Sample ``n`` image + mask pairs into a synthetic store at ``out`` (and export, see module doc).

    Raises:
        OutputExistsError: ``out`` (or the export) exists and ``overwrite`` is false — checked
            before any sampling.
        ResourceError: the memory or disk estimate (:func:`synthmed.limits.sample_estimate`)
            does not fit this machine and ``force`` is false — checked before any sampling.
        SynthmedError: bad ``n``, ``batch_size``, sampler, steps or format; ``truncation``
            for a generator without it (only GANs have the truncation trick).
    """
    out = Path(out)
    if fmt not in FORMATS:
        raise SynthmedError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if n < 1 or batch_size < 1:
        raise SynthmedError(f"--n and --batch must be >= 1, got {n} and {batch_size}")
    extra = export_path(out, fmt)
    if extra is not None and extra.exists() and not overwrite:
        raise OutputExistsError(extra)
    sampler, steps = generator.resolve_sampler(sampler, steps)
    kwargs: dict[str, Any] = {}
    if truncation is not None:
        if not generator.supports_truncation:
            raise SynthmedError(f"the {generator.name} generator has no --truncation (only GANs do)")
        if not 0 < truncation <= 1:
            raise SynthmedError(f"--truncation must be in (0, 1], got {truncation}")
        kwargs["truncation"] = float(truncation)
    data = generator.data
    if not data.get("sample_shape"):
        raise SynthmedError(f"{generator.source}: the generator does not record the shape of its training samples")
    shape = list(data["sample_shape"])
    from synthmed.limits import check, sample_estimate

    check("generator sample", sample_estimate(n, batch_size, shape), out, force=force)
    dims = len(shape) - 1
    channels = data.get("channels") or list(CANONICAL_CHANNELS[: shape[0]])
    provenance = {**generator.describe(), "run": generator.source, "checkpoint_step": generator.step,
                  "sampler": sampler, "steps": steps, "seed": seed, "batch": batch_size, "n": n,
                  **({"truncation": kwargs["truncation"]} if kwargs else {}),
                  "trained_on": data.get("store"), "trained_on_hash": data.get("store_hash")}
    writer = StoreWriter(out, dims=dims, channels=channels, sample_shape=shape, spacing=data.get("spacing", (1, 1, 1)),
                         normalisation=data.get("normalisation", {}), provenance=provenance, synthetic=True,
                         overwrite=overwrite)
    with writer, progress_bar(enabled=progress) as bar:
        task = bar.add_task(f"sampling {sampler}×{steps}", total=n)

        def tick(m: int, k: int) -> None:
            bar.advance(task, m / k)

        done = 0
        for images, labels in generator.sample(n, seed, batch_size=batch_size, sampler=sampler, steps=steps, on_step=tick,
                                           **kwargs):
            m = images.shape[0]
            rows = [{"case_id": f"syn_{i:05d}", "slice": 0 if dims == 2 else -1, "split": "train",
                     "source": generator.name} for i in range(done, done + m)]
            writer.append(images.numpy().astype(np.float32, copy=False), labels.numpy().astype(np.uint8, copy=False), rows)
            done += m
            bar.update(task, completed=done)
    store = writer.store
    if fmt in ("nifti", "png"):
        from synthmed.export import export_store

        export_store(store, extra, fmt=fmt, overwrite=overwrite, slices_per_case=slices_per_case, seed=seed,
                     progress=progress)
    return store

