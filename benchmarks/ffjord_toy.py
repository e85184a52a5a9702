"""FFJORD at the paper's toy setting: seconds per training step, NFE, and test NLL at 100/500/1000.

Setting (the reference's): 64-64-64 concatsquash, tanh, exact trace, dopri5 at rtol=atol=1e-5,
batch 100, T0 = 0.5, Adam 1e-3. Compile time is measured apart from the steady state; step
times are medians of blocks of steps, each block ended with ``block_until_ready``.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= \
      python benchmarks/ffjord_toy.py --data 8gaussians --steps 1000 [--adjoint backsolve]

Prints one JSON line per measurement. Wall and process CPU seconds are both reported: on a
machine shared with other work, CPU seconds per step are the steadier number.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

from jaxebm.train import config as config_lib
from jaxebm.train.loop import eval_key, guarded_step, root_key
from jaxebm.train.method import build_method

REFERENCE = {  # rtqichen/ffjord on a 2-core CPU (shared/CPU-NOTES.md)
    "8gaussians": {"sec_per_step": 0.28, "nll": {100: 3.68, 500: 3.13, 1000: 3.04}},
    "checkerboard": {"sec_per_step": 0.17, "nll": {100: 4.73, 500: 4.17, 1000: 3.91}},
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="8gaussians")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval_at", default="100,500,1000")
    p.add_argument("--eval_size", type=int, default=20000)
    p.add_argument("--adjoint", default="recursive")
    p.add_argument("--solver", default="dopri5")
    p.add_argument("--block", type=int, default=20, help="steps per timed block")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoints", type=int, default=0, help="solver.checkpoints (0: diffrax's)")
    p.add_argument("--fixed_end_time", action="store_true",
                   help="keep T at 0.5 as the reference's code in effect does")
    p.add_argument("--from_workdir", default="",
                   help="start from this run's latest checkpoint (time steps at its NFE)")
    args = p.parse_args()

    cfg = config_lib.load_config(
        str(Path(__file__).parent.parent / "configs" / "ffjord.py") + f":{args.data}",
        [f"solver.adjoint={args.adjoint}", f"solver.name={args.solver}",
         f"data.eval_size={args.eval_size}", f"seed={args.seed}",
         f"solver.checkpoints={args.checkpoints}",
         f"model.train_end_time={not args.fixed_end_time}"])
    method = build_method(cfg)
    step_fn = guarded_step(method, 1e8)
    root = root_key(cfg.seed)
    state = method.init(root)
    if args.from_workdir:
        from jaxebm.train.loop import restore

        state = restore(args.from_workdir)[2]
    bad = jax.numpy.asarray(-1, jax.numpy.int32)
    eval_at = {int(s) for s in args.eval_at.split(",")}
    common = {"data": args.data, "adjoint": args.adjoint, "solver": args.solver,
              "checkpoints": args.checkpoints, "from": args.from_workdir or "init",
              "trainable_T": not args.fixed_end_time,
              "device": jax.devices()[0].device_kind, "jax": jax.__version__}

    t0 = time.perf_counter()
    batch = method.data.train_batch(0)
    state, bad, m = step_fn(state, bad, batch, root, jax.numpy.int32(0))
    jax.block_until_ready(state)
    print(json.dumps({**common, "what": "compile+first step", "seconds": time.perf_counter() - t0}),
          flush=True)

    times, cpu_times, nfes = [], [], []
    step = 1
    t_block, c_block, nfe_block = time.perf_counter(), time.process_time(), []
    train_seconds = time.perf_counter() - t0
    while step < args.steps:
        state, bad, m = step_fn(state, bad, method.data.train_batch(step), root,
                                jax.numpy.int32(step))
        nfe_block.append(m["nfe"])
        step += 1
        if step % args.block == 0 or step == args.steps or step in eval_at:
            jax.block_until_ready(state)
            dt = time.perf_counter() - t_block
            train_seconds += dt
            times.append(dt / len(nfe_block))
            cpu_times.append((time.process_time() - c_block) / len(nfe_block))
            nfes.append(float(np.mean(jax.device_get(nfe_block))))
            nfe_block = []
            if step in eval_at:
                ev = method.evaluate(state, eval_key(cfg.seed, step))
                ref = REFERENCE.get(args.data, {}).get("nll", {}).get(step)
                print(json.dumps({**common, "what": "test nll", "step": step, "nll": ev["nll"],
                                  "nll_stderr": ev["nll_stderr"], "eval_nfe": ev["nfe"],
                                  "reference_nll": ref, "train_seconds_so_far": train_seconds,
                                  "recent_sec_per_step": float(np.median(times[-5:])),
                                  "recent_train_nfe": nfes[-1]}), flush=True)
            t_block, c_block = time.perf_counter(), time.process_time()
    print(json.dumps({**common, "what": "steady state", "steps": args.steps,
                      "median_sec_per_step": float(np.median(times)),
                      "last_quarter_sec_per_step": float(np.median(times[-max(len(times) // 4, 1):])),
                      "median_cpu_sec_per_step": float(np.median(cpu_times)),
                      "median_train_nfe": float(np.median(nfes)), "final_train_nfe": nfes[-1],
                      "reference_sec_per_step": REFERENCE.get(args.data, {}).get("sec_per_step"),
                      "bad_step": int(bad)}), flush=True)


if __name__ == "__main__":
    main()
