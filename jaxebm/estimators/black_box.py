r"""Black-box gradient estimators: REINFORCE, REBAR, RELAX and LAX (Grathwohl et al., 2018).

Each estimates :math:`g \approx \nabla_\theta \mathbb{E}_{p(b|\theta)}[f(b)]` for an ``f`` that
is only evaluated, never differentiated (REBAR excepted: its control variate evaluates ``f`` on
relaxed inputs). With :math:`b = H(z)`, :math:`z \sim p(z|\theta)`,
:math:`\tilde z \sim p(z|b,\theta)` (see :mod:`jaxebm.estimators.relaxations`):

* REINFORCE: :math:`g = [f(b) - c]\,\nabla_\theta \log p(b|\theta)` with a constant baseline c.
* RELAX: :math:`g = [f(b) - c_\phi(\tilde z)]\,\nabla_\theta \log p(b|\theta)
  + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z)`, unbiased for any :math:`c_\phi`
  (the two reparameterized terms correct, in expectation, for the baseline's dependence on b).
* REBAR: RELAX with :math:`c_{\eta,\lambda}(z) = \eta\, f(\sigma_\lambda(z))`.
* LAX (continuous, reparameterizable :math:`x = T(\theta, \varepsilon)`):
  :math:`g = [f(x) - c_\phi(x)]\,\nabla_\theta \log p(x|\theta) + \nabla_\theta c_\phi(T(\theta,\varepsilon))`.

The control variate is trained to minimise the estimator's variance. Since :math:`\mathbb{E}[g]`
does not depend on :math:`\phi`, :math:`\nabla_\phi \operatorname{tr}\operatorname{Var}[g] =
\nabla_\phi \mathbb{E}\|g\|^2`, and :math:`\nabla_\phi \|g\|^2` from one sample is an unbiased
estimate of it. The ``*_with_cv_grad`` functions return ``(g, d||g||^2/d phi)`` from one forward
and one backward pass, so one jitted step can do ``theta -= a1 g`` and ``phi -= a2 dphi``. The
variance gradient is *not* fed into the theta update (the PyTorch toy does that by summing the
two losses; the paper and its TF code do not).

Conventions. ``logits`` may have any shape; each element (each last-axis row, categorical) is an
independent variable, and ``f`` maps one joint sample ``b`` (a float array of the logits' shape)
to a scalar. ``num_samples > 1`` averages that many independent estimates (and the variance
gradient is then that of the average). To estimate a batch of independent problems (one per
data point), ``jax.vmap`` a ``num_samples=1`` call. ``control_variate(cv_params, z)`` takes the
continuous ``z`` (logit scale; apply ``soft`` inside if wanted) and returns a scalar. With
``has_aux=True``, ``f`` returns ``(value, aux)`` and the aux at the hard sample comes back beside
``g`` (stacked over samples), like ``jax.value_and_grad``'s ``has_aux``. With the same ``key``,
every estimator here draws the same ``b``, so REBAR with ``eta = 0`` and RELAX with ``c = 0``
return exactly REINFORCE's sample.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxebm.estimators.relaxations import Relaxation, bernoulli, uniform_open

Array = jax.Array
PyTree = Any
ControlVariate = Callable[[PyTree, Array], Array]  # (cv_params, z) -> scalar

sg = jax.lax.stop_gradient


def _value_and_aux(f: Callable, b: Array, has_aux: bool, dtype) -> tuple[Array, Any]:
    out = f(b)
    value, aux = out if has_aux else (out, None)
    return jnp.asarray(value, dtype).reshape(()), aux


def _uniforms(key: Array, logits: Array) -> tuple[Array, Array]:
    """u for z and v for an independent z~; every estimator splits the key the same way."""
    key_u, key_v = jax.random.split(key)
    return uniform_open(key_u, logits.shape, logits.dtype), uniform_open(key_v, logits.shape, logits.dtype)


def _average(single: Callable[[Array], tuple], key: Array, num_samples: int):
    """One estimate from ``key`` itself, or the mean of ``num_samples`` (aux stacked)."""
    if num_samples == 1:
        return single(key)
    grads, aux = jax.vmap(single)(jax.random.split(key, num_samples))
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), grads), aux


def _finish(result: tuple, has_aux: bool):
    return result if has_aux else result[0]


# ----------------------------------------------------------------------------------- REINFORCE


def reinforce(
    f: Callable,
    logits: Array,
    *,
    key: Array,
    baseline: Array | float = 0.0,
    dist: Relaxation = bernoulli,
    num_samples: int = 1,
    has_aux: bool = False,
):
    """REINFORCE / score function: g = [f(b) - baseline] d log p(b|theta) / d logits."""

    def single(k):
        u, _ = _uniforms(k, logits)
        b = dist.hard(dist.reparameterize(logits, u))
        fb, aux = _value_and_aux(f, b, has_aux, logits.dtype)
        return (fb - jnp.asarray(baseline, logits.dtype)) * dist.score(logits, b), aux

    return _finish(_average(single, key, num_samples), has_aux)


# --------------------------------------------------------------------------------------- RELAX


def relax(
    f: Callable,
    control_variate: ControlVariate,
    cv_params: PyTree,
    logits: Array,
    *,
    key: Array,
    dist: Relaxation = bernoulli,
    shared_noise: bool = True,
    num_samples: int = 1,
    has_aux: bool = False,
):
    """RELAX: [f(b) - c(z~)] d log p(b)/d theta + d c(z)/d theta - d c(z~)/d theta.

    ``shared_noise=True`` draws z~ from the noise of z (as the papers' code does: z~ equals z in
    value); ``False`` draws it with fresh noise. Both are unbiased.
    """

    def single(k):
        u, v = _uniforms(k, logits)
        b = dist.hard(dist.reparameterize(logits, u))
        fb, aux = _value_and_aux(f, b, has_aux, logits.dtype)

        def reparameterized(lg):
            z = dist.reparameterize(lg, u)
            if shared_noise:
                z_tilde = dist.conditional_shared(lg, b, z)
            else:
                z_tilde = dist.conditional(lg, b, v)
            c_z = jnp.asarray(control_variate(cv_params, z), lg.dtype).reshape(())
            c_tilde = jnp.asarray(control_variate(cv_params, z_tilde), lg.dtype).reshape(())
            return c_z - c_tilde, c_tilde

        # Differentiating only w.r.t. the logits: c(z~)'s value stays a function of cv_params,
        # so an outer gradient w.r.t. phi sees every term of g.
        (_, c_tilde), d_c = jax.value_and_grad(reparameterized, has_aux=True)(logits)
        return (fb - c_tilde) * dist.score(logits, b) + d_c, aux

    return _finish(_average(single, key, num_samples), has_aux)


def rebar_control_variate(f: Callable, dist: Relaxation = bernoulli, has_aux: bool = False) -> ControlVariate:
    """REBAR's control variate c_{eta,lambda}(z) = eta f(sigma_lambda(z)), params (eta, log lambda)."""

    def control_variate(params, z):
        eta, log_temperature = params
        value, _ = _value_and_aux(f, dist.soft(z, jnp.exp(log_temperature)), has_aux, z.dtype)
        return eta * value

    return control_variate


