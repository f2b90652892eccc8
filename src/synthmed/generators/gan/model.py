"""The GAN generators behind :class:`~synthmed.generators.base.Generator`: ``progan``,
``stylegan1``, ``stylegan2``, ``stylegan3`` (one class, four registered names)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch

from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.common import EMATask, TaskGenerator
from synthmed.generators.gan.config import PRESETS, GANModelConfig, GANPreset, GANTrainConfig
from synthmed.generators.gan.task import GANTask, build_networks, generate
from synthmed.training.seeding import GeneratorDraws, derive_seed, make_generator


class GANGenerator(TaskGenerator[GANModelConfig, GANTrainConfig]):
    """A GAN of jointly encoded image + mask samples; subclasses fix the family (:attr:`name`).

    Args:
        config: the networks; ``image_channels`` and ``resolution`` are replaced by the
            training store's on :meth:`fit`. Default: the preset's.
        train: training settings. Default: the preset's.
        preset: ``tiny``, ``small`` or ``paper`` (:data:`~synthmed.generators.gan.config.PRESETS`).
    """

    name: ClassVar[str] = "stylegan2"
    #: ``sample(…, truncation=psi)`` is supported.
    supports_truncation: ClassVar[bool] = True

    model_config = GANModelConfig
    train_config_model = GANTrainConfig
    options_source = "{name} {what} options"

    @classmethod
    def presets(cls) -> Mapping[str, GANPreset]:
        return PRESETS[cls.name]

    # -- training

    def config_for(self, store: Store) -> GANModelConfig:
        """The model config completed with ``store``'s channels and side.

        Raises:
            SynthmedError: a 3D store, a non-square image or a side that is not a power of two.
        """
        shape = tuple(store.sample_shape[1:])
        if store.dims != 2 or len(set(shape)) != 1:
            raise SynthmedError(f"{store.path}: the {self.name} generator needs square 2D slices; the store has "
                                f"{store.dims}D samples of shape {list(store.sample_shape)}")
        values = self.config.model_dump()
        values.update(image_channels=store.sample_shape[0], resolution=shape[0])
        return build_config(GANModelConfig, f"{store.path}: samples of shape {list(store.sample_shape)} do not fit "
                            f"the {self.name} generator", **values)

    def make_task(self, config: GANModelConfig, seed: int) -> EMATask:
        return GANTask(config, self.train_config, seed)

    @classmethod
    def build_network(cls, config: GANModelConfig) -> torch.nn.Module:
        """The generator network of ``config`` (the discriminator is only trained)."""
        return build_networks(config)[0]

    def trained_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """The store's description plus ``growth_steps`` (what :meth:`level` needs)."""
        return {**data, "growth_steps": self.train_config.growth_steps}

    @classmethod
    def loaded_data(cls, meta: Mapping[str, Any], key: str | None) -> dict[str, Any]:
        """``meta``'s ``data``; from a run (``key`` ``"ema"``), ``growth_steps`` defaults to its training's."""
        data = dict(meta.get("data", {}))
        if key == "ema":
            data.setdefault("growth_steps", meta.get("training", {}).get("growth_steps", 0))
        return data

    # -- sampling

    def level(self) -> tuple[int, float]:
        """Growth ``(level, alpha)`` of the weights: the last trained one (ProGAN / StyleGAN 1 stopped
        before the full resolution sample at their level, up-sampled)."""
        from synthmed.generators.gan.networks_progan import growth

        phase = int(self.data.get("growth_steps", 0) or 0)
        if self.config.family not in ("progan", "stylegan1") or phase <= 0:
            return self.config.max_level, 1.0
        return growth(max(self.step - 1, 0), phase, self.config.max_level)

    def sample(self, n: int, seed: int, *, batch_size: int = 16, sampler: str | None = None, steps: int | None = None,
               on_step: Callable[[int, int], None] | None = None,
               truncation: float = 1.0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``n`` samples in batches of ``batch_size`` (see :class:`Generator`).

        Batch ``b`` draws its latents (and noise inputs) from a generator seeded by
        ``(seed, b)``: the same seed and batch size on the same device give the same samples.

        Args:
            truncation: ``psi`` in ``(0, 1]`` pulls styles towards the average ``w``
                (StyleGAN) or the first features towards their running mean (ProGAN):
                fidelity for diversity.
        """
        network = self.sampling_network(n, batch_size)
        if not 0 < truncation <= 1:
            raise SynthmedError(f"--truncation must be in (0, 1], got {truncation}")
        self.resolve_sampler(sampler, steps)
        level, alpha = self.level()
        network.eval()
        for b, start in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - start)
            gen = make_generator(derive_seed(seed, b), self.device)
            z = torch.randn((m, self.config.z_dim), generator=gen, device=self.device)
            with torch.no_grad():
                x = generate(network, self.config, z, psi=truncation, level=level, alpha=alpha,
                             draws=GeneratorDraws(gen))
            if on_step:
                on_step(m, 1)
            yield self.encoding.decode(x.float().cpu())


class ProGAN(GANGenerator):
    """Progressive GAN (WGAN-GP + drift, pixel norm, minibatch std, progressive growing)."""

    name = "progan"


class StyleGAN1(GANGenerator):
    """StyleGAN 1 (mapping, AdaIN, noise, style mixing, progressive growing)."""

    name = "stylegan1"


class StyleGAN2(GANGenerator):
    """StyleGAN 2 (modulated convs, skip G, residual D, lazy R1 + path length, ADA)."""

    name = "stylegan2"


class StyleGAN3(GANGenerator):
    """StyleGAN 3 (Fourier input, alias-free filtered layers, ADA): config T, or R with
    ``sg3_config="r"`` (1×1 convolutions, radial filters, twice the channels)."""

    name = "stylegan3"
