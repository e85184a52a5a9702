r"""Kernel Stein discrepancy with a Gaussian RBF kernel: quadratic- and linear-time, with tests.

With the score :math:`s = \nabla \log \tilde q` and a kernel :math:`k`, the Stein kernel

.. math::
   u_q(x, y) = s(x)^\top s(y)\,k(x,y) + s(x)^\top \nabla_y k(x,y) + s(y)^\top \nabla_x k(x,y)
               + \operatorname{tr} \nabla_x \nabla_y k(x,y)

has :math:`\mathbb{E}_{x,y \sim p}[u_q(x,y)] = \mathrm{KSD}^2(p, q)`, zero iff :math:`p = q`
(Liu, Lee & Jordan 2016; Chwialkowski, Strathmann & Gretton 2016). For
:math:`k(x,y) = \exp(-\|x-y\|^2 / (2h^2))` in :math:`D` dimensions, with :math:`r = x - y`:

.. math::
   u_q(x,y) = k(x,y)\Big[s(x)^\top s(y) + \frac{s(x)^\top r - s(y)^\top r}{h^2}
              + \frac{D}{h^2} - \frac{\|r\|^2}{h^4}\Big].

* U-statistic :math:`\frac{1}{n(n-1)}\sum_{i\ne j} u_q(x_i,x_j)` (unbiased) and V-statistic
  :math:`\frac{1}{n^2}\sum_{i,j} u_q(x_i,x_j)` (biased, non-negative); :math:`O(n^2)` time and
  memory (never an ``(n, n, D)`` array).
* Wild-bootstrap test of H0: q = p on :math:`n\,\widehat{\mathrm{KSD}}^2`: redraw
  :math:`n\,w^\top H w / n^2` (V) or :math:`n \sum_{i\ne j} w_i w_j H_{ij} / (n(n-1))` (U) with
  Rademacher weights :math:`w`, i.i.d. for i.i.d. data, or Chwialkowski et al.'s Markov-chain
  weights (each :math:`w_t = \pm w_{t-1}`, the sign flipping with probability ``flip_prob``) for
  correlated samples; ``flip_prob = 0.5`` is the i.i.d. case.
* Linear-time KSD: the mean of :math:`u_q(x_{2i}, x_{2i+1})` over disjoint pairs, asymptotically
  normal, tested one-sided with :math:`\sqrt{m}\,\bar u / \hat\sigma_u` against
  :math:`\Phi^{-1}(1-\alpha)`.

The bandwidth defaults to the median heuristic: :math:`h` = the median of the pairwise
Euclidean distances :math:`\|x_i - x_j\|, i<j` (kgof's ``meddistance``, used as
:math:`\sigma^2 = h^2` in its ``KGauss``). Samples ``(n, *event)`` are flattened to ``(n, D)``.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from jaxebm.stein.operator import _scores_like

Array = jax.Array
Statistic = Literal["u", "v"]
Weights = Literal["rademacher", "markov"]


def _flat(x: Array) -> Array:
    return x.reshape(x.shape[0], -1)


def _sq_distances(x: Array) -> Array:
    """Pairwise squared distances of the rows of ``x`` (n, D) by the Gram trick, clipped at 0."""
    # Distances do not change under translation; centring first shrinks the norms and with
    # them the float32 cancellation error of the Gram trick.
    x = x - jnp.mean(x, axis=0, keepdims=True)
    norms = jnp.sum(x * x, axis=1)
    d2 = norms[:, None] + norms[None, :] - 2.0 * (x @ x.T)
    # The Gram trick can go slightly negative by cancellation; the diagonal is exactly zero.
    d2 = jnp.maximum(d2, 0.0)
    return d2 * (1.0 - jnp.eye(x.shape[0], dtype=x.dtype))


def median_bandwidth(x: Array) -> Array:
    """Median heuristic: the median of ``||x_i - x_j||`` over pairs ``i < j``."""
    xf = _flat(x)
    n = xf.shape[0]
    if n < 2:
        raise ValueError("the median heuristic needs at least two samples")
    # Each pair appears twice off the diagonal, so the median over the 2M off-diagonal entries
    # (the mean of sorted entries M-1 and M) equals the median over the M pairs i < j. The
    # diagonal is pushed to the end of the sort with +inf.
    n_pairs = n * (n - 1) // 2
    d2 = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, _sq_distances(xf))
    ordered = jnp.sort(d2.reshape(-1))
    return 0.5 * (jnp.sqrt(ordered[n_pairs - 1]) + jnp.sqrt(ordered[n_pairs]))


def _resolve_bandwidth(x: Array, bandwidth: float | Array | None) -> Array:
    if bandwidth is None:
        return median_bandwidth(x)
    return jnp.asarray(bandwidth, dtype=x.dtype)


def stein_kernel(x: Array, y: Array, sx: Array, sy: Array, bandwidth: float | Array) -> Array:
    """``u_q(x, y)`` for one pair of samples (any equal shapes) and their scores ``sx, sy``."""
    x, y, sx, sy = (a.reshape(-1) for a in (x, y, sx, sy))
    h2 = jnp.asarray(bandwidth, dtype=x.dtype) ** 2
    r = x - y
    r2 = jnp.sum(r * r)
    k = jnp.exp(-r2 / (2.0 * h2))
    dim = jnp.asarray(x.shape[0], dtype=x.dtype)
    return k * (jnp.dot(sx, sy) + (jnp.dot(sx, r) - jnp.dot(sy, r)) / h2 + dim / h2 - r2 / h2**2)


def stein_kernel_matrix(
    x: Array, score: Array | Callable[[Array], Array], bandwidth: float | Array | None = None
) -> Array:
    """The ``(n, n)`` matrix ``H_ij = u_q(x_i, x_j)`` for a batch ``x`` and its scores."""
    s = _flat(_scores_like(score, x))
    xf = _flat(x)
    h2 = _resolve_bandwidth(x, bandwidth) ** 2
    d2 = _sq_distances(xf)
    k = jnp.exp(-d2 / (2.0 * h2))
    m = s @ xf.T  # m_ij = s_i . x_j
    a = jnp.diagonal(m)  # a_i = s_i . x_i
    sx_r = a[:, None] - m  # s_i . (x_i - x_j)
    sy_r = m.T - a[None, :]  # s_j . (x_i - x_j)
    dim = jnp.asarray(xf.shape[1], dtype=xf.dtype)
    return k * (s @ s.T + (sx_r - sy_r) / h2 + dim / h2 - d2 / h2**2)


def _ksd_from_matrix(h: Array, statistic: Statistic) -> Array:
    n = h.shape[0]
    if statistic == "v":
        return jnp.mean(h)
    if statistic == "u":
        return (jnp.sum(h) - jnp.trace(h)) / (n * (n - 1))
    raise ValueError(f"unknown KSD statistic {statistic!r}; expected 'u' or 'v'")


def ksd(
    x: Array,
    score: Array | Callable[[Array], Array],
    *,
    bandwidth: float | Array | None = None,
    statistic: Statistic = "u",
) -> Array:
    """Quadratic-time estimate of KSD^2: the U-statistic (``'u'``) or V-statistic (``'v'``)."""
    return _ksd_from_matrix(stein_kernel_matrix(x, score, bandwidth), statistic)


class KSDTest(NamedTuple):
    """Result of a KSD goodness-of-fit test of H0: the sample comes from q."""

    stat: Array  # test statistic (n * KSD^2 for the quadratic test, z-score for the linear one)
    p_value: Array
    reject: Array  # p_value < alpha
    bandwidth: Array


@functools.partial(jax.jit, static_argnames=("n_boot", "n", "weights", "dtype"))
def wild_bootstrap_weights(
    key: Array, n_boot: int, n: int, *, weights: Weights = "rademacher", flip_prob: float = 0.5,
    dtype=jnp.float32,
) -> Array:
    """``(n_boot, n)`` bootstrap weights in {-1, +1}.

    ``'rademacher'``: i.i.d. signs. ``'markov'``: Chwialkowski et al.'s wild bootstrap,
    ``w_1`` a random sign and ``w_t = -w_{t-1}`` with probability ``flip_prob``, else
    ``w_{t-1}`` (for samples correlated along the chain, e.g. MCMC output in order).
    """
    if weights == "rademacher":
        return jax.random.rademacher(key, (n_boot, n), dtype)
    if weights == "markov":
        k_first, k_flip = jax.random.split(key)
        first = jax.random.rademacher(k_first, (n_boot, 1), dtype)
        flips = jax.random.bernoulli(k_flip, flip_prob, (n_boot, n - 1))
        signs = jnp.where(flips, -1.0, 1.0).astype(dtype)
        walk = jnp.concatenate([jnp.ones((n_boot, 1), dtype), jnp.cumprod(signs, axis=1)], axis=1)
        return first * walk
    raise ValueError(f"unknown bootstrap weights {weights!r}; expected 'rademacher' or 'markov'")


def ksd_test(
    x: Array,
    score: Array | Callable[[Array], Array],
    *,
    key: Array,
    alpha: float = 0.05,
    n_boot: int = 1000,
    bandwidth: float | Array | None = None,
    statistic: Statistic = "v",
    weights: Weights = "rademacher",
    flip_prob: float = 0.5,
) -> KSDTest:
    """Wild-bootstrap KSD test: reject when ``n KSD^2`` exceeds the bootstrap's ``1 - alpha``.

    The default V-statistic with i.i.d. Rademacher weights is kgof's ``KernelSteinTest``; the
    U-statistic drops the diagonal from both the statistic and every bootstrap replicate
    (``w_i^2 = 1`` so the diagonal is a constant ``tr H``). ``n_boot`` is static under jit.
    """
    n = x.shape[0]
    h = _resolve_bandwidth(x, bandwidth)
    hmat = stein_kernel_matrix(x, score, h)
    stat = n * _ksd_from_matrix(hmat, statistic)
    w = wild_bootstrap_weights(
        key, n_boot, n, weights=weights, flip_prob=flip_prob, dtype=hmat.dtype
    )
    quad = jnp.sum((w @ hmat) * w, axis=1)  # w^T H w per replicate
    if statistic == "v":
        boot = quad / n
    else:
        boot = (quad - jnp.trace(hmat)) / (n - 1)
    p_value = jnp.mean((boot >= stat).astype(hmat.dtype))
    return KSDTest(stat=stat, p_value=p_value, reject=p_value < alpha, bandwidth=h)


def linear_ksd_terms(
    x: Array, score: Array | Callable[[Array], Array], *, bandwidth: float | Array | None = None
) -> Array:
    """``u_q(x_{2i}, x_{2i+1})`` for the ``n // 2`` disjoint consecutive pairs (an odd last row
    is dropped). Their mean is the linear-time KSD^2 estimate."""
    s = _scores_like(score, x)
    m = x.shape[0] // 2
    h = _resolve_bandwidth(x, bandwidth)
    pair = jax.vmap(lambda a, b, sa, sb: stein_kernel(a, b, sa, sb, h))
    return pair(x[0 : 2 * m : 2], x[1 : 2 * m : 2], s[0 : 2 * m : 2], s[1 : 2 * m : 2])


def linear_ksd(
    x: Array, score: Array | Callable[[Array], Array], *, bandwidth: float | Array | None = None
) -> Array:
    """Linear-time unbiased estimate of KSD^2 from disjoint pairs."""
    return jnp.mean(linear_ksd_terms(x, score, bandwidth=bandwidth))


def linear_ksd_test(
    x: Array,
    score: Array | Callable[[Array], Array],
    *,
    alpha: float = 0.05,
    bandwidth: float | Array | None = None,
) -> KSDTest:
    """One-sided normal-approximation test on the linear-time KSD: ``z = sqrt(m) mean / std``."""
    h = _resolve_bandwidth(x, bandwidth)
    terms = linear_ksd_terms(x, score, bandwidth=h)
    m = terms.shape[0]
    z = jnp.sqrt(jnp.asarray(m, terms.dtype)) * jnp.mean(terms) / jnp.std(terms, ddof=1)
    p_value = jsp.ndtr(-z)
    return KSDTest(stat=z, p_value=p_value, reject=p_value < alpha, bandwidth=h)
