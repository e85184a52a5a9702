"""Estimators: pure functions over arrays and pytrees (divergence; REINFORCE/REBAR/RELAX/LAX)."""

from jaxebm.estimators.divergence import (
    batched_divergence,
    divergence,
    divergence_and_frobenius,
    exact_divergence,
    hutchinson_divergence,
    sample_probe,
)

__all__ = [
    "batched_divergence",
    "divergence",
    "divergence_and_frobenius",
    "exact_divergence",
    "hutchinson_divergence",
    "sample_probe",
]
