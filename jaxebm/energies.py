r"""Energies of a classifier read as a joint energy-based model (JEM).

A classifier with logits :math:`f(x) \in \mathbb R^K` defines

.. math::

    p(x, y) = \frac{\exp f(x)[y]}{Z}, \qquad
    \log \tilde p(x) = \operatorname{logsumexp}_y f(x)[y] = -E(x), \qquad
    \log \tilde p(x \mid y) = f(x)[y] \ \ (\text{up to } \log Z_y),

and :math:`p(y \mid x) = \operatorname{softmax}(f(x))[y]`, the usual classifier, since the
normalizer cancels. The helpers below take logits, or a network ``apply_fn: x -> logits``
(batched, no coupling between samples) and return values with their input gradients: the
per-sample gradient is the gradient of the batch sum because samples are independent.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array
ApplyFn = Callable[[Array], Array]


def log_px_unnorm(logits: Array) -> Array:
    """``log p~(x) = logsumexp_y logits[..., y]``; the energy is its negative."""
    return jax.nn.logsumexp(logits, axis=-1)


def log_px_given_y_unnorm(logits: Array, y: Array) -> Array:
    """``log p~(x | y) = logits[i, y_i]`` for ``logits (B, K)`` and int labels ``y (B,)``."""
    return jnp.take_along_axis(logits, y.astype(jnp.int32)[:, None], axis=-1)[:, 0]


def log_p_y_given_x(logits: Array) -> Array:
    """``log p(y | x)``: log-softmax over the last axis."""
    return jax.nn.log_softmax(logits, axis=-1)


def p_y_given_x(logits: Array) -> Array:
    """``p(y | x)``: softmax over the last axis."""
    return jax.nn.softmax(logits, axis=-1)


def energy(logits: Array) -> Array:
    """``E(x) = -logsumexp_y logits[..., y]``."""
    return -log_px_unnorm(logits)


def log_px_fn(apply_fn: ApplyFn) -> Callable[[Array], Array]:
    """``x -> log p~(x)`` per sample, for a sampler's ``log_prob_fn``."""
    return lambda x: log_px_unnorm(apply_fn(x))


def log_px_given_y_fn(apply_fn: ApplyFn, y: Array) -> Callable[[Array], Array]:
    """``x -> log p~(x | y)`` per sample with labels ``y`` held fixed, for class-conditional SGLD."""
    return lambda x: log_px_given_y_unnorm(apply_fn(x), y)


def value_and_grad_log_px(apply_fn: ApplyFn, x: Array) -> tuple[Array, Array]:
    """``(log p~(x) (B,), grad_x log p~(x) (B, ...))``."""
    return _per_sample_value_and_grad(log_px_fn(apply_fn), x)


def value_and_grad_log_px_given_y(apply_fn: ApplyFn, x: Array, y: Array) -> tuple[Array, Array]:
    """``(log p~(x | y) (B,), grad_x log p~(x | y) (B, ...))``."""
    return _per_sample_value_and_grad(log_px_given_y_fn(apply_fn, y), x)


def grad_log_px(apply_fn: ApplyFn, x: Array) -> Array:
    """``grad_x logsumexp_y f(x)[y]``, one gradient per sample."""
    return value_and_grad_log_px(apply_fn, x)[1]


def grad_log_px_given_y(apply_fn: ApplyFn, x: Array, y: Array) -> Array:
    """``grad_x f(x)[y]``, one gradient per sample."""
    return value_and_grad_log_px_given_y(apply_fn, x, y)[1]


def _per_sample_value_and_grad(fn: Callable[[Array], Array], x: Array) -> tuple[Array, Array]:
    def total(z: Array) -> tuple[Array, Array]:
        values = fn(z)
        return jnp.sum(values), values

    (_, values), grads = jax.value_and_grad(total, has_aux=True)(x)
    return values, grads


def make_apply(graphdef: nnx.GraphDef, **call_kwargs: Any) -> Callable[..., Array]:
    """``apply(params, x, **kw) -> logits`` for an ``nnx.split`` network, usable inside jit.

    The module is rebuilt with ``nnx.merge`` at trace time, so the jitted function is a plain
    function of the parameter pytree; ``call_kwargs`` (e.g. nothing, or ``key=`` for dropout at
    call time) are passed on to the module's ``__call__``.
    """

    def apply(params: Any, x: Array, **kwargs: Any) -> Array:
        model = nnx.merge(graphdef, params)
        return model(x, **call_kwargs, **kwargs)

    return apply


def init_split(build: Callable[[nnx.Rngs], nnx.Module], key: Array) -> tuple[nnx.GraphDef, Any]:
    """``(graphdef, params)`` of ``build(nnx.Rngs(key))``, initialized in one jitted program.

    Building an NNX module eagerly runs (and compiles) every initializer op by op, which takes
    seconds even for small conv nets on the CPU; here the structure comes from ``nnx.eval_shape``
    (no arrays) and the parameters from a single compiled function of the key.
    """
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(0))))

    @jax.jit
    def init(k: Array) -> Any:
        return nnx.split(build(nnx.Rngs(k)))[1]

    return graphdef, init(key)
