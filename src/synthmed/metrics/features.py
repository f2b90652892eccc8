"""Feature extractors for the fidelity metrics: ``[N, F]`` features (and class logits) from a Store.

Three feature spaces (:func:`make_extractor`):

``domain`` (default, offline)
    :class:`DomainEncoder`, a small convolutional encoder trained *self-supervised* on the
    real store's ``train`` split by :func:`train_domain_encoder` (through the training
    toolkit, :func:`synthmed.training.train`): a contrastive (SimCLR NT-Xent) loss between
    two random augmentations of each sample (flips, scaled/shifted crops, per-channel gain
    and offset, noise), plus a small classifier head predicting which tumour labels a
    sample contains (8 classes: the presence pattern of NCR, ED, ET) whose logits give the
    domain Inception Score. It sees all image channels at once (``F = 256``). It is saved
    beside the store, ``<store>-encoder/`` (a run directory: ``run.json``,
    ``checkpoints/``), and reused while it matches the store. Its training is a pure function
    of (store, config, ``config.seed``): initial weights, data order and augmentations all
    derive from the seed, so a retrained encoder is bit-identical on the CPU (on CUDA,
    reproducible up to the kernels' own non-determinism).
``radimagenet``
    ResNet-50 (MONAI ``resnet50``, 2D, torchvision key names) with RadImageNet weights from
    a user-given file (``.pt``/``.pth``/``.safetensors``), preprocessed like the MONAI
    generative tutorials: grey → 3 channels, RGB → BGR, minus the ImageNet mean
    ``(0.406, 0.456, 0.485)``, no resizing; features = global average of the last block
    (``F = 2048``). No classifier head (no IS).
``inception``
    The standard FID Inception-v3 (torch-fidelity's ``inception-v3-compat``) from a user-given
    weights file, pool features (``F = 2048``) and logits; needs ``torch-fidelity`` (and a
    working ``torchvision``): a clear error says so when it does not import.

**Channels.** ``domain`` takes all image channels jointly. The pretrained networks take
each image channel separately as a grey image and **average** the C feature vectors
(``channel_reduce="mean"``, ``F`` stays 2048) or concatenate them (``"concat"``,
``F = C · 2048``). The label is never used as an input.

**3D stores as 2.5D.** A volume ``[C, D, H, W]`` gives its three central orthogonal
planes (axial ``[C, H, W]``, coronal ``[C, D, W]``, sagittal ``[C, D, H]``), each resized to
the axial plane's size; the 2D extractor embeds each and the three vectors are
concatenated (``F`` × 3; logits are averaged).

Inputs are in ``[0, 1]`` as stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.data.store import Store
from synthmed.errors import SynthmedError

FEATURE_SPACES: tuple[str, ...] = ("domain", "radimagenet", "inception")
#: ImageNet channel means in BGR order, subtracted as in the MONAI tutorials' RadImageNet features.
RADIMAGENET_MEAN_BGR = (0.406, 0.456, 0.485)
#: Classes of the domain classifier head: presence pattern of labels (NCR, ED, ET) as a 3-bit number.
DOMAIN_CLASSES = 8


class FeatureExtractor(Protocol):
    """Maps a 2D batch ``[B, C, H, W]`` in [0, 1] to ``(features [B, F], logits [B, K] or None)``."""

    name: str

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


# ----------------------------------------------------------------------------- 2.5D and extraction


def orthogonal_planes(volumes: torch.Tensor) -> list[torch.Tensor]:
    """Central axial, coronal and sagittal planes of ``[B, C, D, H, W]``, each ``[B, C, H, W]``
    (coronal and sagittal resized bilinearly to the axial ``H × W``)."""
    _, _, d, h, w = volumes.shape
    axial = volumes[:, :, d // 2]
    coronal = volumes[:, :, :, h // 2]  # [B, C, D, W]
    sagittal = volumes[:, :, :, :, w // 2]  # [B, C, D, H]
    out = [axial]
    for plane in (coronal, sagittal):
        if plane.shape[2:] != (h, w):
            plane = F.interpolate(plane, size=(h, w), mode="bilinear", align_corners=False)
        out.append(plane)
    return out


@torch.no_grad()
def embed(extractor: FeatureExtractor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits) of a batch ``[B, C, H, W]`` or, as 2.5D, ``[B, C, D, H, W]``."""
    if images.ndim == 4:
        return extractor(images)
    parts = [extractor(plane) for plane in orthogonal_planes(images)]
    feats = torch.cat([p[0] for p in parts], dim=1)
    logits = None if parts[0][1] is None else torch.stack([p[1] for p in parts]).mean(0)
    return feats, logits


