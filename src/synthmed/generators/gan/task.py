"""The GAN training task for :func:`synthmed.training.train`, shared by all four families.

Per iteration (``training_step``), after NVlabs' StyleGAN 2-ADA / 3 conventions:

* a D step: logistic (or WGAN) loss on augmented reals and fakes. The fakes' generator
  forward is the one forward per iteration that moves the running averages (``w_avg``,
  ProGAN's ``h_avg``, StyleGAN 3's magnitude EMAs: ``update_emas``);
* D's penalty every ``r1_interval`` iterations: R1 is the gradient w.r.t. the
  *non-augmented* reals, through the differentiable augmentation (WGAN-GP: between the
  augmented reals and fakes). With ``r1_interval > 1`` (lazy regularisation) it is a
  separate optimiser step weighted ``× r1_interval``, and D's Adam lr and betas are scaled
  by ``c = k/(k+1)`` (``lr·c``, ``β^c``); with ``r1_interval = 1`` it joins the main loss
  and nothing is scaled;
* a G step, and StyleGAN 2's path length every ``pl_interval`` iterations (the same rule);
* the EMA update of the sampling generator with a half-life of ``ema_kimg`` thousand
  images: ``β = 0.5 ** (B / max(h, 1e-8))``, ``h = min(1000·ema_kimg, ema_rampup·images
  seen)``, ``B`` the batch of all processes (:func:`~synthmed.training.ema.half_life_decay`);
* every ``ada_interval`` iterations, the ADA update of ``p``.

Progressive families train at ``growth(step)``'s level and alpha, with the real images
average-pooled to that resolution. Families differ only through their config (loss,
regularisers, growth, mixing) and their ``networks_*.build``.

Randomness comes from ``ctx.random`` (latents, mixing cut-offs, noise inputs,
augmentation), so a resumed run repeats an uninterrupted one. The noise inputs of each
generator forward and the augmentation of each D input pair draw from one
:meth:`~synthmed.training.seeding.StepRandom.stream` each, sliced by rank like every other
draw: ``W`` processes with batch ``B`` draw what one process with batch ``W·B`` draws.

Checkpointed modules: ``generator``, ``discriminator``, ``ema`` (sampling weights),
``augment`` (ADA's ``p`` and sign statistics) and ``stats`` (the path-length mean);
optimisers ``g`` and ``d``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from lightning_fabric import Fabric
from torch import nn

from synthmed.data.encoding import JointEncoding
from synthmed.generators.gan import losses
from synthmed.generators.gan.ada import AugmentPipe
from synthmed.generators.gan.config import GANModelConfig, GANTrainConfig
from synthmed.generators.gan.networks_progan import growth, upscale
from synthmed.training.ema import EMA, half_life_decay
from synthmed.training.loop import StepContext
from synthmed.training.seeding import INIT_STREAM, Draws, GeneratorDraws, derive_seed, make_generator

PREVIEW_STREAM = 2
PROGRESSIVE = ("progan", "stylegan1")


def build_networks(config: GANModelConfig) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` from the family's ``networks_<family>.build``."""
    return importlib.import_module(f"synthmed.generators.gan.networks_{config.family}").build(config)


