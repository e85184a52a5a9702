r"""RELAX (Grathwohl et al. 2018, "Backpropagation through the Void"): the toy experiment.

Minimize :math:`\mathbb{E}_{b \sim \mathrm{Bernoulli}(\theta)}[\frac1L\sum_i (b_i - t)^2]` over
the logits of :math:`\theta` (init 0, so :math:`\theta = 0.5`), ``t = 0.499``, one sample per
step, as in the paper's ``toy.py``. Each step, with the estimator chosen by ``config.estimator``:

1. draw ``b``; estimate :math:`g \approx \nabla_{\rm logits}\mathbb{E}[f(b)]` with REINFORCE,
   REBAR (:math:`c = \eta f(\sigma_\lambda(z))`, :math:`\eta` init 1, :math:`\lambda` init 0.5)
   or RELAX (:math:`c_\phi(z) = Q_\phi(\sigma_\lambda(z))`, ``Q`` a 10-unit tanh net on
   :math:`2\sigma_\lambda(z) - 1` whose linear output is multiplied by a learned scale
   initialised at 0, so RELAX starts as REINFORCE: the paper's TF toy, ``rebar_toy.py`` with
   ``relaxed="super"``; ``toy.relax_cv="f_plus_q"`` gives its ``relaxed=True`` variant
   :math:`f(\sigma_\lambda(z)) + Q_\phi(\sigma_\lambda(z))` and ``toy.q_learned_scale=False``
   drops the scale);
2. logits ``<- Adam(g)`` (``optim``) and, for REBAR/RELAX, the control variate's parameters
   ``<- Adam(d g^2 / d phi)`` (``cv_optim``), both at the paper's learning rate 0.01 (the toy
   config sets the logits' beta2 to 0.99, see ``configs/relax.py``). The variance gradient never
   enters the logits' update.

The reported ``loss`` is the exact expected loss :math:`\theta(1-t)^2 + (1-\theta)t^2`
(averaged over latents), as the paper plots. Evaluation adds the estimator's variance at the
current parameters from ``eval.variance_samples`` draws. ``run_toy`` runs a whole training run
as one ``lax.scan`` (the same step, the same keys as ``jaxebm train``), measuring the variance
every ``variance_every`` steps; ``write_figures`` uses it to draw the paper's first figure (loss
and log10 variance over steps for REINFORCE, REBAR and RELAX).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxebm.estimators import black_box as est
from jaxebm.estimators.relaxations import bernoulli_soft, bernoulli_hard, bernoulli_reparameterize, uniform_open
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer

ESTIMATORS = ("reinforce", "rebar", "relax")
# RELAX toy control variates: Q alone (the paper's figure, TF relaxed="super") or f(sigma) + Q.
RELAX_CONTROL_VARIATES = ("q", "f_plus_q")


def _validate(cfg: ml_collections.ConfigDict) -> None:
    if cfg.experiment != "toy":
        raise ValueError(
            f"experiment={cfg.experiment!r}: method 'relax' runs the toy only; the discrete VAE is "
            "method 'relax_vae' (configs/relax.py:vae_linear, vae_linear2, vae_nonlinear) and "
            "CartPole is method 'relax_rl' (configs/relax.py:cartpole)"
        )
    if cfg.estimator not in ESTIMATORS:
        raise ValueError(f"estimator={cfg.estimator!r}: expected one of {ESTIMATORS}")
    t = cfg.toy
    for field in ("num_latents", "batch_size", "hidden"):
        if not (isinstance(t[field], int) and t[field] > 0):
            raise ValueError(f"toy.{field} must be a positive integer, got {t[field]!r}")
    if not t.init_temperature > 0:
        raise ValueError(f"toy.init_temperature must be > 0, got {t.init_temperature}")
    if t.relax_cv not in RELAX_CONTROL_VARIATES:
        raise ValueError(f"toy.relax_cv={t.relax_cv!r}: expected one of {RELAX_CONTROL_VARIATES}")
    unknown = [name for name in cfg.figure.estimators if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"figure.estimators has unknown names {unknown}; expected some of {ESTIMATORS}")
    if not (isinstance(cfg.eval.variance_samples, int) and cfg.eval.variance_samples > 1):
        raise ValueError(f"eval.variance_samples must be an integer > 1, got {cfg.eval.variance_samples!r}")


def _glorot(key: jax.Array, n_in: int, n_out: int) -> jax.Array:
    """Glorot-uniform weights, TensorFlow's dense-layer default that the paper's toy used."""
    limit = float(np.sqrt(6.0 / (n_in + n_out)))
    return jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit)


def q_func(net: dict, soft: jax.Array) -> jax.Array:
    """The toy's surrogate Q(sigma): dense tanh layer on 2 sigma - 1, then a linear scalar,
    times the learned output scale ``net["scale"]`` where the net has one."""
    h = jnp.tanh((2.0 * soft - 1.0) @ net["w1"] + net["b1"])
    out = (h @ net["w2"] + net["b2"])[0]
    if "scale" in net:
        # With the scale at 0 the net's weights get no variance gradient at first; the scale
        # grows from 0 and the net follows (TF toy: q_scale, constant initializer 0).
        out = net["scale"][0] * out
    return out


def make_relax_control_variate(f, form: str = "q"):
    """c_phi(z) = Q_phi(sigma_lambda(z)) (``"q"``) or f(sigma_lambda(z)) + Q_phi(sigma_lambda(z))
    (``"f_plus_q"``), with lambda = exp(log_temperature) learned too."""
    if form not in RELAX_CONTROL_VARIATES:
        raise ValueError(f"relax control variate {form!r}: expected one of {RELAX_CONTROL_VARIATES}")

    def control_variate(cv: dict, z: jax.Array) -> jax.Array:
        soft = bernoulli_soft(z, jnp.exp(cv["log_temperature"]))
        q = q_func(cv["net"], soft)
        return f(soft) + q if form == "f_plus_q" else q

    return control_variate


class Toy:
    """The toy problem for one estimator: state init, the step, and the variance probe."""

    def __init__(self, cfg: ml_collections.ConfigDict, estimator: str):
        self.cfg = cfg
        self.estimator = estimator
        self.t = cfg.toy
        self.target = jnp.full((self.t.num_latents,), self.t.target, jnp.float32)
        self.opt_theta = make_optimizer(cfg.optim)
        self.opt_cv = make_optimizer(cfg.cv_optim, "cv_optim")
        self.relax_cv = make_relax_control_variate(self.f, self.t.relax_cv)

    # ------------------------------------------------------------------------- the objective

    def f(self, b: jax.Array) -> jax.Array:
        return jnp.mean((b - self.target) ** 2)

    def expected_loss(self, logits: jax.Array) -> jax.Array:
        p = jax.nn.sigmoid(logits)
        return jnp.mean(p * (1.0 - self.target) ** 2 + (1.0 - p) * self.target**2)

    # ----------------------------------------------------------------------------- the state

    def init(self, key: jax.Array) -> dict:
        t = self.t
        logits = jnp.full((t.num_latents,), t.init_logit, jnp.float32)
        log_temperature = jnp.log(jnp.asarray(t.init_temperature, jnp.float32))
        if self.estimator == "rebar":
            cv = {"eta": jnp.asarray(t.init_eta, jnp.float32), "log_temperature": log_temperature}
        elif self.estimator == "relax":
            k1, k2 = jax.random.split(key)
            net = {
                "w1": _glorot(k1, t.num_latents, t.hidden),
                "b1": jnp.zeros((t.hidden,), jnp.float32),
                "w2": _glorot(k2, t.hidden, 1),
                "b2": jnp.zeros((1,), jnp.float32),
            }
            if t.q_learned_scale:
                net["scale"] = jnp.full((1,), t.q_scale_init, jnp.float32)
            cv = {"net": net, "log_temperature": log_temperature}
        else:
            cv = {}
        return {
            "logits": logits,
            "cv": cv,
            "opt_theta": self.opt_theta.init(logits),
            "opt_cv": self.opt_cv.init(cv),
        }

    # ------------------------------------------------------------------------------ the step

    def estimate(self, logits: jax.Array, cv: dict, key: jax.Array):
        """``(g, d||g||^2/d cv)`` from ``toy.batch_size`` samples (REINFORCE: no cv gradient)."""
        n = self.t.batch_size
        shared = self.t.shared_noise
        if self.estimator == "reinforce":
            return est.reinforce(self.f, logits, key=key, num_samples=n), {}
        if self.estimator == "rebar":
            g, (d_eta, d_log_temperature) = est.rebar_with_cv_grad(
                self.f, logits, cv["eta"], cv["log_temperature"], key=key, num_samples=n, shared_noise=shared
            )
            return g, {"eta": d_eta, "log_temperature": d_log_temperature}
        return est.relax_with_cv_grad(
            self.f, self.relax_cv, cv, logits, key=key, num_samples=n, shared_noise=shared
        )

    def train_step(self, state: dict, batch: Any, key: jax.Array) -> tuple[dict, dict]:
        g, d_cv = self.estimate(state["logits"], state["cv"], key)
        updates, opt_theta = self.opt_theta.update(g, state["opt_theta"], state["logits"])
        logits = optax.apply_updates(state["logits"], updates)
        cv_updates, opt_cv = self.opt_cv.update(d_cv, state["opt_cv"], state["cv"])
        cv = optax.apply_updates(state["cv"], cv_updates)
        metrics = {
            "loss": self.expected_loss(logits),
            "theta": jnp.mean(jax.nn.sigmoid(logits)),
            "grad_sq": jnp.mean(g**2),
        }
        if self.estimator != "reinforce":
            metrics["temperature"] = jnp.exp(cv["log_temperature"])
        return {"logits": logits, "cv": cv, "opt_theta": opt_theta, "opt_cv": opt_cv}, metrics

    def gradient_variance(self, state: dict, key: jax.Array) -> jax.Array:
        """Var[g] at the current parameters (mean over latents) from ``eval.variance_samples``."""
        keys = jax.random.split(key, self.cfg.eval.variance_samples)
        g = jax.vmap(lambda k: self.estimate(state["logits"], state["cv"], k)[0])(keys)
        return jnp.mean(jnp.var(g, axis=0))


# ------------------------------------------------------------------------------- whole runs


def run_toy(
    cfg: ml_collections.ConfigDict,
    estimator: str,
    num_steps: int,
    variance_every: int = 0,
):
    """A whole training run as one ``lax.scan``, with the keys ``jaxebm train`` would use.

    Returns a jitted ``run(seed) -> (final_state, trace)``: ``trace["loss"]`` and
    ``trace["theta"]`` after every step and, if ``variance_every > 0``, ``trace["log10_var"]``
    after steps ``variance_every, 2 variance_every, ...`` (``num_steps`` rounded down to a
    multiple of it). The seed is an argument, so one compile serves every seed.
    """
    from jaxebm.train.loop import root_key

    toy = Toy(cfg, estimator)

    @jax.jit
    def run(seed):
        root = root_key(seed)
        variance_root = jax.random.fold_in(root, 2**31 - 3)

        def step(state, i):
            state, metrics = toy.train_step(state, None, jax.random.fold_in(root, i))
            return state, (metrics["loss"], metrics["theta"])

        def block(state, start):
            state, (loss, theta) = jax.lax.scan(step, state, start + jnp.arange(variance_every))
            var = toy.gradient_variance(state, jax.random.fold_in(variance_root, start))
            return state, (loss, theta, jnp.log10(var))

        state = toy.init(jax.random.fold_in(root, 2**31 - 2))  # the harness's init key
        if variance_every > 0:
            starts = jnp.arange(num_steps // variance_every) * variance_every
            state, (loss, theta, log_var) = jax.lax.scan(block, state, starts)
            return state, {"loss": loss.reshape(-1), "theta": theta.reshape(-1), "log10_var": log_var}
        state, (loss, theta) = jax.lax.scan(step, state, jnp.arange(num_steps))
        return state, {"loss": loss, "theta": theta}

    return run


def plot_toy(traces: dict[str, list[dict]], variance_every: int, path: Path, target: float) -> Path:
    """The paper's Figure 1: loss and log10 Var[g] over steps, one curve per estimator and seed."""
    from jaxebm.eval import plots  # sets the Agg backend
    import matplotlib.pyplot as plt

    colors = {"reinforce": "tab:blue", "rebar": "tab:orange", "relax": "tab:green"}
    fig, (ax_loss, ax_var) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, runs in traces.items():
        for i, trace in enumerate(runs):
            label = name.upper() if i == 0 else None
            loss = np.asarray(trace["loss"])
            ax_loss.plot(np.arange(1, len(loss) + 1), loss, color=colors.get(name), alpha=0.7, lw=1, label=label)
            if "log10_var" in trace:
                log_var = np.asarray(trace["log10_var"])
                steps = variance_every * np.arange(1, len(log_var) + 1)
                ax_var.plot(steps, log_var, color=colors.get(name), alpha=0.7, lw=1, label=label)
    plots.curve_panels(ax_loss, ax_var, ("step", "loss", f"E[(b - {target})^2]"),
                       ("step", "log10 Var[g]", "gradient variance"))
    return plots.save_figure(fig, path)


