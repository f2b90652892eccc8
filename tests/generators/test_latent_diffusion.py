"""The ``ldm`` generator on tiny stores: configs and keys, the latent scaling, learning, sampling,
kill and resume in each stage, the CLI end to end, 2D stores and errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tiny_stores import make_store

from cli_inprocess import invoke_joined as cli
from synthmed.errors import SynthmedError
from synthmed.generators.api import load_generator, sample_run, train_generator
from synthmed.generators.diffusion import DiffusionTask, build_unet, training_loss
from synthmed.generators.diffusion.schedulers import scheduler_for
from synthmed.generators.latent import AUTOENCODER_PRESETS, Autoencoder, AutoencoderTask, LatentAutoencoder
from synthmed.generators.latent.autoencoder import autoencoder_config_for
from synthmed.generators.latent.ldm_config import LDM_PRESETS
from synthmed.generators.latent.model import AUTOENCODER_SEED_STREAM, LatentDiffusionGenerator
from synthmed.generators.latent.scaling import LATENT_SCALING, fit_scaling, read_scaling, write_scaling
from synthmed.training import FabricOptions, StepRandom, latest_checkpoint
from synthmed.training.seeding import INIT_STREAM, derive_seed, seeded_init

CPU = FabricOptions(device="cpu")
#: Both stages short: the autoencoder 4 steps (discriminators from 2), the diffusion 4, checkpoints every 2.
FAST = {"steps": 4, "batch": 2, "checkpoint_every": 2, "log_every": 1,
        "autoencoder": {"steps": 4, "checkpoint_every": 2, "log_every": 1}}


def fit(store, run, *, model=None, train=None, **kwargs):
    return train_generator(store.path, run, model="ldm", model_overrides=model or {},
                           train_overrides={**FAST, **(train or {})}, fabric=CPU, progress=False, **kwargs)


@pytest.fixture(scope="module")
def run3d(store3d, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "ldm3d"
    assert fit(store3d, run) == 4
    return run


def samples(gen, n=3, seed=0, batch=2, steps=3, sampler=None):
    return [(x.clone(), y.clone()) for x, y in gen.sample(n, seed, batch_size=batch, sampler=sampler, steps=steps)]


def untrained_autoencoder(store, **changes) -> Autoencoder:
    config = autoencoder_config_for(AUTOENCODER_PRESETS["tiny"].model.model_copy(update=changes), store)
    with seeded_init(0):
        return Autoencoder(LatentAutoencoder(config), config)


def test_laptop64_preset_validates_at_64_and_its_networks_fit():
    preset = LDM_PRESETS["laptop64"]
    m, t = preset.model, preset.train
    assert m.autoencoder == AUTOENCODER_PRESETS["laptop64"].model and t.autoencoder == AUTOENCODER_PRESETS["laptop64"].train
    ae = m.autoencoder
    assert (ae.kind, ae.channels, ae.image_shape, ae.latent_shape) == ("kl", (8, 16, 32), (64, 64, 64), (8, 16, 16, 16))
    assert m.diffusion.image_shape == (16, 16, 16) and m.latent_scaling == "std"
    assert (t.autoencoder.batch, t.autoencoder.disc_start < t.autoencoder.steps, t.diffusion.batch) == (1, True, 2)
    with seeded_init(0):
        net = LatentAutoencoder(ae)
        unet = LatentDiffusionGenerator.build_network(m)
    with torch.no_grad():
        z = net.encode(torch.zeros(1, ae.in_channels, 64, 64, 64))
        assert z.shape == (1, 8, 16, 16, 16)
        assert unet(z, torch.zeros(1, dtype=torch.long)).shape == z.shape
        assert net.decode(z).shape == (1, ae.in_channels, 64, 64, 64)


def test_presets_keys_and_study_names():
    paper = LDM_PRESETS["paper"]
    m, t = paper.model, paper.train
    assert m.autoencoder == AUTOENCODER_PRESETS["paper"].model and t.autoencoder == AUTOENCODER_PRESETS["paper"].train
    d = m.diffusion
    assert (d.schedule, d.train_timesteps, d.objective, t.diffusion.loss) == ("cosine", 300, "epsilon", "l1")
    assert (d.channels, d.num_res_blocks, d.spatial_dims, d.image_shape) == ((32, 64, 128, 256), 2, 3, (32, 32, 32))
    assert (m.latent_scaling, m.sampler, t.diffusion.lr, t.diffusion.batch, t.diffusion.ema_decay) == \
        ("minmax", "ddpm", 1e-4, 40, 0.995)
    assert LatentDiffusionGenerator(preset="paper").resolve_sampler(None, None) == ("ddpm", 300)  # the full chain
    assert set(LDM_PRESETS) == {"tiny", "laptop", "laptop64", "small", "paper"}
    for preset in LDM_PRESETS.values():  # every preset's U-Net fits its autoencoder's latents
        assert preset.model.diffusion.image_shape == preset.model.autoencoder.latent_shape[1:]

    gen = LatentDiffusionGenerator.from_options(
        "tiny", {"objective": "epsilon", "kind": "kl", "autoencoder.latent_channels": 2, "latent_scaling": "std",
                 "label_mode": "onehot"},
        {"steps": 7, "autoencoder": {"steps": 3, "lr": None}, "disc_start": 9, "loss": "l1"})
    c, tc, tiny = gen.config, gen.train_config, LDM_PRESETS["tiny"]
    assert (c.diffusion.objective, c.autoencoder.kind, c.autoencoder.latent_channels, c.latent_scaling) == \
        ("epsilon", "kl", 2, "std")
    assert c.autoencoder.label_mode == "onehot" and c.diffusion.channels == tiny.model.diffusion.channels
    assert (tc.diffusion.steps, tc.autoencoder.steps, tc.autoencoder.disc_start, tc.diffusion.loss) == (7, 3, 9, "l1")
    assert tc.autoencoder.lr == tiny.train.autoencoder.lr and tc.diffusion.batch == tiny.train.diffusion.batch
    with pytest.raises(SynthmedError, match="lrr"):
        LatentDiffusionGenerator.from_options("tiny", {}, {"lrr": 1})
    with pytest.raises(SynthmedError, match="sampler rflow does not fit"):
        LatentDiffusionGenerator.from_options("tiny", {"sampler": "rflow"}, {})

    from synthmed.study.spec import build_spec

    spec = {"data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16, "dims": 3},
            "segmenters": [{"name": "unet"}], "generators": [
                {"name": "ldm", "steps": 2, "model_overrides": {"autoencoder.kind": "kl", "objective": "epsilon"},
                 "train_overrides": {"autoencoder.steps": 2}}]}
    assert build_spec(spec).generators[0].name == "ldm"
    spec["generators"][0]["train_overrides"] = {"autoencoder.stepz": 2}
    with pytest.raises(SynthmedError, match="generators.0.train_overrides.autoencoder.stepz"):
        build_spec(spec)


def test_latent_side_that_does_not_fit_the_unet_is_one_clear_error(store3d, tmp_path):
    """16³ samples, one halving: latents of 8³; five U-Net levels need sides divisible by 16."""
    levels = {"channels": (8, 8, 8, 8, 8), "attention_levels": (False,) * 5}
    words = r"diffusion\.channels: 5 U-Net levels .* divisible by 16.*autoencoder\.channels \[8, 16\].*latents of \[8, 8, 8\]"
    with pytest.raises(SynthmedError, match=words):
        fit(store3d, tmp_path / "run", model=levels)
    assert not (tmp_path / "run").exists()
    gen = LatentDiffusionGenerator.from_options("tiny", {**levels, "autoencoder.image_shape": (32, 32, 32)}, {})
    with pytest.raises(SynthmedError, match=f"{store3d.path}: 3D samples .* do not fit the ldm model: .*{words}"):
        gen.config_for(store3d)  # fits the preset's 32³, not the store's 16³
    assert gen.config_for(make_store(tmp_path / "s32", dims=3, n=2, n_test=1, side=32)).diffusion.image_shape == \
        (16, 16, 16)


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_latent_scaling_round_trips(store3d, tmp_path, kind):
    ae = untrained_autoencoder(store3d, kind=kind)
    train = store3d.indices("train")
    # the latents in fit_scaling's batches (batched convolutions round differently)
    z = torch.cat([ae.encode(*store3d.read(train[i:i + 3])) for i in range(0, len(train), 3)])
    for mode in ("minmax", "std"):
        scaling = fit_scaling(ae, store3d, mode, batch=3)
        x = scaling.normalise(z)
        back = scaling.denormalise(x)
        assert x.dtype == back.dtype == torch.float32
        # float32 rounding of the scaled value only: ≤ 1 ulp of x, times 1 / scale
        ulp = torch.finfo(torch.float32).eps * x.abs().clamp_min(1.0)
        assert float(((back - z).abs() * scaling.scale / ulp).max()) <= 1.0
        if kind == "vq":  # the nearest codes, hence the decoded samples, are exactly those of z
            assert torch.equal(ae.network.code_indices(back), ae.network.code_indices(z))
            for a, b in zip(ae.decode(back), ae.decode(z)):
                assert torch.equal(a, b)
        write_scaling(tmp_path, scaling)
        assert read_scaling(tmp_path) == scaling  # the run's record reads back bit for bit
        if mode == "std":
            assert scaling.shift == 0 and scaling.scale == pytest.approx(1 / float(z.double().std()), rel=1e-12)
            assert not scaling.bounded
        else:
            ends = ae.codebook if kind == "vq" else z
            assert scaling.statistics["source"] == ("codebook" if kind == "vq" else "latents")
            assert float(scaling.normalise(ends).min()) == -1.0 and float(scaling.normalise(ends).max()) == 1.0
            assert scaling.bounded
    (tmp_path / LATENT_SCALING).write_text(json.dumps({**scaling.to_json(), "scale": -1}))
    with pytest.raises(SynthmedError, match=f"{LATENT_SCALING}: latent scaling scale must be positive"):
        read_scaling(tmp_path)


def test_one_volume_overfit_drives_the_latent_diffusion_loss_down(tmp_path):
    """100 steps on one volume's latents cut the diffusion loss (at fixed timesteps and noise) to
    under a fifth of the untrained U-Net's. The x0 objective: for one sample, v and ε targets at low
    noise need the U-Net to amplify by 1/σ, which the tiny one learns slowly (measured on fixed
    latents over 100 steps: v 0.28 → 0.19; x0 0.030 → 0.0009)."""
    store = make_store(tmp_path / "one", dims=3, n=3, n_test=2)  # one training volume
    run = tmp_path / "run"
    assert fit(store, run, model={"objective": "x0"},
               train={"steps": 100, "checkpoint_every": 100, "log_every": 100, "autoencoder.steps": 6,
                      "autoencoder.disc_start": 100, "autoencoder.checkpoint_every": 6}) == 100
    gen = LatentDiffusionGenerator.load(run, device="cpu")
    images, labels = store.read(store.indices("train"))
    x0 = gen.codec.encode(images, labels).expand(4, *gen.config.autoencoder.latent_shape)
    config = gen.config.diffusion
    seed = json.loads((run / "run.json").read_text())["seed"]
    torch.manual_seed(derive_seed(seed, INIT_STREAM))  # the diffusion task's initial U-Net
    initial = build_unet(config, gen.codec.n_channels)
    scheduler = scheduler_for(config)

    def loss(net) -> float:
        with torch.no_grad():
            return sum(float(training_loss(net, x0, config, scheduler, StepRandom(99, k))) for k in range(16)) / 16

    before, after = loss(initial), loss(gen.network)
    assert after < 0.2 * before, (before, after)


def test_samples_have_the_store_shape_valid_labels_and_are_deterministic(run3d, tmp_path):
    gen = load_generator(run3d, device="cpu")
    assert isinstance(gen, LatentDiffusionGenerator) and gen.step == 4 and gen.codec.autoencoder.step == 4
    a, b, c = samples(gen, seed=1), samples(gen, seed=1), samples(gen, seed=2)
    assert [x.shape for x, _ in a] == [(2, 4, 16, 16, 16), (1, 4, 16, 16, 16)]
    for (ia, la), (ib, lb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert not torch.equal(a[0][0], c[0][0])
    for images, labels in a:
        assert images.dtype == torch.float32 and 0 <= float(images.min()) and float(images.max()) <= 1
        assert labels.dtype == torch.uint8 and labels.shape == (images.shape[0], 16, 16, 16)
        assert set(labels.unique().tolist()) <= {0, 1, 2, 3}
    assert gen.resolve_sampler("ddpm", None) == ("ddpm", 200)
    assert not torch.equal(samples(gen, sampler="ddpm")[0][0], samples(gen)[0][0])

    saved = LatentDiffusionGenerator.load(gen.save(tmp_path / "saved"), device="cpu")
    for (ia, la), (ib, lb) in zip(samples(saved, seed=1), a):
        assert torch.equal(ia, ib) and torch.equal(la, lb)

    store = sample_run(run3d, tmp_path / "syn", n=3, batch=2, steps=3, seed=1, device="cpu", progress=False)
    assert store.synthetic and store.dims == 3 and store.sample_shape == (4, 16, 16, 16) and len(store) == 3
    prov = store.meta["provenance"]
    assert (prov["generator"], prov["autoencoder_step"], prov["latent_scaling"], prov["checkpoint_step"]) == \
        ("ldm", 4, "minmax", 4)
    images, labels = store.read(slice(None))
    assert torch.equal(torch.from_numpy(images), torch.cat([x for x, _ in a]))
    assert torch.equal(torch.from_numpy(labels), torch.cat([y for _, y in a]))


def checkpoint_tensors(run):
    """Every weight of both stages' last checkpoints, and the latent scaling's text."""
    out = {}
    for stage, folder, names in (("autoencoder", run / "autoencoder", ("autoencoder", "discriminators")),
                                 ("diffusion", run, ("model", "ema"))):
        step, ckpt = latest_checkpoint(folder)
        out.update({f"{stage}/{name}/{k}": v for name in names
                    for k, v in load_file(str(ckpt / f"{name}.safetensors")).items()})
        out[f"{stage}/step"] = step
    out["scaling"] = (run / LATENT_SCALING).read_text()
    return out


@pytest.mark.parametrize("stage", ["autoencoder", "diffusion"])
def test_kill_and_resume_in_each_stage_equals_uninterrupted(store3d, run3d, tmp_path, monkeypatch, stage):
    """Killed at step 3 of the stage (its last checkpoint: step 2), then resumed (CPU)."""
    task = AutoencoderTask if stage == "autoencoder" else DiffusionTask
    original = task.training_step

    def killed(self, batch, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt
        return original(self, batch, ctx)

    cut = tmp_path / "cut"
    monkeypatch.setattr(task, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(store3d, cut)
    monkeypatch.setattr(task, "training_step", original)
    assert json.loads((cut / "run.json").read_text())["kind"] == "ldm"
    if stage == "autoencoder":
        assert latest_checkpoint(cut / "autoencoder")[0] == 2
        assert not (cut / LATENT_SCALING).exists() and latest_checkpoint(cut) is None
    else:
        assert latest_checkpoint(cut)[0] == 2 and read_scaling(cut).autoencoder_step == 4
        autoencoder_state = (cut / "autoencoder" / "state.json").read_text()
        with pytest.raises(SynthmedError, match="autoencoder.steps 6: the diffusion stage is trained on the "
                                                "autoencoder at step 4"):
            fit(store3d, cut, train={"autoencoder.steps": 6}, resume=True)
    assert fit(store3d, cut, resume=True) == 4
    if stage == "diffusion":  # the autoencoder stage was not run again
        assert (cut / "autoencoder" / "state.json").read_text() == autoencoder_state
    full, resumed = checkpoint_tensors(run3d), checkpoint_tensors(cut)
    assert full.keys() == resumed.keys()
    for key, value in full.items():
        same = torch.equal(value, resumed[key]) if isinstance(value, torch.Tensor) else value == resumed[key]
        assert same, key
    ae_seed = json.loads((cut / "autoencoder" / "run.json").read_text())["seed"]
    assert ae_seed == derive_seed(json.loads((cut / "run.json").read_text())["seed"], AUTOENCODER_SEED_STREAM)


def test_cli_trains_both_stages_and_samples_a_store(store3d, tmp_path, monkeypatch, capsys):
    run, out = str(tmp_path / "run"), str(tmp_path / "syn")
    train = ["generator", "train", str(store3d.path), run, "--model", "ldm", "--steps", "2", "--batch", "2",
             "--autoencoder-steps", "2", "--checkpoint-every", "2", "--latent-scaling", "std", "--device", "cpu",
             "--no-progress"]
    code, stdout, err = cli(monkeypatch, capsys, *train)
    assert code == 0 and "to step 2" in stdout, err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["kind"] == "ldm" and info["training"]["autoencoder"]["steps"] == 2
    assert latest_checkpoint(tmp_path / "run" / "autoencoder")[0] == 2 and read_scaling(run).mode == "std"
    code, stdout, err = cli(monkeypatch, capsys, "generator", "sample", run, out, "--n", "2", "--steps", "2",
                            "--batch", "2", "--device", "cpu", "--no-progress")
    assert code == 0 and "2 synthetic samples" in stdout, err
    from synthmed.data.store import Store

    store = Store.open(out)
    _, labels = store.read(slice(None))
    assert store.sample_shape == (4, 16, 16, 16) and int(labels.max()) <= 3
    assert store.meta["provenance"]["latent_scaling"] == "std"
    code, stdout, err = cli(monkeypatch, capsys, *train, "--overwrite")  # an ldm run is the command's own output
    assert code == 0, err
    before = (tmp_path / "run" / "run.json").read_text()
    code, _, err = cli(monkeypatch, capsys, *train, "--resume", "--autoencoder-steps", "3")  # the last one counts
    assert code == 2 and "autoencoder.steps 3" in err
    assert (tmp_path / "run" / "run.json").read_text() == before  # refused before anything is written


def test_2d_store_trains_and_samples_slices(store2d, tmp_path):
    assert fit(store2d, tmp_path / "r2d", train={"steps": 2, "autoencoder.steps": 2}) == 2
    gen = LatentDiffusionGenerator.load(tmp_path / "r2d", device="cpu")
    assert gen.config.diffusion.spatial_dims == 2 and gen.config.diffusion.image_shape == (8, 8)
    (images, labels), = samples(gen, n=2, batch=2, steps=2)
    assert images.shape == (2, 4, 16, 16) and labels.shape == (2, 16, 16) and int(labels.max()) <= 3


def test_study_fit_and_sample_stages_run_ldm(store3d, tmp_path):
    """The study's own ``fit`` and ``sample`` stage functions, as planned from a spec naming ``ldm``."""
    from synthmed.study.plan import make_plan
    from synthmed.study.spec import build_spec
    from synthmed.study.stages import run_fit, run_sample

    spec = build_spec({"data": {"phantom": {"cases": 3, "shape": [32, 48, 48]}, "size": 16, "dims": 3},
                       "segmenters": [{"name": "unet"}], "samples": 2, "device": "cpu",
                       "generators": [{"name": "ldm", "steps": 2, "sample_steps": 2,
                                       "train_overrides": {"autoencoder.steps": 2, "batch": 2}}]})
    stages = {stage.kind: stage for stage in make_plan(spec).stages.values()}
    prepared = tmp_path / "prepare"
    prepared.mkdir()
    (prepared / "store").symlink_to(store3d.path)
    run_fit(stages["fit"], spec, {"prepare": prepared}, tmp_path / "fit", False)
    assert json.loads((tmp_path / "fit" / "run" / "run.json").read_text())["kind"] == "ldm"
    run_sample(stages["sample"], spec, {"fit": tmp_path / "fit"}, tmp_path / "sample", False)
    from synthmed.data.store import Store

    store = Store.open(tmp_path / "sample" / "store")
    assert len(store) == 2 and store.sample_shape == (4, 16, 16, 16)
    assert store.meta["provenance"]["generator"] == "ldm"
