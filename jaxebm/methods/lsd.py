r"""LSD (Grathwohl et al., 2020): training energy models by minimizing a learned Stein discrepancy.

For data :math:`p` and a model :math:`q_\theta \propto \exp(g_\theta)` the Stein statistic of a
critic :math:`f_\phi: \mathbb{R}^D \to \mathbb{R}^D` is
:math:`t(x) = \nabla_x g_\theta(x)^\top f_\phi(x) + \operatorname{tr}\,\partial f_\phi/\partial x`,
and the learned Stein discrepancy is the game

.. math::  \min_\theta \max_\phi\; \mathbb{E}_p[t(x)] - \lambda\,\mathbb{E}_p\|f_\phi(x)\|^2 ,

whose inner maximum is :math:`\mathbb{E}_p\|s_q - s_p\|^2 / (4\lambda)`, a Fisher divergence: no
sampling from :math:`q` and no normalizer are needed. The algorithm of the paper's toy experiment,
one optimizer step per training step (so a step here is what the issue counts as a step):

1. ``x`` = a fresh batch of data; the model's score :math:`s_q(x) = \nabla_x g_\theta(x)` by
   autodiff; the trace by Hutchinson's estimator with one Gaussian probe per sample.
2. If ``step % (c_iters + 1) != 0``: one Adam step of the critic on
   ``-mean(t) + l2 * mean|f|^2`` (``c_iters`` = 5 critic steps ...).
3. Else: one Adam step of the energy on ``mean(t)`` with the critic fixed (... then one model step:
   steps 0, 6, 12, ... update the model, as the reference's ``itr % (c_iters + 1) == 0``).

The branch is a ``lax.cond`` on a step counter held in the state, so each harness step is exactly
one optimizer step of one of the two networks (``lsd.steps_per_call = k > 1`` runs k of them per
harness step, each on its own fresh batch: the same algorithm with the harness's per-step
overhead paid once per k steps; ``train.num_steps`` then counts calls). Inside such a call the
whole cycles (a model step, then ``c_iters`` critic steps) run without the branch, and the model's
scores for a cycle's ``c_iters`` critic batches, all taken at the energy that cycle's model step
left, come from one pass over the stacked batches; only the partial cycles at either end of the
call take the branch. The
energy is a 2-300-300-1 Swish MLP plus, with ``model.base_dist``, a learned diagonal Gaussian log
density initialized at the mean and standard deviation of 1000 data points. In the model step
:math:`s_q^\top f` is computed forwards, as the derivative of :math:`\log \tilde q` along
:math:`f` (one JVP), rather than by differentiating the score a second time.

Evaluation: the test NLL with the normalizer from the midpoint rule on a grid
(:func:`jaxebm.eval.grid.grid_nll`) over ``[-grid_bound, grid_bound]^2`` (``nll``) and over the
smaller ``compare_bounds`` boxes with the same cells (``nll_box4``: a box that drops the model's
mass outside it reads lower). With ``model.ema_decay > 0`` the evaluated energy (``nll``,
samples, figures) is a bias-corrected moving average of the energy's parameters, updated after
each model step (not part of the paper; the raw parameters' NLL is ``nll_raw``); the LSD estimate
on test data with the exact trace is always the raw energy's, against the current critic.
Sampling: exact draws from the grid-normalized density (a cell by its
probability, then uniformly within the cell), i.e. from the model restricted to the plotting box
and discretized to its cells; no Markov chain, so no chain bias.

Other experiments of the paper are built here too, chosen by ``config.experiment``:
``rbm_test`` (the goodness-of-fit test, :mod:`jaxebm.methods.lsd_gof`) and ``ica``
(:mod:`jaxebm.methods.lsd_ica`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxebm import data as data_lib
from jaxebm.estimators.divergence import sample_probe
from jaxebm.eval import grid as grid_lib
from jaxebm.eval import plots
from jaxebm.nn.swish import INITS, SmallMLP
from jaxebm.stein import SteinTerms, critic_loss, power_critic_loss, stein_statistic
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer

Array = jax.Array
EXPERIMENTS = ("toy", "rbm_test", "ica")
TRACES = ("exact", "gaussian", "rademacher")
CRITIC_OBJECTIVES = ("stein", "power")


# --------------------------------------------------------------------------------------------
# Pieces shared by the LSD experiments
# --------------------------------------------------------------------------------------------


def batched_stein_terms(
    critic: Callable[[Array], Array], x: Array, score: Array, eps: Array
) -> SteinTerms:
    """Stein terms of a *row-wise* batched critic ``F: (n, D) -> (n, D)``, Hutchinson trace.

    One JVP of the batched critic along the probes ``eps`` gives every row's ``J_i eps_i``
    because row ``i`` of ``F(X)`` depends on ``x_i`` only (an MLP, with dropout masks drawn per
    row); this is :func:`jaxebm.stein.stein_statistic` with ``trace='gaussian'`` without the
    per-sample ``vmap``, and it lets the critic draw a different dropout mask for every row.
    """
    fx, jeps = jax.jvp(critic, (x,), (eps,))
    if fx.shape != x.shape:
        raise ValueError(f"the critic must map x to its own shape; got {fx.shape} for {x.shape}")
    stat = jnp.sum(score * fx, axis=1) + jnp.sum(eps * jeps, axis=1)
    return SteinTerms(stat=stat, sq_norm=jnp.sum(fx * fx, axis=1))


def critic_loss_fn(objective: str, l2: float, num_const: float = 1e-6):
    """The critic's loss (minimized): ``-mean(t) + l2 |f|^2`` or ``-mean/std + l2 |f|^2``."""
    if objective == "stein":
        return lambda terms: critic_loss(terms, l2)
    if objective == "power":
        return lambda terms: power_critic_loss(terms, l2, num_const=num_const)
    raise ValueError(f"lsd.critic_objective={objective!r}: expected one of {CRITIC_OBJECTIVES}")


