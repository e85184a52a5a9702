r"""A persistent replay buffer for short-run MCMC (persistent contrastive divergence), as a pytree.

JEM / IGEBM sampling: keep ``size`` past samples. Each training step draws ``batch`` chain starts:
each start is a uniformly chosen buffer entry, or, with probability ``reinit_prob`` independently
per chain, a fresh draw from the initial noise (JEM: :math:`U(-1, 1)^D`, probability 0.05). After
the chains run, their final states are written back at the same indices.

Class-conditional sampling (:math:`p(x \mid y)`): the buffer is split into ``num_classes``
contiguous, equal slices; entry ``i`` belongs to class ``i // (size // num_classes)``, and a
chain for label ``y`` starts from an entry of slice ``y``. An unconditional buffer is the case
``num_classes = 1``.

Short-run chains from noise (no persistence) are ``reinit_prob = 1`` or :func:`noise_init`
directly.

Everything is a pure function of the buffer and an explicit key; the buffer is a
``flax.struct`` dataclass whose only leaf is the sample array, so it jits, donates, and
checkpoints like any pytree. ``num_classes`` and ``init`` are static fields.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
Init = Literal["uniform", "gaussian"]


@struct.dataclass
class ReplayBuffer:
    """``samples``: ``(size, *shape)``; slice ``c`` of ``num_classes`` holds class ``c``."""

    samples: Array
    num_classes: int = struct.field(pytree_node=False, default=1)
    init: str = struct.field(pytree_node=False, default="uniform")

    @property
    def size(self) -> int:
        return self.samples.shape[0]

    @property
    def slice_size(self) -> int:
        return self.size // self.num_classes

    @property
    def labels(self) -> Array:
        """The class of every entry, ``(size,)`` int32 (all zero when unconditional)."""
        return jnp.arange(self.size, dtype=jnp.int32) // self.slice_size


def noise_init(key: Array, shape: tuple[int, ...], init: Init = "uniform", dtype=jnp.float32) -> Array:
    """Initial noise for chains: ``U(-1, 1)`` (JEM) or ``N(0, 1)``."""
    if init == "uniform":
        return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)
    if init == "gaussian":
        return jax.random.normal(key, shape, dtype)
    raise ValueError(f"unknown buffer init {init!r}; expected 'uniform' or 'gaussian'")


def init_buffer(
    key: Array,
    size: int,
    shape: tuple[int, ...],
    init: Init = "uniform",
    *,
    num_classes: int = 1,
    dtype=jnp.float32,
) -> ReplayBuffer:
    """A buffer of ``size`` samples of ``shape`` drawn from ``init``, in ``num_classes`` slices."""
    if size < 1:
        raise ValueError(f"buffer size must be >= 1, got {size}")
    if num_classes < 1 or size % num_classes != 0:
        raise ValueError(
            f"buffer size {size} must be a positive multiple of num_classes {num_classes} "
            "so that every class gets an equal contiguous slice"
        )
    samples = noise_init(key, (size, *shape), init, dtype)
    return ReplayBuffer(samples=samples, num_classes=num_classes, init=init)


def sample_from_buffer(
    buffer: ReplayBuffer,
    key: Array,
    batch: int,
    reinit_prob: float | Array,
    y: Array | None = None,
) -> tuple[Array, Array]:
    """Chain starts and the buffer indices they belong to.

    Args:
      buffer: the replay buffer.
      key: PRNG key.
      batch: number of chains (static).
      reinit_prob: probability that a chain starts from fresh noise instead of its entry.
      y: optional ``(batch,)`` int labels: entry indices are drawn from class ``y``'s slice.

    Returns:
      ``(x0, idx)``: ``x0`` of shape ``(batch, *shape)`` and ``idx`` ``(batch,)`` int32; write the
      chains' final states back with ``update_buffer(buffer, idx, x)``. A re-initialized chain
      still owns its index, so its result replaces that entry.
    """
    k_idx, k_mask, k_noise = jax.random.split(key, 3)
    if y is None:
        # Unconditional: any entry, whatever the slicing.
        idx = jax.random.randint(k_idx, (batch,), 0, buffer.size, dtype=jnp.int32)
    else:
        if y.shape != (batch,):
            raise ValueError(f"y must have shape ({batch},), got {y.shape}")
        offsets = jax.random.randint(k_idx, (batch,), 0, buffer.slice_size, dtype=jnp.int32)
        idx = y.astype(jnp.int32) * jnp.int32(buffer.slice_size) + offsets
    stored = buffer.samples[idx]
    fresh = noise_init(k_noise, stored.shape, buffer.init, stored.dtype)
    reinit = jax.random.uniform(k_mask, (batch,)) < reinit_prob
    mask = reinit.reshape((batch,) + (1,) * (stored.ndim - 1))
    x0 = jnp.where(mask, fresh, stored)
    return x0, idx


def update_buffer(buffer: ReplayBuffer, idx: Array, x: Array) -> ReplayBuffer:
    """Writes ``x[i]`` to entry ``idx[i]``. With repeated indices one of the writes wins."""
    samples = buffer.samples.at[idx].set(x.astype(buffer.samples.dtype))
    return buffer.replace(samples=samples)
