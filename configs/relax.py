"""RELAX configs. Variants: toy (the paper's toy, t = 0.499, 5000 steps), smoke (seconds).

    jaxebm train --config configs/relax.py:toy --workdir runs/relax_toy --config.estimator=relax
    jaxebm train --config configs/relax.py:toy --workdir runs/rebar_toy --config.estimator=rebar

The final evaluation writes samples/toy_loss_variance.png: loss and log10 gradient variance of
REINFORCE, REBAR and RELAX over steps (the paper's first figure), each a whole ``lax.scan`` run.
"""

import ml_collections

from jaxebm.train.config import base_config
from jaxebm.train.optim import optim_config


def get_config(arg=None):
    variant = arg or "toy"
    cfg = base_config("relax")
    cfg.experiment = "toy"
    cfg.estimator = "relax"  # reinforce | rebar | relax
    cfg.toy = ml_collections.ConfigDict(dict(
        target=0.499,
        num_latents=1,
        batch_size=1,  # samples per step
        init_logit=0.0,  # theta = 0.5
        init_eta=1.0,  # REBAR
        init_temperature=0.5,  # REBAR and RELAX: lambda, learned as log lambda
        hidden=10,  # RELAX's Q: tanh units
        shared_noise=True,  # z~ from z's noise (v_from_u), as the papers' code
    ))
    cfg.optim = optim_config(learning_rate=0.01)  # the logits: Adam 0.01
    cfg.cv_optim = optim_config(learning_rate=0.01)  # the control variate: Adam 0.01
    cfg.eval = ml_collections.ConfigDict(dict(variance_samples=1000))
    cfg.figure = ml_collections.ConfigDict(dict(
        estimators=("reinforce", "rebar", "relax"), num_seeds=1, num_steps=5000, variance_every=10))
    cfg.train.update(dict(num_steps=5000, log_every=100, ckpt_every=1000, eval_every=1000))

    if variant == "toy":
        pass
    elif variant == "smoke":
        cfg.eval.variance_samples = 64
        cfg.figure.update(dict(num_steps=40, variance_every=10))
        cfg.train.update(dict(num_steps=20, log_every=5, ckpt_every=10, eval_every=0, progress=False))
    else:
        raise ValueError(f"unknown relax variant {variant!r}; expected 'toy' or 'smoke'")
    return cfg
