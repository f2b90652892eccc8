"""The autoencoder stage of latent diffusion on tiny stores: codebook use and restart, the
straight-through gradient, the discriminator start, precision, learning, resume, loading."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from synthmed.errors import SynthmedError
from synthmed.generators.base import FitOptions
from synthmed.generators.latent import (AUTOENCODER_PRESETS, AutoencoderConfig, AutoencoderTask,
                                        AutoencoderTrainConfig, LatentAutoencoder, RestartingEMAQuantizer,
                                        autoencoder_config_for, autoencoder_dir, autoencoder_precision,
                                        load_autoencoder, train_autoencoder)
from synthmed.generators.latent.losses import feature_matching, hinge_d, hinge_g, random_slices
from synthmed.training import FabricOptions, StepContext, StepRandom, latest_checkpoint, make_fabric
from synthmed.training.seeding import seeded_init

TINY = AUTOENCODER_PRESETS["tiny"]
CPU = FabricOptions(device="cpu")


def model(**changes) -> AutoencoderConfig:
    return TINY.model.model_copy(update=changes)


def training(**changes) -> AutoencoderTrainConfig:
    return TINY.train.model_copy(update=changes)


def fit(store, run, *, config=None, train=None, resume=False):
    return train_autoencoder(store, run, config or model(), train or training(),
                             FitOptions(fabric=CPU, resume=resume, progress=False))


def code_perplexity(ae, store) -> float:
    """Perplexity of the codes the train samples' latents are quantized to."""
    images, labels = store.read(store.indices("train"))
    indices = ae.network.code_indices(ae.encode(images, labels)).flatten()
    p = torch.bincount(indices, minlength=ae.config.num_embeddings).float()
    p = p / p.sum()
    return float(torch.exp(-(p * torch.log(p + 1e-10)).sum()))


def reconstruction_l1(ae, store) -> float:
    images, labels = store.read(store.indices("train"))
    x = ae.encoding.encode(images, labels)
    return float((ae.decode_joint(ae.encode_joint(x)) - x).abs().mean())


class Steps:
    """An :class:`AutoencoderTask` set up on a CPU Fabric, stepped by hand."""

    def __init__(self, config: AutoencoderConfig, train: AutoencoderTrainConfig, *, precision: str = "32",
                 seed: int = 0):
        from lightning_fabric import Fabric

        self.fabric = make_fabric(FabricOptions(device="cpu", precision=precision)) if precision == "32" else \
            Fabric(accelerator="cpu", devices=1, precision=precision)
        self.task = AutoencoderTask(config, train, seed)
        self.task.setup(self.fabric)
        self.seed = seed

    def step(self, step: int, batch) -> dict[str, float]:
        ctx = StepContext(step, StepRandom(self.seed, step), self.fabric)
        return {k: float(v) for k, v in self.task.training_step(batch, ctx).items()}

    def weights(self, name: str) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.task.modules()[name].state_dict().items()}


def batch_of(store, n=2):
    images, labels = store.read(list(range(n)))
    return torch.from_numpy(images), torch.from_numpy(labels)


def test_presets_paper_is_khader_brats_and_bad_options_are_errors(store3d):
    paper = AUTOENCODER_PRESETS["paper"]
    m, t = paper.model, paper.train
    assert (m.kind, m.channels, m.latent_channels, m.num_embeddings, m.commitment) == ("vq", (16, 32), 8, 16_384, 0.25)
    assert m.downsampling == 2 and m.latent_shape == (8, 32, 32, 32)  # x2 per axis: 64³ → 32³
    assert (m.disc_channels, m.disc_layers, m.restart_threshold, m.codebook_decay) == (64, 3, 1.0, 0.99)
    assert (t.l1_weight, t.feature_matching, t.perceptual_weight, t.disc_start, t.lr, t.batch) == \
        (4.0, 4.0, 4.0, 10_000, 3e-4, 2)
    assert t.perceptual == "none"  # off by default: LPIPS would be a download
    assert set(AUTOENCODER_PRESETS) == {"tiny", "laptop", "laptop64", "small", "paper"}
    assert autoencoder_config_for(TINY.model, store3d).image_shape == (16, 16, 16)
    with pytest.raises(SynthmedError, match="too small for discriminators"):
        autoencoder_config_for(model(disc_layers=3), store3d)
    with pytest.raises(ValueError, match="divisible by 4"):
        AutoencoderConfig(channels=(8, 8, 8), image_shape=(18, 18, 18), disc_layers=1)
    with pytest.raises(ValueError, match="perceptual_path"):
        AutoencoderTrainConfig(perceptual="domain")
    assert autoencoder_precision("auto", "cpu") == "32" and autoencoder_precision("32", "cpu") == "32"
    with pytest.raises(SynthmedError, match="fp16"):
        autoencoder_precision("fp16", "cuda")
    with pytest.raises(SynthmedError, match="bf16"):
        autoencoder_precision("bf16", "cpu")


