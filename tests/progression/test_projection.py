"""Projection into a StyleGAN's latent space: generated images are recovered, a batch projects each image as
it would alone, and a store becomes a latent dictionary that is atomic, resumable and carries subject,
visit and months."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthmed.data.store import StoreWriter
from synthmed.errors import OutputExistsError, SynthmedError
from synthmed.generators.api import train_generator
from synthmed.generators.gan.config import PRESETS
from synthmed.parallel import torch_threads
from synthmed.progression import project as project_module
from synthmed.progression.config import ProjectionConfig
from synthmed.progression.latents import LatentDictionary, partial_path
from synthmed.progression.losses import DomainPerceptual, ProjectionLoss, noise_penalty, psnr
from synthmed.progression.project import project_images, project_store
from synthmed.progression.schedule import learning_rate, w_noise_scale
from synthmed.progression.synthesis import StyleSynthesis
from synthmed.training import FabricOptions
from synthmed.training.seeding import seeded_init


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def tiny_synthesis(noise_strength: float = 0.01, family: str = "stylegan2") -> StyleSynthesis:
    """An untrained tiny StyleGAN (2 by default) at 16 px (4 image channels + the mask), its noise
    strengths set to ``noise_strength`` (0 at initialisation; small in trained networks) so the
    noise maps matter."""
    from synthmed.generators.registry import generator_class

    cls = generator_class(family)
    config = PRESETS[family]["tiny"].model.model_copy(update={"image_channels": 4, "resolution": 16})
    gen = cls(config)
    with seeded_init(0):
        net = cls.build_network(config)
    for module in net.modules():
        if type(module).__name__ == "NoiseInjection":
            module.weight.data.fill_(noise_strength)
    gen.network = net.eval()
    return StyleSynthesis(gen)


def generated(synthesis: StyleSynthesis, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(encoded samples, their w)`` from random latents and random noise maps."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = synthesis.network.mapping(torch.randn(n, synthesis.z_dim, generator=g))
        maps = [torch.randn(n, 1, *s, generator=g) for s in synthesis.noise_shapes]
        return synthesis.synthesize(w[:, None], maps), w


def test_projection_recovers_images_the_generator_made():
    """The paper's schedule and noise regulariser (300 steps instead of 1000), pixel L2: every
    image generated from a random w and random noise maps comes back at PSNR > 30 dB from a
    start (w_avg) below 15 dB, and its w within a few per cent."""
    synthesis = tiny_synthesis()
    targets, w_true = generated(synthesis, 4)
    w_avg, w_std = synthesis.w_stats(10_000, 0)
    with torch.no_grad():
        start = synthesis.synthesize(w_avg.expand(4, 1, -1), None)
    assert psnr(start, targets).max() < 15
    config = ProjectionConfig(steps=300)
    result = project_images(synthesis, targets, [0, 1, 2, 3], config, w_avg=w_avg, w_std=w_std)
    assert result.w.shape == (4, 1, synthesis.w_dim) and len(result.noise) == len(synthesis.noise_shapes) == 5
    assert (result.psnr > 30).all(), result.psnr
    assert ((result.w[:, 0] - w_true).norm(dim=1) / w_true.norm(dim=1) < 0.1).all()
    for n in result.noise:  # re-normalised after every step, per image
        torch.testing.assert_close(n.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
        torch.testing.assert_close(n.square().mean(dim=(1, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("space", ["w", "wplus"])
def test_a_batch_projects_each_image_as_it_would_be_projected_alone(space):
    synthesis = tiny_synthesis()
    targets, _ = generated(synthesis, 3)
    w_avg, w_std = synthesis.w_stats(1000, 0)
    config = ProjectionConfig(steps=40, space=space, ms_ssim=0.1, l1=0.5)
    batch = project_images(synthesis, targets, [5, 6, 7], config, w_avg=w_avg, w_std=w_std)
    alone = [project_images(synthesis, targets[i : i + 1], [k], config, w_avg=w_avg, w_std=w_std)
             for i, k in enumerate([5, 6, 7])]
    assert batch.w.shape == (3, 1 if space == "w" else synthesis.num_ws, synthesis.w_dim)
    torch.testing.assert_close(batch.w, torch.cat([a.w for a in alone]), atol=1e-5, rtol=0)
    for j, n in enumerate(batch.noise):
        torch.testing.assert_close(n, torch.cat([a.noise[j] for a in alone]), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.loss, torch.cat([a.loss for a in alone]), atol=1e-5, rtol=1e-4)
    # an image's draws follow its key, not its place in the batch
    swapped = project_images(synthesis, targets[[1, 0]], [6, 5], config, w_avg=w_avg, w_std=w_std)
    torch.testing.assert_close(swapped.w, batch.w[[1, 0]], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["stylegan1", "stylegan3"])
def test_stylegan_1_and_3_project_too(family):
    """StyleGAN 1 has a noise input per layer (two per resolution), StyleGAN 3 none."""
    synthesis = tiny_synthesis(family=family)
    assert len(synthesis.noise_shapes) == (6 if family == "stylegan1" else 0)
    targets, _ = generated(synthesis, 2)
    w_avg, w_std = synthesis.w_stats(1000, 0)
    with torch.no_grad():
        start = psnr(synthesis.synthesize(w_avg.expand(2, 1, -1), None), targets)
    result = project_images(synthesis, targets, [0, 1], ProjectionConfig(steps=60, space="wplus"), w_avg=w_avg,
                            w_std=w_std)
    assert result.w.shape == (2, synthesis.num_ws, synthesis.w_dim) and len(result.noise) == len(synthesis.noise_shapes)
    assert (result.psnr > start + 5).all(), (start, result.psnr)


def test_schedule_losses_and_the_noise_penalty():
    c = ProjectionConfig()
    assert learning_rate(0.0, c) == 0 and learning_rate(0.5, c) == pytest.approx(0.1)
    assert learning_rate(0.9, c) < 0.1 and learning_rate(1.0, c) == pytest.approx(0.0)
    assert w_noise_scale(0.0, c, 2.0) == pytest.approx(0.1) and w_noise_scale(0.75, c, 2.0) == 0
    g = torch.Generator().manual_seed(0)
    white = torch.randn(2, 1, 32, 32, generator=g)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 1, 4, 4, generator=g), size=32, mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert (noise_penalty([white]) < 0.01).all() and (noise_penalty([smooth]) > 0.5).all()
    assert noise_penalty([white]).shape == (2,)
    with pytest.raises(ValueError, match="at least one of l2"):
        ProjectionConfig(l2=0)


@pytest.mark.parametrize("distance", ["l2", "l1"])
def test_mask_weight_scales_only_the_mask_channels_error(distance):
    """Targets of 2 image channels and 1 mask channel: an error in the mask channel costs
    ``mask_weight`` times more, one in the image channels the same, and weight 1 is the plain mean."""
    weights = {"l2": 1.0, "l1": 0.0} if distance == "l2" else {"l2": 0.0, "l1": 1.0}
    target = torch.zeros(2, 3, 8, 8)
    in_mask, in_image = target.clone(), target.clone()
    in_mask[:, 2, :2, :2] = 0.5
    in_image[:, 0, :2, :2] = 0.5

    def term(x: torch.Tensor, mask_weight: float) -> torch.Tensor:
        config = ProjectionConfig(mask_weight=mask_weight, noise_regularisation=0, **weights)
        return ProjectionLoss(config, target, image_channels=2).terms(x, [])[distance]
    plain = {"l2": (in_mask - target).square().mean(dim=(1, 2, 3)),
             "l1": (in_mask - target).abs().mean(dim=(1, 2, 3))}[distance]
    assert torch.equal(term(in_mask, 1.0), plain)
    torch.testing.assert_close(term(in_mask, 10.0), 10 * term(in_mask, 1.0))
    torch.testing.assert_close(term(in_image, 10.0), term(in_image, 1.0))
    with pytest.raises(ValueError, match="image_channels"):
        ProjectionLoss(ProjectionConfig(), target, image_channels=4)


def test_domain_perceptual_distance_is_per_image_and_zero_for_a_match():
    from synthmed.features.domain_encoder import DomainEncoder, DomainEncoderConfig

    with seeded_init(0):
        encoder = DomainEncoder(4, 16, DomainEncoderConfig(width=8, feature_dim=16, projection_dim=8))
    perceptual = DomainPerceptual(encoder, 4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 5, 16, 16, generator=g) * 2 - 1, torch.rand(3, 5, 16, 16, generator=g) * 2 - 1
    d = perceptual(x, perceptual.features(y))
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(perceptual(y, perceptual.features(y)), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(perceptual(x[1:2], perceptual.features(y[1:2])), d[1:2])
    assert not any(p.requires_grad for p in perceptual.parameters())


@pytest.fixture(scope="module")
def run(store2d, tmp_path_factory):
    """A tiny StyleGAN 2 run (3 steps) on the 16 px store."""
    path = tmp_path_factory.mktemp("proj") / "sg2"
    train_generator(store2d.path, path, model="stylegan2", fabric=FabricOptions(device="cpu"), progress=False,
                    train_overrides={"steps": 3, "checkpoint_every": 3, "log_every": 1, "r1_interval": 2,
                                     "pl_interval": 2, "ada_interval": 1})
    return path


FAST = ProjectionConfig(steps=6, batch=3, w_avg_samples=200)


def test_project_store_writes_a_latent_dictionary(store2d, run, tmp_path):
    out = tmp_path / "latents"
    latents = project_store(store2d, run, out, config=FAST, device="cpu", progress=False)
    assert isinstance(latents, LatentDictionary) and len(latents) == 8 and latents.space == "w"
    assert sorted(p.name for p in out.iterdir()) == ["latents.json", "loss", "noise_00", "noise_01", "noise_02",
                                                      "noise_03", "noise_04", "psnr", "samples.csv", "w", "w_avg",
                                                      "zarr.json"]
    assert not partial_path(out).exists()
    assert latents.w().shape == (8, 1, 32) and [n.shape for n in latents.noise()][0] == (8, 1, 4, 4)
    rows = latents.samples
    assert rows["index"].tolist() == list(range(8)) and rows["subject"].tolist() == store2d.samples["case_id"].tolist()
    assert rows["months"].isna().all() and (rows["visit"] == 0).all()  # a cross-sectional store
    assert np.isfinite(rows["psnr"]).all() and (rows["loss"] > 0).all()
    meta = json.loads((out / "latents.json").read_text())
    assert meta["format"] == "synthmed-latents" and meta["generator"]["generator"] == "stylegan2"
    assert meta["projection"]["steps"] == 6 and meta["store"]["n"] == 8 and meta["noise_maps"] == 5
    np.testing.assert_allclose(latents.w_avg(), StyleSynthesis.load(run, device="cpu").w_stats(200, 0)[0].numpy(),
                               rtol=1e-6)
    # only a split's samples; W+
    train = project_store(store2d, run, tmp_path / "train", config=FAST.model_copy(update={"space": "wplus"}),
                          split="test", device="cpu", progress=False)
    assert train.samples["index"].tolist() == [6, 7] and train.w().shape == (2, 6, 32)
    np.testing.assert_array_equal(train.trajectories().latents.shape, (2, 6, 32))
    with pytest.raises(OutputExistsError):
        project_store(store2d, run, out, config=FAST, device="cpu", progress=False)


def test_a_killed_projection_resumes_by_batch_to_the_same_result(store2d, run, tmp_path, monkeypatch):
    whole = project_store(store2d, run, tmp_path / "whole", config=FAST, device="cpu", progress=False)
    out = tmp_path / "latents"
    real, calls = project_module.project_images, []

    def dies_in_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(project_module, "project_images", dies_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        project_store(store2d, run, out, config=FAST, device="cpu", progress=False)
    assert not out.exists() and json.loads((partial_path(out) / "progress.json").read_text()) == {"batches": 1}
    monkeypatch.setattr(project_module, "project_images", real)
    with pytest.raises(SynthmedError, match="unfinished projection is there"):
        project_store(store2d, run, out, config=FAST, device="cpu", progress=False)
    with pytest.raises(SynthmedError, match="differs in projection"):
        project_store(store2d, run, out, config=FAST.model_copy(update={"steps": 7}), device="cpu", progress=False,
                      resume=True)
    resumed = []
    monkeypatch.setattr(project_module, "project_images", lambda *a, **k: resumed.append(1) or real(*a, **k))
    latents = project_store(store2d, run, out, config=FAST, device="cpu", progress=False, resume=True)
    assert len(resumed) == 2  # batches 2 and 3 of 3
    np.testing.assert_allclose(latents.w(), whole.w(), atol=1e-6)
    np.testing.assert_allclose(latents.samples["loss"], whole.samples["loss"], rtol=1e-5)
    assert not partial_path(out).exists()
    again = project_store(store2d, run, out, config=FAST, device="cpu", progress=False, resume=True)  # finished
    assert len(resumed) == 2 and len(again) == 8


def test_subject_visit_and_months_come_from_the_store(tmp_path, run):
    rng = np.random.default_rng(0)
    rows = [{"case_id": f"s{i // 2}_v{i % 2}", "slice": 40, "split": "train", "source": "test",
             "subject_id": f"p{i // 2}", "visit": i % 2, "months": [0.0, 6.0][i % 2]} for i in range(4)]
    with StoreWriter(tmp_path / "long", dims=2, channels=("t1", "t1ce", "t2", "flair"), sample_shape=(4, 16, 16),
                     spacing=(1, 1, 1), normalisation={}, provenance={}, synthetic=False) as writer:
        writer.append(rng.random((4, 4, 16, 16), dtype=np.float32), np.zeros((4, 16, 16), np.uint8), rows)
    latents = project_store(writer.store, run, tmp_path / "lat", config=FAST, device="cpu", progress=False)
    assert latents.samples["subject"].tolist() == ["p0", "p0", "p1", "p1"]
    assert latents.samples["visit"].tolist() == [0, 1, 0, 1] and latents.samples["months"].tolist() == [0, 6, 0, 6]
    traj = latents.trajectories()
    assert [t.subject for t in traj.tracks] == ["p0", "p1"] and traj.tracks[0].span == 6


def test_bad_input_is_refused_before_work(store2d, store3d, run, tmp_path):
    with pytest.raises(SynthmedError, match="makes"):
        project_store(store3d, run, tmp_path / "a", config=FAST, device="cpu", progress=False)
    with pytest.raises(SynthmedError, match="needs a domain encoder"):
        project_store(store2d, run, tmp_path / "b", config=FAST.model_copy(update={"perceptual": 1.0}), device="cpu",
                      progress=False)
    progan = tmp_path / "progan"
    train_generator(store2d.path, progan, model="progan", fabric=FabricOptions(device="cpu"), progress=False,
                    train_overrides={"steps": 1, "checkpoint_every": 1, "growth_steps": 0})
    with pytest.raises(SynthmedError, match="needs a StyleGAN"):
        project_store(store2d, progan, tmp_path / "c", config=FAST, device="cpu", progress=False)
    assert not any(p.name in ("a", "b", "c") or p.name.endswith(".partial") for p in tmp_path.iterdir())
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError):  # nothing to resume there: refused before any work
        project_store(store2d, run, tmp_path / "d", config=FAST, device="cpu", progress=False, resume=True)
    assert not partial_path(tmp_path / "d").exists()


def test_the_perceptual_term_with_an_encoder_run(store2d, run, tmp_path):
    from synthmed.features import DomainEncoderConfig, train_domain_encoder

    encoder = tmp_path / "enc"
    train_domain_encoder(store2d, run_dir=encoder, config=DomainEncoderConfig(width=8, feature_dim=16,
                         projection_dim=8, steps=2, batch=4), device="cpu", progress=False)
    config = FAST.model_copy(update={"perceptual": 1.0, "ms_ssim": 0.5})
    latents = project_store(store2d, run, tmp_path / "lat", config=config, encoder=encoder, device="cpu",
                            progress=False)
    assert latents.meta["encoder"] == str(encoder.resolve()) and np.isfinite(latents.w()).all()
