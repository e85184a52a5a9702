"""Pure, jittable data transforms for quantized images.

* Uniform dequantization: x in {0, ..., K-1} (K = n_bins), u ~ U[0, 1)^D, z = (x + u) / K in
  [0, 1)^D. A density p on the unit cube gives the discrete model
  P(x) = K^-D int_{[0,1)^D} p((x + u) / K) du, and by Jensen log P(x) >= E_u[log p(z)] - D log K
  (FFJORD with K = 256).
* Bits per dimension: bpd = -(log p(z) / D - log K) / log 2. A uniform density on the unit cube
  (log p = 0) scores log2 K.
* Logit transform (RealNVP/FFJORD, alpha = 1e-6 there): s = alpha + (1 - 2 alpha) z,
  y = log s - log(1 - s); dy/dz = (1 - 2 alpha) / (s (1 - s)) per coordinate, so
  log|det dy/dz| = sum_d [log(1 - 2 alpha) - log s_d - log(1 - s_d)].
* Symmetric scaling (JEM/VERA): x / (K - 1) * 2 - 1 in [-1, 1].
* Augmentation for NHWC batches: per-example horizontal flip with probability 1/2, and
  pad-then-random-crop (JEM/VERA: pad 4 with reflection).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def uniform_dequantize(key: jax.Array, x_uint8: jax.Array, n_bins: int) -> jax.Array:
    """(x + u) / n_bins with u ~ U[0, 1)^shape: float32 in [0, 1)."""
    x = jnp.asarray(x_uint8).astype(jnp.float32)
    u = jax.random.uniform(key, x.shape, dtype=jnp.float32)
    z = (x + u) / jnp.asarray(n_bins, jnp.float32)
    # (K-1 + u)/K can round up to exactly 1.0 in float32 when u is within an ulp of 1.
    return jnp.minimum(z, jnp.asarray(1.0, jnp.float32) - jnp.finfo(jnp.float32).epsneg)


def bits_per_dim(log_prob_unit_cube: jax.Array, num_dims: int, n_bins: int) -> jax.Array:
    """-(log p / D - log n_bins) / log 2 for a log density of dequantized data on [0, 1)^D."""
    lp = jnp.asarray(log_prob_unit_cube)
    dtype = lp.dtype if jnp.issubdtype(lp.dtype, jnp.floating) else jnp.float32
    lp = lp.astype(dtype)
    d = jnp.asarray(num_dims, dtype)
    log_k = jnp.log(jnp.asarray(n_bins, dtype))
    return -(lp / d - log_k) / jnp.log(jnp.asarray(2.0, dtype))


def logit_transform(x: jax.Array, alpha: float = 1e-6) -> tuple[jax.Array, jax.Array]:
    """y = logit(alpha + (1 - 2 alpha) x) and log|det dy/dx| per example (summed over all but
    the leading batch axis)."""
    x = jnp.asarray(x)
    a = jnp.asarray(alpha, x.dtype)
    one = jnp.asarray(1.0, x.dtype)
    s = a + (one - 2 * a) * x
    y = jnp.log(s) - jnp.log1p(-s)
    per_dim = jnp.log1p(-2 * a) - jnp.log(s) - jnp.log1p(-s)
    logdet = jnp.sum(per_dim.reshape(x.shape[0], -1), axis=1)
    return y, logdet


def inverse_logit_transform(y: jax.Array, alpha: float = 1e-6) -> jax.Array:
    """x = (sigmoid(y) - alpha) / (1 - 2 alpha): the inverse of ``logit_transform``'s y."""
    y = jnp.asarray(y)
    a = jnp.asarray(alpha, y.dtype)
    return (jax.nn.sigmoid(y) - a) / (jnp.asarray(1.0, y.dtype) - 2 * a)


def to_symmetric(x_uint8: jax.Array, n_bins: int) -> jax.Array:
    """x / (n_bins - 1) * 2 - 1: float32 in [-1, 1]."""
    x = jnp.asarray(x_uint8).astype(jnp.float32)
    return x / (jnp.asarray(n_bins, jnp.float32) - 1) * 2 - 1


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Flip each NHWC image horizontally (width axis) with probability 1/2."""
    x = jnp.asarray(x)
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def random_pad_crop(key: jax.Array, x: jax.Array, pad: int = 4,
                    mode: str = "reflect") -> jax.Array:
    """Pad H and W by ``pad`` (jnp.pad mode, 'reflect' as in JEM/VERA) and crop each NHWC image
    back to H x W at a uniformly random offset in {0, ..., 2 pad}^2."""
    x = jnp.asarray(x)
    if pad == 0:
        return x
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

    def crop(img: jax.Array, off: jax.Array) -> jax.Array:
        zero = jnp.zeros((), off.dtype)
        return jax.lax.dynamic_slice(img, (off[0], off[1], zero), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def augment(key: jax.Array, x: jax.Array, *, flip: bool = True, pad: int = 4) -> jax.Array:
    """Pad-crop (when pad > 0) then random horizontal flip (when flip)."""
    k_crop, k_flip = jax.random.split(key)
    if pad > 0:
        x = random_pad_crop(k_crop, x, pad)
    if flip:
        x = random_flip(k_flip, x)
    return x
