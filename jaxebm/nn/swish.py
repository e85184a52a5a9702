r"""Swish with a learnable per-unit slope, and the LSD paper's ``SmallMLP``.

``Swish``: :math:`\operatorname{swish}_\beta(x) = x\,\sigma(\beta \odot x)` with one learnable
:math:`\beta_j` per unit, initialized to 1 (so it starts as SiLU). With :math:`\beta \to \infty`
it tends to ReLU, with :math:`\beta = 0` it is :math:`x/2`; the network picks the smoothness per
unit. It is smooth, so score functions and Jacobian traces of the networks are well defined.

``SmallMLP(in, out)``: ``Linear(in, 300) -> Swish -> Linear(300, 300) -> Swish -> Linear(300, out)``,
the critic ``f: R^D -> R^D`` and the energy network ``R^D -> R`` of the LSD experiments
(Grathwohl et al., 2020). Optional inverted dropout after each Swish, active only when the call
gets a ``key`` (no random state in the module, so a split/merged module is a pure function of its
parameters). ``init='torch'`` draws weights and biases from
:math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`, the default of ``torch.nn.Linear``
that the reference experiments ran with; ``init='lecun'`` is flax's default (LeCun-normal weights,
zero biases). ``out_features=1`` returns a ``(batch,)`` vector, as the reference's ``squeeze``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxebm.nn.mlp import dropout, dropout_scale

Array = jax.Array

INITS = ("torch", "lecun")


class Swish(nnx.Module):
    """``x * sigmoid(beta * x)`` with a learnable ``beta`` per unit (last axis), init 1."""

    def __init__(self, features: int):
        self.beta = nnx.Param(jnp.ones((features,), jnp.float32))

    def __call__(self, x: Array) -> Array:
        beta = self.beta[...]
        return x * jax.nn.sigmoid(beta[None, :] * x)

    def value_and_derivative(self, x: Array) -> tuple[Array, Array]:
        """``(swish(x), swish'(x))`` with ``swish'(x) = s + beta x s (1 - s)``, ``s = sigma(beta x)``."""
        beta = self.beta[...][None, :]
        s = jax.nn.sigmoid(beta * x)
        return x * s, s + beta * x * s * (1.0 - s)

    def jvp(self, x: Array, t: Array) -> tuple[Array, Array]:
        """``(swish(x), swish'(x) * t)``."""
        value, slope = self.value_and_derivative(x)
        return value, slope * t


def _uniform_fan_in(fan_in: int):
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _linear(fan_in: int, fan_out: int, init: str, rngs: nnx.Rngs) -> nnx.Linear:
    if init == "torch":
        u = _uniform_fan_in(fan_in)
        return nnx.Linear(fan_in, fan_out, kernel_init=u, bias_init=u, rngs=rngs)
    if init == "lecun":
        return nnx.Linear(fan_in, fan_out, rngs=rngs)
    raise ValueError(f"unknown init {init!r}; expected one of {INITS}")


class SmallMLP(nnx.Module):
    """``in -> hidden -> ... -> out`` with learnable-slope Swish between dense layers."""

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        *,
        hidden: int = 300,
        n_hidden: int = 2,
        dropout_rate: float = 0.0,
        init: str = "torch",
        rngs: nnx.Rngs,
    ):
        if n_hidden < 1 or hidden < 1:
            raise ValueError(f"SmallMLP needs n_hidden >= 1 and hidden >= 1; got {n_hidden}, {hidden}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1); got {dropout_rate}")
        self.out_features = out_features
        self.dropout_rate = float(dropout_rate)
        sizes = [in_features] + [hidden] * n_hidden
        self.layers = nnx.List([_linear(a, b, init, rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.acts = nnx.List([Swish(hidden) for _ in range(n_hidden)])
        self.out = _linear(hidden, out_features, init, rngs)

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        """``x``: ``(batch, in)``; a ``key`` turns dropout on. ``(batch, out)``, or ``(batch,)``
        when ``out_features == 1``."""
        h = x.reshape((x.shape[0], -1))
        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            h = act(layer(h))
            if key is not None:
                h = dropout(h, self.dropout_rate, jax.random.fold_in(key, i))
        out = self.out(h)
        return out[:, 0] if self.out_features == 1 else out

    def _mask(self, key: Array, i: int, h: Array) -> Array:
        """Hidden layer ``i``'s dropout multiplier: the mask ``__call__`` draws with ``key``."""
        return dropout_scale(self.dropout_rate, jax.random.fold_in(key, i), h.shape, h.dtype)

    def jvp(self, x: Array, t: Array, *, key: Array | None = None) -> tuple[Array, Array]:
        """``(f(x), J_f(x) t)``, the values of ``jax.jvp(self, (x,), (t,))``, for ``(batch, in)``
        inputs and tangents, with the same dropout masks for both when ``key`` is given.

        Each dense layer multiplies the primal and tangent rows stacked into one ``(2 batch,
        in)`` matrix: one matrix product twice the size instead of two, which on the CPU at the
        LSD sizes (batch 100, width 300) is about a quarter faster, and so is its gradient.
        """
        n = x.shape[0]
        h, dh = x.reshape((n, -1)), t.reshape((n, -1))

        def dense(layer: nnx.Linear, h: Array, dh: Array) -> tuple[Array, Array]:
            both = jnp.concatenate([h, dh], axis=0) @ layer.kernel[...]
            return both[:n] + layer.bias[...][None, :], both[n:]

        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            h, dh = act.jvp(*dense(layer, h, dh))
            if key is not None and self.dropout_rate > 0.0:
                scale = self._mask(key, i, h)
                h, dh = h * scale, dh * scale
        out, dout = dense(self.out, h, dh)
        if self.out_features == 1:
            return out[:, 0], dout[:, 0]
        return out, dout

    def value_and_trace(self, x: Array, *, key: Array | None = None) -> tuple[Array, Array]:
        r"""``(f(x), tr df/dx)`` per row, exactly, for a square map with one or two hidden layers.

        With kernels ``K_1 (D, H), K_2 (H, H), K_3 (H, D)`` (``y = h K + b``) and per-row slopes
        ``d_l`` of the activations (times the dropout masks), the Jacobian is
        :math:`K_3^\top D_2 K_2^\top D_1 K_1^\top`, and by the cyclic property of the trace

        .. math::  \operatorname{tr} J = d_1^\top \big(K_2 \circ (K_3 K_1)^\top\big)\, d_2 ,

        one ``(H, H)`` product per row, the cost of one Hutchinson probe, with no probe noise
        (one hidden layer: :math:`d_1 \cdot \operatorname{diag}(K_2 K_1)`).
        """
        n = x.shape[0]
        if self.out.kernel.shape[1] != x.reshape((n, -1)).shape[1] or len(self.layers) > 2:
            raise ValueError("value_and_trace needs a square map (out = in) with 1 or 2 hidden "
                             "layers")
        h = x.reshape((n, -1))
        slopes = []
        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            h, d = act.value_and_derivative(layer(h))
            if key is not None and self.dropout_rate > 0.0:
                scale = self._mask(key, i, h)
                h, d = h * scale, d * scale
            slopes.append(d)
        k_first, k_last = self.layers[0].kernel[...], self.out.kernel[...]
        if len(self.layers) == 1:
            trace = slopes[0] @ jnp.sum(k_last * k_first.T, axis=1)
        else:
            g = self.layers[1].kernel[...] * (k_last @ k_first).T
            trace = jnp.sum((slopes[0] @ g) * slopes[1], axis=1)
        return self.out(h), trace
