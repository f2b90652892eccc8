"""Configuration (pydantic) and presets of the ``ldm`` generator: both stages of latent diffusion.

:class:`LatentDiffusionConfig` is what the weights depend on: the autoencoder
(:class:`~synthmed.generators.latent.config.AutoencoderConfig`), the denoising U-Net over its
latents (:class:`~synthmed.generators.config.DiffusionModelConfig`, the ``ddpm`` generator's
own config), the latent scaling (:mod:`~synthmed.generators.latent.scaling`) and the default
sampler. :class:`LatentDiffusionTrainConfig` is how each stage trains. ``LDM_PRESETS[name]``.

**Keys.** Each config has an ``autoencoder`` and a ``diffusion`` part. Overrides (``--steps``,
a study's ``model_overrides`` / ``train_overrides``) may name a field ``autoencoder.<field>``
or ``diffusion.<field>``, or give it bare: a field of one stage only goes to that stage
(``kind``, ``disc_start`` → autoencoder; ``objective``, ``ema_decay`` → diffusion), a field both
have goes to the diffusion stage (``channels``, ``steps``, ``batch``, ``lr``, …), except
``label_mode``, which is the autoencoder's (the joint encoding it reconstructs).

**Derived fields.** The diffusion part's ``spatial_dims``, ``image_channels``, ``label_mode``
and ``image_shape`` are always the autoencoder part's, ``image_shape`` being its latent sides
(set while validating, so a config cannot disagree with itself); the U-Net's levels must halve
the latent sides evenly, else one error names ``diffusion.channels`` and the autoencoder's
``channels`` and ``image_shape``. As with every generator, the shape checked is the preset's until
a store is given, then the store's (``generator train`` completes the autoencoder with it).

``paper`` is Khader et al. 2022's BraTS set-up: the autoencoder's ``paper`` preset (VQ-GAN,
×2 per axis: 64³ → 8 × 32³) and their latent DDPM (FirasGit/medicaldiffusion,
``config/model/ddpm.yaml`` and ``train_ddpm.py``): a 3D U-Net of 32 → 64 → 128 → 256 feature
maps (``dim`` 32, ``dim_mults`` (1, 2, 4, 8)) with two residual blocks per level, the cosine
schedule with T = 300, ε-prediction with an L1 loss, Adam lr 1e-4, batch 40, EMA decay 0.995,
700,000 steps, min–max latent scaling with the codebook range and the full 300-step ancestral
chain for sampling. Differences: MONAI's U-Net attends over the whole 3D latent at the two
coarsest levels, where theirs attends within slices and along depth at every level; no
gradient accumulation (theirs accumulates 2 batches); gradients are clipped at 1.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from synthmed.config import Config
from synthmed.generators.config import DiffusionModelConfig, TrainConfig
from synthmed.generators.latent.config import AUTOENCODER_PRESETS, AutoencoderConfig, AutoencoderTrainConfig
from synthmed.generators.latent.scaling import SCALING_HELP, ScalingMode

#: The two stages, as the configs name their parts.
STAGES: tuple[str, str] = ("autoencoder", "diffusion")
#: Fields both stages have that belong to the autoencoder when given bare.
AUTOENCODER_FIRST: frozenset[str] = frozenset({"label_mode"})
SamplerName = Literal["ddpm", "ddim", "rflow"]


def route_stage_keys(values: Any, own: frozenset[str], stage_fields: dict[str, frozenset[str]]) -> Any:
    """``values`` with every ``autoencoder.<f>``, ``diffusion.<f>`` and bare stage field moved into
    its stage's part (see the module docstring); other keys are left where they are (so an
    unknown key is still an error naming it). A part given as a config is taken as its values."""
    if not isinstance(values, dict):
        return values
    out: dict[str, Any] = {}
    moved: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    for key, value in values.items():
        stage, dot, name = str(key).partition(".")
        if key in own:
            out[key] = value
        elif dot and stage in STAGES:
            moved[stage][name] = value
        elif key in stage_fields["autoencoder"] and (key in AUTOENCODER_FIRST or key not in stage_fields["diffusion"]):
            moved["autoencoder"][key] = value
        elif key in stage_fields["diffusion"]:
            moved["diffusion"][key] = value
        else:
            out[key] = value
    for stage, changes in moved.items():
        if changes:
            base = out.get(stage, {})
            base = base.model_dump() if isinstance(base, BaseModel) else dict(base) if isinstance(base, dict) else base
            out[stage] = {**base, **changes} if isinstance(base, dict) else base
    return out


def _fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(model.model_fields)


class LatentDiffusionConfig(Config):
    """Both stages' models, the latent scaling and the default sampler (see the module docstring)."""

    autoencoder: AutoencoderConfig = Field(default_factory=AutoencoderConfig, description="the autoencoder stage")
    diffusion: DiffusionModelConfig = Field(default_factory=DiffusionModelConfig, validate_default=True,
                                            description="the denoising U-Net over the latents (its image fields "
                                            "are the autoencoder's latent shape)")
    latent_scaling: ScalingMode = Field("minmax", description=SCALING_HELP)
    sampler: SamplerName | None = Field(None, description="default sampler of `generator sample` (None: ddim, or "
                                        "rflow for objective rflow; ddpm: the full ancestral chain)")

    @model_validator(mode="before")
    @classmethod
    def _route(cls, values: Any) -> Any:
        return route_stage_keys(values, frozenset({"autoencoder", "diffusion", "latent_scaling", "sampler"}),
                                {"autoencoder": _fields(AutoencoderConfig), "diffusion": _fields(DiffusionModelConfig)})

    @field_validator("diffusion", mode="before")
    @classmethod
    def _latent_shape(cls, value: Any, info: ValidationInfo) -> Any:
        """The diffusion part's ``spatial_dims``, ``image_channels``, ``label_mode`` and
        ``image_shape`` from the (validated) autoencoder part: its latent sides, which the U-Net's
        levels must halve evenly."""
        autoencoder = info.data.get("autoencoder")
        if autoencoder is None:  # invalid: its own error is reported
            return value
        values = value.model_dump() if isinstance(value, BaseModel) else dict(value) if isinstance(value, dict) else None
        if values is None:
            return value
        check_latent_fit(autoencoder, values.get("channels", DiffusionModelConfig.model_fields["channels"].default))
        values.update(spatial_dims=autoencoder.spatial_dims, image_channels=autoencoder.image_channels,
                      label_mode=autoencoder.label_mode, image_shape=autoencoder.latent_shape[1:])
        return values

    @model_validator(mode="after")
    def _sampler_fits(self) -> LatentDiffusionConfig:
        if self.sampler is not None and (self.sampler == "rflow") != (self.diffusion.objective == "rflow"):
            raise ValueError(f"sampler {self.sampler} does not fit objective {self.diffusion.objective}")
        return self

    @property
    def image_channels(self) -> int:
        """The store's image channels (the autoencoder's)."""
        return self.autoencoder.image_channels

    @property
    def label_mode(self) -> str:
        """The joint encoding's label mode (the autoencoder's)."""
        return self.autoencoder.label_mode


