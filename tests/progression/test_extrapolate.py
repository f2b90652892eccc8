"""Extrapolation in latent space: neighbours matched at baselines and never the query's subject, displacements
linear in the horizon, a subject's own trajectory reproduced, weights, chains, per-neighbour predictions, errors."""

from __future__ import annotations

import numpy as np
import pytest

from synthmed.errors import SynthmedError
from synthmed.progression.extrapolate import (
    Trajectories,
    distance_weights,
    extrapolate,
    extrapolate_chain,
    latent_distances,
    nearest_subjects,
)


def cohort(subjects: int = 6, visits: int = 3, layers: int = 2, dim: int = 8, seed: int = 0) -> Trajectories:
    """Subjects ``s0 …`` with visits every 6 months (``s{i}``'s at ``6·v·(1 + i % 2)``), in shuffled rows."""
    rng = np.random.default_rng(seed)
    latents, ids, months = [], [], []
    for i in range(subjects):
        base, slope = rng.normal(size=(layers, dim)), rng.normal(size=(layers, dim))
        for v in range(visits):
            t = 6.0 * v * (1 + i % 2)
            latents.append(base + slope * t / 12 + 0.1 * rng.normal(size=(layers, dim)))
            ids.append(f"s{i}")
            months.append(t)
    order = rng.permutation(len(ids))
    return Trajectories(np.array(latents)[order], np.array(ids)[order], np.array(months)[order])


def test_the_query_subject_is_never_a_neighbour_and_matching_is_at_baselines():
    traj = cohort()
    tracks = {t.subject: t for t in traj.tracks}
    queries = np.stack([tracks[f"s{i}"].baseline for i in range(6)])  # each its own nearest baseline
    found, index, dist = nearest_subjects(queries, traj, query_subjects=[f"s{i}" for i in range(6)], k=5)
    names = np.array([t.subject for t in found])[index]
    for i in range(6):
        assert f"s{i}" not in names[i] and len(set(names[i])) == 5
    assert (np.diff(dist, axis=1) >= 0).all()
    _, index, dist = nearest_subjects(queries, traj, query_subjects=[f"s{i}" for i in range(6)], k=1, allow_self=True)
    assert (np.array([t.subject for t in found])[index[:, 0]] == [f"s{i}" for i in range(6)]).all()
    np.testing.assert_allclose(dist, 0, atol=1e-12)
    # a follow-up latent of s2 is not a baseline: the query nearest to it matches by baselines only
    last = tracks["s2"].latents[-1]
    _, index, dist = nearest_subjects(last[None], traj, k=6, metric="euclidean", allow_self=True)
    expected = latent_distances(last[None], np.stack([t.baseline for t in found]), "euclidean")[0]
    np.testing.assert_allclose(dist[0], np.sort(expected))


