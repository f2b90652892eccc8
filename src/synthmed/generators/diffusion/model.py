"""``DiffusionGenerator``: the ``ddpm`` generator (DDPM or rectified flow) behind :class:`Generator`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch

from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.generators.common import EMATask, TaskGenerator
from synthmed.generators.config import PRESETS, DiffusionModelConfig, Preset, TrainConfig
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import resolve_sampler, sample_decoded
from synthmed.generators.diffusion.task import DiffusionTask


class DiffusionGenerator(TaskGenerator[DiffusionModelConfig, TrainConfig]):
    """A denoising-diffusion generator of jointly encoded image + mask samples.

    Args:
        config: the model; ``spatial_dims``, ``image_channels`` and ``image_shape`` are
            replaced by the training store's on :meth:`fit`. Default: the preset's.
        train: training settings. Default: the preset's.
        preset: ``tiny``, ``laptop``, ``small`` or ``paper`` (see :data:`~synthmed.generators.config.PRESETS`).
    """

    name = "ddpm"

    model_config = DiffusionModelConfig
    train_config_model = TrainConfig

    @classmethod
    def presets(cls) -> Mapping[str, Preset]:
        return PRESETS

    # -- training

    def config_for(self, store: Store) -> DiffusionModelConfig:
        """The model config completed with ``store``'s dims, channels and shape.

        Raises:
            SynthmedError: the store's shape does not fit the network (e.g. sides not
                divisible by ``2**(levels - 1)``).
        """
        values = self.config.model_dump()
        values.update(spatial_dims=store.dims, image_channels=store.sample_shape[0],
                      image_shape=tuple(store.sample_shape[1:]))
        return build_config(DiffusionModelConfig, f"{store.path}: {store.dims}D samples of shape "
                            f"{store.sample_shape} do not fit the model", **values)

    def make_task(self, config: DiffusionModelConfig, seed: int) -> EMATask:
        return DiffusionTask(config, self.train_config, seed)

    @classmethod
    def build_network(cls, config: DiffusionModelConfig) -> torch.nn.Module:
        return build_unet(config)

    # -- sampling

    def resolve_sampler(self, sampler: str | None, steps: int | None) -> tuple[str, int]:
        """Defaults and checks: ``(sampler, steps)`` (:func:`~synthmed.generators.diffusion.samplers.resolve_sampler`)."""
        return resolve_sampler(self.config, sampler, steps)

    def sample(self, n: int, seed: int, *, batch_size: int = 16, sampler: str | None = None, steps: int | None = None,
               on_step: Callable[[int, int], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``n`` samples in batches of ``batch_size`` (see :class:`Generator` and
        :func:`~synthmed.generators.diffusion.samplers.sample_decoded`).

        Batch ``b`` draws all its noise from a generator seeded by ``(seed, b)``: the same
        ``(seed, batch_size, sampler, steps)`` on the same device gives the same samples.

        Args:
            on_step: ``(batch_samples, total_steps)`` callback after each network evaluation.
        """
        network = self.sampling_network(n, batch_size)
        sampler, steps = self.resolve_sampler(sampler, steps)
        yield from sample_decoded(network, self.config, self.encoding, n, seed, batch_size=batch_size, sampler=sampler,
                                  steps=steps, device=self.device, on_step=on_step)
