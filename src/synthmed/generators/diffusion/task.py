"""The diffusion training task for :func:`synthmed.training.train`."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning_fabric import Fabric

from synthmed.data.encoding import JointEncoding
from synthmed.generators.config import DiffusionModelConfig, TrainConfig
from synthmed.generators.diffusion.codec import Codec
from synthmed.generators.diffusion.networks import build_unet
from synthmed.generators.diffusion.samplers import default_sampler, sample_encoded
from synthmed.generators.diffusion.schedulers import scheduler_for, training_loss
from synthmed.training.ema import EMA
from synthmed.training.loop import StepContext
from synthmed.training.seeding import INIT_STREAM, derive_seed, make_generator

#: ``derive_seed`` tags (distinct streams of one run seed).
PREVIEW_STREAM = 2


class DiffusionTask:
    """Train a denoising UNet on store batches, diffused through ``codec`` (one Adam step + EMA per step).

    Args:
        config: the model; its ``image_shape`` is the shape of a diffused tensor.
        train: training settings (``lr``, ``ema_decay``, ``grad_clip``, ``loss``, …).
        seed: the run seed.
        codec: store batches ↔ diffused tensors (:class:`~synthmed.generators.diffusion.codec.Codec`);
            default: the joint encoding of ``config`` (pixel-space diffusion). The network has
            ``codec.n_channels`` in and out channels.

    Modules checkpointed: ``model`` (the trained UNet) and ``ema`` (its average, used for
    sampling); optimiser ``adam``.
    """

    def __init__(self, config: DiffusionModelConfig, train: TrainConfig, seed: int, codec: Codec | None = None):
        self.config, self.train, self.seed = config, train, int(seed)
        self.codec: Codec = codec if codec is not None else JointEncoding(config.image_channels, config.label_mode)
        self.scheduler = scheduler_for(config)

    def setup(self, fabric: Fabric) -> None:
        torch.manual_seed(derive_seed(self.seed, INIT_STREAM))
        net = build_unet(self.config, self.codec.n_channels)
        self.ema = EMA(net, self.train.ema_decay).to(fabric.device)
        opt = torch.optim.Adam(net.parameters(), lr=self.train.lr)
        self.model, self.opt = fabric.setup(net, opt)
        self.fabric = fabric

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"model": self.model, "ema": self.ema}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"adam": self.opt}

    def load_extra_state(self, state: dict) -> None:
        """After a resume: apply this run's (possibly new) learning rate."""
        for group in self.opt.param_groups:
            group["lr"] = self.train.lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> Mapping[str, torch.Tensor]:
        images, labels = batch
        x0 = self.codec.encode(images, labels)
        loss = training_loss(self.model, x0, self.config, self.scheduler, ctx.random, self.train.loss)
        self.opt.zero_grad(set_to_none=True)
        ctx.fabric.backward(loss)
        if self.train.grad_clip > 0:
            ctx.fabric.clip_gradients(self.model, self.opt, max_norm=self.train.grad_clip)
        self.opt.step()
        self.ema.update(self.model)
        return {"loss": loss.detach()}

    @torch.no_grad()
    def preview(self, step: int, n: int = 4) -> Mapping[str, torch.Tensor]:
        """A few EMA samples (fixed noise), decoded: the last image channel and the mask, ``[n, 1, H, W]``
        (a volume's middle axial slice)."""
        device = self.fabric.device
        gen = make_generator(derive_seed(self.seed, PREVIEW_STREAM), device)
        sampler = default_sampler(self.config)
        steps = min(self.train.preview_steps, self.config.train_timesteps)
        x = sample_encoded(self.ema.module, self.config, n, sampler=sampler, steps=steps, generator=gen, device=device,
                           channels=self.codec.n_channels, clip=self.codec.bounded)
        images, labels = self.codec.decode(x)
        if images.ndim == 5:  # middle axial slice
            d = images.shape[2] // 2
            images, labels = images[:, :, d], labels[:, d]
        return {"image": images[:, -1:], "mask": labels[:, None].float() / (self.codec.n_classes - 1)}
