"""Linear centred kernel alignment (CKA; Kornblith et al. 2019): how alike two representations of the same examples are.

Two representations of the same ``n`` examples, ``x [n, p]`` and ``y [n, q]`` (row ``i`` of
both is example ``i``; any trailing shape is flattened, so activations ``[n, C, *spatial]``
are ``[n, C·∏spatial]``), are compared through their linear kernels ``K = x xᵀ`` and
``L = y yᵀ``:

    CKA(x, y) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L))

Conventions:

* **Centring.** Features are centred over the examples (column means removed) before the
  kernels are formed, which equals double-centring the kernels, ``H K H`` with
  ``H = I − 11ᵀ/n``; a translation of either representation changes nothing.
* **Biased estimator** (the default, Kornblith et al.'s eq. 3): ``HSIC(K, L) =
  tr(K H L H) / (n − 1)²``. Then ``CKA = ‖yᶜᵀ xᶜ‖²_F / (‖xᶜᵀ xᶜ‖_F · ‖yᶜᵀ yᶜ‖_F)`` (``ᶜ``:
  centred), a cosine of two positive semi-definite matrices, so it lies in [0, 1]; it is 1
  when ``y`` is an orthogonal transform of ``x`` times a scalar (plus a translation), and it is
  not invariant to non-isotropic scaling of the features (a general invertible linear map).
* **Debiased estimator** (``debiased=True``; the unbiased HSIC of Song et al. 2012, as
  Kornblith et al. §6 and Han et al.'s analysis use it): each kernel is *U-centred*
  (Székely & Rizzo 2014: diagonal set to 0, then ``K̃ᵢⱼ = Kᵢⱼ − rᵢ/(n−2) − rⱼ/(n−2) +
  s/((n−1)(n−2))`` off the diagonal, ``r`` the row sums and ``s`` the total, diagonal 0
  again), and ``HSIC₁(K, L) = ⟨K̃, L̃⟩_F / (n(n − 3))``. Its CKA is a cosine of U-centred
  kernels, so it lies in [−1, 1]: small negative values mean no similarity, and with few
  examples it is less biased towards 1 than the biased estimator, not less noisy. Needs
  ``n ≥ 4``.
* Everything is computed in float64 (features are cast chunk by chunk, so a wide ``x`` is not
  copied whole into float64); inputs are NumPy arrays or anything ``np.asarray`` takes (CPU
  tensors).
* **Undefined cases**: fewer than 2 examples (4 debiased), or a representation that is
  constant over the examples (every row equal: its centred features are 0, up to a relative
  1e-12 for rounding; debiased, also a U-centred kernel that is 0), raise
  :class:`UndefinedCKAError`; shapes that do not match and non-finite values raise
  ``ValueError``. A feature (column) that is constant while others vary is fine: centring
  removes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["UndefinedCKAError", "centred_gram", "gram_cka", "linear_cka"]

#: Columns × examples of one float64 chunk when features are centred and multiplied (≈ 64 MiB).
_CHUNK_VALUES = 1 << 23
#: Centred features whose norm is at most this share of the features' norm count as 0 (constant over the
#: examples; rounding leaves about 1e-16 of it), and likewise a U-centred kernel against the centred one.
_CONSTANT_TOLERANCE = 1e-12


class UndefinedCKAError(ValueError):
    """CKA is undefined for these representations: too few examples, or one constant over the examples."""


def _features(x: Any, name: str) -> np.ndarray:
    """``x`` as ``[n, p]`` (trailing dimensions flattened), in its own dtype; checked finite."""
    a = np.asarray(x)
    if a.ndim < 2:
        raise ValueError(f"{name} must be [n, p] features (n examples), got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {a.shape})")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def centred_gram(x: Any, *, debiased: bool = False) -> np.ndarray:
    """The centred linear kernel ``[n, n]`` (float64) of features ``x [n, p]`` (or ``[n, *shape]``).

    Biased: ``xᶜ xᶜᵀ`` with ``xᶜ`` the features centred over the examples (= ``H K H``).
    Debiased: that kernel U-centred (see the module docstring). :func:`gram_cka` of two such
    kernels (of one estimator) is the CKA.

    Raises:
        UndefinedCKAError: fewer than 2 examples (4 when ``debiased``), or ``x`` constant over the examples.
        ValueError: ``x`` has fewer than 2 dimensions, no feature, or a non-finite value.
    """
    a = _features(x, "x")
    n = a.shape[0]
    least = 4 if debiased else 2
    if n < least:
        raise UndefinedCKAError(f"CKA{' (debiased)' if debiased else ''} needs at least {least} examples, got {n}")
    gram = np.zeros((n, n), np.float64)
    squares = 0.0  # ‖x‖²_F, the scale against which the centred features count as 0
    step = max(1, _CHUNK_VALUES // n)
    for start in range(0, a.shape[1], step):
        chunk = a[:, start : start + step].astype(np.float64)
        if not np.all(np.isfinite(chunk)):
            raise ValueError("features hold NaN or infinite values")
        squares += float(np.vdot(chunk, chunk))
        chunk -= chunk.mean(axis=0, keepdims=True)
        gram += chunk @ chunk.T
    if not float(np.trace(gram)) > _CONSTANT_TOLERANCE**2 * squares:  # ‖xᶜ‖²_F against ‖x‖²_F
        raise UndefinedCKAError(f"the representation is constant over the {n} examples (every row equal): "
                                "its centred kernel is 0 and CKA is undefined")
    if debiased:
        centred = np.linalg.norm(gram)
        gram = _u_centred(gram)
        if not np.linalg.norm(gram) > _CONSTANT_TOLERANCE * centred:
            raise UndefinedCKAError(f"the U-centred kernel of the representation is 0 over the {n} examples: "
                                    "the debiased CKA is undefined")
    return gram


def _u_centred(gram: np.ndarray) -> np.ndarray:
    """Székely & Rizzo's U-centring of a symmetric ``[n, n]`` kernel (n ≥ 4): diagonal 0, row and column effects out."""
    n = gram.shape[0]
    k = gram.copy()
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=1)
    total = rows.sum()
    k -= rows[:, None] / (n - 2)
    k -= rows[None, :] / (n - 2)
    k += total / ((n - 1) * (n - 2))
    np.fill_diagonal(k, 0.0)
    return k


