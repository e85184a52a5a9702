"""Transforms: dequantization, bits/dim, logit log-det against jax.jacobian, augmentation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.data import transforms as T


_dequantize = jax.jit(T.uniform_dequantize)


@pytest.mark.parametrize("n_bins", [2, 17, 256])
def test_uniform_dequantize(n_bins):
    x = jnp.asarray(np.random.default_rng(0).integers(0, n_bins, (4000, 3)), jnp.uint8)
    z = _dequantize(jax.random.key(0), x, n_bins)  # n_bins traced: one compile for all
    assert z.dtype == jnp.float32
    assert float(z.min()) >= 0.0 and float(z.max()) < 1.0
    # each value stays in its own cell [x/K, (x+1)/K) ...
    np.testing.assert_array_equal(np.floor(np.asarray(z, np.float64) * n_bins), np.asarray(x))
    # ... with the offset u uniform: mean 1/2, variance 1/12
    u = np.asarray(z, np.float64) * n_bins - np.asarray(x)  # the offset
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005


@pytest.mark.parametrize("n_bins", [2, 17, 256])
@pytest.mark.parametrize("num_dims", [1, 784, 3072])
def test_bits_per_dim_uniform_and_shifted(n_bins, num_dims):
    # the uniform density on the unit cube has log p = 0: bpd = log2(K)
    bpd = T.bits_per_dim(jnp.zeros((3,), jnp.float32), num_dims, n_bins)
    np.testing.assert_allclose(bpd, np.log2(n_bins), rtol=1e-6)
    # a density twice as large everywhere saves exactly one bit per dimension
    lp = jnp.full((2,), num_dims * np.log(2.0), jnp.float32)
    np.testing.assert_allclose(T.bits_per_dim(lp, num_dims, n_bins), np.log2(n_bins) - 1,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha,shape", [(1e-6, (3,)), (0.05, (2, 2, 1))])
def test_logit_transform_logdet_matches_jacobian(alpha, shape):
    x = jax.random.uniform(jax.random.key(2), (4, *shape), jnp.float32, 0.01, 0.99)
    y, logdet = T.logit_transform(x, alpha)
    assert logdet.shape == (4,)

    def slogdet_of_jacobian(v):
        jac = jax.jacobian(lambda u: T.logit_transform(u[None], alpha)[0][0].ravel())(v)
        return jnp.linalg.slogdet(jac.reshape(v.size, v.size))[1]

    ref = jax.jit(jax.vmap(slogdet_of_jacobian))(x)
    np.testing.assert_allclose(logdet, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(T.inverse_logit_transform(y, alpha), x, atol=1e-5)


def test_to_symmetric():
    x = jnp.asarray([0, 8, 16], jnp.uint8)
    np.testing.assert_allclose(T.to_symmetric(x, 17), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(T.to_symmetric(jnp.asarray([0, 255], jnp.uint8), 256), [-1, 1])


def _images(n=16, h=6, w=5, c=2):
    return jnp.arange(n * h * w * c, dtype=jnp.float32).reshape(n, h, w, c)


def test_random_flip():
    x = _images()
    out = np.asarray(jax.jit(T.random_flip)(jax.random.key(3), x))
    xs = np.asarray(x)
    flipped = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, xs)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, xs)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    # same key twice undoes the flip
    np.testing.assert_array_equal(T.random_flip(jax.random.key(3), out), x)


def test_random_pad_crop():
    x = _images()
    np.testing.assert_array_equal(T.random_pad_crop(jax.random.key(0), x, pad=0), x)
    pad = 2
    out = np.asarray(jax.jit(T.random_pad_crop, static_argnums=2)(jax.random.key(4), x, pad))
    assert out.shape == x.shape
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    offsets = set()
    for i in range(x.shape[0]):
        hits = [(a, b) for a in range(2 * pad + 1) for b in range(2 * pad + 1)
                if np.array_equal(padded[i, a:a + 6, b:b + 5], out[i])]
        assert hits, f"image {i} is not a crop of its padded image"
        offsets.update(hits)
    assert len(offsets) > 1


def test_augment_uint8_jit():
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (8, 4, 4, 3)), jnp.uint8)
    out = jax.jit(T.augment)(jax.random.key(0), x)
    assert out.dtype == jnp.uint8 and out.shape == x.shape
