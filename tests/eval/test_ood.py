"""AUROC against scikit-learn (ties included) and JEM's OOD scores against closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from jaxebm.eval.ood import (
    average_ranks,
    jem_ood_scores,
    ood_auroc,
    roc_auc,
    score_log_px,
    score_max_py,
    score_neg_grad_norm,
)


def score_sets(kind: str, rng: np.random.Generator):
    if kind == "continuous":
        return rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 200)
    if kind == "heavy_ties":
        return rng.integers(0, 4, 250).astype(float), rng.integers(0, 3, 170).astype(float)
    if kind == "all_equal":
        return np.zeros(7), np.zeros(5)
    if kind == "separated":
        return rng.uniform(2, 3, 40), rng.uniform(0, 1, 60)
    if kind == "reversed":
        return rng.uniform(0, 1, 40), rng.uniform(2, 3, 60)
    if kind == "tiny_unbalanced":
        return np.array([0.3]), np.array([0.1, 0.3, 0.5, 0.3])
    raise ValueError(kind)


KINDS = ["continuous", "heavy_ties", "all_equal", "separated", "reversed", "tiny_unbalanced"]


@pytest.mark.parametrize("kind", KINDS)
def test_auroc_matches_sklearn(kind):
    s_in, s_out = score_sets(kind, np.random.default_rng(KINDS.index(kind)))
    labels = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    scores = np.r_[s_in, s_out]
    expected = roc_auc_score(labels, scores)
    assert ood_auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)
    # Shuffled order, via the labels interface.
    perm = np.random.default_rng(9).permutation(len(labels))
    assert roc_auc(labels[perm], scores[perm]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kind,value", [("all_equal", 0.5), ("separated", 1.0), ("reversed", 0.0)])
def test_auroc_known_values(kind, value):
    s_in, s_out = score_sets(kind, np.random.default_rng(0))
    assert ood_auroc(s_in, s_out) == value


def test_auroc_by_pair_counting_with_ties():
    s_in, s_out = np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 0.0, 2.0])
    wins = sum((a > b) + 0.5 * (a == b) for a in s_in for b in s_out)
    assert ood_auroc(s_in, s_out) == pytest.approx(wins / 12)


@pytest.mark.parametrize("seed", [0, 1])
def test_average_ranks_match_scipy(seed):
    v = np.random.default_rng(seed).integers(0, 6, 40).astype(float)
    np.testing.assert_array_equal(average_ranks(v), rankdata(v, method="average"))


@pytest.mark.parametrize("bad", [(np.array([]), np.array([1.0])), (np.array([np.nan]), np.array([1.0]))])
def test_auroc_rejects_empty_or_nan(bad):
    with pytest.raises(ValueError):
        ood_auroc(*bad)


def test_jem_scores_on_a_linear_classifier():
    """f(x) = W x + b: log p~ = LSE(f), max p(y|x) = max softmax, grad log p~ = W^T softmax(f)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 6))
    b = rng.standard_normal(4)
    x = rng.standard_normal((8, 6))
    apply = lambda z: z @ jnp.asarray(w.T, jnp.float32) + jnp.asarray(b, jnp.float32)[None, :]
    logits = x @ w.T + b
    lse = np.log(np.exp(logits).sum(axis=1))
    softmax = np.exp(logits - lse[:, None])
    grad_norm = np.linalg.norm(softmax @ w, axis=1)

    @jax.jit
    def all_scores(z):
        singles = {
            "log_px": score_log_px(apply(z)),
            "max_py": score_max_py(apply(z)),
            "neg_grad_norm": score_neg_grad_norm(apply, z),
        }
        return jem_ood_scores(apply, z), singles

    combined, singles = all_scores(jnp.asarray(x, jnp.float32))
    # The combined function and the single-score functions both match the closed forms.
    for scores in (combined, singles):
        np.testing.assert_allclose(np.asarray(scores["log_px"]), lse, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(scores["max_py"]), softmax.max(axis=1), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(scores["neg_grad_norm"]), -grad_norm, rtol=1e-5)
