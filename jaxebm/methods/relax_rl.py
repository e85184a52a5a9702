r"""RELAX paper, reinforcement learning: CartPole with an actor-critic baseline or RELAX.

A policy :math:`\pi_\theta(a|s)` (2x10 ReLU MLP, 2 action logits) plays one whole episode of
the pure-JAX CartPole (:mod:`jaxebm.envs.cartpole`, v0: at most 200 steps) per update; with
:math:`R_t = \sum_{k \ge t} \gamma^{k-t} r_k` (:math:`\gamma = 0.99`, no bootstrapping) the
policy ascends :math:`\sum_t \hat g_t^\top \partial \ell_t / \partial\theta + \beta\,\nabla_\theta
\sum_t H(\pi_\theta(\cdot|s_t))`, :math:`\ell_t` the logits at :math:`s_t`, :math:`\beta = 0.01`,
with the per-step logit gradient :math:`\hat g_t` from

* ``a2c`` (advantage actor-critic): REINFORCE with the baseline :math:`V_\psi(s_t)`,
  :math:`\hat g_t = (R_t - V_\psi(s_t))\,\nabla_\ell \log \pi(a_t|s_t)`; :math:`V_\psi` (2x10
  ReLU) regresses :math:`R_t` (squared error);
* ``relax``: :math:`\hat g_t = [R_t - c_\phi(\tilde z_t, s_t)]\,\nabla_\ell\log\pi(a_t|s_t) +
  \nabla_\ell c_\phi(z_t, s_t) - \nabla_\ell c_\phi(\tilde z_t, s_t)` with the Gumbel variable
  :math:`z_t = \log\pi + G` whose argmax is :math:`a_t`, :math:`\tilde z_t \sim p(z|a_t)`, and
  :math:`c_\phi(z, s) = \alpha\,\mathrm{MLP}_{2\times10}([s, \operatorname{softmax}(z/\lambda)])`
  (the paper code's control variate: learned scale :math:`\alpha` init 1, temperature
  :math:`\lambda` init 1). :math:`\phi = (\mathrm{MLP}, \alpha, \log\lambda)` follows the
  single-sample gradient of :math:`\|\sum_t \partial\ell_t/\partial\theta^\top \hat g_t\|^2`,
  the squared policy gradient (entropy term excluded), as in the paper's code.

The per-step terms come from :func:`jaxebm.estimators.black_box.reinforce` / ``relax`` with the
categorical relaxation and ``f(b) = R_t``; the action in the episode is the ``b`` these draw
from the step's key, so the estimators see exactly the played actions. Adam with
:math:`\beta_2 = 0.99999` (the RL code's trainer; the paper text says RMSProp).

``rl.num_seeds`` independent runs are ``vmap``-ed inside one step; each keeps the returns of
its last ``solve_window`` episodes and records the episode at which their mean first exceeds
``solve_threshold`` (CartPole-v0's "solved": > 195 over 100 episodes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxebm.envs import cartpole
from jaxebm.estimators import black_box as est
from jaxebm.estimators.relaxations import categorical
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer

Array = jax.Array
ESTIMATORS = ("a2c", "relax")


# ---------------------------------------------------------------------------------- networks


def mlp_init(key: Array, sizes: tuple[int, ...]) -> list[dict]:
    """Orthogonal weights (gain sqrt 2 for hidden layers, 1 for the output), zero biases: the
    initialisation of the baselines' ``fc`` layers the paper's RL code used."""
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        gain = 1.0 if i == len(sizes) - 2 else float(np.sqrt(2.0))
        w = jax.nn.initializers.orthogonal(gain)(k, (n_in, n_out), jnp.float32)
        layers.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return layers


def mlp_apply(layers: list[dict], x: Array) -> Array:
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def control_variate(cv: dict, state: Array, z: Array) -> Array:
    """c_phi(z, s) = scale * MLP([s, softmax(z / lambda)])."""
    soft = categorical.soft(z, jnp.exp(cv["log_temperature"]))
    return cv["scale"] * mlp_apply(cv["net"], jnp.concatenate([state, soft]))[0]


def entropy(logits: Array) -> Array:
    log_p = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_p) * log_p)


def draw_action(logits: Array, key: Array) -> Array:
    """The one-hot action every estimator in black_box draws from ``key`` (they share their
    sampling), so the update can re-create the episode's noise from the same key."""
    _, b = est.reinforce(lambda b: (jnp.float32(0.0), b), logits, key=key, dist=categorical, has_aux=True)
    return b