def gram_cka(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (the kernel's name in the papers)
    """CKA of two centred kernels from :func:`centred_gram` (both biased or both debiased), the same examples.

    ``⟨K, L⟩_F / (‖K‖_F ‖L‖_F)``: the HSIC normalisations cancel.

    Raises:
        ValueError: kernels of different or non-square shapes.
        UndefinedCKAError: a kernel that is all 0 (a constant representation).
    """
    k, l = np.asarray(k, np.float64), np.asarray(l, np.float64)  # noqa: E741
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape != l.shape:
        raise ValueError(f"kernels must be [n, n] of one shape, got {k.shape} and {l.shape}")
    norms = float(np.linalg.norm(k)) * float(np.linalg.norm(l))
    if not norms > 0:
        raise UndefinedCKAError("a centred kernel is 0 (a representation constant over the examples): CKA is undefined")
    return float(np.vdot(k, l) / norms)


def linear_cka(x: Any, y: Any, *, debiased: bool = False) -> float:
    """Linear CKA of ``x [n, p]`` and ``y [n, q]``, the same ``n`` examples in the same order (see the module docstring).

    Returns:
        The biased CKA in [0, 1], or with ``debiased`` the debiased one in [−1, 1].

    Raises:
        ValueError: ``x`` and ``y`` hold different numbers of examples, or bad features.
        UndefinedCKAError: too few examples, or ``x`` or ``y`` constant over the examples.
    """
    a, b = _features(x, "x"), _features(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must hold the same examples: {a.shape[0]} rows against {b.shape[0]}")
    return gram_cka(centred_gram(a, debiased=debiased), centred_gram(b, debiased=debiased))
