"""Seeding: every random number of a run is a pure function of ``(seed, step, …)``.

Training randomness (diffusion noise and timesteps, GAN latents, augmentation) is drawn
per step from :class:`StepRandom`, whose generator is seeded by ``(seed, step)`` only. Each
rank draws the *global* batch's numbers and keeps its own slice, so

* a run killed and resumed at step ``s`` draws exactly what an uninterrupted run draws;
* ``W`` processes with batch ``B`` draw the same numbers as one process with batch ``W·B``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integer ``parts`` (NumPy SeedSequence)."""
    state = np.random.SeedSequence([len(parts), *(int(p) for p in parts)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


#: stream of :func:`derive_seed` for initial weights (per-step draws use the step number instead).
INIT_STREAM = 1


@contextmanager
def seeded_init(seed: int, stream: int = INIT_STREAM) -> Iterator[None]:
    """Build networks inside this block for initial weights that are a pure function of ``seed``.

    The CPU generator is seeded with ``derive_seed(seed, stream)`` for the block and restored
    after it, so the weights depend neither on what ran before in the process nor change what
    runs after. Build on the CPU (then move): CUDA generators are left alone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream))
        yield


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


class StepRandom:
    """The random numbers of one training step of one rank.

    Every draw takes a *per-rank* shape ``(b, *rest)``, draws ``(world_size · b, *rest)``
    from a generator seeded by ``(seed, step, stream)`` and returns rows
    ``rank·b … (rank+1)·b``. The numbers of sample ``j`` of the global batch therefore do not
    depend on how the batch is split over processes.

    Args:
        seed: the run seed.
        step: the global step (0-based).
        rank: this process's rank.
        world_size: number of processes.
        device: where tensors are drawn (CPU and CUDA give different, each reproducible, numbers).
    """

    def __init__(self, seed: int, step: int, *, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        self.seed, self.step, self.rank, self.world_size = int(seed), int(step), int(rank), int(world_size)
        self.device = torch.device(device)
        self._draws = 0

    def generator(self) -> torch.Generator:
        """A fresh generator for the next draw (draw ``k`` of the step uses stream ``k``)."""
        gen = make_generator(derive_seed(self.seed, self.step, self._draws), self.device)
        self._draws += 1
        return gen

    def _slice(self, t: torch.Tensor, b: int) -> torch.Tensor:
        return t[self.rank * b : (self.rank + 1) * b]

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``shape`` (per rank; ``shape[0]`` is the local batch)."""
        b = int(shape[0])
        full = torch.randn((self.world_size * b, *shape[1:]), generator=self.generator(), device=self.device, dtype=dtype)
        return self._slice(full, b)

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform ``[0, 1)`` of ``shape`` (per rank)."""
        b = int(shape[0])
        full = torch.rand((self.world_size * b, *shape[1:]), generator=self.generator(), device=self.device, dtype=dtype)
        return self._slice(full, b)

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """int64 uniform in ``[low, high)`` of ``shape`` (per rank)."""
        b = int(shape[0])
        full = torch.randint(low, high, (self.world_size * b, *shape[1:]), generator=self.generator(), device=self.device)
        return self._slice(full, b)


def rng_state() -> dict:
    """Global RNG states (torch CPU/CUDA, Python), as ``weights_only``-loadable objects."""
    state: dict = {"torch": torch.get_rng_state(), "python": _py_state_to_tensor()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` (missing entries are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = random.getstate()
        random.setstate((version, tuple(int(v) for v in state["python"].tolist()), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_tensor() -> torch.Tensor:
    return torch.tensor(list(random.getstate()[1]), dtype=torch.int64)
