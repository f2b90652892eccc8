"""Self-supervised pre-training of a segmenter on images alone: denoising in-painting.

``segment train … --pretrain STORE --pretrain-mode ssl`` pre-trains the segmenter's network on
the images of ``STORE`` (typically a generator's synthetic volumes) with this pretext task, then
fine-tunes it on the ``--train`` stores with the segmentation loss
(:mod:`~synthmed.segmentation.task`). Medical Diffusion (Khader et al. 2022) reports that
self-supervised pre-training on synthetic volumes helps when real data is scarce; they publish
no code for it, so the pretext task is ours:

**Pretext task** — in-painting with denoising, after Models Genesis' in-painting (Zhou et al.,
"Models Genesis", Medical Image Analysis 67:101840, 2021; MICCAI 2019) and the denoising
autoencoder (Vincent et al., ICML 2008). Each training image ``x`` ``[C, *spatial]`` in
``[0, 1]`` is corrupted (:func:`corrupt`):

1. additive Gaussian noise of standard deviation ``noise_std`` everywhere;
2. ``1 … max_cutouts`` cuboids (the count uniform), each side a uniform share in
   ``cutout_size`` of the image's side (at least one voxel), placed uniformly inside the image,
   replaced in every channel by uniform ``[0, 1)`` noise drawn per voxel (Models Genesis' fill).

The network reconstructs ``x`` from the corrupted image; the loss is the mean squared error
over every voxel and channel of the image (Models Genesis' loss). No mask is used anywhere: the
data is a :class:`~synthmed.data.store.ImageDataset` (:func:`pretext_images`), which never
reads the store's ``label`` array.

**Network** — the segmenter's own (:func:`pretext_config`: the run's U-Net or Swin with deep
supervision off) with a head of ``C`` outputs, the image channels, instead of the three regions
(:func:`~synthmed.segmentation.networks.build_network` ``out_channels``).

**What transfers** — the whole body, encoder *and* decoder: every weight but the head
(:func:`~synthmed.segmentation.networks.is_head`: the DynUNet's ``output_block`` and
deep-supervision heads, the SwinUNETR's ``out``). The fine-tuning run builds its segmenter
seeded from its seed as always and loads the pre-training run's last weights over everything
but its heads (:class:`~synthmed.segmentation.task.SegmentationTask` ``init_body_only``); its
region head starts from its seeded initialisation. A contrastive task (SimCLR-style, as the
domain encoder's, :mod:`synthmed.features.contrastive`) on the bottleneck would train the
encoder only; reconstruction through the whole U-Net trains the decoder too, needs no large
batches and runs on a CPU.

**Randomness and resume** — every draw (the noise, the cuboids' count, sizes and places, their
fill) comes from the step's :class:`~synthmed.training.seeding.StepRandom` (per sample of the
global batch), and the initial weights from the run seed, so the pre-training is reproducible,
does not depend on the number of processes, and a killed one resumes where it stopped: it is
an ordinary run of :func:`~synthmed.training.train` in ``RUN/pretrain`` (kind
:data:`SSL_KIND`; ``model`` the pretext network's config, ``training`` the steps, batch, lr, …
and ``pretext``: :class:`PretextOptions`; ``data`` :func:`pretext_images`' description). It
has no validation: its last checkpoint transfers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from synthmed.data.store import ImageDataset, Store
from synthmed.segmentation.config import SegmentModelConfig, SegmentTrainConfig
from synthmed.segmentation.data import train_indices
from synthmed.segmentation.networks import build_network
from synthmed.segmentation.task import SegmentationTask
from synthmed.training.loop import StepContext
from synthmed.training.seeding import StepRandom

#: ``run.json`` kind of a self-supervised pre-training run.
SSL_KIND = "segmenter-ssl"


@dataclass(frozen=True)
class PretextOptions:
    """The corruption of :func:`corrupt` (see the module docstring).

    Attributes:
        max_cutouts: most cuboids per image (the count is uniform in ``1 … max_cutouts``).
        cutout_size: range of a cuboid side as a share of the image side (Models Genesis: 1/6 … 1/3).
        noise_std: standard deviation of the additive Gaussian noise (intensities in [0, 1]).
    """

    max_cutouts: int = 5
    cutout_size: tuple[float, float] = (1 / 6, 1 / 3)
    noise_std: float = 0.1


def cutout_masks(shape: tuple[int, ...], u: torch.Tensor, options: PretextOptions) -> torch.Tensor:
    """Bool ``[B, *spatial]`` masks of the cuboids described by the uniform numbers ``u``.

    Args:
        shape: ``(B, *spatial)``.
        u: uniform ``[0, 1)`` numbers ``[B, max_cutouts, 1 + 2·dims]``: per cuboid ``k``, ``u[:, 0, 0]``
            picks the count (cuboids ``k`` < count are drawn), ``u[:, k, 1 + a]`` the side along
            axis ``a`` and ``u[:, k, 1 + dims + a]`` its start.
        options: the size range and the most cuboids.
    """
    b, *spatial = shape
    dims = len(spatial)
    k = options.max_cutouts
    count = 1 + (u[:, 0, 0] * k).floor().clamp(max=k - 1)
    inside = (torch.arange(k, device=u.device)[None] < count[:, None]).view(b, k, *([1] * dims))
    low, high = options.cutout_size
    for axis, side in enumerate(spatial):
        length = ((low + (high - low) * u[:, :, 1 + axis]) * side).round().clamp(1, side)
        start = (u[:, :, 1 + dims + axis] * (side - length + 1)).floor()
        coords = torch.arange(side, device=u.device, dtype=u.dtype)
        view = [b, k] + [1] * dims
        view[2 + axis] = side
        on_axis = (coords >= start[..., None]) & (coords < (start + length)[..., None])
        inside = inside & on_axis.view(view)
    return inside.any(1)


def corrupt(images: torch.Tensor, random: StepRandom, options: PretextOptions = PretextOptions()
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretext input of a batch: noise everywhere, uniform noise in random cuboids.

    Args:
        images: float ``[B, C, *spatial]`` in [0, 1] (2D or 3D).
        random: this step's :class:`StepRandom` (three draws: cuboids, Gaussian noise, fill).
        options: see :class:`PretextOptions`.

    Returns:
        ``(corrupted [B, C, *spatial], mask bool [B, *spatial])``, the mask where cuboids were cut out.
    """
    b, dims = images.shape[0], images.ndim - 2
    u = random.rand((b, options.max_cutouts, 1 + 2 * dims)).to(images.device)
    noise = random.randn(tuple(images.shape)).to(images.device, images.dtype)
    fill = random.rand(tuple(images.shape)).to(images.device, images.dtype)
    mask = cutout_masks((b, *images.shape[2:]), u, options)
    corrupted = torch.where(mask[:, None], fill, images + options.noise_std * noise)
    return corrupted, mask


