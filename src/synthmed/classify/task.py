"""The classifier training task for :func:`synthmed.training.train`: standard, adversarial or dual-BN.

Every task is multi-label BCE on logits ``[B, K]`` against targets read from the batch's masks
(:func:`~synthmed.classify.targets.targets_from_labels`). One Adam step per training step:

* ``standard``: ``BCE(f(x), y)``.
* ``adversarial`` (Madry et al.): ``BCE(f(x'), y)`` with ``x'`` the PGD example of ``x``.
* ``dual-bn`` (Han et al. 2020): ``w · BCE(f(x) through the clean BN, y) + BCE(f(x') through
  the adversarial BN, y)``, one backward pass; ``w`` is :attr:`ClassifierTrainConfig.clean_weight`,
  1 (the paper's equal weights) by default.

Adversarial examples are crafted as in the paper's code: the network in **eval** mode (batch
norm on running statistics), through the adversarial BN for ``dual-bn``, with the run's
attack (:attr:`ClassifierTrainConfig.attack`) and the step's own random numbers, each rank
drawing its rows of one random start (so resume reproduces them, and K processes with batch B
attack like one with batch K·B). Crafting runs on the unwrapped module: only input gradients, never a
parameter's ``.grad`` or a DDP reduction.

Validation (``validate``), on the held-out subjects, in eval mode through the clean BN (the
deployed route): the clean BCE (mean over samples and labels) as ``val/loss`` — the paper's
best-checkpoint criterion — and the macro-mean clean AUROC as ``val/auroc``. Runs that attack
(every mode but ``standard``, or ``select="robust"``) also log ``val/robust_loss`` and
``val/robust_auroc``: the same on PGD examples of the training attack, crafted through the clean
BN from a random start that is the same at every validation (seeded from the run seed), so
checkpoints are compared on the same draw. :meth:`ClassificationTask.monitor` names the value
the best checkpoint keeps lowest.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from lightning_fabric import Fabric

from synthmed.classify.attacks import craft
from synthmed.classify.config import ClassifierModelConfig, ClassifierTrainConfig
from synthmed.classify.dual_bn import bn_route
from synthmed.classify.modes import eval_mode
from synthmed.classify.networks import classifier_for
from synthmed.classify.targets import targets_from_labels
from synthmed.metrics.classification import auroc
from synthmed.training.fabric import unwrap
from synthmed.training.loop import StepContext
from synthmed.training.seeding import INIT_STREAM, StepRandom, derive_seed, make_generator

#: stream of :func:`derive_seed` for the validation attack's random start.
VAL_ATTACK_STREAM = 2


class ClassificationTask:
    """Train a classifier. Module checkpointed: ``model``; optimiser ``adam``.

    Args:
        config: the network, task and mode.
        train: training settings (steps, lr, the training attack, …).
        seed: the run seed (weight initialisation).
        val: validation dataset (items ``(image, label)``), possibly empty.
        init_weights: a ``.safetensors`` file of the user's to start from, or ``None``.
    """

    def __init__(self, config: ClassifierModelConfig, train: ClassifierTrainConfig, seed: int,
                 val: torch.utils.data.Dataset | None = None, init_weights: str | None = None):
        self.config, self.train, self.seed = config, train, int(seed)
        self.val, self.init_weights = val, init_weights

    def setup(self, fabric: Fabric) -> None:
        torch.manual_seed(derive_seed(self.seed, INIT_STREAM))
        net = classifier_for(self.config, self.init_weights)
        opt = torch.optim.Adam(net.parameters(), lr=self.train.lr, weight_decay=self.train.weight_decay)
        self.model, self.opt = fabric.setup(net, opt)
        self.fabric = fabric

    def modules(self) -> Mapping[str, torch.nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        return {"adam": self.opt}

    def targets_of(self, labels: torch.Tensor) -> torch.Tensor:
        """float32 ``[B, K]`` targets of a batch's second item: the task's targets read from its masks
        (a subclass training on other targets returns them here)."""
        return targets_from_labels(labels, self.config.task)

    def adversarial_examples(self, images: torch.Tensor, targets: torch.Tensor, random: StepRandom) -> torch.Tensor:
        """PGD examples of ``images`` (eval mode; through the adversarial BN for ``dual-bn``, a
        single-BN network's one BN otherwise), the random start this rank's rows of the step's draw
        (:class:`~synthmed.classify.attacks.Draws`)."""
        return craft(unwrap(self.model), images, targets, self.train.attack, route="adversarial", generator=random)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> Mapping[str, torch.Tensor]:
        images, labels = batch
        targets = self.targets_of(labels)
        for group in self.opt.param_groups:
            group["lr"] = self.train.lr_at(ctx.step)
        mode = self.config.mode
        if mode != "standard":
            adversarial = self.adversarial_examples(images, targets, ctx.random)
        self.model.train()
        logs: dict[str, torch.Tensor] = {}
        if mode == "standard":
            loss = F.binary_cross_entropy_with_logits(self.model(images), targets)
        elif mode == "adversarial":
            loss = F.binary_cross_entropy_with_logits(self.model(adversarial), targets)
        else:
            clean = F.binary_cross_entropy_with_logits(self.model(images), targets)
            with bn_route("adversarial"):
                robust = F.binary_cross_entropy_with_logits(self.model(adversarial), targets)
            loss = self.train.clean_weight * clean + robust
            logs = {"clean": clean.detach(), "adversarial": robust.detach()}
        self.opt.zero_grad(set_to_none=True)
        ctx.fabric.backward(loss)
        self.opt.step()
        return {"loss": loss.detach(), **logs}

    @property
    def monitor(self) -> str:
        """The validation value the best checkpoint keeps lowest: ``loss`` or ``robust_loss``."""
        return "robust_loss" if self.train.select == "robust" else "loss"

    @property
    def attacks_validation(self) -> bool:
        """Whether validation also scores PGD examples (every mode but ``standard``, or ``select="robust"``)."""
        return self.config.mode != "standard" or self.train.select == "robust"

    @torch.no_grad()
    def validate(self, step: int) -> Mapping[str, float]:
        """Clean BCE (``loss``) and macro-mean clean AUROC (``auroc``) on the validation subjects,
        and ``robust_loss`` / ``robust_auroc`` on their PGD examples where the run attacks."""
        if self.val is None or len(self.val) == 0:
            return {"loss": float("nan")}
        outputs: dict[str, list[torch.Tensor]] = {"": [], "robust_": []} if self.attacks_validation else {"": []}
        targets = []
        b = self.train.val_batch
        start_draws = make_generator(derive_seed(self.seed, VAL_ATTACK_STREAM))
        net = unwrap(self.model)
        with eval_mode(self.model):
            for start in range(0, len(self.val), b):
                items = self.val.__getitems__(list(range(start, min(start + b, len(self.val)))))
                images = torch.stack([i for i, _ in items]).to(self.fabric.device)
                batch_targets = self.targets_of(torch.stack([l for _, l in items]).to(self.fabric.device))
                outputs[""].append(self.model(images).float().cpu())
                if "robust_" in outputs:
                    adversarial = craft(net, images, batch_targets, self.train.attack, route="clean",
                                        generator=start_draws)
                    outputs["robust_"].append(self.model(adversarial).float().cpu())
                targets.append(batch_targets.cpu())
        y = torch.cat(targets)
        metrics: dict[str, float] = {}
        for prefix, logits in outputs.items():
            z = torch.cat(logits)
            scores = [auroc(z[:, k].numpy(), y[:, k].numpy()) for k in range(y.shape[1])]
            valid = [s for s in scores if np.isfinite(s)]
            metrics[f"{prefix}loss"] = float(F.binary_cross_entropy_with_logits(z, y))
            metrics[f"{prefix}auroc"] = float(np.mean(valid)) if valid else float("nan")
        return metrics
