r"""A multilayer perceptron, and the activations the energy networks share, by name.

``MLP(in, hidden=(h1, ..., hL), out)``: :math:`x \mapsto W_{L+1}\,\phi(\dots\phi(W_1 x + b_1)\dots)
+ b_{L+1}`, inputs flattened after the batch axis (so 8x8 images work as they are). Optional
dropout after each hidden activation, active only when ``__call__`` gets a ``key``: no random
state lives in the module, so a split/merged module jits as a pure function of its parameters.

Energies need smooth or at least non-saturating activations: ``leaky_relu`` (slope 0.2, JEM),
``swish`` (a smooth choice reported to stabilize JEM), plus ``relu``, ``elu``, ``softplus``,
``tanh``, ``gelu``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def _leaky_relu(x: Array) -> Array:
    return jax.nn.leaky_relu(x, negative_slope=0.2)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "leaky_relu": _leaky_relu,
    "swish": jax.nn.swish,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
}


def get_activation(name: str) -> Callable[[Array], Array]:
    """An activation by name; ``leaky_relu`` has slope 0.2 as in JEM."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def dropout(x: Array, rate: float, key: Array | None) -> Array:
    """Inverted dropout with an explicit key; identity when ``key`` is None or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def dropout_scale(rate: float, key: Array, shape, dtype) -> Array:
    """The multiplier inverted dropout applies: ``1 / (1 - rate)`` where kept, else 0, drawn as
    :func:`dropout` draws its mask, so the same key gives the same mask. For callers that scale
    several arrays (a value and its tangent or slope) by one mask."""
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


class MLP(nnx.Module):
    """Dense layers with an activation between them; last layer linear."""

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int],
        out_features: int,
        *,
        activation: str = "swish",
        dropout_rate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        self.dropout_rate = float(dropout_rate)
        sizes = [in_features, *hidden_sizes]
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.out = nnx.Linear(sizes[-1], out_features, rngs=rngs)

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        """``x``: ``(batch, ...)``; ``key`` turns dropout on (training), None is deterministic."""
        act = get_activation(self.activation)
        h = x.reshape((x.shape[0], -1))
        for i, layer in enumerate(self.hidden):
            h = act(layer(h))
            if key is not None:
                h = dropout(h, self.dropout_rate, jax.random.fold_in(key, i))
        return self.out(h)