# ---------------------------------------------------------------------------------- the agent


class CartPoleAgent:
    """One seed's state, episode and update; ``build`` vmaps these over ``rl.num_seeds``."""

    def __init__(self, cfg: ml_collections.ConfigDict):
        self.cfg = cfg
        self.rl = cfg.rl
        self.estimator = cfg.estimator
        self.env = cartpole.CartPoleParams(max_steps=self.rl.max_steps)
        self.opt_policy = make_optimizer(cfg.optim)
        self.opt_critic = make_optimizer(cfg.cv_optim, "cv_optim")

    def init(self, key: Array) -> dict:
        h = self.rl.hidden
        k_pi, k_critic = jax.random.split(key)
        policy = mlp_init(k_pi, (cartpole.OBSERVATION_SIZE, h, h, cartpole.NUM_ACTIONS))
        if self.estimator == "a2c":
            critic = mlp_init(k_critic, (cartpole.OBSERVATION_SIZE, h, h, 1))
        else:
            critic = {
                "net": mlp_init(k_critic, (cartpole.OBSERVATION_SIZE + cartpole.NUM_ACTIONS, h, h, 1)),
                "scale": jnp.float32(1.0),
                "log_temperature": jnp.float32(self.rl.init_log_temperature),
            }
        return {
            "policy": policy,
            "critic": critic,
            "opt_policy": self.opt_policy.init(policy),
            "opt_critic": self.opt_critic.init(critic),
            "recent_returns": jnp.zeros((self.rl.solve_window,), jnp.float32),
            "episodes": jnp.int32(0),
            "solved_at": jnp.int32(-1),
        }

    # ----------------------------------------------------------------------------- the episode

    def play(self, policy: list[dict], key: Array) -> cartpole.Episode:
        """One episode; ``aux`` holds each step's key (the estimator redraws its noise from it)."""

        def act(obs, k):
            b = draw_action(mlp_apply(policy, obs), k)
            return jnp.argmax(b), k

        return cartpole.rollout(act, key, self.env)

    # ------------------------------------------------------------------------------ the update

    def logit_gradients(self, policy, critic, episode: cartpole.Episode, returns: Array):
        """Per-step estimates g_t (T, 2) of d E[R_t] / d logits_t, zero on padding."""
        logits = jax.vmap(lambda s: mlp_apply(policy, s))(episode.observations)
        if self.estimator == "a2c":
            values = jax.vmap(lambda s: mlp_apply(critic, s)[0])(episode.observations)

            def one(lg, k, ret, v):
                return est.reinforce(lambda b: ret, lg, key=k, baseline=jax.lax.stop_gradient(v), dist=categorical)

            g = jax.vmap(one)(logits, episode.aux, returns, values)
        else:

            def one(lg, k, ret, s):
                return est.relax(
                    lambda b: ret,
                    lambda cv, z: control_variate(cv, s, z),
                    critic,
                    lg,
                    key=k,
                    dist=categorical,
                    shared_noise=self.rl.shared_noise,
                )

            g = jax.vmap(one)(logits, episode.aux, returns, episode.observations)
        return g * episode.alive[:, None]

    def policy_gradient(self, policy, critic, episode, returns):
        """sum_t (d logits_t / d theta)^T g_t: the estimator's gradient of E[return]."""
        g = self.logit_gradients(policy, critic, episode, returns)
        _, pullback = jax.vjp(lambda p: jax.vmap(lambda s: mlp_apply(p, s))(episode.observations), policy)
        return pullback(g)[0]

    def update(self, state: dict, key: Array) -> tuple[dict, dict]:
        rl = self.rl
        policy, critic = state["policy"], state["critic"]
        episode = self.play(policy, key)
        returns = cartpole.discounted_returns(episode.rewards, episode.alive, rl.discount)
        alive = episode.alive

        if self.estimator == "a2c":
            pg = self.policy_gradient(policy, critic, episode, returns)

            def value_loss(psi):
                v = jax.vmap(lambda s: mlp_apply(psi, s)[0])(episode.observations)
                return rl.value_coef * jnp.sum(alive * 0.5 * (v - returns) ** 2)

            critic_grad = jax.grad(value_loss)(critic)
        else:
            pg, critic_grad = est.with_variance_grad(lambda cv: self.policy_gradient(policy, cv, episode, returns), critic)

        def total_entropy(p):
            logits = jax.vmap(lambda s: mlp_apply(p, s))(episode.observations)
            return jnp.sum(alive * jax.vmap(entropy)(logits))

        entropy_grad = jax.grad(total_entropy)(policy)
        # ascend E[return] + beta * entropy: the optimizer minimizes, so negate
        policy_grad = jax.tree.map(lambda a, b: -(a + rl.entropy_bonus * b), pg, entropy_grad)
        updates, opt_policy = self.opt_policy.update(policy_grad, state["opt_policy"], policy)
        policy = optax.apply_updates(policy, updates)
        c_updates, opt_critic = self.opt_critic.update(critic_grad, state["opt_critic"], critic)
        critic = optax.apply_updates(critic, c_updates)

        episode_return = jnp.sum(episode.rewards)
        recent = jnp.roll(state["recent_returns"], -1).at[-1].set(episode_return)
        episodes = state["episodes"] + 1
        solved_now = (episodes >= rl.solve_window) & (jnp.mean(recent) > rl.solve_threshold)
        solved_at = jnp.where((state["solved_at"] < 0) & solved_now, episodes, state["solved_at"])
        new_state = {
            "policy": policy,
            "critic": critic,
            "opt_policy": opt_policy,
            "opt_critic": opt_critic,
            "recent_returns": recent,
            "episodes": episodes,
            "solved_at": solved_at,
        }
        pg_sq = sum(jnp.sum(x**2) for x in jax.tree.leaves(pg))
        metrics = {"return": episode_return, "mean_recent_return": jnp.mean(recent), "policy_grad_sq": pg_sq}
        return new_state, metrics


