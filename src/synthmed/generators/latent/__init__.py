"""3D latent diffusion (Khader et al. 2022, "Medical Diffusion"): an autoencoder to a compact latent, then diffusion in it.

The autoencoder stage: :mod:`.config` (configs and presets), :mod:`.quantizer` (MONAI's EMA
codebook with dead-code restart), :mod:`.networks` (MONAI ``VQVAE`` or ``AutoencoderKL`` over
the joint image + mask encoding; PatchGAN discriminators), :mod:`.losses` (hinge, feature
matching, random slices, the discriminator start), :mod:`.task` (the training task) and
:mod:`.autoencoder` (training into ``RUN/autoencoder/``, loading for encoding and decoding).

The latent diffusion stage and the ``ldm`` generator: :mod:`.scaling` (min–max or std latent
scaling, recorded in the run), :mod:`.codec` (store samples ↔ scaled latents, the diffusion
task's :class:`~synthmed.generators.diffusion.codec.Codec`), :mod:`.ldm_config` (both stages'
configs and presets) and :mod:`.model` (:class:`LatentDiffusionGenerator`: both stages in one run).
"""

from synthmed.generators.latent.autoencoder import (AUTOENCODER_DIR, AUTOENCODER_KIND, Autoencoder,
                                                    autoencoder_config_for, autoencoder_dir, autoencoder_precision,
                                                    load_autoencoder, train_autoencoder)
from synthmed.generators.latent.codec import LatentCodec
from synthmed.generators.latent.config import (AUTOENCODER_PRESETS, AutoencoderConfig, AutoencoderPreset,
                                               AutoencoderTrainConfig)
from synthmed.generators.latent.ldm_config import (LDM_PRESETS, LatentDiffusionConfig, LatentDiffusionPreset,
                                                   LatentDiffusionTrainConfig)
from synthmed.generators.latent.model import LatentDiffusionGenerator
from synthmed.generators.latent.networks import AutoencoderOutput, LatentAutoencoder, build_discriminators
from synthmed.generators.latent.quantizer import RestartingEMAQuantizer
from synthmed.generators.latent.scaling import (LATENT_SCALING, SCALINGS, LatentScaling, fit_scaling, read_scaling,
                                                write_scaling)
from synthmed.generators.latent.task import AutoencoderTask, Discriminators

__all__ = [
    "AUTOENCODER_DIR",
    "AUTOENCODER_KIND",
    "AUTOENCODER_PRESETS",
    "LATENT_SCALING",
    "LDM_PRESETS",
    "SCALINGS",
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderOutput",
    "AutoencoderPreset",
    "AutoencoderTask",
    "AutoencoderTrainConfig",
    "Discriminators",
    "LatentAutoencoder",
    "LatentCodec",
    "LatentDiffusionConfig",
    "LatentDiffusionGenerator",
    "LatentDiffusionPreset",
    "LatentDiffusionTrainConfig",
    "LatentScaling",
    "RestartingEMAQuantizer",
    "autoencoder_config_for",
    "autoencoder_dir",
    "autoencoder_precision",
    "build_discriminators",
    "fit_scaling",
    "load_autoencoder",
    "read_scaling",
    "train_autoencoder",
    "write_scaling",
]
