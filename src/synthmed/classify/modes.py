"""A network in eval mode for a block, every module's own train/eval flag restored after.

Restoring each module's flag, not only the root's, keeps a deliberately frozen submodule (a
batch norm in eval mode inside a training network) as it was. Used where adversarial examples
are crafted, saliency is computed and ART is called.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; each module's ``training`` flag as before after it (also on errors)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
