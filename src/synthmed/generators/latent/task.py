"""The autoencoder stage's training task for :func:`synthmed.training.train` (a VQ-GAN or KL-GAN on encoded samples).

Per iteration (``training_step``), after Khader et al. 2022 (FirasGit/medicaldiffusion):

* the batch is jointly encoded (image channels and the mask, :class:`~synthmed.data.JointEncoding`);
* an autoencoder step on ``l1_weight · L1(x̂, x)`` (all channels) + the regulariser (``vq``:
  the commitment loss; ``kl``: ``kl_weight ·`` KL) + ``perceptual_weight ·`` the perceptual
  distance of one random axial slice per volume (when a network is given) and, from
  ``disc_start`` on, the hinge terms of the slice discriminator (on the same slices) and the
  volume discriminator (3D stores) weighted ``slice_adversarial`` / ``volume_adversarial``,
  plus ``feature_matching ·`` their feature matching; gradients clipped at ``grad_clip``;
* ``vq``: dead codes are re-seeded from this batch's encoder outputs
  (:meth:`~synthmed.generators.latent.quantizer.RestartingEMAQuantizer.restart_dead_codes`);
* from ``disc_start`` on, a discriminator step on the hinge losses of both discriminators
  (real samples against the detached reconstructions). Before it neither discriminator is run:
  the adversarial terms contribute exactly zero gradient and the discriminators do not change.

Randomness comes from ``ctx.random``, in a fixed order whatever the step (the KL posterior's
``ε``, the slice indices, the restart draw), so a resumed run repeats an uninterrupted one.
Losses are computed in float32 from the (possibly bf16) network outputs.

Checkpointed modules: ``autoencoder`` (:class:`~synthmed.generators.latent.networks.LatentAutoencoder`:
weights and codebook) and ``discriminators``; optimisers ``autoencoder`` and ``discriminators``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from lightning_fabric import Fabric
from torch import nn

from synthmed.data.encoding import JointEncoding
from synthmed.generators.latent import losses
from synthmed.generators.latent.config import AutoencoderConfig, AutoencoderTrainConfig
from synthmed.generators.latent.networks import LatentAutoencoder, build_discriminators
from synthmed.training.fabric import unwrap
from synthmed.training.loop import StepContext
from synthmed.training.seeding import seeded_init

#: Samples kept from the last batch for the preview grid.
PREVIEW_SAMPLES = 4


class Discriminators(nn.Module):
    """The slice discriminator and, for volumes, the volume discriminator, as one module (one
    optimiser, one DDP wrapper). ``forward(slices, volumes)`` → ``(slice outputs, volume outputs
    or None)``, each a list of feature maps ending with the patch logits."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.slice, self.volume = build_discriminators(config)

    def forward(self, slices: torch.Tensor, volumes: torch.Tensor | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        volume = self.volume(volumes) if self.volume is not None and volumes is not None else None
        return self.slice(slices), volume


def perceptual_network(train: AutoencoderTrainConfig, image_channels: int) -> nn.Module | None:
    """The frozen perceptual network of ``train.perceptual`` (``None`` when off or weighted 0).

    Raises:
        SynthmedError: the domain encoder run or weights file is missing or does not fit.
    """
    if train.perceptual == "none" or train.perceptual_weight == 0:
        return None
    from synthmed.features.perceptual import RadImageNetPerceptual, load_domain_perceptual

    path = Path(str(train.perceptual_path))
    if train.perceptual == "domain":
        return load_domain_perceptual(path, image_channels)
    return RadImageNetPerceptual(path, image_channels)


class AutoencoderTask:
    """Adversarial autoencoder training of one config (see the module docstring).

    Args:
        config: the model config, completed with the store's shape.
        train: losses, optimiser and schedule.
        seed: the run seed (initial weights; per-step draws come from ``ctx.random``).
    """

    def __init__(self, config: AutoencoderConfig, train: AutoencoderTrainConfig, seed: int):
        self.config, self.train, self.seed = config, train, int(seed)
        self.encoding = JointEncoding(config.image_channels, config.label_mode)
        self.volumes = config.spatial_dims == 3
        self.last: torch.Tensor | None = None

    def setup(self, fabric: Fabric) -> None:
        with seeded_init(self.seed):
            ae = LatentAutoencoder(self.config)
            disc = Discriminators(self.config)
        perceptual = perceptual_network(self.train, self.config.image_channels)
        self.perceptual = None if perceptual is None else perceptual.to(fabric.device)
        tc = self.train
        opt_ae = torch.optim.Adam([p for p in ae.parameters() if p.requires_grad], lr=tc.lr, betas=tc.betas)
        opt_d = torch.optim.Adam(disc.parameters(), lr=tc.lr, betas=tc.betas)
        self.ae, self.opt_ae = fabric.setup(ae, opt_ae)
        self.d, self.opt_d = fabric.setup(disc, opt_d)
        # The discriminators' forward in the autoencoder step goes through the plain module
        # (under autocast): one forward of the DDP wrapper per backward (as in the GAN task).
        self.ae_raw, self.d_raw = unwrap(self.ae), unwrap(self.d)
        self.fabric = fabric

    def modules(self) -> Mapping[str, nn.Module]:
        return {"autoencoder": self.ae, "discriminators": self.d}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"autoencoder": self.opt_ae, "discriminators": self.opt_d}

    def load_extra_state(self, state: dict) -> None:
        """After a resume: apply this run's (possibly new) learning rate and betas."""
        for opt in (self.opt_ae, self.opt_d):
            for group in opt.param_groups:
                group.update(lr=self.train.lr, betas=self.train.betas)

    def _adversarial(self, fake: tuple, real: tuple, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The autoencoder's weighted hinge and feature-matching terms from the discriminators'
        outputs on the reconstructions (``fake``) and the real samples (``real``)."""
        tc = self.train
        total = torch.zeros((), device=fake[0][-1].device)
        matching = torch.zeros((), device=total.device)
        for weight, f, r, name in ((tc.slice_adversarial, fake[0], real[0], "slice"),
                                   (tc.volume_adversarial, fake[1], real[1], "volume")):
            if f is None or weight == 0:
                continue
            g = losses.hinge_g(f[-1])
            logs[f"g_{name}"] = g.detach()
            total = total + weight * g
            matching = matching + losses.feature_matching(f, r)
        logs["feature_matching"] = matching.detach()
        return total + tc.feature_matching * matching

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> Mapping[str, torch.Tensor]:
        tc, fabric = self.train, ctx.fabric
        images, labels = batch
        x = self.encoding.encode(images, labels)
        b = x.shape[0]
        noise = ctx.random.randn((b, *self.config.latent_shape)) if self.config.kind == "kl" else None
        index = ctx.random.randint(0, x.shape[2], (b,)) if self.volumes else None
        restart = ctx.random.generator()
        on = losses.adversarial_on(ctx.step, tc.disc_start)
        logs: dict[str, torch.Tensor] = {}

        # -- autoencoder
        self.d.requires_grad_(False)
        out = self.ae(x, noise)
        recon = out.reconstruction.float()
        l1 = (recon - x).abs().mean()
        regulariser = out.regulariser.float() * (1.0 if self.config.kind == "vq" else tc.kl_weight)
        loss = tc.l1_weight * l1 + regulariser
        logs["l1"] = l1.detach()
        logs["commitment" if self.config.kind == "vq" else "kl"] = out.regulariser.detach().float()
        real_slices, fake_slices = losses.random_slices(x, index), losses.random_slices(recon, index)
        if self.perceptual is not None:
            perceptual = self.perceptual.distance(fake_slices, real_slices).mean()
            logs["perceptual"] = perceptual.detach()
            loss = loss + tc.perceptual_weight * perceptual
        if on:
            volumes = (recon, x) if self.volumes else (None, None)
            with fabric.autocast():
                fake = self.d_raw(fake_slices, volumes[0])
                with torch.no_grad():
                    real = self.d_raw(real_slices, volumes[1])
            loss = loss + self._adversarial(fake, real, logs)
        self.opt_ae.zero_grad(set_to_none=True)
        fabric.backward(loss)
        if tc.grad_clip > 0:
            fabric.clip_gradients(self.ae, self.opt_ae, max_norm=tc.grad_clip)
        self.opt_ae.step()
        logs["loss"] = loss.detach()
        quantizer = self.ae_raw.quantizer
        if quantizer is not None:
            logs["perplexity"] = out.perplexity.detach().float()
            logs["restarted"] = torch.tensor(float(quantizer.restart_dead_codes(restart)))

        # -- discriminators (none weighted: no step)
        if on and (tc.slice_adversarial > 0 or (self.volumes and tc.volume_adversarial > 0)):
            self.d.requires_grad_(True)
            volumes = (x, recon.detach()) if self.volumes else (None, None)
            real = self.d(real_slices, volumes[0])
            with fabric.autocast():
                fake = self.d_raw(fake_slices.detach(), volumes[1])
            loss_d = torch.zeros((), device=x.device)
            for weight, r, f in ((tc.slice_adversarial, real[0], fake[0]), (tc.volume_adversarial, real[1], fake[1])):
                if r is not None and weight > 0:
                    loss_d = loss_d + weight * losses.hinge_d(r[-1], f[-1])
            self.opt_d.zero_grad(set_to_none=True)
            fabric.backward(loss_d)
            self.opt_d.step()
            logs["loss_d"] = loss_d.detach()
        self.last = x[:PREVIEW_SAMPLES].detach()
        return logs

    @torch.no_grad()
    def preview(self, step: int) -> Mapping[str, torch.Tensor]:
        """The last batch's first samples and their reconstructions (middle axial slice of a
        volume): the last image channel and the masks, ``[n, 1, H, W]``; nothing before a step."""
        if self.last is None:
            return {}
        ae = self.ae_raw
        was_training = ae.training
        ae.eval()
        recon = ae.decode(ae.encode(self.last), quantize=True)
        ae.train(was_training)
        out = {}
        for name, x in (("input", self.last), ("reconstruction", recon)):
            images, labels = self.encoding.decode(x.float())
            if self.volumes:
                d = images.shape[2] // 2
                images, labels = images[:, :, d], labels[:, d]
            out[f"{name}_image"] = images[:, -1:]
            out[f"{name}_mask"] = labels[:, None].float() / (self.encoding.n_classes - 1)
        return out
