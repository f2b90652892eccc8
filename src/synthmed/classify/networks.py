"""Classifier networks: MONAI ResNet-18/50 or DenseNet-121, 2D or 3D, from scratch, returning logits ``[B, K]``.

:func:`build_classifier` maps an input ``[B, in_channels, *spatial]`` (``spatial_dims`` 2 or
3) to logits ``[B, num_outputs]``. Options:

- ``stem="standard"``: the ImageNet stem, a 7×7(×7) stride-2 convolution and a 3×3(×3)
  stride-2 max-pool (spatial size / 4 before the first block); ``"compact"``: a 3×3(×3)
  stride-1 convolution without max-pool (size kept), for 16–64 px inputs. The feature map at
  :func:`gradcam_layer` is 1/32 of the input side with the standard stem, 1/8 with the compact
  one (rounded up; DenseNet's pooling rounds down).
- ``width`` scales every channel count: a channel count ``c`` becomes ``int(c × width)``
  (MONAI ResNet's ``widen_factor``; DenseNet's ``init_features`` 64 and ``growth_rate`` 32,
  the growth rate at least 1), and must leave the 64-channel stem at least 1 channel (``width ≥ 1/64``).
- ``dual_bn``: every batch norm split into a clean and an adversarial branch
  (:mod:`synthmed.classify.dual_bn`).
- ``weights``: a ``.safetensors`` file loaded strictly. A file with single batch norms is
  loaded before a dual batch norm conversion (both branches start as its batch norms); a
  file with dual batch norms (keys ``<name>.clean.*`` / ``<name>.adversarial.*``) after it.

Nothing is downloaded: MONAI's pretrained weights are never requested.
"""

from __future__ import annotations

import math
from pathlib import Path

from monai.networks.nets import DenseNet121, ResNet, resnet18, resnet50
from monai.networks.nets.densenet import DenseNet
from torch import nn

from synthmed.classify.config import ClassifierModelConfig
from synthmed.classify.dual_bn import ROUTES, to_dual_bn
from synthmed.classify.names import NETWORKS, STEMS
from synthmed.errors import SynthmedError
from synthmed.training.checkpoint import CorruptCheckpointError, load_weights
from synthmed.training.fabric import unwrap

#: The smallest ``width``: it leaves the 64-channel stem 1 channel.
MIN_WIDTH = 1 / 64


def build_classifier(
    network: str,
    *,
    spatial_dims: int,
    in_channels: int,
    num_outputs: int,
    stem: Stem = "standard",
    width: float = 1.0,
    dual_bn: bool = False,
    weights: str | Path | None = None,
) -> nn.Module:
    """The classifier ``network``: ``[B, in_channels, *spatial]`` → logits ``[B, num_outputs]``.

    Initialised by MONAI from the global torch RNG (so ``torch.manual_seed`` fixes it), then
    loaded from ``weights`` if given. See the module docstring for ``stem``, ``width``,
    ``dual_bn`` and ``weights``. ResNets take any input size; DenseNet-121 needs sides of at
    least 32 px with the standard stem and 8 px with the compact one (its three transitions
    halve the map).

    Raises:
        SynthmedError: an unknown ``network`` (naming ``--model``), ``stem`` (``--stem``), a
            bad ``width`` (``--width``), ``spatial_dims``, ``in_channels`` or ``num_outputs``;
            a ``weights`` file that is missing, damaged or does not fit (naming the file).
    """
    if network not in NETWORKS:
        raise SynthmedError(f"--model must be one of {', '.join(NETWORKS)}, got {network!r}")
    if stem not in STEMS:
        raise SynthmedError(f"--stem must be one of {', '.join(STEMS)}, got {stem!r}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width < MIN_WIDTH:
        raise SynthmedError(f"--width must be a number ≥ 1/64 (it leaves the 64-channel stem at least 1 channel), "
                            f"got {width!r}")
    for name, value, allowed in (("spatial_dims", spatial_dims, "2 or 3"), ("in_channels", in_channels, "≥ 1"),
                                 ("num_outputs", num_outputs, "≥ 1")):
        ok = isinstance(value, int) and not isinstance(value, bool) and (value in (2, 3) if name == "spatial_dims"
                                                                         else value >= 1)
        if not ok:
            raise SynthmedError(f"{name} must be {allowed}, got {value!r}")

    compact = stem == "compact"
    model: nn.Module
    if network in ("resnet18", "resnet50"):
        factory = resnet18 if network == "resnet18" else resnet50
        model = factory(spatial_dims=spatial_dims, n_input_channels=in_channels, num_classes=num_outputs,
                        widen_factor=float(width), conv1_t_size=3 if compact else 7,
                        conv1_t_stride=1 if compact else 2, no_max_pool=compact)
    else:
        model = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_outputs,
                            init_features=int(64 * width), growth_rate=max(1, int(32 * width)))
        if compact:
            _compact_densenet_stem(model, in_channels)

    if weights is None:
        return to_dual_bn(model) if dual_bn else model
    path = Path(weights)
    file_dual = _holds_dual_bn(path)
    if file_dual and not dual_bn:
        raise SynthmedError(f"{path}: weights of a dual batch norm network (keys <name>.clean.* and "
                            f"<name>.adversarial.*); build the network with dual batch norm to load them")
    if dual_bn and file_dual:
        to_dual_bn(model)
    load_weights(model, path)
    if dual_bn and not file_dual:
        to_dual_bn(model)
    return model


