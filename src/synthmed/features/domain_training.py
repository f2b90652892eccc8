"""Self-supervised training of the domain encoder on a store's train split, saved beside the store and reused.

The encoder is trained through the training toolkit (:func:`synthmed.training.train`) with a
contrastive (NT-Xent) loss between two random views of each sample
(:mod:`synthmed.features.contrastive`) plus the cross-entropy of its label-presence classifier.
It is saved beside the store, ``<store>-encoder/`` (a run directory: ``run.json``,
``checkpoints/``), and reused while it matches the store. Its training is a pure function of
(store, config, ``config.seed``): initial weights, data order and augmentations all derive
from the seed, so a retrained encoder is bit-identical on the CPU (on CUDA, reproducible up to
the kernels' own non-determinism). 3D stores train on the three central planes of each volume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthmed.data.store import Store
from synthmed.errors import SynthmedError
from synthmed.features.contrastive import augment, nt_xent
from synthmed.features.domain_encoder import DomainEncoder, DomainEncoderConfig, presence_class
from synthmed.features.embedding import orthogonal_planes


class DomainEncoderTask:
    """Training task (protocol of :mod:`synthmed.training.loop`) of the domain encoder."""

    def __init__(self, in_channels: int, image_size: int, config: DomainEncoderConfig):
        from synthmed.training.seeding import seeded_init

        self.config = config
        with seeded_init(config.seed):  # the initial weights: a function of the seed, not of the global RNG
            self.encoder = DomainEncoder(in_channels, image_size, config)

    def setup(self, fabric: Any) -> None:
        self.opt = torch.optim.AdamW(self.encoder.parameters(), lr=self.config.lr, weight_decay=1e-4)
        self.model, self.opt = fabric.setup(self.encoder, self.opt)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: Any) -> dict[str, torch.Tensor]:
        images, labels = batch
        if images.ndim == 5:  # 2.5D: the three central planes of each volume are training samples
            images = torch.cat(orthogonal_planes(images))
            labels = torch.cat([p[:, 0] for p in orthogonal_planes(labels[:, None].float())]).round().to(torch.uint8)
        b, c = images.shape[:2]
        views = []
        for _ in range(2):
            u = ctx.random.rand((b, 6 + 2 * c)).to(images.device)
            noise = ctx.random.randn(tuple(images.shape)).to(images.device)
            views.append(augment(images, u, noise))
        f1, logits1 = self.model(views[0])
        f2, _ = self.model(views[1])
        module = self.model.module if hasattr(self.model, "module") else self.model
        contrastive = nt_xent(module.projection(f1), module.projection(f2), self.config.temperature)
        classify = F.cross_entropy(logits1, presence_class(labels))
        loss = contrastive + classify
        self.opt.zero_grad(set_to_none=True)
        ctx.fabric.backward(loss)
        self.opt.step()
        return {"loss": loss.detach(), "contrastive": contrastive.detach(), "classify": classify.detach()}


def encoder_dir(store: Store | str | Path) -> Path:
    """Where the domain encoder of a store lives: ``<store>-encoder/`` beside it."""
    p = Path(store.path if isinstance(store, Store) else store)
    return p.with_name(p.name + "-encoder")


def _store_id(store: Store) -> dict:
    return {"store": str(Path(store.path).resolve()), "created": store.meta.get("created"),
            "sample_shape": list(store.sample_shape), "split": "train"}


def train_domain_encoder(
    store: Store,
    *,
    run_dir: str | Path | None = None,
    config: DomainEncoderConfig = DomainEncoderConfig(),
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> DomainEncoder:
    """The domain encoder of ``store``: loaded from ``run_dir`` (default :func:`encoder_dir`)
    when it was trained on this store with this config to ``config.steps``, else trained
    (or resumed) on the store's ``train`` split.

    Raises:
        SynthmedError: ``run_dir`` holds an encoder of another store or config (pass
            ``overwrite``), or the store has no ``train`` split.
    """
    from synthmed.training import FabricOptions, LoopOptions, batch_stream, make_fabric, open_run, train
    from synthmed.training.checkpoint import latest_checkpoint
    from synthmed.training.run import read_run

    from synthmed.outputs import guard_output, run_directory

    run_dir = Path(run_dir) if run_dir is not None else encoder_dir(store)
    # an encoder folder is reused or resumed when it exists; --overwrite replaces only a run directory
    guard_output(run_dir, [store.path], kind=run_directory("domain encoder", ["domain-encoder"]), overwrite=overwrite,
                 resume=not overwrite)
    data, model_cfg = _store_id(store), asdict(config)
    channels, size = store.sample_shape[0], store.sample_shape[-1]
    resume = False
    if run_dir.exists() and not overwrite:
        saved = read_run(run_dir)
        if saved.get("data") != data or saved.get("model") != model_cfg:
            raise SynthmedError(f"{run_dir} holds a domain encoder of another store or configuration; "
                                "pass --overwrite to retrain it")
        found = latest_checkpoint(run_dir)
        if found is not None and found[0] >= config.steps:
            loaded = _load_encoder(run_dir, channels, size, config)
            if loaded is not None and loaded[0] >= config.steps:
                return loaded[1]
        resume = True
    dataset = store.dataset(split="train")
    fabric = make_fabric(FabricOptions(device=device, precision="32"))  # type: ignore[arg-type]
    run = open_run(run_dir, kind="domain-encoder", model=model_cfg, training={"steps": config.steps}, seed=config.seed,
                   data=data, resume=resume, overwrite=overwrite)
    task = DomainEncoderTask(channels, size, config)

    def batches(start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batch_stream(dataset, min(config.batch, len(dataset)), seed=config.seed, start_step=start)

    train(task, fabric, run, batches, LoopOptions(steps=config.steps, checkpoint_every=max(1, config.steps),
                                                   log_every=10, progress=progress, description="domain encoder"))
    return task.encoder.cpu().eval()


def _load_encoder(run_dir: Path, channels: int, size: int, config: DomainEncoderConfig) -> tuple[int, DomainEncoder] | None:
    """``(step, encoder in eval mode)`` of the run's latest readable checkpoint (a damaged one:
    the previous kept one, with a warning), or ``None`` without one."""
    from synthmed.training.checkpoint import load_latest, load_weights

    def read(folder: Path) -> DomainEncoder:
        encoder = DomainEncoder(channels, size, config)
        load_weights(encoder, folder / "model.safetensors")
        return encoder

    loaded = load_latest(run_dir, read)
    return None if loaded is None else (loaded[0], loaded[2].eval())


def load_domain_encoder(run_dir: str | Path) -> DomainEncoder:
    """The trained domain encoder of an encoder run directory (:func:`train_domain_encoder`'s,
    e.g. ``<store>-encoder/``), without its store: the architecture from ``run.json``'s ``model``
    and the store's sample shape from its ``data``.

    Raises:
        SynthmedError: not a domain-encoder run, or it has no checkpoint yet.
    """
    from synthmed.training.run import RUN_JSON, read_run

    run_dir = Path(run_dir)
    if not (run_dir / RUN_JSON).is_file():
        raise SynthmedError(f"{run_dir}: not a domain encoder run directory ({RUN_JSON} missing)")
    info = read_run(run_dir)
    if info.get("kind") != "domain-encoder":
        raise SynthmedError(f"{run_dir}: a {info.get('kind')!r} run, not a domain encoder")
    try:
        config = DomainEncoderConfig(**info["model"])
        shape = [int(s) for s in info["data"]["sample_shape"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SynthmedError(f"{run_dir}/{RUN_JSON}: no usable encoder model or data sample_shape ({exc})") from None
    loaded = _load_encoder(run_dir, shape[0], shape[-1], config)
    if loaded is None:
        raise SynthmedError(f"{run_dir}: the domain encoder has no checkpoint yet (train it first)")
    return loaded[1]
