"""The projection's settings (pydantic): latent space, loss weights and the optimisation schedule.

Defaults are NVlabs' StyleGAN 2 projector (``projector.py``), which Han et al. (2021) ran:
1000 Adam steps (β 0.9, 0.999) at a peak learning rate of 0.1 with a cosine ramp-down over
the last 25 % and a linear ramp-up over the first 5 %; ``w`` starts at ``w_avg`` (the mean
of 10,000 mapped latents) with Gaussian noise of ``0.05 · w_std`` added to it at each step,
decaying quadratically to 0 at 75 % of the steps; noise maps start standard normal, are
re-normalised after every step and pay the multi-scale autocorrelation penalty × 1e5. Their
distance is VGG-LPIPS, whose weights are downloaded; here the pixel L2 takes its place by
default and MS-SSIM and the domain encoder's features are optional terms.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthmed.config import Config

#: ``w``: one style vector per image, broadcast to every layer; ``wplus``: one per layer.
LatentSpace = Literal["w", "wplus"]
SPACES: tuple[str, ...] = ("w", "wplus")


class ProjectionConfig(Config):
    """How images are projected into a StyleGAN's latent space (see the module docstring)."""

    space: LatentSpace = Field("w", description="w (one vector per image, broadcast to all layers) or wplus "
                               "(one per layer)")
    steps: int = Field(1000, ge=1, description="Adam steps per image")
    batch: int = Field(16, ge=1, description="images optimised together (each with its own loss and Adam "
                       "state, so the batch changes only the speed)")
    lr: float = Field(0.1, gt=0, description="peak Adam learning rate")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas")
    lr_rampup: float = Field(0.05, ge=0, le=1, description="share of the steps of the linear lr ramp-up")
    lr_rampdown: float = Field(0.25, ge=0, le=1, description="share of the steps of the cosine lr ramp-down")
    w_noise: float = Field(0.05, ge=0, description="initial noise added to w, in units of w_std")
    w_noise_ramp: float = Field(0.75, gt=0, le=1, description="share of the steps over which the w noise "
                                "decays (quadratically) to 0")
    w_avg_samples: int = Field(10_000, ge=2, description="mapped latents for w_avg (the start) and w_std")
    optimise_noise: bool = Field(True, description="optimise per-image noise maps too (generators with noise "
                                 "inputs: StyleGAN 1 and 2)")
    l2: float = Field(1.0, ge=0, description="weight of the mean squared pixel error (encoded channels)")
    l1: float = Field(0.0, ge=0, description="weight of the mean absolute pixel error (encoded channels)")
    mask_weight: float = Field(1.0, gt=0, description="weight of the mask channels' pixel error against the image "
                               "channels' 1 in l2 and l1 (a tumour of a few pixels barely moves the mean otherwise)")
    ms_ssim: float = Field(0.0, ge=0, description="weight of 1 - MS-SSIM (image and mask channels in [0, 1])")
    perceptual: float = Field(0.0, ge=0, description="weight of the domain-encoder feature distance (needs an "
                              "encoder run)")
    noise_regularisation: float = Field(1e5, ge=0, description="weight of the noise maps' multi-scale "
                                        "autocorrelation penalty")
    seed: int = Field(0, ge=0, description="seed of w_avg's latents, the initial noise maps and the w noise "
                      "(each image's draws depend on the seed and its sample index only)")

    @model_validator(mode="after")
    def _a_distance(self) -> ProjectionConfig:
        if not any(w > 0 for w in (self.l2, self.l1, self.ms_ssim, self.perceptual)):
            raise ValueError("at least one of l2, l1, ms_ssim, perceptual must be > 0 (the image distance)")
        return self