def classifier_for(config: ClassifierModelConfig, weights: str | Path | None = None) -> nn.Module:
    """The untrained network of a run's ``config`` (dual BN for mode ``dual-bn``), optionally from ``weights``."""
    return build_classifier(config.network, spatial_dims=config.spatial_dims, in_channels=config.in_channels,
                            num_outputs=config.num_outputs, stem=config.stem, width=config.width,
                            dual_bn=config.dual_bn, weights=weights)


def _compact_densenet_stem(model: DenseNet, in_channels: int) -> None:
    """Replace DenseNet's 7×7 stride-2 ``conv0`` by a 3×3 stride-1 one (MONAI's init) and drop ``pool0``."""
    features = model.features
    old = features.conv0
    conv = type(old)(in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    features.conv0 = conv  # same place in the Sequential: keys and order unchanged
    features.pool0 = nn.Identity()


def _holds_dual_bn(path: Path) -> bool:
    """Whether the safetensors file ``path`` holds dual batch norms (a key ``….clean.x`` or ``….adversarial.x``)."""
    from safetensors import safe_open

    if not path.is_file():
        raise CorruptCheckpointError(f"{path}: weights file missing")
    try:
        with safe_open(str(path), framework="pt") as file:
            keys = list(file.keys())
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, …
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CorruptCheckpointError(f"{path}: corrupt or truncated weights file ({first})") from None
    return any(len(parts) >= 3 and parts[-2] in ROUTES for parts in (k.split(".") for k in keys))


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The layer whose output Grad-CAM weights: the last feature map of a :func:`build_classifier` network.

    ResNet: ``layer4`` (the last residual stage, ending in its ReLU). DenseNet: ``class_layers.relu``,
    the ReLU of ``features.norm5`` that closes the last dense block (MONAI applies it in
    ``class_layers``, in place; Captum hooks it fine as it keeps a copy of the output). In both
    the output is the rectified feature map ``A`` ``[B, C, *spatial / 32]`` (standard stem) or
    ``/ 8`` (compact) that the head averages and feeds to its linear layer, so Captum's
    ``LayerGradCam`` on it gives CAM exactly: ``Σ_c W[k, c] A_c / |spatial|`` for output ``k``
    (positive and negative evidence; ``relu_attributions=True`` keeps the positive). The layer
    is the same with dual batch norm (the map then comes from the routed branch).
    Wrappers (Fabric, DDP) are looked through.

    Raises:
        SynthmedError: ``model`` is neither a MONAI ResNet nor a DenseNet.
    """
    inner = unwrap(model)
    if isinstance(inner, ResNet):
        return inner.layer4
    if isinstance(inner, DenseNet):
        return inner.class_layers.relu
    raise SynthmedError(f"no Grad-CAM layer known for a {type(inner).__name__} (not a classifier of {', '.join(NETWORKS)})")
