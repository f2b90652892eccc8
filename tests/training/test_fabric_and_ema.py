"""Device/precision resolution and the EMA."""

from __future__ import annotations

import pytest
import torch

from synthmed.errors import SynthmedError
from synthmed.training import EMA
from synthmed.training.fabric import FabricOptions, make_fabric, resolve_device, resolve_precision


def test_device_and_precision_resolution(monkeypatch):
    assert resolve_precision("auto", "cpu") == "32-true"
    with pytest.raises(SynthmedError, match="needs a GPU"):
        resolve_precision("bf16", "cpu")
    with pytest.raises(SynthmedError, match="--device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(SynthmedError, match="no CUDA"):
        resolve_device("cuda")
    with pytest.raises(SynthmedError, match="--devices"):
        make_fabric(FabricOptions(device="cpu", devices=0))


def test_single_process_fabric_on_cpu():
    fabric = make_fabric(FabricOptions(device="cpu"))
    assert fabric.world_size == 1 and fabric.device.type == "cpu" and fabric.is_global_zero


def test_ema_warms_up_then_tracks():
    net = torch.nn.Linear(2, 1, bias=False)
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    before = ema.module.weight.clone()
    ema.update(net)  # first update: decay min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.module.weight, 0.1 * before + 0.9)
    for _ in range(30):
        ema.update(net)
    torch.testing.assert_close(ema.module.weight, torch.ones(1, 2), atol=1e-6, rtol=0)
    assert int(ema.updates) == 31 and not any(p.requires_grad for p in ema.module.parameters())
