r"""Grid-normalized log-likelihood of 2-D unnormalized densities.

For an unnormalized log density :math:`\log \tilde p` on :math:`\mathbb{R}^2` the normalizer
:math:`Z = \int \tilde p(x)\,dx` is approximated by the midpoint rule on an :math:`n \times n`
grid of cells over ``bounds``:

.. math::  \log Z \approx \operatorname{logsumexp}_{ij} \log \tilde p(c_{ij}) + \log(\Delta_x \Delta_y),

with cell centres :math:`c_{ij}` and cell sides :math:`\Delta = (\text{hi} - \text{lo})/n`.
For a smooth density the error is :math:`O(\Delta^2)` plus the mass outside the bounds, so the
bounds must hold essentially all of the mass. The test NLL is then
:math:`-\frac1m\sum_k \log \tilde p(x_k) + \log Z` nats. This is how the LSD and FFJORD toy
experiments report likelihoods of energy models, whose normalizer is otherwise unknown.

``log_prob_unnorm`` is *batched*: ``(m, 2) -> (m,)`` (wrap a per-sample function with
``jax.vmap``). The grid is evaluated in chunks of ``chunk`` points (``lax.map``) so a large grid
and a wide network fit in memory.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

Array = jax.Array
LogDensity = Callable[[Array], Array]
Bounds = Sequence[float] | Sequence[Sequence[float]]


def _axis_bounds(bounds: Bounds) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(lo, hi)`` for a square, or ``((xlo, xhi), (ylo, yhi))``."""
    if len(bounds) == 2 and all(isinstance(v, numbers.Real) for v in bounds):
        lo, hi = float(bounds[0]), float(bounds[1])
        pair = ((lo, hi), (lo, hi))
    else:
        (xlo, xhi), (ylo, yhi) = bounds
        pair = ((float(xlo), float(xhi)), (float(ylo), float(yhi)))
    for lo, hi in pair:
        if not hi > lo:
            raise ValueError(f"grid bounds need lo < hi; got {pair}")
    return pair


def grid_points(bounds: Bounds, n: int, dtype=jnp.float32) -> tuple[Array, Array, Array, float]:
    """Cell centres of an ``n x n`` grid: ``(xs (n,), ys (n,), points (n*n, 2), cell_area)``.

    ``points`` run over ``x`` fastest, so ``values.reshape(n, n)`` is indexed ``[iy, ix]``
    (``imshow`` / ``pcolormesh`` order).
    """
    if n < 1:
        raise ValueError(f"grid size n must be >= 1; got {n}")
    (xlo, xhi), (ylo, yhi) = _axis_bounds(bounds)
    dx, dy = (xhi - xlo) / n, (yhi - ylo) / n
    xs = xlo + (jnp.arange(n, dtype=dtype) + 0.5) * dx
    ys = ylo + (jnp.arange(n, dtype=dtype) + 0.5) * dy
    gx, gy = jnp.meshgrid(xs, ys)  # (n, n) each, indexed [iy, ix]
    points = jnp.stack([gx.reshape(-1), gy.reshape(-1)], axis=1)
    return xs, ys, points, dx * dy


def _evaluate_chunked(log_prob_unnorm: LogDensity, points: Array, chunk: int) -> Array:
    m = points.shape[0]
    chunk = min(chunk, m)
    n_chunks = -(-m // chunk)
    pad = n_chunks * chunk - m
    # Pad with copies of the first point so the padded rows are finite; they are sliced off.
    padded = jnp.concatenate([points, jnp.broadcast_to(points[:1], (pad, 2))], axis=0)
    values = jax.lax.map(log_prob_unnorm, padded.reshape(n_chunks, chunk, 2))
    return values.reshape(-1)[:m]


def grid_log_density(
    log_prob_unnorm: LogDensity, bounds: Bounds, n: int, *, chunk: int = 65536
) -> tuple[Array, Array, Array, Array]:
    """``(xs, ys, log_p (n, n) normalized on the grid, log Z)``; ``log_p`` indexed ``[iy, ix]``."""
    xs, ys, points, area = grid_points(bounds, n)
    values = _evaluate_chunked(log_prob_unnorm, points, chunk)
    log_z = logsumexp(values) + math.log(area)
    return xs, ys, (values - log_z).reshape(n, n), log_z


def grid_log_normalizer(
    log_prob_unnorm: LogDensity, bounds: Bounds, n: int, *, chunk: int = 65536
) -> Array:
    """``log Z`` of a 2-D unnormalized density by the midpoint rule on an ``n x n`` grid."""
    _, _, points, area = grid_points(bounds, n)
    return logsumexp(_evaluate_chunked(log_prob_unnorm, points, chunk)) + math.log(area)


def grid_nll(
    log_prob_unnorm: LogDensity, x_test: Array, bounds: Bounds, n: int, *, chunk: int = 65536
) -> Array:
    """Mean test negative log-likelihood in nats, with ``log Z`` from the grid."""
    if x_test.ndim != 2 or x_test.shape[1] != 2:
        raise ValueError(f"grid_nll is for 2-D data: x_test must be (m, 2); got {x_test.shape}")
    log_z = grid_log_normalizer(log_prob_unnorm, bounds, n, chunk=chunk)
    return log_z - jnp.mean(log_prob_unnorm(x_test))
