r"""Linear ICA with standard logistic sources (the LSD paper's ICA experiment).

Generative model, row-vector convention: sources :math:`s \in \mathbb{R}^D` with i.i.d.
:math:`s_i \sim \mathrm{Logistic}(0, 1)`, observations :math:`x = s A` with the mixing matrix
:math:`A = B^{-1}`; :math:`B` is the unmixing matrix, the model's parameter. The standard
logistic density is

.. math::  \log \mathrm{Logistic}(s) = -s - 2\log(1 + e^{-s}) = -2 \log\big(2\cosh(s/2)\big),

so with :math:`s = xB` the change of variables gives

.. math::  \log q(x) = \sum_i \log \mathrm{Logistic}((xB)_i) + \log|\det B|.

Training by score-based methods only sees the unnormalized part (the first sum), whose score is
:math:`\nabla_x \log \tilde q(x) = -\tanh(xB/2)\,B^\top`; the exact log-likelihood adds
:math:`\log|\det B|`. The true :math:`B` has standard Gaussian entries, redrawn until its
condition number is below :math:`D`. Since :math:`\mathrm{Var}(s_i) = \pi^2/3`, the data
covariance is :math:`(\pi^2/3) A^\top A`. Functions accept ``(D,)`` or ``(n, D)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("dim", "max_tries", "dtype"))
def _draw_until_conditioned(key: Array, dim: int, max_tries: int, dtype) -> Array:
    """``lax.while_loop`` redrawing ``B`` while ``cond(B) >= dim``, at most ``max_tries`` draws."""

    def draw(k):
        return jax.random.normal(k, (dim, dim), dtype)

    def keep_going(state):
        _, b, tries = state
        return (jnp.linalg.cond(b) >= dim) & (tries < max_tries)

    def redraw(state):
        k, _, tries = state
        k, sub = jax.random.split(k)
        return k, draw(sub), tries + 1

    k0, sub0 = jax.random.split(key)
    _, b, _ = jax.lax.while_loop(keep_going, redraw, (k0, draw(sub0), jnp.asarray(1)))
    return b


def init_unmixing(key: Array, dim: int, *, max_tries: int = 10_000, dtype=jnp.float32) -> Array:
    """Draw ``B`` with N(0, 1) entries, redrawing until ``cond(B) < dim`` (as the reference).

    Not for use under jit: the result is checked concretely and a clear error is raised when
    ``max_tries`` draws all failed.
    """
    if dim < 2:
        raise ValueError(
            f"init_unmixing needs dim >= 2 (cond(B) < dim is impossible for dim 1); got {dim}"
        )
    b = _draw_until_conditioned(key, dim, max_tries, dtype)
    if not bool(jnp.linalg.cond(b) < dim):
        raise RuntimeError(f"no B with cond(B) < {dim} in {max_tries} draws; raise max_tries")
    return b


def _logistic_log_pdf(s: Array) -> Array:
    # -2 log(2 cosh(s/2)), symmetric and stable for large |s|.
    return -2.0 * jnp.logaddexp(0.5 * s, -0.5 * s)


def _check_x(B: Array, x: Array) -> None:
    if x.ndim not in (1, 2) or x.shape[-1] != B.shape[0]:
        raise ValueError(f"x must be ({B.shape[0]},) or (n, {B.shape[0]}); got shape {x.shape}")


def log_prob_unnorm(B: Array, x: Array) -> Array:
    """``sum_i log Logistic((xB)_i)``: the model's log density without ``log|det B|``."""
    _check_x(B, x)
    return jnp.sum(_logistic_log_pdf(x @ B), axis=-1)


def log_prob(B: Array, x: Array) -> Array:
    """Exact log-likelihood ``sum_i log Logistic((xB)_i) + log|det B|``."""
    _, logabsdet = jnp.linalg.slogdet(B)
    return log_prob_unnorm(B, x) + logabsdet


def score(B: Array, x: Array) -> Array:
    """Closed-form score ``-tanh(xB / 2) B^T``, shaped like ``x``."""
    _check_x(B, x)
    return -jnp.tanh(0.5 * (x @ B)) @ B.T


def sample(B: Array, key: Array, n: int) -> Array:
    """``n`` samples ``x = s B^{-1}`` with i.i.d. standard logistic sources; ``(n, D)``."""
    s = jax.random.logistic(key, (n, B.shape[0]), B.dtype)
    # x B = s  <=>  B^T x^T = s^T: a solve is better conditioned than forming B^{-1}.
    return jnp.linalg.solve(B.T, s.T).T
