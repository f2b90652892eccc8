"""The autoencoder stage of latent diffusion: trained into ``RUN/autoencoder/``, loaded for encoding and decoding.

``RUN/autoencoder/`` is an ordinary run directory (:mod:`synthmed.training.run`): ``run.json``
(kind ``autoencoder``; ``model``: the :class:`~synthmed.generators.latent.config.AutoencoderConfig`
completed with the store's shape; ``training``: the training config plus the precision used;
``data``: the training store), ``state.json``, ``checkpoints/step_*/`` (``autoencoder`` and
``discriminators`` safetensors, ``state.pt``) and ``tensorboard/``. ``RUN`` is the latent
diffusion generator's run folder; its later stages live beside ``autoencoder/``.

:func:`train_autoencoder` trains (or, with ``resume``, continues: a resumed run equals an
uninterrupted one); :func:`load_autoencoder` gives an :class:`Autoencoder`, whose
:meth:`~Autoencoder.encode` returns pre-quantization latents ``[B, latent_channels, *S / f]``
(``kl``: the posterior mean) and whose :meth:`~Autoencoder.decode` maps latents back to images
in ``[0, 1]`` and valid labels, quantizing ``vq`` latents first by default.

**Precision.** ``auto`` trains in bf16 mixed precision on a GPU that supports it and in 32-bit
everywhere else (CPU included); ``fp16`` is refused: its range overflows in the codebook
distances and the adversarial terms (the NaNs medicaldiffusion's users report). The codebook
search and every loss run in float32 whatever the precision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric

from synthmed.config import build_config
from synthmed.data.encoding import JointEncoding
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.base import FitOptions
from synthmed.generators.common import check_resume_store, open_training_run, store_data, train_on_store
from synthmed.generators.latent.config import AutoencoderConfig, AutoencoderTrainConfig
from synthmed.generators.latent.networks import LatentAutoencoder
from synthmed.generators.latent.task import AutoencoderTask
from synthmed.outputs import guard_output, run_directory
from synthmed.training.checkpoint import load_latest, load_weights
from synthmed.training.fabric import make_fabric, resolve_device
from synthmed.training.run import RUN_JSON, read_run

#: ``run.json``'s kind of the stage.
AUTOENCODER_KIND = "autoencoder"
#: The stage's folder inside the latent diffusion run.
AUTOENCODER_DIR = "autoencoder"
#: The autoencoder's weights file in a checkpoint (its module name) and in a saved generator folder.
AUTOENCODER_WEIGHTS = "autoencoder.safetensors"


def autoencoder_dir(run_dir: str | Path) -> Path:
    """``RUN/autoencoder``: where the autoencoder stage of the run ``run_dir`` lives."""
    return Path(run_dir) / AUTOENCODER_DIR


def autoencoder_precision(precision: str, device: str) -> str:
    """The ``FabricOptions.precision`` the stage trains with (see the module docstring).

    Args:
        precision: ``auto``, ``32``, ``bf16`` or ``fp16`` (``--precision``).
        device: the resolved device, ``cpu`` or ``cuda``.

    Raises:
        SynthmedError: ``fp16``; ``bf16`` on a CPU or a GPU without bf16.
    """
    if precision == "fp16":
        raise SynthmedError("--precision fp16: the autoencoder stage does not train in fp16 (its range overflows "
                            "in the codebook distances and the adversarial terms); use bf16 or 32")
    if precision not in ("auto", "32", "bf16"):
        raise SynthmedError(f"--precision must be auto, 32, bf16 or fp16, got {precision!r}")
    bf16 = device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not bf16:
        raise SynthmedError("--precision bf16 needs a GPU with bf16 support; on this device the autoencoder "
                            "trains in 32-bit (--precision auto or 32)")
    if precision == "auto":
        return "bf16" if bf16 else "32"
    return precision


def autoencoder_config_for(config: AutoencoderConfig, store: Store) -> AutoencoderConfig:
    """``config`` completed with ``store``'s dims, image channels and sample shape.

    Raises:
        SynthmedError: the store's samples do not fit (sides not divisible by the downsampling,
            too small for the discriminators), naming the store and the field.
    """
    values = config.model_dump()
    values.update(spatial_dims=store.dims, image_channels=store.sample_shape[0],
                  image_shape=tuple(store.sample_shape[1:]))
    return build_config(AutoencoderConfig, f"{store.path}: {store.dims}D samples of shape {store.sample_shape} do "
                        "not fit the autoencoder", **values)


def train_autoencoder(store: Store, run_dir: str | Path, config: AutoencoderConfig, train_config: AutoencoderTrainConfig,
                      options: FitOptions = FitOptions(), *, fabric: Fabric | None = None) -> int:
    """Train the autoencoder stage on ``store``'s ``train`` split into ``RUN/autoencoder/``.

    Args:
        store: the training store (2D or 3D).
        run_dir: ``RUN``, the latent diffusion run folder (created if needed).
        config: the model (its store-given fields are replaced by the store's).
        train_config: losses, optimiser and schedule.
        options: seed, device and precision (:func:`autoencoder_precision`), resume, overwrite,
            progress.
        fabric: a launched Fabric to train with (the latent diffusion generator's, so both
            stages share one); its precision must be ``options.fabric``'s, resolved by
            :func:`autoencoder_precision`. ``None``: one is made from ``options.fabric``.

    Returns:
        The final step.

    Raises:
        DataError: the store has no ``train`` samples.
        OutputIsInputError: ``RUN/autoencoder`` is, contains or lies inside the store.
        NotOwnOutputError: ``overwrite`` of something that is not an autoencoder run.
        SynthmedError / OutputExistsError: the store does not fit the model, a bad precision,
            or see :func:`~synthmed.training.run.open_run` (``RUN/autoencoder`` exists without
            ``resume`` or ``overwrite``, a changed model on ``resume``, …).
    """
    stage = guard_output(autoencoder_dir(run_dir), [store.path], kind=run_directory("autoencoder run", [AUTOENCODER_KIND]),
                         overwrite=options.overwrite, resume=options.resume)
    data = store_data(store)  # DataError if there is no train split
    config = autoencoder_config_for(config, store)
    train_config = build_config(AutoencoderTrainConfig, "autoencoder training options", **train_config.model_dump())
    if options.resume:
        check_resume_store(stage, store)
    precision = autoencoder_precision(options.fabric.precision, resolve_device(options.fabric.device))
    if fabric is None:
        fabric = make_fabric(replace(options.fabric, precision=precision))  # type: ignore[arg-type]
    training = {**train_config.model_dump(mode="json"), "precision": precision}
    run = open_training_run(stage, fabric, kind=AUTOENCODER_KIND, model=config.model_dump(mode="json"),
                            training=training, seed=options.seed, data=data, resume=options.resume,
                            overwrite=options.overwrite)
    task = AutoencoderTask(config, train_config, int(run.info["seed"]))
    return train_on_store(task, fabric, run, store, train_config, progress=options.progress,
                          description=f"autoencoder {Path(run_dir).name}")


ArrayLike = np.ndarray | torch.Tensor


class Autoencoder:
    """A trained autoencoder stage for encoding and decoding (eval mode, no gradients, float32).

    Results are on :attr:`device`.

    Attributes:
        network: the :class:`~synthmed.generators.latent.networks.LatentAutoencoder`.
        config: its model config (with the training store's shape).
        encoding: the joint encoding it was trained on.
        step: the checkpoint's step.
        source: the stage folder it was loaded from.
        data: the training store's description (``run.json``'s ``data``).
    """

    def __init__(self, network: LatentAutoencoder, config: AutoencoderConfig, *, step: int = 0,
                 source: Path | None = None, data: Mapping[str, Any] | None = None):
        self.network = network.eval()
        self.config = config
        self.encoding = JointEncoding(config.image_channels, config.label_mode)
        self.step, self.source, self.data = int(step), source, dict(data or {})

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def kind(self) -> str:
        """``vq`` or ``kl``."""
        return self.config.kind

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """``(latent_channels, *latent sides)`` of one sample."""
        return self.config.latent_shape

    @property
    def codebook(self) -> torch.Tensor | None:
        """``vq``: the codes, float32 ``[num_embeddings, latent_channels]``; ``kl``: ``None``."""
        q = self.network.quantizer
        return None if q is None else q.embedding.weight.detach()

    @torch.no_grad()
    def encode_joint(self, x: torch.Tensor) -> torch.Tensor:
        """Latents of encoded samples ``x`` ``[B, C + L, *S]`` in ``[-1, 1]``: float32
        ``[B, latent_channels, *S / f]``, pre-quantization (``vq``) or the posterior mean (``kl``)."""
        return self.network.encode(x.to(self.device, torch.float32)).float()

    @torch.no_grad()
    def decode_joint(self, z: torch.Tensor, *, quantize: bool = True) -> torch.Tensor:
        """Encoded samples float32 ``[B, C + L, *S]`` from latents ``z`` (``vq``: quantized first
        unless ``quantize`` is false)."""
        return self.network.decode(z.to(self.device, torch.float32), quantize=quantize).float()

    def encode(self, images: ArrayLike, labels: ArrayLike) -> torch.Tensor:
        """Latents of store samples: ``images`` float ``[B, C, *S]`` in ``[0, 1]``, ``labels``
        uint8 ``[B, *S]`` → float32 ``[B, latent_channels, *S / f]`` (see :meth:`encode_joint`)."""
        return self.encode_joint(self.encoding.encode(images, labels))

    def decode(self, z: torch.Tensor, *, quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images float32 [B, C, *S] in [0, 1], labels uint8 [B, *S])`` from latents ``z``:
        the decoder's output through the joint encoding's decoding, so every label is valid."""
        return self.encoding.decode(self.decode_joint(z, quantize=quantize))


def read_autoencoder(config: AutoencoderConfig, file: Path) -> LatentAutoencoder:
    """The :class:`~synthmed.generators.latent.networks.LatentAutoencoder` of ``config`` with the
    weights (and codebook) of the safetensors ``file``, on the CPU.

    Raises:
        CorruptCheckpointError: ``file`` is missing or damaged.
        SynthmedError: its weights do not fit ``config``.
    """
    net = LatentAutoencoder(config)
    load_weights(net, file)
    return net


def _stage_folder(path: Path) -> Path:
    """The stage folder of ``path``: ``path`` itself when it is an autoencoder run, else
    ``path/autoencoder``."""
    if (path / RUN_JSON).is_file() and read_run(path).get("kind") == AUTOENCODER_KIND:
        return path
    return autoencoder_dir(path)


def load_autoencoder(path: str | Path, *, device: str = "auto") -> Autoencoder:
    """The autoencoder of a latent diffusion run ``RUN`` (or of ``RUN/autoencoder`` itself), from
    its latest readable checkpoint (a damaged one: the previous kept one, with a warning).

    Raises:
        SynthmedError: no autoencoder stage there, a run of another kind, a bad model config, or
            no checkpoint yet.
    """
    stage = _stage_folder(Path(path))
    if not (stage / RUN_JSON).is_file():
        raise SynthmedError(f"{path}: no autoencoder stage ({stage / RUN_JSON} missing)")
    info = read_run(stage)
    if info.get("kind") != AUTOENCODER_KIND:
        raise SynthmedError(f"{stage}: a {info.get('kind')!r} run, not an {AUTOENCODER_KIND}")
    config = build_config(AutoencoderConfig, f"{stage / RUN_JSON}: bad model config", **info.get("model", {}))
    found = load_latest(stage, lambda folder: read_autoencoder(config, folder / AUTOENCODER_WEIGHTS))
    if found is None:
        raise SynthmedError(f"{stage}: the autoencoder has no checkpoint yet (train it, or wait for the first "
                            "--checkpoint-every)")
    step, _, net = found
    return Autoencoder(net.to(resolve_device(device)), config, step=step, source=stage, data=info.get("data"))