def rebar(
    f: Callable,
    logits: Array,
    eta: Array | float,
    log_temperature: Array | float,
    *,
    key: Array,
    dist: Relaxation = bernoulli,
    shared_noise: bool = True,
    num_samples: int = 1,
    has_aux: bool = False,
):
    """REBAR: RELAX with c(z) = eta f(sigma_lambda(z)); ``f`` must accept relaxed inputs and be
    continuous in them (a step in f(sigma(z)) would bias the reparameterized terms)."""
    params = (jnp.asarray(eta, logits.dtype), jnp.asarray(log_temperature, logits.dtype))
    return relax(
        f,
        rebar_control_variate(f, dist, has_aux),
        params,
        logits,
        key=key,
        dist=dist,
        shared_noise=shared_noise,
        num_samples=num_samples,
        has_aux=has_aux,
    )


# ----------------------------------------------------------------------------------------- LAX


class Reparameterized(NamedTuple):
    """A continuous family x = T(params, eps) with a tractable log-density."""

    name: str
    noise: Callable[[Array, PyTree], Array]  # (key, params) -> eps
    transform: Callable[[PyTree, Array], Array]  # (params, eps) -> x
    log_prob: Callable[[PyTree, Array], Array]  # (params, x) -> scalar (summed)


def _gaussian_noise(key: Array, params: tuple[Array, Array]) -> Array:
    mean, _ = params
    return jax.random.normal(key, mean.shape, mean.dtype)


