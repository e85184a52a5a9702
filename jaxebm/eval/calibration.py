r"""Expected calibration error (ECE) and reliability diagrams, in numpy.

For predictions with confidence :math:`c_i = \max_y p(y \mid x_i)` and correctness
:math:`a_i = [\arg\max_y p(y \mid x_i) = y_i]`, split :math:`[0, 1]` into :math:`M` equal-width
bins :math:`B_m = ((m-1)/M, m/M]` (the first also holds 0) and

.. math::

    \mathrm{ECE} = \sum_{m} \frac{|B_m|}{n}\,\bigl|\operatorname{acc}(B_m) - \operatorname{conf}(B_m)\bigr|,

with :math:`\operatorname{acc}` and :math:`\operatorname{conf}` the bin means of :math:`a_i` and
:math:`c_i` (Guo et al. 2017; JEM uses :math:`M = 15`). Empty bins contribute nothing. Ties of
the argmax go to the first class, as ``np.argmax`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityStats:
    """Per-bin statistics: ``edges (M + 1,)``, ``counts``, ``accuracy``, ``confidence`` ``(M,)``.

    ``accuracy`` and ``confidence`` are NaN in empty bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        n = self.counts.sum()
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.counts[filled] * gaps) / n)


def confidences_and_correct(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(max_y p(y|x), argmax == label)`` from class probabilities ``(n, K)`` and labels ``(n,)``."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"expected probs (n, K) and labels (n,), got {probs.shape} and {labels.shape}")
    return probs.max(axis=1), probs.argmax(axis=1) == labels


def reliability_stats(confidence, correct, n_bins: int = DEFAULT_BINS) -> ReliabilityStats:
    """Bins confidences into ``n_bins`` equal-width bins ``((m-1)/M, m/M]``."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != corr.shape or conf.size == 0:
        raise ValueError(f"confidence and correct must be non-empty and equal length, got {conf.shape}, {corr.shape}")
    if np.any(conf < 0.0) or np.any(conf > 1.0) or not np.all(np.isfinite(conf)):
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Index = number of interior edges strictly below c: right-closed bins, 0 joins the first.
    bins = np.searchsorted(edges[1:-1], conf, side="left")
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    acc_sum = np.bincount(bins, weights=corr, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, acc_sum / counts, np.nan)
        confidence_mean = np.where(counts > 0, conf_sum / counts, np.nan)
    return ReliabilityStats(edges=edges, counts=counts, accuracy=accuracy, confidence=confidence_mean)


def expected_calibration_error(probs, labels, n_bins: int = DEFAULT_BINS) -> float:
    """ECE (a fraction in [0, 1]) of class probabilities ``(n, K)`` against labels ``(n,)``."""
    conf, correct = confidences_and_correct(probs, labels)
    return reliability_stats(conf, correct, n_bins).ece


def calibrated_ece(confidence, n_bins: int = DEFAULT_BINS, *, draws: int = 1000,
                   seed: int = 0) -> float:
    r"""The ECE a perfectly calibrated classifier with these confidences shows by chance.

    Draws correctness :math:`a_i \sim \mathrm{Bernoulli}(c_i)` for the given confidences
    :math:`c_i` (so every bin's expected accuracy equals its confidence) ``draws`` times and
    averages the ECE. The binned ECE is biased upwards on a finite test set: each bin adds
    :math:`\mathbb{E}\,|\bar a - \bar c| > 0` even when calibration is exact. A model's measured
    ECE is only evidence of miscalibration where it exceeds this floor, which on a few hundred
    confident predictions is of the same order as the differences being compared.
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if not (isinstance(draws, int) and draws > 0):
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    rng = np.random.default_rng(seed)
    correct = rng.random((draws, conf.size)) < conf[None, :]
    return float(np.mean([reliability_stats(conf, c, n_bins).ece for c in correct]))


def classification_metrics(log_probs, labels, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """Accuracy, negative log-likelihood, ECE, the ECE's floor (``calibrated_ece``: what a
    perfectly calibrated model with these confidences shows by chance on this many examples)
    and mean confidence (above the accuracy: overconfident on average) of log p(y|x) ``(n, K)``
    against labels ``(n,)``."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    labels = np.asarray(labels)
    probs = np.exp(log_probs)
    confidence = probs.max(axis=1)
    return {
        "accuracy": float(np.mean(np.argmax(log_probs, axis=1) == labels)),
        "nll": float(-np.mean(np.take_along_axis(log_probs, labels[:, None], axis=1))),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "ece_calibrated": calibrated_ece(confidence, n_bins),
        "mean_confidence": float(np.mean(confidence)),
    }


def reliability_diagram(
    probs,
    labels,
    path: str | Path,
    *,
    n_bins: int = DEFAULT_BINS,
    title: str | None = None,
) -> float:
    """Writes a reliability diagram PNG (accuracy per confidence bin against the diagonal).

    Returns the ECE shown in the figure. Draws on a bare ``Figure`` with the Agg canvas, so no
    display is needed and pyplot's global backend is left alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conf, correct = confidences_and_correct(probs, labels)
    stats = reliability_stats(conf, correct, n_bins)
    ece = stats.ece
    centers = 0.5 * (stats.edges[:-1] + stats.edges[1:])
    width = 1.0 / n_bins
    acc = np.nan_to_num(stats.accuracy, nan=0.0)
    gap_top = np.where(stats.counts > 0, stats.confidence, 0.0)

    fig = Figure(figsize=(4.5, 5.5))
    FigureCanvasAgg(fig)
    ax, ax_hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centers, acc, width=width, edgecolor="black", color="tab:blue", label="accuracy")
    ax.bar(
        centers,
        gap_top - acc,
        bottom=acc,
        width=width,
        edgecolor="tab:red",
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title if title is not None else f"ECE = {100 * ece:.2f}%")
    ax.legend(loc="upper left")
    ax_hist.bar(centers, stats.counts / stats.counts.sum(), width=width, edgecolor="black", color="gray")
    ax_hist.set_xlabel("confidence")
    ax_hist.set_ylabel("fraction")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return ece
