"""The GAN training task for :func:`synthmed.training.train`, shared by all four families.

Per iteration (``training_step``): a D step (loss on real and fake, with R1 or the gradient
penalty every ``r1_interval`` steps, lazily scaled), a G step (with the path-length
regulariser every ``pl_interval`` steps), the EMA update and, every ``ada_interval`` steps,
the ADA update of ``p``. Progressive families train at ``growth(step)``'s level and alpha,
with the real images average-pooled to that resolution. Families differ only through their
config (loss, regularisers, growth, mixing) and their ``networks_*.build``.

Randomness comes from ``ctx.random`` (latents, mixing cut-offs, noise inputs,
augmentation), so a resumed run repeats an uninterrupted one.

Checkpointed modules: ``generator``, ``discriminator``, ``ema`` (sampling weights),
``augment`` (ADA's ``p`` and sign statistics) and ``stats`` (the path-length mean);
optimisers ``g`` and ``d``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import nn

from synthmed.data.encoding import JointEncoding
from synthmed.generators.gan import losses
from synthmed.generators.gan.ada import AugmentPipe
from synthmed.generators.gan.config import GANModelConfig, GANTrainConfig
from synthmed.generators.gan.networks_progan import growth, upscale
from synthmed.training.ema import EMA
from synthmed.training.loop import StepContext
from synthmed.training.seeding import derive_seed, make_generator

INIT_STREAM = 1
PREVIEW_STREAM = 2
PROGRESSIVE = ("progan", "stylegan1")


def build_networks(config: GANModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` from the family's ``networks_<family>.build``."""
    return importlib.import_module(f"synthmed.generators.gan.networks_{config.family}").build(config)


def generate(generator: nn.Module, config: GANModelConfig, z: torch.Tensor, *, psi: float = 1.0,
             level: int | None = None, alpha: float = 1.0, noise: torch.Generator | None = None) -> torch.Tensor:
    """Encoded samples ``[B, C, R, R]`` at full resolution (lower growth levels are up-sampled
    by pixel repetition)."""
    level = config.max_level if level is None else level
    x = generator(z, psi=psi, level=level, alpha=alpha, generator=noise)
    return upscale(x, 2 ** (config.max_level - level))


