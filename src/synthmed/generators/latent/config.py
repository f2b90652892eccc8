"""Configuration (pydantic) and presets of the autoencoder stage of latent diffusion.

:class:`AutoencoderConfig` is what the weights depend on (the autoencoder and its two
discriminators; fixed for the life of a run); :class:`AutoencoderTrainConfig` is how to train
(losses, optimiser, schedule; may change on ``--resume``). ``AUTOENCODER_PRESETS[name]``.

**Downsampling.** ``channels`` lists the feature maps per level; the first level keeps the
resolution and every further one halves each side, so the latent side is the sample side
divided by ``2 ** (len(channels) - 1)`` for both kinds (VQ-VAE and KL).

``paper`` is Khader et al. 2022's BraTS set-up (FirasGit/medicaldiffusion's ``train_vqgan.py``
command for BraTS): a VQ-GAN with 16 → 32 feature maps and one halving (×2 per axis, 64³ →
32³), an 8-channel latent, an EMA codebook of 16,384 codes (decay 0.99) with dead-code restart
below an average use of 1 vector per batch and commitment 0.25; L1 ×4, a perceptual term ×4 on
a random slice, slice and volume PatchGAN discriminators (64 feature maps, 3 layers) with hinge
loss ×1 each, feature matching ×4, the discriminators from step 10,000; Adam lr 3e-4 with betas
(0.5, 0.9), gradient clipping at 1, batch 2. Their run has no step limit; ours stops at 100,000.
Their perceptual network is LPIPS (downloaded at run time); here the perceptual term is off
until a network is given (``perceptual`` and ``perceptual_path``), with the weight ×4 kept.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthmed.config import Config, LoopConfig
from synthmed.data.encoding import LABEL_MODE_HELP, JointEncoding, LabelMode

AutoencoderKind = Literal["vq", "kl"]
KINDS: tuple[str, ...] = ("vq", "kl")
PerceptualNet = Literal["none", "domain", "radimagenet"]
PERCEPTUAL_HELP = ("perceptual term on random slices: none (default), domain (the domain encoder of a run "
                   "folder: nothing downloaded) or radimagenet (RadImageNet ResNet-50 from a weights file)")


class AutoencoderConfig(Config):
    """The autoencoder and its discriminators (``spatial_dims``, ``image_channels`` and
    ``image_shape`` come from the training store)."""

    kind: AutoencoderKind = Field("vq", description="vq (MONAI VQVAE with an EMA codebook) or kl (MONAI AutoencoderKL)")
    channels: tuple[int, ...] = Field((16, 32), min_length=1, description="feature maps per level; every level "
                                      "after the first halves each side")
    num_res_layers: int = Field(1, ge=1, description="residual blocks per level")
    latent_channels: int = Field(8, ge=1, description="latent channels (the codebook's vector size for vq)")
    num_embeddings: int = Field(16_384, ge=2, description="vq: codebook size")
    commitment: float = Field(0.25, ge=0, description="vq: commitment cost")
    codebook_decay: float = Field(0.99, gt=0, lt=1, description="vq: EMA decay of the codebook")
    restart_threshold: float = Field(1.0, ge=0, description="vq: a code whose EMA use (vectors per batch) falls "
                                     "below this is re-seeded from the batch's encoder outputs (0: never)")
    norm_num_groups: int = Field(8, ge=1, description="kl: GroupNorm groups (must divide every level's channels)")
    attention: bool = Field(False, description="kl: self-attention at the lowest level and in the middle blocks")
    disc_channels: int = Field(64, ge=1, description="feature maps of the discriminators' first layer")
    disc_layers: int = Field(3, ge=1, description="stride-2 layers of each PatchGAN discriminator")
    label_mode: LabelMode = Field("nested", description=LABEL_MODE_HELP)
    spatial_dims: int = Field(3, ge=2, le=3, description="2 or 3 (from the store)")
    image_channels: int = Field(4, ge=1, description="image channels (from the store)")
    image_shape: tuple[int, ...] = Field((64, 64, 64), description="spatial shape (from the store)")

    @model_validator(mode="after")
    def _consistent(self) -> AutoencoderConfig:
        if len(self.image_shape) != self.spatial_dims:
            raise ValueError(f"image_shape {self.image_shape} is not {self.spatial_dims}D")
        factor = self.downsampling
        if any(s % factor for s in self.image_shape):
            raise ValueError(f"image sides {self.image_shape} must be divisible by {factor} ({len(self.channels)} "
                             f"levels halve each side {len(self.channels) - 1} times)")
        smallest = 3 * 2**self.disc_layers
        if min(self.image_shape) < smallest:
            raise ValueError(f"image sides {self.image_shape} are too small for discriminators of {self.disc_layers} "
                             f"layers (at least {smallest}); use fewer disc_layers")
        if self.kind == "kl":
            bad = [c for c in self.channels if c % self.norm_num_groups]
            if bad:
                raise ValueError(f"norm_num_groups {self.norm_num_groups} must divide every channel count, not {bad}")
        return self

    @property
    def downsampling(self) -> int:
        """How many times smaller each latent side is: ``2 ** (len(channels) - 1)``."""
        return 2 ** (len(self.channels) - 1)

    @property
    def in_channels(self) -> int:
        """Channels of the joint encoding the autoencoder reconstructs (``C + L``)."""
        return JointEncoding(self.image_channels, self.label_mode).n_channels

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """``(latent_channels, *sides)`` of one sample's latent."""
        return (self.latent_channels, *(s // self.downsampling for s in self.image_shape))


class AutoencoderTrainConfig(LoopConfig):
    """Losses, optimiser and schedule (may change on ``--resume``)."""

    steps: int = Field(4, ge=1, description="total iterations (an autoencoder and, once on, a discriminator step each)")
    batch: int = Field(2, ge=1, description="batch per process")
    lr: float = Field(3e-4, gt=0, description="Adam learning rate of the autoencoder and the discriminators")
    betas: tuple[float, float] = Field((0.5, 0.9), description="Adam betas")
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip of the autoencoder (0: none)")
    l1_weight: float = Field(4.0, ge=0, description="weight of the L1 reconstruction loss (image and mask channels)")
    kl_weight: float = Field(1e-6, ge=0, description="kl: weight of the KL divergence")
    disc_start: int = Field(10_000, ge=0, description="step from which the discriminators train and the adversarial "
                            "and feature-matching terms count (before it they contribute no gradient)")
    slice_adversarial: float = Field(1.0, ge=0, description="weight of the slice discriminator's hinge terms")
    volume_adversarial: float = Field(1.0, ge=0, description="weight of the volume discriminator's hinge terms "
                                      "(3D stores)")
    feature_matching: float = Field(4.0, ge=0, description="weight of the discriminator feature matching")
    perceptual: PerceptualNet = Field("none", description=PERCEPTUAL_HELP)
    perceptual_weight: float = Field(4.0, ge=0, description="weight of the perceptual term (when a network is given)")
    perceptual_path: str | None = Field(None, description="domain: the domain encoder run folder; radimagenet: the "
                                        "ResNet-50 weights file")
    image_every: int = Field(0, ge=0, description="TensorBoard reconstruction grid every N steps (0: at the end)")

    @model_validator(mode="after")
    def _perceptual_source(self) -> AutoencoderTrainConfig:
        if self.perceptual != "none" and not self.perceptual_path:
            raise ValueError(f"perceptual {self.perceptual} needs perceptual_path (the "
                             + ("domain encoder run folder" if self.perceptual == "domain" else "weights file") + ")")
        return self


class AutoencoderPreset(Config):
    """A named model + training configuration of the autoencoder stage."""

    model: AutoencoderConfig
    train: AutoencoderTrainConfig
    description: str


#: ``tiny``: CPU seconds at 16 px (tests); ``laptop``: a 2-core CPU at 32 px; ``laptop64``: one CPU
#: thread in about 13 minutes at 64³ (below); ``small``: one GPU at 64-128 px (×4 per axis);
#: ``paper``: Khader et al.'s BraTS set-up (module docstring).
#:
#: ``laptop64`` was chosen by measurement on a 3D phantom store at 64³ (16 cases, 12 train and 4
#: test subjects; one torch thread on a shared 2-core CPU; discriminators off; batch 1 unless said):
#: a step of ``laptop``'s VQ (16, 32) at batch 2 takes about 10 s, of the (8, 16, 32) nets 2.5-3 s.
#: Test PSNR after 100 steps: vq (8, 16, 32) with 512 codes 15.1 dB (its code carries 9 bits per
#: 4³ block of 7 channels), kl (8, 16, 32) 19.1 dB, kl (8, 16) (×2 per axis) 18.7 dB, kl (8, 16, 32)
#: at lr 3e-3 and Adam betas (0.9, 0.999) 17.1 dB; kl (8, 16, 32) reached 21.1 dB at 300 steps,
#: its decoded masks still empty of tumour. So: a KL autoencoder, ×4 per axis (64³ → 8 × 16³,
#: which also makes the diffusion stage cheap), batch 1, as many steps as a dozen minutes allow,
#: the discriminators for the last third as in ``laptop``. It is a smoke-scale model: a few hundred
#: steps leave its reconstructions far from a trained autoencoder's.
AUTOENCODER_PRESETS: dict[str, AutoencoderPreset] = {
    "tiny": AutoencoderPreset(
        description="CPU seconds at 16 px: feature maps (8, 16), 4-channel latent, 32 codes, 2-layer discriminators "
                    "of 8 maps from step 2",
        model=AutoencoderConfig(channels=(8, 16), latent_channels=4, num_embeddings=32, norm_num_groups=4,
                                disc_channels=8, disc_layers=2, image_shape=(16, 16, 16)),
        train=AutoencoderTrainConfig(steps=4, batch=2, lr=1e-3, disc_start=2, checkpoint_every=2, log_every=1),
    ),
    "laptop": AutoencoderPreset(
        description="a 2-core CPU at 32 px: feature maps (16, 32), 8-channel latent, 512 codes, 2-layer "
                    "discriminators of 16 maps from step 400",
        model=AutoencoderConfig(channels=(16, 32), latent_channels=8, num_embeddings=512, disc_channels=16,
                                disc_layers=2, image_shape=(32, 32, 32)),
        train=AutoencoderTrainConfig(steps=1200, batch=2, lr=1e-3, disc_start=400, checkpoint_every=200,
                                     log_every=20),
    ),
    "laptop64": AutoencoderPreset(
        description="one CPU thread at 64 px in about 13 minutes: kl, feature maps (8, 16, 32) (x4 per axis: 64^3 "
                    "-> 8 x 16^3), GroupNorm of 4 groups, 2-layer discriminators of 16 maps from step 160, 240 steps "
                    "at batch 1",
        model=AutoencoderConfig(kind="kl", channels=(8, 16, 32), latent_channels=8, norm_num_groups=4,
                                disc_channels=16, disc_layers=2, image_shape=(64, 64, 64)),
        train=AutoencoderTrainConfig(steps=240, batch=1, lr=1e-3, disc_start=160, checkpoint_every=40, log_every=10),
    ),
    "small": AutoencoderPreset(
        description="one GPU at 64-128 px: feature maps (32, 64, 128) (x4 per axis), 8-channel latent, 4096 codes, "
                    "3-layer discriminators of 32 maps from step 10,000",
        model=AutoencoderConfig(channels=(32, 64, 128), num_res_layers=2, latent_channels=8, num_embeddings=4096,
                                norm_num_groups=16, disc_channels=32, disc_layers=3, image_shape=(128, 128, 128)),
        train=AutoencoderTrainConfig(steps=50_000, batch=2, disc_start=10_000, checkpoint_every=2000, log_every=50,
                                     image_every=5000),
    ),
    "paper": AutoencoderPreset(
        description="Khader et al. 2022 (BraTS): VQ-GAN (16, 32) x2 per axis, 8-channel latent, 16,384 EMA codes with "
                    "restart, commitment 0.25, L1 x4, hinge PatchGANs on slices and volumes from step 10,000, "
                    "feature matching x4, lr 3e-4, batch 2",
        model=AutoencoderConfig(channels=(16, 32), num_res_layers=1, latent_channels=8, num_embeddings=16_384,
                                commitment=0.25, codebook_decay=0.99, restart_threshold=1.0, disc_channels=64,
                                disc_layers=3, image_shape=(64, 64, 64)),
        train=AutoencoderTrainConfig(steps=100_000, batch=2, lr=3e-4, betas=(0.5, 0.9), grad_clip=1.0, l1_weight=4.0,
                                     disc_start=10_000, slice_adversarial=1.0, volume_adversarial=1.0,
                                     feature_matching=4.0, perceptual_weight=4.0, checkpoint_every=5000,
                                     log_every=100, image_every=10_000),
    ),
}