# ----------------------------------------------------------------------------------- build


def build(cfg: ml_collections.ConfigDict) -> Method:
    _validate(cfg)
    toy = Toy(cfg, cfg.estimator)
    @jax.jit
    def eval_values(state, key):
        return (
            toy.expected_loss(state["logits"]),
            jnp.mean(jax.nn.sigmoid(state["logits"])),
            toy.gradient_variance(state, key),
        )

    def evaluate(state, key):
        loss, theta, var = (float(x) for x in eval_values(state, key))
        return {
            "loss": loss,
            "theta": theta,
            "grad_var": var,
            "log10_grad_var": float(np.log10(var)) if var > 0 else float("-inf"),
        }

    def sample(state, key, num):
        u = uniform_open(key, (num, cfg.toy.num_latents))
        return np.asarray(bernoulli_hard(bernoulli_reparameterize(state["logits"][None], u)))

    def write_figures(state, key, directory: Path) -> list[Path]:
        f = cfg.figure
        traces = {}
        for name in f.estimators:
            run = run_toy(cfg, name, f.num_steps, f.variance_every)
            traces[name] = [jax.tree.map(np.asarray, run(cfg.seed + s)[1]) for s in range(f.num_seeds)]
        path = plot_toy(traces, f.variance_every, Path(directory) / "toy_loss_variance.png", cfg.toy.target)
        return [path]

    return Method(
        init=toy.init,
        train_step=toy.train_step,
        evaluate=evaluate,
        sample=sample,
        data=None,
        write_figures=write_figures,
    )
