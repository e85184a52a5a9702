"""LSD: critic and model steps per second at the toy and RBM-test settings.

Rows (one JSON line each):

* ``toy_critic_step`` / ``toy_model_step``: one optimizer step of the critic / the energy at
  ``configs/lsd.py:8gaussians`` (batch 100, 2-300-300-2 critic, 2-300-300-1 energy + Gaussian
  base, Hutchinson trace), the method's ``train_step`` jitted alone with the step counter held
  at a critic (1) or model (0) position.
* ``toy_harness_step``: what ``jaxebm train`` runs per step: a fresh numpy batch, the harness's
  guarded (finite-checked, state-donating) step, alternating 5 critic steps and 1 model step;
  with ``steps_per_call = k`` each harness step runs k optimizer steps (whole cycles of 5 critic
  steps and a model step batched and branch-free, see ``jaxebm.methods.lsd``), and the times
  are divided by k; the toy config's default is k = 100. ``ms_per_step`` (per optimizer step
  of either network) is the number to compare with the reference's 7.6 ms per step.
* ``rbm_critic_step``: one harness step of ``configs/lsd.py:rbm_test`` updates all
  ``len(sigmas) * n_reps * cross_fit * ensemble`` critics (the config's batch,
  50-300-300-50 with dropout, power objective); reported per harness step and per critic
  (``critic_steps_per_s``). Validation steps (every ``lsd.val_every``-th) are excluded.

Compile (first call) is timed apart; steady state is the median over ``--repeats`` blocks of
``--calls`` calls, each ended by ``block_until_ready``; ``cpu_ms`` is the process CPU time per
call (both threads), which is less sensitive than wall time to other jobs on a shared machine.
The load average before each row is printed with it.

XLA flags come from the environment only (``jaxebm train`` adds the config's ``xla_flags``: none
for the toy, the project's NO_YNN_FUSION for the RBM test), so compare both by hand:

    python benchmarks/lsd.py --only toy --per_call 100 --harness_only
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python benchmarks/lsd.py [--rbm_reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxebm.train import config as config_lib
from jaxebm.train import sharding
from jaxebm.train.loop import guarded_step, root_key
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "lsd.py")


def _timed(call, calls: int, repeats: int) -> dict:
    t0 = time.perf_counter()
    jax.block_until_ready(call(0))
    compile_s = time.perf_counter() - t0
    walls, cpus = [], []
    i = 1
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = None
        for _ in range(calls):
            out = call(i)
            i += 1
        jax.block_until_ready(out)
        walls.append((time.perf_counter() - w0) / calls)
        cpus.append((time.process_time() - c0) / calls)
    return {"compile_s": round(compile_s, 3), "ms_per_step": round(1e3 * float(np.median(walls)), 4),
            "ms_per_step_min": round(1e3 * float(np.min(walls)), 4),
            "cpu_ms_per_step": round(1e3 * float(np.median(cpus)), 4)}


def _row(name: str, result: dict, **extra) -> None:
    row = {"benchmark": name, **result, **extra, "load_avg_1min": os.getloadavg()[0],
           "machine": platform.machine(), "cpus": os.cpu_count(), "jax": jax.__version__,
           "xla_flags": os.environ.get("XLA_FLAGS", "")}
    print(json.dumps(row), flush=True)


def toy(calls: int, repeats: int, per_calls: tuple[int, ...], single: bool = True) -> None:
    for per_call in per_calls:
        _harness(per_call, calls, repeats)
    if single:
        _single_steps(calls, repeats)


def _single_steps(calls: int, repeats: int) -> None:
    """A critic step and a model step alone, one optimizer step per call (the config's default
    runs 100 per call)."""
    cfg = config_lib.load_config(f"{CONFIG}:8gaussians", ["lsd.steps_per_call=1"])
    method = build_method(cfg)
    state = jax.jit(method.init)(root_key(0))
    batch = {"x": jnp.asarray(method.data.train_batch(0)["x"])}
    step = jax.jit(method.train_step, donate_argnums=(0,))
    key = jax.random.key(0)
    for name, counter in (("toy_critic_step", 1), ("toy_model_step", 0)):
        holder = {"state": jax.tree.map(jnp.copy, state)}

        def call(i, counter=counter, holder=holder):
            # the counter is reset every call so every call takes the same branch
            s = dict(holder["state"], step=jnp.asarray(counter, jnp.int32))
            holder["state"], metrics = step(s, batch, jax.random.fold_in(key, i))
            return metrics["loss"]

        res = _timed(call, calls, repeats)
        _row(name, res, steps_per_s=round(1e3 / res["ms_per_step"], 1))


def _placed_like_the_loop(method, mesh) -> dict:
    """The initial state and divergence flag replicated over the mesh, as ``jaxebm train`` puts
    them: with uncommitted arrays the second call would compile the step again (its outputs
    come back mesh-sharded), and that compile would land in the first timed block."""
    replicated = sharding.replicated(mesh)
    return {"state": jax.device_put(jax.jit(method.init)(root_key(0)), replicated),
            "bad": jax.device_put(jnp.asarray(-1, jnp.int32), replicated)}


def _harness(per_call: int, calls: int, repeats: int) -> None:
    cfg = config_lib.load_config(f"{CONFIG}:8gaussians", [f"lsd.steps_per_call={per_call}"])
    method = build_method(cfg)
    guarded = guarded_step(method, float(cfg.train.loss_bound))
    mesh = sharding.make_mesh()
    holder = _placed_like_the_loop(method, mesh)
    root = root_key(0)

    def harness_call(i):
        b = sharding.shard_batch(method.data.train_batch(i), mesh)
        holder["state"], holder["bad"], metrics = guarded(holder["state"], holder["bad"], b, root,
                                                          jnp.asarray(i, jnp.int32))
        return metrics["loss"]

    res = _timed(harness_call, max(1, calls // per_call), repeats)
    per_opt = {k: (v / per_call if k != "compile_s" else v) for k, v in res.items()}
    per_opt = {k: round(v, 4) for k, v in per_opt.items()}
    _row("toy_harness_step", per_opt, steps_per_call=per_call,
         steps_per_s=round(1e3 / per_opt["ms_per_step"], 1), reference_ms_per_step=7.6)


def rbm(reps: int, calls: int, repeats: int) -> None:
    cfg = config_lib.load_config(f"{CONFIG}:rbm_test", [f"rbm.n_reps={reps}", "rbm.burn_in=10"])
    method = build_method(cfg)
    guarded = guarded_step(method, float(cfg.train.loss_bound))
    holder = _placed_like_the_loop(method, sharding.make_mesh())
    # problems x folds (lsd.cross_fit) x members (lsd.ensemble)
    n_critics = int(holder["state"]["critic"].shape[0])
    root = root_key(0)

    def call(i):
        # step numbers that skip validation (every lsd.val_every-th step validates)
        s = i + 1 + i // (cfg.lsd.val_every - 1)
        holder["state"]["step"] = jnp.asarray(s, jnp.int32)
        holder["state"], holder["bad"], metrics = guarded(holder["state"], holder["bad"], {}, root,
                                                          jnp.asarray(s, jnp.int32))
        return metrics["loss"]

    res = _timed(call, calls, repeats)
    _row("rbm_critic_step", res, critics=n_critics,
         critic_steps_per_s=round(n_critics * 1e3 / res["ms_per_step"], 2),
         ms_per_critic_step=round(res["ms_per_step"] / n_critics, 3),
         cpu_ms_per_critic_step=round(res["cpu_ms_per_step"] / n_critics, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--per_call", type=int, nargs="+", default=[1, 10, 100],
                        help="lsd.steps_per_call values for the toy_harness_step rows")
    parser.add_argument("--rbm_reps", type=int, default=2)
    parser.add_argument("--rbm_calls", type=int, default=3)
    parser.add_argument("--only", choices=("toy", "rbm", "all"), default="all")
    parser.add_argument("--harness_only", action="store_true",
                        help="toy: skip the single critic and model step rows")
    args = parser.parse_args()
    if args.only in ("toy", "all"):
        toy(args.calls, args.repeats, tuple(args.per_call), single=not args.harness_only)
    if args.only in ("rbm", "all"):
        rbm(args.rbm_reps, args.rbm_calls, max(3, args.repeats // 2))


if __name__ == "__main__":
    main()