def check_latent_fit(autoencoder: AutoencoderConfig, channels: Any) -> None:
    """Whether a U-Net of ``channels`` levels halves ``autoencoder``'s latent sides evenly.

    Raises:
        ValueError: naming ``diffusion.channels`` and the autoencoder's ``channels`` and ``image_shape``.
    """
    sides = autoencoder.latent_shape[1:]
    levels = len(channels) if isinstance(channels, (list, tuple)) else 1
    factor = 2 ** (levels - 1)
    if any(s % factor for s in sides):
        raise ValueError(
            f"diffusion.channels: {levels} U-Net levels halve the latent {levels - 1} times, so its sides must be "
            f"divisible by {factor}, but autoencoder.channels {list(autoencoder.channels)} (each side / "
            f"{autoencoder.downsampling}) turn samples of autoencoder.image_shape {list(autoencoder.image_shape)} "
            f"into latents of {list(sides)}; use fewer diffusion or autoencoder levels, or larger samples")


class LatentDiffusionTrainConfig(Config):
    """How each stage trains (may change on ``--resume``; the autoencoder's ``steps`` only until
    the diffusion stage begins)."""

    autoencoder: AutoencoderTrainConfig = Field(default_factory=AutoencoderTrainConfig,
                                                description="the autoencoder stage")
    diffusion: TrainConfig = Field(default_factory=TrainConfig, description="the latent diffusion stage")

    @model_validator(mode="before")
    @classmethod
    def _route(cls, values: Any) -> Any:
        return route_stage_keys(values, frozenset(STAGES), {"autoencoder": _fields(AutoencoderTrainConfig),
                                                            "diffusion": _fields(TrainConfig)})


class LatentDiffusionPreset(Config):
    """A named configuration of both stages."""

    model: LatentDiffusionConfig
    train: LatentDiffusionTrainConfig
    description: str


def _preset(autoencoder: str, diffusion: DiffusionModelConfig, train: TrainConfig, description: str,
            **model: Any) -> LatentDiffusionPreset:
    """A preset on the autoencoder preset ``autoencoder``, the diffusion part completed for its latents."""
    ae = AUTOENCODER_PRESETS[autoencoder]
    return LatentDiffusionPreset(model=LatentDiffusionConfig(autoencoder=ae.model, diffusion=diffusion, **model),
                                 train=LatentDiffusionTrainConfig(autoencoder=ae.train, diffusion=train),
                                 description=description)


