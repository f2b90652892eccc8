"""The segmentation training task for :func:`synthmed.training.train`.

One AdamW step per training step on loss = soft Dice + binary cross-entropy over the three
region channels (MONAI ``DiceCELoss(sigmoid=True)``, batch Dice), on deep-supervision heads
too when the U-Net has them (MONAI ``DeepSupervisionLoss``, weights halving per level). With
``aug`` the batch is augmented on the device first (:mod:`~synthmed.segmentation.augment`).

Validation (``validate``): the network in eval mode on the held-out subjects; Dice of each
region **pooled over all validation voxels** (2·Σ|P∩R| / (Σ|P| + Σ|R|); 1 when both sums are
0), logged as ``val/dice_WT`` …, and their mean as ``val/dice`` — the value the loop keeps
the best checkpoint by.

Initial weights: seeded from the run seed, then, with ``init_weights``, a pre-training run's
weights loaded over them: all of them (a finished segmenter run, or supervised pre-training),
or with ``init_body_only`` all but the head (:func:`~synthmed.segmentation.networks.is_head`:
self-supervised pre-training, whose head reconstructed images), the head keeping its seeded
initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from lightning_fabric import Fabric
from monai.losses import DeepSupervisionLoss, DiceCELoss

from synthmed.segmentation.augment import AugmentOptions, augment
from synthmed.segmentation.config import SegmentModelConfig, SegmentTrainConfig
from synthmed.segmentation.networks import build_network, is_head
from synthmed.segmentation.regions import REGION_NAMES, labels_to_regions
from synthmed.training.checkpoint import load_weights
from synthmed.training.loop import StepContext
from synthmed.training.seeding import INIT_STREAM, derive_seed



class SegmentationTask:
    """Train a region segmenter. Module checkpointed: ``model``; optimiser ``adamw``.

    Args:
        config: the network.
        train: training settings (``aug``, ``lr``, …).
        seed: the run seed (weight initialisation).
        val: validation dataset (items ``(image, label)``), possibly empty.
        init_weights: ``model.safetensors`` to start from (synthetic pre-training), or ``None``.
        init_body_only: load only the body of ``init_weights`` (not the head).
        augment_options: augmentation ranges and probabilities.
    """

    def __init__(self, config: SegmentModelConfig, train: SegmentTrainConfig, seed: int,
                 val: torch.utils.data.Dataset | None = None, init_weights: str | Path | None = None,
                 augment_options: AugmentOptions = AugmentOptions(), init_body_only: bool = False):
        self.config, self.train, self.seed = config, train, int(seed)
        self.val, self.init_weights, self.augment_options = val, init_weights, augment_options
        self.init_body_only = init_body_only
        loss = DiceCELoss(sigmoid=True, batch=True)
        self.loss = DeepSupervisionLoss(loss, weight_mode="exp") if config.deep_supervision else loss

    def network(self) -> torch.nn.Module:
        """The network trained (built under the seeded generator): the region segmenter."""
        return build_network(self.config)

    def setup(self, fabric: Fabric) -> None:
        torch.manual_seed(derive_seed(self.seed, INIT_STREAM))
        net = self.network()
        if self.init_weights is not None:
            network = self.config.network
            load_weights(net, self.init_weights,
                         exclude=(lambda key: is_head(network, key)) if self.init_body_only else None)
        opt = torch.optim.AdamW(net.parameters(), lr=self.train.lr, weight_decay=self.train.weight_decay)
        self.model, self.opt = fabric.setup(net, opt)
        self.fabric = fabric

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"adamw": self.opt}

    def load_extra_state(self, state: dict) -> None:
        """After a resume: apply this run's (possibly new) learning rate."""
        for group in self.opt.param_groups:
            group["lr"] = self.train.lr

    def compute_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the model on a batch (``images [B, C, *sp]``, ``labels [B, *sp]``)."""
        target = labels_to_regions(labels)
        out = self.model(images)
        if self.config.deep_supervision:
            return self.loss(list(out.unbind(1)) if out.ndim == images.ndim + 1 else out, target)
        return self.loss(out, target)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> Mapping[str, torch.Tensor]:
        images, labels = batch
        if self.train.aug:
            images, labels = augment(images, labels, ctx.random, self.augment_options)
        self.model.train()
        loss = self.compute_loss(images, labels)
        self.optimise(loss, ctx)
        return {"loss": loss.detach()}

    def optimise(self, loss: torch.Tensor, ctx: StepContext) -> None:
        """One AdamW step on ``loss`` (gradients clipped to ``grad_clip``)."""
        self.opt.zero_grad(set_to_none=True)
        ctx.fabric.backward(loss)
        if self.train.grad_clip > 0:
            ctx.fabric.clip_gradients(self.model, self.opt, max_norm=self.train.grad_clip)
        self.opt.step()

    @torch.no_grad()
    def validate(self, step: int) -> Mapping[str, float]:
        """Pooled Dice per region on the validation set and their mean (``dice``); ``{}`` without one."""
        if self.val is None or len(self.val) == 0:
            return {"dice": float("nan")}
        self.model.eval()
        inter = np.zeros(len(REGION_NAMES))
        total = np.zeros(len(REGION_NAMES))
        b = self.train.val_batch
        for start in range(0, len(self.val), b):
            items = self.val.__getitems__(list(range(start, min(start + b, len(self.val)))))
            images = torch.stack([i for i, _ in items]).to(self.fabric.device)
            labels = torch.stack([l for _, l in items]).to(self.fabric.device)
            pred = torch.sigmoid(self.model(images).float()) > 0.5
            ref = labels_to_regions(labels).bool()
            dims = (0, *range(2, pred.ndim))
            inter += (pred & ref).sum(dims).double().cpu().numpy()
            total += (pred.sum(dims) + ref.sum(dims)).double().cpu().numpy()
        self.model.train()
        scores = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
        out = {f"dice_{name}": float(v) for name, v in zip(REGION_NAMES, scores)}
        out["dice"] = float(scores.mean())
        return out
