"""The diffusion generator on tiny stores: training, samplers, determinism, resume, exports."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tiny_stores import make_store

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.generators.api import sample_run, train_generator
from synthmed.generators.diffusion import DiffusionGenerator, DiffusionTask
from synthmed.generators.sampling import sample_to_store
from synthmed.training import FabricOptions, latest_checkpoint

CPU = FabricOptions(device="cpu")
FAST = {"steps": 3, "batch": 4, "checkpoint_every": 2, "log_every": 1}


def fit(store, run, *, model=None, train=None, **kwargs):
    return train_generator(store.path, run, model_overrides={"train_timesteps": 100, **(model or {})},
                           train_overrides={**FAST, **(train or {})}, fabric=CPU, progress=False, **kwargs)


@pytest.fixture(scope="module")
def run2d(store2d, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "ddpm2d"
    assert fit(store2d, run) == 3
    return run


def sample(run, n=3, seed=0, batch=2, sampler=None, steps=4):
    gen = DiffusionGenerator.load(run, device="cpu")
    return [(x.clone(), y.clone()) for x, y in gen.sample(n, seed, batch_size=batch, sampler=sampler, steps=steps)]


def test_same_seed_same_samples_and_valid_labels(run2d):
    a, b, c = sample(run2d, seed=1), sample(run2d, seed=1), sample(run2d, seed=2)
    assert [x[0].shape for x in a] == [(2, 4, 16, 16), (1, 4, 16, 16)]
    for (ia, la), (ib, lb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert not torch.equal(a[0][0], c[0][0])
    for images, labels in a:
        assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        assert labels.dtype == torch.uint8 and set(labels.unique().tolist()) <= {0, 1, 2, 3}


def test_samplers_full_ddpm_chain_and_ddim(run2d):
    gen = DiffusionGenerator.load(run2d, device="cpu")
    assert gen.resolve_sampler("ddpm", None) == ("ddpm", 100)  # the full ancestral chain by default
    calls = []
    out = list(gen.sample(2, 0, batch_size=2, sampler="ddpm", on_step=lambda m, k: calls.append(k)))
    assert len(calls) == 100 and out[0][0].shape == (2, 4, 16, 16)
    ddim = sample(run2d, sampler="ddim", steps=3)
    assert not torch.equal(ddim[0][0], sample(run2d, sampler="ddpm", steps=3)[0][0])
    with pytest.raises(SynthmedError, match="rflow"):
        gen.resolve_sampler("rflow", 3)
    with pytest.raises(SynthmedError, match="--steps"):
        gen.resolve_sampler("ddim", 101)


def test_checkpoints_are_safetensors_and_weights_only(run2d):
    step, folder = latest_checkpoint(run2d)
    assert step == 3 and json.loads((run2d / "state.json").read_text())["step"] == 3
    payload = torch.load(folder / "state.pt", weights_only=True)
    assert payload["step"] == 3 and "adam" in payload["optimizers"]
    net = DiffusionGenerator.load(run2d, device="cpu").network
    assert set(load_file(str(folder / "model.safetensors"))) == set(net.state_dict())
    ema = load_file(str(folder / "ema.safetensors"))
    assert "updates" in ema and int(ema["updates"]) == 3
    info = json.loads((run2d / "run.json").read_text())
    assert info["kind"] == "ddpm" and info["model"]["image_shape"] == [16, 16] and info["data"]["n_train"] == 6


def test_save_load_roundtrip(run2d, tmp_path):
    gen = DiffusionGenerator.load(run2d, device="cpu")
    saved = DiffusionGenerator.load(gen.save(tmp_path / "saved"), device="cpu")
    a = next(gen.sample(2, 3, batch_size=2, steps=3))
    b = next(saved.sample(2, 3, batch_size=2, steps=3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sample_store_provenance_and_png(run2d, tmp_path):
    store = sample_run(run2d, tmp_path / "syn", n=5, batch=2, steps=3, seed=4, device="cpu", fmt="png", progress=False)
    assert store.synthetic and len(store) == 5 and store.sample_shape == (4, 16, 16)
    prov = store.meta["provenance"]
    assert {k: prov[k] for k in ("sampler", "steps", "seed", "checkpoint_step")} == {"sampler": "ddim", "steps": 3, "seed": 4, "checkpoint_step": 3}
    assert prov["run"] == str(run2d)
    assert list(store.samples["case_id"]) == [f"syn_{i:05d}" for i in range(5)]
    assert (tmp_path / "syn-samples.png").stat().st_size > 0
    images, labels = store.read(slice(None))
    direct = [x for x in DiffusionGenerator.load(run2d, device="cpu").sample(5, 4, batch_size=2, steps=3)]
    np.testing.assert_array_equal(images, torch.cat([d[0] for d in direct]).numpy())
    np.testing.assert_array_equal(labels, torch.cat([d[1] for d in direct]).numpy())


def test_kill_and_resume_equals_uninterrupted(store2d, tmp_path, monkeypatch):
    assert fit(store2d, tmp_path / "full", train={"steps": 4}) == 4
    original = DiffusionTask.training_step

    def killed(self, batch, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(DiffusionTask, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(store2d, tmp_path / "cut", train={"steps": 4})
    monkeypatch.setattr(DiffusionTask, "training_step", original)
    assert latest_checkpoint(tmp_path / "cut")[0] == 2
    assert fit(store2d, tmp_path / "cut", train={"steps": 4}, resume=True) == 4
    for name in ("model", "ema"):
        full = load_file(str(latest_checkpoint(tmp_path / "full")[1] / f"{name}.safetensors"))
        cut = load_file(str(latest_checkpoint(tmp_path / "cut")[1] / f"{name}.safetensors"))
        assert all(torch.equal(full[k], cut[k]) for k in full), name


def test_3d_train_sample_and_nifti(store3d, tmp_path):
    assert fit(store3d, tmp_path / "run3d", train={"steps": 2, "batch": 2}) == 2
    store = sample_run(tmp_path / "run3d", tmp_path / "syn3d", n=2, batch=2, steps=2, device="cpu", fmt="nifti",
                       progress=False)
    assert store.dims == 3 and store.sample_shape == (4, 16, 16, 16) and list(store.samples["slice"]) == [-1, -1]
    case = tmp_path / "syn3d-nifti" / "syn_00001"
    names = sorted(p.name for p in case.iterdir())
    assert names == [f"syn_00001_{m}.nii.gz" for m in ("flair", "seg", "t1", "t1ce", "t2")]
    seg = np.asarray(nib.load(case / "syn_00001_seg.nii.gz").dataobj)
    assert seg.shape == (16, 16, 16) and set(np.unique(seg)) <= {0, 1, 2, 4}
    _, labels = store.read([1])
    np.testing.assert_array_equal(seg.transpose(2, 1, 0), np.array([0, 1, 2, 4], np.uint8)[labels[0]])


def test_2d_nifti_stacks_slices(run2d, tmp_path):
    gen = DiffusionGenerator.load(run2d, device="cpu")
    sample_to_store(gen, tmp_path / "s", 5, batch_size=5, steps=2, fmt="nifti", progress=False, slices_per_case=3)
    flair = [nib.load(tmp_path / "s-nifti" / c / f"{c}_flair.nii.gz").shape for c in ("syn_00000", "syn_00001")]
    assert flair == [(16, 16, 3), (16, 16, 2)]


def test_rectified_flow_objective(store2d, tmp_path):
    assert fit(store2d, tmp_path / "rf", model={"objective": "rflow"}, train={"steps": 2}) == 2
    gen = DiffusionGenerator.load(tmp_path / "rf", device="cpu")
    assert gen.resolve_sampler(None, None) == ("rflow", 50)
    a, b = sample(tmp_path / "rf", sampler="rflow", steps=3), sample(tmp_path / "rf", sampler="rflow", steps=3)
    assert torch.equal(a[0][0], b[0][0]) and torch.isfinite(a[0][0]).all()
    with pytest.raises(SynthmedError, match="ddim"):
        gen.resolve_sampler("ddim", 3)


def test_store_without_train_split_is_an_error(tmp_path):
    only_test = make_store(tmp_path / "only-test", n=4, n_test=4)
    with pytest.raises(SynthmedError, match="train"):
        fit(only_test, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    odd = make_store(tmp_path / "odd", n=4, side=18)
    with pytest.raises(SynthmedError, match="divisible"):
        train_generator(odd.path, tmp_path / "run", preset="paper", fabric=CPU, progress=False)
    assert not (tmp_path / "run").exists()
    assert isinstance(Store.open(odd.path), Store)
