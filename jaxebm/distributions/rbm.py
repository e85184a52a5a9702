r"""Gaussian-Bernoulli restricted Boltzmann machine (the LSD / kgof goodness-of-fit benchmark).

Joint density over :math:`x \in \mathbb{R}^{d_x}` and :math:`h \in \{-1, +1\}^{d_h}`:

.. math::  p(x, h) = Z^{-1} \exp\big(\tfrac12 x^\top B h + b^\top x + c^\top h - \tfrac12 \|x\|^2\big).

Summing out :math:`h` (each unit contributes :math:`e^{y_j} + e^{-y_j} = 2\cosh y_j` with
:math:`y = \tfrac12 B^\top x + c`) gives the unnormalized marginal, minus the free energy,

.. math::  \log \tilde p(x) = b^\top x - \tfrac12\|x\|^2 + \sum_j \log\big(2\cosh(\tfrac12 (xB)_j + c_j)\big),

whose score is :math:`s(x) = b - x + \tfrac12 \tanh(\tfrac12 xB + c)\,B^\top` (row-vector
convention, as in the LSD paper's code). The conditionals are
:math:`P(h_j = +1 \mid x) = \sigma(2 y_j) = \sigma((xB)_j + 2 c_j)` and
:math:`x \mid h \sim \mathcal{N}(b + \tfrac12 B h, I)`, so blocked Gibbs sampling alternates the
two. Completing the square, :math:`p(h) \propto \exp(c^\top h + \tfrac12\|m_h\|^2)` with
:math:`m_h = b + \tfrac12 B h`, and :math:`x` is the mixture :math:`\sum_h p(h)\,\mathcal{N}(m_h, I)`;
for small :math:`d_h` this gives the exact normalizer and moments by enumerating :math:`h`.

Benchmark setting: :math:`d_x = 50, d_h = 40`, :math:`B_{ij} \in \{\pm 1\}` uniformly,
:math:`b, c \sim \mathcal{N}(0, I)`; the alternative ``q`` perturbs :math:`B` by
:math:`\mathcal{N}(0, \sigma^2)` noise. Functions accept one sample ``(d_x,)`` or a batch
``(n, d_x)``.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class RBM(NamedTuple):
    """Parameters: ``B`` (d_x, d_h), visible bias ``b`` (d_x,), hidden bias ``c`` (d_h,)."""

    B: Array
    b: Array
    c: Array


def init(key: Array, dim_x: int = 50, dim_h: int = 40, dtype=jnp.float32) -> RBM:
    """The benchmark's random RBM: ``B`` entries +-1 uniformly, ``b, c ~ N(0, I)``."""
    kB, kb, kc = jax.random.split(key, 3)
    return RBM(
        B=jax.random.rademacher(kB, (dim_x, dim_h), dtype),
        b=jax.random.normal(kb, (dim_x,), dtype),
        c=jax.random.normal(kc, (dim_h,), dtype),
    )


def perturb(params: RBM, key: Array, sigma: float | Array) -> RBM:
    """The alternative model: ``B + sigma * N(0, 1)`` elementwise, ``b`` and ``c`` unchanged."""
    noise = jax.random.normal(key, params.B.shape, params.B.dtype)
    return params._replace(B=params.B + jnp.asarray(sigma, params.B.dtype) * noise)


def _per_sample_or_batch(fn: Callable[[RBM, Array], Array], params: RBM, x: Array) -> Array:
    if x.ndim == 1:
        return fn(params, x)
    if x.ndim == 2:
        return jax.vmap(fn, in_axes=(None, 0))(params, x)
    raise ValueError(f"x must be (dim_x,) or (n, dim_x); got shape {x.shape}")


def _log_prob_one(params: RBM, x: Array) -> Array:
    y = 0.5 * (x @ params.B) + params.c
    # log(2 cosh y) = logaddexp(y, -y), stable for large |y|.
    return jnp.dot(x, params.b) - 0.5 * jnp.dot(x, x) + jnp.sum(jnp.logaddexp(y, -y))


def _score_one(params: RBM, x: Array) -> Array:
    y = 0.5 * (x @ params.B) + params.c
    return 0.5 * (params.B @ jnp.tanh(y)) + params.b - x