def test_codebook_is_used_after_a_few_steps(store3d, tmp_path):
    """Dead-code restart keeps the codebook in use: perplexity of the training latents' codes
    after 10 steps is above 6 (of 32 codes); without restart it collapses to about 2."""
    fit(store3d, tmp_path / "restart", train=training(steps=10, disc_start=100, checkpoint_every=10))
    fit(store3d, tmp_path / "none", config=model(restart_threshold=0), train=training(steps=10, disc_start=100,
                                                                                       checkpoint_every=10))
    used = code_perplexity(load_autoencoder(tmp_path / "restart", device="cpu"), store3d)
    collapsed = code_perplexity(load_autoencoder(tmp_path / "none", device="cpu"), store3d)
    assert used > 6 and used > 2.5 * collapsed, (used, collapsed)


def test_forced_dead_code_is_replaced_by_an_encoder_output():
    torch.manual_seed(0)
    q = RestartingEMAQuantizer(3, 8, 4, decay=0.99, restart_threshold=1.0).train()
    with torch.no_grad():
        q.ema_cluster_size.fill_(100.0)
        q.ema_w.copy_(q.embedding.weight * 100.0)
        q.ema_cluster_size[5] = 0.0  # forced dead, and far from every input: never chosen
        q.ema_w[5] = 1e4
        q.embedding.weight[5] = 1e4
    z = torch.randn(2, 4, 4, 4, 4)
    q(z)
    before = q.embedding.weight.detach().clone()
    assert q.dead_codes().tolist() == [i == 5 for i in range(8)]
    assert q.restart_dead_codes(torch.Generator().manual_seed(1)) == 1
    after = q.embedding.weight.detach()
    flat = z.permute(0, 2, 3, 4, 1).reshape(-1, 4)
    assert (flat == after[5]).all(1).any()  # one of the batch's encoder outputs
    assert torch.equal(after[torch.arange(8) != 5], before[torch.arange(8) != 5])  # the others untouched
    assert float(q.ema_cluster_size[5]) == 1.0 and not q.dead_codes()[5]
    assert q.restart_dead_codes() == 0  # consumed: nothing until the next training forward
    q(z)  # an EMA update keeps a restarted code where it was put (the nearest inputs pull it)
    assert torch.isfinite(q.embedding.weight).all() and float(q.embedding.weight[5].abs().max()) < 100


def test_straight_through_gradient_reaches_the_encoder():
    config = model(image_shape=(16, 16, 16))
    with seeded_init(0):
        ae = LatentAutoencoder(config).train()
    x = torch.rand(2, config.in_channels, 16, 16, 16) * 2 - 1
    out = ae(x)
    out.reconstruction.abs().mean().backward()  # the reconstruction alone: no commitment term
    encoder = [p.grad for p in ae.net.encoder.parameters()]
    assert all(g is not None for g in encoder) and sum(float(g.abs().sum()) for g in encoder) > 0
    assert ae.quantizer.embedding.weight.grad is None  # the codebook learns by EMA, not by gradient
    z = ae.encode(x)
    q = ae.quantize(z)
    codes = ae.quantizer.embedding.weight
    assert torch.equal(q[0, :, 0, 0, 0], codes[ae.code_indices(z)[0, 0, 0, 0]])
    assert not torch.equal(ae.decode(z), ae.decode(z, quantize=False))


