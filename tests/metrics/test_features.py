"""Feature extractors: the domain encoder (trained through the toolkit, saved and reused), 2.5D,
RadImageNet weights loading, and clear errors for missing weights or packages."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from synthmed.errors import SynthmedError
from synthmed.features import (
    DomainEncoderConfig,
    encoder_dir,
    extract_features,
    load_domain_encoder,
    make_extractor,
    orthogonal_planes,
    presence_class,
    train_domain_encoder,
)

TINY = DomainEncoderConfig(width=8, feature_dim=16, projection_dim=8, steps=3, batch=4)


def test_domain_encoder_trains_saves_and_is_reused(store2d, tmp_path):
    run = tmp_path / "enc"
    enc = train_domain_encoder(store2d, run_dir=run, config=TINY, device="cpu", progress=False)
    assert (run / "run.json").is_file() and any((run / "checkpoints").iterdir())
    again = train_domain_encoder(store2d, run_dir=run, config=TINY, device="cpu", progress=False)  # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), again.state_dict().values()))
    with pytest.raises(SynthmedError, match="another store or configuration"):
        train_domain_encoder(store2d, run_dir=run, config=DomainEncoderConfig(steps=4), device="cpu", progress=False)
    extractor = make_extractor("domain", real=store2d, encoder_dir_=run, encoder_config=TINY, device="cpu")
    feats, logits = extract_features(store2d, extractor, indices=store2d.indices("train"), batch_size=3)
    assert feats.shape == (6, 16) and logits.shape == (6, 8) and np.isfinite(feats).all()
    assert encoder_dir(store2d).name == store2d.path.name + "-encoder"
    alone = load_domain_encoder(run)  # without the store: what the projection's perceptual term loads
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), alone.state_dict().values()))
    with pytest.raises(SynthmedError, match="not a domain encoder run"):
        load_domain_encoder(tmp_path)


def test_domain_encoder_training_is_a_pure_function_of_its_seed(store2d, tmp_path):
    """Two fresh trainings on the same store with the same config and seed give bit-identical
    weights, whatever the global RNG holds; another seed gives other weights."""
    trained = []
    for i, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)  # what ran before in the process must not matter
        enc = train_domain_encoder(store2d, run_dir=tmp_path / f"e{i}", config=TINY, device="cpu", progress=False)
        trained.append(enc.state_dict())
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
    other = train_domain_encoder(store2d, run_dir=tmp_path / "e2", config=replace(TINY, seed=1), device="cpu",
                                 progress=False).state_dict()
    assert not all(torch.equal(trained[0][k], other[k]) for k in other)


def test_3d_is_embedded_as_three_planes(store3d, tmp_path):
    vol = torch.arange(2 * 4 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 4, 4, 6, 8)
    planes = orthogonal_planes(vol)
    assert [tuple(p.shape) for p in planes] == [(2, 4, 6, 8)] * 3
    torch.testing.assert_close(planes[0], vol[:, :, 2])
    extractor = make_extractor("domain", real=store3d, encoder_dir_=tmp_path / "e3", encoder_config=TINY, device="cpu",
                               progress=False)
    feats, _ = extract_features(store3d, extractor)
    assert feats.shape == (6, 48)


def test_presence_class():
    labels = torch.zeros(3, 4, 4, dtype=torch.uint8)
    labels[1, 0, 0] = 2
    labels[2, 0, 0], labels[2, 1, 1] = 1, 3
    assert presence_class(labels).tolist() == [0, 2, 5]


def test_radimagenet_loads_torchvision_style_weights(store2d, tmp_path):
    from monai.networks.nets import resnet50

    net = resnet50(spatial_dims=2, n_input_channels=3, conv1_t_stride=2, bias_downsample=False, num_classes=165)
    save_file({f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "rad.safetensors"))
    extractor = make_extractor("radimagenet", weights=tmp_path / "rad.safetensors")
    feats, logits = extract_features(store2d, extractor, indices=np.arange(2))
    assert feats.shape == (2, 2048) and logits is None
    net.eval()
    grey = torch.from_numpy(store2d.read([0])[0][:, :1])
    x = grey.repeat(1, 3, 1, 1)[:, [2, 1, 0]] - torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1)
    with torch.no_grad():
        body = torch.nn.Sequential(*list(net.children())[:-1])
        expected = body(x).flatten(1)
    assert extractor.channel_reduce == "mean"  # two identical channels average to the one-channel features
    torch.testing.assert_close(extractor(grey.repeat(1, 2, 1, 1))[0], expected, rtol=1e-4, atol=1e-5)
    save_file({"conv1.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(SynthmedError, match="not ResNet-50 weights"):
        make_extractor("radimagenet", weights=tmp_path / "bad.safetensors")


def test_missing_weights_and_packages_are_clear(tmp_path):
    with pytest.raises(SynthmedError, match="not found.*--weights"):
        make_extractor("radimagenet", weights=tmp_path / "nope.pt")
    with pytest.raises(SynthmedError, match="needs --weights PATH"):
        make_extractor("inception")
    with pytest.raises(SynthmedError, match="torch-fidelity|not found"):
        make_extractor("inception", weights=tmp_path / "nope.pth")
    with pytest.raises(SynthmedError, match="must be one of"):
        make_extractor("imagenet", weights=tmp_path)