# ------------------------------------------------------------------------------------ configs


def _validate(cfg: ml_collections.ConfigDict) -> None:
    if cfg.estimator not in ESTIMATORS:
        raise ValueError(f"estimator={cfg.estimator!r}: expected one of {ESTIMATORS}")
    rl = cfg.rl
    for field in ("num_seeds", "max_steps", "hidden", "solve_window"):
        if not (isinstance(rl[field], int) and rl[field] > 0):
            raise ValueError(f"rl.{field} must be a positive integer, got {rl[field]!r}")
    if not 0.0 < rl.discount <= 1.0:
        raise ValueError(f"rl.discount must be in (0, 1], got {rl.discount}")
    if rl.entropy_bonus < 0 or rl.value_coef <= 0:
        raise ValueError("rl.entropy_bonus must be >= 0 and rl.value_coef > 0")
    if not (isinstance(cfg.eval.episodes, int) and cfg.eval.episodes > 0):
        raise ValueError(f"eval.episodes must be a positive integer, got {cfg.eval.episodes!r}")


def seed_keys(key: Array, num_seeds: int) -> Array:
    """One independent key per seed: fold_in(key, i)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num_seeds))


def episodes_to_solve(solved_at: np.ndarray) -> dict[str, float]:
    """Per-seed episodes to solve (inf where unsolved) and their median."""
    solved_at = np.asarray(solved_at)
    per_seed = np.where(solved_at > 0, solved_at, np.inf).astype(np.float64)
    out = {f"episodes_to_solve_seed{i}": float(v) for i, v in enumerate(per_seed)}
    out["median_episodes_to_solve"] = float(np.median(per_seed))
    out["solved_seeds"] = float(np.sum(np.isfinite(per_seed)))
    return out


class VmappedAgent:
    """``rl.num_seeds`` agents stepping together: the harness's init and train_step."""

    def __init__(self, cfg: ml_collections.ConfigDict):
        self.cfg = cfg
        self.agent = CartPoleAgent(cfg)
        self.num_seeds = cfg.rl.num_seeds

    def init(self, key: Array) -> dict:
        return jax.vmap(self.agent.init)(seed_keys(key, self.num_seeds))

    def train_step(self, state: dict, batch: Any, key: Array) -> tuple[dict, dict]:
        state, per_seed = jax.vmap(self.agent.update)(state, seed_keys(key, self.num_seeds))
        metrics = {k: jnp.mean(v) for k, v in per_seed.items()}
        metrics["loss"] = -metrics["return"]  # the harness's divergence guard reads "loss"
        metrics["solved_seeds"] = jnp.sum(state["solved_at"] > 0).astype(jnp.float32)
        return state, metrics


