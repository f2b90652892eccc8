"""A trained StyleGAN's synthesis network as projection and prediction use it: styles (and noise maps) → encoded samples.

:class:`StyleSynthesis` wraps a loaded StyleGAN 1, 2 or 3 generator (frozen, in eval mode)
and fixes what its latent space is: ``num_ws`` styles of ``w_dim``; latents ``w`` ``[B, L, D]``
with ``L = 1`` (space ``w``, broadcast to every layer) or ``L = num_ws`` (``wplus``); one noise
map ``[B, 1, H_i, W_i]`` per entry of :attr:`noise_shapes` (none for StyleGAN 3). Its outputs
are joint encodings ``[B, C + L_mask, R, R]`` in ``[-1, 1]``
(:class:`~synthmed.data.encoding.JointEncoding`), at full resolution (a progressive family
stopped below it is up-sampled, as sampling does).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from synthmed.data.encoding import JointEncoding
from synthmed.errors import SynthmedError
from synthmed.training.seeding import derive_seed, make_generator

#: Families with a style space.
STYLE_FAMILIES: tuple[str, ...] = ("stylegan1", "stylegan2", "stylegan3")
#: :func:`~synthmed.training.seeding.derive_seed` stream of the latents behind ``w_avg`` and ``w_std``.
W_STATS_STREAM = 1


class StyleSynthesis:
    """The synthesis side of a loaded StyleGAN generator (see the module docstring).

    Args:
        generator: a :class:`~synthmed.generators.gan.model.GANGenerator` with weights.

    Raises:
        SynthmedError: a generator without a style space (ProGAN, diffusion) or without weights.
    """

    def __init__(self, generator: Any):
        config = getattr(generator, "config", None)
        family = getattr(config, "family", None)
        if family not in STYLE_FAMILIES:
            raise SynthmedError(f"{generator.source}: projection needs a StyleGAN (1, 2 or 3) and its style space; "
                                f"a {generator.name} generator has none")
        if generator.network is None:
            raise SynthmedError("this generator has no weights: fit or load it first")
        self.generator = generator
        self.network = generator.network.eval().requires_grad_(False)
        self.config = config
        self.device = generator.device
        self.encoding: JointEncoding = generator.encoding
        self.level, self.alpha = generator.level()
        synthesis = self.network.synthesis
        self.num_ws: int = int(synthesis.num_ws)
        self.w_dim: int = int(config.w_dim)
        self.z_dim: int = int(config.z_dim)
        self.resolution: int = int(config.resolution)
        self.channels: int = int(config.img_channels)
        #: ``(H, W)`` of each noise input the synthesis runs, in layer order.
        self.noise_shapes: list[tuple[int, int]] = [tuple(s) for s in synthesis.noise_shapes(level=self.level)]

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> StyleSynthesis:
        """The synthesis of the generator in a run directory or saved folder.

        Raises:
            SynthmedError: not a generator, not a StyleGAN, or no checkpoint yet.
        """
        from synthmed.generators.api import load_generator

        return cls(load_generator(path, device=device, checkpoint=checkpoint))

    def describe(self) -> dict[str, Any]:
        """What a latent dictionary records about its generator."""
        source = self.generator.source
        return {"generator": self.generator.name, "run": None if source is None else str(Path(source).resolve()),
                "step": int(self.generator.step), "label_mode": self.encoding.label_mode,
                "num_ws": self.num_ws, "w_dim": self.w_dim, "level": int(self.level), "alpha": float(self.alpha),
                "noise_shapes": [list(s) for s in self.noise_shapes]}

    def layers(self, space: str) -> int:
        """``L`` of a latent in ``space``: 1 for ``w``, ``num_ws`` for ``wplus``."""
        if space not in ("w", "wplus"):
            raise ValueError(f"space must be w or wplus, got {space!r}")
        return 1 if space == "w" else self.num_ws

    @torch.no_grad()
    def w_stats(self, samples: int, seed: int) -> tuple[torch.Tensor, float]:
        """``(w_avg [w_dim], w_std)`` of ``samples`` latents ``z ~ N(0, I)`` through the mapping
        network (NVlabs: ``w_std = sqrt(Σ‖w − w_avg‖² / samples)``), drawn from ``seed``'s
        :data:`W_STATS_STREAM` on the CPU, mapped in chunks of 1,000."""
        gen = make_generator(derive_seed(seed, W_STATS_STREAM))
        z = torch.randn((samples, self.z_dim), generator=gen)
        ws = torch.cat([self.network.mapping(c.to(self.device)).float().cpu() for c in z.split(1000)])
        w_avg = ws.mean(0)
        return w_avg, float((ws - w_avg).square().sum(1).mean().sqrt())

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """``[B, 1 or num_ws, D] → [B, num_ws, D]``."""
        if w.ndim != 3 or w.shape[1] not in (1, self.num_ws) or w.shape[2] != self.w_dim:
            raise ValueError(f"latents must be [B, 1 or {self.num_ws}, {self.w_dim}], got {tuple(w.shape)}")
        return w.expand(-1, self.num_ws, -1)

    def synthesize(self, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Encoded samples ``[B, C + L_mask, R, R]`` of latents ``w`` ``[B, 1 or num_ws, D]`` with
        explicit ``noise`` maps (one per :attr:`noise_shapes` entry; ``None``: no noise). Keeps the
        graph: projection backpropagates through it."""
        from synthmed.generators.gan.networks_progan import upscale

        maps = None if not self.noise_shapes else noise
        x = self.network.synthesis(self.broadcast(w), level=self.level, alpha=self.alpha, noise=maps)
        return upscale(x, 2 ** (self.config.max_level - self.level))

    @torch.no_grad()
    def render(self, w: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded samples of latents (a predicted follow-up, one per neighbour, …): ``(images
        float32 [B, C, R, R] in [0, 1], labels uint8 [B, R, R])`` on the CPU."""
        x = self.synthesize(w.to(self.device, torch.float32),
                            None if noise is None else [n.to(self.device, torch.float32) for n in noise])
        return self.encoding.decode(x.float().cpu())
