"""Divergence estimators against the exact trace of known Jacobians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.estimators import (batched_divergence, divergence, divergence_and_frobenius,
                               sample_probe)

A = jnp.array([[0.5, -1.2, 0.3], [2.0, -0.7, 0.1], [0.4, 0.9, 1.5]], jnp.float32)


def mlp_field(x):
    w1 = jnp.arange(12, dtype=jnp.float32).reshape(4, 3) / 10.0 - 0.5
    return jnp.tanh(w1 @ x) @ w1 / 3.0 + jnp.sin(x)


FIELDS = [
    ("linear", lambda x: A @ x),
    ("mlp", mlp_field),
    ("image", lambda x: jnp.tanh(x) * jnp.roll(x, 1, axis=0)),  # a (2, 2, 2)-shaped sample
]


def _x(name):
    shape = (2, 2, 2) if name == "image" else (3,)
    return jax.random.normal(jax.random.key(1), shape)


@pytest.mark.parametrize("name, f", FIELDS)
def test_exact_divergence_is_the_jacobian_trace(name, f):
    x = _x(name)
    fx, div, frob = divergence_and_frobenius(f, x, method="exact")
    jac = jax.jacobian(lambda v: f(v.reshape(x.shape)).reshape(-1))(x.reshape(-1))
    np.testing.assert_allclose(fx, f(x), rtol=1e-6)
    np.testing.assert_allclose(div, jnp.trace(jac), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(frob, jnp.sum(jac**2), rtol=1e-5)


def _variance_formula(a, kind):
    fro, tr_a2 = jnp.sum(a**2), jnp.trace(a @ a)
    if kind == "gaussian":
        return fro + tr_a2
    return fro + tr_a2 - 2 * jnp.sum(jnp.diag(a) ** 2)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_mean_and_variance_match_theory(kind):
    n = 400_000
    x = jnp.zeros(3)
    eps = sample_probe(jax.random.key(0), (n, 3), kind)
    _, est = jax.vmap(lambda e: divergence(lambda v: A @ v, x, method=kind, eps=e))(eps)
    mean, var = float(jnp.mean(est)), float(jnp.var(est))
    expected_var = float(_variance_formula(A, kind))
    assert abs(mean - float(jnp.trace(A))) < 4 * np.sqrt(expected_var / n)
    np.testing.assert_allclose(var, expected_var, rtol=0.03)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_hutchinson_converges_on_a_nonlinear_field(kind):
    x = _x("mlp")
    _, exact = divergence(mlp_field, x)
    eps = sample_probe(jax.random.key(3), (200_000, 3), kind)
    _, est = jax.vmap(lambda e: divergence(mlp_field, x, method=kind, eps=e))(eps)
    assert abs(float(jnp.mean(est) - exact)) < 4 * float(jnp.std(est)) / np.sqrt(len(est))


def test_batched_divergence_vmaps_over_samples():
    xs = jax.random.normal(jax.random.key(2), (5, 3))
    fx, div = batched_divergence(mlp_field, xs)
    for i in range(5):
        np.testing.assert_allclose(div[i], divergence(mlp_field, xs[i])[1], rtol=1e-5)
    eps = sample_probe(jax.random.key(4), xs.shape, "rademacher")
    _, div_h = batched_divergence(mlp_field, xs, method="rademacher", eps=eps)
    assert div_h.shape == (5,)


def test_bad_method_and_missing_probe_raise():
    with pytest.raises(ValueError, match="needs a probe"):
        divergence(mlp_field, jnp.zeros(3), method="gaussian")
    with pytest.raises(ValueError, match="unknown divergence method"):
        divergence(mlp_field, jnp.zeros(3), method="nope")
    with pytest.raises(ValueError, match="unknown probe kind"):
        sample_probe(jax.random.key(0), (3,), "uniform")
