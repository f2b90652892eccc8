"""Joint image + label encoding: the only tensor format a generator sees.

A generator models image channels and the tumour mask *jointly* (the reference study
generates T1, T1ce, T2, FLAIR and the mask as five channels). :class:`JointEncoding` maps a
store batch to one float tensor in ``[-1, 1]`` and back:

* images, float ``[B, C, *spatial]`` in ``[0, 1]`` (stores are normalised to ``[0, 1]``),
  become ``2 * image - 1`` (clamped to ``[-1, 1]``);
* labels, integer ``[B, *spatial]`` with values ``0 .. n_classes - 1``, become ``L`` extra
  channels appended after the image channels:

  - ``"nested"`` (default, ``L = 1``, the four canonical labels only): one level per class,
    ordered by anatomical nesting from the outside in — background ``-1``, edema (ED)
    ``-1/3``, enhancing tumour (ET) ``1/3``, necrosis (NCR) ``1``. A smooth output (bilinear
    resampling, blur, an under-trained generator's soft edges) between two regions passes
    only through the levels of the regions that lie between them in the anatomy, and a
    convex mix of levels decodes as NCR only where necrosis has more than half the weight,
    so smoothing does not grow necrosis outside the tumour core.
  - ``"levels"`` (``L = 1``, legacy): class ``k`` ↦ ``-1 + 2k / (n_classes - 1)``, i.e.
    bg ``-1``, NCR ``-1/3``, ED ``1/3``, ET ``1`` for the canonical labels. The
    edema→background boundary passes through the NCR level, so smooth outputs decode a
    thin NCR ring around the whole tumour (``benchmarks/mask_encoding.py``: 2× average pool +
    bilinear up-sampling of 128 px phantom slices turns 34 % of the tumour area into NCR
    outside the core; 0 % with ``"nested"``). Kept so that runs trained with it (every run
    before ``"nested"`` became the default; their saved config says ``label_mode: levels``)
    decode with their own order.
  - ``"onehot"`` (``L = n_classes``): channel ``k`` is ``+1`` where the label is ``k`` and
    ``-1`` elsewhere. Decoding takes the arg-max over the label channels.

  Level modes decode to the nearest level (clamped to the end levels), so any perturbation
  smaller than half the level gap (``1/3`` for four classes) decodes to the same label.

``decode(encode(images, labels))`` returns the labels exactly and the images up to float
rounding. Inputs may be numpy arrays or torch tensors; outputs are torch tensors on the
device of the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from synthmed.data.case import LABEL_NAMES

LabelMode = Literal["nested", "levels", "onehot"]

#: Supported label modes.
LABEL_MODES: tuple[str, ...] = ("nested", "levels", "onehot")

#: How a saved generator config that names no ``label_mode`` is read: the legacy order, the
#: encoding of every run before ``"nested"`` became the default.
LEGACY_LABEL_MODE: LabelMode = "levels"

#: Help text of a generator config's ``label_mode`` field.
LABEL_MODE_HELP = ("joint encoding of the mask: nested (one channel, levels bg, ED, ET, NCR; the default), "
                   "levels (one channel, legacy order bg, NCR, ED, ET: runs trained before nested became "
                   "the default) or onehot (one channel per class)")

#: ``"nested"``: the canonical classes from the lowest level to the highest, outside in:
#: background, edema, enhancing tumour, necrosis.
NESTED_ORDER: tuple[int, ...] = (0, 2, 3, 1)


def _as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as a tensor (numpy arrays are wrapped without copying where possible)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")


@dataclass(frozen=True)
class JointEncoding:
    """Encode image channels and an integer label map as one tensor in ``[-1, 1]``.

    Attributes:
        n_image_channels: ``C``, the number of image channels (4 for BraTS).
        label_mode: ``"nested"`` or ``"levels"`` (one label channel: the class levels in
            nesting or in legacy class order) or ``"onehot"`` (``n_classes`` channels); see
            the module docstring.
        n_classes: number of label values, ``0 .. n_classes - 1`` (4 canonical labels).
    """

    n_image_channels: int
    label_mode: LabelMode = "nested"
    n_classes: int = len(LABEL_NAMES)

    def __post_init__(self) -> None:
        if self.n_image_channels < 1:
            raise ValueError(f"n_image_channels must be >= 1, got {self.n_image_channels}")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        if not 2 <= self.n_classes <= 256:
            raise ValueError(f"n_classes must be in 2..256, got {self.n_classes}")
        if self.label_mode == "nested" and self.n_classes != len(NESTED_ORDER):
            raise ValueError(f"label_mode 'nested' orders the {len(NESTED_ORDER)} canonical labels; "
                             f"n_classes is {self.n_classes} (use 'levels' or 'onehot')")

    @property
    def n_label_channels(self) -> int:
        """``L``: 1 for ``"levels"`` and ``"nested"``, ``n_classes`` for ``"onehot"``."""
        return self.n_classes if self.label_mode == "onehot" else 1

    @property
    def n_channels(self) -> int:
        """``C + L``, the channel count of an encoded tensor."""
        return self.n_image_channels + self.n_label_channels

    @property
    def bounded(self) -> bool:
        """Every encoded value lies in ``[-1, 1]`` (so a sampler may clamp its estimates there): true."""
        return True

    @property
    def level_order(self) -> tuple[int, ...]:
        """The class at each level, from ``-1`` up (``"levels"`` and ``"nested"`` modes):
        ``0, 1, …, n_classes - 1`` for ``"levels"``, :data:`NESTED_ORDER` for ``"nested"``."""
        return NESTED_ORDER if self.label_mode == "nested" else tuple(range(self.n_classes))

    @property
    def levels(self) -> torch.Tensor:
        """float32 ``[n_classes]``: the encoded value of each class (indexed by class) in
        ``"levels"`` and ``"nested"`` modes."""
        grid = torch.linspace(-1.0, 1.0, self.n_classes, dtype=torch.float32)
        return grid[torch.argsort(torch.tensor(self.level_order))]

    def encode(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encode a batch.

        Args:
            images: float ``[B, C, *spatial]`` in ``[0, 1]``; values outside are clamped.
            labels: integer (or bool) ``[B, *spatial]`` with values in ``0 .. n_classes - 1``.

        Returns:
            float32 ``[B, C + L, *spatial]`` in ``[-1, 1]``, on the device of ``images``.

        Raises:
            ValueError: wrong shapes, a non-integer label dtype or a label value outside
                ``0 .. n_classes - 1``.
        """
        img = _as_tensor(images, "images")
        lab = _as_tensor(labels, "labels")
        if img.ndim < 3 or img.shape[1] != self.n_image_channels:
            raise ValueError(
                f"images must be [B, {self.n_image_channels}, *spatial], got shape {tuple(img.shape)}"
            )
        expected = (img.shape[0], *img.shape[2:])
        if tuple(lab.shape) != expected:
            raise ValueError(f"labels must have shape {expected} (images without C), got {tuple(lab.shape)}")
        if lab.is_floating_point() or lab.is_complex():
            raise ValueError(f"labels must be an integer dtype, got {lab.dtype}")
        lab = lab.to(img.device, torch.long)
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.n_classes):
            raise ValueError(
                f"label values must be in 0..{self.n_classes - 1}, got range "
                f"{int(lab.min())}..{int(lab.max())}"
            )
        img = img.to(torch.float32).clamp(0.0, 1.0) * 2.0 - 1.0
        if self.label_mode != "onehot":
            code = self.levels.to(img.device)[lab].unsqueeze(1)
        else:
            code = torch.nn.functional.one_hot(lab, self.n_classes).movedim(-1, 1).to(torch.float32) * 2.0 - 1.0
        return torch.cat([img, code], dim=1)

    def decode(self, x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode a batch (generator output or :meth:`encode` output).

        Args:
            x: float ``[B, C + L, *spatial]``, nominally in ``[-1, 1]``.

        Returns:
            ``(images, labels)``: images float32 ``[B, C, *spatial]`` clamped to ``[0, 1]``,
            labels uint8 ``[B, *spatial]`` in ``0 .. n_classes - 1`` (the class of the nearest
            level, clamped to the end levels, for ``"nested"`` and ``"levels"``; arg-max,
            ties to the lower class, for ``"onehot"``).
        """
        t = _as_tensor(x, "x")
        if t.ndim < 3 or t.shape[1] != self.n_channels:
            raise ValueError(f"x must be [B, {self.n_channels}, *spatial], got shape {tuple(t.shape)}")
        t = t.to(torch.float32)
        c = self.n_image_channels
        images = ((t[:, :c] + 1.0) * 0.5).clamp(0.0, 1.0)
        if self.label_mode != "onehot":
            k = torch.round((t[:, c] + 1.0) * (0.5 * (self.n_classes - 1)))
            k = k.nan_to_num(0.0).clamp(0, self.n_classes - 1).long()
            labels = torch.tensor(self.level_order, dtype=torch.uint8, device=t.device)[k]
        else:
            labels = t[:, c:].argmax(dim=1).to(torch.uint8)
        return images, labels


def encode(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    label_mode: LabelMode = "nested",
    n_classes: int = len(LABEL_NAMES),
) -> torch.Tensor:
    """:meth:`JointEncoding.encode` with ``n_image_channels`` taken from ``images.shape[1]``."""
    if images.ndim < 3:
        raise ValueError(f"images must be [B, C, *spatial], got shape {tuple(images.shape)}")
    return JointEncoding(int(images.shape[1]), label_mode, n_classes).encode(images, labels)


def decode(
    x: np.ndarray | torch.Tensor,
    n_image_channels: int,
    *,
    label_mode: LabelMode = "nested",
    n_classes: int = len(LABEL_NAMES),
) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`JointEncoding.decode` for an encoding with ``n_image_channels`` image channels."""
    return JointEncoding(n_image_channels, label_mode, n_classes).decode(x)
