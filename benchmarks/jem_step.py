"""JEM's training iteration on CIFAR-shaped input: seconds per iteration and per SGLD step.

Setting (the reference's): a norm-free Wide-ResNet with LeakyReLU(0.2), batch 64 of 32x32x3
inputs in [-1, 1], 20 SGLD steps (step 1.0, noise 0.01) started from a 10000-sample replay
buffer (reinit 0.05), then one Adam update (lr 1e-4) of ``CE(f(x_lab), y) - (mean LSE f(x_data)
- mean LSE f(x_q))``, and the samples written back. Synthetic data: only speed is measured.
The three forward passes of the loss (labelled, data, samples; 3 x 64) run as one batch of 192,
which equals the reference's three separate passes because nothing couples samples.

Measured, each jitted function with its compile (lower + compile) timed apart and the steady
state the median of ``--repeats`` runs ended by ``block_until_ready``:

* ``sgld_chain``: the 20-step chain alone, per loop mode (``unrolled``: a Python loop in the jit;
  ``scan``: a rolled ``lax.scan``), and seconds per SGLD step;
* ``iteration``: the whole training iteration per loop mode, and ``rest_s`` = iteration - chain.

    python benchmarks/jem_step.py [--wrn-28-10] [--loops unrolled,scan] [--repeats 3]

By default the script sets ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` (Eigen
convolutions on all cores; see shared/CPU-NOTES.md) unless XLA_FLAGS already names that option;
``--keep-ynn`` leaves XLA's default. WRN-28-10 (``--wrn-28-10``) takes minutes per iteration on a
CPU. Prints one JSON line per measurement, after a header line describing the machine.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wrn-28-10", action="store_true", help="also run WRN-28-10 (slow on CPU)")
    p.add_argument("--skip-wrn-10-2", action="store_true", help="do not run WRN-10-2")
    p.add_argument("--loops", default="unrolled,scan", help="comma list of unrolled, scan")
    p.add_argument("--what", default="sgld_chain,iteration", help="comma list of sgld_chain, iteration")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-steps", type=int, default=20)
    p.add_argument("--buffer-size", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep-ynn", action="store_true", help="keep XLA's default YNNPACK fusion")
    p.add_argument("--classic-threefry", action="store_true",
                   help="jax_threefry_partitionable=False (faster compiles of random ops on CPU)")
    return p.parse_args(argv)


ARGS = parse_args()
_YNN = "--xla_cpu_experimental_ynn_fusion_type"
if not ARGS.keep_ynn and _YNN not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_YNN}=").strip()

import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from jaxebm import energies  # noqa: E402
from jaxebm.nn.wrn import WideResNet  # noqa: E402
from jaxebm.samplers import init_buffer, sample_from_buffer, sgld, update_buffer  # noqa: E402

SGLD_STEP, SGLD_NOISE, REINIT, LR = 1.0, 0.01, 0.05, 1e-4
ARCHS = {"wrn-10-2": (10, 2), "wrn-28-10": (28, 10)}
LOOPS = {"unrolled": True, "scan": 1}


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def timed_compile(fn, *args):
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def build(arch: str, key):
    depth, k = ARCHS[arch]
    graphdef, params = energies.init_split(
        lambda r: WideResNet(depth, k, 10, norm=None, activation="leaky_relu", rngs=r), key
    )
    return graphdef, params


def make_fns(graphdef, batch: int, n_steps: int, unroll):
    apply = energies.make_apply(graphdef)
    opt = optax.adam(LR)

    def chain(params, x0, key):
        log_px = energies.log_px_fn(lambda x: apply(params, x))
        return sgld(log_px, x0, key=key, n_steps=n_steps, step_size=SGLD_STEP,
                    noise_std=SGLD_NOISE, unroll=unroll)

    def loss_fn(params, x_lab, y_lab, x_data, x_q):
        logits = apply(params, jnp.concatenate([x_lab, x_data, x_q], axis=0))
        l_lab, l_data, l_q = jnp.split(logits, 3, axis=0)
        ce = -jnp.mean(energies.log_px_given_y_unnorm(energies.log_p_y_given_x(l_lab), y_lab))
        ml = -(jnp.mean(energies.log_px_unnorm(l_data)) - jnp.mean(energies.log_px_unnorm(l_q)))
        return ce + ml

    def iteration(state, x_lab, y_lab, x_data, key):
        params, opt_state, buffer = state
        k_buf, k_chain = jax.random.split(key)
        x0, idx = sample_from_buffer(buffer, k_buf, batch, REINIT)
        x_q = jax.lax.stop_gradient(chain(params, x0, k_chain))
        loss, grads = jax.value_and_grad(loss_fn)(params, x_lab, y_lab, x_data, x_q)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, update_buffer(buffer, idx, x_q)), loss

    return jax.jit(chain), jax.jit(iteration, donate_argnums=0), opt


def median_run(call, repeats: int):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_arch(arch: str, args) -> None:
    batch, n_steps = args.batch, args.n_steps
    key = jax.random.key(0)
    k_init, k_buf, k_data, k_run = jax.random.split(key, 4)
    t0 = time.perf_counter()
    graphdef, params = build(arch, k_init)
    jax.block_until_ready(params)
    n_params = sum(int(p.size) for p in jax.tree.leaves(params))
    emit(bench="jem_step", what="init", arch=arch, params=n_params, seconds=time.perf_counter() - t0)

    shape = (32, 32, 3)
    kd1, kd2, kd3 = jax.random.split(k_data, 3)
    x_lab = jax.random.uniform(kd1, (batch, *shape), jnp.float32, -1.0, 1.0)
    x_data = jax.random.uniform(kd2, (batch, *shape), jnp.float32, -1.0, 1.0)
    y_lab = jax.random.randint(kd3, (batch,), 0, 10)
    x0 = jax.random.uniform(k_buf, (batch, *shape), jnp.float32, -1.0, 1.0)
    common = dict(bench="jem_step", arch=arch, batch=batch, n_steps=n_steps)
    whats = args.what.split(",")

    for loop in args.loops.split(","):
        chain, iteration, opt = make_fns(graphdef, batch, n_steps, LOOPS[loop])
        chain_s = None
        if "sgld_chain" in whats:
            compiled, compile_s = timed_compile(chain, params, x0, k_run)
            med, runs = median_run(lambda: compiled(params, x0, k_run), args.repeats)
            chain_s = med
            emit(what="sgld_chain", loop=loop, compile_s=round(compile_s, 3), median_s=round(med, 4),
                 per_sgld_step_s=round(med / n_steps, 4), runs=[round(t, 4) for t in runs], **common)
        if "iteration" in whats:
            buffer = init_buffer(k_buf, args.buffer_size, shape, "uniform")
            state = (params, opt.init(params), buffer)
            # Donation consumes the state, so each run feeds back the previous output.
            state = jax.tree.map(jnp.copy, state)
            compiled, compile_s = timed_compile(iteration, state, x_lab, y_lab, x_data, k_run)
            times = []
            for i in range(args.repeats + 1):  # the first run also warms the allocator
                t0 = time.perf_counter()
                state, loss = compiled(state, x_lab, y_lab, x_data, jax.random.fold_in(k_run, i))
                jax.block_until_ready((state, loss))
                times.append(time.perf_counter() - t0)
            med = statistics.median(times[1:])
            record = dict(what="iteration", loop=loop, compile_s=round(compile_s, 3), median_s=round(med, 4),
                          runs=[round(t, 4) for t in times], loss=float(loss), **common)
            if chain_s is not None:
                record["rest_s"] = round(med - chain_s, 4)
            emit(**record)
            del state


def main() -> None:
    if ARGS.classic_threefry:
        jax.config.update("jax_threefry_partitionable", False)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    emit(bench="jem_step", what="machine", jax=jax.__version__, backend=jax.default_backend(),
         device=str(jax.devices()[0].device_kind), cpus=os.cpu_count(), loadavg=load,
         xla_flags=os.environ.get("XLA_FLAGS", ""), python=platform.python_version(),
         threefry_partitionable=bool(jax.config.jax_threefry_partitionable), argv=sys.argv[1:])
    archs = [] if ARGS.skip_wrn_10_2 else ["wrn-10-2"]
    if ARGS.wrn_28_10:
        archs.append("wrn-28-10")
    for arch in archs:
        bench_arch(arch, ARGS)


if __name__ == "__main__":
    main()
