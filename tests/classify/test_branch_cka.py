"""CKA of a dual-BN network's activations through its two batch norms: copies give 1, a trained run stays in
[0, 1] with one value per dual BN, forward order, the CLI and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cli_inprocess import invoke as cli
from synthmed.classify.api import train_classifier
from synthmed.classify.attacks import AttackSpec
from synthmed.classify.branches import COMPARISONS, branch_similarity, compare_branches, dual_bn_layers
from synthmed.classify.dual_bn import DualBatchNorm, bn_route, to_dual_bn
from synthmed.classify.networks import build_classifier
from synthmed.errors import SynthmedError
from synthmed.metrics import linear_cka
from synthmed.training.fabric import FabricOptions

ATTACK = AttackSpec(eps=0.03, alpha=0.015, steps=2)


@pytest.fixture(scope="module")
def runs(presence2d, tmp_path_factory):
    """A tiny dual-bn and a tiny standard run on ``presence2d`` (4 steps each)."""
    base = tmp_path_factory.mktemp("cka")
    for mode in ("dual-bn", "standard"):
        assert train_classifier(base / mode, [presence2d.path], mode=mode, train_overrides={"steps": 4, "batch": 4},
                                fabric=FabricOptions(device="cpu"), progress=False) == 4
    return base


def tiny_network(dual: bool) -> nn.Module:
    torch.manual_seed(0)
    net = build_classifier("resnet18", spatial_dims=2, in_channels=4, num_outputs=1, stem="compact", width=0.125)
    net.train()
    with torch.no_grad():  # running statistics that vary over channels
        for _ in range(3):
            net(torch.rand(8, 4, 16, 16) * torch.rand(1, 4, 1, 1))
    return to_dual_bn(net) if dual else net


def images_and_targets(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 4, 16, 16, generator=g), (torch.arange(n) % 2).float()[:, None]


def test_branches_that_are_copies_give_cka_one_at_every_layer():
    net = tiny_network(dual=True)
    images, targets = images_and_targets()
    result = branch_similarity(net, images, targets, attack=ATTACK, seed=0, batch=5)
    count = sum(isinstance(m, DualBatchNorm) for m in net.modules())
    assert count == 20 and len(result["layers"]) == count and result["adversarial"]
    assert sorted(result["comparisons"]) == sorted(COMPARISONS)
    for key in ("routes_on_clean", "routes_on_adversarial"):
        assert result["comparisons"][key]["cka"] == pytest.approx([1.0] * count, abs=1e-10), key
    moved = result["comparisons"]["inputs_on_clean_bn"]["cka"]
    assert all(0 <= v <= 1 for v in moved) and min(moved) < 1 - 1e-4  # the attack moves the representation
    assert result["comparisons"]["inputs_on_adversarial_bn"]["cka"] == pytest.approx(moved, abs=1e-10)
    matrix = np.asarray(result["matrix"])
    assert matrix.shape == (count, count) and np.allclose(np.diag(matrix), 1.0, atol=1e-10)
    for layer in result["layers"]:
        assert layer["statistics"] == {"mean_correlation": pytest.approx(1.0), "mean_shift": 0.0, "std_ratio": 1.0}


def test_per_layer_values_are_the_metric_on_the_layer_outputs():
    net = tiny_network(dual=True)
    with torch.no_grad():  # pull the adversarial branches apart
        for m in net.modules():
            if isinstance(m, DualBatchNorm):
                m.adversarial.running_mean.add_(torch.linspace(-0.5, 0.5, m.adversarial.num_features))
                m.adversarial.weight.mul_(torch.linspace(0.2, 2.0, m.adversarial.num_features))
    images, _ = images_and_targets(10)
    result = branch_similarity(net, images, batch=4)
    assert not result["adversarial"]
    assert all(v is None for v in result["comparisons"]["routes_on_adversarial"]["cka"])
    values = result["comparisons"]["routes_on_clean"]["cka"]
    assert all(0 <= v <= 1 for v in values) and max(values) < 1 - 1e-4
    name = result["layers"][5]["name"]
    module = dict(net.named_modules())[name]
    captured = []
    # a copy: the ReLU after a batch norm works in place
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().flatten(1).clone().numpy()))

    with torch.no_grad():
        net.eval()
        for route in ("clean", "adversarial"):
            with bn_route(route):
                net(images)
    handle.remove()
    assert values[5] == pytest.approx(linear_cka(captured[0], captured[1]), rel=1e-9)
    same = branch_similarity(net, images, batch=4, feature_bytes=1)  # every layer its own group
    assert same["comparisons"]["routes_on_clean"]["cka"] == pytest.approx(values, rel=1e-12)
    debiased = branch_similarity(net, images, batch=4, debiased=True)
    assert debiased["estimator"] == "debiased"
    assert all(-1 <= v <= 1 for v in debiased["comparisons"]["routes_on_clean"]["cka"])
    stats = result["layers"][5]["statistics"]
    assert stats["mean_shift"] > 0 and stats["mean_correlation"] < 1


def test_layers_are_listed_in_forward_order_and_a_shared_one_is_refused():
    class Swapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.BatchNorm1d(3)
            self.early = nn.BatchNorm1d(3)

        def forward(self, x):
            return self.late(self.early(x))

    net = to_dual_bn(Swapped())
    assert [name for name, *_ in dual_bn_layers(net, torch.rand(2, 3))] == ["early", "late"]
    shared = nn.BatchNorm1d(3)
    twice = to_dual_bn(nn.Sequential(shared, nn.ReLU(), shared))
    with pytest.raises(SynthmedError, match="runs more than once"):
        dual_bn_layers(twice, torch.rand(2, 3))
    with pytest.raises(SynthmedError, match="no dual batch norm"):
        dual_bn_layers(tiny_network(dual=False), torch.rand(1, 4, 16, 16))
    with pytest.raises(SynthmedError, match="at least 4 test samples"):
        branch_similarity(tiny_network(dual=True), torch.rand(3, 4, 16, 16), debiased=True)


def test_a_trained_dual_bn_run_gives_one_value_per_layer_in_the_unit_interval(runs, presence2d):
    result = compare_branches(runs / "dual-bn", presence2d.path, device="cpu", progress=False)
    assert result["n"] == 8 and result["subjects"] == 4 and result["mode"] == "dual-bn"
    assert result["attack"]["eps"] == 0.005 and result["attack"]["steps"] == 2  # the tiny preset's training attack
    layers = result["layers"]
    assert len(layers) == 20 and len({layer["name"] for layer in layers}) == 20
    for key, comparison in result["comparisons"].items():
        assert len(comparison["cka"]) == 20 and all(0 <= v <= 1 + 1e-12 for v in comparison["cka"]), key
    assert min(result["comparisons"]["routes_on_clean"]["cka"]) < 1 - 1e-6  # four steps pulled the branches apart
    assert json.loads((runs / "dual-bn" / "eval" / "presence2d_cka.json").read_text()) == json.loads(json.dumps(result))
    assert (runs / "dual-bn" / "eval" / "presence2d_cka.png").read_bytes()[:4] == b"\x89PNG"
    smaller = compare_branches(runs / "dual-bn", presence2d.path, device="cpu", max_samples=5, adversarial=False,
                               write=False, progress=False)
    assert smaller["n"] == 5 and smaller["attack"] is None and smaller["figure"] is None
    again = [compare_branches(runs / "dual-bn", presence2d.path, device="cpu", max_samples=6, seed=3, write=False,
                              progress=False) for _ in range(2)]
    assert again[0]["comparisons"] == again[1]["comparisons"] and again[0]["cka_seed"] == 3  # seeded draw and attack


def test_cli_writes_json_and_plot_and_refuses_a_single_bn_run(runs, presence2d, monkeypatch, capsys):
    run = runs / "dual-bn"
    args = ["--test", str(presence2d.path), "--device", "cpu", "--no-progress"]
    code, out, err = cli(monkeypatch, capsys, "classify", "cka", str(run), *args, "--max-samples", "6",
                         "--overwrite")
    joined = " ".join(out.split())
    assert code == 0 and "through BN0 against through BN1" in joined and "layer4" in joined, err
    code, out, err = cli(monkeypatch, capsys, "classify", "cka", str(run), *args, "--json", "--debiased",
                         "--no-adversarial", "--overwrite")
    assert code == 0, err
    result = json.loads(out)
    assert result["estimator"] == "debiased" and len(result["comparisons"]["routes_on_clean"]["cka"]) == 20
    code, _, err = cli(monkeypatch, capsys, "classify", "cka", str(run), *args)
    assert code == 2 and "already exists" in err
    single = runs / "standard"
    before = sorted(p.relative_to(single) for p in single.rglob("*"))
    code, out, err = cli(monkeypatch, capsys, "classify", "cka", str(single), *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "a standard run has one batch norm" in " ".join(lines[0].split()), err
    assert sorted(p.relative_to(single) for p in single.rglob("*")) == before
