r"""Out-of-distribution detection: AUROC (numpy) and JEM's three scores (JAX).

AUROC of a score that should be higher in-distribution (positive class) than out-of-distribution:

.. math::

    \mathrm{AUROC} = P(s_{\mathrm{in}} > s_{\mathrm{out}}) + \tfrac12 P(s_{\mathrm{in}} = s_{\mathrm{out}})
    = \frac{R_{\mathrm{in}} - n_{\mathrm{in}}(n_{\mathrm{in}} + 1)/2}{n_{\mathrm{in}}\, n_{\mathrm{out}}},

the Mann-Whitney statistic, where :math:`R_{\mathrm{in}}` is the sum of the in-distribution
scores' ranks in the pooled sample with tied scores given their average rank. This equals the
area under the ROC curve with ties traced as diagonal segments (as scikit-learn does).

JEM's scores for a classifier with logits :math:`f(x)` (all: higher = more in-distribution):

* ``log_px``: :math:`\log \tilde p(x) = \operatorname{logsumexp}_y f(x)[y]`;
* ``max_py``: :math:`\max_y p(y \mid x)`;
* ``neg_grad_norm``: :math:`-\lVert \nabla_x \log \tilde p(x) \rVert_2` ("approximate mass":
  points in flat, high-mass regions have small input gradients).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxebm.energies import log_px_unnorm, p_y_given_x, value_and_grad_log_px

Array = jax.Array


def average_ranks(values) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing the mean of the ranks they span."""
    values = np.asarray(values).reshape(-1)
    n = values.size
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new_group)  # 0-based first position of each tie group
    ends = np.append(starts[1:], n)  # one past the last position
    group_rank = 0.5 * (starts + 1 + ends)  # mean of 1-based ranks start+1 .. end
    group_of = np.cumsum(new_group) - 1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = group_rank[group_of]
    return ranks


def ood_auroc(scores_in, scores_out) -> float:
    """AUROC with in-distribution as the positive class and higher score = in-distribution."""
    s_in = np.asarray(scores_in, dtype=np.float64).reshape(-1)
    s_out = np.asarray(scores_out, dtype=np.float64).reshape(-1)
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError("AUROC needs at least one in-distribution and one out-of-distribution score")
    if not (np.all(np.isfinite(s_in)) and np.all(np.isfinite(s_out))):
        raise ValueError("AUROC scores must be finite (got NaN or inf)")
    ranks = average_ranks(np.concatenate([s_in, s_out]))
    n_in, n_out = s_in.size, s_out.size
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(u / (n_in * n_out))


def roc_auc(labels, scores) -> float:
    """``roc_auc_score(labels, scores)`` for binary labels (1 = positive)."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in length: {labels.shape} vs {scores.shape}")
    positive = labels.astype(bool)
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError("labels must be 0 or 1")
    return ood_auroc(scores[positive], scores[~positive])


def score_log_px(logits: Array) -> Array:
    """``logsumexp_y f(x)[y]`` per sample."""
    return log_px_unnorm(logits)


def score_max_py(logits: Array) -> Array:
    """``max_y p(y | x)`` per sample."""
    return jnp.max(p_y_given_x(logits), axis=-1)


def score_neg_grad_norm(apply_fn: Callable[[Array], Array], x: Array) -> Array:
    """``-||grad_x logsumexp_y f(x)[y]||_2`` per sample (the norm over all non-batch axes)."""
    _, grads = value_and_grad_log_px(apply_fn, x)
    flat = grads.reshape((grads.shape[0], -1))
    return -jnp.sqrt(jnp.sum(flat * flat, axis=-1))


def jem_ood_scores(apply_fn: Callable[[Array], Array], x: Array) -> dict[str, Array]:
    """All three JEM scores of a batch from one forward and one backward pass."""

    def total(z: Array) -> tuple[Array, Array]:
        logits = apply_fn(z)
        return jnp.sum(log_px_unnorm(logits)), logits

    grads, logits = jax.grad(total, has_aux=True)(x)
    flat = grads.reshape((grads.shape[0], -1))
    return {
        "log_px": score_log_px(logits),
        "max_py": score_max_py(logits),
        "neg_grad_norm": -jnp.sqrt(jnp.sum(flat * flat, axis=-1)),
    }


SCORES = ("log_px", "max_py", "neg_grad_norm")
