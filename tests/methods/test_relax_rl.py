"""RELAX CartPole: vmapped updates, the played actions are the estimators' samples, configs."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.envs import cartpole
from jaxebm.estimators import black_box as est
from jaxebm.estimators.relaxations import categorical
from jaxebm.methods import relax_rl
from jaxebm.train import config as config_lib
from jaxebm.train.loop import root_key
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "relax.py")


def _config(variant="cartpole_smoke", overrides=()):
    return config_lib.load_config(f"{CONFIG}:{variant}", list(overrides))


@pytest.mark.parametrize("estimator", relax_rl.ESTIMATORS)
def test_updates_run_for_every_seed_and_track_solving(estimator):
    """Smoke config: 2 seeds, 30-step episodes, window 3; a threshold of 5 is met at episode 3
    (no CartPole episode is shorter than 8 steps)."""
    cfg = _config(overrides=[f"estimator={estimator}", "rl.solve_threshold=5.0"])
    method = build_method(cfg)
    root = root_key(cfg.seed)
    state = jax.jit(method.init)(jax.random.fold_in(root, 2**31 - 2))
    n = cfg.rl.num_seeds
    assert state["recent_returns"].shape == (n, cfg.rl.solve_window)
    assert all(leaf.shape[0] == n for leaf in jax.tree.leaves(state["policy"]))
    step = jax.jit(method.train_step)
    returns = []
    for i in range(3):
        if i == 2:
            np.testing.assert_array_equal(state["solved_at"], [-1] * n)
        state, metrics = step(state, {}, jax.random.fold_in(root, i))
        returns.append(float(metrics["return"]))
        assert all(np.isfinite(float(v)) for v in metrics.values())
        assert 8 <= float(metrics["return"]) <= cfg.rl.max_steps
    np.testing.assert_array_equal(state["episodes"], [3] * n)
    np.testing.assert_array_equal(state["solved_at"], [3] * n)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state) if x.dtype == jnp.float32)
    if estimator == "a2c":
        return  # the scan and evaluation below share all their code between estimators
    # the whole-run scan replays the harness's keys: same returns per episode
    _, scanned = relax_rl.run_cartpole(cfg, 3)(cfg.seed)
    assert scanned.shape == (3, n)
    np.testing.assert_allclose(np.mean(np.asarray(scanned), axis=1), returns)
    results = method.evaluate(state, jax.random.key(9))
    assert results["solved_seeds"] == n and results["median_episodes_to_solve"] == 3.0
    assert 8 <= results["eval_return"] <= cfg.rl.max_steps


def test_played_actions_are_the_estimators_samples():
    """RELAX redraws z from each step's key: its hard sample is the action the episode played."""
    cfg = _config()
    agent = relax_rl.CartPoleAgent(cfg)
    params = agent.init(jax.random.key(0))

    @jax.jit
    def check(key):
        episode = agent.play(params["policy"], key)
        logits = jax.vmap(lambda s: relax_rl.mlp_apply(params["policy"], s))(episode.observations)

        def one(lg, k, s):
            cv = lambda c, z: relax_rl.control_variate(c, s, z)
            return est.relax(lambda b: (jnp.float32(0.0), b), cv, params["critic"], lg, key=k, dist=categorical, has_aux=True)[1]

        b = jax.vmap(one)(logits, episode.aux, episode.observations)
        return episode, b

    episode, b = check(jax.random.key(4))
    length = int(episode.length)
    np.testing.assert_array_equal(np.argmax(np.asarray(b), axis=1)[:length], np.asarray(episode.actions)[:length])
    assert set(np.unique(np.asarray(episode.actions)[:length])) == {0, 1}


def test_policy_gradient_matches_autodiff_of_the_score_function_loss():
    """A2C's per-step estimate pulled back through the policy = grad of sum_t A_t log pi(a_t|s_t)."""
    cfg = _config(overrides=["estimator=a2c"])
    agent = relax_rl.CartPoleAgent(cfg)
    params = agent.init(jax.random.key(1))
    episode = jax.jit(agent.play)(params["policy"], jax.random.key(2))
    returns = cartpole.discounted_returns(episode.rewards, episode.alive, 0.99)
    got = jax.jit(agent.policy_gradient)(params["policy"], params["critic"], episode, returns)

    def surrogate(p):
        logits = jax.vmap(lambda s: relax_rl.mlp_apply(p, s))(episode.observations)
        values = jax.vmap(lambda s: relax_rl.mlp_apply(params["critic"], s)[0])(episode.observations)
        log_pi = jnp.take_along_axis(jax.nn.log_softmax(logits), episode.actions[:, None], axis=1)[:, 0]
        return jnp.sum(episode.alive * (returns - values) * log_pi)

    want = jax.jit(jax.grad(surrogate))(params["policy"])
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


def test_episodes_to_solve_summary():
    out = relax_rl.episodes_to_solve(np.array([300, -1, 120, 500, 410]))
    assert out["episodes_to_solve_seed1"] == float("inf")
    assert out["median_episodes_to_solve"] == 410.0 and out["solved_seeds"] == 4.0


@pytest.mark.parametrize(
    "override, field",
    [
        ("estimator=reinforce", "estimator"),
        ("rl.num_seeds=0", "rl.num_seeds"),
        ("rl.max_steps=0", "rl.max_steps"),
        ("rl.discount=1.5", "rl.discount"),
        ("eval.episodes=0", "eval.episodes"),
    ],
)
def test_bad_config_fails_naming_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_method(_config(overrides=[override]))
