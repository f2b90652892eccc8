"""Generator runs record their joint mask encoding (``label_mode``) and decode with it: new
runs use the nesting order, runs trained before it became the default (their config says
``levels``, or names no mode) decode with the legacy order."""

from __future__ import annotations

import json

import pytest
import torch

from synthmed.data.encoding import JointEncoding
from synthmed.generators.api import sample_run, train_generator
from synthmed.generators.registry import generator_class
from synthmed.parallel import torch_threads
from synthmed.training import FabricOptions


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def fit(store, run, model: str, **model_overrides) -> None:
    extra = {"train_timesteps": 100} if model == "ddpm" else {}
    train = {"steps": 2, "batch": 4, "checkpoint_every": 2, "log_every": 1}
    if model != "ddpm":
        train["growth_steps"] = 1
    train_generator(store.path, run, model=model, model_overrides={**extra, **model_overrides}, train_overrides=train,
                    fabric=FabricOptions(device="cpu"), progress=False)


@pytest.mark.parametrize("model", ["ddpm", "progan"])
def test_new_runs_record_the_nested_encoding(store2d, tmp_path, model):
    fit(store2d, tmp_path / "run", model)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["label_mode"] == "nested"
    gen = generator_class(model).load(tmp_path / "run", device="cpu")
    assert gen.encoding == JointEncoding(4, "nested") and gen.config.label_mode == "nested"
    x = next(iter(gen.sample(1, 0, batch_size=1)))  # decode checks that the network made 4 + 1 channels
    assert x[0].shape == (1, 4, 16, 16) and x[1].shape == (1, 16, 16)
    steps = 2 if model == "ddpm" else None
    store = sample_run(tmp_path / "run", tmp_path / "syn", n=2, batch=2, steps=steps, seed=0, device="cpu",
                       progress=False)
    assert store.meta["provenance"]["label_mode"] == "nested"  # the synthetic store says how its masks were decoded


@pytest.mark.parametrize("recorded", [True, False], ids=["levels", "no-label-mode"])
def test_runs_trained_before_the_change_decode_with_the_legacy_order(store2d, tmp_path, monkeypatch, recorded):
    """A run whose ``run.json`` was written the old way: ``label_mode: levels`` (the old
    default, which every old run recorded) or, for a config without the field, no entry."""
    run = tmp_path / "old"
    fit(store2d, run, "ddpm", label_mode="levels")
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["label_mode"] == "levels"
    if not recorded:
        del info["model"]["label_mode"]
        (run / "run.json").write_text(json.dumps(info))
    gen = generator_class("ddpm").load(run, device="cpu")
    assert gen.config.label_mode == "levels" and gen.encoding.level_order == (0, 1, 2, 3)

    seen = []  # every encoded batch the generator decodes, and what it decoded it to
    original = JointEncoding.decode

    def spy(self, x):
        out = original(self, x)
        seen.append((torch.as_tensor(x).clone(), out[1].clone()))
        return out

    monkeypatch.setattr(JointEncoding, "decode", spy)
    labels = torch.cat([lab for _, lab in gen.sample(4, 0, batch_size=2, steps=2)])
    monkeypatch.setattr(JointEncoding, "decode", original)
    x = torch.cat([s[0] for s in seen])
    assert torch.equal(labels, torch.cat([s[1] for s in seen]))
    assert torch.equal(labels, JointEncoding(4, "levels").decode(x)[1])
    assert not torch.equal(labels, JointEncoding(4, "nested").decode(x)[1])  # the order does matter here
