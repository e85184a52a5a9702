r"""A small convolutional classifier / energy network for 8x8 (digits) and 28x28 (MNIST) images.

NHWC input. Per stage ``c`` in ``channels``: a 3x3 conv, activation, a 3x3 stride-2 conv,
activation (8 -> 4 -> 2 or 28 -> 14 -> 7 spatially with two stages); then global average
pooling, optional dropout, and a linear layer to ``num_classes`` outputs (logits, or one energy
with ``num_classes=1``). Optional per-sample normalization (``"group"``/``"layer"``, never
BatchNorm) before each activation. Dropout is active only when ``__call__`` gets a ``key``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxebm.nn.conv import Conv
from jaxebm.nn.mlp import dropout, get_activation
from jaxebm.nn.wrn import make_norm

Array = jax.Array
_PAD1 = ((1, 1), (1, 1))


class ConvNet(nnx.Module):
    """``[conv3x3, act, conv3x3/2, act] * len(channels)``, mean pool, linear."""

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        channels: Sequence[int] = (32, 64),
        activation: str = "leaky_relu",
        norm: str | None = None,
        dropout_rate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        get_activation(activation)  # fail early on a bad name
        self.activation = activation
        self.dropout_rate = float(dropout_rate)
        convs, norms = [], []
        c_in = in_channels
        for c in channels:
            convs.append(Conv(c_in, c, (3, 3), padding=_PAD1, rngs=rngs))
            norms.append(make_norm(norm, c, rngs))
            convs.append(Conv(c, c, (3, 3), strides=2, padding=_PAD1, rngs=rngs))
            norms.append(make_norm(norm, c, rngs))
            c_in = c
        self.convs = nnx.List(convs)
        self.norms = nnx.List(norms)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        """``x``: ``(batch, H, W, in_channels)``; ``key`` turns dropout on (training only)."""
        act = get_activation(self.activation)
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h)
            h = act(h if norm is None else norm(h))
        h = jnp.mean(h, axis=(1, 2))
        h = dropout(h, self.dropout_rate, key)
        return self.head(h)