def check_choice(value, choices, field: str) -> None:
    if value not in choices:
        raise ValueError(f"{field}={value!r}: expected one of {tuple(choices)}")


def check_positive(value, field: str, *, integer: bool = False) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(
        value, (int, float)) and not isinstance(value, bool)
    if not ok or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{field} must be {kind}, got {value!r}")


def build(cfg: ml_collections.ConfigDict) -> Method:
    experiment = cfg.get("experiment", "toy")
    check_choice(experiment, EXPERIMENTS, "experiment")
    if experiment == "rbm_test":
        from jaxebm.methods import lsd_gof

        return lsd_gof.build(cfg)
    if experiment == "ica":
        from jaxebm.methods import lsd_ica

        return lsd_ica.build(cfg)
    return build_toy(cfg)


# --------------------------------------------------------------------------------------------
# The energy model: an MLP plus an optional learned Gaussian base density
# --------------------------------------------------------------------------------------------


class EBM(nnx.Module):
    """``log q~(x) = g(x) + [log N(x; mu, diag(exp(log_std))^2)]`` (the bracket with a base)."""

    def __init__(self, dim: int, model: ml_collections.ConfigDict, mu: np.ndarray,
                 std: np.ndarray, *, rngs: nnx.Rngs):
        self.net = SmallMLP(dim, 1, hidden=model.hidden, n_hidden=model.n_hidden,
                            init=model.init, rngs=rngs)
        self.use_base = bool(model.base_dist)
        self.base_mu = nnx.Param(jnp.asarray(mu, jnp.float32))
        self.base_log_std = nnx.Param(jnp.log(jnp.asarray(std, jnp.float32)))

    def _base(self, x: Array) -> tuple[Array, Array]:
        """``(log N(x), grad_x log N(x))`` of the base density."""
        mu, log_std = self.base_mu[...], self.base_log_std[...]
        inv_var = jnp.exp(-2.0 * log_std)[None, :]
        d = x - mu[None, :]
        log_norm = jnp.sum(log_std) + 0.5 * x.shape[1] * math.log(2.0 * math.pi)
        return -0.5 * jnp.sum(d * d * inv_var, axis=1) - log_norm, -d * inv_var

    def __call__(self, x: Array) -> Array:
        out = self.net(x)
        return out + self._base(x)[0] if self.use_base else out

    def jvp(self, x: Array, v: Array) -> tuple[Array, Array]:
        """``(log q~(x), grad_x log q~(x) . v)`` per row: the Stein term ``s_q^T v`` forwards."""
        out, dout = self.net.jvp(x, v)
        if not self.use_base:
            return out, dout
        base, grad = self._base(x)
        return out + base, dout + jnp.sum(grad * v, axis=1)


