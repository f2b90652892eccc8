"""GAN configuration (pydantic) and the presets of the four families.

:class:`GANModelConfig` is what the weights depend on (fixed for the life of a run);
:class:`GANTrainConfig` is how to train (may change on ``--resume``). ``PRESETS[family][name]``.

``paper`` follows the reference study (Akbar et al. 2024): 256×256, five channels, NVlabs
code with batch 32, mirror augmentation and 25,000 kimg (781,250 steps at batch 32);
StyleGAN 2 with γ = 10 and StyleGAN 3 (config T) with γ = 8 (the study used 8–10), both
with ADA. Every StyleGAN 3 preset takes ``sg3_config="r"`` (model override) for config R,
whose networks double ``sg3_channel_base`` and ``channel_max`` of the generator (the paper's
R at ``paper``: 65,536 and 1,024; the discriminator is unchanged). ProGAN and StyleGAN 1
use their papers' losses (WGAN-GP + drift; non-saturating + R1 γ = 10) and a growth phase
of 600k images per level; StyleGAN 1 keeps γ = 10 at ``tiny`` and ``laptop`` too, where the
others' γ is 1 and 0.5: on the it-learns store (2,400 steps, batch 16) it collapsed with γ 1
and 4 (MS-SSIM 0.87-0.97 against the data's 0.77) and learns with 10 (0.85). Style mixing
is 0.9 in every StyleGAN preset (NVlabs' ``train.py`` turns it on for StyleGAN 2 only; here
StyleGAN 3 without it learned the it-learns store with one thread and failed with two: NCR
share 0.031 against the data's 0.014). The sampling generator is an EMA with NVlabs' half-life of
10 kimg at batch 32, scaled with the batch (``ema_kimg = batch · 10 / 32``), and a ramp-up
of 0.05.

StyleGAN 3's ``tiny`` preset scales its output by 1, not NVlabs' 0.25: the untrained
generator's pixels then have a std of about 1 instead of 0.25, and a store whose background
is exactly 0 (−1 encoded, most of the pixels) is within reach of a short run. Measured on the
it-learns store (1,200 steps, batch 16): at 0.25 background grey, brain share 0.87 against
0.38, channel means 0.27-0.41 against 0.35-0.81, MS-SSIM 0.94; at 1 background 0.01, brain
share 0.46, channel means 0.32-0.71, MS-SSIM 0.83 (the data's 0.77).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from synthmed.config import Config, LoopConfig
from synthmed.data.encoding import LABEL_MODE_HELP, JointEncoding, LabelMode

Family = Literal["progan", "stylegan1", "stylegan2", "stylegan3"]
FAMILIES: tuple[str, ...] = ("progan", "stylegan1", "stylegan2", "stylegan3")


class GANModelConfig(Config):
    """The networks (``image_channels``, ``resolution`` come from the training store)."""

    family: Family = Field("stylegan2", description="progan, stylegan1, stylegan2 or stylegan3")
    z_dim: int = Field(32, ge=1, description="latent size")
    w_dim: int = Field(32, ge=1, description="style size (StyleGAN)")
    mapping_layers: int = Field(2, ge=1, description="mapping network depth (StyleGAN)")
    channel_base: int = Field(256, ge=1, description="feature maps at 4 px ×4; halved per doubling")
    channel_max: int = Field(32, ge=1, description="cap on feature maps per layer")
    mbstd_group: int = Field(4, ge=1, description="minibatch-std group size")
    num_layers: int = Field(6, ge=3, description="StyleGAN 3: synthesis layers L0 … L(N-1) before to_rgb "
                            "(the paper's N = 14; the network has N + 1 layers and N + 2 styles)")
    margin: int = Field(4, ge=0, description="StyleGAN 3: extra pixels sampled around the image")
    sg3_channel_base: int = Field(512, ge=1, description="StyleGAN 3: feature maps ×cutoff ×2")
    sg3_output_scale: float = Field(0.25, gt=0, description="StyleGAN 3: factor on to_rgb's output (NVlabs: 0.25; "
                                    "tiny: 1, see the module docstring)")
    sg3_config: Literal["t", "r"] = Field("t", description="StyleGAN 3: t (translation equivariant) or r (rotation "
                                          "equivariant: 1×1 convolutions, radial jinc filters, feature maps ×2)")
    label_mode: LabelMode = Field("nested", description=LABEL_MODE_HELP)
    image_channels: int = Field(4, ge=1, description="image channels (from the store)")
    resolution: int = Field(32, ge=8, description="image side, a power of two (from the store)")

    @model_validator(mode="after")
    def _power_of_two(self) -> GANModelConfig:
        if self.resolution & (self.resolution - 1):
            raise ValueError(f"GANs need a square image whose side is a power of two (>= 8), not {self.resolution}")
        return self

    @property
    def max_level(self) -> int:
        """``log2(resolution) - 2`` (level 0 is 4 px)."""
        return int(math.log2(self.resolution)) - 2

    @property
    def img_channels(self) -> int:
        """Channels of the joint encoding the networks generate."""
        return JointEncoding(self.image_channels, self.label_mode).n_channels


class GANTrainConfig(LoopConfig):
    """Losses, regularisers, ADA, optimiser and schedule (may change on ``--resume``)."""

    steps: int = Field(4, ge=1, description="total iterations (one D and one G step each)")
    batch: int = Field(4, ge=1, description="batch per process")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate of G and D")
    betas: tuple[float, float] = Field((0.0, 0.99), description="Adam betas")
    loss: Literal["wgan-gp", "logistic"] = Field("logistic", description="wgan-gp (+ drift) or non-saturating logistic")
    gp_weight: float = Field(10.0, ge=0, description="WGAN-GP lambda")
    drift: float = Field(1e-3, ge=0, description="WGAN drift term epsilon")
    r1_gamma: float = Field(10.0, ge=0, description="R1 weight gamma (logistic loss)")
    r1_interval: int = Field(16, ge=1, description="lazy R1 every N steps (1: every step)")
    pl_weight: float = Field(0.0, ge=0, description="path-length weight (StyleGAN 2: 2)")
    pl_interval: int = Field(4, ge=1, description="lazy path-length every N steps")
    pl_decay: float = Field(0.01, gt=0, le=1, description="path-length running-mean decay")
    style_mixing: float = Field(0.0, ge=0, le=1, description="style-mixing probability (StyleGAN)")
    growth_steps: int = Field(0, ge=0, description="progressive growing: steps per fade-in and per stable phase (0: none)")
    ada: bool = Field(False, description="adaptive discriminator augmentation")
    ada_target: float = Field(0.6, gt=0, lt=1, description="ADA target of E[sign(D(real))]")
    ada_interval: int = Field(4, ge=1, description="ADA p update every N steps")
    ada_kimg: float = Field(100.0, gt=0, description="ADA speed: kimg for p to go from 0 to 1")
    mirror: bool = Field(True, description="random x-flips of the reals D sees (NVlabs --mirror; not the fakes)")
    ema_kimg: float = Field(10.0, gt=0, description="half-life of the sampling generator's EMA in thousands of "
                            "images (NVlabs: 10 at batch 32)")
    ema_rampup: float | None = Field(0.05, gt=0, description="EMA ramp-up: the half-life is at most this share of "
                                     "the images seen so far (None: no ramp-up)")
    image_every: int = Field(0, ge=0, description="TensorBoard sample grid every N steps (0: at the end)")


class GANPreset(Config):
    """A named model + training configuration of one family."""

    model: GANModelConfig
    train: GANTrainConfig
    description: str


def ema_kimg_for(batch: int) -> float:
    """NVlabs' EMA half-life for a batch: 10 kimg at batch 32, proportional to the batch
    (the same number of steps per half-life)."""
    return batch * 10 / 32


def _presets(family: str) -> dict[str, GANPreset]:
    style = family != "progan"
    modern = family in ("stylegan2", "stylegan3")
    progressive = family in ("progan", "stylegan1")
    loss = "wgan-gp" if family == "progan" else "logistic"
    lr = 1e-3 if progressive else 2.5e-3
    mix = 0.9 if style else 0.0
    gamma = 8.0 if family == "stylegan3" else 10.0
    tiny_gamma = {"stylegan1": 10.0}.get(family, 1.0)  # StyleGAN 1 keeps its paper's gamma (module docstring)
    laptop_gamma = {"stylegan1": 10.0}.get(family, 0.5)
    common = dict(loss=loss, style_mixing=mix, ada=modern, mirror=True, r1_interval=16 if modern else 1,
                  pl_weight=2.0 if family == "stylegan2" else 0.0)
    tiny = GANPreset(
        description=f"{family}, CPU seconds at 16-32 px: 32-d latents, <= 16 feature maps",
        model=GANModelConfig(family=family, z_dim=32, w_dim=32, mapping_layers=2, channel_base=128, channel_max=16,
                             num_layers=5, margin=2, sg3_channel_base=128, sg3_output_scale=1.0,
                             resolution=32),
        train=GANTrainConfig(steps=4, batch=4, lr=2e-3, r1_gamma=tiny_gamma, ada_kimg=0.5, growth_steps=2 if progressive else 0,
                             ema_kimg=ema_kimg_for(4), checkpoint_every=10, log_every=2,
                             **{k: v for k, v in common.items()}),
    )
    laptop = GANPreset(
        description=f"{family}, a 2-core CPU in minutes at 32 px: 32-d latents, <= 32 feature maps, batch 16",
        model=GANModelConfig(family=family, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32,
                             num_layers=6, margin=2, sg3_channel_base=256, resolution=32),
        train=GANTrainConfig(steps=1200, batch=16, lr=2e-3, r1_gamma=laptop_gamma, ada_kimg=5.0,
                             growth_steps=150 if progressive else 0, ema_kimg=ema_kimg_for(16), checkpoint_every=400,
                             log_every=50, **common),
    )
    small = GANPreset(
        description=f"{family}, one GPU at 64-128 px: 256-d latents, <= 256 feature maps, batch 16",
        model=GANModelConfig(family=family, z_dim=256, w_dim=256, mapping_layers=4 if style else 1, channel_base=8192,
                             channel_max=256, num_layers=10, margin=10, sg3_channel_base=16384, resolution=128),
        train=GANTrainConfig(steps=100_000, batch=16, lr=lr, r1_gamma=gamma / 4 if modern else 10.0,
                             growth_steps=20_000 if progressive else 0, ema_kimg=ema_kimg_for(16),
                             checkpoint_every=2000, log_every=50, image_every=5000, **common),
    )
    paper = GANPreset(
        description=f"{family}, the reference study: 256², batch 32, mirror, 25,000 kimg"
                    + (f", gamma {gamma:g}, ADA" if modern else ""),
        model=GANModelConfig(family=family, z_dim=512, w_dim=512, mapping_layers=2 if family == "stylegan3" else 8,
                             channel_base=16384, channel_max=512, num_layers=14, margin=10, sg3_channel_base=32768,
                             resolution=256),
        train=GANTrainConfig(steps=781_250, batch=32, lr=lr, r1_gamma=gamma, growth_steps=18_750 if progressive else 0,
                             ema_kimg=ema_kimg_for(32), checkpoint_every=5000, log_every=100, image_every=10_000,
                             **common),
    )
    return {"tiny": tiny, "laptop": laptop, "small": small, "paper": paper}


#: ``PRESETS[family][preset]``.
PRESETS: dict[str, dict[str, GANPreset]] = {family: _presets(family) for family in FAMILIES}
