"""Gaussian-Bernoulli RBM: score vs autodiff, Gibbs moments and normalizer vs exact enumeration."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.distributions import rbm
from jaxebm.eval.grid import grid_log_normalizer


@pytest.mark.parametrize("dim_x,dim_h", [(50, 40), (3, 2), (1, 5)])
def test_score_is_gradient_of_minus_free_energy(dim_x, dim_h):
    k_p, k_x = jax.random.split(jax.random.key(dim_x))
    params = rbm.init(k_p, dim_x, dim_h)
    x = 2.0 * jax.random.normal(k_x, (8, dim_x))

    @jax.jit
    def everything(params, x):
        auto = jax.vmap(jax.grad(lambda xi: -rbm.free_energy(params, xi)))(x)
        # The paper's expression, written out.
        paper = 0.5 * jnp.tanh(0.5 * x @ params.B + params.c[None, :]) @ params.B.T
        paper = paper + params.b[None, :] - x
        single = (rbm.score(params, x[0]), rbm.log_prob_unnorm(params, x[0]))
        return rbm.score(params, x), auto, paper, single, rbm.log_prob_unnorm(params, x)

    score, auto, paper, (score0, logp0), logp = everything(params, x)
    np.testing.assert_allclose(score, auto, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(score, paper, rtol=1e-5, atol=1e-5)
    # One sample and a batch agree.
    np.testing.assert_allclose(score0, score[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logp0, logp[0], rtol=1e-6)


def test_init_matches_benchmark_distribution():
    params = rbm.init(jax.random.key(0), 50, 40)
    assert params.B.shape == (50, 40) and params.b.shape == (50,) and params.c.shape == (40,)
    assert set(np.unique(np.asarray(params.B)).tolist()) == {-1.0, 1.0}
    assert inspect.signature(rbm.sample).parameters["burn_in"].default == 2000


@pytest.mark.parametrize("sigma", [0.0, 0.02, 0.5])
def test_perturb_adds_gaussian_noise_to_B_only(sigma):
    params = rbm.init(jax.random.key(1), 50, 40)
    q = rbm.perturb(params, jax.random.key(2), sigma)
    np.testing.assert_array_equal(q.b, params.b)
    np.testing.assert_array_equal(q.c, params.c)
    diff = np.asarray(q.B - params.B)
    assert abs(diff.std() - sigma) <= 0.05 * sigma + 1e-7


_sample = jax.jit(rbm.sample, static_argnames=("n", "burn_in"))
_exact_moments = jax.jit(rbm.exact_moments)


def _tiny(seed):
    return rbm.init(jax.random.key(seed), 3, 4)


@pytest.mark.parametrize("seed", [3, 4])
def test_gibbs_moments_match_exact_enumeration(seed):
    params = _tiny(seed)
    n = 20_000
    x = _sample(params, jax.random.key(10 + seed), n, burn_in=100)
    mean, cov = (np.asarray(a, np.float64) for a in _exact_moments(params))
    xs = np.asarray(x, np.float64)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(xs.mean(0) - mean) < 5 * se_mean), (xs.mean(0), mean)
    # Covariance entries: standard error of a product moment is about sqrt(var_i var_j / n) * 1.5.
    se_cov = 1.5 * np.sqrt(np.outer(np.diag(cov), np.diag(cov)) / n)
    assert np.all(np.abs(np.cov(xs.T) - cov) < 5 * se_cov), (np.cov(xs.T), cov)


def test_exact_normalizer_matches_grid_integration():
    # In 2-D the enumeration's log Z must equal the integral of exp(log_prob_unnorm): this
    # pins down the log 2 per hidden unit and the (2 pi)^{d/2} of the Gaussian part.
    params = rbm.init(jax.random.key(5), 2, 3)
    mean, _ = rbm.exact_moments(params)
    centre = [float(m) for m in mean]
    bounds = ((centre[0] - 9.0, centre[0] + 9.0), (centre[1] - 9.0, centre[1] + 9.0))
    log_z_grid = grid_log_normalizer(lambda x: rbm.log_prob_unnorm(params, x), bounds, 400)
    np.testing.assert_allclose(log_z_grid, rbm.exact_log_normalizer(params), rtol=0, atol=1e-3)
