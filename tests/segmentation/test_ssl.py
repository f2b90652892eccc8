"""Self-supervised pre-training (``--pretrain-mode ssl``): no label is read, the pretext loss
goes down in 2D and 3D, the body transfers into the fine-tuning, resume after a kill, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_stores import make_store

from synthmed.data.store import ImageDataset, Store
from synthmed.errors import DataError, SynthmedError
from synthmed.segmentation import resolve_configs, train_segmenter
from synthmed.segmentation.api import config_for
from synthmed.segmentation.networks import build_network, is_head
from synthmed.segmentation.ssl import SSL_KIND, InpaintingTask, PretextOptions, corrupt, cutout_masks
from synthmed.segmentation.task import SegmentationTask
from synthmed.training import FabricOptions, StepRandom, make_fabric
from synthmed.training.checkpoint import latest_checkpoint, load_weights

CPU = FabricOptions(device="cpu")


def fit(out, stores, **kw):
    kw["train_overrides"] = {"steps": 2, "batch": 2, "validate_every": 0, **kw.get("train_overrides", {})}
    return train_segmenter(out, [s.path for s in stores], fabric=CPU, progress=False, **kw)


def unreadable_labels(store: Store, path: Path) -> Store:
    """A copy of ``store`` whose label chunk files are garbage: reading any label raises."""
    shutil.copytree(store.path, path)
    chunks = [f for f in (path / "label" / "c").rglob("*") if f.is_file()]
    assert chunks
    for file in chunks:
        file.write_bytes(b"\xff" * 64)
    return Store.open(path)


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run)[1] / "model.safetensors"))


def test_ssl_pretraining_reads_no_labels(real2d, syn2d, tmp_path):
    broken = unreadable_labels(syn2d, tmp_path / "nolabels")
    with pytest.raises(DataError):  # the control: reading the labels does fail
        broken.dataset().fetch([0])
    images, empty = ImageDataset(broken, [5, 0, 1, 4]).fetch([0, 1, 2, 3])
    assert torch.equal(images, torch.from_numpy(syn2d.read([5, 0, 1, 4])[0])) and empty.shape == (4, 0)
    assert fit(tmp_path / "ssl", [real2d], pretrain=broken.path, pretrain_mode="ssl", pretrain_steps=2) == 2
    info = json.loads((tmp_path / "ssl" / "pretrain" / "run.json").read_text())
    assert info["kind"] == SSL_KIND and info["data"]["labels"] == "not read" and info["data"]["n_train"] == 6
    with pytest.raises(DataError):  # supervised pre-training does read them
        fit(tmp_path / "sup", [real2d], pretrain=broken.path, pretrain_steps=2)


def test_corruption_cuts_cuboids_and_adds_noise():
    options = PretextOptions(max_cutouts=3, cutout_size=(0.25, 0.5), noise_std=0.1)
    images = torch.full((4, 2, 16, 24), 0.5)
    corrupted, mask = corrupt(images, StepRandom(3, 7), options)
    again, _ = corrupt(images, StepRandom(3, 7), options)
    assert torch.equal(corrupted, again) and mask.shape == (4, 16, 24)
    for m in mask:  # 1 to 3 cuboids, each at most half of each side
        assert 0 < m.sum() <= 3 * 8 * 12 and m.any(0).sum() <= 3 * 12 and m.any(1).sum() <= 3 * 8
    outside = corrupted - images
    assert abs(float(outside.permute(1, 0, 2, 3)[:, ~mask].std()) - 0.1) < 0.01
    fill = corrupted.permute(1, 0, 2, 3)[:, mask]
    assert 0 <= float(fill.min()) and float(fill.max()) < 1 and abs(float(fill.mean()) - 0.5) < 0.05
    # per sample of the global batch: rank 1 of 2 draws the second half of one process's batch of 8
    u = StepRandom(3, 7).rand((8, 3, 5))
    half = StepRandom(3, 7, rank=1, world_size=2).rand((4, 3, 5))
    assert torch.equal(cutout_masks((4, 16, 24), half, options), cutout_masks((8, 16, 24), u, options)[4:])
    # 3D: a cuboid spans all three axes
    cube = cutout_masks((1, 8, 8, 8), torch.full((1, 1, 7), 0.0), PretextOptions(max_cutouts=1, cutout_size=(0.5, 0.5)))
    assert cube.sum() == 64 and cube[0, :4, :4, :4].all()


@pytest.mark.parametrize("dims", [2, 3])
def test_pretext_loss_goes_down(tmp_path, dims):
    """The reconstruction loss of a fixed corrupted batch, before and after 12 steps."""
    real = make_store(tmp_path / "real", dims=dims, n=6, n_test=2, seed=3)
    syn = make_store(tmp_path / "syn", dims=dims, n=8 if dims == 2 else 4, n_test=0, seed=1, synthetic=True)
    fit(tmp_path / "run", [real], pretrain=syn.path, pretrain_mode="ssl", pretrain_steps=12,
        train_overrides={"steps": 1, "checkpoint_every": 12})
    config, train = resolve_configs("unet", "tiny")
    task = InpaintingTask(config_for(config, syn), train, seed=0)
    task.setup(make_fabric(CPU))
    images = torch.from_numpy(syn.read(slice(0, 4))[0])
    with torch.no_grad():
        before = task.reconstruction_loss(images, StepRandom(5, 1000)).item()
        load_weights(task.model, latest_checkpoint(tmp_path / "run" / "pretrain")[1] / "model.safetensors")
        after = task.reconstruction_loss(images, StepRandom(5, 1000)).item()
    assert after < 0.8 * before, (before, after)


def test_body_transfers_into_the_fine_tuning(real2d, syn2d, tmp_path, monkeypatch):
    """After SSL the body (encoder and decoder) differs from its initialisation, and the
    fine-tuning starts from it; its heads (deep supervision on) start from the seeded
    initialisation of a run without pre-training."""
    started: dict[str, dict[str, torch.Tensor]] = {}
    setup = SegmentationTask.setup

    def recording(self, fabric):
        setup(self, fabric)
        if type(self) is SegmentationTask:  # the fine-tuning (or scratch) task, not the pretext one
            started[self.train.lr] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    monkeypatch.setattr(SegmentationTask, "setup", recording)
    ds = {"deep_supervision": True}
    fit(tmp_path / "ssl", [real2d], pretrain=syn2d.path, pretrain_mode="ssl", pretrain_steps=3, model_overrides=ds,
        train_overrides={"steps": 1, "lr": 1e-3})
    fit(tmp_path / "scratch", [real2d], model_overrides=ds, train_overrides={"steps": 1, "lr": 2e-3})
    tuned, scratch = started[1e-3], started[2e-3]
    pretrained = last_weights(tmp_path / "ssl" / "pretrain")
    config, train = resolve_configs("unet", "tiny", ds)
    init = InpaintingTask(config_for(config, syn2d), train, seed=0)
    init.setup(make_fabric(CPU))
    initial = {k: v.detach() for k, v in init.model.state_dict().items()}
    body = [k for k in tuned if not is_head("unet", k)]
    assert len(body) < len(tuned) and set(body) == {k for k in pretrained if not is_head("unet", k)}
    assert all(torch.equal(tuned[k], pretrained[k]) for k in body)
    weights = [k for k in body if k.endswith("conv.weight")]
    encoder = [k for k in weights if k.startswith(("input_block", "downsamples", "bottleneck"))]
    assert encoder and len(encoder) < len(weights)  # the decoder transfers too
    assert all(not torch.equal(pretrained[k], initial[k]) for k in weights)
    heads = [k for k in tuned if is_head("unet", k)]
    assert pretrained["output_block.conv.conv.weight"].shape[0] == 4  # the image channels
    assert tuned["output_block.conv.conv.weight"].shape[0] == 3
    assert all(torch.equal(tuned[k], scratch[k]) for k in heads)
    info = json.loads((tmp_path / "ssl" / "run.json").read_text())["training"]["pretrain"]
    assert info == {"source": str(syn2d.path), "kind": "store", "mode": "ssl", "steps": 3}
    pre = json.loads((tmp_path / "ssl" / "pretrain" / "run.json").read_text())
    assert pre["model"]["deep_supervision"] is False and pre["training"]["pretext"]["max_cutouts"] == 5


def test_swin_body_loads_from_a_reconstruction_head(tmp_path):
    config, _ = resolve_configs("swin", "tiny")
    config = config.model_copy(update={"in_channels": 2, "image_shape": (64, 64)})
    torch.manual_seed(0)
    source = build_network(config, out_channels=2)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = build_network(config)
    load_weights(target, tmp_path / "w.safetensors", exclude=lambda k: is_head("swin", k))
    theirs, ours = source.state_dict(), target.state_dict()
    assert [k for k in ours if is_head("swin", k)] == ["out.conv.conv.weight", "out.conv.conv.bias"]
    assert all(torch.equal(theirs[k], ours[k]) for k in ours if not is_head("swin", k))
    with pytest.raises(SynthmedError, match="do not fit"):  # the heads differ: not without exclude
        load_weights(target, tmp_path / "w.safetensors")


def test_kill_in_ssl_pretraining_and_resume_equals_uninterrupted(real2d, syn2d, tmp_path, monkeypatch):
    """A checkpoint at pre-training step 2, the kill at 3; the resumed run equals an uninterrupted one."""
    kw = dict(pretrain=syn2d.path, pretrain_mode="ssl", pretrain_steps=4, train_overrides={"checkpoint_every": 2})
    fit(tmp_path / "full", [real2d], **kw)
    original = InpaintingTask.training_step

    def killed(self, batch, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt
        return original(self, batch, ctx)

    monkeypatch.setattr(InpaintingTask, "training_step", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "cut", [real2d], **kw)
    monkeypatch.setattr(InpaintingTask, "training_step", original)
    assert latest_checkpoint(tmp_path / "cut" / "pretrain")[0] == 2 and latest_checkpoint(tmp_path / "cut") is None
    assert fit(tmp_path / "cut", [real2d], resume=True, **kw) == 2
    for part in ("pretrain", "."):
        full, cut = last_weights(tmp_path / "full" / part), last_weights(tmp_path / "cut" / part)
        assert all(torch.equal(full[k], cut[k]) for k in full), part
    with pytest.raises(SynthmedError, match="segmenter-ssl"):  # the mode cannot change on resume
        fit(tmp_path / "cut", [real2d], pretrain=syn2d.path, pretrain_steps=4, resume=True)


def test_ssl_errors(real2d, syn2d, tmp_path):
    fit(tmp_path / "done", [real2d], train_overrides={"steps": 1})
    with pytest.raises(SynthmedError, match="finished segmenter run.*--pretrain STORE") as caught:
        fit(tmp_path / "x", [real2d], pretrain=tmp_path / "done", pretrain_mode="ssl")
    assert str(caught.value).count("\n") == 0 and not (tmp_path / "x").exists()
    with pytest.raises(SynthmedError, match="needs --pretrain STORE"):
        fit(tmp_path / "y", [real2d], pretrain_mode="ssl")
    with pytest.raises(SynthmedError, match="supervised or ssl"):
        fit(tmp_path / "z", [real2d], pretrain=syn2d.path, pretrain_mode="contrastive")
    no_train = make_store(tmp_path / "testonly", n=4, n_test=4)
    with pytest.raises(SynthmedError, match="no 'train' split"):
        fit(tmp_path / "w", [real2d], pretrain=no_train.path, pretrain_mode="ssl")
    assert not any((tmp_path / n).exists() for n in ("w", "y", "z"))
