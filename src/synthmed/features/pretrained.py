"""The pretrained feature networks, RadImageNet ResNet-50 and FID Inception-v3, loaded from the user's weight files.

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

**Channels.** Each image channel goes through the network separately as a grey image and the
C feature vectors are **averaged** (``channel_reduce="mean"``, ``F`` stays 2048) or
concatenated (``"concat"``, ``F = C · 2048``). The label is never used as an input. Nothing is
downloaded: a missing file is a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synthmed.errors import SynthmedError

#: ImageNet channel means in BGR order, subtracted as in the MONAI tutorials' RadImageNet features.
RADIMAGENET_MEAN_BGR = (0.406, 0.456, 0.485)


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
