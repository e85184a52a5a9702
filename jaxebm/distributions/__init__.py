"""Reference densities with known scores (and, where possible, normalizers and samplers):
the Gaussian-Bernoulli RBM and linear ICA with logistic sources, used by the LSD experiments.

Use them as namespaces: ``from jaxebm.distributions import rbm, ica``; ``rbm.score(params, x)``.
"""

from jaxebm.distributions import ica, rbm

__all__ = ["ica", "rbm"]