def extract_features(
    store: Store,
    extractor: FeatureExtractor,
    *,
    indices: np.ndarray | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Stream ``store`` (or its ``indices``) through ``extractor``.

    Returns:
        ``(features float64 [N, F], logits float64 [N, K] or None)``.
    """
    feats, logits = [], []
    for images, _, _ in store.iter_batches(batch_size, indices):
        f, lg = embed(extractor, torch.from_numpy(images).to(device))
        feats.append(f.double().cpu())
        if lg is not None:
            logits.append(lg.double().cpu())
    if not feats:
        return np.zeros((0, 0)), None
    return torch.cat(feats).numpy(), (torch.cat(logits).numpy() if logits else None)


# ----------------------------------------------------------------------------- pretrained networks


def _per_channel(images: torch.Tensor, net: nn.Module, prep: Any, reduce: str) -> torch.Tensor:
    feats = [net(prep(images[:, c : c + 1])) for c in range(images.shape[1])]
    return torch.stack(feats).mean(0) if reduce == "mean" else torch.cat(feats, dim=1)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SynthmedError(f"weights file {path} not found: download the weights once and pass their path with "
                            "--weights (synthmed never downloads at run time)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            from synthmed.training.checkpoint import torch_load_safely

            state = torch_load_safely(path)  # untrusted pickles refused, torch's advice never shown
    except SynthmedError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise SynthmedError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise SynthmedError(f"{path}: expected a state dict of tensors")
    return dict(state)


class RadImageNetExtractor(nn.Module):
    """RadImageNet ResNet-50 features (see the module docstring); ``weights``: the user's file."""

    name = "radimagenet"

    def __init__(self, weights: str | Path, *, channel_reduce: str = "mean"):
        super().__init__()
        from monai.networks.nets import resnet50

        self.channel_reduce = channel_reduce
        self.net = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, bias_downsample=False,
                            feed_forward=False).eval()
        path = Path(weights)
        state = {}
        for key, value in _read_state_dict(path).items():
            for prefix in ("module.", "backbone.", "model.", "encoder."):
                if key.startswith(prefix):
                    key = key[len(prefix):]
            if not key.startswith("fc."):
                state[key] = value
        try:
            missing, unexpected = self.net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise SynthmedError(f"{path}: not ResNet-50 weights with torchvision key names ({str(exc)[:300]})") from None
        if missing or unexpected:
            raise SynthmedError(f"{path}: not ResNet-50 weights with torchvision key names "
                                f"(missing {missing[:3]}…, unexpected {unexpected[:3]}…)")
        self.register_buffer("mean", torch.tensor(RADIMAGENET_MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def _prep(self, grey: torch.Tensor) -> torch.Tensor:
        rgb = grey.repeat(1, 3, 1, 1)
        return rgb[:, [2, 1, 0]] - self.mean

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return _per_channel(images, self.net, self._prep, self.channel_reduce), None


class InceptionExtractor(nn.Module):
    """FID Inception-v3 pool features and logits through torch-fidelity (see the module docstring)."""

    name = "inception"

    def __init__(self, weights: str | Path, *, channel_reduce: str = "mean"):
        super().__init__()
        path = Path(weights)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except Exception as exc:  # noqa: BLE001 - ImportError or a broken torchvision
            raise SynthmedError(
                "the inception features need torch-fidelity, which did not import "
                f"({type(exc).__name__}: {exc}); install it with `pip install torch-fidelity` together with a "
                "torchvision build matching your torch, or use --features domain or radimagenet") from None
        if not path.is_file():
            raise SynthmedError(f"weights file {path} not found: pass the FID Inception weights "
                                "(pt_inception-2015-12-05-6726825d.pth) with --weights")
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=str(path)).eval()
        self.channel_reduce = channel_reduce

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        feats, logits = [], []
        for c in range(images.shape[1]):
            rgb = (images[:, c : c + 1].clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
            f, lg = self.net(rgb)
            feats.append(f)
            logits.append(lg)
        f = torch.stack(feats).mean(0) if self.channel_reduce == "mean" else torch.cat(feats, dim=1)
        return f, torch.stack(logits).mean(0)


# ----------------------------------------------------------------------------- the domain encoder


@dataclass(frozen=True)
class DomainEncoderConfig:
    """Architecture and training of the domain encoder.

    Attributes:
        width: channels of the first level (doubled per level, at most 8×).
        feature_dim: ``F`` of the features.
        projection_dim: contrastive projection size.
        temperature: NT-Xent temperature.
        steps, batch, lr: training steps, batch per step, AdamW learning rate.
        seed: initial weights (:func:`~synthmed.training.seeding.seeded_init`), data order
            (:func:`~synthmed.training.batch_stream`) and augmentations (the loop's
            :class:`~synthmed.training.StepRandom`): nothing else is random.
    """

    width: int = 32
    feature_dim: int = 256
    projection_dim: int = 128
    temperature: float = 0.2
    steps: int = 500
    batch: int = 64
    lr: float = 1e-3
    seed: int = 0


class DomainEncoder(nn.Module):
    """Conv encoder ``[B, C, H, W] → features [B, F]`` with a projection and a classifier head.

    Levels of (3×3 stride-2 conv, GroupNorm, SiLU) halve the image down to about 4 pixels;
    global average pooling and a linear layer give ``F`` features.
    """

    def __init__(self, in_channels: int, image_size: int, config: DomainEncoderConfig = DomainEncoderConfig()):
        super().__init__()
        from monai.networks.blocks import Convolution

        levels = max(1, int(math.log2(max(image_size, 8) / 4)))
        layers, ch = [], in_channels
        for k in range(levels):
            out = config.width * 2 ** min(k, 3)
            layers.append(Convolution(2, ch, out, strides=2, kernel_size=3, act="SWISH",
                                      norm=("group", {"num_groups": min(8, out)})))
            ch = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch, config.feature_dim)
        self.projection = nn.Sequential(nn.Linear(config.feature_dim, config.feature_dim), nn.ReLU(),
                                        nn.Linear(config.feature_dim, config.projection_dim))
        self.classifier = nn.Linear(config.feature_dim, DOMAIN_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [B, F], class logits [B, 8])``."""
        f = self.features(x)
        return f, self.classifier(f)


class DomainExtractor(nn.Module):
    """A trained :class:`DomainEncoder` as a :class:`FeatureExtractor`."""

    name = "domain"

    def __init__(self, encoder: DomainEncoder):
        super().__init__()
        self.encoder = encoder.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return self.encoder(images)


def presence_class(labels: torch.Tensor) -> torch.Tensor:
    """Class of each label map ``[B, *spatial]``: bit 0 NCR (1), bit 1 ED (2), bit 2 ET (3) present."""
    flat = labels.reshape(len(labels), -1)
    return sum(((flat == k).any(dim=1).long() << (k - 1)) for k in (1, 2, 3))


def _augment(x: torch.Tensor, u: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One random view of ``x`` ``[B, C, H, W]``; ``u`` ``[B, 6 + 2C]`` uniforms, ``noise`` like ``x``."""
    b, c = x.shape[:2]
    scale = 0.6 + 0.4 * u[:, 0]
    flip_x = torch.where(u[:, 1] < 0.5, -1.0, 1.0)
    flip_y = torch.where(u[:, 2] < 0.5, -1.0, 1.0)
    tx, ty = (u[:, 3] - 0.5) * 2 * (1 - scale), (u[:, 4] - 0.5) * 2 * (1 - scale)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip_x, scale * flip_y
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = (0.7 + 0.6 * u[:, 6 : 6 + c]).view(b, c, 1, 1)
    shift = (0.2 * u[:, 6 + c : 6 + 2 * c] - 0.1).view(b, c, 1, 1)
    return v * gain + shift + 0.05 * u[:, 5].view(b, 1, 1, 1) * noise


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR NT-Xent loss of two views' projections ``[B, P]`` each."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class DomainEncoderTask:
    """Training task (protocol of :mod:`synthmed.training.loop`) of the domain encoder."""

    def __init__(self, in_channels: int, image_size: int, config: DomainEncoderConfig):
        from synthmed.training.seeding import seeded_init

        self.config = config
        with seeded_init(config.seed):  # the initial weights: a function of the seed, not of the global RNG
            self.encoder = DomainEncoder(in_channels, image_size, config)

    def setup(self, fabric: Any) -> None:
        self.opt = torch.optim.AdamW(self.encoder.parameters(), lr=self.config.lr, weight_decay=1e-4)
        self.model, self.opt = fabric.setup(self.encoder, self.opt)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        if images.ndim == 5:  # 2.5D: the three central planes of each volume are training samples
            images = torch.cat(orthogonal_planes(images))
            labels = torch.cat([p[:, 0] for p in orthogonal_planes(labels[:, None].float())]).round().to(torch.uint8)
        b, c = images.shape[:2]
        views = []
        for _ in range(2):
            u = ctx.random.rand((b, 6 + 2 * c)).to(images.device)
            noise = ctx.random.randn(tuple(images.shape)).to(images.device)
            views.append(_augment(images, u, noise))
        f1, logits1 = self.model(views[0])
        f2, _ = self.model(views[1])
        module = self.model.module if hasattr(self.model, "module") else self.model
        contrastive = nt_xent(module.projection(f1), module.projection(f2), self.config.temperature)
        classify = F.cross_entropy(logits1, presence_class(labels))
        loss = contrastive + classify
        self.opt.zero_grad(set_to_none=True)
        ctx.fabric.backward(loss)
        self.opt.step()
        return {"loss": loss.detach(), "contrastive": contrastive.detach(), "classify": classify.detach()}


def encoder_dir(store: Store | str | Path) -> Path:
    """Where the domain encoder of a store lives: ``<store>-encoder/`` beside it."""
    p = Path(store.path if isinstance(store, Store) else store)
    return p.with_name(p.name + "-encoder")


def _store_id(store: Store) -> dict:
    return {"store": str(Path(store.path).resolve()), "created": store.meta.get("created"),
            "sample_shape": list(store.sample_shape), "split": "train"}


def train_domain_encoder(
    store: Store,
    *,
    run_dir: str | Path | None = None,
    config: DomainEncoderConfig = DomainEncoderConfig(),
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> DomainEncoder:
    """The domain encoder of ``store``: loaded from ``run_dir`` (default :func:`encoder_dir`)
    when it was trained on this store with this config to ``config.steps``, else trained
    (or resumed) on the store's ``train`` split.

    Raises:
        SynthmedError: ``run_dir`` holds an encoder of another store or config (pass
            ``overwrite``), or the store has no ``train`` split.
    """
    from synthmed.training import FabricOptions, LoopOptions, batch_stream, make_fabric, open_run, train
    from synthmed.training.checkpoint import latest_checkpoint, load_latest, load_weights
    from synthmed.training.run import read_run

    from synthmed.outputs import guard_output, run_directory

    run_dir = Path(run_dir) if run_dir is not None else encoder_dir(store)
    # an encoder folder is reused or resumed when it exists; --overwrite replaces only a run directory
    guard_output(run_dir, [store.path], kind=run_directory("domain encoder", ["domain-encoder"]), overwrite=overwrite,
                 resume=not overwrite)
    data, model_cfg = _store_id(store), asdict(config)
    channels, size = store.sample_shape[0], store.sample_shape[-1]
    resume = False
    if run_dir.exists() and not overwrite:
        saved = read_run(run_dir)
        if saved.get("data") != data or saved.get("model") != model_cfg:
            raise SynthmedError(f"{run_dir} holds a domain encoder of another store or configuration; "
                                "pass --overwrite to retrain it")
        found = latest_checkpoint(run_dir)
        if found is not None and found[0] >= config.steps:

            def read(folder: Path) -> DomainEncoder:
                encoder = DomainEncoder(channels, size, config)
                load_weights(encoder, folder / "model.safetensors")
                return encoder

            loaded = load_latest(run_dir, read)  # a damaged one: the previous kept one, with a warning
            if loaded is not None and loaded[0] >= config.steps:
                return loaded[2].eval()
        resume = True
    dataset = store.dataset(split="train")
    fabric = make_fabric(FabricOptions(device=device, precision="32"))  # type: ignore[arg-type]
    run = open_run(run_dir, kind="domain-encoder", model=model_cfg, training={"steps": config.steps}, seed=config.seed,
                   data=data, resume=resume, overwrite=overwrite)
    task = DomainEncoderTask(channels, size, config)

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batch_stream(dataset, min(config.batch, len(dataset)), seed=config.seed, start_step=start)

    train(task, fabric, run, batches, LoopOptions(steps=config.steps, checkpoint_every=max(1, config.steps),
                                                   log_every=10, progress=progress, description="domain encoder"))
    return task.encoder.cpu().eval()


def make_extractor(
    kind: str,
    *,
    real: Store | None = None,
    weights: str | Path | None = None,
    encoder_config: DomainEncoderConfig = DomainEncoderConfig(),
    encoder_dir_: str | Path | None = None,
    channel_reduce: str = "mean",
    device: str = "auto",
    progress: bool = True,
) -> FeatureExtractor:
    """An extractor by name (:data:`FEATURE_SPACES`).

    ``domain`` needs the real store ``real`` (its encoder is loaded or trained; ``weights``
    may name an encoder run directory instead); ``radimagenet`` and ``inception`` need
    ``weights``.

    Raises:
        SynthmedError: unknown kind, missing weights file, unusable weights or packages.
    """
    if channel_reduce not in ("mean", "concat"):
        raise SynthmedError(f"channel_reduce must be mean or concat, got {channel_reduce!r}")
    if kind == "domain":
        if real is None:
            raise SynthmedError("the domain features need the real store its encoder is trained on")
        run_dir = encoder_dir_ if encoder_dir_ is not None else weights
        return DomainExtractor(train_domain_encoder(real, run_dir=run_dir, config=encoder_config, device=device,
                                                    progress=progress))
    if kind in ("radimagenet", "inception"):
        if weights is None:
            what = "RadImageNet ResNet-50 weights" if kind == "radimagenet" else "FID Inception weights"
            raise SynthmedError(f"--features {kind} needs --weights PATH: the {what} file (nothing is downloaded)")
        cls = RadImageNetExtractor if kind == "radimagenet" else InceptionExtractor
        return cls(weights, channel_reduce=channel_reduce)
    raise SynthmedError(f"--features must be one of {', '.join(FEATURE_SPACES)}, got {kind!r}")


def describe(extractor: FeatureExtractor) -> dict:
    """JSON-able description of an extractor for results files."""
    out: dict[str, Any] = {"features": extractor.name}
    if isinstance(extractor, (RadImageNetExtractor, InceptionExtractor)):
        out["channel_reduce"] = extractor.channel_reduce
    return json.loads(json.dumps(out))
