"""Estimators: pure functions over arrays and pytrees.

* divergence: exact and Hutchinson traces of a Jacobian (FFJORD, LSD).
* black-box gradients of E_{p(b|theta)}[f(b)]: REINFORCE, REBAR, RELAX and LAX, with the
  relaxations they need (RELAX paper).
"""

from jaxebm.estimators.black_box import (
    Reparameterized,
    gaussian,
    lax,
    lax_with_cv_grad,
    rebar,
    rebar_control_variate,
    rebar_with_cv_grad,
    reinforce,
    relax,
    relax_with_cv_grad,
    with_variance_grad,
)
from jaxebm.estimators.divergence import (
    batched_divergence,
    divergence,
    divergence_and_frobenius,
    exact_divergence,
    hutchinson_divergence,
    sample_probe,
)
from jaxebm.estimators.relaxations import Relaxation, bernoulli, categorical

__all__ = [
    "Relaxation",
    "Reparameterized",
    "batched_divergence",
    "bernoulli",
    "categorical",
    "divergence",
    "divergence_and_frobenius",
    "exact_divergence",
    "gaussian",
    "hutchinson_divergence",
    "lax",
    "lax_with_cv_grad",
    "rebar",
    "rebar_control_variate",
    "rebar_with_cv_grad",
    "reinforce",
    "relax",
    "relax_with_cv_grad",
    "sample_probe",
    "with_variance_grad",
]
