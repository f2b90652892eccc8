"""The GAN generators (progan, stylegan1, stylegan2, stylegan3) on tiny stores: training,
sampling, truncation, determinism, resume, the CLI and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tiny_stores import make_store

from cli_inprocess import invoke_joined as cli
from procs import torchrun
from synthmed.parallel import torch_threads
from synthmed.errors import SynthmedError
from synthmed.generators.api import sample_run, train_generator
from synthmed.generators.diffusion import DiffusionGenerator
from synthmed.generators.gan import FAMILIES, PRESETS, GANTask
from synthmed.generators.registry import generator_class, names
from synthmed.generators.sampling import sample_to_store
from synthmed.training import FabricOptions, latest_checkpoint

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription."""
    with torch_threads(1):
        yield


CPU = FabricOptions(device="cpu")
FAST = {"steps": 3, "batch": 4, "checkpoint_every": 2, "log_every": 1, "growth_steps": 1, "r1_interval": 2,
        "pl_interval": 2, "ada_interval": 1, "ada_kimg": 0.01}


def fit(store, run, model, train=None, **kwargs):
    return train_generator(store.path, run, model=model, train_overrides={**FAST, **(train or {})}, fabric=CPU,
                           progress=False, **kwargs)


@pytest.fixture(scope="module")
def runs(store2d, tmp_path_factory):
    """One 3-step tiny run per family on the 16 px store."""
    root = tmp_path_factory.mktemp("gan-runs")
    for family in FAMILIES:
        assert fit(store2d, root / family, family) == 3
    return root


def test_registered_with_presets():
    assert set(FAMILIES) <= set(names())
    for family in FAMILIES:
        assert set(PRESETS[family]) == {"tiny", "laptop", "small", "paper"}
        paper = PRESETS[family]["paper"]
        assert paper.model.resolution == 256 and paper.train.batch == 32 and paper.train.mirror
        assert paper.train.steps * paper.train.batch == 25_000_000  # 25,000 kimg
    assert PRESETS["stylegan2"]["paper"].train.ada and PRESETS["stylegan3"]["paper"].train.ada
    assert 8 <= PRESETS["stylegan2"]["paper"].train.r1_gamma <= 10 and PRESETS["progan"]["paper"].train.loss == "wgan-gp"
    assert all(p.model.sg3_config == "t" for p in PRESETS["stylegan3"].values())  # config R: a model override


def test_stylegan3_tiny_output_reaches_the_data_range_at_initialisation():
    """``tiny`` StyleGAN 3 scales its output by 1 (NVlabs' 0.25 stays in the other presets): at
    0.25 the untrained pixels had a std of 0.25 and a short run never reached the exact-zero
    background (−1 encoded) of the it-learns store (grey background, brain share 0.87 against
    0.38 at 1,200 steps); the encoded data's pixel std is 0.59."""
    from synthmed.generators.gan.task import build_networks

    assert [PRESETS["stylegan3"][p].model.sg3_output_scale for p in ("laptop", "small", "paper")] == [0.25] * 3
    config = PRESETS["stylegan3"]["tiny"].model.model_copy(update={"image_channels": 4, "resolution": 16})
    torch.manual_seed(0)
    gen = build_networks(config)[0].eval()
    assert gen.synthesis.output_scale == config.sg3_output_scale == 1.0
    with torch.no_grad():
        x = gen(torch.randn(64, config.z_dim))
    assert x.std() > 0.3, float(x.std())  # 0.45 here; 0.11 at the old scale


