"""Samplers: stochastic gradient Langevin dynamics and a persistent replay buffer."""

from jaxebm.samplers.langevin import (
    langevin_step,
    proper_langevin_step_size,
    score_of,
    sgld,
)
from jaxebm.samplers.replay_buffer import (
    ReplayBuffer,
    init_buffer,
    noise_init,
    sample_from_buffer,
    update_buffer,
)

__all__ = [
    "ReplayBuffer",
    "init_buffer",
    "langevin_step",
    "noise_init",
    "proper_langevin_step_size",
    "sample_from_buffer",
    "score_of",
    "sgld",
    "update_buffer",
]