def _gaussian_transform(params: tuple[Array, Array], eps: Array) -> Array:
    mean, log_std = params
    return mean + jnp.exp(log_std) * eps


def _gaussian_log_prob(params: tuple[Array, Array], x: Array) -> Array:
    mean, log_std = params
    standard = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * standard**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi).astype(x.dtype))


gaussian = Reparameterized(
    name="gaussian",
    noise=_gaussian_noise,
    transform=_gaussian_transform,
    log_prob=_gaussian_log_prob,
)
"""Diagonal Gaussian with params ``(mean, log_std)`` of any (equal) shapes."""


def lax(
    f: Callable,
    control_variate: ControlVariate,
    cv_params: PyTree,
    params: PyTree,
    *,
    key: Array,
    dist: Reparameterized = gaussian,
    num_samples: int = 1,
    has_aux: bool = False,
):
    """LAX: [f(x) - c(x)] d log p(x|theta)/d theta + d c(T(theta, eps))/d theta.

    Returns a pytree like ``params`` (for the Gaussian: ``(g_mean, g_log_std)``).
    """

    def single(k):
        eps = dist.noise(k, params)
        x = sg(dist.transform(params, eps))
        dtype = x.dtype
        fx, aux = _value_and_aux(f, x, has_aux, dtype)
        score = jax.grad(dist.log_prob)(params, x)

        def reparameterized(p):
            x_p = dist.transform(p, eps)
            c_x = jnp.asarray(control_variate(cv_params, x_p), dtype).reshape(())
            return c_x, c_x

        (_, c_x), d_c = jax.value_and_grad(reparameterized, has_aux=True)(params)
        weight = fx - c_x
        return jax.tree.map(lambda s, d: weight * s + d, score, d_c), aux

    return _finish(_average(single, key, num_samples), has_aux)


# ------------------------------------------------------------------ control-variate gradients


def with_variance_grad(estimate: Callable[[PyTree], Any], cv_params: PyTree, *, has_aux: bool = False):
    """Returns ``(g, d ||g||^2 / d cv_params)`` for ``g = estimate(cv_params)`` (any pytree).

    ``||g||^2`` sums the squares of every leaf, so its expected gradient is that of the trace of
    g's covariance. With ``has_aux``, ``estimate`` returns ``(g, aux)`` and this returns
    ``((g, aux), dphi)``. Compose freely: e.g. ``estimate = lambda phi: vjp_encoder(relax(...))``
    to minimise the variance of the gradient w.r.t. a network's weights instead of its logits.
    """
    if has_aux:
        g, pullback, aux = jax.vjp(estimate, cv_params, has_aux=True)
    else:
        g, pullback = jax.vjp(estimate, cv_params)
    (d_phi,) = pullback(jax.tree.map(lambda x: 2.0 * x, g))
    return ((g, aux) if has_aux else g), d_phi


def relax_with_cv_grad(f, control_variate, cv_params, logits, *, key, **kwargs):
    """RELAX's estimate and the single-sample variance gradient: ``(g, d||g||^2/d phi)``."""
    has_aux = kwargs.get("has_aux", False)
    return with_variance_grad(
        lambda phi: relax(f, control_variate, phi, logits, key=key, **kwargs), cv_params, has_aux=has_aux
    )


def rebar_with_cv_grad(f, logits, eta, log_temperature, *, key, **kwargs):
    """REBAR's estimate and ``(d||g||^2/d eta, d||g||^2/d log_temperature)``."""
    has_aux = kwargs.get("has_aux", False)
    params = (jnp.asarray(eta, logits.dtype), jnp.asarray(log_temperature, logits.dtype))
    return with_variance_grad(
        lambda p: rebar(f, logits, p[0], p[1], key=key, **kwargs), params, has_aux=has_aux
    )


def lax_with_cv_grad(f, control_variate, cv_params, params, *, key, **kwargs):
    """LAX's estimate and the single-sample variance gradient: ``(g, d||g||^2/d phi)``."""
    has_aux = kwargs.get("has_aux", False)
    return with_variance_grad(
        lambda phi: lax(f, control_variate, phi, params, key=key, **kwargs), cv_params, has_aux=has_aux
    )
