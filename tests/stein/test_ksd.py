"""Kernel Stein discrepancy against a direct double loop, autodiff of the kernel, and test levels."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.stein import (
    ksd,
    ksd_test,
    linear_ksd,
    linear_ksd_test,
    median_bandwidth,
    stein_kernel,
    stein_kernel_matrix,
    wild_bootstrap_weights,
)


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.array([1.0, 0.7, 1.3][:d]) + 0.2
    mu_q = np.array([0.3, -0.4, 0.1][:d])
    sq = -(x - mu_q)  # score of the (wrong) model N(mu_q, I)
    return x, sq


def _loop_stein_kernel(x, sq, h):
    """u_q(x_i, x_j) by direct per-pair, per-dimension sums (float64)."""
    n, d = x.shape
    out = np.zeros((n, n))
    for i, j in itertools.product(range(n), range(n)):
        r = x[i] - x[j]
        k = np.exp(-np.sum(r**2) / (2 * h**2))
        grad_x_k = -r / h**2 * k  # d k / d x_i
        grad_y_k = r / h**2 * k  # d k / d x_j
        trace = sum(k / h**2 - r[a] ** 2 / h**4 * k for a in range(d))
        out[i, j] = sq[i] @ sq[j] * k + sq[i] @ grad_y_k + sq[j] @ grad_x_k + trace
    return out


@pytest.mark.parametrize("n,d", [(9, 2), (12, 3)])
def test_ksd_matches_double_loop(n, d):
    x, sq = _data(n, d, seed=n)
    dists = [np.linalg.norm(x[i] - x[j]) for i in range(n) for j in range(i + 1, n)]
    h = float(np.median(dists))
    xj, sqj = jnp.asarray(x, jnp.float32), jnp.asarray(sq, jnp.float32)

    @jax.jit
    def everything(x, s):
        return (
            median_bandwidth(x),
            stein_kernel_matrix(x, s),
            ksd(x, s, statistic="u"),
            ksd(x, s, statistic="v"),
            linear_ksd(x, s),
            ksd(x, s, bandwidth=0.8, statistic="v"),
        )

    med, hmat, u_got, v_got, lin_got, v_fixed = everything(xj, sqj)
    np.testing.assert_allclose(med, h, rtol=1e-5)
    loop = _loop_stein_kernel(x, sq, h)
    np.testing.assert_allclose(hmat, loop, rtol=1e-4, atol=1e-5)
    u_stat = (loop.sum() - np.trace(loop)) / (n * (n - 1))
    np.testing.assert_allclose(u_got, u_stat, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(v_got, loop.mean(), rtol=1e-4, atol=1e-6)
    pairs = [loop[2 * i, 2 * i + 1] for i in range(n // 2)]
    np.testing.assert_allclose(lin_got, np.mean(pairs), rtol=1e-4, atol=1e-6)
    # A given bandwidth is used as given.
    np.testing.assert_allclose(v_fixed, _loop_stein_kernel(x, sq, 0.8).mean(), rtol=1e-4)


def test_stein_kernel_matches_autodiff_of_rbf():
    x, sq = _data(2, 3, seed=7)
    x0, x1 = jnp.asarray(x[0], jnp.float32), jnp.asarray(x[1], jnp.float32)
    s0, s1 = jnp.asarray(sq[0], jnp.float32), jnp.asarray(sq[1], jnp.float32)
    h = 1.3

    def k(a, b):
        return jnp.exp(-jnp.sum((a - b) ** 2) / (2 * h**2))

    @jax.jit
    def both(x0, x1, s0, s1):
        trace = jnp.trace(jax.jacfwd(jax.grad(k, argnums=0), argnums=1)(x0, x1))
        grad_x, grad_y = jax.grad(k, 0)(x0, x1), jax.grad(k, 1)(x0, x1)
        want = s0 @ s1 * k(x0, x1) + s0 @ grad_y + s1 @ grad_x + trace
        return stein_kernel(x0, x1, s0, s1, h), want

    got, want = both(x0, x1, s0, s1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_score_callable_equals_array():
    x, _ = _data(10, 2, seed=3)
    xj = jnp.asarray(x, jnp.float32)
    score = lambda xi: -xi  # noqa: E731
    got, want = jax.jit(lambda x: (ksd(x, score), ksd(x, -x)))(xj)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_markov_weights_flip_at_the_given_rate():
    w = wild_bootstrap_weights(jax.random.key(0), 200, 500, weights="markov", flip_prob=0.1)
    assert set(np.unique(np.asarray(w)).tolist()) == {-1.0, 1.0}
    flips = np.mean(np.asarray(w[:, 1:] != w[:, :-1]))
    assert abs(flips - 0.1) < 0.01
    assert abs(float(jnp.mean(w[:, 0]))) < 0.2


TESTS = {
    "v-rademacher": lambda x, s, k: ksd_test(x, s, key=k, n_boot=300, statistic="v"),
    "u-rademacher": lambda x, s, k: ksd_test(x, s, key=k, n_boot=300, statistic="u"),
    "v-markov": lambda x, s, k: ksd_test(
        x, s, key=k, n_boot=300, statistic="v", weights="markov", flip_prob=0.5
    ),
    "linear": lambda x, s, k: linear_ksd_test(x, s),
}


def test_ksd_tests_hold_level_and_have_power():
    """Rejection rates of H0: N(0, I) for samples from N(shift, I), 60 repetitions of n = 100."""

    def one(key, shift):
        k_x, k_test = jax.random.split(key)
        x = jax.random.normal(k_x, (100, 2)) + shift
        return jnp.stack([fn(x, -x, k_test).reject for fn in TESTS.values()])

    keys = jax.random.split(jax.random.key(0), 60)
    shifts = jnp.array([0.0, 0.6, 1.0], jnp.float32)
    # One compile for every test, shift and repetition.
    rejects = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0)))(keys, shifts)
    rates = np.asarray(jnp.mean(rejects.astype(jnp.float32), axis=1))  # (shift, test)
    for i, name in enumerate(TESTS):
        # At alpha = 0.05, 12 or more false rejections in 60 has probability < 1e-3.
        assert rates[0, i] <= 0.2, (name, rates[:, i])
        # The linear-time test has less power: it gets the larger shift.
        assert rates[2 if name == "linear" else 1, i] >= 0.9, (name, rates[:, i])
