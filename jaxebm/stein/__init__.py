"""Stein building blocks: scores by autodiff, the Stein operator on a critic and the LSD
objectives, and kernel Stein discrepancies (quadratic/linear time) with their tests."""

from jaxebm.stein.ksd import (
    KSDTest,
    ksd,
    ksd_test,
    linear_ksd,
    linear_ksd_terms,
    linear_ksd_test,
    median_bandwidth,
    stein_kernel,
    stein_kernel_matrix,
    wild_bootstrap_weights,
)
from jaxebm.stein.operator import (
    SteinTerms,
    ZTest,
    batched_score_fn,
    critic_loss,
    critic_objective,
    energy_score_fn,
    power_critic_loss,
    power_objective,
    score_fn,
    stein_statistic,
    stein_z_test,
)

__all__ = [
    "KSDTest",
    "SteinTerms",
    "ZTest",
    "batched_score_fn",
    "critic_loss",
    "critic_objective",
    "energy_score_fn",
    "ksd",
    "ksd_test",
    "linear_ksd",
    "linear_ksd_terms",
    "linear_ksd_test",
    "median_bandwidth",
    "power_critic_loss",
    "power_objective",
    "score_fn",
    "stein_kernel",
    "stein_kernel_matrix",
    "stein_statistic",
    "stein_z_test",
    "wild_bootstrap_weights",
]