class GANStats(nn.Module):
    """Running statistics checkpointed with the weights (the path-length mean)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pl_mean", torch.zeros(()))


class GANTask:
    """Adversarial training of one family (see the module docstring)."""

    def __init__(self, config: GANModelConfig, train: GANTrainConfig, seed: int):
        self.config, self.train, self.seed = config, train, int(seed)
        self.encoding = JointEncoding(config.image_channels, config.label_mode)
        self.progressive = config.family in PROGRESSIVE and train.growth_steps > 0

    def setup(self, fabric: Fabric) -> None:
        torch.manual_seed(derive_seed(self.seed, INIT_STREAM))
        gen, disc = build_networks(self.config)
        tc = self.train
        self.ema = EMA(gen, tc.ema_decay).to(fabric.device)
        self.augment = AugmentPipe(self.config.image_channels, target=tc.ada_target, interval=tc.ada_interval,
                                   speed_kimg=tc.ada_kimg, mirror=tc.mirror, adaptive=tc.ada).to(fabric.device)
        self.stats = GANStats().to(fabric.device)
        # lazy regularisation: scale lr and betas as if regularising every step (Karras et al. 2020)
        d_ratio = tc.r1_interval / (tc.r1_interval + 1) if tc.r1_interval > 1 else 1.0
        g_ratio = tc.pl_interval / (tc.pl_interval + 1) if tc.pl_weight > 0 else 1.0
        opt_g = torch.optim.Adam(gen.parameters(), lr=tc.lr * g_ratio, betas=tuple(b ** g_ratio for b in tc.betas))
        opt_d = torch.optim.Adam(disc.parameters(), lr=tc.lr * d_ratio, betas=tuple(b ** d_ratio for b in tc.betas))
        self.g, self.opt_g = fabric.setup(gen, opt_g)
        self.d, self.opt_d = fabric.setup(disc, opt_d)
        # One forward per network and backward goes through the (DDP) wrapper; the others use
        # the plain module, under autocast: their gradients accumulate into the same parameters
        # before the one all-reduce, and DDP never sees two forwards before a backward.
        self.g_raw, self.d_raw = self._unwrap(gen), self._unwrap(disc)
        self.fabric = fabric

    def modules(self) -> Mapping[str, nn.Module]:
        return {"generator": self.g, "discriminator": self.d, "ema": self.ema, "augment": self.augment,
                "stats": self.stats}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def growth(self, step: int) -> tuple[int, float]:
        """``(level, alpha)`` trained at ``step``."""
        if not self.progressive:
            return self.config.max_level, 1.0
        return growth(step, self.train.growth_steps, self.config.max_level)

    def _latents(self, ctx: StepContext, b: int) -> dict:
        """``z`` and (StyleGAN, with probability ``style_mixing``) a second latent and per-sample cut-offs."""
        z = ctx.random.randn((b, self.config.z_dim))
        out: dict = {"z": z}
        if self.config.family != "progan" and self.train.style_mixing > 0:
            num_ws = self._unwrap(self.g).synthesis.num_ws
            z2 = ctx.random.randn((b, self.config.z_dim))
            cut = ctx.random.randint(1, num_ws, (b,))
            mix = ctx.random.rand((b,)) < self.train.style_mixing
            out.update(z2=z2, mix_cutoff=torch.where(mix, cut, torch.full_like(cut, num_ws)))
        return out

    @staticmethod
    def _unwrap(module: nn.Module) -> nn.Module:
        return getattr(module, "module", module)

    @staticmethod
    def _all_used(loss: torch.Tensor, module: nn.Module, ctx: StepContext) -> torch.Tensor:
        """Under DDP, make every parameter part of the graph (with a zero gradient): growth
        levels not trained yet and fade-in paths at alpha = 1 are otherwise unused, which DDP
        refuses without ``find_unused_parameters``."""
        if ctx.fabric.world_size == 1:
            return loss
        return loss + 0.0 * sum(p.sum() for p in module.parameters() if p.requires_grad)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> Mapping[str, torch.Tensor]:
        tc = self.train
        images, labels = batch
        real = self.encoding.encode(images, labels).float()
        level, alpha = self.growth(ctx.step)
        down = 2 ** (self.config.max_level - level)
        if down > 1:
            real = F.avg_pool2d(real, down)
        if self.progressive and alpha < 1 and level > 0:  # fade the reals in like the fakes
            real = torch.lerp(upscale(F.avg_pool2d(real, 2)), real, alpha)
        b = real.shape[0]
        grow = {"level": level, "alpha": alpha} if self.config.family in PROGRESSIVE else {}
        logs: dict[str, torch.Tensor] = {}

        # -- discriminator
        self.g.requires_grad_(False)
        self.d.requires_grad_(True)
        with torch.no_grad(), ctx.fabric.autocast():
            fake = self.g_raw(**self._latents(ctx, b), generator=ctx.random.generator(), **grow).float()
        aug = ctx.random.generator()
        regularise = ctx.step % tc.r1_interval == 0
        real_in = self.augment(real, aug).detach().requires_grad_(regularise and tc.loss == "logistic")
        d_real = self.d(real_in, **grow)
        with ctx.fabric.autocast():
            d_fake = self.d_raw(self.augment(fake, aug), **grow)
        self.augment.accumulate(d_real)
        if tc.loss == "wgan-gp":
            loss_d = losses.wgan_d(d_real, d_fake, tc.drift)
            if regularise and tc.gp_weight > 0:
                eps = ctx.random.rand((b, 1, 1, 1))
                with ctx.fabric.autocast():
                    gp = losses.gradient_penalty(lambda x: self.d_raw(x, **grow).float(), real_in.detach(),
                                                 self.augment(fake, aug), eps).mean()
                loss_d = loss_d + tc.gp_weight * gp * tc.r1_interval
                logs["gp"] = gp.detach()
        else:
            loss_d = losses.logistic_d(d_real, d_fake)
            if regularise and tc.r1_gamma > 0:
                r1 = losses.r1_penalty(d_real, real_in).mean()
                loss_d = loss_d + (tc.r1_gamma / 2) * r1 * tc.r1_interval
                logs["r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        ctx.fabric.backward(self._all_used(loss_d, self.d_raw, ctx))
        self.opt_d.step()
        logs["loss_d"] = loss_d.detach()

        # -- generator
        self.g.requires_grad_(True)
        self.d.requires_grad_(False)
        fake = self.g(**self._latents(ctx, b), generator=ctx.random.generator(), **grow)
        with ctx.fabric.autocast():
            d_fake = self.d_raw(self.augment(fake.float(), ctx.random.generator()), **grow)
        loss_g = losses.wgan_g(d_fake) if tc.loss == "wgan-gp" else losses.logistic_g(d_fake)
        if tc.pl_weight > 0 and ctx.step % tc.pl_interval == 0:
            pb = max(1, b // 2)
            with ctx.fabric.autocast():
                img, ws = self.g_raw(ctx.random.randn((pb, self.config.z_dim)), return_ws=True,
                                     generator=ctx.random.generator())
            lengths = losses.path_length(img.float(), ws, ctx.random.randn(tuple(img.shape)))
            with torch.no_grad():
                self.stats.pl_mean.copy_(self.stats.pl_mean.lerp(lengths.mean(), tc.pl_decay))
            pl = (lengths - self.stats.pl_mean).square().mean()
            loss_g = loss_g + tc.pl_weight * pl * tc.pl_interval
            logs["pl"] = pl.detach()
        self.opt_g.zero_grad(set_to_none=True)
        ctx.fabric.backward(self._all_used(loss_g, self.g_raw, ctx))
        self.opt_g.step()
        self.d.requires_grad_(True)
        self.ema.update(self.g)
        logs["loss_g"] = loss_g.detach()

        # -- ADA
        if (ctx.step + 1) % tc.ada_interval == 0:
            if ctx.fabric.world_size > 1:
                stats = torch.stack([self.augment.sign_sum, self.augment.sign_count])
                stats = ctx.fabric.all_reduce(stats, reduce_op="sum")
                self.augment.sign_sum.copy_(stats[0])
                self.augment.sign_count.copy_(stats[1])
            self.augment.update()
        logs["ada_p"] = self.augment.p.detach().clone()
        return logs

    def load_extra_state(self, state: dict) -> None:
        """After a resume: apply this run's (possibly new) learning rate."""
        tc = self.train
        for opt, interval, on in ((self.opt_d, tc.r1_interval, tc.r1_interval > 1),
                                  (self.opt_g, tc.pl_interval, tc.pl_weight > 0)):
            ratio = interval / (interval + 1) if on else 1.0
            for group in opt.param_groups:
                group["lr"] = tc.lr * ratio

    @torch.no_grad()
    def preview(self, step: int, n: int = 4) -> Mapping[str, torch.Tensor]:
        """EMA samples (fixed latents): the last image channel and the mask, ``[n, 1, R, R]``."""
        device = self.fabric.device
        gen = make_generator(derive_seed(self.seed, PREVIEW_STREAM), device)
        z = torch.randn((n, self.config.z_dim), generator=gen, device=device)
        level, alpha = self.growth(max(step - 1, 0))
        x = generate(self.ema.module.eval(), self.config, z, level=level, alpha=alpha, noise=gen)
        images, labels = self.encoding.decode(x)
        return {"image": images[:, -1:], "mask": labels[:, None].float() / (self.encoding.n_classes - 1)}
