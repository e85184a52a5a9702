r"""Divergence (trace of the Jacobian) of a vector field, exactly or by Hutchinson's estimator.

For a field :math:`f: \mathbb{R}^D \to \mathbb{R}^D` the divergence is
:math:`\nabla\cdot f(x) = \operatorname{tr} \partial f / \partial x`.

* exact: :math:`\sum_i \partial f_i / \partial x_i`, from :math:`D` forward-mode products
  (one ``jacfwd``); cost grows with :math:`D`, fine for 2-D and small tabular data.
* Hutchinson: :math:`\varepsilon^\top (\partial f/\partial x)\,\varepsilon` with
  :math:`\mathbb{E}[\varepsilon\varepsilon^\top] = I`, unbiased for any such probe. With
  :math:`A = \partial f/\partial x` its variance is
  :math:`\|A\|_F^2 + \operatorname{tr}(A^2)` for Gaussian probes
  (:math:`2\|A\|_F^2` when :math:`A` is symmetric) and
  :math:`\|A\|_F^2 + \operatorname{tr}(A^2) - 2\sum_i A_{ii}^2` for Rademacher probes.
  One Jacobian-vector product per probe (forward mode: no tape is kept for the product).

Functions here take a *per-sample* field ``f(x) -> f(x)`` with ``x`` of any shape (a vector,
or an image) and return per-sample values; ``batched_divergence`` vmaps them over a batch. A
probe ``eps`` is an argument, not drawn inside, so a CNF can draw it once per solve and hold it
fixed along the trajectory.
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp

Array = jax.Array
Field = Callable[[Array], Array]
Method = Literal["exact", "gaussian", "rademacher"]


def divergence_and_frobenius(f: Field, x: Array, *, method: Method = "exact",
                             eps: Array | None = None) -> tuple[Array, Array, Array]:
    """``(f(x), div f(x), ||df/dx||_F^2)`` for one sample, exactly or by Hutchinson.

    Exact: the Jacobian's columns from one vmapped JVP over the basis (``f(x)`` comes out of the
    same pass). Hutchinson: one JVP ``J eps`` gives ``eps^T J eps`` for the trace and
    ``||J eps||^2`` for the squared Frobenius norm (unbiased: ``E[eps^T J^T J eps] = tr J^T J``).
    The Frobenius term costs nothing extra and is dropped by XLA when unused.
    """
    if method == "exact":
        flat = x.reshape(-1)

        def flat_f(v):
            return f(v.reshape(x.shape)).reshape(-1)

        basis = jnp.eye(flat.size, dtype=flat.dtype)
        fx, cols = jax.vmap(lambda e: jax.jvp(flat_f, (flat,), (e,)), out_axes=(None, 0))(basis)
        return fx.reshape(x.shape), jnp.trace(cols), jnp.sum(cols**2)
    if method in ("gaussian", "rademacher"):
        if eps is None:
            raise ValueError(f"divergence(method={method!r}) needs a probe eps shaped like x")
        fx, jeps = jax.jvp(f, (x,), (eps,))
        return fx, jnp.sum(eps * jeps), jnp.sum(jeps**2)
    raise ValueError(f"unknown divergence method {method!r}; expected exact, gaussian or rademacher")


def exact_divergence(f: Field, x: Array) -> tuple[Array, Array]:
    """Returns ``(f(x), tr df/dx)`` for a single sample ``x`` of any shape, exactly."""
    fx, div, _ = divergence_and_frobenius(f, x, method="exact")
    return fx, div


def hutchinson_divergence(f: Field, x: Array, eps: Array) -> tuple[Array, Array]:
    """Returns ``(f(x), eps^T (df/dx) eps)`` for one sample ``x`` and a probe shaped like ``x``."""
    fx, div, _ = divergence_and_frobenius(f, x, method="gaussian", eps=eps)
    return fx, div


def sample_probe(key: Array, shape: tuple[int, ...], kind: Method, dtype=jnp.float32) -> Array:
    """A Hutchinson probe with identity covariance: standard Gaussian or Rademacher (+-1)."""
    if kind == "gaussian":
        return jax.random.normal(key, shape, dtype)
    if kind == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    raise ValueError(f"unknown probe kind {kind!r}; expected 'gaussian' or 'rademacher'")


def divergence(f: Field, x: Array, *, method: Method = "exact", eps: Array | None = None):
    """``(f(x), div f(x))`` for one sample: ``method='exact'`` or a Hutchinson estimate.

    For ``'gaussian'``/``'rademacher'`` the probe ``eps`` (shaped like ``x``) must be given.
    """
    fx, div, _ = divergence_and_frobenius(f, x, method=method, eps=eps)
    return fx, div


def batched_divergence(f: Field, x: Array, *, method: Method = "exact", eps: Array | None = None):
    """``divergence`` vmapped over the leading batch axis of ``x`` (and of ``eps``)."""
    if method == "exact":
        return jax.vmap(lambda xi: exact_divergence(f, xi))(x)
    if eps is None:
        raise ValueError(f"batched_divergence(method={method!r}) needs a probe eps shaped like x")
    return jax.vmap(lambda xi, ei: divergence(f, xi, method=method, eps=ei))(x, eps)
