"""The functions behind ``synthmed generator train`` and ``sample`` (the CLI only parses)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import FitOptions, Generator
from synthmed.generators.registry import generator_class, names
from synthmed.outputs import NIFTI_EXPORT, PNG_FILE, STORE, guard_output, run_directory
from synthmed.training.fabric import FabricOptions


def train_generator(
    store: str | Path,
    run: str | Path,
    *,
    model: str = "ddpm",
    preset: str = "tiny",
    model_overrides: Mapping[str, Any] = {},
    train_overrides: Mapping[str, Any] = {},
    seed: int = 0,
    fabric: FabricOptions = FabricOptions(),
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> int | None:
    """Train generator ``model`` with ``preset`` (plus overrides) on ``store`` into ``run``.

    Returns:
        The final step (``None`` on DDP ranks other than 0).

    Raises:
        SynthmedError: unknown model or preset, bad option values, unusable store, changed
            model config on ``resume``; an output that is an input, exists without
            ``resume``/``overwrite``, or is not a run directory
            (:func:`~synthmed.outputs.guard_output`).
    """
    cls = generator_class(model)
    generator = cls.from_options(preset, model_overrides, train_overrides)
    # fail before opening the store or starting processes
    run = guard_output(run, [store], kind=run_directory("generator run", names()), overwrite=overwrite, resume=resume)
    opened = Store.open(store)
    final = generator.fit(opened, run, FitOptions(seed=seed, fabric=fabric, resume=resume, overwrite=overwrite,
                                                   progress=progress))
    return final if getattr(generator, "global_rank", 0) == 0 else None


def sample_run(
    run: str | Path,
    out: str | Path,
    *,
    n: int,
    sampler: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    batch: int = 16,
    fmt: str = "store",
    device: str = "auto",
    checkpoint: str = "last",
    overwrite: bool = False,
    progress: bool = True,
    truncation: float | None = None,
    force: bool = False,
) -> Store:
    """Load the generator of ``run`` and write ``n`` samples to the store ``out`` (see
    :func:`~synthmed.generators.sampling.sample_to_store`)."""
    from synthmed.generators.sampling import FORMATS, export_path, sample_to_store

    out = guard_output(out, [run], kind=STORE, overwrite=overwrite)
    extra = export_path(out, fmt) if fmt in FORMATS else None
    if extra is not None:
        guard_output(extra, [run], kind=NIFTI_EXPORT if fmt == "nifti" else PNG_FILE, overwrite=overwrite)
    generator = load_generator(run, device=device, checkpoint=checkpoint)
    return sample_to_store(generator, out, n, seed=seed, batch_size=batch, sampler=sampler, steps=steps, fmt=fmt,
                           overwrite=overwrite, progress=progress, truncation=truncation, force=force)


def generator_kind(path: str | Path) -> str:
    """The registered name of the generator in a run directory (``run.json``'s ``kind``) or a
    saved folder (``generator.json``'s ``generator``).

    Raises:
        SynthmedError: neither file is there.
    """
    import json

    from synthmed.generators.base import GENERATOR_JSON
    from synthmed.training.run import RUN_JSON, read_run

    path = Path(path)
    if (path / RUN_JSON).is_file():
        return str(read_run(path).get("kind"))
    file = path / GENERATOR_JSON
    if not file.is_file():
        raise SynthmedError(f"{path}: not a generator run directory ({RUN_JSON} missing) or saved generator "
                            f"({GENERATOR_JSON} missing)")
    return str(json.loads(file.read_text()).get("generator"))


def load_generator(path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> Generator:
    """The generator of a run directory or saved folder, whatever its family (its
    :func:`generator_kind`'s class's ``load``: EMA weights of checkpoint ``last`` or ``best``).

    Raises:
        SynthmedError: not a generator, an unknown kind, or no checkpoint yet.
    """
    return generator_class(generator_kind(path)).load(path, device=device, checkpoint=checkpoint)