def generate(generator: nn.Module, config: GANModelConfig, z: torch.Tensor, *, psi: float = 1.0,
             level: int | None = None, alpha: float = 1.0, draws: Draws | None = None) -> torch.Tensor:
    """Encoded samples ``[B, C, R, R]`` at full resolution (lower growth levels are up-sampled
    by pixel repetition); the noise inputs are drawn from ``draws`` (``None``: no noise)."""
    level = config.max_level if level is None else level
    x = generator(z, psi=psi, level=level, alpha=alpha, draws=draws)
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

    @property
    def d_penalised(self) -> bool:
        """D has a penalty: R1 (logistic loss, ``r1_gamma > 0``) or the gradient penalty
        (WGAN-GP, ``gp_weight > 0``)."""
        tc = self.train
        return (tc.gp_weight if tc.loss == "wgan-gp" else tc.r1_gamma) > 0

    @property
    def d_lazy(self) -> bool:
        """D's penalty is a separate step every ``r1_interval > 1`` iterations (lazy regularisation)."""
        return self.d_penalised and self.train.r1_interval > 1

    @property
    def g_lazy(self) -> bool:
        """The path length is a separate step every ``pl_interval > 1`` iterations."""
        return self.train.pl_weight > 0 and self.train.pl_interval > 1

    def _adam(self, lazy: bool, interval: int) -> dict:
        """Adam's ``lr`` and ``betas``; with lazy regularisation (``interval + 1`` steps per
        ``interval`` iterations) scaled by ``c = interval / (interval + 1)``: ``lr·c``, ``β^c``
        (Karras et al. 2020), otherwise as configured."""
        c = interval / (interval + 1) if lazy else 1.0
        return {"lr": self.train.lr * c, "betas": tuple(beta**c for beta in self.train.betas)}

    def setup(self, fabric: Fabric) -> None:
        torch.manual_seed(derive_seed(self.seed, INIT_STREAM))
        gen, disc = build_networks(self.config)
        tc = self.train
        self.ema = EMA(gen).to(fabric.device)  # updated with the half-life decay of each step
        self.augment = AugmentPipe(self.config.image_channels, target=tc.ada_target, interval=tc.ada_interval,
                                   speed_kimg=tc.ada_kimg, mirror=tc.mirror, adaptive=tc.ada).to(fabric.device)
        self.stats = GANStats().to(fabric.device)
        opt_g = torch.optim.Adam(gen.parameters(), **self._adam(self.g_lazy, tc.pl_interval))
        opt_d = torch.optim.Adam(disc.parameters(), **self._adam(self.d_lazy, tc.r1_interval))
        self.g, self.opt_g = fabric.setup(gen, opt_g)
        self.d, self.opt_d = fabric.setup(disc, opt_d)
        # Per optimiser step, one forward per network and backward goes through the (DDP)
        # wrapper; the others use the plain module, under autocast: their gradients accumulate
        # into the same parameters before the one all-reduce, and DDP never sees two forwards
        # before a backward.
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

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, module: nn.Module, ctx: StepContext) -> None:
        """One optimiser step on ``loss``."""
        opt.zero_grad(set_to_none=True)
        ctx.fabric.backward(self._all_used(loss, module, ctx))
        opt.step()

    def _d_penalty(self, real_in: torch.Tensor, real_aug: torch.Tensor, d_real: torch.Tensor | None,
                   fake_aug: torch.Tensor | None, critic: Callable[[torch.Tensor], torch.Tensor], ctx: StepContext,
                   logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """D's weighted penalty, ``× r1_interval`` (a lazy step stands for the iterations between).

        R1 (logistic loss): ``||∇ₓ D(augment(x))||²`` at the *non-augmented* reals ``x``
        (``real_in``, ``d_real = D(real_aug)``): the gradient flows back through the
        differentiable augmentation, as in NVlabs' StyleGAN 2-ADA and 3. WGAN-GP: at random
        points between the augmented reals and fakes, scored by ``critic``.
        """
        tc = self.train
        if tc.loss == "wgan-gp":
            eps = ctx.random.rand((real_aug.shape[0], 1, 1, 1))
            gp = losses.gradient_penalty(critic, real_aug.detach(), fake_aug, eps).mean()
            logs["gp"] = gp.detach()
            return tc.gp_weight * gp * tc.r1_interval
        r1 = losses.r1_penalty(d_real, real_in).mean()
        logs["r1"] = r1.detach()
        return (tc.r1_gamma / 2) * r1 * tc.r1_interval

    def _path_length(self, generator: nn.Module, b: int, ctx: StepContext,
                     logs: dict[str, torch.Tensor]) -> torch.Tensor:
        """StyleGAN 2's weighted path-length penalty on ``b // 2`` new samples, ``× pl_interval``;
        updates the running mean ``stats.pl_mean``."""
        tc = self.train
        with ctx.fabric.autocast():
            img, ws = generator(ctx.random.randn((max(1, b // 2), self.config.z_dim)), return_ws=True,
                                draws=ctx.random.stream())
        lengths = losses.path_length(img.float(), ws, ctx.random.randn(tuple(img.shape)))
        with torch.no_grad():
            self.stats.pl_mean.copy_(self.stats.pl_mean.lerp(lengths.mean(), tc.pl_decay))
        pl = (lengths - self.stats.pl_mean).square().mean()
        logs["pl"] = pl.detach()
        return tc.pl_weight * pl * tc.pl_interval

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

        # -- discriminator: the main step (with the penalty when it is taken every iteration)
        self.g.requires_grad_(False)
        self.d.requires_grad_(True)
        with torch.no_grad(), ctx.fabric.autocast():  # the one forward per iteration that moves w_avg & co.
            fake = self.g_raw(**self._latents(ctx, b), draws=ctx.random.stream(), update_emas=True,
                              **grow).float()
        aug = ctx.random.stream()
        penalty_now = self.d_penalised and ctx.step % tc.r1_interval == 0
        joint = penalty_now and not self.d_lazy
        real_in = real.detach().requires_grad_(joint and tc.loss == "logistic")
        real_aug = self.augment(real_in, aug)
        d_real = self.d(real_aug, **grow)
        fake_aug = self.augment(fake, aug, real=False)
        with ctx.fabric.autocast():
            d_fake = self.d_raw(fake_aug, **grow)
        self.augment.accumulate(d_real)
        loss_d = losses.wgan_d(d_real, d_fake, tc.drift) if tc.loss == "wgan-gp" else losses.logistic_d(d_real, d_fake)
        if joint:
            with ctx.fabric.autocast():
                loss_d = loss_d + self._d_penalty(real_in, real_aug, d_real, fake_aug,
                                                  lambda x: self.d_raw(x, **grow).float(), ctx, logs)
        self._step(self.opt_d, loss_d, self.d_raw, ctx)
        logs["loss_d"] = loss_d.detach()
        if penalty_now and self.d_lazy:  # lazy: a separate step every r1_interval iterations
            aug = ctx.random.stream()
            real_in = real.detach().requires_grad_(tc.loss == "logistic")
            real_aug = self.augment(real_in, aug)
            d_real = self.d(real_aug, **grow) if tc.loss == "logistic" else None
            fake_aug = self.augment(fake, aug, real=False) if tc.loss == "wgan-gp" else None
            penalty = self._d_penalty(real_in, real_aug, d_real, fake_aug, lambda x: self.d(x, **grow).float(),
                                      ctx, logs)
            self._step(self.opt_d, penalty, self.d_raw, ctx)

        # -- generator: the main step (with the path length when it is taken every iteration)
        self.g.requires_grad_(True)
        self.d.requires_grad_(False)
        fake = self.g(**self._latents(ctx, b), draws=ctx.random.stream(), **grow)
        with ctx.fabric.autocast():
            d_fake = self.d_raw(self.augment(fake.float(), ctx.random.stream(), real=False), **grow)
        loss_g = losses.wgan_g(d_fake) if tc.loss == "wgan-gp" else losses.logistic_g(d_fake)
        pl_now = tc.pl_weight > 0 and ctx.step % tc.pl_interval == 0
        if pl_now and not self.g_lazy:
            loss_g = loss_g + self._path_length(self.g_raw, b, ctx, logs)
        self._step(self.opt_g, loss_g, self.g_raw, ctx)
        logs["loss_g"] = loss_g.detach()
        if pl_now and self.g_lazy:  # lazy: a separate step every pl_interval iterations
            self._step(self.opt_g, self._path_length(self.g, b, ctx, logs), self.g_raw, ctx)
        self.d.requires_grad_(True)
        world = b * ctx.fabric.world_size
        self.ema.update(self.g, half_life_decay(world, ctx.step * world, tc.ema_kimg, tc.ema_rampup))

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
        """After a resume: apply this run's (possibly new) learning rate and betas."""
        tc = self.train
        for opt, lazy, interval in ((self.opt_d, self.d_lazy, tc.r1_interval),
                                    (self.opt_g, self.g_lazy, tc.pl_interval)):
            for group in opt.param_groups:
                group.update(self._adam(lazy, interval))

    @torch.no_grad()
    def preview(self, step: int, n: int = 4) -> Mapping[str, torch.Tensor]:
        """EMA samples (fixed latents): the last image channel and the mask, ``[n, 1, R, R]``."""
        device = self.fabric.device
        gen = make_generator(derive_seed(self.seed, PREVIEW_STREAM), device)
        z = torch.randn((n, self.config.z_dim), generator=gen, device=device)
        level, alpha = self.growth(max(step - 1, 0))
        x = generate(self.ema.module.eval(), self.config, z, level=level, alpha=alpha, draws=GeneratorDraws(gen))
        images, labels = self.encoding.decode(x)
        return {"image": images[:, -1:], "mask": labels[:, None].float() / (self.encoding.n_classes - 1)}