class Flat:
    """A module's parameters as one flat float32 vector, and back.

    The training state holds each network as one vector (and Adam's moments as two more): the
    harness's guard (``where`` + finiteness check per state leaf) and Adam then run as a few
    fused loops instead of one small kernel per leaf, which at these sizes on the CPU was a
    large part of a step. Built from ``make()`` abstractly (``nnx.eval_shape``): no arrays are
    created, so building a method compiles nothing.
    """

    def __init__(self, make: Callable[[], nnx.Module]):
        self.graphdef, abstract = nnx.split(nnx.eval_shape(make))
        leaves, self._treedef = jax.tree.flatten(abstract)
        if any(leaf.dtype != jnp.float32 for leaf in leaves):
            raise ValueError("Flat holds float32 parameters only")
        self._shapes = [tuple(leaf.shape) for leaf in leaves]
        self._offsets = np.cumsum([0] + [math.prod(shape) for shape in self._shapes])
        self.size = int(self._offsets[-1])

    def unravel(self, flat: Array):
        leaves = [flat[a:b].reshape(shape)
                  for a, b, shape in zip(self._offsets[:-1], self._offsets[1:], self._shapes)]
        return jax.tree.unflatten(self._treedef, leaves)

    def module(self, flat: Array):
        return nnx.merge(self.graphdef, self.unravel(flat))

    @staticmethod
    def of(module: nnx.Module) -> Array:
        """The flat vector of a (concrete) module's parameters, in ``Flat``'s order."""
        return jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree.leaves(nnx.split(module)[1])])


def check_critic(cfg: ml_collections.ConfigDict, traces: tuple[str, ...] = TRACES[1:]) -> None:
    """Checks the critic fields every LSD experiment shares: its net, trace, objective, l2 and,
    where the model trains too, ``lsd.c_iters``."""
    check_choice(cfg.critic.init, INITS, "critic.init")
    for field in ("hidden", "n_hidden"):
        check_positive(cfg.critic[field], f"critic.{field}", integer=True)
    check_choice(cfg.lsd.trace, traces, "lsd.trace")
    check_choice(cfg.lsd.critic_objective, CRITIC_OBJECTIVES, "lsd.critic_objective")
    if cfg.lsd.l2 < 0:
        raise ValueError(f"lsd.l2 must be >= 0, got {cfg.lsd.l2}")
    if "c_iters" in cfg.lsd and not (isinstance(cfg.lsd.c_iters, int) and cfg.lsd.c_iters >= 0):
        raise ValueError(f"lsd.c_iters must be an integer >= 0, got {cfg.lsd.c_iters!r}")


def _validate_toy(cfg: ml_collections.ConfigDict, ds) -> None:
    if tuple(ds.example_shape) != (2,):
        raise ValueError(f"the LSD toy experiment needs 2-D data; data.name={cfg.data.name!r} "
                         f"has examples of shape {ds.example_shape}")
    check_choice(cfg.model.init, INITS, "model.init")
    check_critic(cfg)
    check_positive(cfg.lsd.steps_per_call, "lsd.steps_per_call", integer=True)
    for field in ("hidden", "n_hidden"):
        check_positive(cfg.model[field], f"model.{field}", integer=True)
    check_positive(cfg.model.init_size, "model.init_size", integer=True)
    if not 0.0 <= cfg.model.ema_decay < 1.0:
        raise ValueError(f"model.ema_decay must be in [0, 1), got {cfg.model.ema_decay}")
    if not cfg.model.get("ema_warmup", 0.0) >= 0.0:
        raise ValueError(f"model.ema_warmup must be >= 0, got {cfg.model.ema_warmup}")
    for field in ("grid_bound", "plot_bound"):
        check_positive(cfg.eval[field], f"eval.{field}")
    for field in ("grid_size", "plot_grid_size", "num_plot_samples", "stein_examples", "chunk"):
        check_positive(cfg.eval[field], f"eval.{field}", integer=True)


