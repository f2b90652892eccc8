"""Classifier networks: logits shapes, stems, width, Grad-CAM layer, weights round trips, refusals, determinism."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from captum.attr import LayerGradCam
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from synthmed.classify.dual_bn import ROUTES, DualBatchNorm, Route, bn_route, is_dual_bn
from synthmed.classify.networks import NETWORKS, build_classifier, gradcam_layer
from synthmed.errors import SynthmedError
from synthmed.training.checkpoint import save_weights

W = 1 / 16  # tiny networks: stems of 4 channels


def build(network: str, dims: int = 2, **kwargs: object) -> nn.Module:
    options: dict = {"spatial_dims": dims, "in_channels": 4, "num_outputs": 3, "stem": "compact", "width": W}
    options.update(kwargs)
    return build_classifier(network, **options)


def gradcam_shape(model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    shapes: list[tuple[int, ...]] = []
    handle = gradcam_layer(model).register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        model(x)
    handle.remove()
    assert len(shapes) == 1
    return shapes[0]


def perturb(model: nn.Module, route: Route = "clean", scale: float = 1.0) -> None:
    """Move the batch norms of ``route`` away from their init: statistics (a train-mode forward) and affine parameters."""
    model.train()
    with torch.no_grad(), bn_route(route):
        model(scale * torch.rand(2, 4, 32, 32) + 0.5)
        norms = ([m.branch(route) for m in model.modules() if isinstance(m, DualBatchNorm)] if is_dual_bn(model)
                 else [m for m in model.modules() if isinstance(m, _BatchNorm)])
        assert norms
        for norm in norms:
            norm.weight.add_(0.1 * scale)
            norm.bias.sub_(0.1 * scale)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("dims,side", [(2, 32), (3, 16)])
def test_logits_shape_compact(network: str, dims: int, side: int) -> None:
    torch.manual_seed(0)
    model = build(network, dims)
    x = torch.rand(2, 4, *(side,) * dims)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        with torch.no_grad():
            y = model(x)
        assert y.shape == (2, 3) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert gradcam_shape(model, x)[2:] == (side // 8,) * dims


@pytest.mark.parametrize("network", NETWORKS)
def test_compact_stem_keeps_more_resolution(network: str) -> None:
    x = torch.rand(2, 4, 32, 32)
    standard = build(network, stem="standard").eval()
    compact = build(network, stem="compact").eval()
    s, c = gradcam_shape(standard, x), gradcam_shape(compact, x)
    assert s[:2] == c[:2] == (2, s[1])
    assert s[2:] == (1, 1) and c[2:] == (4, 4)  # 32 / 32 and 32 / 8
    stem_conv = compact.conv1 if network.startswith("resnet") else compact.features.conv0
    standard_conv = standard.conv1 if network.startswith("resnet") else standard.features.conv0
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert standard_conv.kernel_size == (7, 7) and standard_conv.stride == (2, 2)


def test_width_scales_channels() -> None:
    resnet = build_classifier("resnet18", spatial_dims=2, in_channels=4, num_outputs=1, width=0.25)
    assert resnet.conv1.out_channels == 16 and resnet.fc.in_features == 128
    resnet50 = build_classifier("resnet50", spatial_dims=2, in_channels=4, num_outputs=1, width=0.25)
    assert resnet50.conv1.out_channels == 16 and resnet50.fc.in_features == 512  # 128 × expansion 4
    dense = build_classifier("densenet121", spatial_dims=3, in_channels=4, num_outputs=1, width=0.25)
    assert dense.features.conv0.out_channels == 16
    assert dense.features.denseblock1.denselayer1.layers.conv2.out_channels == 8  # growth rate 32 / 4
    tiny = build_classifier("densenet121", spatial_dims=2, in_channels=4, num_outputs=1, width=1 / 64)
    assert tiny.features.conv0.out_channels == 1
    assert tiny.features.denseblock1.denselayer1.layers.conv2.out_channels == 1  # int(0.5), kept at 1


@pytest.mark.parametrize("network", ["resnet18", "densenet121"])
def test_gradcam_layer_gives_cam(network: str) -> None:
    """Grad-CAM at the chosen layer equals CAM from the head: Σ_c W[k, c] A_c / |spatial| with A the layer's output."""
    torch.manual_seed(1)
    model = build(network, dual_bn=True).eval()
    x = torch.rand(2, 4, 32, 32)
    cam = LayerGradCam(model, gradcam_layer(model)).attribute(x, target=2)
    assert cam.shape == (2, 1, 4, 4)
    feats: list[torch.Tensor] = []
    handle = gradcam_layer(model).register_forward_hook(lambda m, i, o: feats.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    head = model.fc if network == "resnet18" else model.class_layers.out
    expected = (head.weight[2][None, :, None, None] * feats[0]).sum(1, keepdim=True) / 16
    assert (feats[0] >= 0).all()  # rectified features
    torch.testing.assert_close(cam.detach(), expected, atol=1e-6, rtol=1e-5)


def test_weights_single_to_dual(tmp_path: Path) -> None:
    torch.manual_seed(2)
    plain = build("resnet18")
    perturb(plain)
    save_weights(plain, tmp_path / "single.safetensors")
    torch.manual_seed(99)
    dual = build("resnet18", dual_bn=True, weights=tmp_path / "single.safetensors")
    assert is_dual_bn(dual) and not is_dual_bn(plain)
    expected = plain.state_dict()
    for name, m in dual.named_modules():
        if isinstance(m, DualBatchNorm):
            for route in ROUTES:
                for key, value in m.branch(route).state_dict().items():
                    assert torch.equal(value, expected[f"{name}.{key}"]), (name, route, key)
    plain.eval()
    dual.eval()
    x = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        for route in ROUTES:
            with bn_route(route):
                assert torch.equal(dual(x), plain(x))


@pytest.mark.parametrize("network", ["resnet50", "densenet121"])
def test_weights_dual_to_dual(tmp_path: Path, network: str) -> None:
    torch.manual_seed(3)
    trained = build(network, dual_bn=True)
    perturb(trained, "clean")
    perturb(trained, "adversarial", scale=2.0)
    save_weights(trained, tmp_path / "dual.safetensors")
    torch.manual_seed(98)
    loaded = build(network, dual_bn=True, weights=str(tmp_path / "dual.safetensors"))
    a, b = trained.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    norms = [k for k in a if k.endswith("running_mean")]
    clean = [k for k in norms if ".clean." in k]
    assert clean and all(not torch.equal(a[k], a[k.replace(".clean.", ".adversarial.")]) for k in clean)
    with pytest.raises(SynthmedError, match=r"dual\.safetensors: weights of a dual batch norm network"):
        build(network, weights=tmp_path / "dual.safetensors")


def test_mismatched_or_damaged_weights_name_the_file(tmp_path: Path) -> None:
    save_weights(build("resnet18"), tmp_path / "r18.safetensors")
    file = tmp_path / "r18.safetensors"
    with pytest.raises(SynthmedError, match=rf"{re.escape(str(file))}: weights do not fit the model"):
        build("densenet121", weights=file)
    with pytest.raises(SynthmedError, match=rf"{re.escape(str(file))}: weights do not fit the model"):
        build("resnet18", width=2 * W, weights=file)
    with pytest.raises(SynthmedError, match=rf"{re.escape(str(file))}: weights do not fit the model"):
        build("resnet18", num_outputs=1, dual_bn=True, weights=file)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(SynthmedError, match=rf"{re.escape(str(tmp_path / 'bad.safetensors'))}: corrupt or truncated"):
        build("resnet18", weights=tmp_path / "bad.safetensors")
    with pytest.raises(SynthmedError, match=rf"{re.escape(str(tmp_path / 'missing.safetensors'))}: weights file missing"):
        build("resnet18", weights=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("kwargs,message", [
    ({"network": "vgg16"}, "--model must be one of resnet18, resnet50, densenet121, got 'vgg16'"),
    ({"stem": "tiny"}, "--stem must be one of standard, compact, got 'tiny'"),
    ({"width": 0.0}, "--width must be a number ≥ 1/64"),
    ({"width": 0.01}, "--width must be a number ≥ 1/64"),
    ({"width": float("nan")}, "--width must be a number ≥ 1/64"),
    ({"width": True}, "--width must be a number ≥ 1/64"),
    ({"spatial_dims": 1}, "spatial_dims must be 2 or 3, got 1"),
    ({"in_channels": 0}, "in_channels must be ≥ 1, got 0"),
    ({"num_outputs": 2.0}, "num_outputs must be ≥ 1, got 2.0"),
])
def test_bad_options_refused(kwargs: dict, message: str) -> None:
    options: dict = {"network": "resnet18", "spatial_dims": 2, "in_channels": 4, "num_outputs": 3}
    options.update(kwargs)
    network = options.pop("network")
    with pytest.raises(SynthmedError, match=message.replace("(", r"\(")):
        build_classifier(network, **options)


def test_gradcam_layer_refuses_other_modules() -> None:
    with pytest.raises(SynthmedError, match="no Grad-CAM layer known for a Sequential"):
        gradcam_layer(nn.Sequential(nn.Conv2d(1, 1, 3)))


@pytest.mark.parametrize("network", NETWORKS)
def test_build_is_deterministic_under_seed(network: str) -> None:
    def state(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build(network, dual_bn=True).state_dict()

    a, b, c = state(5), state(5), state(6)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
