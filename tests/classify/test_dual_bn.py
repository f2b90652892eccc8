"""Dual batch norm: routing, separate statistics and parameters, exact conversion, state dicts, MONAI networks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from monai.networks.nets import resnet18
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from synthmed.classify.dual_bn import ROUTES, DualBatchNorm, bn_route, current_route, is_dual_bn, to_dual_bn
from synthmed.errors import SynthmedError
from synthmed.training.checkpoint import load_weights, save_weights


def small_net() -> nn.Module:
    """Conv → BN → ReLU → (nested) conv → BN, with a BN in a ModuleDict-held block too."""
    torch.manual_seed(0)
    inner = nn.ModuleDict({"conv": nn.Conv2d(3, 3, 3, padding=1), "bn": nn.BatchNorm2d(3)})

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner["bn"](self.inner["conv"](self.stem(x)))

    return Net()


def branch_state(bn: _BatchNorm) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in bn.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def plain_batch_norms(module: nn.Module) -> list[str]:
    """Names of batch norms not inside a DualBatchNorm."""
    inside = {id(b) for m in module.modules() if isinstance(m, DualBatchNorm) for b in (m.clean, m.adversarial)}
    return [n for n, m in module.named_modules() if isinstance(m, _BatchNorm) and id(m) not in inside]


def test_routes_and_default() -> None:
    assert ROUTES == ("clean", "adversarial")
    assert current_route() == "clean"


def test_nesting_and_restore_on_exception() -> None:
    with bn_route("adversarial"):
        assert current_route() == "adversarial"
        with bn_route("clean"):
            assert current_route() == "clean"
            with bn_route("adversarial"):
                assert current_route() == "adversarial"
            assert current_route() == "clean"
        assert current_route() == "adversarial"
    assert current_route() == "clean"
    with pytest.raises(KeyError):
        with bn_route("adversarial"):
            raise KeyError("boom")
    assert current_route() == "clean"


def test_bad_route_refused_at_call() -> None:
    with pytest.raises(SynthmedError, match="route must be one of clean, adversarial, got 'adv'"):
        bn_route("adv")  # type: ignore[arg-type]
    assert current_route() == "clean"


def test_routed_train_forward_updates_only_its_branch() -> None:
    net = to_dual_bn(small_net()).train()
    dual = net.stem[1]
    assert isinstance(dual, DualBatchNorm)
    torch.manual_seed(1)
    x = torch.randn(2, 2, 8, 8)
    before = {r: branch_state(dual.branch(r)) for r in ROUTES}
    with torch.no_grad():
        pre = net.stem[0](x)  # what the first batch norm sees
        net(x)  # clean (the default route)
    assert_same_state(branch_state(dual.adversarial), before["adversarial"])
    assert int(dual.clean.num_batches_tracked) == 1
    # independent reference: running_mean = (1 - momentum) * 0 + momentum * batch mean
    torch.testing.assert_close(dual.clean.running_mean, 0.1 * pre.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(dual.clean.running_var, 0.9 + 0.1 * pre.var(dim=(0, 2, 3), unbiased=True))

    after_clean = branch_state(dual.clean)
    with torch.no_grad(), bn_route("adversarial"):
        net(x)
        net(x)
    assert_same_state(branch_state(dual.clean), after_clean)
    assert int(dual.adversarial.num_batches_tracked) == 2
    assert not torch.equal(dual.adversarial.running_mean, before["adversarial"]["running_mean"])
    inner = net.inner["bn"]
    assert isinstance(inner, DualBatchNorm)
    assert int(inner.clean.num_batches_tracked) == 1 and int(inner.adversarial.num_batches_tracked) == 2


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_conversion_preserves_outputs_exactly(mode: str) -> None:
    torch.manual_seed(2)
    original = resnet18(spatial_dims=2, n_input_channels=4, num_classes=1, widen_factor=0.25)
    with torch.no_grad():  # non-trivial statistics and affine parameters
        for m in original.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    converted = to_dual_bn(copy.deepcopy(original))
    getattr(original, mode)()
    getattr(converted, mode)()
    x = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        expected = original(x)
        got_clean = converted(x)
        with bn_route("adversarial"):
            got_adv = converted(x)
    assert torch.equal(got_clean, expected)
    assert torch.equal(got_adv, expected)
    if mode == "train":  # each branch moved exactly as the original's one batch norm did
        for name, m in original.named_modules():
            if isinstance(m, _BatchNorm):
                dual = converted.get_submodule(name)
                for route in ROUTES:
                    assert_same_state(branch_state(dual.branch(route)), branch_state(m))


def test_branches_are_copies_of_the_original_settings() -> None:
    bn = nn.BatchNorm3d(5, eps=1e-3, momentum=0.3, track_running_stats=True)
    with torch.no_grad():
        bn.running_mean.fill_(0.25)
        bn.weight.fill_(2.0)
        bn.num_batches_tracked.fill_(4)
    dual = DualBatchNorm(bn)
    for route in ROUTES:
        b = dual.branch(route)
        assert type(b) is nn.BatchNorm3d and b is not bn
        assert (b.eps, b.momentum, b.affine, b.track_running_stats) == (1e-3, 0.3, True, True)
        assert_same_state(branch_state(b), branch_state(bn))
    assert dual.clean.weight is not dual.adversarial.weight
    assert dual.clean.running_mean.data_ptr() != dual.adversarial.running_mean.data_ptr()
    with pytest.raises(SynthmedError, match="needs a batch norm module, got InstanceNorm2d"):
        DualBatchNorm(nn.InstanceNorm2d(3))  # type: ignore[arg-type]


def test_gradients_flow_only_into_routed_branch() -> None:
    net = to_dual_bn(small_net()).train()
    x = torch.randn(2, 2, 8, 8)
    with bn_route("adversarial"):
        net(x).square().sum().backward()
    duals = [m for m in net.modules() if isinstance(m, DualBatchNorm)]
    assert len(duals) == 2
    for dual in duals:
        assert dual.clean.weight.grad is None and dual.clean.bias.grad is None
        assert dual.adversarial.weight.grad is not None and dual.adversarial.weight.grad.abs().sum() > 0
    assert net.stem[0].weight.grad is not None  # shared convolution
    net.zero_grad(set_to_none=True)
    net(x).square().sum().backward()
    for dual in duals:
        assert dual.adversarial.weight.grad is None
        assert dual.clean.weight.grad is not None and dual.clean.bias.grad.abs().sum() > 0


def test_state_dict_round_trip_into_fresh_network(tmp_path: Path) -> None:
    net = to_dual_bn(small_net()).train()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        net(x)
        with bn_route("adversarial"):
            net(2 * x + 1)
        for m in net.modules():
            if isinstance(m, DualBatchNorm):
                m.adversarial.weight.mul_(3.0)
    keys = set(net.state_dict())
    assert {"stem.1.clean.running_mean", "stem.1.adversarial.running_mean", "stem.1.clean.num_batches_tracked",
            "inner.bn.adversarial.weight", "inner.bn.clean.bias"} <= keys
    assert not any(k.startswith("stem.1.running") or k.startswith("stem.1.weight") for k in keys)
    save_weights(net, tmp_path / "m.safetensors")

    torch.manual_seed(123)  # a different initialisation
    fresh = to_dual_bn(small_net())
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    load_weights(fresh, tmp_path / "m.safetensors")
    assert_same_state(fresh.state_dict(), net.state_dict())
    net.eval()
    fresh.eval()
    with torch.no_grad():
        for route in ROUTES:
            with bn_route(route):
                assert torch.equal(fresh(x), net(x))
        clean, adv = net(x), None
        with bn_route("adversarial"):
            adv = net(x)
    assert not torch.equal(clean, adv)  # the branches differ after training apart


def test_nested_shared_and_idempotent() -> None:
    shared = nn.BatchNorm1d(4)
    net = nn.Sequential(nn.Linear(3, 4), shared, nn.Sequential(nn.ModuleList([nn.Linear(4, 4), shared])),
                        nn.ModuleDict({"a": nn.Sequential(nn.BatchNorm1d(4))}), nn.LayerNorm(4))
    assert not is_dual_bn(net)
    out = to_dual_bn(net)
    assert out is net and is_dual_bn(net)
    assert plain_batch_norms(net) == []
    assert isinstance(net[1], DualBatchNorm) and net[2][0][1] is net[1]  # still shared
    assert isinstance(net[3]["a"][0], DualBatchNorm)
    assert isinstance(net[4], nn.LayerNorm)
    keys = list(net.state_dict())
    to_dual_bn(net)
    assert list(net.state_dict()) == keys  # converting again changes nothing
    assert not any(".clean.clean." in k for k in keys)
    twice = nn.BatchNorm1d(4)
    same_parent = to_dual_bn(nn.Sequential(twice, nn.ReLU(), twice))  # registered twice in one parent
    assert isinstance(same_parent[0], DualBatchNorm) and same_parent[2] is same_parent[0]


def test_root_batch_norm_and_sync_batch_norm() -> None:
    root = nn.BatchNorm2d(3)
    dual = to_dual_bn(root)
    assert isinstance(dual, DualBatchNorm) and to_dual_bn(dual) is dual
    sync = DualBatchNorm(nn.SyncBatchNorm(3)).eval()
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(sync(x), x / torch.sqrt(torch.tensor(1.0 + 1e-5)))


@pytest.mark.parametrize("dims,side,widen", [(2, 32, 1.0), (3, 16, 0.125)])
def test_monai_resnet(dims: int, side: int, widen: float) -> None:
    torch.manual_seed(3)
    net = resnet18(spatial_dims=dims, n_input_channels=4, num_classes=1, widen_factor=widen)
    n_bn = sum(isinstance(m, _BatchNorm) for m in net.modules())
    reference = copy.deepcopy(net).eval()
    to_dual_bn(net)
    assert sum(isinstance(m, DualBatchNorm) for m in net.modules()) == n_bn > 0
    assert plain_batch_norms(net) == []
    assert sum(k.endswith(".clean.running_mean") for k in net.state_dict()) == n_bn
    assert sum(k.endswith(".adversarial.running_mean") for k in net.state_dict()) == n_bn
    x = torch.rand(2, 4, *(side,) * dims)
    net.train()
    with bn_route("adversarial"):
        out = net(x)
    assert out.shape == (2, 1)
    out.sum().backward()
    assert net.bn1.clean.weight.grad is None and net.bn1.adversarial.weight.grad is not None
    assert int(net.bn1.clean.num_batches_tracked) == 0 and int(net.bn1.adversarial.num_batches_tracked) == 1
    net.eval()
    with torch.no_grad():  # the clean branch has not moved: still the original network
        assert torch.equal(net(x), reference(x))
