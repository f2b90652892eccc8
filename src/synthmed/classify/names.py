"""The classifiers' names, defined once: tasks, networks, stems, training modes, attack norms, saliency methods.

Literal types (for pydantic fields) and their values as tuples (for ``--option`` checks). This
module imports nothing heavy, so a study spec validates its ``classifiers`` section against
these names without loading torch.
"""

from __future__ import annotations

from typing import Literal, get_args

TaskName = Literal["presence", "regions", "grade"]
NetworkName = Literal["resnet18", "resnet50", "densenet121"]
Stem = Literal["standard", "compact"]
ModeName = Literal["standard", "adversarial", "dual-bn"]
NormName = Literal["linf", "l2"]
Selection = Literal["clean", "robust"]
SaliencyMethod = Literal["gradient", "smoothgrad", "integrated-gradients", "gradcam"]

#: The classification tasks (``--task``).
TASKS: tuple[str, ...] = get_args(TaskName)
#: The classifier networks (``--model``).
NETWORKS: tuple[NetworkName, ...] = get_args(NetworkName)
#: The stems.
STEMS: tuple[Stem, ...] = get_args(Stem)
#: The training modes (``--mode``).
MODES: tuple[str, ...] = get_args(ModeName)
#: The attack norms (``--norm``).
NORMS: tuple[str, ...] = get_args(NormName)
#: The best-checkpoint rules (``--select``): lowest validation clean BCE or robust BCE.
SELECTIONS: tuple[str, ...] = get_args(Selection)
#: The saliency methods (``--method``).
METHODS: tuple[str, ...] = get_args(SaliencyMethod)
