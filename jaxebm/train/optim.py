"""Optimizers from a config: Adam/AdamW, warmup, schedules, gradient clipping.

``optim_config()`` gives the fields every method's optimizer reads; ``make_optimizer`` turns them
into an ``optax.GradientTransformation``. The learning rate at step s is

    lr(s) = lr * min(1, (s+1)/warmup) * decay(s)

with decay ``constant``, ``cosine`` (to 0 at ``decay_steps``) or ``step`` (times
``decay_factor`` at each of ``decay_boundaries``).
"""

from __future__ import annotations

import jax
import ml_collections
import optax


def optim_config(**overrides) -> ml_collections.ConfigDict:
    """Default optimizer fields; keyword arguments override them."""
    cfg = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=1e-3,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            warmup_steps=0,
            schedule="constant",
            decay_steps=0,
            decay_boundaries=(),
            decay_factor=0.1,
            grad_clip_norm=0.0,
        )
    )
    cfg.update(overrides)
    return cfg


def learning_rate_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """The schedule described in the module docstring."""
    lr = float(cfg.learning_rate)
    if cfg.schedule == "constant":
        decay = optax.constant_schedule(lr)
    elif cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr, max(int(cfg.decay_steps), 1))
    elif cfg.schedule == "step":
        boundaries = {int(b): float(cfg.decay_factor) for b in cfg.decay_boundaries}
        decay = optax.piecewise_constant_schedule(lr, boundaries)
    else:
        raise ValueError(f"optim.schedule={cfg.schedule!r}: expected constant, cosine or step")
    warmup = int(cfg.warmup_steps)
    if warmup <= 0:
        return decay
    return lambda step: decay(step) * optax.linear_schedule(1.0 / warmup, 1.0, warmup - 1)(step)


def validate_optim(cfg: ml_collections.ConfigDict, where: str = "optim") -> None:
    """Raises ValueError naming the field for values that cannot train."""
    if not cfg.learning_rate > 0:
        raise ValueError(f"{where}.learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.name not in ("adam", "adamw", "sgd", "rmsprop"):
        raise ValueError(f"{where}.name={cfg.name!r}: expected adam, adamw, sgd or rmsprop")
    if cfg.warmup_steps < 0 or cfg.weight_decay < 0 or cfg.grad_clip_norm < 0:
        raise ValueError(f"{where}: warmup_steps, weight_decay and grad_clip_norm must be >= 0")


def make_optimizer(cfg: ml_collections.ConfigDict, where: str = "optim") -> optax.GradientTransformation:
    """Builds the optimizer the config describes (validated first)."""
    validate_optim(cfg, where)
    schedule = learning_rate_schedule(cfg)
    if cfg.name == "adam":
        opt = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
        if cfg.weight_decay > 0:  # L2 added to the gradient, as torch.optim.Adam(weight_decay=...)
            opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), opt)
    elif cfg.name == "adamw":
        opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "rmsprop":
        opt = optax.rmsprop(schedule, decay=cfg.b2, eps=cfg.eps)
    else:
        opt = optax.sgd(schedule, momentum=cfg.b1 or None)
    if cfg.grad_clip_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), opt)
    return standard_promotion(opt)


def standard_promotion(opt: optax.GradientTransformation) -> optax.GradientTransformation:
    """Runs ``opt`` under JAX's standard dtype promotion.

    Optax mixes Python floats with its int32 step counts (``b1 ** count``), which strict
    promotion (on in our tests, and in some users' code) rejects; the results are identical.
    """

    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return opt.init(params)

    def update(updates, state, params=None):
        with jax.numpy_dtype_promotion("standard"):
            return opt.update(updates, state, params)

    return optax.GradientTransformation(init, update)
