r"""Continuous relaxations of Bernoulli and categorical variables, as REBAR and RELAX use them.

Every discrete variable ``b`` is written as a hard threshold of a continuous one, ``b = H(z)``
with ``z ~ p(z | theta)`` reparameterized by uniform noise, and ``z~ ~ p(z | b, theta)`` is the
same variable conditioned on the outcome. Parameters are logits of any shape; each element (each
row of the last axis, for the categorical) is an independent variable. ``b`` is always a float
array of the logits' shape (0/1 for Bernoulli, one-hot rows for the categorical), so one ``f``
can take hard samples and their relaxations ``sigma_lambda(z)`` alike.

**Bernoulli** with logit :math:`\theta` and :math:`p = \sigma(\theta)`:

* :math:`z = \theta + \log u - \log(1-u)`, :math:`u \sim U(0,1)` (logistic at :math:`\theta`);
  :math:`b = H(z) = 1[z > 0] \sim \mathrm{Bernoulli}(p)`.
* Conditional (paper): :math:`\tilde z = \theta + \operatorname{logit} v'` with
  :math:`v' = v(1-p)` if :math:`b=0`, :math:`v' = 1 - p + vp` if :math:`b=1`, :math:`v\sim U(0,1)`.
  With :math:`s = 2b-1` this simplifies (algebra, no approximation) to the stable form
  :math:`\tilde z = s\,\operatorname{softplus}(s \operatorname{logit} v + \operatorname{softplus}(s\theta))`.
* Shared noise (the papers' code, ``v_from_u`` with ``force_same``): ``v`` is the one value that
  makes :math:`\tilde z = z`, held fixed (stop-gradient) while :math:`\theta` moves. Then
  :math:`\tilde z` equals :math:`z` numerically and :math:`d\tilde z/d\theta` is the conditional
  reparameterization's derivative (for the record, :math:`p_b (1 - e^{-|z|})`). This is a valid
  sample of :math:`p(z|b,\theta)`: given :math:`b`, that ``v`` is uniform and independent of
  ``b``.
* :math:`\sigma_\lambda(z) = \sigma(z/\lambda)`.

**Categorical** with logits :math:`\ell` and :math:`\log\theta = \operatorname{log\_softmax}\ell`:

* :math:`z_i = \log\theta_i - \log(-\log u_i)` (Gumbel), :math:`b = \operatorname{onehot}(\arg\max z)`.
* Conditional: :math:`\tilde z_b = -\log(-\log v_b)`,
  :math:`\tilde z_i = -\log(-\log v_i/\theta_i - \log v_b)` for :math:`i \ne b`.
* Shared noise: by the Gumbel-max construction :math:`z_b = \max_i z_i` is Gumbel(0) and
  independent of :math:`b`, and :math:`e^{-z_i} = e^{-z_b} + E_i/\theta_i` with
  :math:`E_i = -\log v_i \sim \mathrm{Exp}(1)`; so :math:`-\log v_b = e^{-z_b}` and
  :math:`E_i = \theta_i (e^{-z_i} - e^{-z_b})` are the (stop-gradient) noise that reproduces
  :math:`z`.
* :math:`\sigma_\lambda(z) = \operatorname{softmax}(z/\lambda)`.

In both shared-noise forms the value returned is exactly ``z`` (``z + (y - y)`` with the
gradient carried by ``y``), so ``H(z~) = b`` holds bit for bit; the independent-noise forms are
clamped a hair inside their half-space / cell so that it holds there too.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

sg = jax.lax.stop_gradient


def uniform_open(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """U(0, 1) noise that never hits 0 (the draw lies in [tiny, 1))."""
    return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)


# ----------------------------------------------------------------------------------- Bernoulli


def bernoulli_reparameterize(logits: Array, u: Array) -> Array:
    """z = theta + log u - log(1 - u): logistic noise at the logit."""
    return logits + jnp.log(u) - jnp.log1p(-u)


def bernoulli_hard(z: Array) -> Array:
    """b = H(z) = 1[z > 0] as a float array."""
    return (sg(z) > 0).astype(z.dtype)


def _softplus_inverse(y: Array) -> Array:
    """log(exp(y) - 1) for y >= 0, written as y + log(1 - e^-y) so it neither overflows nor
    cancels; clamped below so that y = 0 gives a finite, very negative number."""
    return jnp.maximum(y + jnp.log(-jnp.expm1(-y)), -100.0)


def _bernoulli_conditional_value(logits: Array, sign: Array, w: Array) -> Array:
    """s * softplus(w + softplus(s theta)); w = s logit(v) (independent) or its shared value."""
    return sign * jax.nn.softplus(w + jax.nn.softplus(sign * logits))


def bernoulli_conditional(logits: Array, b: Array, v: Array) -> Array:
    """z~ ~ p(z | b, theta) from independent uniform noise ``v`` (same shape as the logits)."""
    sign = 2.0 * b - 1.0
    w = sign * (jnp.log(v) - jnp.log1p(-v))
    magnitude = jax.nn.softplus(w + jax.nn.softplus(sign * logits))
    # softplus of a very negative number can underflow to 0, and H(0) = 0: keep z~ strictly on
    # b's side of 0 so that H(z~) = b always (the clamp only acts where z~ is ~1e-38).
    tiny = jnp.finfo(logits.dtype).tiny
    return sign * jnp.maximum(magnitude, tiny)


def bernoulli_conditional_shared(logits: Array, b: Array, z: Array) -> Array:
    """z~ ~ p(z | b, theta) with the noise of ``z`` itself: equal to z, gradients through theta.

    The noise is held at the value that reproduces z: softplus(w + softplus(s theta0)) = |z|, so
    w = softplus^-1(|z|) - softplus(s theta0) with theta0 = stop_gradient(theta).
    """
    sign = 2.0 * b - 1.0
    shift = jax.nn.softplus(sign * logits)
    w = sg(_softplus_inverse(jnp.abs(z)) - shift)
    y = _bernoulli_conditional_value(logits, sign, w)
    return sg(z) + (y - sg(y))


def bernoulli_soft(z: Array, temperature: Array | float) -> Array:
    """sigma_lambda(z) = sigmoid(z / lambda)."""
    return jax.nn.sigmoid(z / temperature)


def bernoulli_score(logits: Array, b: Array) -> Array:
    """d log p(b | theta) / d theta = b - sigmoid(theta), elementwise."""
    return b - jax.nn.sigmoid(logits)


def bernoulli_log_prob(logits: Array, b: Array) -> Array:
    """log p(b | theta) summed over all variables: sum b theta - softplus(theta)."""
    return jnp.sum(b * logits - jax.nn.softplus(logits))


# --------------------------------------------------------------------------------- categorical


def categorical_reparameterize(logits: Array, u: Array) -> Array:
    """z = log theta - log(-log u): Gumbel noise at the normalized log-probabilities."""
    return jax.nn.log_softmax(logits, axis=-1) - jnp.log(-jnp.log(u))


def categorical_hard(z: Array) -> Array:
    """b = onehot(argmax z) along the last axis, as floats."""
    return jax.nn.one_hot(jnp.argmax(sg(z), axis=-1), z.shape[-1], dtype=z.dtype)


def _categorical_conditional_value(log_theta: Array, b: Array, log_e: Array) -> Array:
    """z~ from log E_i = log(-log v_i): z~_b = -log E_b, z~_i = -log(E_i/theta_i + E_b)."""
    log_e_b = jnp.sum(b * log_e, axis=-1, keepdims=True)
    # log E_b is masked to 0 on the b column first so logaddexp never sees -inf - -inf there.
    log_e_rest = jnp.where(b > 0, 0.0, log_e)
    others = -jnp.logaddexp(log_e_rest - log_theta, log_e_b)
    return jnp.where(b > 0, -log_e_b, others)


def categorical_conditional(logits: Array, b: Array, v: Array) -> Array:
    """z~ ~ p(z | b, theta) from independent uniform noise ``v`` (same shape as the logits)."""
    log_theta = jax.nn.log_softmax(logits, axis=-1)
    z_tilde = _categorical_conditional_value(log_theta, b, jnp.log(-jnp.log(v)))
    # Rounding can tie a z~_i with z~_b when E_i/theta_i is negligible next to E_b; keep every
    # other coordinate strictly below so that argmax z~ = b always.
    top = jnp.sum(b * z_tilde, axis=-1, keepdims=True)
    below = jnp.nextafter(sg(top), jnp.asarray(-jnp.inf, z_tilde.dtype))
    return jnp.where(b > 0, z_tilde, jnp.minimum(z_tilde, below))


def categorical_conditional_shared(logits: Array, b: Array, z: Array) -> Array:
    """z~ ~ p(z | b, theta) with the noise of ``z`` itself: equal to z, gradients through theta.

    With G = z_b = max z: E_b = e^{-G} and E_i = theta_i (e^{-z_i} - e^{-G}), held fixed.
    """
    log_theta = jax.nn.log_softmax(logits, axis=-1)
    z0 = sg(z)
    top = jnp.sum(b * z0, axis=-1, keepdims=True)
    gap = jnp.where(b > 0, -1.0, z0 - top)  # < 0 off the argmax; the b column is masked below
    log_e_rest = sg(log_theta) - z0 + jnp.log(-jnp.expm1(gap))
    log_e = jnp.where(b > 0, -top, log_e_rest)
    y = _categorical_conditional_value(log_theta, b, sg(log_e))
    return z0 + (y - sg(y))


def categorical_soft(z: Array, temperature: Array | float) -> Array:
    """sigma_lambda(z) = softmax(z / lambda) along the last axis."""
    return jax.nn.softmax(z / temperature, axis=-1)


def categorical_score(logits: Array, b: Array) -> Array:
    """d log p(b | theta) / d logits = onehot(b) - softmax(logits), per row."""
    return b - jax.nn.softmax(logits, axis=-1)


def categorical_log_prob(logits: Array, b: Array) -> Array:
    """log p(b | theta) summed over all rows."""
    return jnp.sum(b * jax.nn.log_softmax(logits, axis=-1))


# ---------------------------------------------------------------------------- the two families


class Relaxation(NamedTuple):
    """The functions an estimator needs for one family of discrete variables."""

    name: str
    reparameterize: Callable[[Array, Array], Array]  # (logits, u) -> z
    hard: Callable[[Array], Array]  # z -> b
    conditional: Callable[[Array, Array, Array], Array]  # (logits, b, v) -> z~
    conditional_shared: Callable[[Array, Array, Array], Array]  # (logits, b, z) -> z~
    soft: Callable[[Array, Array | float], Array]  # (z, temperature) -> sigma_lambda(z)
    score: Callable[[Array, Array], Array]  # (logits, b) -> d log p(b) / d logits
    log_prob: Callable[[Array, Array], Array]  # (logits, b) -> scalar


bernoulli = Relaxation(
    name="bernoulli",
    reparameterize=bernoulli_reparameterize,
    hard=bernoulli_hard,
    conditional=bernoulli_conditional,
    conditional_shared=bernoulli_conditional_shared,
    soft=bernoulli_soft,
    score=bernoulli_score,
    log_prob=bernoulli_log_prob,
)

categorical = Relaxation(
    name="categorical",
    reparameterize=categorical_reparameterize,
    hard=categorical_hard,
    conditional=categorical_conditional,
    conditional_shared=categorical_conditional_shared,
    soft=categorical_soft,
    score=categorical_score,
    log_prob=categorical_log_prob,
)
