r"""The Stein operator applied to a vector-valued critic, and the learned-Stein-discrepancy objectives.

For a density :math:`q` known up to its normalizer, the score
:math:`s_q(x) = \nabla_x \log \tilde q(x)` does not depend on the normalizer. For a critic
:math:`f: \mathbb{R}^D \to \mathbb{R}^D` the Langevin-Stein operator gives the per-sample statistic

.. math::  t_q(x) = s_q(x)^\top f(x) + \operatorname{tr} \frac{\partial f}{\partial x}(x),

and Stein's identity says :math:`\mathbb{E}_p[t_p(x)] = 0` for every smooth :math:`f` that
decays fast enough. Hence :math:`\mathbb{E}_p[t_q] = \mathbb{E}_p[(s_q - s_p)^\top f]`, which
is zero for all :math:`f` only when :math:`q = p`. The learned Stein discrepancy (Grathwohl et
al., 2020) maximises over a neural critic

.. math::  \mathbb{E}_p[t_q(x)] - \lambda\,\mathbb{E}_p[\|f(x)\|^2],

whose maximiser is :math:`f^* = (s_q - s_p)/(2\lambda)` with value
:math:`\mathbb{E}_p\|s_q - s_p\|^2 / (4\lambda)` (a scaled Fisher divergence). The power-style
variant maximises :math:`\operatorname{mean}(t)/\operatorname{std}(t)` instead, the quantity
that drives the one-sided z-test :math:`\sqrt{n}\,\bar t / \hat\sigma_t > \Phi^{-1}(1-\alpha)`.

The trace is exact (``jacfwd``, D forward products) or Hutchinson's
:math:`\varepsilon^\top (\partial f/\partial x) \varepsilon` with one probe per sample; both come
from :mod:`jaxebm.estimators.divergence`.

Shapes: ``x`` is a batch ``(n, *event)``; the critic is a *per-sample* field mapping an
``event``-shaped array to one of the same shape; scores are given as an array shaped like ``x``
or as a per-sample callable.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp

from jaxebm.estimators.divergence import batched_divergence, sample_probe

Array = jax.Array
Field = Callable[[Array], Array]
Trace = Literal["exact", "gaussian", "rademacher"]


# --------------------------------------------------------------------------------------------
# Scores by autodiff
# --------------------------------------------------------------------------------------------


def score_fn(log_prob: Callable[..., Array], *, argnum: int = 0) -> Callable[..., Array]:
    """Per-sample score ``x -> grad_x log_prob(x)`` of a per-sample scalar log density.

    ``log_prob`` may take further arguments (parameters); ``argnum`` says which argument is
    ``x`` (use ``argnum=1`` for the project's ``log_prob(params, x)``). The normalizer drops out,
    so an unnormalized log density is enough.
    """
    return jax.grad(log_prob, argnums=argnum)


def batched_score_fn(log_prob: Callable[..., Array], *, argnum: int = 0) -> Callable[..., Array]:
    """``score_fn`` vmapped over the leading batch axis of argument ``argnum`` only."""
    grad = jax.grad(log_prob, argnums=argnum)

    def batched(*args):
        in_axes = tuple(0 if i == argnum else None for i in range(len(args)))
        return jax.vmap(grad, in_axes=in_axes)(*args)

    return batched


def energy_score_fn(energy: Callable[..., Array], *, argnum: int = 0) -> Callable[..., Array]:
    """Per-sample score of ``q ∝ exp(-energy)``: ``x -> -grad_x energy(x)``."""
    grad = jax.grad(energy, argnums=argnum)

    def score(*args):
        return -grad(*args)

    return score


# --------------------------------------------------------------------------------------------
# The Stein statistic of a critic
# --------------------------------------------------------------------------------------------


class SteinTerms(NamedTuple):
    """Per-sample Stein statistic ``s_q^T f + tr(df/dx)`` and squared critic norm ``|f|^2``."""

    stat: Array  # (n,)
    sq_norm: Array  # (n,)


def _scores_like(score: Array | Field, x: Array) -> Array:
    if callable(score):
        return jax.vmap(score)(x)
    if score.shape != x.shape:
        raise ValueError(f"scores have shape {score.shape} but x has shape {x.shape}")
    return score


def stein_statistic(
    critic: Field,
    x: Array,
    score: Array | Field,
    *,
    trace: Trace = "exact",
    eps: Array | None = None,
    key: Array | None = None,
) -> SteinTerms:
    """Per-sample Stein statistic of the per-sample critic ``f`` at the batch ``x``.

    Args:
      critic: per-sample field ``f: event -> event``.
      x: batch ``(n, *event)``.
      score: the model's score ``s_q`` at ``x`` (array shaped like ``x``), or a per-sample
        callable ``x_i -> s_q(x_i)`` (vmapped here).
      trace: ``'exact'`` (training-free evaluation, D forward products per sample) or the
        Hutchinson probe kind ``'gaussian'``/``'rademacher'`` (one product per sample).
      eps: Hutchinson probes shaped like ``x``; drawn from ``key`` when not given.
      key: PRNG key for the probes (only used for a Hutchinson trace without ``eps``).
    """
    sq = _scores_like(score, x)
    if trace != "exact" and eps is None:
        if key is None:
            raise ValueError(f"stein_statistic(trace={trace!r}) needs a probe eps or a key")
        eps = sample_probe(key, x.shape, trace, dtype=x.dtype)
    fx, div = batched_divergence(critic, x, method=trace, eps=eps)
    if fx.shape != x.shape:
        raise ValueError(f"the critic must map x to its own shape; got {fx.shape} for {x.shape}")
    event_axes = tuple(range(1, x.ndim))
    stat = jnp.sum(sq * fx, axis=event_axes) + div
    sq_norm = jnp.sum(fx * fx, axis=event_axes)
    return SteinTerms(stat=stat, sq_norm=sq_norm)


# --------------------------------------------------------------------------------------------
# Critic objectives (maximised) and their losses (minimised)
# --------------------------------------------------------------------------------------------


def critic_objective(terms: SteinTerms, l2: float | Array) -> Array:
    """``mean(stat) - l2 * mean(|f|^2)``, the LSD critic's objective (to maximise)."""
    l2 = jnp.asarray(l2, dtype=terms.stat.dtype)
    return jnp.mean(terms.stat) - l2 * jnp.mean(terms.sq_norm)


def critic_loss(terms: SteinTerms, l2: float | Array) -> Array:
    """``-mean(stat) + l2 * mean(|f|^2)``: the critic objective as a loss to minimise."""
    return -critic_objective(terms, l2)


def power_objective(
    terms: SteinTerms, l2: float | Array = 0.0, *, num_const: float = 1e-6
) -> Array:
    """``mean(stat) / (std(stat) + num_const) - l2 * mean(|f|^2)`` (to maximise).

    ``std`` is the unbiased sample standard deviation (ddof=1), as in the reference code; the
    ratio is what the z-test statistic grows with, so maximising it maximises test power.
    """
    l2 = jnp.asarray(l2, dtype=terms.stat.dtype)
    ratio = jnp.mean(terms.stat) / (jnp.std(terms.stat, ddof=1) + num_const)
    return ratio - l2 * jnp.mean(terms.sq_norm)


def power_critic_loss(
    terms: SteinTerms, l2: float | Array = 0.0, *, num_const: float = 1e-6
) -> Array:
    """``-mean/std + l2 * mean(|f|^2)``: the power-style critic objective as a loss."""
    return -power_objective(terms, l2, num_const=num_const)


class ZTest(NamedTuple):
    """One-sided z-test of H0: q = p on a held-out sample of Stein statistics."""

    z: Array  # sqrt(n) * mean / std
    threshold: Array  # Phi^{-1}(1 - alpha)
    p_value: Array  # 1 - Phi(z)
    reject: Array  # z > threshold


def stein_z_test(stat: Array, *, alpha: float = 0.05, num_const: float = 1e-6) -> ZTest:
    """The LSD goodness-of-fit test: ``sqrt(n) mean(stat) / std(stat)`` against N(0, 1).

    Under H0 the statistic has mean zero for any critic fixed independently of ``stat``'s
    sample (train the critic on a separate split), so by the CLT the z-score is asymptotically
    standard normal; large positive values mean the critic found a direction where q misfits.
    """
    n = stat.shape[0]
    z = jnp.sqrt(jnp.asarray(n, stat.dtype)) * jnp.mean(stat) / (jnp.std(stat, ddof=1) + num_const)
    threshold = jsp.ndtri(jnp.asarray(1.0 - alpha, stat.dtype))
    return ZTest(z=z, threshold=threshold, p_value=jsp.ndtr(-z), reject=z > threshold)
