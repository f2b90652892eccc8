"""Extrapolation along training trajectories in latent space (Han et al. 2021, with k neighbours and uncertainty).

Pure NumPy on latents ``[…, L, D]`` (``L = 1`` for space ``w``, ``num_ws`` for ``wplus``),
float64. For a query latent ``q`` (a new subject's baseline projection) and a horizon ``h``
months:

1. **Neighbours.** Each training subject's *baseline* is its first timed visit (smallest
   ``months``); the ``k`` subjects whose baseline latents are nearest to ``q`` are the
   neighbours — ``cosine`` distance ``1 − cos(q, b)`` or ``euclidean`` ``‖q − b‖`` of the
   flattened latents (optionally after subtracting a ``center``, e.g. ``w_avg``). The query's
   own subject is never a neighbour (``allow_self`` lifts that, for tests). Subjects whose
   follow-up span (last minus first visit, months) is 0 — one timed visit — cannot give a
   displacement and are skipped; visits with unknown (NaN) months are ignored; visits at the
   same month are averaged. Ties go to the subject that sorts first.
2. **Displacement** of neighbour ``j``, ``Δ_j(h)``:

   * ``endpoints`` (default, the paper): ``(h / T_j) · (l_j,last − l_j,baseline)``, ``T_j`` its
     span — linear in ``h``;
   * ``piecewise``: the neighbour's visits linearly interpolated at ``h`` months after its
     baseline, minus the baseline (the visit pair bracketing ``h``; past its last visit, its
     last pair's slope continues) — linear between visits, exact at each visit's months.

3. **Combination.** Neighbour ``j``'s prediction is ``p_j = q + Δ_j(h)`` (one per neighbour:
   the spread of the ``k`` predictions is the uncertainty; synthesise each for the spread of
   the predicted image and tumour volume) and the prediction is ``q + Σ_j ω_j Δ_j(h)`` with
   distance weights ``ω`` summing to 1 (:func:`distance_weights`): ``inverse`` distance
   (default), ``softmax`` of ``−d / temperature`` or ``uniform``; ``k = 1`` gives weight 1,
   the paper's method. ``h = 0`` returns ``q`` exactly.

**Chaining** (:func:`extrapolate_chain`): horizons ``h₁, h₂, …`` are increments; step ``s``
takes step ``s − 1``'s combined prediction as its query, searches the neighbours again at
the training baselines (the predicted latent is treated as the baseline of a subject starting
there) and excludes the same subject throughout. With ``endpoints`` and the same neighbours
and weights at each step (e.g. ``uniform`` over all subjects), a chain equals one step of
``Σ h``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from synthmed.errors import SynthmedError

Metric = Literal["cosine", "euclidean"]
Weighting = Literal["inverse", "softmax", "uniform"]
Mode = Literal["endpoints", "piecewise"]
METRICS: tuple[str, ...] = ("cosine", "euclidean")
WEIGHTINGS: tuple[str, ...] = ("inverse", "softmax", "uniform")
MODES: tuple[str, ...] = ("endpoints", "piecewise")


@dataclass(frozen=True)
class Track:
    """One training subject's timed visits, ascending and distinct in months.

    Attributes:
        subject: its id.
        months: float64 ``[V]`` months since its baseline (``months[0] == 0``).
        latents: float64 ``[V, L, D]``.
    """

    subject: str
    months: np.ndarray
    latents: np.ndarray

    @property
    def baseline(self) -> np.ndarray:
        """``[L, D]``: the first visit's latent."""
        return self.latents[0]

    @property
    def span(self) -> float:
        """Months from the baseline to the last visit (0 with one visit)."""
        return float(self.months[-1])

    def displacement(self, horizon: float, mode: Mode = "endpoints") -> np.ndarray:
        """``Δ(h)`` ``[L, D]`` (module docstring, step 2); needs ``span > 0``."""
        if self.span <= 0:
            raise ValueError(f"subject {self.subject}: no follow-up (span 0) to take a displacement from")
        if horizon == 0:
            return np.zeros_like(self.baseline)
        if mode == "endpoints":
            return (horizon / self.span) * (self.latents[-1] - self.latents[0])
        if mode != "piecewise":
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        j = min(int(np.searchsorted(self.months, horizon, side="right")) - 1, len(self.months) - 2)
        t0, t1 = self.months[j], self.months[j + 1]
        at = self.latents[j] + ((horizon - t0) / (t1 - t0)) * (self.latents[j + 1] - self.latents[j])
        return at - self.latents[0]


