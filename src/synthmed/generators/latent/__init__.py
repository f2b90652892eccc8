"""3D latent diffusion (Khader et al. 2022, "Medical Diffusion"): an autoencoder to a compact latent, then diffusion in it.

The first stage, the autoencoder, is built: :mod:`.config` (configs and presets),
:mod:`.quantizer` (MONAI's EMA codebook with dead-code restart), :mod:`.networks` (MONAI
``VQVAE`` or ``AutoencoderKL`` over the joint image + mask encoding; PatchGAN discriminators),
:mod:`.losses` (hinge, feature matching, random slices, the discriminator start), :mod:`.task`
(the training task) and :mod:`.autoencoder` (training into ``RUN/autoencoder/``, loading for
encoding and decoding).
"""

from synthmed.generators.latent.autoencoder import (AUTOENCODER_DIR, AUTOENCODER_KIND, Autoencoder,
                                                    autoencoder_config_for, autoencoder_dir, autoencoder_precision,
                                                    load_autoencoder, train_autoencoder)
from synthmed.generators.latent.config import (AUTOENCODER_PRESETS, AutoencoderConfig, AutoencoderPreset,
                                               AutoencoderTrainConfig)
from synthmed.generators.latent.networks import AutoencoderOutput, LatentAutoencoder, build_discriminators
from synthmed.generators.latent.quantizer import RestartingEMAQuantizer
from synthmed.generators.latent.task import AutoencoderTask, Discriminators

__all__ = [
    "AUTOENCODER_DIR",
    "AUTOENCODER_KIND",
    "AUTOENCODER_PRESETS",
    "Autoencoder",
    "AutoencoderConfig",
    "AutoencoderOutput",
    "AutoencoderPreset",
    "AutoencoderTask",
    "AutoencoderTrainConfig",
    "Discriminators",
    "LatentAutoencoder",
    "RestartingEMAQuantizer",
    "autoencoder_config_for",
    "autoencoder_dir",
    "autoencoder_precision",
    "build_discriminators",
    "load_autoencoder",
    "train_autoencoder",
]