def log_prob_unnorm(params: RBM, x: Array) -> Array:
    """``log p~(x)`` with ``h`` summed out (= minus the free energy); shape ``()`` or ``(n,)``."""
    return _per_sample_or_batch(_log_prob_one, params, x)


def free_energy(params: RBM, x: Array) -> Array:
    """Free energy ``F(x) = -log p~(x)``."""
    return -log_prob_unnorm(params, x)


def score(params: RBM, x: Array) -> Array:
    """Closed-form score ``0.5 tanh(0.5 xB + c) B^T + b - x``, shaped like ``x``."""
    return _per_sample_or_batch(_score_one, params, x)


def gibbs_step(params: RBM, key: Array, x: Array) -> tuple[Array, Array]:
    """One blocked Gibbs sweep from a batch ``x`` (n, d_x): draw ``h | x``, then ``x | h``.

    Returns ``(x_new, h)``.
    """
    k_h, k_x = jax.random.split(key)
    logits = x @ params.B + 2.0 * params.c[None, :]
    h = jnp.where(jax.random.bernoulli(k_h, jax.nn.sigmoid(logits)), 1.0, -1.0).astype(x.dtype)
    mean = 0.5 * (h @ params.B.T) + params.b[None, :]
    return mean + jax.random.normal(k_x, mean.shape, x.dtype), h


def sample(
    params: RBM, key: Array, n: int, *, burn_in: int = 2000, x_init: Array | None = None
) -> Array:
    """``n`` independent Gibbs chains run for ``burn_in`` sweeps (``lax.scan``); ``(n, d_x)``.

    Chains start from ``x_init`` or from ``N(0, I)``; the returned state is the last sweep's.
    """
    if burn_in < 1:
        raise ValueError(f"burn_in must be >= 1; got {burn_in}")
    k_init, k_run = jax.random.split(key)
    dim_x = params.B.shape[0]
    x = jax.random.normal(k_init, (n, dim_x), params.B.dtype) if x_init is None else x_init

    def sweep(x, k):
        x_new, _ = gibbs_step(params, k, x)
        return x_new, None

    x, _ = jax.lax.scan(sweep, x, jax.random.split(k_run, burn_in))
    return x


# --------------------------------------------------------------------------------------------
# Exact quantities by enumerating the hidden states (small d_h only)
# --------------------------------------------------------------------------------------------

_MAX_ENUM_HIDDEN = 20


def hidden_states(dim_h: int, dtype=jnp.float32) -> Array:
    """All ``2**dim_h`` configurations of ``h`` in {-1, +1}^dim_h, ``(2**dim_h, dim_h)``."""
    if dim_h > _MAX_ENUM_HIDDEN:
        raise ValueError(
            f"enumerating 2**{dim_h} hidden states is too large (max {_MAX_ENUM_HIDDEN})"
        )
    return jnp.asarray(list(itertools.product((-1.0, 1.0), repeat=dim_h)), dtype)


def _hidden_log_weights(params: RBM) -> tuple[Array, Array]:
    """``(log of c^T h + |m_h|^2 / 2 per state, m_h per state)`` over all hidden states."""
    hs = hidden_states(params.B.shape[1], params.B.dtype)
    means = params.b[None, :] + 0.5 * (hs @ params.B.T)
    return hs @ params.c + 0.5 * jnp.sum(means * means, axis=1), means


def exact_log_normalizer(params: RBM) -> Array:
    """``log Z = log sum_h exp(c^T h + |m_h|^2/2) + (d_x/2) log(2 pi)`` by enumeration."""
    logw, _ = _hidden_log_weights(params)
    dim_x = params.B.shape[0]
    return jax.scipy.special.logsumexp(logw) + 0.5 * dim_x * math.log(2.0 * math.pi)


def exact_moments(params: RBM) -> tuple[Array, Array]:
    """Exact ``(E[x], Cov[x])`` of the mixture ``sum_h p(h) N(m_h, I)`` by enumeration."""
    logw, means = _hidden_log_weights(params)
    w = jax.nn.softmax(logw)
    mean = w @ means
    centred = means - mean[None, :]
    cov = jnp.eye(mean.shape[0], dtype=mean.dtype) + (centred * w[:, None]).T @ centred
    return mean, cov
