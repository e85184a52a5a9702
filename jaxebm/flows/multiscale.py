r"""Multiscale layout for image CNFs (FFJORD's ODENVP, after RealNVP/Glow).

At each scale but the last: CNF blocks on ``(H, W, C)``; squeeze to ``(H/2, W/2, 4C)``; more
blocks; factor out half the channels (they go straight to the N(0, I) prior); go on with
``2C`` channels. The last scale has blocks only. Squeezing and factoring are volume-preserving
permutations, so they add nothing to the log-density.
"""

from __future__ import annotations

import jax


def squeeze(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, H/2, W/2, 4C), each 2x2 patch moved into channels."""
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"cannot squeeze spatial size {(h, w)}: both must be even")
    x = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(x: jax.Array) -> jax.Array:
    """The inverse of ``squeeze``."""
    b, h, w, c4 = x.shape
    c = c4 // 4
    x = x.reshape(b, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, 2 * h, 2 * w, c)


def stage_shapes(shape: tuple[int, int, int], n_scales: int) -> list[tuple[tuple[int, int, int], bool]]:
    """Per stage: the (H, W, C) its blocks act on, and whether half its channels leave after it."""
    h, w, c = shape
    stages = []
    for i in range(n_scales):
        stages.append(((h, w, c), False))
        if i < n_scales - 1:
            if h % 2 or w % 2:
                raise ValueError(f"model.n_scales={n_scales} too large for images {shape}")
            h, w, c = h // 2, w // 2, 4 * c
            stages.append(((h, w, c), True))
            c //= 2
    return stages
