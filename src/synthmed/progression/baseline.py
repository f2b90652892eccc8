"""The end-to-end baseline of the risk: a classifier trained on training subjects' baseline images to predict
whether they progress fast (Han et al. compare their risk against such a ResNet).

**Data.** The training subjects of the fitted store (its ``train`` split) with a follow-up at the
horizon (:func:`~synthmed.progression.followup.followup_pairs`): each subject's baseline image,
its target 1 for a fast progressor (the follow-up's mask graded at least two grades above the
baseline's, :func:`~synthmed.progression.followup.pair_grades`), else 0. One sample per subject;
no validation subjects (there are few), so the last checkpoint is used.

**Network and training.** A classifier network of :mod:`synthmed.classify` (default ResNet-18,
:func:`~synthmed.classify.networks.classifier_for`, one logit) at a classifier preset's size and
training settings, trained by the classifier's standard task (BCE, Adam, the preset's learning
rate steps) through the training toolkit, on in-memory batches
(:func:`~synthmed.training.data.tensor_batches`). Its run directory (kind
``progressor-classifier``) is ``RUN/baselines/m<M>-<network>-<preset>/``: ``evaluate`` trains it
once and reuses it (a killed training resumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthmed.classify.config import ClassifierModelConfig
from synthmed.classify.task import ClassificationTask
from synthmed.config import build_config
from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.progression.followup import followup_pairs, pair_grades

KIND = "progressor-classifier"

__all__ = ["KIND", "NoBaselineTargets", "ProgressorTask", "baseline_run_name", "load_progressor_classifier",
           "progressor_targets", "train_progressor_classifier"]


class NoBaselineTargets(SynthmedError):
    """The training subjects give the baseline classifier nothing to learn at a horizon (no follow-up
    there, or one class only)."""


class ProgressorTask(ClassificationTask):
    """The classifier's training task on batches ``(images, targets float32 [B, 1])``: the targets are
    given, not read from masks."""

    def targets_of(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.float()


def baseline_run_name(horizon: float, network: str, preset: str) -> str:
    """``m<M>-<network>-<preset>``, e.g. ``m36-resnet18-laptop``."""
    return f"m{horizon:g}-{network}-{preset}"


def progressor_targets(store: Store, horizon: float, split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(baseline indices int64 [S], fast bool [S], subjects str [S])`` of ``split``'s subjects with a
    follow-up at ``horizon`` months.

    Raises:
        NoBaselineTargets: no such subject (see :func:`~synthmed.progression.followup.followup_pairs`).
    """
    try:
        pairs = followup_pairs(store.samples, horizon, split, where=str(store.path))
    except SynthmedError as exc:
        raise NoBaselineTargets(str(exc)) from None
    _, _, fast = pair_grades(store, pairs)
    return pairs.baseline, fast, pairs.subjects


def _model_config(config: ClassifierModelConfig, horizon: float) -> dict[str, Any]:
    return {**config.model_dump(mode="json"), "target": {"fast_progressor_at_months": float(horizon), "min_jump": 2}}


def train_progressor_classifier(run_dir: str | Path, store: Store, horizon: float, *, network: str = "resnet18",
                                preset: str = "tiny", steps: int | None = None, seed: int = 0, device: str = "auto",
                                progress: bool = True) -> dict[str, Any]:
    """Train (or finish, or reuse) the baseline classifier of ``store``'s training subjects at ``horizon``.

    Returns:
        ``{"run", "subjects", "fast", "step"}``.

    Raises:
        NoBaselineTargets: no training subject with a follow-up at the horizon, or only one class
            among them (nothing to learn).
        SynthmedError: a bad preset or network.
    """
    from synthmed.classify.api import config_for, resolve_configs
    from synthmed.generators.common import open_training_run
    from synthmed.training.data import tensor_batches
    from synthmed.training.fabric import FabricOptions, make_fabric
    from synthmed.training.loop import LoopOptions, train

    run_dir = Path(run_dir)
    indices, fast, subjects = progressor_targets(store, horizon)
    if fast.all() or not fast.any():
        which = "fast" if fast.all() else "slow"
        raise NoBaselineTargets(f"{store.path}: all {len(fast)} training subjects with a follow-up at {horizon:g} "
                                f"months are {which} progressors; the baseline classifier has nothing to learn")
    config, tc = resolve_configs("presence", network, "standard", preset, {}, {"steps": steps, "val_fraction": 0.0})
    config = config_for(config, store)
    images = torch.from_numpy(store.read(indices)[0])
    targets = torch.from_numpy(fast.astype(np.float32)[:, None])
    fab = make_fabric(FabricOptions(device=device))
    data = {"store": str(store.path.resolve()), "split": "train", "subjects": int(len(subjects)),
            "fast_progressors": int(fast.sum()), "months": float(horizon)}
    training = dict(tc.model_dump(mode="json"), preset=preset)
    exists = (run_dir / "run.json").is_file()
    run = open_training_run(run_dir, fab, kind=KIND, model=_model_config(config, horizon), training=training,
                            seed=seed, data=data, resume=exists, overwrite=False)
    task = ProgressorTask(config, tc, int(run.info["seed"]))
    loop = LoopOptions(steps=tc.steps, checkpoint_every=tc.checkpoint_every, log_every=tc.log_every,
                       progress=progress, description=f"baseline {config.network} ({horizon:g} months)")
    step = train(task, fab, run, lambda start: tensor_batches(images, targets, tc.batch, seed=int(run.info["seed"]),
                                                              start_step=start), loop)
    return {"run": str(run_dir.resolve()), "subjects": int(len(subjects)), "fast": int(fast.sum()), "step": int(step)}


def load_progressor_classifier(run_dir: str | Path, *, device: str = "auto") -> torch.nn.Module:
    """The trained baseline classifier (last checkpoint), in eval mode on ``device``.

    Raises:
        SynthmedError: not a progressor-classifier run, or no checkpoint.
    """
    from synthmed.classify.networks import classifier_for
    from synthmed.training.weights import load_run_network

    def build(info: dict[str, Any]) -> torch.nn.Module:
        values = {k: v for k, v in info["model"].items() if k != "target"}
        return classifier_for(build_config(ClassifierModelConfig, f"{run_dir}: bad model config", **values))

    net, _, _ = load_run_network(run_dir, KIND, build, checkpoint="last", device=device)
    return net
