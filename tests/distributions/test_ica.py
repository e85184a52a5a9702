"""Linear ICA with logistic sources: conditioning of B, normalization, score and sampler moments."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.distributions import ica
from jaxebm.eval.grid import grid_log_normalizer

B2 = jnp.array([[1.0, 0.5], [-0.3, 1.2]], jnp.float32)


@pytest.mark.parametrize("dim", [2, 5, 10])
def test_unmixing_is_redrawn_until_well_conditioned(dim):
    b = ica.init_unmixing(jax.random.key(dim), dim)
    assert b.shape == (dim, dim)
    assert float(jnp.linalg.cond(b)) < dim


def test_unmixing_rejects_dim_one():
    with pytest.raises(ValueError, match="dim >= 2"):
        ica.init_unmixing(jax.random.key(0), 1)


def test_log_prob_is_change_of_variables():
    x = np.random.default_rng(0).normal(size=(6, 2)) * 3.0
    s = x @ np.asarray(B2, np.float64)
    logistic_pdf = np.exp(-s) / (1.0 + np.exp(-s)) ** 2
    want = np.log(logistic_pdf).sum(1) + np.log(abs(np.linalg.det(np.asarray(B2, np.float64))))
    got = ica.log_prob(B2, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ica.log_prob(B2, jnp.asarray(x[0], jnp.float32)), want[0], rtol=1e-5)


@pytest.mark.parametrize("exact", [True, False])
def test_density_normalizes_on_a_grid(exact):
    # x = s A with |s_i| < 25 holding all but ~1e-10 of the mass; the box must contain that set.
    a = np.linalg.inv(np.asarray(B2, np.float64))
    half = 25.0 * np.abs(a).sum(axis=0)
    bounds = ((-half[0], half[0]), (-half[1], half[1]))
    fn = (lambda x: ica.log_prob(B2, x)) if exact else (lambda x: ica.log_prob_unnorm(B2, x))
    log_z = float(grid_log_normalizer(jax.jit(fn), bounds, 1000))
    want = 0.0 if exact else -math.log(abs(np.linalg.det(np.asarray(B2, np.float64))))
    assert abs(log_z - want) < 2e-3


def test_score_matches_autodiff():
    b = ica.init_unmixing(jax.random.key(1), 5)

    @jax.jit
    def both(b, key):
        x = ica.sample(b, key, 16)
        return ica.score(b, x), jax.vmap(jax.grad(lambda xi: ica.log_prob_unnorm(b, xi)))(x)

    score, auto = both(b, jax.random.key(2))
    np.testing.assert_allclose(score, auto, rtol=1e-4, atol=1e-5)


def test_samples_have_logistic_sources_and_mixed_covariance():
    b = ica.init_unmixing(jax.random.key(3), 4)
    n = 50_000
    x = np.asarray(jax.jit(ica.sample, static_argnums=2)(b, jax.random.key(4), n), np.float64)
    bb = np.asarray(b, np.float64)
    s = x @ bb
    var = math.pi**2 / 3.0
    np.testing.assert_allclose(s.mean(0), 0.0, atol=5 * math.sqrt(var / n))
    # Var of the sample variance for the logistic: (mu4 - sigma^4) / n, mu4 = 4.2 sigma^4.
    np.testing.assert_allclose(s.var(0), var, atol=5 * var * math.sqrt(3.2 / n))
    a = np.linalg.inv(bb)
    np.testing.assert_allclose(np.cov(x.T), var * a.T @ a, atol=0.05 * var * np.abs(a.T @ a).max())