def test_adversarial_terms_give_no_gradient_before_the_start_step(store3d):
    """Before ``disc_start`` the adversarial weights change nothing and the discriminators stay
    as they were; from it on they change the autoencoder's step."""
    config = autoencoder_config_for(model(), store3d)
    batch = batch_of(store3d)
    quiet = Steps(config, training(disc_start=1, slice_adversarial=0, volume_adversarial=0, feature_matching=0))
    loud = Steps(config, training(disc_start=1, slice_adversarial=50, volume_adversarial=50, feature_matching=50))
    disc = loud.weights("discriminators")
    logs = loud.step(0, batch)
    quiet.step(0, batch)
    assert "loss_d" not in logs and "g_slice" not in logs
    a, b = quiet.weights("autoencoder"), loud.weights("autoencoder")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(disc[k], v) for k, v in loud.weights("discriminators").items())
    logs = loud.step(1, batch)
    quiet.step(1, batch)
    assert {"loss_d", "g_slice", "g_volume", "feature_matching"} <= set(logs)
    a, b = quiet.weights("autoencoder"), loud.weights("autoencoder")
    assert not all(torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())
    assert not all(torch.equal(disc[k], v) for k, v in loud.weights("discriminators").items())


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_a_step_at_the_chosen_precision_and_in_bf16_gives_finite_losses(store3d, kind):
    config = autoencoder_config_for(model(kind=kind), store3d)
    train = training(disc_start=0)
    chosen = autoencoder_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")
    fabric_precision = {"32": "32", "bf16": "bf16-mixed"}[chosen]
    for precision in dict.fromkeys((fabric_precision, "bf16-mixed")):  # bf16 autocast runs on the CPU too
        logs = Steps(config, train, precision=precision).step(0, batch_of(store3d))
        assert {"loss", "l1", "loss_d", "g_slice", "g_volume"} <= set(logs)
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), (precision, logs)


def test_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert float(hinge_d(real, fake)) == pytest.approx(0.5 * (0.25 + 0.75))
    assert float(hinge_g(fake)) == pytest.approx(0.75)
    f = [torch.ones(1, 2, 2), torch.zeros(1, 2), torch.full((1, 1), 9.0)]
    r = [torch.zeros(1, 2, 2), torch.ones(1, 2), torch.zeros(1, 1)]
    assert float(feature_matching(f, r)) == pytest.approx(2.0)  # the logits (last) are not matched
    x = torch.arange(2 * 1 * 3 * 2 * 2.0).view(2, 1, 3, 2, 2)
    s = random_slices(x, torch.tensor([2, 0]))
    assert torch.equal(s[0], x[0, :, 2]) and torch.equal(s[1], x[1, :, 0])
    assert random_slices(x[:, :, 0], None) is not None


