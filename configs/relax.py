"""RELAX configs: the paper's three experiments.

Toy (method ``relax``): ``toy`` (t = 0.499, 5000 steps), ``smoke`` (seconds).

    jaxebm train --config configs/relax.py:toy --workdir runs/relax_toy --config.estimator=relax
    jaxebm train --config configs/relax.py:toy --workdir runs/rebar_toy --config.estimator=rebar

The final evaluation writes samples/toy_loss_variance.png: loss and log10 gradient variance of
REINFORCE, REBAR and RELAX over steps (the paper's first figure), each a whole ``lax.scan`` run.

Discrete VAE (method ``relax_vae``): ``vae_linear``, ``vae_linear2``, ``vae_nonlinear``,
``vae_smoke``; 200 Bernoulli latents, batch 24, Adam(beta2 = .99999); binarized 8x8 digits by
default, binarized MNIST with ``--config.data.name=mnist --config.data.dir=DIR``.

    jaxebm train --config configs/relax.py:vae_linear --workdir runs/vae_relax --config.estimator=relax

CartPole (method ``relax_rl``): ``cartpole`` (A2C or RELAX, 5 seeds vmapped in one run),
``cartpole_smoke``.

    jaxebm train --config configs/relax.py:cartpole --workdir runs/cp_relax --config.estimator=relax
"""

import ml_collections

from jaxebm.train.config import base_config
from jaxebm.train.optim import optim_config


VAE_VARIANTS = {"vae_linear": "linear", "vae_linear2": "linear2", "vae_nonlinear": "nonlinear", "vae_smoke": "linear2"}
RL_VARIANTS = ("cartpole", "cartpole_smoke")


def get_config(arg=None):
    variant = arg or "toy"
    if variant in VAE_VARIANTS:
        return vae_config(variant)
    if variant in RL_VARIANTS:
        return rl_config(variant)
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
        q_learned_scale=True,  # Q's output times a learned scale (TF toy's q_scale)
        q_scale_init=0.0,  # ... initialised at 0: RELAX starts as REINFORCE
        relax_cv="q",  # q: c = Q(sigma_lambda(z)) (paper's figure) | f_plus_q: f(sigma) + Q
        shared_noise=True,  # z~ from z's noise (v_from_u), as the papers' code
    ))
    # The logits: Adam 0.01 with beta2 0.99 for every estimator (the paper's TF code: 0.999, the
    # default). RELAX's estimate has rare spikes while its learned control variate catches up;
    # with a 1000-step second-moment memory each spike shrinks theta's steps long after it, and
    # theta ended below 0.1 on 0 of 20 seeds (median 0.145), with a 100-step memory on 19 of 20
    # (median 0.040); REINFORCE and REBAR do not move it (median 0.47 and 0.46). See
    # benchmarks/README.md, RELAX toy.
    cfg.optim = optim_config(learning_rate=0.01, b2=0.99)
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
        raise ValueError(
            f"unknown relax variant {variant!r}; expected one of "
            f"{('toy', 'smoke', *VAE_VARIANTS, *RL_VARIANTS)}"
        )
    return cfg


def vae_config(variant):
    cfg = base_config("relax_vae")
    cfg.experiment = "vae"
    cfg.estimator = "relax"  # reinforce | rebar | relax
    cfg.vae = ml_collections.ConfigDict(dict(
        model=VAE_VARIANTS[variant],  # linear | linear2 | nonlinear
        num_latents=200,  # Bernoulli latents per layer
        hidden=200,  # tanh units of the nonlinear model's deterministic layers
        cv_hidden=200,  # RELAX's r: ReLU units per layer
        cv_layers=2,  # RELAX's r: hidden layers (the paper tried 2 and 4)
        init_temperature=0.5,  # REBAR/RELAX lambda per layer, learned as log lambda
        init_eta=1.0,  # REBAR/RELAX eta per layer, learned
        shared_noise=True,  # z~ from z's noise (v_from_u), as the papers' code
        binarize_threshold=0.5,  # x = 1[pixel / max > 0.5]
    ))
    cfg.data.update(dict(name="digits", batch_size=24))
    # lr from the paper's grid {5e-3, 1e-3, 5e-4, 1e-4, 5e-5}; Adam beta2 = .99999 (paper code)
    cfg.optim = optim_config(learning_rate=1e-3, b2=0.99999)
    # the control variate: lr scale 1, weight decay 1e-3 on r (the paper's best overall)
    cfg.cv_optim = optim_config(learning_rate=1e-3, b2=0.99999, weight_decay=1e-3)
    cfg.eval = ml_collections.ConfigDict(dict(
        elbo_samples=10,  # ELBO draws per validation/test point
        variance_samples=100,  # gradient draws on one fixed training batch
        chunk=1000,  # evaluation rows per compiled call
    ))
    cfg.train.update(dict(num_steps=3000, log_every=100, ckpt_every=1000, eval_every=500, loss_bound=1e6))
    if variant == "vae_smoke":
        cfg.vae.update(dict(num_latents=6, hidden=8, cv_hidden=8))
        cfg.eval.update(dict(elbo_samples=2, variance_samples=4, chunk=64))
        cfg.train.update(dict(num_steps=6, log_every=3, ckpt_every=3, eval_every=0, progress=False))
    return cfg


def rl_config(variant):
    cfg = base_config("relax_rl")
    cfg.experiment = "cartpole"
    cfg.estimator = "relax"  # a2c | relax
    cfg.rl = ml_collections.ConfigDict(dict(
        num_seeds=5,  # independent runs, vmapped in one step
        max_steps=200,  # CartPole-v0 (500: v1)
        discount=0.99,
        entropy_bonus=0.01,
        hidden=10,  # policy, value and control variate: 2 ReLU layers of this width
        solve_window=100,  # solved: mean return over the last 100 episodes ...
        solve_threshold=195.0,  # ... above this
        init_log_temperature=0.0,  # RELAX's concrete temperature (paper code: log 1)
        shared_noise=False,  # z~ from fresh noise (the RL code's second uniform)
        value_coef=0.5,  # A2C: weight of the value loss (its own Adam makes it a scale only)
    ))
    cfg.data.update(dict(name="", batch_size=1))
    # the paper's grid {0.01, 0.003, 0.001}; Adam beta2 = .99999 as in the RL code's trainer
    cfg.optim = optim_config(learning_rate=0.003, b2=0.99999)
    cfg.cv_optim = optim_config(learning_rate=0.003, b2=0.99999)  # value net / control variate
    cfg.eval = ml_collections.ConfigDict(dict(episodes=20))
    # one step = one episode (one policy update) for every seed
    cfg.train.update(dict(num_steps=2000, log_every=100, ckpt_every=500, eval_every=0, loss_bound=1e8))
    if variant == "cartpole_smoke":
        cfg.rl.update(dict(num_seeds=2, max_steps=30, solve_window=3))
        cfg.eval.episodes = 2
        cfg.train.update(dict(num_steps=4, log_every=2, ckpt_every=2, progress=False))
    return cfg
