"""The training loop with a toy two-network task (the shape of a GAN): checkpoints, resume,
best checkpoint, run directory, weights_only loading."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.training import (
    EMA,
    FabricOptions,
    LoopOptions,
    batch_stream,
    latest_checkpoint,
    make_fabric,
    open_run,
    train,
)


class Interrupt(Exception):
    pass


class ToyTask:
    """Two networks, two optimisers, two updates per step, an EMA, randomness from ctx.random."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at = stop_at

    def setup(self, fabric):
        torch.manual_seed(0)
        g, d = torch.nn.Linear(8, 4 * 16 * 16), torch.nn.Linear(4 * 16 * 16, 1)
        self.g_ema = EMA(g, 0.9)
        self.g, self.opt_g = fabric.setup(g, torch.optim.Adam(g.parameters(), 1e-2))
        self.d, self.opt_d = fabric.setup(d, torch.optim.Adam(d.parameters(), 1e-2))

    def modules(self):
        return {"generator": self.g, "discriminator": self.d, "ema": self.g_ema}

    def optimizers(self):
        return {"g": self.opt_g, "d": self.opt_d}

    def training_step(self, batch, ctx):
        if ctx.step == self.stop_at:
            raise Interrupt
        images, _ = batch
        real = images.flatten(1)
        z = ctx.random.randn((real.shape[0], 8))
        d_loss = torch.nn.functional.softplus(self.d(self.g(z).detach())).mean() + torch.nn.functional.softplus(-self.d(real)).mean()
        self.opt_d.zero_grad()
        ctx.fabric.backward(d_loss)
        self.opt_d.step()
        g_loss = torch.nn.functional.softplus(-self.d(self.g(ctx.random.randn((real.shape[0], 8))))).mean()
        self.opt_g.zero_grad()
        ctx.fabric.backward(g_loss)
        self.opt_g.step()
        self.g_ema.update(self.g)
        return {"d": d_loss.detach(), "g": g_loss.detach()}

    def validate(self, step):
        return {"score": [0.1, 0.5, 0.3, 0.2][(step // 2 - 1) % 4], "other": 0.01 * step}

    def preview(self, step):
        return {"sample": torch.rand(3, 1, 16, 16)}


def run_toy(store, path, steps, *, resume=False, stop_at=None, overwrite=False, monitor="score"):
    fabric = make_fabric(FabricOptions(device="cpu"))
    run = open_run(path, kind="toy", model={"width": 8}, training={"steps": steps}, seed=5, resume=resume,
                   overwrite=overwrite)
    ds = store.dataset(split="train")
    options = LoopOptions(steps=steps, checkpoint_every=3, log_every=2, validate_every=2, monitor=monitor,
                          progress=False)
    return train(ToyTask(stop_at), fabric, run, lambda s: batch_stream(ds, 2, seed=5, start_step=s), options)


def weights(path, name):
    return load_file(str(latest_checkpoint(path)[1] / f"{name}.safetensors"))


def test_kill_and_resume_equals_uninterrupted(store2d, tmp_path):
    assert run_toy(store2d, tmp_path / "full", 8) == 8
    with pytest.raises(Interrupt):
        run_toy(store2d, tmp_path / "cut", 8, stop_at=4)  # killed after the step-3 checkpoint
    assert json.loads((tmp_path / "cut" / "state.json").read_text())["step"] == 3
    assert run_toy(store2d, tmp_path / "cut", 8, resume=True) == 8
    for name in ("generator", "discriminator", "ema"):
        full, cut = weights(tmp_path / "full", name), weights(tmp_path / "cut", name)
        assert full.keys() == cut.keys()
        for key in full:
            assert torch.equal(full[key], cut[key]), (name, key)


def test_run_directory_contents(store2d, tmp_path):
    run_toy(store2d, tmp_path / "run", 6)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == 6 and state["checkpoint"] == "checkpoints/step_00000006"
    assert state["best"]["step"] == 4  # scores 0.1, 0.5, 0.3 at steps 2, 4, 6
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best", "step_00000003", "step_00000006"]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["seed"] == 5 and info["model"] == {"width": 8} and {"python", "torch", "monai"} <= set(info["versions"])
    payload = torch.load(tmp_path / "run" / "checkpoints" / "step_00000006" / "state.pt", weights_only=True)
    assert payload["step"] == 6 and set(payload["optimizers"]) == {"g", "d"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"train/d", "train/g", "val/score", "train/samples_per_s"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/d")] == [2, 4, 6]
    assert "samples/sample" in events.Tags()["images"]  # the preview grid, at the end


def test_resume_with_another_monitor_starts_the_best_afresh(store2d, tmp_path):
    """The saved best value belongs to its monitor: compared with another's, a resumed run could
    keep a best checkpoint that the new rule would never have chosen."""
    run_toy(store2d, tmp_path / "run", 6)  # best "score" 0.5 at step 4
    run_toy(store2d, tmp_path / "run", 8, resume=True, monitor="other")  # "other" is 0.08 at step 8
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["best"]["step"] == 8
    payload = torch.load(tmp_path / "run" / "checkpoints" / "best" / "state.pt", weights_only=True)
    assert payload["extra"]["_best"] == pytest.approx(0.08) and payload["extra"]["_monitor"] == "other"


def test_run_directory_guards(store2d, tmp_path):
    run_toy(store2d, tmp_path / "run", 2)
    with pytest.raises(OutputExistsError):
        run_toy(store2d, tmp_path / "run", 2)
    with pytest.raises(SynthmedError, match="changed model config"):
        open_run(tmp_path / "run", kind="toy", model={"width": 9}, training={}, seed=0, resume=True)
    with pytest.raises(SynthmedError, match="nothing to resume"):
        open_run(tmp_path / "nothing", kind="toy", model={}, training={}, seed=0, resume=True)
    assert run_toy(store2d, tmp_path / "run", 3, resume=True) == 3  # more steps on resume: allowed
    assert run_toy(store2d, tmp_path / "run", 2, overwrite=True) == 2
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 2