def test_displacement_is_linear_in_the_horizon_and_zero_is_the_identity():
    traj = cohort()
    q = np.random.default_rng(1).normal(size=(3, 2, 8))
    options = dict(query_subjects=["s0", None, "s5"], k=3, weighting="inverse")
    zero = extrapolate(q, traj, 0.0, **options)
    np.testing.assert_array_equal(zero.latent, q)
    np.testing.assert_array_equal(zero.per_neighbour, np.repeat(q[:, None], 3, axis=1))
    one, two = extrapolate(q, traj, 6.0, **options), extrapolate(q, traj, 12.0, **options)
    assert (one.neighbours == two.neighbours).all()
    np.testing.assert_allclose(two.latent - q, 2 * (one.latent - q), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(two.per_neighbour - q[:, None], 2 * (one.per_neighbour - q[:, None]), atol=1e-12)
    assert not np.allclose(one.latent, q)
    # the combined prediction is the weighted mean of the per-neighbour ones (the uncertainty's samples)
    np.testing.assert_allclose(np.einsum("qk,qk...->q...", one.weights, one.per_neighbour), one.latent, atol=1e-12)
    # each neighbour's displacement is scaled by horizon / its own span
    tracks = {t.subject: t for t in traj.tracks}
    j = one.neighbours[1, 0]
    np.testing.assert_allclose(one.per_neighbour[1, 0] - q[1],
                               6.0 / tracks[j].span * (tracks[j].latents[-1] - tracks[j].baseline))
    assert one.spans[1, 0] == tracks[j].span


@pytest.mark.parametrize("mode", ["endpoints", "piecewise"])
def test_a_subject_queried_with_itself_allowed_reproduces_its_follow_up(mode):
    traj = cohort()
    for track in traj.tracks:
        out = extrapolate(track.baseline[None], traj, track.span, query_subjects=[track.subject], k=1,
                          allow_self=True, mode=mode)
        assert out.neighbours[0, 0] == track.subject and out.weights[0, 0] == 1
        np.testing.assert_allclose(out.latent[0], track.latents[-1], atol=1e-12)
        if mode == "piecewise":  # every visit, not only the last
            for t, latent in zip(track.months, track.latents):
                np.testing.assert_allclose(extrapolate(track.baseline[None], traj, float(t), k=1, allow_self=True,
                                                       query_subjects=[track.subject], mode=mode).latent[0],
                                           latent, atol=1e-12)


def test_distance_weights_sum_to_one():
    d = np.array([[0.1, 0.2, 0.4], [0.0, 0.3, 0.0], [1.0, 1.0, 1.0]])
    for weighting in ("inverse", "softmax", "uniform"):
        w = distance_weights(d, weighting, temperature=0.5)
        np.testing.assert_allclose(w.sum(1), 1.0)
        assert (w >= 0).all()
    inverse = distance_weights(d, "inverse")
    np.testing.assert_allclose(inverse[0], np.array([10, 5, 2.5]) / 17.5)
    np.testing.assert_allclose(inverse[1], [0.5, 0, 0.5])  # at distance 0: those share everything
    np.testing.assert_allclose(distance_weights(d[:, :1], "softmax"), 1.0)  # k = 1: the paper
    soft = distance_weights(d[:1], "softmax", temperature=0.1)
    assert soft[0, 0] > soft[0, 1] > soft[0, 2]
    with pytest.raises(ValueError, match="temperature"):
        distance_weights(d, "softmax", temperature=0)


def test_a_chain_adds_up_and_equals_one_step_when_its_neighbours_stay():
    traj = cohort()
    q = np.random.default_rng(2).normal(size=(2, 2, 8))
    options = dict(query_subjects=["s1", "s3"], k=6, weighting="uniform")  # all 5 others, every step
    with pytest.warns(UserWarning, match="only 5"):
        steps = extrapolate_chain(q, traj, [6.0, 4.0, 2.0], **options)
        once = extrapolate(q, traj, 12.0, **options)
    assert [s.months for s in steps] == [6.0, 10.0, 12.0] and [s.horizon for s in steps] == [6.0, 4.0, 2.0]
    np.testing.assert_allclose(steps[-1].latent, once.latent, atol=1e-12)
    for s in steps:
        assert not ({"s1"} & set(s.neighbours[0])) and not ({"s3"} & set(s.neighbours[1]))
    # the second step starts from the first's prediction, with neighbours searched again there
    near = extrapolate_chain(q, traj, [6.0, 6.0], query_subjects=["s1", "s3"], k=2)
    again = extrapolate(near[0].latent, traj, 6.0, query_subjects=["s1", "s3"], k=2)
    np.testing.assert_allclose(near[1].latent, again.latent)
    assert (near[1].neighbours == again.neighbours).all()


def test_subjects_without_a_follow_up_are_skipped_and_errors_are_clear():
    rng = np.random.default_rng(0)
    lat = rng.normal(size=(5, 1, 4))
    # a: two visits at month 0 (span 0), b: one visit, c: visits at 0 and 12, d: unknown months
    traj = Trajectories(lat, np.array(["a", "a", "b", "c", "c"]), np.array([0.0, 0.0, 0.0, 0.0, 12.0]))
    out = extrapolate(lat[:1], traj, 3.0, query_subjects=["a"], k=1)
    assert out.neighbours[0, 0] == "c"
    np.testing.assert_allclose(out.latent[0], lat[0] + 0.25 * (lat[4] - lat[3]))
    with pytest.raises(SynthmedError, match="no other training subject has a follow-up"):
        extrapolate(lat[3:4], traj, 3.0, query_subjects=["c"])
    only_baselines = Trajectories(lat[:3], np.array(["a", "a", "b"]), np.array([0.0, 0.0, np.nan]))
    with pytest.raises(SynthmedError, match="no training subject has a follow-up"):
        extrapolate(lat[:1], only_baselines, 0.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(SynthmedError, match="horizon"):
            extrapolate(lat[:1], traj, bad)
    with pytest.raises(SynthmedError, match="k must be"):
        extrapolate(lat[:1], traj, 1.0, k=0)
    with pytest.raises(SynthmedError, match="at least one horizon"):
        extrapolate_chain(lat[:1], traj, [])
    with pytest.raises(ValueError, match="queries must be"):
        extrapolate(rng.normal(size=(1, 2, 4)), traj, 1.0)
    with pytest.raises(ValueError, match="subjects and months"):
        Trajectories(lat, np.array(["a"]), np.zeros(5))
    # visits at the same month are averaged; NaN months are ignored
    dup = Trajectories(lat, np.array(["c", "c", "c", "c", "x"]), np.array([0.0, 6.0, 6.0, np.nan, 1.0]))
    track = dup.tracks[0]
    np.testing.assert_allclose(track.latents[1], lat[1:3].mean(0))
    np.testing.assert_array_equal(track.months, [0, 6])


def test_cosine_and_euclidean_distances():
    a = np.array([[[1.0, 0.0]], [[0.0, 0.0]]])
    b = np.array([[[2.0, 0.0]], [[0.0, 3.0]], [[-1.0, 0.0]]])
    np.testing.assert_allclose(latent_distances(a, b, "cosine"), [[0, 1, 2], [1, 1, 1]], atol=1e-12)
    np.testing.assert_allclose(latent_distances(a, b, "euclidean"), [[1, np.sqrt(10), 2], [2, 3, 1]])
    with pytest.raises(ValueError, match="metric"):
        latent_distances(a, b, "manhattan")  # type: ignore[arg-type]
