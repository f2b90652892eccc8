"""A store's samples as a classifier sees them: training samples checked for both classes of every
output; test samples checked against a run's network, read (with their targets), predicted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthmed.classify.config import ClassifierModelConfig
from synthmed.classify.targets import label_names, targets_from_labels
from synthmed.data.store import Store, StoreDataset
from synthmed.errors import SynthmedError


def check_learnable(parts: Sequence[StoreDataset], task: str) -> None:
    """Refuse a training set in which some output of ``task`` has one class only (every sample
    positive, or none), which the task cannot be learnt from.

    ``parts`` are the training set's per-store datasets (``TrainingSet.train.parts``); only their
    labels are read, chunk by chunk, stopping as soon as every output has shown both classes.

    Raises:
        SynthmedError: naming the output, its one value, the stores and what to change.
    """
    names = label_names(task)
    seen = np.zeros((2, len(names)), bool)  # [value, output]
    n = 0
    for part in parts:
        labels = part.store.arrays()[1]
        chunk = part.store.chunk_samples
        order = np.argsort(part.indices // chunk, kind="stable")
        ks, starts = np.unique(part.indices[order] // chunk, return_index=True)
        for k, members in zip(ks.tolist(), np.split(part.indices[order], starts[1:])):
            rows = members - k * chunk
            block = np.asarray(labels[k * chunk : (k + 1) * chunk])[rows]
            targets = targets_from_labels(torch.from_numpy(block), task).numpy() > 0.5
            seen[1] |= targets.any(axis=0)
            seen[0] |= (~targets).any(axis=0)
            n += len(rows)
            if seen.all():
                return
    output = int(np.flatnonzero(~seen.all(axis=0))[0])
    value = int(seen[1, output])
    stores = ", ".join(str(part.store.path) for part in parts)
    if not value:
        hint = "no training sample is positive"
    elif all(part.store.synthetic for part in parts):
        hint = ("the generator drew no sample where it is 0: train it longer or on data with tumour-free samples, "
                "or train on real samples too")
    elif any(part.store.dims == 3 for part in parts):
        hint = ("every volume holds a tumour when the dataset has no tumour-free cases: train on 2D slices, or add "
                "tumour-free cases, e.g. the phantom's --tumour-free-fraction")
    else:
        hint = "add samples without it, e.g. tumour-free cases (the phantom's --tumour-free-fraction)"
    raise SynthmedError(f"task {task}: output {names[output]} is {value} for all {n} training samples of {stores}, "
                        f"so it cannot be learnt ({hint})")


def check_fits(store: Store, config: ClassifierModelConfig) -> None:
    """Refuse a store whose samples are not the dims, channels and shape the network was trained on.

    Raises:
        SynthmedError: naming the store and both shapes.
    """
    if store.dims != config.spatial_dims or store.sample_shape[0] != config.in_channels or \
            tuple(store.spatial_shape) != tuple(config.image_shape):
        raise SynthmedError(f"{store.path}: {store.dims}D samples of shape {list(store.sample_shape)}; the run was "
                            f"trained on {config.spatial_dims}D samples of shape "
                            f"{[config.in_channels, *config.image_shape]}")


def test_samples(store: Store, config: ClassifierModelConfig, *, max_samples: int | None = None, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images float32 [N, C, *sp], labels uint8 [N, *sp], subjects str [N])`` of ``store``'s test split.

    ``subjects`` are the samples' patients (:meth:`~synthmed.data.store.Store.subject_ids`: a
    longitudinal store's ``subject_id``, so all visits of a patient share one; a cross-sectional
    store's case ids): the unit the bootstrap intervals resample and the saliency gallery picks.
    ``max_samples``: at most that many samples, drawn without replacement from the whole test
    split (seeded by ``seed``) and kept in store order; only those are read.

    Raises:
        SynthmedError: samples that do not fit ``config`` (:func:`check_fits`), or no test split.
    """
    check_fits(store, config)
    if "test" not in store.splits:
        raise SynthmedError(f"{store.path}: the test split is empty (splits: {list(store.splits)}); "
                            "evaluate on a prepared store with --test-fraction > 0")
    idx = store.indices("test")
    if max_samples is not None and max_samples < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_samples, replace=False))
    images, labels = store.read(idx)
    return images, labels, store.subject_ids(idx)


@dataclass(frozen=True)
class EvalSamples:
    """The test samples a classifier run is evaluated on (:func:`eval_samples`), on the CPU.

    Attributes:
        store: the store they were read from.
        images: float32 ``[N, C, *sp]``.
        labels: uint8 ``[N, *sp]``, the canonical tumour labels.
        targets: float32 ``[N, K]``, the run's task's targets of ``labels``
            (:func:`~synthmed.classify.targets.targets_from_labels`).
        subjects: str ``[N]``, each sample's patient (see :func:`test_samples`).
    """

    store: Store
    images: torch.Tensor
    labels: np.ndarray
    targets: torch.Tensor
    subjects: np.ndarray

    @property
    def n_subjects(self) -> int:
        """The number of distinct subjects."""
        return int(len(np.unique(self.subjects)))


def eval_samples(test_store: str | Path, config: ClassifierModelConfig, *, max_samples: int | None = None,
                 seed: int = 0) -> EvalSamples:
    """The test split of the store at ``test_store`` (:func:`test_samples`, same arguments) with
    ``config.task``'s targets.

    Raises:
        SynthmedError: a missing store, samples that do not fit ``config``, or no test split.
    """
    store = Store.open(test_store)
    images, labels, subjects = test_samples(store, config, max_samples=max_samples, seed=seed)
    targets = targets_from_labels(torch.from_numpy(labels), config.task)
    return EvalSamples(store, torch.from_numpy(images), labels, targets, subjects)


@torch.no_grad()
def predict(net: torch.nn.Module, images: torch.Tensor, *, batch: int = 64) -> np.ndarray:
    """Sigmoid probabilities ``[N, K]`` of ``net`` on ``images`` ``[N, C, *sp]`` (in the current BN route)."""
    device = next(net.parameters()).device
    out = [torch.sigmoid(net(images[i : i + batch].to(device)).float()).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()
