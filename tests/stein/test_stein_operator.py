"""The Stein operator against Stein's identity, closed forms and the exact trace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.stein import (
    batched_score_fn,
    critic_loss,
    critic_objective,
    energy_score_fn,
    power_critic_loss,
    power_objective,
    score_fn,
    stein_statistic,
    stein_z_test,
)
from jaxebm.estimators import sample_probe
from jaxebm.stein.operator import SteinTerms

D = 3
MU = jnp.array([0.5, -1.0, 0.25], jnp.float32)
_L = jnp.array([[1.0, 0.0, 0.0], [0.4, 0.8, 0.0], [-0.3, 0.2, 0.6]], jnp.float32)
COV = _L @ _L.T
PREC = jnp.linalg.inv(COV)


def gaussian_log_prob(x):
    """Unnormalized log N(MU, COV) for one sample."""
    r = x - MU
    return -0.5 * r @ PREC @ r


def gaussian_score(x):
    return -(PREC @ (x - MU))


def sample_gaussian(key, n):
    return MU[None, :] + jax.random.normal(key, (n, D)) @ _L.T


W = jnp.array([[1.0, -0.5, 0.3], [0.2, 0.7, -1.1], [-0.6, 0.4, 0.9]], jnp.float32)
A = jnp.array([0.1, -0.2, 0.3], jnp.float32)


def critic(x):
    """A nonlinear critic R^3 -> R^3 with a non-symmetric Jacobian."""
    return jnp.tanh(W @ x + A) + 0.5 * jnp.sin(x[::-1]) * x


@pytest.mark.parametrize(
    "trace,score_kind",
    [
        ("exact", "closed_form"),
        ("exact", "autodiff"),
        ("gaussian", "autodiff"),
        ("rademacher", "closed_form"),
    ],
)
def test_stein_identity_holds_for_true_score(trace, score_kind):
    k_x, k_eps = jax.random.split(jax.random.key(0))
    x = sample_gaussian(k_x, 20_000)

    @jax.jit
    def everything(x, key):
        if score_kind == "closed_form":
            score = jax.vmap(gaussian_score)(x)
        else:
            score = score_fn(gaussian_log_prob)
        stat = stein_statistic(critic, x, score, trace=trace, key=key).stat
        mean_trace = jnp.mean(jax.vmap(lambda xi: jnp.trace(jax.jacfwd(critic)(xi)))(x))
        return stat, mean_trace

    stat, mean_trace = everything(x, k_eps)
    stat = np.asarray(stat, np.float64)
    se = stat.std(ddof=1) / np.sqrt(stat.size)
    assert abs(stat.mean()) < 4.0 * se, (stat.mean(), se)
    # The identity is not vacuous: the trace term alone is far from zero.
    assert abs(float(mean_trace)) > 10 * se


def test_scores_by_autodiff_match_closed_form():
    x = sample_gaussian(jax.random.key(1), 16)
    want = jax.vmap(gaussian_score)(x)
    np.testing.assert_allclose(jax.vmap(score_fn(gaussian_log_prob))(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batched_score_fn(gaussian_log_prob)(x), want, rtol=1e-5, atol=1e-5)
    energy = lambda xi: -gaussian_log_prob(xi)  # noqa: E731
    np.testing.assert_allclose(jax.vmap(energy_score_fn(energy))(x), want, rtol=1e-5, atol=1e-5)

    # Parameters first, as in the project's f(params, x) convention.
    def log_prob_params(mu, xi):
        return -0.5 * jnp.sum((xi - mu) ** 2)

    got = batched_score_fn(log_prob_params, argnum=1)(MU, x)
    np.testing.assert_allclose(got, MU[None, :] - x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_trace_agrees_with_exact_in_mean(kind):
    x = sample_gaussian(jax.random.key(2), 40)
    sq = jax.vmap(gaussian_score)(x)
    keys = jax.random.split(jax.random.key(3), 4000)

    @jax.jit
    def everything(x, sq, keys):
        exact = stein_statistic(critic, x, sq, trace="exact").stat
        hutch = jax.vmap(lambda k: stein_statistic(critic, x, sq, trace=kind, key=k).stat)(keys)
        # The probe drawn from a key is the same as the explicit one.
        eps = sample_probe(keys[0], x.shape, kind)
        explicit = stein_statistic(critic, x, sq, trace=kind, eps=eps).stat
        return exact, hutch, explicit

    exact, hutch, explicit = everything(x, sq, keys)
    hutch = np.asarray(hutch, np.float64)
    se = hutch.std(axis=0, ddof=1) / np.sqrt(hutch.shape[0]) + 1e-6
    assert np.all(np.abs(hutch.mean(axis=0) - np.asarray(exact)) < 5.0 * se)
    np.testing.assert_allclose(explicit, hutch[0], rtol=1e-5, atol=1e-5)


@jax.jit
def _fisher_case(x, d, lam):
    """Stein terms and objectives of the optimal critic and of two rescaled ones."""
    sq = -(x - (MU + d)[None, :])
    out = []
    for scale in (1.0, 0.5, 1.5):
        f = lambda xi, scale=scale: scale * d / (2.0 * lam) + 0.0 * xi  # noqa: E731
        terms = stein_statistic(f, x, sq, trace="exact")
        out.append((terms.stat, critic_objective(terms, lam), critic_loss(terms, lam)))
    return out


@pytest.mark.parametrize("lam", [0.1, 1.0, 10.0])
def test_optimal_critic_attains_scaled_fisher_divergence(lam):
    # p = N(MU, I), q = N(MU + d, I): s_q - s_p = d, so f* = d / (2 lam) and the critic
    # objective's maximum is |d|^2 / (4 lam); its Stein statistic has mean |d|^2 / (2 lam).
    d = jnp.array([0.7, -0.4, 0.2], jnp.float32)
    x = MU[None, :] + jax.random.normal(jax.random.key(4), (50_000, D))
    (stat, obj, loss), *rescaled = _fisher_case(x, d, jnp.float32(lam))
    dd = float(d @ d)
    stat = np.asarray(stat, np.float64)
    se = stat.std(ddof=1) / np.sqrt(stat.size)
    assert abs(stat.mean() - dd / (2 * lam)) < 4 * se + 1e-6
    assert abs(float(obj) - dd / (4 * lam)) < 4 * se + 1e-5
    np.testing.assert_allclose(loss, -obj)
    # A rescaled critic does worse: the objective is a concave quadratic in the scale.
    for _, worse, _ in rescaled:
        assert float(worse) < float(obj)


def test_power_objective_and_z_test_formulas():
    stat = jnp.array([0.3, -0.1, 1.2, 0.5, 0.0, 0.9], jnp.float32)
    sq_norm = jnp.array([1.0, 2.0, 0.5, 0.25, 3.0, 1.0], jnp.float32)
    terms = SteinTerms(stat=stat, sq_norm=sq_norm)
    s = np.asarray(stat, np.float64)
    ratio = s.mean() / (s.std(ddof=1) + 1e-6)
    want = ratio - 0.5 * np.mean(sq_norm)
    np.testing.assert_allclose(power_objective(terms, 0.5), want, rtol=1e-5)
    np.testing.assert_allclose(power_critic_loss(terms, 0.5), -want, rtol=1e-5)
    test = stein_z_test(stat, alpha=0.05)
    np.testing.assert_allclose(test.z, np.sqrt(6) * ratio, rtol=1e-5)
    np.testing.assert_allclose(test.threshold, 1.6448536, rtol=1e-5)
    assert bool(test.reject) == (np.sqrt(6) * ratio > 1.6448536)


def test_z_test_holds_level_for_true_score_and_rejects_wrong_model():
    def one(key, shift):
        x = sample_gaussian(key, 200)
        sq = -(PREC @ (x - (MU + shift)[None, :]).T).T
        # The critic plus the direction s_q - s_p = PREC @ shift that exposes the misfit.
        f = lambda xi: 0.3 * critic(xi) + PREC @ shift  # noqa: E731
        return stein_z_test(stein_statistic(f, x, sq).stat).reject

    keys = jax.random.split(jax.random.key(5), 100)
    shifts = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.3]], jnp.float32)
    rejects = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(None, 0)))(keys, shifts)
    null, alt = (float(r) for r in jnp.mean(rejects.astype(jnp.float32), axis=1))
    assert null <= 0.12
    assert alt >= 0.9
