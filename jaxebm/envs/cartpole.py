r"""CartPole in pure JAX, with the dynamics of OpenAI gym's ``CartPole-v0`` / ``CartPole-v1``.

A pole of half-length :math:`l` and mass :math:`m_p` is hinged on a cart of mass :math:`m_c`;
the action pushes the cart with force :math:`F = \pm` ``force_mag`` (action 1: right, 0: left).
With :math:`M = m_c + m_p` and state :math:`(x, \dot x, \vartheta, \dot\vartheta)` gym computes

.. math::

    t &= (F + m_p l \dot\vartheta^2 \sin\vartheta) / M, \\
    \ddot\vartheta &= \frac{g \sin\vartheta - \cos\vartheta\, t}
                          {l\,(4/3 - m_p \cos^2\vartheta / M)}, \\
    \ddot x &= t - m_p l \ddot\vartheta \cos\vartheta / M,

then one explicit Euler step of length :math:`\tau` in gym's order (positions from the old
velocities): :math:`x \mathrel{+}= \tau\dot x,\ \dot x \mathrel{+}= \tau\ddot x,\
\vartheta \mathrel{+}= \tau\dot\vartheta,\ \dot\vartheta \mathrel{+}= \tau\ddot\vartheta`.
The episode *terminates* when :math:`|x| > 2.4` or :math:`|\vartheta| > 12^\circ` after a step,
and is *truncated* after ``max_steps`` steps (200 for v0, 500 for v1). Every step, the
terminating one included, earns reward 1, so an episode's return is its length. The start
state is uniform on :math:`[-0.05, 0.05]^4`.

``rollout`` plays one whole episode inside ``jit``: a ``lax.scan`` over ``max_steps`` steps
with an ``alive`` mask (1 up to and including the last real step, 0 after), so episodes of
every length share one compiled program and ``vmap`` runs many at once. After the episode ends
the scan keeps stepping a frozen state; masked entries are padding, never data.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class CartPoleParams(NamedTuple):
    """Physical constants and limits (gym's values; ``max_steps=200`` is CartPole-v0)."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02  # seconds per step
    theta_threshold: float = 12.0 * 2.0 * math.pi / 360.0
    x_threshold: float = 2.4
    max_steps: int = 200
    reset_bound: float = 0.05


def v0() -> CartPoleParams:
    """CartPole-v0: 200 steps at most, solved at a mean return above 195 over 100 episodes."""
    return CartPoleParams(max_steps=200)


def v1() -> CartPoleParams:
    """CartPole-v1: 500 steps at most (gym's threshold 475)."""
    return CartPoleParams(max_steps=500)


OBSERVATION_SIZE = 4
NUM_ACTIONS = 2


def reset(key: Array, params: CartPoleParams = CartPoleParams()) -> Array:
    """The start state, uniform on [-reset_bound, reset_bound]^4 (float32, shape (4,))."""
    bound = jnp.float32(params.reset_bound)
    return jax.random.uniform(key, (OBSERVATION_SIZE,), jnp.float32, -bound, bound)


def dynamics(state: Array, action: Array, params: CartPoleParams = CartPoleParams()) -> Array:
    """One Euler step of gym's equations; ``action`` is 0 (push left) or 1 (push right)."""
    x, x_dot, theta, theta_dot = state[0], state[1], state[2], state[3]
    f32 = jnp.float32
    total_mass = f32(params.masscart + params.masspole)
    polemass_length = f32(params.masspole * params.length)
    force = jnp.where(action == 1, f32(params.force_mag), f32(-params.force_mag))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + polemass_length * theta_dot**2 * sin) / total_mass
    theta_acc = (f32(params.gravity) * sin - cos * temp) / (
        f32(params.length) * (f32(4.0 / 3.0) - f32(params.masspole) * cos**2 / total_mass)
    )
    x_acc = temp - polemass_length * theta_acc * cos / total_mass
    tau = f32(params.tau)
    return jnp.stack([x + tau * x_dot, x_dot + tau * x_acc, theta + tau * theta_dot, theta_dot + tau * theta_acc])


def terminated(state: Array, params: CartPoleParams = CartPoleParams()) -> Array:
    """Whether the pole fell or the cart left the track: |x| > 2.4 or |theta| > 12 degrees."""
    return (jnp.abs(state[0]) > params.x_threshold) | (jnp.abs(state[2]) > params.theta_threshold)


def step(state: Array, action: Array, params: CartPoleParams = CartPoleParams()) -> tuple[Array, Array, Array]:
    """``(next_state, reward, terminated)``: reward 1 for every step, the failing one included."""
    next_state = dynamics(state, action, params)
    return next_state, jnp.float32(1.0), terminated(next_state, params)


class Episode(NamedTuple):
    """One episode padded to ``max_steps``; entry t is valid where ``alive[t] == 1``.

    ``observations[t]`` is the state the agent saw before acting ``actions[t]``; ``aux[t]``
    is whatever the policy returned beside its action (e.g. the noise it used).
    """

    observations: Array  # (T, 4)
    actions: Array  # (T,) int32
    rewards: Array  # (T,) 1 while alive, else 0
    alive: Array  # (T,) float32
    aux: object  # pytree with leading axis T
    length: Array  # () int32: number of real steps = the undiscounted return


Policy = Callable[[Array, Array], tuple[Array, object]]  # (observation, key) -> (action, aux)


def rollout(policy: Policy, key: Array, params: CartPoleParams = CartPoleParams()) -> Episode:
    """Plays one episode of at most ``params.max_steps`` steps with ``policy(obs, key)``.

    Step t uses the key ``fold_in(key_steps, t)``, so an episode is a pure function of ``key``.
    """
    key_reset, key_steps = jax.random.split(key)
    start = reset(key_reset, params)

    def body(carry, t):
        state, alive = carry
        action, aux = policy(state, jax.random.fold_in(key_steps, t))
        action = jnp.asarray(action, jnp.int32)
        next_state, reward, done = step(state, action, params)
        # Freeze the state once the episode is over so the padding stays finite.
        new_state = jnp.where(alive > 0, next_state, state)
        still_alive = alive * (1.0 - done.astype(jnp.float32))
        out = (state, action, reward * alive, alive, aux)
        return (new_state, still_alive), out

    carry = (start, jnp.float32(1.0))
    _, (obs, actions, rewards, alive, aux) = jax.lax.scan(body, carry, jnp.arange(params.max_steps))
    return Episode(obs, actions, rewards, alive, aux, jnp.sum(alive).astype(jnp.int32))


def discounted_returns(rewards: Array, alive: Array, discount: float) -> Array:
    """R_t = sum_{k >= t} discount^(k-t) r_k over the episode's real steps (0 on padding).

    No bootstrapping: the episode's end (failure or time limit) is treated as terminal.
    """

    def body(later, inputs):
        r, a = inputs
        ret = a * (r + jnp.float32(discount) * later)
        return ret, ret

    _, returns = jax.lax.scan(body, jnp.float32(0.0), (rewards, alive), reverse=True)
    return returns
