"""Environments written in pure JAX, so whole episodes run inside ``jit`` and ``vmap``.

* cartpole: gym's CartPole-v0/v1 dynamics (``reset``, ``step``, ``rollout``).
"""

from jaxebm.envs import cartpole
from jaxebm.envs.cartpole import CartPoleParams, Episode, discounted_returns, rollout

__all__ = ["CartPoleParams", "Episode", "cartpole", "discounted_returns", "rollout"]
