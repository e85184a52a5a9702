"""JEM's training iteration on CIFAR-shaped input: seconds per iteration and per SGLD step.

Setting (the reference's, ``configs/jem.py:cifar10`` with the WRN's depth and width replaced):
a norm-free Wide-ResNet with LeakyReLU(0.2), batch 64 of 32x32x3 uint8 images, scaled to
[-1, 1], pad-4 reflect crop, flip and N(0, 0.03^2) noise, 20 SGLD steps (step 1.0, noise 0.01)
started from a 10000-sample replay buffer (reinit 0.05), then one Adam update (lr 1e-4, warmup)
of ``CE(f(x_lab), y) - (mean LSE f(x_data) - mean LSE f(x_q))``, and the samples written back.
The iteration is ``jaxebm.methods.jem``'s own jitted train step (``make_core``), state donated.
Synthetic data: only speed is measured.

Two batch layouts (``--batches``):

* ``shared``: jaxebm's default when every example is labelled: one batch of 64 feeds both the
  cross-entropy and the data term, so the loss needs 2 x 64 forward/backward passes;
* ``separate``: a separate labelled batch, as the reference does (``dload_train_labeled`` and
  ``dload_train``) and as jaxebm does in semi-supervised runs: 3 x 64, the reference's cost.

Measured, each jitted function with its compile (lower + compile) timed apart and the steady
state the median of ``--repeats`` runs ended by ``block_until_ready``:

* ``sgld_chain``: the 20-step chain alone, per loop mode (``unrolled``: a Python loop in the jit;
  ``scan``: a rolled ``lax.scan``), and seconds per SGLD step;
* ``iteration``: the whole training iteration per loop mode and layout, its process CPU seconds,
  and ``rest_s`` = iteration - chain.

    python benchmarks/jem_step.py [--wrn-28-10] [--loops unrolled,scan] [--batches shared,separate]

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
    p.add_argument("--batches", default="shared,separate",
                   help="comma list of shared (2 x batch passes), separate (3 x batch, the reference's)")
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
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxebm.methods import jem  # noqa: E402
from jaxebm.train import config as config_lib  # noqa: E402

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "jem.py") + ":cifar10"
ARCHS = {"wrn-10-2": (10, 2), "wrn-28-10": (28, 10)}
SHAPE = (32, 32, 3)


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def timed_compile(fn, *args):
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def make_core(arch: str, loop: str, args) -> jem.JEMCore:
    depth, k = ARCHS[arch]
    cfg = config_lib.load_config(CONFIG, [
        f"model.depth={depth}", f"model.width={k}", f"sgld.loop={loop}",
        f"sgld.n_steps={args.n_steps}", f"sgld.buffer_size={args.buffer_size}",
        f"data.batch_size={args.batch}"])
    return jem.make_core(cfg, SHAPE, 10, 256)


def synthetic_batch(rng: np.random.Generator, batch: int, layout: str) -> dict:
    def images():
        return rng.integers(0, 256, (batch, *SHAPE), dtype=np.uint8)

    def labels():
        return rng.integers(0, 10, (batch,)).astype(np.int32)

    if layout == "shared":
        return {"x": images(), "y": labels()}
    return {"x": images(), "x_lab": images(), "y_lab": labels()}


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
    k_init, k_x0, k_run = jax.random.split(key, 3)
    rng = np.random.default_rng(0)
    common = dict(bench="jem_step", arch=arch, batch=batch, n_steps=n_steps)
    whats = args.what.split(",")
    for loop in args.loops.split(","):
        core = make_core(arch, loop, args)
        t0 = time.perf_counter()
        state = jax.jit(core.init)(k_init)
        jax.block_until_ready(state)
        n_params = sum(int(p.size) for p in jax.tree.leaves(state["params"]))
        emit(what="init", loop=loop, params=n_params, seconds=round(time.perf_counter() - t0, 3),
             **common)
        chain_s = None
        if "sgld_chain" in whats:
            chain = jax.jit(lambda params, x0, k: core.chain(params, x0, k, None, n_steps))
            x0 = jax.random.uniform(k_x0, (batch, *SHAPE), jnp.float32, -1.0, 1.0)
            compiled, compile_s = timed_compile(chain, state["params"], x0, k_run)
            med, runs = median_run(lambda: compiled(state["params"], x0, k_run), args.repeats)
            chain_s = med
            emit(what="sgld_chain", loop=loop, compile_s=round(compile_s, 3), median_s=round(med, 4),
                 per_sgld_step_s=round(med / n_steps, 4), runs=[round(t, 4) for t in runs], **common)
        if "iteration" not in whats:
            continue
        step = jax.jit(core.train_step, donate_argnums=0)
        for layout in args.batches.split(","):
            data = jax.device_put(synthetic_batch(rng, batch, layout))
            # Donation consumes the state, so each run feeds back the previous output.
            state = jax.tree.map(jnp.copy, state)
            compiled, compile_s = timed_compile(step, state, data, k_run)
            times, cpu = [], []
            for i in range(args.repeats + 1):  # the first run also warms the allocator
                t0, c0 = time.perf_counter(), time.process_time()
                state, metrics = compiled(state, data, jax.random.fold_in(k_run, i))
                jax.block_until_ready((state, metrics))
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            med = statistics.median(times[1:])
            record = dict(what="iteration", loop=loop, batches=layout,
                          forward_batch=(2 if layout == "shared" else 3) * batch,
                          compile_s=round(compile_s, 3), median_s=round(med, 4),
                          cpu_s=round(statistics.median(cpu[1:]), 4),
                          runs=[round(t, 4) for t in times], loss=float(metrics["loss"]), **common)
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