@dataclass(frozen=True)
class Trajectories:
    """Training latents with their subjects and months (e.g. a latent dictionary's
    :meth:`~synthmed.progression.latents.LatentDictionary.trajectories`).

    Attributes:
        latents: ``[N, L, D]``.
        subjects: ``[N]`` subject ids (as strings).
        months: ``[N]`` months since the subject's baseline (NaN: unknown; such rows are ignored).

    Raises:
        ValueError: shapes that do not match.
    """

    latents: np.ndarray
    subjects: np.ndarray
    months: np.ndarray

    def __post_init__(self) -> None:
        latents = np.asarray(self.latents, np.float64)
        subjects = np.asarray(self.subjects).astype(str)
        months = np.asarray(self.months, np.float64)
        if latents.ndim != 3 or subjects.shape != (len(latents),) or months.shape != (len(latents),):
            raise ValueError(f"latents must be [N, L, D] with subjects and months [N]; got {latents.shape}, "
                             f"{subjects.shape}, {months.shape}")
        object.__setattr__(self, "latents", latents)
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "months", months)

    @cached_property
    def tracks(self) -> list[Track]:
        """Every subject with at least one timed visit, sorted by id (module docstring, step 1)."""
        out = []
        timed = np.isfinite(self.months)
        for subject in sorted(set(self.subjects[timed])):
            rows = np.flatnonzero((self.subjects == subject) & timed)
            months, inverse = np.unique(self.months[rows], return_inverse=True)
            latents = np.stack([self.latents[rows[inverse == v]].mean(0) for v in range(len(months))])
            out.append(Track(str(subject), months - months[0], latents))
        return out


@dataclass(frozen=True)
class Extrapolation:
    """Predicted latents at one horizon for ``Q`` queries with ``k`` neighbours each.

    Attributes:
        latent: ``[Q, L, D]``, the weighted prediction.
        per_neighbour: ``[Q, k, L, D]``, neighbour ``j``'s prediction ``q + Δ_j(h)``.
        neighbours: ``[Q, k]`` subject ids, nearest first.
        distances: ``[Q, k]`` of the query to each neighbour's baseline.
        weights: ``[Q, k]``, each row summing to 1.
        spans: ``[Q, k]`` months of each neighbour's follow-up.
        horizon: months of this step; months: since the original baseline (chains add up).
    """

    latent: np.ndarray
    per_neighbour: np.ndarray
    neighbours: np.ndarray
    distances: np.ndarray
    weights: np.ndarray
    spans: np.ndarray
    horizon: float
    months: float


def latent_distances(queries: np.ndarray, references: np.ndarray, metric: Metric = "cosine") -> np.ndarray:
    """``[Q, S]`` distances between flattened latents ``[Q, …]`` and ``[S, …]``: ``cosine``
    ``1 − cos`` (a zero vector is at distance 1 from everything) or ``euclidean``."""
    a = np.asarray(queries, np.float64).reshape(len(queries), -1)
    b = np.asarray(references, np.float64).reshape(len(references), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"latents of {a.shape[1]} and {b.shape[1]} numbers cannot be compared")
    if metric == "cosine":
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = (a @ b.T) / np.maximum(na[:, None] * nb[None, :], np.finfo(np.float64).tiny)
        return 1.0 - np.clip(cos, -1.0, 1.0)
    if metric == "euclidean":
        return np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0))
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def distance_weights(distances: np.ndarray, weighting: Weighting = "inverse", temperature: float = 1.0) -> np.ndarray:
    """Weights ``[Q, k]`` of neighbours at ``distances`` ``[Q, k]``, each row summing to 1.

    * ``inverse``: ``ω_j ∝ 1 / d_j``; neighbours at distance 0 share the weight equally (the
      others get 0);
    * ``softmax``: ``ω_j ∝ exp(−d_j / temperature)``;
    * ``uniform``: ``1 / k``.
    """
    d = np.asarray(distances, np.float64)
    if d.ndim != 2 or d.shape[1] < 1:
        raise ValueError(f"distances must be [Q, k] with k >= 1, got shape {d.shape}")
    if weighting == "uniform":
        w = np.ones_like(d)
    elif weighting == "inverse":
        zero = d <= 0
        with np.errstate(divide="ignore"):
            w = np.where(zero.any(1, keepdims=True), zero.astype(np.float64), 1.0 / d)
    elif weighting == "softmax":
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        w = np.exp(-(d - d.min(1, keepdims=True)) / temperature)
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return w / w.sum(1, keepdims=True)


def _query_subjects(query_subjects: Sequence[str | None] | None, q: int) -> list[str | None]:
    if query_subjects is None:
        return [None] * q
    subjects = [None if s is None else str(s) for s in query_subjects]
    if len(subjects) != q:
        raise ValueError(f"{len(subjects)} query subjects for {q} queries")
    return subjects


