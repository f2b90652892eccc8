"""Dual batch norm: each batch norm split into a clean and an adversarial branch, chosen by a context manager.

Han et al. (2020, after AdvProp, Xie et al. 2020) train on clean and adversarial inputs with
shared convolutions but separate batch norms, because the two inputs have different feature
statistics. Here any network (MONAI's ResNet and DenseNet included) is converted unchanged:
:func:`to_dual_bn` replaces each batch norm module by a :class:`DualBatchNorm` holding two
copies, and which copy a forward pass uses is set from outside by :func:`bn_route`::

    model = to_dual_bn(model)                 # before the optimizer is built
    loss = bce(model(x), y)                   # clean branch (the default route)
    with bn_route("adversarial"):
        loss = loss + bce(model(x_adv), y)    # adversarial branch, same convolutions

Conventions:

- The route lives in a :class:`contextvars.ContextVar` (default ``"clean"``): ``bn_route``
  blocks nest, and each restores the previous route on exit, also when the block raises.
  Evaluation and saliency outside any ``bn_route`` block therefore use the clean branch.
- The two branches have their own affine parameters *and* their own running statistics and
  ``num_batches_tracked``; a forward pass touches only the routed branch (the other one's
  statistics stay as they are and its parameters get no gradient).
- State dict keys become ``<name>.clean.*`` and ``<name>.adversarial.*``: both sets are saved.
- :func:`to_dual_bn` is idempotent: batch norms already inside a :class:`DualBatchNorm` are
  left alone, so converting a converted network changes nothing.

The route is read when a batch norm runs, in the thread that runs it: threads started by
``torch.nn.DataParallel`` (and anything else that does not copy the context) see the default
``"clean"`` route. One process per device (DDP, Fabric) is unaffected.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Literal, cast, get_args

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from synthmed.errors import SynthmedError

Route = Literal["clean", "adversarial"]
#: The batch norm branches, in state dict order.
ROUTES: tuple[Route, ...] = get_args(Route)

_ROUTE: ContextVar[Route] = ContextVar("synthmed_bn_route", default="clean")


def current_route() -> Route:
    """The branch batch norms use now: ``"clean"`` outside any :func:`bn_route` block."""
    return _ROUTE.get()


def bn_route(route: Route) -> AbstractContextManager[None]:
    """A context manager that routes every :class:`DualBatchNorm` through ``route`` inside its block.

    Blocks nest; leaving one (normally or by an exception) restores the route that held before.

    Raises:
        SynthmedError: ``route`` is not one of :data:`ROUTES` (raised here, before the block).
    """
    if route not in ROUTES:
        raise SynthmedError(f"batch norm route must be one of {', '.join(ROUTES)}, got {route!r}")
    return _routed(route)


@contextmanager
def _routed(route: Route) -> Iterator[None]:
    token = _ROUTE.set(route)
    try:
        yield
    finally:
        _ROUTE.reset(token)


class DualBatchNorm(nn.Module):
    """Two batch norms of one class and shape, ``clean`` and ``adversarial``; ``forward`` uses :func:`current_route`'s.

    Built from one batch norm (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, …): both branches are
    deep copies of it (weights, running statistics, ``num_batches_tracked``, ``momentum``,
    ``eps``, ``affine``, ``track_running_stats``), so a converted network computes what the
    original did until the branches are trained apart. Input and output shapes are the batch
    norm's (``[B, C, *spatial]``).
    """

    def __init__(self, batch_norm: _BatchNorm) -> None:
        super().__init__()
        if not isinstance(batch_norm, _BatchNorm):
            raise SynthmedError(f"DualBatchNorm needs a batch norm module, got {type(batch_norm).__name__}")
        self.clean = copy.deepcopy(batch_norm)
        self.adversarial = copy.deepcopy(batch_norm)

    def branch(self, route: Route) -> _BatchNorm:
        """The batch norm of ``route``."""
        if route not in ROUTES:
            raise SynthmedError(f"batch norm route must be one of {', '.join(ROUTES)}, got {route!r}")
        return cast(_BatchNorm, getattr(self, route))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, getattr(self, current_route())(x))


def to_dual_bn(module: nn.Module) -> nn.Module:
    """Replace, in place, every batch norm inside ``module`` by a :class:`DualBatchNorm` of copies of it.

    Every ``torch.nn.modules.batchnorm._BatchNorm`` is found, at any depth (Sequentials,
    ModuleLists, ModuleDicts, custom modules); instance and group norms are not batch norms
    and stay. A batch norm registered at several places (shared) becomes one shared
    :class:`DualBatchNorm`. Idempotent: batch norms already inside a :class:`DualBatchNorm`
    are skipped. Convert before building the optimizer (the new branches are new parameters).

    Returns:
        ``module`` itself; only when ``module`` is itself a batch norm (it cannot be replaced
        in place) a new :class:`DualBatchNorm` of it, like ``nn.SyncBatchNorm.convert_sync_batchnorm``.
    """
    if isinstance(module, DualBatchNorm):
        return module
    if isinstance(module, _BatchNorm):
        return DualBatchNorm(module)
    _convert_children(module, {})
    return module


def _convert_children(module: nn.Module, done: dict[int, DualBatchNorm]) -> None:
    # every registration, not named_children(): that yields a module registered twice in one parent once
    for name, child in list(module._modules.items()):
        if child is None or isinstance(child, DualBatchNorm):
            continue
        if isinstance(child, _BatchNorm):
            if id(child) not in done:
                done[id(child)] = DualBatchNorm(child)
            setattr(module, name, done[id(child)])
        else:
            _convert_children(child, done)


def is_dual_bn(module: nn.Module) -> bool:
    """Whether ``module`` is or holds a :class:`DualBatchNorm`."""
    return any(isinstance(m, DualBatchNorm) for m in module.modules())
