"""Generator configuration models (pydantic) and the diffusion presets.

A generator's config has two parts: :class:`DiffusionModelConfig` (what the weights depend
on; fixed for the life of a run) and :class:`TrainConfig` (how long and how fast to train;
may change on ``--resume``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from synthmed.config import Config, LoopConfig
from synthmed.data.encoding import LABEL_MODE_HELP, LabelMode
from synthmed.generators.noise_schedules import MAX_TERMINAL_SIGNAL, terminal_signal

Objective = Literal["epsilon", "v", "x0", "rflow"]
OBJECTIVES: tuple[str, ...] = ("epsilon", "v", "x0", "rflow")
OBJECTIVE_HELP = ("what the network predicts: epsilon (the noise), v (the velocity sqrt(abar) eps - "
                  "sqrt(1 - abar) x0), x0 (the clean sample) or rflow (rectified flow, for few-step sampling); "
                  "'ddpm' is read as epsilon")


class DiffusionModelConfig(Config):
    """The diffusion model: MONAI ``DiffusionModelUNet`` + training objective.

    ``spatial_dims``, ``in_channels`` and ``image_shape`` are taken from the training store.
    """

    channels: tuple[int, ...] = Field((16, 32), description="UNet channels per level")
    num_res_blocks: int = Field(1, ge=1, description="residual blocks per level")
    attention_levels: tuple[bool, ...] = Field((False, False), description="self-attention per level")
    num_head_channels: int = Field(8, ge=1, description="channels per attention head")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups (must divide every level's channels)")
    objective: Objective = Field("v", description=OBJECTIVE_HELP)
    schedule: Literal["linear", "cosine"] = Field("linear", description="DDPM noise schedule (linear: betas given "
                                                  "for T=1000, scaled by 1000/T)")
    zero_terminal_snr: bool = Field(False, description="rescale the schedule so that the last timestep is pure "
                                    "noise (needs objective v or x0)")
    min_snr_gamma: float | None = Field(None, gt=0, description="Min-SNR-gamma loss weighting (None: unweighted; "
                                        "5 in Hang et al. 2023)")
    train_timesteps: int = Field(1000, ge=2, description="training timesteps T")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="linear schedule: first beta at T=1000")
    beta_end: float = Field(2e-2, gt=0, lt=1, description="linear schedule: last beta at T=1000")
    label_mode: LabelMode = Field("nested", description=LABEL_MODE_HELP)
    spatial_dims: int = Field(2, ge=2, le=3, description="2 or 3 (from the store)")
    image_channels: int = Field(4, ge=1, description="image channels (from the store)")
    image_shape: tuple[int, ...] = Field((32, 32), description="spatial shape (from the store)")

    @field_validator("objective", mode="before")
    @classmethod
    def _legacy_objective(cls, value: object) -> object:
        return "epsilon" if value == "ddpm" else value

    @model_validator(mode="after")
    def _consistent(self) -> DiffusionModelConfig:
        if self.zero_terminal_snr and self.objective not in ("v", "x0"):
            raise ValueError(f"zero_terminal_snr needs objective v or x0: {self.objective} has no x0 estimate "
                             "at the pure-noise step")
        if self.min_snr_gamma is not None and self.objective == "rflow":
            raise ValueError("min_snr_gamma weights the DDPM objectives, not rflow")
        signal = terminal_signal(self.objective, self.schedule, self.train_timesteps, self.beta_start,
                                 self.beta_end, self.zero_terminal_snr)
        if signal > MAX_TERMINAL_SIGNAL:
            what = "rectified flow" if self.objective == "rflow" else f"the {self.schedule} schedule"
            raise ValueError(f"{what} with train_timesteps={self.train_timesteps} does not reach noise: "
                             f"{signal:.3f} of the signal is left at the last timestep (at most "
                             f"{MAX_TERMINAL_SIGNAL} allowed), while sampling starts from pure noise; "
                             "use more train_timesteps, larger betas or zero_terminal_snr")
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels needs one entry per level ({len(self.channels)})")
        bad = [c for c in self.channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups {self.norm_num_groups} must divide every channel count, not {bad}")
        if len(self.image_shape) != self.spatial_dims:
            raise ValueError(f"image_shape {self.image_shape} is not {self.spatial_dims}D")
        factor = 2 ** (len(self.channels) - 1)
        if any(s % factor for s in self.image_shape):
            raise ValueError(f"image sides {self.image_shape} must be divisible by {factor} "
                             f"({len(self.channels)} UNet levels halve the size {len(self.channels) - 1} times)")
        return self


class TrainConfig(LoopConfig):
    """How to train (may change on ``--resume``); ``steps``, ``batch``, ``checkpoint_every``,
    ``log_every`` and ``num_workers`` come from :class:`~synthmed.config.LoopConfig`."""

    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA decay of the weights used for sampling")
    image_every: int = Field(0, ge=0, description="TensorBoard sample grid every N steps (0: at the end)")
    preview_steps: int = Field(20, ge=1, description="DDIM steps of the preview grid")
    grad_clip: float = Field(1.0, ge=0, description="gradient norm clip (0: none)")
    loss: Literal["mse", "l1"] = Field("mse", description="the objective's error: mse (squared) or l1 (absolute; "
                                       "Khader et al.'s latent DDPM)")


class Preset(Config):
    """A named model + training configuration."""

    model: DiffusionModelConfig
    train: TrainConfig
    description: str


#: ``tiny``: CPU seconds at 16-32 px (unit tests; it learns a simple store in a CPU minute);
#: ``laptop``: real results on a 2-core CPU in minutes at 32 px (the demo);
#: ``small``: a laptop GPU at 64–128 px;
#: ``paper``: the reference study (Akbar et al. 2024): 5 channels, 256², 64 base channels,
#: 3 residual blocks, linear schedule, 4000 steps, lr 1e-4, batch 32.
#: ``tiny``, ``laptop`` and ``small`` predict v (velocity): measured on the phantom, a small
#: ε-prediction network's x0 estimate at high noise is ill-conditioned and its samples stay
#: noise (README, "Diffusion objectives"); ``paper`` keeps the reference study's ε-prediction.
PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        description="CPU seconds at 16-32 px: channels (16, 32), 1 res block, no attention, v-prediction, T=200",
        model=DiffusionModelConfig(channels=(16, 32), num_res_blocks=1, attention_levels=(False, False),
                                   norm_num_groups=8, objective="v", train_timesteps=200),
        train=TrainConfig(steps=20, batch=8, lr=1e-3, ema_decay=0.9, checkpoint_every=10, log_every=5, preview_steps=4),
    ),
    "laptop": Preset(
        description="a 2-core CPU in minutes at 32 px: channels (16, 32, 64), attention at the lowest level, "
                    "v-prediction, T=1000, 1200 steps at batch 16",
        model=DiffusionModelConfig(channels=(16, 32, 64), num_res_blocks=1, attention_levels=(False, False, True),
                                   norm_num_groups=8, num_head_channels=16, objective="v", train_timesteps=1000),
        train=TrainConfig(steps=1200, batch=16, lr=1e-3, ema_decay=0.99, checkpoint_every=400, log_every=50,
                          preview_steps=20),
    ),
    "small": Preset(
        description="one GPU, 64-128 px: channels (32, 64, 128, 128), 2 res blocks, attention at the lowest level, T=1000",
        model=DiffusionModelConfig(channels=(32, 64, 128, 128), num_res_blocks=2,
                                   attention_levels=(False, False, False, True), norm_num_groups=16,
                                   num_head_channels=32, objective="v", train_timesteps=1000,
                                   image_shape=(128, 128)),
        train=TrainConfig(steps=50_000, batch=16, lr=1e-4, checkpoint_every=2000, log_every=50, image_every=5000),
    ),
    "paper": Preset(
        description="reference study: 256², channels (64, 128, 256, 256), 3 res blocks, epsilon, linear T=4000, lr 1e-4, batch 32",
        model=DiffusionModelConfig(channels=(64, 128, 256, 256), num_res_blocks=3,
                                   attention_levels=(False, False, True, True), norm_num_groups=32,
                                   num_head_channels=64, objective="epsilon", schedule="linear", train_timesteps=4000,
                                   image_shape=(256, 256)),
        train=TrainConfig(steps=200_000, batch=32, lr=1e-4, ema_decay=0.9999, checkpoint_every=5000,
                          log_every=100, image_every=10_000),
    ),
}
