r"""Stochastic gradient Langevin dynamics (SGLD) on an unnormalized log-density.

One step, for a batch of independent chains :math:`x` and an unnormalized log-density
:math:`\log \tilde p`:

.. math::

    x \leftarrow x + \alpha \, \nabla_x \log \tilde p(x) + \sigma \, \varepsilon,
    \qquad \varepsilon \sim \mathcal N(0, I),

with the step size :math:`\alpha` and the noise scale :math:`\sigma` set separately.

* Proper (unadjusted) Langevin: :math:`\alpha = \sigma^2 / 2`. Its stationary law tends to
  :math:`p` as :math:`\alpha \to 0`; for a Gaussian with precision :math:`P` the chain's own
  stationary covariance is :math:`(P (I - \alpha P / 2))^{-1}`, a bias of order :math:`\alpha`.
* JEM's short-run sampler: :math:`\alpha = 1`, :math:`\sigma = 0.01` — deliberately not a
  Langevin discretization; it is a noisy gradient ascent that the model learns to exploit.

The gradient of the sum over the batch is the per-chain gradient because the chains are
independent: ``log_prob_fn`` must not couple samples (no BatchNorm in the energy).

Loop choice: the default ``unroll=1`` runs the chain in a rolled ``lax.scan``; ``unroll=True``
is a fully unrolled chain (a Python loop traced inside the caller's jit, no loop in the compiled
program), and an integer ``k`` unrolls the scan ``k`` steps at a time. All three give identical
numbers for the same key. On the CPU, a conv-net energy should use ``jaxebm.nn.conv.Conv``
layers: autodiff's own convolution input gradients take a path 3-14x slower inside a loop
(benchmarks/conv_grad.py), theirs run inside a scan as fast as unrolled, and the scan compiles
faster.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
LogProbFn = Callable[[Array], Array]


def proper_langevin_step_size(noise_std: float) -> float:
    """The step size that makes SGLD the unadjusted Langevin algorithm: ``noise_std**2 / 2``."""
    return 0.5 * noise_std * noise_std


def score_of(log_prob_fn: LogProbFn) -> Callable[[Array], Array]:
    """``x -> grad_x sum(log_prob_fn(x))``: the per-chain score for independent chains."""

    def total(x: Array) -> Array:
        return jnp.sum(log_prob_fn(x))

    return jax.grad(total)


def langevin_step(
    score_fn: Callable[[Array], Array],
    x: Array,
    *,
    key: Array,
    step_size: float | Array,
    noise_std: float | Array,
    clip: tuple[float, float] | None = None,
) -> Array:
    """One SGLD step ``x + step_size * score(x) + noise_std * N(0, I)``, then optional clipping."""
    noise = jax.random.normal(key, x.shape, x.dtype)
    x_new = x + step_size * score_fn(x) + noise_std * noise
    if clip is not None:
        x_new = jnp.clip(x_new, clip[0], clip[1])
    return x_new


def sgld(
    log_prob_fn: LogProbFn,
    x0: Array,
    *,
    key: Array,
    n_steps: int,
    step_size: float | Array,
    noise_std: float | Array,
    unroll: int | bool = 1,
    clip: tuple[float, float] | None = None,
) -> Array:
    """Runs ``n_steps`` of SGLD from ``x0`` (a batch of chains) and returns the final states.

    Args:
      log_prob_fn: batch -> per-sample unnormalized log-density (shape ``(batch,)``), or any
        array whose sum is the sum of per-sample values. Must be traceable.
      x0: starting points, leading axis = chains.
      key: PRNG key; step ``t`` uses the ``t``-th of ``split(key, n_steps)`` in every loop mode.
      n_steps: chain length (static).
      step_size: the gradient step ``alpha``.
      noise_std: the noise scale ``sigma``; ``alpha = sigma**2 / 2`` is proper Langevin.
      unroll: ``1`` rolled ``lax.scan``; an int ``k > 1``: scan unrolled by ``k``; ``True``:
        fully unrolled Python loop (for conv nets built from plain ``nnx.Conv`` on the CPU).
      clip: optional ``(low, high)`` box the state is clipped to after every step.

    Call this inside ``jax.jit``; ``n_steps``, ``unroll`` and ``clip`` are static.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    if unroll is False:
        unroll = 1
    if unroll is not True and (not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"unroll must be True or a positive int, got {unroll!r}")
    if n_steps == 0:
        return x0
    score_fn = score_of(log_prob_fn)
    keys = jax.random.split(key, n_steps)

    def step(x: Array, k: Array) -> Array:
        return langevin_step(
            score_fn, x, key=k, step_size=step_size, noise_std=noise_std, clip=clip
        )

    if unroll is True:
        # Python loop: traced n_steps times, so the compiled program has no while loop and
        # XLA sees every convolution of the input gradient in its canonical layout.
        x = x0
        for t in range(n_steps):
            x = step(x, keys[t])
        return x
    def body(x: Array, k: Array) -> tuple[Array, None]:
        return step(x, k), None

    x_final, _ = jax.lax.scan(body, x0, keys, unroll=unroll)
    return x_final