#: ``tiny``: CPU seconds at 16 px (tests); ``laptop``: a 2-core CPU at 32 px; ``laptop64``: one CPU
#: thread at 64³ in about a quarter of an hour (the autoencoder's ``laptop64``, chosen by measurement:
#: see :mod:`~synthmed.generators.latent.config`; a U-Net of ``laptop``'s widths over its 8 × 16³
#: latent, std scaling as for MONAI's KL autoencoders; its 400 steps take about 4 minutes, the
#: autoencoder's 240 about 13; ``benchmarks/ldm.py``); ``small``: one GPU
#: at 128 px (×4 per axis); ``paper``: Khader et al.'s BraTS set-up (module docstring).
#: ``tiny``, ``laptop``, ``laptop64`` and ``small`` predict v, as the ``ddpm`` presets do; all but
#: ``laptop64`` scale min–max.
LDM_PRESETS: dict[str, LatentDiffusionPreset] = {
    "tiny": _preset(
        "tiny",
        DiffusionModelConfig(channels=(16, 32), num_res_blocks=1, attention_levels=(False, False), norm_num_groups=8,
                             objective="v", train_timesteps=200),
        TrainConfig(steps=20, batch=4, lr=1e-3, ema_decay=0.9, checkpoint_every=10, log_every=5, preview_steps=4),
        "CPU seconds at 16 px: the tiny autoencoder (4 steps, latent 4 x 8^3), a U-Net (16, 32) over it, "
        "v-prediction, T=200, 20 steps"),
    "laptop": _preset(
        "laptop",
        DiffusionModelConfig(channels=(16, 32, 64), num_res_blocks=1, attention_levels=(False, False, True),
                             norm_num_groups=8, num_head_channels=16, objective="v", train_timesteps=1000),
        TrainConfig(steps=1200, batch=8, lr=1e-3, ema_decay=0.99, checkpoint_every=400, log_every=50,
                    preview_steps=20),
        "a 2-core CPU at 32 px: the laptop autoencoder (latent 8 x 16^3), a U-Net (16, 32, 64) with attention at "
        "the lowest level, v-prediction, T=1000, 1200 steps"),
    "laptop64": _preset(
        "laptop64",
        DiffusionModelConfig(channels=(16, 32, 64), num_res_blocks=1, attention_levels=(False, False, True),
                             norm_num_groups=8, num_head_channels=16, objective="v", train_timesteps=1000),
        TrainConfig(steps=400, batch=2, lr=1e-3, ema_decay=0.99, checkpoint_every=100, log_every=10, preview_steps=10),
        "one CPU thread at 64 px: the laptop64 autoencoder (kl, latent 8 x 16^3, 240 steps), a U-Net (16, 32, 64) "
        "with attention at the lowest level, v-prediction, T=1000, 400 steps at batch 2, std latent scaling",
        latent_scaling="std"),
    "small": _preset(
        "small",
        DiffusionModelConfig(channels=(32, 64, 128, 256), num_res_blocks=2, attention_levels=(False, False, True, True),
                             norm_num_groups=16, num_head_channels=32, objective="v", train_timesteps=1000),
        TrainConfig(steps=100_000, batch=8, lr=1e-4, ema_decay=0.999, checkpoint_every=5000, log_every=100,
                    image_every=10_000),
        "one GPU at 128 px: the small autoencoder (x4 per axis, latent 8 x 32^3), a U-Net (32, 64, 128, 256) with "
        "attention at the two coarsest levels, v-prediction, T=1000"),
    "paper": _preset(
        "paper",
        DiffusionModelConfig(channels=(32, 64, 128, 256), num_res_blocks=2, attention_levels=(False, False, True, True),
                             norm_num_groups=8, num_head_channels=32, objective="epsilon", schedule="cosine",
                             train_timesteps=300),
        TrainConfig(steps=700_000, batch=40, lr=1e-4, ema_decay=0.995, loss="l1", checkpoint_every=5000, log_every=100,
                    image_every=10_000),
        "Khader et al. 2022 (BraTS): the paper VQ-GAN (64^3 -> 8 x 32^3), a 3D U-Net (32, 64, 128, 256), cosine "
        "schedule, T=300, L1 epsilon-loss, lr 1e-4, batch 40, EMA 0.995, min-max scaling with the codebook range, "
        "sampled by the full 300-step chain",
        latent_scaling="minmax", sampler="ddpm"),
}