def build_toy(cfg: ml_collections.ConfigDict) -> Method:
    ds = data_lib.load(cfg.data, seed=cfg.seed)
    _validate_toy(cfg, ds)
    per_call = cfg.lsd.steps_per_call
    # With several optimizer steps per harness step, the harness's batch holds all of their
    # batches: per_call * data.batch_size fresh points, split in order inside the step.
    train_ds = ds if per_call == 1 else data_lib.load(
        ml_collections.ConfigDict(dict(cfg.data.to_dict(), batch_size=per_call * cfg.data.batch_size)),
        seed=cfg.seed)
    dim = 2
    lsd = cfg.lsd
    # The base density starts at the moments of init_size data points (unbiased std, as torch).
    init_x = ds.split("train")["x"][: cfg.model.init_size]
    mu, std = init_x.mean(0), init_x.std(0, ddof=1)

    def make_ebm(rngs):
        return EBM(dim, cfg.model, mu, std, rngs=rngs)

    def make_critic(rngs):
        return SmallMLP(dim, dim, hidden=cfg.critic.hidden, n_hidden=cfg.critic.n_hidden,
                        init=cfg.critic.init, rngs=rngs)

    ebm_flat = Flat(lambda: make_ebm(nnx.Rngs(0)))
    critic_flat = Flat(lambda: make_critic(nnx.Rngs(0)))
    model_opt = make_optimizer(cfg.optim)
    critic_opt = make_optimizer(cfg.critic_optim, "critic_optim")
    c_loss = critic_loss_fn(lsd.critic_objective, lsd.l2)
    cycle = lsd.c_iters + 1
    ema_decay = float(cfg.model.ema_decay)
    ema_warmup = float(cfg.model.get("ema_warmup", 0.0))

    def log_q(ebm_params, x):
        return ebm_flat.module(ebm_params)(x)

    def model_score(ebm_params, x):
        return jax.grad(lambda z: jnp.sum(log_q(ebm_params, z)))(x)

    def init(key):
        k_ebm, k_critic = jax.random.split(key)
        ebm_params = Flat.of(make_ebm(nnx.Rngs(k_ebm)))
        critic_params = Flat.of(make_critic(nnx.Rngs(k_critic)))
        state = {"ebm": ebm_params, "critic": critic_params,
                 "ebm_opt": model_opt.init(ebm_params),
                 "critic_opt": critic_opt.init(critic_params), "step": jnp.zeros((), jnp.int32)}
        if ema_decay:  # zero-started average and its weight, for the bias-corrected mean
            state.update(ebm_ema=jnp.zeros_like(ebm_params), ema_weight=jnp.zeros((), jnp.float32))
        return state

    def critic_update(state, x, eps):
        # The model's score enters as data: reverse mode, one backward pass of the energy.
        return critic_update_at(state, x, eps, model_score(state["ebm"], x))

    def critic_update_at(state, x, eps, sq):
        """One critic step given the model's score ``sq`` at ``x`` (a constant here)."""
        sq = jax.lax.stop_gradient(sq)

        def loss_fn(cp):
            fx, jeps = critic_flat.module(cp).jvp(x, eps)
            terms = SteinTerms(stat=jnp.sum(sq * fx, 1) + jnp.sum(eps * jeps, 1),
                               sq_norm=jnp.sum(fx * fx, 1))
            return c_loss(terms), terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["critic"])
        updates, opt = critic_opt.update(grads, state["critic_opt"], state["critic"])
        new = dict(state, critic=optax.apply_updates(state["critic"], updates), critic_opt=opt)
        return new, {"lsd": jnp.mean(terms.stat), "critic_loss": loss,
                     "sq_norm": jnp.mean(terms.sq_norm)}

    def model_update(state, x, eps):
        fx, jeps = critic_flat.module(state["critic"]).jvp(x, eps)
        trace = jnp.sum(eps * jeps, 1)  # constant in the energy's parameters
        sq_norm = jnp.sum(fx * fx, 1)

        def loss_fn(ep):
            # s_q(x)^T f(x) is the derivative of log q~ along f: one forward-mode product.
            _, sq_f = ebm_flat.module(ep).jvp(x, fx)
            stat = sq_f + trace
            return jnp.mean(stat), stat

        (loss, stat), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["ebm"])
        updates, opt = model_opt.update(grads, state["ebm_opt"], state["ebm"])
        new = dict(state, ebm=optax.apply_updates(state["ebm"], updates), ebm_opt=opt)
        if ema_decay:
            # the t-th model step (t = 0, 1, ...) averages with decay min(ema_decay,
            # (1 + t) / (ema_warmup + t)): a short memory early, while the energy moves fast
            t = (state["step"] // cycle).astype(jnp.float32)
            d = jnp.minimum(ema_decay, (1.0 + t) / (ema_warmup + t)) if ema_warmup else ema_decay
            new["ebm_ema"] = d * state["ebm_ema"] + (1.0 - d) * new["ebm"]
            new["ema_weight"] = d * state["ema_weight"] + (1.0 - d)
        return new, {"lsd": loss, "critic_loss": c_loss(SteinTerms(stat, sq_norm)),
                     "sq_norm": jnp.mean(sq_norm)}

    def optimizer_step(state, x, key, eps=None):
        if eps is None:
            eps = sample_probe(key, x.shape, lsd.trace, dtype=x.dtype)
        is_model_step = (state["step"] % cycle) == 0
        new, metrics = jax.lax.cond(is_model_step, model_update, critic_update, state, x, eps)
        new["step"] = state["step"] + 1
        return new, dict(metrics, model_step=is_model_step.astype(jnp.float32))

    def cycle_step(state, xs, eps):
        """One model step then ``c_iters`` critic steps, from a state whose counter is a multiple
        of ``c_iters + 1``: the steps ``optimizer_step`` takes at those counters, with no branch,
        and with the model's scores at the critic steps' batches (all taken with the energy this
        model step leaves) computed in one pass over their stacked points. Returns the state and
        the sum of the steps' metrics."""
        state, total = model_update(state, xs[0], eps[0])
        if lsd.c_iters > 0:
            xc = xs[1:]
            scores = model_score(state["ebm"], xc.reshape(-1, xc.shape[-1])).reshape(xc.shape)
            state, m_critic = jax.lax.scan(lambda s, a: critic_update_at(s, *a), state,
                                           (xc, eps[1:], scores))
            total = jax.tree.map(lambda a, b: a + jnp.sum(b), total, m_critic)
        return state, dict(total, model_step=jnp.ones((), jnp.float32))

    def multi_step(state, xs, keys):
        """``k = len(xs)`` optimizer steps from any counter ``s0``: the steps before the next
        multiple of the cycle one at a time (``h = -s0 mod cycle`` of them, 0 to ``c_iters``),
        then ``(k - c_iters) // cycle`` whole cycles by ``cycle_step``, then the rest one at a
        time; the same steps, in order, as ``k`` calls of ``optimizer_step``."""
        k = xs.shape[0]
        eps = jax.vmap(lambda kk, x: sample_probe(kk, x.shape, lsd.trace, dtype=x.dtype))(keys, xs)
        zero = {name: jnp.zeros((), jnp.float32)
                for name in ("lsd", "critic_loss", "sq_norm", "model_step")}

        def single(i, carry):
            s, total = carry
            s, m = optimizer_step(s, xs[i], keys[i], eps=eps[i])
            return s, jax.tree.map(jnp.add, total, m)

        s0 = state["step"]
        head = jnp.minimum((-s0) % cycle, k)
        n_mid = max(0, (k - lsd.c_iters) // cycle)
        state, total = jax.lax.fori_loop(0, head, single, (state, zero))
        if n_mid:
            def body(carry, j):
                s, tot = carry
                at = head + j * cycle
                cut = lambda a: jax.lax.dynamic_slice_in_dim(a, at, cycle)  # noqa: E731
                s, m = cycle_step(dict(s, step=s0 + at), cut(xs), cut(eps))
                return (s, jax.tree.map(jnp.add, tot, m)), None

            (mid_state, total), _ = jax.lax.scan(body, (state, total), jnp.arange(n_mid))
            state = dict(mid_state, step=s0 + head + n_mid * cycle)
        state, total = jax.lax.fori_loop(head + n_mid * cycle, k, single, (state, total))
        return state, jax.tree.map(lambda v: v / k, total)

    def train_step(state, batch, key):
        x = batch["x"]
        if per_call == 1:
            new, metrics = optimizer_step(state, x, key)
        else:  # per_call optimizer steps, each on its own slice of the batch (metrics averaged)
            xs = x.reshape(per_call, x.shape[0] // per_call, *x.shape[1:])
            new, metrics = multi_step(state, xs, jax.random.split(key, per_call))
        return new, dict(metrics, loss=metrics["lsd"])

    # ---------------------------------------------------------------- evaluation and sampling

    def batched_log_q(ebm_params):
        return lambda x: log_q(ebm_params, x)

    g = cfg.eval
    # the comparison boxes keep the cell size of the main grid
    boxes = [(float(g.grid_bound), g.grid_size)] + [
        (float(b), max(1, round(g.grid_size * float(b) / float(g.grid_bound))))
        for b in g.compare_bounds]

    @jax.jit
    def _evaluate(ebm_params, critic_params, test):
        nlls = [grid_lib.grid_nll(batched_log_q(ebm_params), test, (-b, b), n, chunk=g.chunk)
                for b, n in boxes]
        x = test[: g.stein_examples]
        critic = critic_flat.module(critic_params)
        per_sample = lambda xi: critic(xi[None])[0]  # noqa: E731
        terms = stein_statistic(per_sample, x, model_score(ebm_params, x), trace="exact")
        return nlls, jnp.mean(terms.stat), jnp.mean(terms.sq_norm)

    def reported(state):
        """The evaluated energy: the bias-corrected average with ``model.ema_decay > 0`` (the
        raw parameters before the first model step), else the trained parameters."""
        if not ema_decay:
            return state["ebm"]
        w = state["ema_weight"]
        return jnp.where(w > 0, state["ebm_ema"] / jnp.maximum(w, 1e-12), state["ebm"])

    def evaluate(state, key):
        del key  # deterministic: grid quadrature and the exact trace
        test = ds.split("test")["x"]
        nlls, lsd_test, sq_norm = _evaluate(state["ebm"], state["critic"], jnp.asarray(test))
        out = {}
        out["lsd_test"] = float(lsd_test)
        out["critic_sq_norm"] = float(sq_norm)
        if ema_decay:  # the reported model is the average; the raw energy's NLLs as nll_raw
            nlls_raw = nlls
            nlls, _, _ = _evaluate(reported(state), state["critic"], jnp.asarray(test))
            out["nll_raw"] = float(nlls_raw[0])
            for (b, _), v in zip(boxes[1:], nlls_raw[1:]):
                out[f"nll_raw_box{b:g}"] = float(v)
        out["nll"] = float(nlls[0])
        for (b, _), v in zip(boxes[1:], nlls[1:]):  # the same on smaller boxes
            out[f"nll_box{b:g}"] = float(v)
        if cfg.data.name in data_lib.TOY_LOG_DENSITIES:  # the true density's NLL, the floor
            out["true_nll"] = float(-np.mean(data_lib.TOY_LOG_DENSITIES[cfg.data.name](test)))
        out["optimizer_steps"] = float(state["step"])
        return out

    @jax.jit
    def _plot_grid(ebm_params):
        b = cfg.eval.plot_bound
        return grid_lib.grid_log_density(batched_log_q(ebm_params), (-b, b),
                                         cfg.eval.plot_grid_size, chunk=cfg.eval.chunk)

    @functools.partial(jax.jit, static_argnums=(2,))
    def _grid_sample(ebm_params, key, num):
        _, _, log_p, _ = _plot_grid(ebm_params)
        n, b = cfg.eval.plot_grid_size, cfg.eval.plot_bound
        k_cell, k_jitter = jax.random.split(key)
        # a cell by its probability, by inverting the cumulative distribution of the cells
        # (``random.categorical`` with a shape draws Gumbel noise for every (draw, cell) pair:
        # 20,000 x 40,000 of them at the plotting defaults)
        cdf = jnp.cumsum(jax.nn.softmax(log_p.reshape(-1)))
        u = jax.random.uniform(k_cell, (num,), jnp.float32) * cdf[-1]
        cells = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)
        iy, ix = jnp.divmod(cells, n)
        side = 2.0 * b / n
        corner = jnp.stack([ix, iy], axis=1).astype(jnp.float32) * side - b
        return corner + jax.random.uniform(k_jitter, (num, 2), jnp.float32) * side

    def sample(state, key, num):
        """Exact draws from the grid-normalized density on the plotting box (see module doc)."""
        return np.asarray(_grid_sample(reported(state), key, int(num)))

    def write_figures(state, key, directory: Path):
        directory = Path(directory)
        _, _, log_p, _ = _plot_grid(reported(state))
        samples = sample(state, key, cfg.eval.num_plot_samples)
        data = ds.split("test")["x"][: cfg.eval.num_plot_samples]
        return [plots.save_density_and_samples(
            np.asarray(log_p), samples, data, directory / "density.png", cfg.eval.plot_bound,
            title=f"LSD on {cfg.data.name} (samples: exact draws from the gridded density)")]

    return Method(init=init, train_step=train_step, evaluate=evaluate, sample=sample,
                  data=train_ds, write_figures=write_figures)
