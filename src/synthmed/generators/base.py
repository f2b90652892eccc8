"""The generator contract (docs/design.md): every generator family obeys :class:`Generator`.

* ``fit(store, run_dir, options)`` trains on the store's ``train`` split into a run directory
  (through :mod:`synthmed.training`: checkpoints, ``--resume``, DDP, TensorBoard);
* ``sample(n, seed)`` yields ``(images float32 [b, C, *spatial] in [0, 1], labels uint8
  [b, *spatial])`` batches on the CPU, ``n`` samples in all; the same seed (and batch size)
  gives the same samples;
* ``save(folder)`` writes ``generator.json`` (name, config, step) and ``model.safetensors``;
  :meth:`Generator.load` reads a saved folder or a run directory. Loading never unpickles.

A generator works on jointly encoded tensors (:class:`~synthmed.data.JointEncoding`); the
encoding never leaks out of ``sample``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.training.fabric import FabricOptions

GENERATOR_JSON = "generator.json"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class FitOptions:
    """How to run ``fit`` (not part of the model).

    Attributes:
        seed: run seed (data order, noise, initialisation).
        fabric: device, processes, precision.
        resume: continue the run in ``run_dir`` from its last checkpoint.
        overwrite: replace an existing ``run_dir``.
        progress: show the progress bar.
    """

    seed: int = 0
    fabric: FabricOptions = field(default_factory=FabricOptions)
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


class Generator(ABC):
    """A trained or trainable generator of jointly encoded image + mask samples.

    Attributes:
        name: registry name (``"ddpm"``, …).
        step: training steps behind the current weights (0 if untrained).
        source: where the weights came from (run directory or saved folder), for provenance.
    """

    name: ClassVar[str]
    step: int = 0
    source: str | None = None
    #: The training store's description (``sample_shape``, ``channels``, ``spacing``,
    #: ``normalisation``, ``store``), recorded by ``fit`` and restored by ``load``; sampling
    #: writes stores like it.
    data: dict[str, Any]
    #: DDP rank of the process that ran ``fit`` (only rank 0 reports).
    global_rank: int = 0
    #: Whether ``sample`` takes ``truncation=psi`` (GANs: the truncation trick).
    supports_truncation: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_options(cls, preset: str, model_overrides: Mapping[str, Any], train_overrides: Mapping[str, Any]) -> Generator:
        """An untrained generator from a preset name plus option overrides (``None`` values ignored).

        Raises:
            SynthmedError: unknown preset or invalid values (naming the option).
        """

    @abstractmethod
    def fit(self, store: Store, run_dir: str | Path, options: FitOptions) -> int:
        """Train on ``store``'s ``train`` split into ``run_dir``; return the final step."""

    @abstractmethod
    def sample(self, n: int, seed: int, *, batch_size: int = 16, sampler: str | None = None, steps: int | None = None,
               on_step: Callable[[int, int], None] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield batches of ``(images [b, C, *spatial] in [0, 1], labels uint8 [b, *spatial])``, ``n`` in all.

        ``sampler``/``steps`` pick an iterative sampler (families with a single forward pass,
        e.g. GANs, ignore them); ``on_step(b, steps)`` is called after each network
        evaluation of a batch of ``b`` (progress). Families with
        :attr:`supports_truncation` also take ``truncation=psi``.
        """

    def resolve_sampler(self, sampler: str | None, steps: int | None) -> tuple[str, int]:
        """The sampler and step count ``sample`` will use (defaults filled in, checked).

        The default suits one-pass generators: ``("forward", 1)``; iterative families override it.
        """
        if sampler not in (None, "forward") or steps not in (None, 1):
            raise SynthmedError(f"the {self.name} generator has no --sampler/--steps to choose")
        return "forward", 1

    @abstractmethod
    def save(self, folder: str | Path) -> Path:
        """Write ``generator.json`` and ``model.safetensors`` to ``folder``."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, *, device: str = "auto", checkpoint: str = "last") -> Generator:
        """Load from a saved folder or a run directory (``checkpoint``: ``last`` or ``best``)."""

    def describe(self) -> dict[str, Any]:
        """Provenance of the weights: generator name, source, step (JSON-serialisable)."""
        return {"generator": self.name, "source": self.source, "step": self.step}
