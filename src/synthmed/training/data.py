"""An infinite, resumable batch stream over a store dataset.

The samples of global step ``s`` are a pure function of ``(seed, s)``: positions
``s·G … (s+1)·G - 1`` (``G`` = per-rank batch × world size) of the endless sequence made by
concatenating epoch orders, where the order of epoch ``e`` is
:class:`~synthmed.data.ChunkShuffleSampler`'s order for ``(seed, e)`` (chunk-grouped, so
each chunk is decoded about once per epoch). Rank ``r`` takes items ``r·B … (r+1)·B - 1`` of
the global batch. Consequences:

* a resumed run continues at the step it stopped at, without replaying data;
* ``W`` ranks with batch ``B`` see exactly the global batches of one process with batch ``W·B``;
* a dataset smaller than the global batch is simply cycled.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from synthmed.data.store import ChunkShuffleSampler, StoreDataset


class StepBatchSampler(Sampler[list[int]]):
    """Yields, forever, the dataset positions of this rank's batch for steps ``start, start+1, …``.

    Args:
        dataset: a :class:`StoreDataset` (anything with ``chunk_ids``).
        batch_size: per-rank batch ``B``.
        seed: data-order seed.
        start_step: first step to yield.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, dataset: StoreDataset, batch_size: int, *, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if len(dataset) == 0:
            raise ValueError("cannot stream batches from an empty dataset")
        self.order_of = ChunkShuffleSampler(dataset, seed=seed)
        self.n = len(dataset)
        self.batch_size, self.start_step = int(batch_size), int(start_step)
        self.rank, self.world_size = int(rank), int(world_size)
        self._epoch: int | None = None
        self._order = np.zeros(0, np.int64)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self.order_of.set_epoch(epoch)
            self._order, self._epoch = self.order_of.order(), epoch
        return self._order

    def positions(self, step: int) -> list[int]:
        """Dataset positions of this rank's batch at ``step``."""
        g = self.batch_size * self.world_size
        first = step * g + self.rank * self.batch_size
        out = []
        for p in range(first, first + self.batch_size):
            epoch, i = divmod(p, self.n)
            out.append(int(self._epoch_order(epoch)[i]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.positions(step)
            step += 1

    def __len__(self) -> int:  # DataLoader needs it only for len(); the stream is endless
        return 2**62


def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*items)
    return torch.stack(images), torch.stack(labels)


def batch_stream(dataset: StoreDataset, batch_size: int, *, seed: int = 0, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``(images float32 [B, C, *spatial] in [0, 1], labels uint8 [B, *spatial])`` batches
    for steps ``start_step, start_step + 1, …`` (see the module docstring).

    ``num_workers`` > 0 decodes ahead in worker processes; the order is unchanged.
    """
    sampler = StepBatchSampler(dataset, batch_size, seed=seed, start_step=start_step, rank=rank, world_size=world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=_collate,
                        pin_memory=pin_memory, persistent_workers=False,
                        prefetch_factor=2 if num_workers > 0 else None)
    return iter(loader)
