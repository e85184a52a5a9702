"""Expected calibration error against hand-computed values and a loop-by-definition version."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxebm.eval.calibration import (
    calibrated_ece,
    expected_calibration_error,
    reliability_diagram,
    reliability_stats,
)


def test_hand_computed_example():
    # Confidences 0.9 (right), 0.9 (wrong), 0.7 (right), 0.62 (right); 15 bins of width 1/15:
    # 0.9 -> bin 13, 0.7 -> bin 10, 0.62 -> bin 9.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.62, 0.38]])
    labels = np.array([0, 1, 1, 0])
    # bin 13: |0.5 - 0.9| * 2/4 = 0.2; bin 10: |1 - 0.7| / 4 = 0.075; bin 9: |1 - 0.62| / 4 = 0.095
    assert expected_calibration_error(probs, labels) == pytest.approx(0.37, abs=1e-12)
    stats = reliability_stats(probs.max(axis=1), probs.argmax(axis=1) == labels)
    assert stats.counts.tolist() == [0] * 9 + [1, 1, 0, 0, 2, 0]
    assert stats.accuracy[13] == 0.5 and stats.confidence[13] == pytest.approx(0.9)
    assert np.isnan(stats.accuracy[0])


def test_three_class_example_and_bin_count():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.45, 0.35]])
    labels = np.array([1, 2, 1])
    # Confidences 0.5 (wrong), 0.8 (right), 0.45 (right).
    # 2 bins: [0, .5] holds 0.5 and 0.45: acc 1/2, conf 0.475 -> 0.025 * 2/3; (.5, 1] holds 0.8:
    # |1 - 0.8| / 3. Total 0.05/3 + 0.2/3 = 0.25/3.
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.25 / 3)
    # 15 bins: 0.45 -> bin 6, 0.5 -> bin 7, 0.8 -> bin 11 (0.8 * 15 = 12 is an edge: right-closed).
    expected = (0.5 + 0.55 + 0.2) / 3
    assert expected_calibration_error(probs, labels) == pytest.approx(expected)


@pytest.mark.parametrize(
    "conf,correct,ece",
    [
        (np.full(10, 0.8), np.arange(10) < 8, 0.0),  # 80% sure, 80% right
        (np.ones(5), np.ones(5, bool), 0.0),  # confidence exactly 1 lands in the last bin
        (np.ones(4), np.zeros(4, bool), 1.0),
        (np.zeros(3), np.zeros(3, bool), 0.0),  # confidence 0 joins the first bin
    ],
)
def test_edge_cases(conf, correct, ece):
    stats = reliability_stats(conf, correct)
    assert stats.ece == pytest.approx(ece)
    assert stats.counts.sum() == len(conf)


def loop_ece(conf, correct, n_bins):
    """ECE straight from its definition: bins ((m-1)/M, m/M], 0 in the first."""
    total = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        in_bin = [(c, a) for c, a in zip(conf, correct) if (lo < c <= hi) or (m == 0 and c == 0.0)]
        if in_bin:
            cs, accs = zip(*in_bin)
            total += len(in_bin) / len(conf) * abs(np.mean(accs) - np.mean(cs))
    return total


@pytest.mark.parametrize("n_bins,seed", [(15, 0), (10, 1), (1, 2), (30, 3)])
def test_matches_definition_on_random_predictions(n_bins, seed):
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.standard_normal((500, 10))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, size=500)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(
        loop_ece(conf, correct, n_bins), abs=1e-12
    )


def test_reliability_diagram_png(tmp_path):
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(5), size=200)
    labels = rng.integers(0, 5, size=200)
    path = tmp_path / "plots" / "reliability.png"
    ece = reliability_diagram(probs, labels, path)
    assert ece == pytest.approx(expected_calibration_error(probs, labels))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "conf,correct", [(np.array([1.2]), np.array([True])), (np.array([0.5, 0.4]), np.array([True]))]
)
def test_bad_inputs(conf, correct):
    with pytest.raises(ValueError):
        reliability_stats(conf, correct)


@pytest.mark.parametrize("n,c,n_bins", [(40, 0.9, 15), (200, 0.97, 15), (25, 0.5, 1)])
def test_calibrated_ece_matches_the_binomial_closed_form(n, c, n_bins):
    # n predictions at one confidence c fill one bin; the number right is Binomial(n, c), so the
    # expected ECE of a calibrated model is sum_k P(k) |k/n - c|, exactly.
    k = np.arange(n + 1)
    pmf = np.array([math.comb(n, i) * c**i * (1 - c) ** (n - i) for i in k])
    gap = np.abs(k / n - c)
    mean = float(np.sum(pmf * gap))
    sd = float(np.sqrt(np.sum(pmf * gap**2) - mean**2))
    draws = 4000
    floor = calibrated_ece(np.full(n, c), n_bins, draws=draws, seed=n)
    assert floor == pytest.approx(mean, abs=4 * sd / np.sqrt(draws))
    assert mean > 0.005  # a calibrated model's ECE is not 0 on a finite set


def test_calibrated_ece_is_zero_for_certain_predictions_and_adds_over_bins():
    assert calibrated_ece(np.ones(50)) == 0.0
    # two bins, each half the set: the floor is the mean of the one-bin floors, up to MC error
    conf = np.r_[np.full(100, 0.6), np.full(100, 0.95)]
    both = calibrated_ece(conf, draws=4000, seed=1)
    alone = [calibrated_ece(np.full(100, c), draws=4000, seed=2) for c in (0.6, 0.95)]
    assert both == pytest.approx(np.mean(alone), rel=0.05)
    with pytest.raises(ValueError):
        calibrated_ece(conf, draws=0)