def nearest_subjects(queries: np.ndarray, training: Trajectories, *, query_subjects: Sequence[str | None] | None = None,
                     k: int = 1, metric: Metric = "cosine", allow_self: bool = False,
                     center: np.ndarray | None = None) -> tuple[list[Track], np.ndarray, np.ndarray]:
    """The ``k`` training subjects with a follow-up whose baselines are nearest to each query.

    Args:
        queries: ``[Q, L, D]``.
        training: the training trajectories.
        query_subjects: each query's subject id (``None``: not a training subject); that
            subject is never returned unless ``allow_self``.
        k: neighbours wanted; fewer (with a warning) when fewer subjects are eligible.
        center: ``[L, D]`` or ``[D]`` subtracted from every latent before measuring (e.g. ``w_avg``).

    Returns:
        ``(tracks, index [Q, k'], distances [Q, k'])``: the eligible subjects' tracks and, per
        query, the positions in it of its neighbours (nearest first) and their distances.

    Raises:
        SynthmedError: ``k < 1``, or a query without an eligible subject (none with a follow-up
            span > 0 besides its own).
    """
    if k < 1:
        raise SynthmedError(f"k must be >= 1, got {k}")
    q = np.asarray(queries, np.float64)
    if q.ndim != 3 or q.shape[1:] != training.latents.shape[1:]:
        raise ValueError(f"queries must be [Q, {', '.join(map(str, training.latents.shape[1:]))}] like the "
                         f"training latents, got {q.shape}")
    subjects = _query_subjects(query_subjects, len(q))
    tracks = [t for t in training.tracks if t.span > 0]
    if not tracks:
        raise SynthmedError("no training subject has a follow-up (two visits at different months) to extrapolate from")
    shift = 0.0 if center is None else np.asarray(center, np.float64)
    d = latent_distances(q - shift, np.stack([t.baseline for t in tracks]) - shift, metric)
    ids = np.array([t.subject for t in tracks])
    if not allow_self:
        d = np.where(ids[None, :] == np.array([s if s is not None else "\0none" for s in subjects])[:, None], np.inf, d)
    eligible = np.isfinite(d).sum(1)
    if (eligible == 0).any():
        i = int(np.flatnonzero(eligible == 0)[0])
        raise SynthmedError(f"query {i} (subject {subjects[i]}): no other training subject has a follow-up to "
                            "extrapolate from")
    kk = min(k, int(eligible.min()))
    if kk < k:
        warnings.warn(f"k = {k} neighbours asked for, only {kk} training subjects with a follow-up are eligible",
                      stacklevel=2)
    index = np.argsort(d, axis=1, kind="stable")[:, :kk]
    return tracks, index, np.take_along_axis(d, index, axis=1)


def extrapolate(queries: np.ndarray, training: Trajectories, horizon: float, *,
                query_subjects: Sequence[str | None] | None = None, k: int = 1, metric: Metric = "cosine",
                weighting: Weighting = "inverse", temperature: float = 1.0, mode: Mode = "endpoints",
                allow_self: bool = False, center: np.ndarray | None = None) -> Extrapolation:
    """Predict each query's latent ``horizon`` months later (the module docstring).

    Args:
        queries: ``[Q, L, D]`` baseline latents.
        training: the training subjects' trajectories.
        horizon: months ahead, ``>= 0`` (0: the queries themselves).
        query_subjects, k, metric, allow_self, center: see :func:`nearest_subjects`.
        weighting, temperature: see :func:`distance_weights`.
        mode: ``endpoints`` or ``piecewise`` displacements.

    Raises:
        SynthmedError: a negative or non-finite horizon; no eligible neighbour (see
            :func:`nearest_subjects`).
    """
    if not np.isfinite(horizon) or horizon < 0:
        raise SynthmedError(f"the horizon must be a finite number of months >= 0, got {horizon}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    q = np.asarray(queries, np.float64)
    tracks, index, dist = nearest_subjects(q, training, query_subjects=query_subjects, k=k, metric=metric,
                                           allow_self=allow_self, center=center)
    weights = distance_weights(dist, weighting, temperature)
    disp = np.stack([np.stack([tracks[j].displacement(float(horizon), mode) for j in row]) for row in index])
    return Extrapolation(
        latent=q + np.einsum("qk,qk...->q...", weights, disp),
        per_neighbour=q[:, None] + disp,
        neighbours=np.array([[tracks[j].subject for j in row] for row in index], dtype=object),
        distances=dist, weights=weights,
        spans=np.array([[tracks[j].span for j in row] for row in index]),
        horizon=float(horizon), months=float(horizon))


def extrapolate_chain(queries: np.ndarray, training: Trajectories, horizons: Sequence[float], **options: object) -> list[Extrapolation]:
    """Multi-step prediction: one :func:`extrapolate` per horizon increment, each from the previous
    step's combined prediction (the module docstring); ``options`` are :func:`extrapolate`'s.

    Returns:
        One :class:`Extrapolation` per step; ``months`` is the sum of the increments so far.

    Raises:
        SynthmedError: no horizons, or a step's errors.
    """
    if not len(horizons):
        raise SynthmedError("a chain needs at least one horizon")
    steps: list[Extrapolation] = []
    current, months = np.asarray(queries, np.float64), 0.0
    for h in horizons:
        step = extrapolate(current, training, float(h), **options)  # type: ignore[arg-type]
        months += float(h)
        steps.append(Extrapolation(step.latent, step.per_neighbour, step.neighbours, step.distances, step.weights,
                                   step.spans, step.horizon, months))
        current = step.latent
    return steps
