"""Latent scaling: the affine map between the autoencoder's latents and what the latent diffusion model diffuses.

A scaling is ``x = (z − shift) · scale`` and back ``z = x / scale + shift``, fitted once when the
autoencoder stage is done and recorded in the run as ``RUN/latent_scaling.json`` (so training,
resuming and sampling use the very same numbers). Two modes (``latent_scaling``):

* ``minmax`` (Khader et al. 2022, FirasGit/medicaldiffusion): min–max to ``[−1, 1]`` with the
  range of the codebook, ``x = 2 (z − min) / (max − min) − 1`` over all entries of a ``vq``
  autoencoder's codes (a ``kl`` autoencoder has no codebook: the range of its training latents
  instead). The diffused values are nominally in ``[−1, 1]`` (pre-quantization latents can fall
  slightly outside), and the samplers clamp to it (``bounded``), as their sampler does.
* ``std`` (the ``scale_factor`` of MONAI's ``LatentDiffusionInferer``): ``x = z / std`` with
  ``std`` the standard deviation (unbiased) of every element of the training split's latents;
  no shift, as MONAI's (MONAI takes the first batch, here it is the whole split). Unbounded:
  nothing is clamped while sampling.

The arithmetic is in float64 from float32 latents, and ``shift``/``scale`` are stored as
JSON floats, which read back bit for bit; ``denormalise(normalise(z))`` is ``z`` up to the
float32 rounding of the scaled value (at most one unit in its last place, times the scale),
which leaves a ``vq`` latent's nearest codes, hence its decoded sample, unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from synthmed.atomic import atomic_file
from synthmed.errors import SynthmedError

if TYPE_CHECKING:
    from synthmed.data.store import Store
    from synthmed.generators.latent.autoencoder import Autoencoder

ScalingMode = Literal["minmax", "std"]
SCALINGS: tuple[str, ...] = ("minmax", "std")
SCALING_HELP = ("latent scaling before diffusion: minmax (Khader et al.: to [-1, 1] with the codebook's range, or "
                "the training latents' for kl; samplers clamp to [-1, 1]) or std (MONAI's LatentDiffusionInferer: "
                "divided by the training latents' standard deviation; nothing clamped)")
#: The scaling's file in the latent diffusion run folder.
LATENT_SCALING = "latent_scaling.json"


@dataclass(frozen=True)
class LatentScaling:
    """``x = (z − shift) · scale`` (see the module docstring).

    Attributes:
        mode: ``minmax`` or ``std``.
        shift: subtracted before scaling (``minmax``: the range's midpoint; ``std``: 0).
        scale: the factor (``minmax``: ``2 / (max − min)``; ``std``: ``1 / std``), positive.
        autoencoder_step: the autoencoder checkpoint whose latents were scaled (and which the
            diffusion stage is trained and sampled with).
        statistics: what the numbers came from (``minmax``: ``min``, ``max``, ``source``
            ``codebook`` or ``latents``; ``std``: ``std``, ``mean``, ``elements``).
    """

    mode: str
    shift: float
    scale: float
    autoencoder_step: int
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def bounded(self) -> bool:
        """Whether the scaled latents are nominally in ``[−1, 1]`` (``minmax``), so that samplers clamp there."""
        return self.mode == "minmax"

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``z`` (any float dtype, any shape) → float32 scaled latents, on ``z``'s device."""
        return ((z.double() - self.shift) * self.scale).float()

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``x`` → float32 latents: the inverse of :meth:`normalise`."""
        return (x.double() / self.scale + self.shift).float()

    def to_json(self) -> dict[str, Any]:
        """The scaling as plain JSON data (what ``latent_scaling.json`` holds)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> LatentScaling:
        """The scaling of :meth:`to_json`'s data.

        Raises:
            SynthmedError: ``"{source}: …"`` naming the bad or missing field.
        """
        if not isinstance(data, Mapping):
            raise SynthmedError(f"{source}: the latent scaling is missing or not a JSON object")
        mode, shift, scale, step = (data.get(k) for k in ("mode", "shift", "scale", "autoencoder_step"))
        if mode not in SCALINGS:
            raise SynthmedError(f"{source}: latent scaling mode must be one of {', '.join(SCALINGS)}, got {mode!r}")
        for name, value in (("shift", shift), ("scale", scale)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise SynthmedError(f"{source}: latent scaling {name} must be a finite number, got {value!r}")
        if scale <= 0:  # type: ignore[operator]
            raise SynthmedError(f"{source}: latent scaling scale must be positive, got {scale!r}")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise SynthmedError(f"{source}: latent scaling autoencoder_step must be a step number, got {step!r}")
        return cls(str(mode), float(shift), float(scale), int(step), dict(data.get("statistics") or {}))  # type: ignore[arg-type]


def minmax_scaling(low: float, high: float, autoencoder_step: int, source: str) -> LatentScaling:
    """The ``minmax`` scaling of the range ``[low, high]`` (``source``: ``codebook`` or ``latents``).

    Raises:
        SynthmedError: an empty or non-finite range.
    """
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise SynthmedError(f"latent scaling minmax: the {source} range [{low}, {high}] is empty or not finite "
                            "(a collapsed autoencoder?); train the autoencoder longer or use latent_scaling std")
    return LatentScaling("minmax", (high + low) / 2.0, 2.0 / (high - low), int(autoencoder_step),
                         {"min": low, "max": high, "source": source})


def std_scaling(std: float, mean: float, elements: int, autoencoder_step: int) -> LatentScaling:
    """The ``std`` scaling of latents with standard deviation ``std`` (no shift).

    Raises:
        SynthmedError: a zero or non-finite ``std``.
    """
    if not math.isfinite(std) or std <= 0:
        raise SynthmedError(f"latent scaling std: the training latents' standard deviation is {std} (constant "
                            "latents: a collapsed autoencoder?); train the autoencoder longer or use latent_scaling minmax")
    return LatentScaling("std", 0.0, 1.0 / std, int(autoencoder_step),
                         {"std": std, "mean": mean, "elements": int(elements)})


@torch.no_grad()
def fit_scaling(autoencoder: Autoencoder, store: Store, mode: str, *, batch: int = 2) -> LatentScaling:
    """Fit the ``mode`` scaling of ``autoencoder``'s latents (see the module docstring).

    ``minmax`` of a ``vq`` autoencoder reads only its codebook; otherwise the latents of the
    store's ``train`` split are computed ``batch`` samples at a time (memory flat in the split's
    size), their moments merged in float64 (Chan et al.'s pairwise update) and their range kept.

    Raises:
        SynthmedError: an unknown ``mode``, or a degenerate range or deviation.
    """
    if mode not in SCALINGS:
        raise SynthmedError(f"latent_scaling must be one of {', '.join(SCALINGS)}, got {mode!r}")
    step = autoencoder.step
    codebook = autoencoder.codebook
    if mode == "minmax" and codebook is not None:
        return minmax_scaling(float(codebook.min()), float(codebook.max()), step, "codebook")
    indices = store.indices("train")
    count, mean, m2 = 0, 0.0, 0.0
    low, high = math.inf, -math.inf
    for start in range(0, len(indices), batch):
        images, labels = store.read(indices[start:start + batch])
        z = autoencoder.encode(images, labels).double()
        n, batch_mean = z.numel(), float(z.mean())
        batch_m2 = float((z - batch_mean).square().sum())
        delta, total = batch_mean - mean, count + n
        mean, m2, count = mean + delta * n / total, m2 + batch_m2 + delta * delta * count * n / total, total
        low, high = min(low, float(z.min())), max(high, float(z.max()))
    if mode == "minmax":
        return minmax_scaling(low, high, step, "latents")
    return std_scaling(math.sqrt(m2 / max(count - 1, 1)), mean, count, step)


def write_scaling(run_dir: str | Path, scaling: LatentScaling) -> Path:
    """Write ``RUN/latent_scaling.json`` atomically; returns its path."""
    file = Path(run_dir) / LATENT_SCALING
    with atomic_file(file) as tmp:
        tmp.write_text(json.dumps(scaling.to_json(), indent=2) + "\n")
    return file


def read_scaling(run_dir: str | Path) -> LatentScaling | None:
    """The scaling recorded in ``RUN`` (``None``: none yet, the diffusion stage has not begun).

    Raises:
        SynthmedError: an unreadable or invalid file (naming it).
    """
    file = Path(run_dir) / LATENT_SCALING
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise SynthmedError(f"{file}: unreadable latent scaling ({exc})") from None
    return LatentScaling.from_json(data, str(file))