def test_reconstruction_improves_and_decodes_to_valid_labels(store3d, tmp_path):
    run = tmp_path / "ldm"
    fit(store3d, run, train=training(steps=1, disc_start=100, checkpoint_every=40))
    first = reconstruction_l1(load_autoencoder(run, device="cpu"), store3d)
    assert fit(store3d, run, train=training(steps=30, disc_start=100, checkpoint_every=40), resume=True) == 30
    ae = load_autoencoder(autoencoder_dir(run), device="cpu")
    later = reconstruction_l1(ae, store3d)
    assert later < 0.75 * first, (first, later)
    assert ae.step == 30 and ae.latent_shape == (4, 8, 8, 8)
    z = torch.randn(3, *ae.latent_shape) * 5
    images, labels = ae.decode(z)
    assert images.shape == (3, 4, 16, 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert labels.shape == (3, 16, 16, 16) and labels.dtype == torch.uint8 and int(labels.max()) <= 3
    info = json.loads((run / "autoencoder" / "run.json").read_text())
    assert info["kind"] == "autoencoder" and info["training"]["precision"] == "32"
    assert info["model"]["image_shape"] == [16, 16, 16]


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_kill_and_resume_equals_uninterrupted(store3d, tmp_path, monkeypatch, kind):
    """The discriminators switch on at step 2, a checkpoint at 2, the kill at 3 (CPU)."""
    config, train = model(kind=kind), training(steps=4, disc_start=2, checkpoint_every=2)
    fit(store3d, tmp_path / "full", config=config, train=train)
    original = AutoencoderTask.training_step

    def killed(self, batch, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(AutoencoderTask, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(store3d, tmp_path / "cut", config=config, train=train)
    monkeypatch.setattr(AutoencoderTask, "training_step", original)
    assert latest_checkpoint(tmp_path / "cut" / "autoencoder")[0] == 2
    assert fit(store3d, tmp_path / "cut", config=config, train=train, resume=True) == 4
    for name in ("autoencoder", "discriminators"):
        full = load_file(str(latest_checkpoint(tmp_path / "full" / "autoencoder")[1] / f"{name}.safetensors"))
        cut = load_file(str(latest_checkpoint(tmp_path / "cut" / "autoencoder")[1] / f"{name}.safetensors"))
        assert all(torch.equal(full[k], cut[k]) for k in full), name


def test_2d_store_has_only_the_slice_discriminator(store2d, tmp_path):
    assert fit(store2d, tmp_path / "r2d", train=training(steps=2, disc_start=0)) == 2
    disc = load_file(str(latest_checkpoint(tmp_path / "r2d" / "autoencoder")[1] / "discriminators.safetensors"))
    assert disc and all(k.startswith("slice.") for k in disc)
    ae = load_autoencoder(tmp_path / "r2d", device="cpu")
    images, labels = store2d.read([0, 1])
    assert ae.encode(images, labels).shape == (2, 4, 8, 8)


def test_perceptual_domain_and_radimagenet(store3d, tmp_path):
    from monai.networks.nets import resnet50

    from synthmed.features import DomainEncoderConfig, RadImageNetPerceptual, train_domain_encoder

    encoder_run = tmp_path / "encoder"
    train_domain_encoder(store3d, run_dir=encoder_run, config=DomainEncoderConfig(width=8, feature_dim=16,
                                                                                  projection_dim=8, steps=1, batch=2),
                         device="cpu", progress=False)
    config = autoencoder_config_for(model(), store3d)
    logs = Steps(config, training(perceptual="domain", perceptual_path=str(encoder_run))).step(0, batch_of(store3d))
    assert logs["perceptual"] > 0
    with pytest.raises(SynthmedError, match="not a domain encoder run"):
        Steps(config, training(perceptual="domain", perceptual_path=str(tmp_path)))

    weights = tmp_path / "radimagenet.safetensors"
    with seeded_init(0):
        net = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, bias_downsample=False, feed_forward=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    perceptual = RadImageNetPerceptual(weights, 4)
    x = (torch.rand(2, 5, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 5, 32, 32) * 2 - 1
    d = perceptual.distance(x, y)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert float(x.grad[:, :4].abs().sum()) > 0 and float(x.grad[:, 4].abs().sum()) == 0  # the mask is not seen
    torch.testing.assert_close(perceptual.distance(y, y), torch.zeros(2), atol=1e-6, rtol=0)
    with pytest.raises(SynthmedError, match="not found"):
        RadImageNetPerceptual(tmp_path / "missing.pt", 4)


def test_run_folder_errors(tmp_path, store3d):
    from synthmed.errors import OutputExistsError
    from synthmed.outputs import OutputIsInputError

    with pytest.raises(SynthmedError, match="no autoencoder stage"):
        load_autoencoder(tmp_path)
    fit(store3d, tmp_path / "r", train=training(steps=1))
    with pytest.raises(OutputExistsError):
        fit(store3d, tmp_path / "r", train=training(steps=1))
    with pytest.raises(SynthmedError, match="changed model config"):
        fit(store3d, tmp_path / "r", config=model(latent_channels=2), train=training(steps=2), resume=True)
    with pytest.raises(OutputIsInputError):
        fit(store3d, store3d.path / "ldm", train=training(steps=1))
    assert not (store3d.path / "ldm").exists()
    with pytest.raises(SynthmedError, match="perceptual_path"):  # an unvalidated copy is checked again
        fit(store3d, tmp_path / "p", train=training(perceptual="radimagenet"))
