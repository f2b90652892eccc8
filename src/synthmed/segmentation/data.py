"""Training sets built from one or more stores: real, synthetic, synthetic+real or a fixed
real:synthetic proportion, with a validation split held out by subject.

How a training set is made (:func:`build_training_set`), in this order:

1. **Checks.** Every store must have the same dims, channels (names and order) and sample
   shape, and a ``train`` split; otherwise a :class:`~synthmed.errors.SynthmedError` names
   the two stores and what differs.
2. **Validation split, by subject.** Subjects are the store's patients
   (:meth:`~synthmed.data.store.Store.subject_ids`: a longitudinal store's ``subject_id``, a
   cross-sectional store's case ids). From each store's ``train`` split,
   ``round(val_fraction × subjects)`` subjects (at least one when the store has two or more
   and ``val_fraction`` > 0, never all of them) are held out, chosen by a permutation of the
   sorted subject ids seeded by the run seed. A patient's slices and visits therefore never
   straddle training and validation. Synthetic stores have one subject per sample, so for
   them this is a sample-level split.
3. **Scarce real data** (``subject_fraction`` F < 1, for the pre-training curve): of each
   *real* store's remaining training subjects, ``max(1, round(F × subjects))`` are kept
   (seeded), each with all its samples.
4. **Proportions** (``real_fraction`` F, needs real and synthetic stores): a fixed budget of
   ``N`` samples (default: the smaller of the real and the synthetic pools, so every F fits)
   made of ``round(F × N)`` real and ``N − round(F × N)`` synthetic samples, each drawn without
   replacement (seeded) from its pool. Without ``real_fraction`` every remaining sample of
   every store is used.

Every run trains the same number of steps whatever its set (the reference study's
protocol), so runs compare; only what the batches are drawn from changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from synthmed.data.store import Store, StoreDataset
from synthmed.errors import DataError, SynthmedError
from synthmed.training.seeding import derive_seed

#: ``derive_seed`` tags of the set-building draws.
VAL_STREAM, SUBJECT_STREAM, MIX_STREAM = 11, 12, 13


class MixedDataset(torch.utils.data.Dataset):
    """Concatenation of :class:`StoreDataset` parts (one per store) that streams like one.

    Item ``i`` is ``(image float32 [C, *spatial], label uint8 [*spatial])`` of the part it
    falls in. :attr:`chunk_ids` are made distinct across parts, so
    :func:`~synthmed.training.data.batch_stream` mixes and decodes their chunks as for one store.
    """

    def __init__(self, parts: Sequence[StoreDataset]):
        self.parts = [p for p in parts]
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        ids, base = [], 0
        for p in self.parts:
            c = np.asarray(p.chunk_ids, np.int64)
            ids.append(c + base)
            base += int(p.store.n_chunks)
        self._chunk_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def chunk_ids(self) -> np.ndarray:
        return self._chunk_ids

    def part_of(self, items: np.ndarray) -> np.ndarray:
        """The part index of each position in ``items``."""
        return np.searchsorted(self.offsets, np.asarray(items), side="right") - 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = int(self.part_of(np.array([i]))[0])
        return self.parts[k][int(i - self.offsets[k])]

    @property
    def item_nbytes(self) -> int:
        """Bytes of one item (image and label tensors; the parts share a sample shape)."""
        return max((p.item_nbytes for p in self.parts), default=0)

    def fetch(self, items: Sequence[int] | np.ndarray,
              out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Items stacked: ``(images float32 [k, C, *spatial], labels [k, *spatial])``, each
        part read with :meth:`StoreDataset.fetch` (``out`` is used when all items are in one part)."""
        items = np.asarray(items, np.int64)
        parts = self.part_of(items)
        present = np.unique(parts)
        if len(present) <= 1:  # one part (or no item): that part's fetch as it is
            k = int(present[0]) if len(present) else 0
            return self.parts[k].fetch(items - self.offsets[k], out)
        images = labels = None
        for k in present:
            where = torch.from_numpy(np.flatnonzero(parts == k))
            img, lab = self.parts[k].fetch(items[where.numpy()] - self.offsets[k])
            if images is None or labels is None:
                images = img.new_empty((len(items), *img.shape[1:]))
                labels = lab.new_empty((len(items), *lab.shape[1:]))
            images[where], labels[where] = img, lab
        return images, labels

    def __getitems__(self, items: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.fetch(items)
        return list(zip(images.unbind(0), labels.unbind(0)))


@dataclass
class TrainingSet:
    """The training and validation data of a run.

    Attributes:
        train: what batches are drawn from.
        val: the held-out subjects (may be empty).
        description: JSON-able summary recorded in ``run.json`` (kind, stores, counts, options).
    """

    train: MixedDataset
    val: MixedDataset
    description: dict[str, Any] = field(default_factory=dict)


def check_compatible(stores: Sequence[Store]) -> None:
    """All stores must share dims, channels and sample shape.

    Raises:
        SynthmedError: naming the first store that differs from the first one, and how.
    """
    first = stores[0]
    for other in stores[1:]:
        if other.dims != first.dims:
            raise SynthmedError(f"{other.path}: {other.dims}D samples, but {first.path} has {first.dims}D")
        if tuple(other.channels) != tuple(first.channels):
            raise SynthmedError(f"{other.path}: channels {list(other.channels)} do not match "
                                f"{list(first.channels)} of {first.path}")
        if tuple(other.sample_shape) != tuple(first.sample_shape):
            raise SynthmedError(f"{other.path}: sample shape {list(other.sample_shape)} does not match "
                                f"{list(first.sample_shape)} of {first.path}")


def train_indices(store: Store) -> np.ndarray:
    """int64 indices of ``store``'s ``train`` split.

    Raises:
        SynthmedError: the store has no ``train`` split (naming it and the splits it has).
    """
    try:
        return store.indices("train")
    except DataError:
        raise SynthmedError(f"{store.path}: no 'train' split to train on (splits: {list(store.splits)})") from None


def _split_subjects(subjects: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[set, set]:
    """``(kept, held_out)`` of the sorted distinct ``subjects``: ``round(fraction × S)`` held out
    (at least one when ``fraction`` > 0 and ``S`` >= 2, never all), by a permutation from ``rng``."""
    n = len(subjects)
    k = int(round(fraction * n))
    if fraction > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    else:
        k = 0
    perm = rng.permutation(n)
    held = set(subjects[perm[:k]].tolist())
    return set(subjects.tolist()) - held, held


def build_training_set(stores: Sequence[Store], *, seed: int = 0, val_fraction: float = 0.2,
                       real_fraction: float | None = None, budget: int | None = None,
                       subject_fraction: float = 1.0) -> TrainingSet:
    """The training set of ``stores`` (see the module docstring).

    Raises:
        SynthmedError: no store; stores that do not match; a store without a ``train`` split;
            ``real_fraction`` without both real and synthetic stores, or a budget larger than
            a pool; fractions out of range.
    """
    if not stores:
        raise SynthmedError("give at least one training store (--train STORE)")
    check_compatible(stores)
    if not 0 < subject_fraction <= 1:
        raise SynthmedError(f"--subject-fraction must be in (0, 1], got {subject_fraction}")
    if real_fraction is not None and not 0 <= real_fraction <= 1:
        raise SynthmedError(f"--real-fraction must be in [0, 1], got {real_fraction}")
    train_parts: list[tuple[Store, np.ndarray]] = []
    val_parts: list[StoreDataset] = []
    summary = []
    for k, store in enumerate(stores):
        idx = train_indices(store)
        subject_of = store.subject_ids(idx)
        keep, held = _split_subjects(np.unique(subject_of), val_fraction,
                                     np.random.default_rng(derive_seed(seed, VAL_STREAM, k)))
        if not store.synthetic and subject_fraction < 1:
            kept = np.array(sorted(keep))
            n_keep = max(1, int(round(subject_fraction * len(kept))))
            rng = np.random.default_rng(derive_seed(seed, SUBJECT_STREAM, k))
            keep = set(kept[rng.permutation(len(kept))[:n_keep]].tolist())
        train_idx = idx[np.isin(subject_of, list(keep))]
        val_idx = idx[np.isin(subject_of, list(held))]
        train_parts.append((store, train_idx))
        if len(val_idx):
            val_parts.append(store.dataset(indices=val_idx))
        case_of = store.samples["case_id"].to_numpy()
        summary.append({"store": str(store.path.resolve()), "synthetic": store.synthetic,
                        "train_subjects": len(keep), "val_subjects": len(held),
                        "train_cases": int(len(np.unique(case_of[train_idx]))),
                        "val_cases": int(len(np.unique(case_of[val_idx]))),
                        "train_samples": int(len(train_idx)), "val_samples": int(len(val_idx))})
    kinds = {s.synthetic for s in stores}
    kind = "synthetic+real" if len(kinds) == 2 else ("synthetic" if True in kinds else "real")
    description: dict[str, Any] = {"kind": kind, "stores": summary, "channels": list(stores[0].channels),
                                   "dims": stores[0].dims, "sample_shape": list(stores[0].sample_shape), "subject_fraction": subject_fraction,
                                   "val_fraction": val_fraction, "real_fraction": None, "budget": None}
    if real_fraction is not None:
        train_parts, description = _mix(train_parts, real_fraction, budget, seed, description)
    elif budget is not None:
        raise SynthmedError("--budget is for --real-fraction runs")
    train = MixedDataset([s.dataset(indices=i) for s, i in train_parts if len(i)])
    if len(train) == 0:
        raise SynthmedError("the training set is empty (every subject went to validation?)")
    val = MixedDataset(val_parts)
    description.update(n_train=len(train), n_val=len(val))
    return TrainingSet(train, val, description)


def _mix(parts: list[tuple[Store, np.ndarray]], fraction: float, budget: int | None, seed: int,
         description: dict[str, Any]) -> tuple[list[tuple[Store, np.ndarray]], dict[str, Any]]:
    """Keep ``round(F·N)`` real and ``N − round(F·N)`` synthetic samples (see the module docstring)."""
    real = [(k, s, i) for k, (s, i) in enumerate(parts) if not s.synthetic]
    syn = [(k, s, i) for k, (s, i) in enumerate(parts) if s.synthetic]
    if not real or not syn:
        raise SynthmedError("--real-fraction needs at least one real and one synthetic --train store")
    n_real_pool = sum(len(i) for _, _, i in real)
    n_syn_pool = sum(len(i) for _, _, i in syn)
    n = int(budget) if budget is not None else min(n_real_pool, n_syn_pool)
    if n < 1:
        raise SynthmedError(f"--budget must be >= 1, got {n}")
    n_real = int(round(fraction * n))
    n_syn = n - n_real
    if n_real > n_real_pool or n_syn > n_syn_pool:
        raise SynthmedError(f"--budget {n} with --real-fraction {fraction} needs {n_real} real and {n_syn} synthetic "
                            f"training samples; there are {n_real_pool} and {n_syn_pool}")
    out: list[tuple[Store, np.ndarray]] = []
    for group, want, tag in ((real, n_real, 0), (syn, n_syn, 1)):
        pool = np.concatenate([np.stack([np.full(len(i), j), i], 1) for j, (_, _, i) in enumerate(group)])
        rng = np.random.default_rng(derive_seed(seed, MIX_STREAM, tag))
        chosen = pool[np.sort(rng.permutation(len(pool))[:want])]
        for j, (_, store, _) in enumerate(group):
            out.append((store, np.sort(chosen[chosen[:, 0] == j, 1])))
    description = dict(description, kind="mix", real_fraction=float(fraction), budget=n, n_real=n_real,
                       n_synthetic=n_syn)
    return out, description