def test_stylegan3_config_r_trains_samples_valid_label_maps_and_is_deterministic(store2d, tmp_path):
    """Config R through the generic path (model override → run.json → load → EMA sampling)."""
    assert fit(store2d, tmp_path / "r", "stylegan3", model_overrides={"sg3_config": "r"}) == 3
    assert json.loads((tmp_path / "r" / "run.json").read_text())["model"]["sg3_config"] == "r"
    gen = generator_class("stylegan3").load(tmp_path / "r", device="cpu")
    assert gen.config.sg3_config == "r" and gen.step == 3
    synthesis = gen.network.synthesis
    assert synthesis.config == "r" and all(layer.weight.shape[-1] == 1 for layer in synthesis.layers)
    assert any(layer.fd.ndim == 2 for layer in synthesis.layers)  # radial down filters
    a, b, c = (list(gen.sample(3, seed, batch_size=2)) for seed in (4, 4, 5))
    assert [x.shape for x, _ in a] == [(2, 4, 16, 16), (1, 4, 16, 16)]
    assert all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    for images, labels in a:
        assert torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
        assert labels.dtype == torch.uint8 and set(labels.unique().tolist()) <= {0, 1, 2, 3}
    with pytest.raises(SynthmedError, match="--sg3-config"):
        train_generator(store2d.path, tmp_path / "bad", model="stylegan3", model_overrides={"sg3_config": "q"})
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_training_samples_valid_label_maps_same_seed_same_samples(runs, family):
    gen = generator_class(family).load(runs / family, device="cpu")
    assert gen.step == 3 and gen.config.family == family and gen.config.resolution == 16

    def draw(seed, psi=1.0):
        return [(x.clone(), y.clone()) for x, y in gen.sample(3, seed, batch_size=2, truncation=psi)]

    a, b, c = draw(1), draw(1), draw(2)
    assert [x.shape for x, _ in a] == [(2, 4, 16, 16), (1, 4, 16, 16)]
    for (ia, la), (ib, lb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert not torch.equal(a[0][0], c[0][0])
    for images, labels in a:
        assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        assert labels.dtype == torch.uint8 and set(labels.unique().tolist()) <= {0, 1, 2, 3}
    assert not torch.equal(draw(1, 0.5)[0][0], a[0][0])  # truncation changes samples
    logs = json.loads((runs / family / "run.json").read_text())
    assert logs["kind"] == family and logs["model"]["resolution"] == 16


def test_checkpoint_contents_and_save_load(runs, tmp_path):
    step, folder = latest_checkpoint(runs / "stylegan2")
    assert step == 3
    assert {p.name for p in folder.glob("*.safetensors")} == {f"{m}.safetensors" for m in
                                                              ("generator", "discriminator", "ema", "augment", "stats")}
    augment = load_file(str(folder / "augment.safetensors"))
    assert set(augment) == {"p", "sign_sum", "sign_count"} and 0 <= float(augment["p"]) <= 1
    payload = torch.load(folder / "state.pt", weights_only=True)
    assert set(payload["optimizers"]) == {"g", "d"}
    gen = generator_class("stylegan2").load(runs / "stylegan2", device="cpu")
    saved = generator_class("stylegan2").load(gen.save(tmp_path / "saved"), device="cpu")
    x, y = next(gen.sample(2, 5, batch_size=2)), next(saved.sample(2, 5, batch_size=2))
    assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])
    with pytest.raises(SynthmedError, match="not 'stylegan3'"):
        generator_class("stylegan3").load(runs / "stylegan2")


