"""jaxebm: energy-based models, continuous normalizing flows and gradient estimators in JAX."""

__version__ = "0.1.0"
