"""SGLD: the update rule exactly, and proper Langevin against a Gaussian's known moments."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.samplers import proper_langevin_step_size, sgld

GAUSSIANS = {
    "isotropic": (np.array([1.0, -2.0]), np.eye(2)),
    "correlated": (np.array([-0.5, 0.5]), np.array([[1.5, 0.6], [0.6, 0.8]])),
    "anisotropic": (np.array([2.0, 0.0]), np.array([[2.0, 0.0], [0.0, 0.5]])),
}


@functools.partial(jax.jit, static_argnames=("n_steps", "unroll"))
def run_on_gaussian(x0, key, mean, precision, step_size, noise_std, *, n_steps, unroll):
    """SGLD on log N(mean, precision^-1); the Gaussian is an argument so one compile serves all."""

    def log_prob(x):
        d = x - mean[None, :]
        return -0.5 * jnp.sum((d @ precision) * d, axis=-1)

    return sgld(log_prob, x0, key=key, n_steps=n_steps, step_size=step_size,
                noise_std=noise_std, unroll=unroll)


@pytest.mark.parametrize(
    "name,unroll", [("isotropic", 1), ("correlated", 1), ("anisotropic", 1), ("correlated", 4)]
)
def test_proper_langevin_reaches_gaussian_moments(name, unroll):
    mean, cov = GAUSSIANS[name]
    noise_std = 0.15
    step = proper_langevin_step_size(noise_std)
    assert step == pytest.approx(0.01125)
    # Start every chain far from the mean so that reaching it is the sampler's work; the
    # slowest mode (precision 0.5) contracts by exp(-1500 * 0.0056) ~ 2e-4 over the chain.
    x0 = jnp.full((4000, 2), 3.0, jnp.float32)
    x = run_on_gaussian(
        x0, jax.random.key(0), jnp.asarray(mean, jnp.float32),
        jnp.asarray(np.linalg.inv(cov), jnp.float32), jnp.float32(step), jnp.float32(noise_std),
        n_steps=1500, unroll=unroll,
    )
    x = np.asarray(x, np.float64)
    # Standard errors: mean ~ sqrt(2 / 4000) = 0.022, covariance entries ~ 0.05; the
    # discretization bias of the covariance is a factor 1 / (1 - step * lambda / 2) < 1.012.
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=0.1)
    np.testing.assert_allclose(np.cov(x, rowvar=False), cov, atol=0.15)


@jax.jit
def run_linear(a, step_size, noise_std, key):
    x0 = jnp.zeros((5000, 3), jnp.float32)
    return sgld(lambda z: z @ a, x0, key=key, n_steps=10, step_size=step_size, noise_std=noise_std)


@pytest.mark.parametrize(
    "a,step_size,noise_std",
    [
        ((0.5, -1.0, 2.0), 1.0, 0.0),  # JEM's step, deterministic
        ((0.5, -1.0, 2.0), 0.01, 0.0),
        ((0.5, -1.0, 2.0), 1.0, 0.01),  # JEM's setting: step and noise unrelated
        ((0.0, 0.0, 0.0), 1.0, 0.03),  # flat density: pure noise at the set scale
    ],
)
def test_update_rule_step_size_and_noise_are_separate(a, step_size, noise_std):
    """log p = a.x: after n steps x = n * step_size * a + N(0, n * noise_std^2)."""
    x = np.asarray(run_linear(jnp.asarray(a, jnp.float32), jnp.float32(step_size),
                              jnp.float32(noise_std), jax.random.key(1)))
    drift = 10 * step_size * np.asarray(a)
    np.testing.assert_allclose(x.mean(axis=0), drift, rtol=1e-5, atol=1e-5 + 0.1 * noise_std)
    np.testing.assert_allclose(x.std(axis=0), np.sqrt(10) * noise_std, rtol=0.04, atol=1e-5)


def test_loop_modes_agree_exactly():
    """Rolled scan, partially unrolled scan and the Python loop use the same keys."""

    def log_prob(x):
        return -jnp.sum(x**4, axis=-1) + jnp.sin(x[:, 0]) * x[:, 1]

    x0 = jnp.asarray(np.random.default_rng(3).standard_normal((16, 2)), jnp.float32)
    key = jax.random.key(4)
    outs = [
        jax.jit(lambda x: sgld(log_prob, x, key=key, n_steps=4, step_size=0.05,
                               noise_std=0.1, unroll=u))(x0)
        for u in (1, 2, True)
    ]
    for out in outs[1:]:
        np.testing.assert_allclose(np.asarray(out), np.asarray(outs[0]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(outs[0]), np.asarray(x0))


def test_clip_keeps_states_in_box():
    x0 = jnp.zeros((64, 4), jnp.float32)
    run = jax.jit(lambda x: sgld(lambda z: 10.0 * jnp.sum(z, axis=-1), x, key=jax.random.key(5),
                                 n_steps=3, step_size=1.0, noise_std=0.5, clip=(-1.0, 1.0)))
    # The drift (10 per step) pushes every coordinate past the box, so all end on its edge.
    np.testing.assert_array_equal(np.asarray(run(x0)), 1.0)


def test_zero_steps_and_bad_arguments():
    x0 = jnp.ones((3, 2))
    f = lambda z: jnp.sum(z, axis=-1)
    out = sgld(f, x0, key=jax.random.key(0), n_steps=0, step_size=1.0, noise_std=1.0)
    assert out is x0
    for kwargs, match in [(dict(n_steps=2, unroll=0), "unroll"), (dict(n_steps=-1), "n_steps")]:
        with pytest.raises(ValueError, match=match):
            sgld(f, x0, key=jax.random.key(0), step_size=1.0, noise_std=1.0, **kwargs)