def run_cartpole(cfg: ml_collections.ConfigDict, num_episodes: int):
    """A whole training run (every seed) as one jitted ``lax.scan`` with ``jaxebm train``'s keys.

    Returns ``run(seed) -> (final_state, returns)`` with ``returns`` (num_episodes, num_seeds)
    the undiscounted episode returns; ``final_state["solved_at"]`` per seed.
    """
    from jaxebm.train.loop import root_key

    agents = VmappedAgent(cfg)

    @jax.jit
    def run(seed):
        root = root_key(seed)
        state = agents.init(jax.random.fold_in(root, 2**31 - 2))

        def step(state, i):
            state, per_seed = jax.vmap(agents.agent.update)(state, seed_keys(jax.random.fold_in(root, i), agents.num_seeds))
            return state, per_seed["return"]

        return jax.lax.scan(step, state, jnp.arange(num_episodes))

    return run


# ------------------------------------------------------------------------------------- build


def build(cfg: ml_collections.ConfigDict) -> Method:
    _validate(cfg)
    agents = VmappedAgent(cfg)
    agent = agents.agent

    @jax.jit
    def eval_returns(state, key):
        def seed_returns(policy, k):
            keys = jax.random.split(k, cfg.eval.episodes)
            return jax.vmap(lambda kk: jnp.sum(agent.play(policy, kk).rewards))(keys)

        return jax.vmap(seed_returns)(state["policy"], seed_keys(key, agents.num_seeds))

    def evaluate(state, key):
        returns = np.asarray(eval_returns(state, key))
        out = episodes_to_solve(np.asarray(state["solved_at"]))
        out["eval_return"] = float(returns.mean())
        out.update({f"eval_return_seed{i}": float(r) for i, r in enumerate(returns.mean(axis=1))})
        out["episodes"] = float(np.asarray(state["episodes"])[0])
        return out

    def sample(state, key, num):
        """Episode returns of the first seed's policy: ``num`` episodes."""
        keys = jax.random.split(key, num)
        policy = jax.tree.map(lambda x: x[0], state["policy"])
        play = jax.jit(jax.vmap(lambda k: jnp.sum(agent.play(policy, k).rewards)))
        return np.asarray(play(keys))[:, None]

    return Method(
        init=agents.init,
        train_step=agents.train_step,
        evaluate=evaluate,
        sample=sample,
        data=None,
        write_figures=None,
    )