def pretext_config(config: SegmentModelConfig) -> SegmentModelConfig:
    """The pretext network's config: the segmenter's, with deep supervision off (one output)."""
    return config.model_copy(update={"deep_supervision": False})


def pretext_images(store: Store) -> tuple[ImageDataset, dict[str, Any]]:
    """The images of ``store``'s ``train`` split (no label read) and their ``run.json`` description.

    Raises:
        SynthmedError: the store has no ``train`` split.
    """
    idx = train_indices(store)
    description = {"kind": "images", "labels": "not read", "store": str(store.path.resolve()),
                   "synthetic": store.synthetic, "channels": list(store.channels), "dims": store.dims,
                   "sample_shape": list(store.sample_shape), "n_train": int(len(idx))}
    return ImageDataset(store, idx), description


class InpaintingTask(SegmentationTask):
    """Reconstruct images from their :func:`corrupt`\\ ed copies (module docstring); for
    :func:`~synthmed.training.train`. Module checkpointed: ``model``; optimiser ``adamw``
    (:class:`SegmentationTask`'s set-up, optimiser and gradient clipping; no augmentation, no
    validation).

    Args:
        config: the segmenter's network (the pretext network is :func:`pretext_config`'s).
        train: training settings (``lr``, ``weight_decay``, ``grad_clip``, …; ``aug`` is not used).
        seed: the run seed (weight initialisation).
        options: the corruption.
    """

    def __init__(self, config: SegmentModelConfig, train: SegmentTrainConfig, seed: int,
                 options: PretextOptions = PretextOptions()):
        super().__init__(pretext_config(config), train, seed)
        self.options = options

    def network(self) -> torch.nn.Module:
        """The segmenter's network with a head of ``in_channels`` outputs (the image channels)."""
        return build_network(self.config, out_channels=self.config.in_channels)

    def reconstruction_loss(self, images: torch.Tensor, random: StepRandom) -> torch.Tensor:
        """Mean squared error of the reconstruction of ``images [B, C, *spatial]`` from their corruption."""
        corrupted, _ = corrupt(images, random, self.options)
        return F.mse_loss(self.model(corrupted).float(), images.float())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> Mapping[str, torch.Tensor]:
        images = batch[0]  # batch[1]: ImageDataset's empty labels
        self.model.train()
        loss = self.reconstruction_loss(images, ctx.random)
        self.optimise(loss, ctx)
        return {"loss": loss.detach()}
