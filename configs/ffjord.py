"""FFJORD configs. Variants: each toy density (the paper's toy setting), each tabular set (the
per-dataset settings of the FFJORD runs), tabular_default (offline), mnist, cifar10, digits
(offline multiscale), smoke (seconds on one CPU core).

    jaxebm train --config configs/ffjord.py:8gaussians --workdir runs/ffjord_8g
"""

import ml_collections

from jaxebm.train.config import base_config

TOY = ("swissroll", "circles", "rings", "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard")
# dataset: (activation, hidden layers, width factor x D, blocks, batch, layer type)
TABULAR = {
    "power": ("tanh", 3, 10, 5, 10000, "concat"),
    "gas": ("tanh", 3, 20, 5, 1000, "concat"),
    "hepmass": ("softplus", 2, 10, 10, 10000, "concat"),
    "miniboone": ("softplus", 2, 20, 1, 1000, "concat"),
    "bsds300": ("tanh", 3, 20, 2, 10000, "concatsquash"),
    "tabular_default": ("softplus", 2, 10, 1, 100, "concatsquash"),
}
TABULAR_DIMS = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63,
                "tabular_default": 30}


def get_config(arg=None):
    variant = arg or "8gaussians"
    cfg = base_config("ffjord")
    cfg.model = ml_collections.ConfigDict(dict(
        kind="flat", hidden=(64, 64, 64), layer_type="concatsquash", activation="tanh",
        n_blocks=1, init_end_time=0.5, train_end_time=True, trace="exact",
        n_scales=2, logit_alpha=1e-6,
    ))
    cfg.solver = ml_collections.ConfigDict(dict(
        name="dopri5", rtol=1e-5, atol=1e-5, adjoint="recursive", max_steps=1000, checkpoints=0))
    cfg.reg = ml_collections.ConfigDict(dict(kinetic=0.0, jac_frobenius=0.0))
    cfg.eval = ml_collections.ConfigDict(dict(
        split="test", trace="exact", rtol=1e-5, atol=1e-5, batch_size=1000, max_examples=0,
        num_plot_samples=20000, grid_size=100, plot_bound=4.0))
    cfg.optim.learning_rate = 1e-3
    cfg.optim.weight_decay = 1e-5

    if variant in TOY:
        cfg.data.name = variant
        cfg.data.batch_size = 100
        cfg.data.eval_size = 20000
        cfg.train.num_steps = 10000
        cfg.train.log_every = 100
        cfg.train.ckpt_every = 1000
        cfg.train.eval_every = 1000
    elif variant in TABULAR:
        act, nhidden, factor, blocks, batch, layer = TABULAR[variant]
        width = factor * TABULAR_DIMS[variant]
        cfg.data.name = variant
        cfg.data.batch_size = batch
        cfg.model.update(dict(hidden=(width,) * nhidden, activation=act, n_blocks=blocks,
                              layer_type=layer, init_end_time=1.0, trace="rademacher"))
        cfg.solver.update(dict(rtol=1e-6, atol=1e-8))
        cfg.eval.update(dict(rtol=1e-6, atol=1e-8, num_plot_samples=1000))
        cfg.optim.weight_decay = 1e-6
        cfg.train.num_steps = 100000
        cfg.train.log_every = 100
        cfg.train.ckpt_every = 2000
        cfg.train.eval_every = 5000
        if variant == "tabular_default":
            cfg.eval.trace = "exact"
            cfg.train.num_steps = 5000
            cfg.train.eval_every = 1000
            cfg.solver.update(dict(rtol=1e-5, atol=1e-5))
            cfg.eval.update(dict(rtol=1e-5, atol=1e-5))
    elif variant in ("mnist", "cifar10", "digits"):
        cfg.data.name = variant
        cfg.data.batch_size = 200
        cfg.model.update(dict(kind="multiscale", hidden=(64, 64, 64), layer_type="concat",
                              activation="softplus", n_blocks=2, init_end_time=1.0,
                              trace="rademacher", n_scales=3))
        cfg.solver.name = "tsit5"
        cfg.eval.update(dict(trace="rademacher", batch_size=200, num_plot_samples=100))
        cfg.optim.update(dict(weight_decay=0.0, warmup_steps=1000))
        cfg.train.num_steps = 100000
        cfg.train.log_every = 50
        cfg.train.ckpt_every = 1000
        cfg.train.eval_every = 5000
        if variant == "digits":
            cfg.model.update(dict(hidden=(32, 32), n_scales=2, n_blocks=1))
            cfg.data.batch_size = 100
            cfg.eval.batch_size = 180
            cfg.optim.warmup_steps = 100
            cfg.train.num_steps = 3000
            cfg.train.eval_every = 1000
    elif variant == "smoke":
        cfg.data.name = "8gaussians"
        cfg.data.batch_size = 64
        cfg.data.eval_size = 512
        cfg.model.hidden = (16, 16)
        cfg.solver.update(dict(rtol=1e-3, atol=1e-3))
        cfg.eval.update(dict(rtol=1e-3, atol=1e-3, batch_size=256, num_plot_samples=512,
                             grid_size=32))
        cfg.train.update(dict(num_steps=20, log_every=5, ckpt_every=10, progress=False))
    else:
        raise ValueError(f"unknown ffjord variant {variant!r}; expected one of "
                         f"{TOY + tuple(TABULAR) + ('mnist', 'cifar10', 'digits', 'smoke')}")
    return cfg
