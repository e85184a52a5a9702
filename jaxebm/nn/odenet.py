r"""Time-dependent networks for CNF dynamics :math:`f(t, z)` (FFJORD's ODEnet), in flax NNX.

Layers that take time as an input:

* ``concat``:       :math:`W [z; t] + b`
* ``concatsquash``: :math:`(W z + b)\,\sigma(a t + c) + d\,t`  (a gate and a bias driven by t)

Both come as dense layers (vectors) and 3x3 convolutions (images, NHWC). A network is a stack of
such layers with the nonlinearity between them (none after the last). Everything here works on
one sample; callers vmap.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxebm.nn.conv import Conv

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
    "swish": jax.nn.swish,
}
LAYER_TYPES = ("concat", "concatsquash")


def _time_channel_shape(h: jax.Array) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector against ``h`` without rank promotion."""
    return (1,) * (h.ndim - 1) + (h.shape[-1],)


class TimeLayer(nnx.Module):
    """One ``concat`` or ``concatsquash`` layer, dense (``conv=False``) or 3x3 conv (NHWC)."""

    def __init__(self, d_in: int, d_out: int, layer_type: str, *, conv: bool, rngs: nnx.Rngs):
        if layer_type not in LAYER_TYPES:
            raise ValueError(f"layer_type={layer_type!r}: expected one of {LAYER_TYPES}")
        self.layer_type = layer_type
        extra = 1 if layer_type == "concat" else 0
        if conv:
            # The CNF differentiates this net's JVPs (the trace estimator) inside the ODE solve;
            # lax's derivatives made its training steps 10-15x slower on the CPU (jaxebm.nn.conv).
            self.main = Conv(d_in + extra, d_out, (3, 3), padding="SAME", through_jvp=True,
                             rngs=rngs)
        else:
            self.main = nnx.Linear(d_in + extra, d_out, rngs=rngs)
        if layer_type == "concatsquash":
            self.gate = nnx.Linear(1, d_out, rngs=rngs)
            self.hyper_bias = nnx.Linear(1, d_out, use_bias=False, rngs=rngs)

    def __call__(self, t: jax.Array, h: jax.Array) -> jax.Array:
        tt = jnp.reshape(t, (1,)).astype(h.dtype)
        if self.layer_type == "concat":
            return self.main(jnp.concatenate([h, jnp.broadcast_to(tt, h.shape[:-1] + (1,))], -1))
        out = self.main(h)
        shape = _time_channel_shape(out)
        gate = jax.nn.sigmoid(self.gate(tt)).reshape(shape)
        return out * gate + self.hyper_bias(tt).reshape(shape)


class ODENet(nnx.Module):
    """``f(t, z)``: ``dim -> hidden[0] -> ... -> dim`` time layers with ``activation`` between."""

    def __init__(self, dim: int, hidden: Sequence[int], *, layer_type: str = "concatsquash",
                 activation: str = "tanh", conv: bool = False, rngs: nnx.Rngs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {sorted(ACTIVATIONS)}")
        widths = [dim, *hidden, dim]
        self.activation = activation
        self.layers = nnx.List(
            [TimeLayer(a, b, layer_type, conv=conv, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
        )

    def __call__(self, t: jax.Array, z: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < len(self.layers) - 1:
                h = act(h)
        return h
