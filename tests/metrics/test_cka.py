"""Linear CKA against brute-force HSIC (the centring matrix and trace formula; Song et al.'s unbiased formula)
and its known properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmed.metrics import cka as cka_module
from synthmed.metrics import UndefinedCKAError, centred_gram, gram_cka, linear_cka


def brute_force_cka(x: np.ndarray, y: np.ndarray) -> float:
    """HSIC(K, L) = tr(K H L H) / (n − 1)² with the explicit centring matrix H, on uncentred linear kernels."""
    n = len(x)
    x, y = x.reshape(n, -1).astype(np.float64), y.reshape(n, -1).astype(np.float64)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T  # noqa: E741

    def hsic(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def brute_force_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC, written out term by term on uncentred kernels with zeroed diagonals."""
    n = len(x)
    x, y = x.reshape(n, -1).astype(np.float64), y.reshape(n, -1).astype(np.float64)
    one = np.ones(n)

    def hsic1(a, b):
        a, b = a.copy(), b.copy()
        np.fill_diagonal(a, 0)
        np.fill_diagonal(b, 0)
        return (np.trace(a @ b) + (one @ a @ one) * (one @ b @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ a @ b @ one) / (n * (n - 3))

    k, l = x @ x.T, y @ y.T  # noqa: E741
    return hsic1(k, l) / np.sqrt(hsic1(k, k) * hsic1(l, l))


def related(seed: int = 0, n: int = 40, p: int = 7, q: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Two representations sharing a latent factor, with offsets (so centring matters)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    x = z @ rng.standard_normal((3, p)) + 0.5 * rng.standard_normal((n, p)) + 3.0
    y = np.tanh(z @ rng.standard_normal((3, q))) + 0.3 * rng.standard_normal((n, q)) - 2.0
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_brute_force_trace_formula(seed):
    x, y = related(seed)
    assert linear_cka(x, y) == pytest.approx(brute_force_cka(x, y), rel=1e-10)
    assert linear_cka(x, y, debiased=True) == pytest.approx(brute_force_debiased_cka(x, y), rel=1e-9)
    wide_x, wide_y = related(seed, n=12, p=50, q=30)  # more features than examples
    assert linear_cka(wide_x, wide_y) == pytest.approx(brute_force_cka(wide_x, wide_y), rel=1e-10)
    assert linear_cka(wide_x, wide_y, debiased=True) == pytest.approx(brute_force_debiased_cka(wide_x, wide_y),
                                                                     rel=1e-9)


def test_feature_space_identity_of_the_biased_estimator():
    x, y = related(3)
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one_and_invariances_hold(debiased):
    x, y = related(4, p=6)
    base = linear_cka(x, y, debiased=debiased)
    assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((6, 6)))
    assert not np.allclose(q, np.eye(6))
    assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(base, rel=1e-10)  # orthogonal transform
    assert linear_cka(x @ q, x, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(7.5 * x, y, debiased=debiased) == pytest.approx(base, rel=1e-10)  # isotropic scaling
    assert linear_cka(x + 100.0, y, debiased=debiased) == pytest.approx(base, rel=1e-8)  # translation
    scaled = x * np.array([1.0, 10.0, 0.1, 1.0, 3.0, 0.3])  # non-isotropic scaling
    assert linear_cka(scaled, x, debiased=debiased) < 0.95
    assert abs(linear_cka(scaled, y, debiased=debiased) - base) > 1e-3


def test_is_symmetric_bounded_and_flattens_trailing_dimensions():
    rng = np.random.default_rng(6)
    acts = rng.standard_normal((10, 3, 4, 4)).astype(np.float32)
    other = (acts * rng.uniform(0.5, 2, size=(1, 3, 1, 1)) + rng.standard_normal((10, 3, 4, 4))).astype(np.float32)
    value = linear_cka(acts, other)
    assert value == pytest.approx(linear_cka(other, acts), rel=1e-12)
    assert value == pytest.approx(linear_cka(acts.reshape(10, -1), other.reshape(10, -1)), rel=1e-12)
    assert value == pytest.approx(linear_cka(torch.from_numpy(acts), torch.from_numpy(other)), rel=1e-12)
    assert 0 <= value <= 1
    for seed in range(20):
        a, b = np.random.default_rng(seed).standard_normal((2, 6, 3))
        assert 0 <= linear_cka(a, b) <= 1 + 1e-12
        assert -1 - 1e-12 <= linear_cka(a, b, debiased=True) <= 1 + 1e-12


def test_independent_features_are_nearly_dissimilar_for_large_n():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((4000, 8)), rng.standard_normal((4000, 8))
    assert linear_cka(x, y) < 0.01  # biased: about p·q / (n·√(p·q)) = 0.002 here
    assert abs(linear_cka(x, y, debiased=True)) < 0.005
    small_x, small_y = x[:20], y[:20]
    assert linear_cka(small_x, small_y) > linear_cka(x, y)  # the biased estimator's pull towards 1 at small n


def test_chunked_centring_equals_one_chunk(monkeypatch):
    x, y = related(8, n=9, p=40, q=25)
    expected = (linear_cka(x, y), linear_cka(x, y, debiased=True))
    monkeypatch.setattr(cka_module, "_CHUNK_VALUES", 9 * 3)  # 3 columns per chunk
    assert linear_cka(x, y) == pytest.approx(expected[0], rel=1e-12)
    assert linear_cka(x, y, debiased=True) == pytest.approx(expected[1], rel=1e-12)


def test_grams_compose_to_the_same_value_and_are_centred():
    x, y = related(9)
    k, l = centred_gram(x), centred_gram(y)  # noqa: E741
    assert np.allclose(k.sum(0), 0, atol=1e-9) and np.allclose(k, k.T)
    assert gram_cka(k, l) == pytest.approx(linear_cka(x, y), rel=1e-12)
    ku = centred_gram(x, debiased=True)
    assert np.all(np.diag(ku) == 0) and np.allclose(ku.sum(0), 0, atol=1e-9)
    with pytest.raises(ValueError, match="kernels must be"):
        gram_cka(k, l[:-1, :-1])


def test_undefined_and_bad_inputs_raise_clear_errors():
    x, _ = related(10)
    with pytest.raises(UndefinedCKAError, match="at least 2 examples, got 1"):
        linear_cka(x[:1], x[:1])
    with pytest.raises(UndefinedCKAError, match=r"\(debiased\) needs at least 4 examples, got 3"):
        linear_cka(x[:3], x[:3], debiased=True)
    constant = np.tile(np.array([[0.3, -1.2, 5.0]], np.float32), (12, 1))
    for debiased in (False, True):
        with pytest.raises(UndefinedCKAError, match="constant over the 12 examples"):
            linear_cka(constant, x[:12], debiased=debiased)
    with pytest.raises(UndefinedCKAError, match="constant"):
        linear_cka(np.zeros((5, 4)), x[:5])
    one_constant_column = x.copy()
    one_constant_column[:, 0] = 2.0
    assert 0 < linear_cka(one_constant_column, x) < 1  # a constant column alone is fine
    assert issubclass(UndefinedCKAError, ValueError)
    with pytest.raises(ValueError, match="same examples: 40 rows against 39"):
        linear_cka(x, x[:-1])
    with pytest.raises(ValueError, match=r"must be \[n, p\] features"):
        linear_cka(x[:, 0], x[:, 0])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_cka(bad, x)
