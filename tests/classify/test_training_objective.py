"""The classifier task's objective and validation: dual BN's clean-term weight, the validation
attack (one start for every validation) and the robust best-checkpoint rule through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from cli_inprocess import invoke as cli
from synthmed.classify.config import ClassifierModelConfig, ClassifierTrainConfig
from synthmed.classify.task import ClassificationTask
from synthmed.data.store import Store
from synthmed.training import FabricOptions, StepContext, StepRandom, make_fabric


def make_task(store: Store, mode: str, **train: object) -> ClassificationTask:
    config = ClassifierModelConfig(mode=mode, width=0.125, in_channels=store.sample_shape[0],
                                   image_shape=tuple(store.spatial_shape))
    tc = ClassifierTrainConfig(**{"attack_steps": 2, "eps": 0.02, "alpha": 0.01, **train})
    task = ClassificationTask(config, tc, seed=3, val=store.dataset("test"))
    task.setup(make_fabric(FabricOptions(device="cpu")))
    return task


def first_batch(store: Store) -> tuple[torch.Tensor, torch.Tensor]:
    items = store.dataset("train").__getitems__(list(range(8)))
    return torch.stack([i for i, _ in items]), torch.stack([l for _, l in items])


@pytest.mark.parametrize("weight", [1.0, 0.25, 0.0])
def test_dual_bn_loss_is_the_weighted_clean_term_plus_the_adversarial_term(weight, presence2d):
    task = make_task(presence2d, "dual-bn", clean_weight=weight)
    logs = task.training_step(first_batch(presence2d), StepContext(0, StepRandom(3, 0), task.fabric))
    assert logs["clean"] > 0 and logs["adversarial"] > 0
    torch.testing.assert_close(logs["loss"], weight * logs["clean"] + logs["adversarial"])


def test_the_weight_changes_the_update_and_the_default_is_the_papers(presence2d):
    assert ClassifierTrainConfig().clean_weight == 1.0
    updated = {}
    for weight in (1.0, 0.25):
        task = make_task(presence2d, "dual-bn", clean_weight=weight)
        task.training_step(first_batch(presence2d), StepContext(0, StepRandom(3, 0), task.fabric))
        updated[weight] = torch.cat([p.detach().flatten() for p in task.model.parameters()])
    assert not torch.allclose(updated[1.0], updated[0.25])


def test_validation_attacks_with_one_start_for_every_validation(presence2d):
    task = make_task(presence2d, "adversarial")
    assert task.monitor == "loss" and task.attacks_validation
    first, second = task.validate(2), task.validate(4)
    assert set(first) == {"loss", "auroc", "robust_loss", "robust_auroc"}
    assert first == second  # the same model, the same start: the same figures
    assert first["robust_loss"] > first["loss"]
    other_seed = make_task(presence2d, "adversarial")
    other_seed.seed = 4
    assert other_seed.validate(2)["robust_loss"] != first["robust_loss"]


def test_standard_runs_attack_in_validation_only_for_the_robust_rule(presence2d):
    plain = make_task(presence2d, "standard")
    assert set(plain.validate(2)) == {"loss", "auroc"} and plain.monitor == "loss"
    robust = make_task(presence2d, "standard", select="robust")
    assert robust.monitor == "robust_loss" and "robust_loss" in robust.validate(2)


def test_robust_rule_and_clean_weight_through_the_cli(presence2d, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, out, err = cli(monkeypatch, capsys, "classify", "train", str(run), "--train", str(presence2d.path),
                         "--mode", "dual-bn", "--select", "robust", "--clean-weight", "0.5", "--steps", "4",
                         "--batch", "4", "--validate-every", "2", "--device", "cpu", "--no-progress")
    assert code == 0, err
    training = json.loads((run / "run.json").read_text())["training"]
    assert training["select"] == "robust" and training["clean_weight"] == 0.5
    best = torch.load(run / "checkpoints" / "best" / "state.pt", weights_only=True)
    assert best["extra"]["_monitor"] == "robust_loss"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"val/loss", "val/robust_loss", "val/robust_auroc"} <= set(events.Tags()["scalars"])
    values = {e.step: e.value for e in events.Scalars("val/robust_loss")}
    assert best["extra"]["_best"] == pytest.approx(min(values.values()), rel=1e-6)
    code, _, err = cli(monkeypatch, capsys, "classify", "train", str(tmp_path / "bad"), "--train",
                       str(presence2d.path), "--select", "fastest", "--device", "cpu", "--no-progress")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "select" in lines[0] and not (tmp_path / "bad").exists()
