r"""FFJORD (Grathwohl et al. 2019): free-form continuous normalizing flows.

Algorithm, as in the paper:

1. ``x`` from the data (images: uniformly dequantized to [0, 1), then logit-transformed).
2. ``z, int tr = CNF(x)``: integrate each block's ODE with an adaptive solver; the trace is
   exact (2-D, tabular) or Hutchinson with a probe held fixed over each solve (images).
3. ``log p(x) = log N(z; 0, I) + sum of the trace integrals (+ log-det of the logit)``.
4. Minimize ``-mean log p(x)`` (+ optional kinetic and Jacobian-Frobenius penalties).

Evaluation reports the test NLL in nats (bits/dim for images) with the evaluation solver and
trace, and the number of function evaluations. Sampling solves the blocks backwards from
``z ~ N(0, I)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxebm import data as data_lib
from jaxebm.data import transforms
from jaxebm.estimators.divergence import sample_probe
from jaxebm.eval import plots
from jaxebm.flows import cnf, multiscale
from jaxebm.nn.odenet import ODENet
from jaxebm.train.method import Method
from jaxebm.train.optim import make_optimizer

TRACES = ("exact", "gaussian", "rademacher")


class CNFModel(nnx.Module):
    """The blocks' dynamics networks and, if trainable, their end times ``T_k = s_k^2``.

    A fixed end time is not a parameter at all: kept in the optimizer, weight decay alone
    would move it (Adam normalizes the decay term to steps of the full learning rate).
    """

    def __init__(self, dims: list[int], model: ml_collections.ConfigDict, conv: bool, *, rngs):
        self.nets = nnx.List([
            ODENet(d, tuple(model.hidden), layer_type=model.layer_type,
                   activation=model.activation, conv=conv, rngs=rngs) for d in dims
        ])
        if model.train_end_time:
            s0 = math.sqrt(model.init_end_time)
            self.sqrt_end_time = nnx.Param(jnp.full((len(dims),), s0, jnp.float32))


def _validate(cfg: ml_collections.ConfigDict, ds) -> None:
    m = cfg.model
    if m.kind not in ("flat", "multiscale"):
        raise ValueError(f"model.kind={m.kind!r}: expected 'flat' or 'multiscale'")
    if m.kind == "multiscale" and len(ds.example_shape) != 3:
        raise ValueError(f"model.kind='multiscale' needs images; data.name={cfg.data.name!r} "
                         f"has examples of shape {ds.example_shape}")
    if m.kind == "flat" and len(ds.example_shape) != 1:
        raise ValueError(f"model.kind='flat' needs vectors; use model.kind='multiscale' for "
                         f"data.name={cfg.data.name!r} (shape {ds.example_shape})")
    if m.n_blocks < 1 or not m.init_end_time > 0 or any(h < 1 for h in m.hidden):
        raise ValueError("model.n_blocks >= 1, model.init_end_time > 0 and positive model.hidden")
    for field in ("trace", "eval_trace"):
        value = cfg.model[field] if field == "trace" else cfg.eval.trace
        if value not in TRACES:
            raise ValueError(f"{'model' if field == 'trace' else 'eval'}.trace={value!r}: "
                             f"expected one of {TRACES}")
    if cfg.reg.kinetic < 0 or cfg.reg.jac_frobenius < 0:
        raise ValueError("reg.kinetic and reg.jac_frobenius must be >= 0")


def _solver(cfg: ml_collections.ConfigDict, rtol: float, atol: float) -> cnf.SolverConfig:
    s = cfg.solver
    return cnf.SolverConfig(s.name, rtol, atol, s.adjoint, s.max_steps, s.get("checkpoints", 0))


def build(cfg: ml_collections.ConfigDict) -> Method:
    ds = data_lib.load(cfg.data, seed=cfg.seed)
    _validate(cfg, ds)
    image = cfg.model.kind == "multiscale"
    shape = tuple(ds.example_shape)
    if image:
        stages = multiscale.stage_shapes(shape, cfg.model.n_scales)
        dims = [st[0][2] for st in stages for _ in range(cfg.model.n_blocks)]
    else:
        stages, dims = None, [shape[0]] * cfg.model.n_blocks
    graphdef, params0 = nnx.split(CNFModel(dims, cfg.model, image, rngs=nnx.Rngs(0)))
    train_solver = _solver(cfg, cfg.solver.rtol, cfg.solver.atol)
    eval_solver = _solver(cfg, cfg.eval.rtol, cfg.eval.atol)
    optimizer = make_optimizer(cfg.optim)
    n_bins = ds.n_bins
    num_dims = int(np.prod(shape))
    regularize = cfg.reg.kinetic > 0 or cfg.reg.jac_frobenius > 0

    def end_times(params):
        if not cfg.model.train_end_time:
            return jnp.full((len(dims),), cfg.model.init_end_time, jnp.float32)
        return params["sqrt_end_time"][...] ** 2

    def dynamics(k):
        """Block k's f(params, t, z); the whole model's params travel as solver args."""
        return lambda p, t, z: nnx.merge(graphdef, p).nets[k](t, z)

    def run_blocks(params, times, h, first, key, trace, solver, totals):
        """Applies blocks ``first .. first + n_blocks - 1`` to ``h``; accumulates totals."""
        for j in range(cfg.model.n_blocks):
            k = first + j
            eps = None if trace == "exact" else sample_probe(jax.random.fold_in(key, k), h.shape, trace)
            out = cnf.block_forward(dynamics(k), params, times[k], h, trace=trace, eps=eps,
                                    solver=solver, regularize=regularize)
            h = out.z
            totals = [a + b for a, b in zip(totals, (out.int_trace, out.kinetic, out.frobenius))] + [
                totals[3] + out.nfe]
        return h, totals

    def log_prob(params, x, key, trace, solver):
        """``(log p(x) per example, kinetic, frobenius, nfe)``; x in data space."""
        times = end_times(params)
        b = x.shape[0]
        zeros = jnp.zeros((b,), jnp.float32)
        totals = [zeros, zeros, zeros, jnp.zeros((), jnp.int32)]
        if not image:
            z, totals = run_blocks(params, times, x, 0, key, trace, solver, totals)
            logp = cnf.standard_normal_logpdf(z) + totals[0]
            return logp, totals[1], totals[2], totals[3]
        h, logdet = transforms.logit_transform(x, cfg.model.logit_alpha)
        logp = logdet
        for i, (_, factor) in enumerate(stages):
            if factor:
                h = multiscale.squeeze(h)
            h, totals = run_blocks(params, times, h, i * cfg.model.n_blocks, key, trace, solver, totals)
            if factor:
                c = h.shape[-1] // 2
                logp = logp + cnf.standard_normal_logpdf(h[..., :c])
                h = h[..., c:]
        logp = logp + cnf.standard_normal_logpdf(h) + totals[0]
        return logp, totals[1], totals[2], totals[3]

    def prepare(x, key):
        if not image:
            return x
        return transforms.uniform_dequantize(key, x, n_bins)

    def init(key):
        del key  # parameters come from a fixed nnx.Rngs(0); the run's seed drives everything else
        return {"params": params0, "opt": optimizer.init(params0)}

    def loss_fn(params, x, key):
        logp, kin, frob, nfe = log_prob(params, x, key, cfg.model.trace, train_solver)
        nll = -jnp.mean(logp)
        loss = nll + cfg.reg.kinetic * jnp.mean(kin) + cfg.reg.jac_frobenius * jnp.mean(frob)
        metrics = {"nll": nll, "nfe": nfe}
        if image:
            metrics["bpd"] = jnp.mean(transforms.bits_per_dim(logp, num_dims, n_bins))
        if regularize:
            metrics.update(kinetic=jnp.mean(kin), jac_frobenius=jnp.mean(frob))
        return loss, metrics

    def train_step(state, batch, key):
        k_data, k_probe = jax.random.split(key)
        x = prepare(batch["x"], k_data)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], x, k_probe)
        updates, opt = optimizer.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(metrics, loss=loss, end_time=jnp.sum(end_times(params)))
        return {"params": params, "opt": opt}, metrics

    @jax.jit
    def eval_batch(params, x, key):
        k_data, k_probe = jax.random.split(key)
        logp, _, _, nfe = log_prob(params, prepare(x, k_data), k_probe, cfg.eval.trace, eval_solver)
        return logp, nfe

    def log_prob_in_batches(params, points, key):
        """Per-example log p (eval solver and trace) over any number of points, one compiled
        shape (the last batch padded), and the mean NFE."""
        bs = cfg.eval.batch_size
        logps, nfes = [], []
        for i, start in enumerate(range(0, len(points), bs)):
            chunk = points[start:start + bs]
            n = len(chunk)
            if n < bs:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - n, 0)])
            logp, nfe = eval_batch(params, jnp.asarray(chunk), jax.random.fold_in(key, i))
            logps.append(np.asarray(logp)[:n])
            nfes.append(int(nfe))
        return np.concatenate(logps), float(np.mean(nfes))

    def evaluate(state, key):
        test = ds.split(cfg.eval.split)["x"]
        if cfg.eval.max_examples:
            test = test[: cfg.eval.max_examples]
        logp, nfe = log_prob_in_batches(state["params"], test, key)
        out = {"nll": float(-logp.mean()), "nll_stderr": float(logp.std() / np.sqrt(len(logp))),
               "nfe": nfe, "num_examples": float(len(logp))}
        if image:
            out["bpd"] = float(np.mean(transforms.bits_per_dim(jnp.asarray(logp), num_dims, n_bins)))
        out["end_time"] = float(jnp.sum(end_times(state["params"])))
        return out

    @jax.jit
    def _sample_batch(params, key):
        times = end_times(params)
        bs = cfg.eval.batch_size
        if not image:
            h = jax.random.normal(key, (bs, *shape))
            for k in reversed(range(len(dims))):
                h, _ = cnf.block_inverse(dynamics(k), params, times[k], h, solver=eval_solver)
            return h
        keys = jax.random.split(key, len(stages) + 1)
        # the final latent first, then walk the stages backwards, re-inserting factored halves
        final_shape = stages[-1][0]
        h = jax.random.normal(keys[-1], (bs, *final_shape))
        for i in reversed(range(len(stages))):
            st_shape, factor = stages[i]
            if factor:
                left = jax.random.normal(keys[i], (bs, *st_shape[:2], st_shape[2] // 2))
                h = jnp.concatenate([left, h], axis=-1)
            for j in reversed(range(cfg.model.n_blocks)):
                k = i * cfg.model.n_blocks + j
                h, _ = cnf.block_inverse(dynamics(k), params, times[k], h, solver=eval_solver)
            if factor:
                h = multiscale.unsqueeze(h)
        return jnp.clip(transforms.inverse_logit_transform(h, cfg.model.logit_alpha), 0.0, 1.0)

    def sample(state, key, num):
        n_batches = -(-num // cfg.eval.batch_size)
        out = [np.asarray(_sample_batch(state["params"], jax.random.fold_in(key, i)))
               for i in range(n_batches)]
        return np.concatenate(out)[:num]

    def write_figures(state, key, directory: Path):
        directory = Path(directory)
        samples = sample(state, key, cfg.eval.num_plot_samples)
        if image:
            return [plots.save_image_grid(samples[:100], directory / "samples.png",
                                          title=f"FFJORD samples ({cfg.data.name})")]
        if shape != (2,):
            return []
        bound, n = cfg.eval.plot_bound, cfg.eval.grid_size
        axis = np.linspace(-bound, bound, n, dtype=np.float32)
        grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
        logp = log_prob_in_batches(state["params"], grid, key)[0].reshape(n, n)
        data = ds.split("test")["x"][: len(samples)]
        return [plots.save_density_and_samples(logp, samples, data, directory / "density.png",
                                               bound, title=f"FFJORD on {cfg.data.name}")]

    return Method(init=init, train_step=train_step, evaluate=evaluate, sample=sample,
                  data=ds, write_figures=write_figures)
