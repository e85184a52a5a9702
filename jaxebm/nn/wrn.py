r"""Wide residual network (Zagoruyko & Komodakis 2016) as JEM uses it: no BatchNorm, NHWC.

WRN-``depth``-``k``: a 3x3 stem conv to 16 channels, then three groups of
:math:`n = (\text{depth} - 4) / 6` pre-activation "wide basic" blocks with
:math:`16k, 32k, 64k` channels (strides 1, 2, 2), then norm, activation, global average pooling
and a linear layer to the logits. A block computes

.. math::

    h = \mathrm{conv}_{3\times3}(\phi(\mathrm{norm}(x))), \quad
    h = \mathrm{dropout}(h), \quad
    y = \mathrm{conv}_{3\times3,\,s}(\phi(\mathrm{norm}(h))) + \mathrm{shortcut}(x),

with a 1x1 strided conv as shortcut where the shape changes. Padding is one pixel on every side
(as in the PyTorch reference), so 32 -> 16 -> 8 spatially for CIFAR-shaped input.

Energy-model choices (JEM): ``norm=None`` by default (BatchNorm's batch coupling and running
statistics break sampling, so it is not offered); ``"group"`` (GroupNorm with gcd(32, C) groups)
or ``"layer"`` (one group: statistics over H, W, C per sample) as options; activation
``leaky_relu`` (0.2) or ``swish``. Dropout is active only when ``__call__`` gets a ``key``: no
random state is stored in the module, so a split/merged WRN is a pure function of its parameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxebm.nn.conv import Conv
from jaxebm.nn.mlp import dropout, get_activation

Array = jax.Array
_PAD1 = ((1, 1), (1, 1))


def make_norm(norm: str | None, channels: int, rngs: nnx.Rngs) -> nnx.Module | None:
    """A per-sample normalization layer (never BatchNorm), or None."""
    if norm is None:
        return None
    if norm == "group":
        return nnx.GroupNorm(channels, num_groups=math.gcd(32, channels), rngs=rngs)
    if norm == "layer":
        return nnx.GroupNorm(channels, num_groups=1, rngs=rngs)
    raise ValueError(f"unknown norm {norm!r}; expected None, 'group' or 'layer' (BatchNorm is not offered)")


def _apply_norm(norm: nnx.Module | None, x: Array) -> Array:
    return x if norm is None else norm(x)


class WideBasic(nnx.Module):
    """Pre-activation wide residual block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        norm: str | None,
        activation: str,
        dropout_rate: float,
        rngs: nnx.Rngs,
    ):
        self.activation = activation
        self.dropout_rate = float(dropout_rate)
        self.norm1 = make_norm(norm, in_channels, rngs)
        self.conv1 = Conv(in_channels, out_channels, (3, 3), padding=_PAD1, rngs=rngs)
        self.norm2 = make_norm(norm, out_channels, rngs)
        self.conv2 = Conv(
            out_channels, out_channels, (3, 3), strides=stride, padding=_PAD1, rngs=rngs
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Conv(
                in_channels, out_channels, (1, 1), strides=stride, padding="VALID", rngs=rngs
            )
        else:
            self.shortcut = None

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        act = get_activation(self.activation)
        h = self.conv1(act(_apply_norm(self.norm1, x)))
        h = dropout(h, self.dropout_rate, key)
        h = self.conv2(act(_apply_norm(self.norm2, h)))
        skip = x if self.shortcut is None else self.shortcut(x)
        return h + skip


class WideResNet(nnx.Module):
    """WRN-depth-widen_factor classifier on NHWC images; ``__call__`` returns logits."""

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        *,
        in_channels: int = 3,
        dropout_rate: float = 0.0,
        norm: str | None = None,
        activation: str = "leaky_relu",
        rngs: nnx.Rngs,
    ):
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        get_activation(activation)  # fail early on a bad name
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.activation = activation
        self.num_features = widths[-1]
        self.stem = Conv(in_channels, 16, (3, 3), padding=_PAD1, rngs=rngs)
        blocks = []
        c_in = 16
        for width, stride in zip(widths, (1, 2, 2)):
            for i in range(n):
                blocks.append(
                    WideBasic(
                        c_in,
                        width,
                        stride if i == 0 else 1,
                        norm=norm,
                        activation=activation,
                        dropout_rate=dropout_rate,
                        rngs=rngs,
                    )
                )
                c_in = width
        self.blocks = nnx.List(blocks)
        self.final_norm = make_norm(norm, c_in, rngs)
        self.head = nnx.Linear(c_in, num_classes, rngs=rngs)

    def features(self, x: Array, *, key: Array | None = None) -> Array:
        """Pooled features ``(batch, 64 * widen_factor)``."""
        act = get_activation(self.activation)
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            h = block(h, key=None if key is None else jax.random.fold_in(key, i))
        h = act(_apply_norm(self.final_norm, h))
        return jnp.mean(h, axis=(1, 2))

    def __call__(self, x: Array, *, key: Array | None = None) -> Array:
        """``x``: ``(batch, H, W, C)``; ``key`` turns dropout on (training only)."""
        return self.head(self.features(x, key=key))
