"""Seeding: every random number of a run is a pure function of ``(seed, step, …)``.

Training randomness (diffusion noise and timesteps, GAN latents, noise inputs and
augmentation, attack starts) is drawn per step from :class:`StepRandom`, whose generators are
seeded by ``(seed, step, draw index)`` only. Each rank draws the *global* batch's numbers and
keeps its own slice, so

* a run killed and resumed at step ``s`` draws exactly what an uninterrupted run draws;
* ``W`` processes with batch ``B`` draw the same numbers as one process with batch ``W·B``.

Code that draws several tensors in turn (a network's noise layers, an augmentation pipeline)
takes a :class:`Draws`: a training step passes :meth:`StepRandom.stream` (one generator,
sliced by rank), sampling and tests wrap their generator in :class:`GeneratorDraws` (rank 0
of 1: exactly ``torch.randn(shape, generator=g)``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

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


class Draws(Protocol):
    """A source of random tensors, ``shape[0]`` the (local) batch: ``rand`` uniform in [0, 1),
    ``randn`` standard normal, on the source's device. :class:`GeneratorDraws` is one; a
    training step's is :meth:`StepRandom.stream`."""

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor: ...

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor: ...


class GeneratorDraws:
    """:class:`Draws` from one ``torch.Generator`` (on its device), sliced by rank.

    Every draw takes a *per-rank* shape ``(b, *rest)``, draws ``(world_size · b, *rest)`` and
    returns rows ``rank·b … (rank+1)·b``. When every rank draws the same sequence of shapes
    (equal local batches) from a generator seeded alike, sample ``j`` of the global batch gets
    the same numbers however the batch is split over processes. With ``rank=0, world_size=1``
    a draw is exactly ``torch.randn(shape, generator=generator, …)`` (or ``torch.rand``).

    Args:
        generator: the one generator every draw advances, in call order.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, generator: torch.Generator, *, rank: int = 0, world_size: int = 1):
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank must be in [0, world_size = {world_size}), got {rank}")
        self.generator, self.rank, self.world_size = generator, int(rank), int(world_size)

    def _rows(self, draw: Callable[..., torch.Tensor], shape: Sequence[int], **kwargs: object) -> torch.Tensor:
        """This rank's rows of ``draw((world_size · b, *rest), generator=…, device=…, **kwargs)``."""
        b, *rest = (int(n) for n in shape)
        full = draw((self.world_size * b, *rest), generator=self.generator, device=self.generator.device, **kwargs)
        return full[self.rank * b : (self.rank + 1) * b]

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``shape`` (``shape[0]`` the local batch)."""
        return self._rows(torch.randn, shape, dtype=dtype)

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform ``[0, 1)`` of ``shape`` (``shape[0]`` the local batch)."""
        return self._rows(torch.rand, shape, dtype=dtype)

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """int64 uniform in ``[low, high)`` of ``shape`` (``shape[0]`` the local batch)."""
        return self._rows(lambda size, **kw: torch.randint(low, high, size, **kw), shape)


class StepRandom:
    """The random numbers of one training step of one rank.

    Every draw takes a *per-rank* shape ``(b, *rest)``, draws ``(world_size · b, *rest)``
    from a generator seeded by ``(seed, step, stream)`` and returns rows
    ``rank·b … (rank+1)·b``. The numbers of sample ``j`` of the global batch therefore do not
    depend on how the batch is split over processes. :meth:`randn`, :meth:`rand` and
    :meth:`randint` each take a stream of their own; :meth:`stream` hands one to code that
    draws several tensors in turn.

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
        """A fresh generator for the next draw (draw ``k`` of the step uses stream ``k``).

        Its numbers are the same on every rank: draw from it only what every rank must share
        (per-sample numbers come from :meth:`stream` or the draws below)."""
        gen = make_generator(derive_seed(self.seed, self.step, self._draws), self.device)
        self._draws += 1
        return gen

    def stream(self) -> GeneratorDraws:
        """The next stream as :class:`Draws`: a fresh :meth:`generator`, sliced by this rank, for
        code that draws several per-sample tensors in turn (noise inputs, augmentation)."""
        return GeneratorDraws(self.generator(), rank=self.rank, world_size=self.world_size)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal ``shape`` (per rank; ``shape[0]`` is the local batch)."""
        return self.stream().randn(shape, dtype)

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform ``[0, 1)`` of ``shape`` (per rank)."""
        return self.stream().rand(shape, dtype)

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """int64 uniform in ``[low, high)`` of ``shape`` (per rank)."""
        return self.stream().randint(low, high, shape)


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
