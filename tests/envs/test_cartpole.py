"""CartPole: gym's equations step by step, termination, truncation, episodes inside jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.envs import cartpole


def gym_step(state, action):
    """gym's CartPoleEnv.step written out in Python floats (float64), Euler integrator."""
    x, x_dot, theta, theta_dot = state
    g, m_cart, m_pole, half_length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total = m_cart + m_pole
    pml = m_pole * half_length
    force = force_mag if action == 1 else -force_mag
    temp = (force + pml * theta_dot**2 * math.sin(theta)) / total
    theta_acc = (g * math.sin(theta) - math.cos(theta) * temp) / (
        half_length * (4.0 / 3.0 - m_pole * math.cos(theta) ** 2 / total))
    x_acc = temp - pml * theta_acc * math.cos(theta) / total
    new = (x + tau * x_dot, x_dot + tau * x_acc, theta + tau * theta_dot, theta_dot + tau * theta_acc)
    done = abs(new[0]) > 2.4 or abs(new[2]) > 12 * 2 * math.pi / 360
    return new, done


def test_one_step_matches_hand_computed_numbers():
    """State (0.01, -0.02, 0.03, 0.04), push right: numbers worked out by hand from gym's code."""
    new, reward, done = cartpole.step(jnp.array([0.01, -0.02, 0.03, 0.04], jnp.float32), jnp.int32(1))
    np.testing.assert_allclose(new, [0.0096, 0.17467919574755525, 0.0308, -0.2430687179600081], rtol=1e-5)
    assert float(reward) == 1.0 and not bool(done)


@pytest.mark.parametrize("action", [0, 1])
@pytest.mark.parametrize(
    "state",
    [(0.0, 0.0, 0.0, 0.0), (0.3, -1.2, 0.15, 2.0), (-2.0, 0.5, -0.19, -1.5), (1.0, 3.0, 0.2, -3.0)],
)
def test_step_matches_gym_equations(state, action):
    new, reward, done = cartpole.step(jnp.asarray(state, jnp.float32), jnp.int32(action))
    want, want_done = gym_step(state, action)
    np.testing.assert_allclose(new, want, rtol=1e-5, atol=1e-6)
    assert bool(done) == want_done
    assert float(reward) == 1.0


@pytest.mark.parametrize(
    "state, done",
    [
        ((2.39, 0.0, 0.0, 0.0), False),
        ((2.41, 0.0, 0.0, 0.0), True),
        ((-2.41, 0.0, 0.0, 0.0), True),
        ((0.0, 0.0, 0.2094, 0.0), False),  # 12 degrees = 0.20944 rad
        ((0.0, 0.0, 0.2095, 0.0), True),
        ((0.0, 0.0, -0.2095, 0.0), True),
    ],
)
def test_termination_thresholds(state, done):
    assert bool(cartpole.terminated(jnp.asarray(state, jnp.float32))) == done


def test_reset_is_uniform_in_the_small_box():
    states = jax.vmap(cartpole.reset)(jax.random.split(jax.random.key(0), 2000))
    assert states.shape == (2000, 4) and states.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(states))) <= 0.05
    np.testing.assert_allclose(jnp.mean(states, axis=0), 0.0, atol=0.003)  # sd 0.029/sqrt(2000)


def test_rollout_replays_gym_and_masks_after_failure():
    """Always pushing right fails well before 200 steps; the scan agrees with gym step by step."""
    episode = jax.jit(lambda k: cartpole.rollout(lambda s, key: (jnp.int32(1), s[0]), k))(jax.random.key(3))
    length = int(episode.length)
    assert 5 < length < 200
    alive = np.asarray(episode.alive)
    np.testing.assert_array_equal(alive, (np.arange(200) < length).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(episode.rewards), alive)
    state = tuple(float(v) for v in episode.observations[0])
    for t in range(length):
        np.testing.assert_allclose(episode.observations[t], state, rtol=1e-4, atol=1e-5)
        state, done = gym_step(state, 1)
        assert done == (t == length - 1)
    # aux comes back per step: here the cart position the policy saw
    np.testing.assert_allclose(episode.aux[:length], episode.observations[:length, 0])


@pytest.mark.parametrize("params, cap", [(cartpole.v0(), 200), (cartpole.v1(), 500)])
def test_truncation_at_the_time_limit(params, cap):
    """A balancing controller survives: the episode stops at exactly max_steps (v0 200, v1 500)."""

    def controller(s, key):  # push toward the side the pole leans to, with some velocity damping
        return (s[2] + 0.5 * s[3] + 0.01 * s[0] + 0.1 * s[1] > 0).astype(jnp.int32), ()

    episode = jax.jit(lambda k: cartpole.rollout(controller, k, params))(jax.random.key(0))
    assert int(episode.length) == cap
    assert episode.observations.shape == (cap, 4)
    assert float(jnp.sum(episode.rewards)) == cap


def test_discounted_returns_by_hand():
    rewards = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0], jnp.float32)
    alive = jnp.array([1.0, 1.0, 1.0, 0.0, 0.0], jnp.float32)
    got = cartpole.discounted_returns(rewards, alive, 0.5)
    np.testing.assert_allclose(got, [1.75, 1.5, 1.0, 0.0, 0.0])


def test_episodes_vmap_over_keys():
    random_policy = lambda s, key: (jax.random.bernoulli(key).astype(jnp.int32), ())
    episodes = jax.jit(jax.vmap(lambda k: cartpole.rollout(random_policy, k)))(jax.random.split(jax.random.key(1), 64))
    lengths = np.asarray(episodes.length)
    assert lengths.shape == (64,)
    assert 10 < lengths.mean() < 40  # a random policy lasts about 22 steps
    np.testing.assert_array_equal(lengths, np.asarray(episodes.alive).sum(axis=1))
