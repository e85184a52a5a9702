"""Black-box gradient estimators at the discrete VAE's size: evaluations per second.

Setting: 200 Bernoulli latents per example, batch 24 (one sample per example, a different
logit vector per example, vmapped), a cheap ``f`` (a quadratic loss per example) so the numbers
are the estimators' own cost. RELAX's control variate is the VAE's: ``f(sigma_lambda(z)) + r(z)``
with ``r`` a 200-200-200-1 ReLU MLP. LAX uses 200 Gaussian latents and the same ``r``.
``*+cv`` rows also return ``d||g||^2/d phi`` (what one joint training step needs).

Each function is jitted; compile (lower + compile) is timed apart; steady state is the median
of ``--repeats`` blocks of ``--calls`` calls, each block ended by ``block_until_ready``.

    python benchmarks/estimators.py [--calls 200 --repeats 5]

Prints one JSON line per estimator: ``estimator``, ``compile_s``, ``ms_per_call`` (median),
``calls_per_s`` and ``examples_per_s`` (calls x batch).

``--toy`` instead runs the paper's toy (configs/relax.py:toy: t = 0.499, 5000 steps, Adam 0.01)
for REINFORCE, REBAR and RELAX on ``--seeds`` seeds, each whole run one jitted ``lax.scan``:
the wall time per step (compile apart, median over seeds; the PyTorch reference takes
0.75 / 2.0 / 2.6 ms), the final theta per seed, and log10 Var[g] (1000 draws every
``--variance_every`` steps, in separate runs so it does not enter the timing). ``--figure PATH``
writes the paper's first figure (loss and log10 variance over steps, every seed) as a PNG.

    python benchmarks/estimators.py --toy --seeds 5 --figure runs/relax_toy.png
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxebm.estimators import black_box as est
from jaxebm.estimators import relaxations as rx

LATENTS = 200
BATCH = 24
HIDDEN = 200


def mlp_init(key, sizes):
    params = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        params.append((jax.random.normal(k, (n_in, n_out), jnp.float32) / np.sqrt(n_in), jnp.zeros((n_out,), jnp.float32)))
    return params


def mlp_apply(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[0]


def build(key):
    k_logits, k_target, k_net = jax.random.split(key, 3)
    logits = jax.random.normal(k_logits, (BATCH, LATENTS), jnp.float32)
    targets = jax.random.uniform(k_target, (BATCH, LATENTS), jnp.float32)

    def f_for(target):
        return lambda b: jnp.sum((b - target) ** 2)

    net = mlp_init(k_net, [LATENTS, HIDDEN, HIDDEN, 1])
    relax_phi = {"net": net, "log_temperature": jnp.log(jnp.asarray(0.5, jnp.float32))}

    def relax_cv_for(target):
        def control_variate(phi, z):
            return f_for(target)(rx.bernoulli_soft(z, jnp.exp(phi["log_temperature"]))) + mlp_apply(phi["net"], z)

        return control_variate

    rebar_phi = (jnp.asarray(1.0, jnp.float32), jnp.log(jnp.asarray(0.5, jnp.float32)))
    gauss_params = (logits, jnp.zeros_like(logits))

    def batched(single):
        """vmap one (per-example) estimate over the batch of logits, targets and keys."""
        return lambda phi, key: jax.vmap(lambda lg, t, k: single(phi, lg, t, k))(
            logits, targets, jax.random.split(key, BATCH)
        )

    estimates = {
        "reinforce": batched(lambda phi, lg, t, k: est.reinforce(f_for(t), lg, key=k)),
        "rebar": batched(lambda phi, lg, t, k: est.rebar(f_for(t), lg, phi[0], phi[1], key=k)),
        "relax": batched(lambda phi, lg, t, k: est.relax(f_for(t), relax_cv_for(t), phi, lg, key=k)),
        "lax": lambda phi, key: jax.vmap(
            lambda m, s, t, k: est.lax(f_for(t), lambda p, x: mlp_apply(p["net"], x), phi, (m, s), key=k)
        )(gauss_params[0], gauss_params[1], targets, jax.random.split(key, BATCH)),
    }
    phis = {"reinforce": None, "rebar": rebar_phi, "relax": relax_phi, "lax": {"net": net}}
    fns = {}
    for name, estimate in estimates.items():
        phi = phis[name]
        fns[name] = (jax.jit(lambda key, e=estimate, p=phi: e(p, key)), ())
        if phi is not None:
            fns[name + "+cv"] = (
                jax.jit(lambda key, e=estimate, p=phi: est.with_variance_grad(lambda q: e(q, key), p)),
                (),
            )
    return fns


REFERENCE_MS_PER_STEP = {"reinforce": 0.75, "rebar": 2.0, "relax": 2.6}  # PyTorch toy, shared/CPU-NOTES.md


def toy(args):
    from pathlib import Path

    from jaxebm.methods import relax as relax_method
    from jaxebm.train import config as config_lib

    config_path = Path(__file__).resolve().parents[1] / "configs" / "relax.py"
    cfg = config_lib.load_config(f"{config_path}:toy", args.override)
    steps = cfg.train.num_steps
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    traces = {}
    for name in relax_method.ESTIMATORS:
        run = relax_method.run_toy(cfg, name, steps)
        start = time.perf_counter()
        compiled = run.lower(0).compile()
        compile_s = time.perf_counter() - start
        seconds, thetas = [], []
        for seed in seeds:
            start = time.perf_counter()
            _, trace = compiled(seed)
            jax.block_until_ready(trace)
            seconds.append(time.perf_counter() - start)
            thetas.append(float(trace["theta"][-1]))
        with_variance = relax_method.run_toy(cfg, name, steps, args.variance_every)
        traces[name] = [jax.tree.map(np.asarray, with_variance(seed)[1]) for seed in seeds]
        log_var = np.stack([t["log10_var"] for t in traces[name]])  # (seeds, checkpoints)
        late = log_var[:, log_var.shape[1] // 5 :]  # after the first 20% of training
        ms = 1e3 * float(np.median(seconds)) / steps
        print(
            json.dumps(
                {
                    "benchmark": "relax_toy",
                    "estimator": name,
                    "steps": steps,
                    "seeds": args.seeds,
                    "compile_s": round(compile_s, 3),
                    "ms_per_step": round(ms, 5),
                    "steps_per_s": round(1e3 / ms, 1),
                    "speedup_vs_reference": round(REFERENCE_MS_PER_STEP[name] / ms, 1),
                    "final_theta": [round(t, 4) for t in thetas],
                    "median_log10_var_after_20pct": [round(float(np.median(v)), 2) for v in late],
                    "device": jax.devices()[0].device_kind,
                }
            ),
            flush=True,
        )
    relax_var = np.stack([t["log10_var"] for t in traces["relax"]])
    reinforce_var = np.stack([t["log10_var"] for t in traces["reinforce"]])
    final = {n: np.array([t["theta"][-1] for t in traces[n]]) for n in traces}
    summary = {
        "benchmark": "relax_toy_summary",
        "relax_theta_below_0.1": int(np.sum(final["relax"] < 0.1)),
        "relax_below_both_every_seed": bool(np.all((final["relax"] < final["rebar"]) & (final["relax"] < final["reinforce"]))),
        "fraction_checkpoints_relax_3_below_reinforce": [
            round(float(x), 3) for x in np.mean(relax_var <= reinforce_var - 3.0, axis=1)
        ],
    }
    print(json.dumps(summary), flush=True)
    if args.figure:
        path = relax_method.plot_toy(traces, args.variance_every, Path(args.figure), cfg.toy.target)
        print(json.dumps({"figure": str(path)}), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--toy", action="store_true", help="the paper's toy instead of the VAE-size estimators")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first_seed", type=int, default=0, help="toy seeds first_seed, first_seed + 1, ...")
    parser.add_argument("--variance_every", type=int, default=10)
    parser.add_argument("--figure", default="")
    parser.add_argument("--override", action="append", default=[], help="toy config override, a.b=v")
    args = parser.parse_args()
    if args.toy:
        return toy(args)

    fns = build(jax.random.key(0))
    for name, (fn, _) in fns.items():
        keys = jax.random.split(jax.random.key(1), args.calls)
        start = time.perf_counter()
        compiled = fn.lower(keys[0]).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(compiled(keys[0]))  # warm-up call
        blocks = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = None
            for i in range(args.calls):
                out = compiled(keys[i])
            jax.block_until_ready(out)
            blocks.append((time.perf_counter() - start) / args.calls)
        per_call = float(np.median(blocks))
        print(
            json.dumps(
                {
                    "benchmark": "estimators",
                    "estimator": name,
                    "latents": LATENTS,
                    "batch": BATCH,
                    "compile_s": round(compile_s, 3),
                    "ms_per_call": round(1e3 * per_call, 4),
                    "calls_per_s": round(1.0 / per_call, 1),
                    "examples_per_s": round(BATCH / per_call, 1),
                    "device": jax.devices()[0].device_kind,
                    "machine": platform.machine(),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
