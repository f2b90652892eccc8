"""A store's test samples as a classifier run sees them: checked against its network, read, predicted."""

from __future__ import annotations

import numpy as np
import torch

from synthmed.classify.config import ClassifierModelConfig
from synthmed.data.store import Store
from synthmed.errors import SynthmedError


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


def test_samples(store: Store, config: ClassifierModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(images float32 [N, C, *sp], labels uint8 [N, *sp], subjects str [N])`` of ``store``'s test split.

    Raises:
        SynthmedError: samples that do not fit ``config`` (:func:`check_fits`), or no test split.
    """
    check_fits(store, config)
    if "test" not in store.splits:
        raise SynthmedError(f"{store.path}: the test split is empty (splits: {list(store.splits)}); "
                            "evaluate on a prepared store with --test-fraction > 0")
    idx = store.indices("test")
    images, labels = store.read(idx)
    return images, labels, store.samples["case_id"].to_numpy()[idx].astype(str)


@torch.no_grad()
def predict(net: torch.nn.Module, images: torch.Tensor, *, batch: int = 64) -> np.ndarray:
    """Sigmoid probabilities ``[N, K]`` of ``net`` on ``images`` ``[N, C, *sp]`` (in the current BN route)."""
    device = next(net.parameters()).device
    out = [torch.sigmoid(net(images[i : i + batch].to(device)).float()).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out).numpy()