@pytest.mark.parametrize("family", ["stylegan2", "progan", "stylegan3"])
def test_kill_and_resume_equals_uninterrupted(store2d, tmp_path, monkeypatch, family):
    """Lazy R1/GP and path length (separate steps), ADA, progressive growth, the EMA's
    half-life ramp-up and StyleGAN 3's magnitude EMAs all resume exactly (CPU)."""
    fit(store2d, tmp_path / "full", family)
    original = GANTask.training_step

    def killed(self, batch, ctx):
        if ctx.step == 2:
            raise KeyboardInterrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(GANTask, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(store2d, tmp_path / "cut", family)
    monkeypatch.setattr(GANTask, "training_step", original)
    assert latest_checkpoint(tmp_path / "cut")[0] == 2
    assert fit(store2d, tmp_path / "cut", family, resume=True) == 3
    for name in ("generator", "discriminator", "ema", "augment"):
        full = load_file(str(latest_checkpoint(tmp_path / "full")[1] / f"{name}.safetensors"))
        cut = load_file(str(latest_checkpoint(tmp_path / "cut")[1] / f"{name}.safetensors"))
        assert all(torch.equal(full[k], cut[k]) for k in full), name


def test_bad_input(store3d, tmp_path):
    odd = make_store(tmp_path / "odd", n=4, side=24)
    with pytest.raises(SynthmedError, match="power of two"):
        fit(odd, tmp_path / "r1", "stylegan2")
    with pytest.raises(SynthmedError, match="2D"):
        fit(store3d, tmp_path / "r2", "progan")
    with pytest.raises(SynthmedError, match="objective"):
        train_generator(odd.path, tmp_path / "r3", model="stylegan3", model_overrides={"objective": "rflow"})
    with pytest.raises(SynthmedError, match="--gamma"):
        train_generator(odd.path, tmp_path / "r3", model="stylegan2", train_overrides={"r1_gamma": -1})
    with pytest.raises(SynthmedError, match="preset"):
        train_generator(odd.path, tmp_path / "r3", model="stylegan1", preset="huge")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3"))
    with pytest.raises(SynthmedError, match="truncation"):  # the diffusion model has none
        sample_to_store(DiffusionGenerator(), tmp_path / "s", 2, truncation=0.5, progress=False)
    assert not (tmp_path / "s").exists()


def test_cli_train_sample_truncation(store2d, runs, tmp_path, monkeypatch, capsys):
    run = str(tmp_path / "run")
    code, out, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), run, "--model", "stylegan3",
                         "--sg3-config", "r", "--steps", "2", "--batch", "2", "--gamma", "2", "--no-ada", "--device",
                         "cpu", "--no-progress")
    assert code == 0 and "step 2" in out, err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["training"]["r1_gamma"] == 2 and info["training"]["ada"] is False
    assert info["model"]["sg3_config"] == "r"
    code, _, err = cli(monkeypatch, capsys, "generator", "train", str(store2d.path), str(tmp_path / "bad_r"), "--model",
                       "stylegan3", "--sg3-config", "q", "--steps", "1", "--device", "cpu", "--no-progress")
    assert code == 2 and "--sg3-config" in err and not (tmp_path / "bad_r").exists()
    code, out, err = cli(monkeypatch, capsys, "generator", "sample", run, str(tmp_path / "syn"), "--n", "3",
                         "--truncation", "0.7", "--batch", "2", "--device", "cpu", "--no-progress")
    assert code == 0 and "3 synthetic samples" in out and "truncation 0.7" in out, err
    store = sample_run(runs / "progan", tmp_path / "syn2", n=2, truncation=0.5, device="cpu", progress=False)
    assert store.meta["provenance"]["truncation"] == 0.5 and store.sample_shape == (4, 16, 16)
    for args in (["--truncation", "1.5"], ["--steps", "5"]):
        code, _, err = cli(monkeypatch, capsys, "generator", "sample", run, str(tmp_path / "bad"), *args,
                           "--device", "cpu")
        assert code == 2 and err.startswith("error:") and not (tmp_path / "bad").exists()


def test_ddp_two_cpu_processes(store2d, tmp_path):
    """Two gloo processes train a progressive GAN (unused growth levels) and ADA's all-reduced statistics."""
    ddp = torchrun("generator", "train", str(store2d.path), str(tmp_path / "ddp"), "--model", "stylegan1", "--steps",
                   "2", "--batch", "2", "--growth-steps", "1", "--ada", "--device", "cpu", "--no-progress")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("trained") == 1
    gen = generator_class("stylegan1").load(tmp_path / "ddp", device="cpu")
    assert gen.step == 2 and next(gen.sample(2, 0))[1].shape == (2, 16, 16)
