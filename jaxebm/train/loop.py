"""The training harness shared by every method: ``train``, ``evaluate``, ``sample`` on a workdir.

One jitted, state-donating step per iteration; keys are ``fold_in(root, step)`` so a resumed run
replays the same stream. Divergence is caught on the device: a step whose loss is non-finite or
above ``train.loss_bound``, whose metrics named in ``train.metric_bounds`` leave their bounds, or
whose new state is non-finite, is not applied and its step number is recorded; the host reads
that flag only when it logs or checkpoints (no per-step sync). A checkpoint is written only when
no divergence happened before it, so the last good checkpoint is never replaced by a bad one.
With ``train.max_rollbacks > 0`` the run then restores that checkpoint, derives a new seed,
scales the fields named in ``train.rollback_scale`` and goes on.

A checkpoint can pass every check and still hold a model that has begun to diverge (a loss
climbing within its bound). So a relapse, a divergence before anything newer than the
checkpoint the previous rollback restored was saved, marks that checkpoint suspect: it is moved
to ``rejected_checkpoints/`` (kept, never deleted) and the rollback goes one checkpoint further
back, or to a fresh start when none is left.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxebm.train import config as config_lib
from jaxebm.train import sharding
from jaxebm.train.checkpoint import Checkpoints, abstract_like
from jaxebm.train.method import Method, build_method
from jaxebm.train.metrics import MetricWriter, to_float

# Fields that may change when a run is resumed; anything else must match config.json.
RESUMABLE_FIELDS = ("train.num_steps", "train.log_every", "train.eval_every", "train.ckpt_every",
                    "train.keep_checkpoints", "train.progress", "train.max_rollbacks",
                    "train.metric_bounds", "xla_flags")


class Diverged(RuntimeError):
    """Training produced a non-finite or exploding loss and no rollback was left."""


def root_key(seed: int, rollbacks: int = 0) -> jax.Array:
    key = jax.random.key(seed)
    return key if rollbacks == 0 else jax.random.fold_in(key, 1_000_003 + rollbacks)


def eval_key(seed: int, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 2**31 - 1), step)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guarded_step(method: Method, loss_bound: float, metric_bounds: dict[str, float] | None = None):
    """The method's step, jitted with the state donated, applied only if it stays finite and
    its loss and the metrics named in ``metric_bounds`` stay within their bounds."""
    bounds = {"loss": loss_bound, **(metric_bounds or {})}

    def step_fn(state, bad, batch, root, step):
        new_state, metrics = method.train_step(state, batch, jax.random.fold_in(root, step))
        _check_metric_names(bounds, metrics)
        within = [jnp.isfinite(metrics[k]) & (jnp.abs(metrics[k]) <= b) for k, b in bounds.items()]
        ok = (bad < 0) & jnp.all(jnp.stack(within)) & _all_finite(new_state)
        state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
        bad = jnp.where(ok | (bad >= 0), bad, step)
        return state, bad, metrics

    return jax.jit(step_fn, donate_argnums=(0,))


def _check_metric_names(bounds: dict[str, float], metrics: dict) -> None:
    missing = sorted(set(bounds) - set(metrics))
    if missing:
        raise ValueError(f"train.metric_bounds names {missing}, not among this method's step "
                         f"metrics {sorted(metrics)}")


def _check_bounded_metrics(cfg: ml_collections.ConfigDict, method: Method) -> None:
    """Traces one step abstractly (no compile) when ``train.metric_bounds`` is set, so that a
    misspelt metric fails before the workdir is touched rather than at the first step."""
    bounds = config_lib.metric_bounds(cfg)
    if not bounds:
        return
    key = jax.random.key(0)
    batch = {} if method.data is None else method.data.train_batch(0)
    _, metrics = jax.eval_shape(method.train_step, jax.eval_shape(method.init, key), batch, key)
    _check_metric_names(bounds, metrics)


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    diffs = []
    for k in sorted(set(old) | set(new)):
        path = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_differences(a, b, path + ".")
        elif json.dumps(a, default=list) != json.dumps(b, default=list):
            diffs.append(path)
    return diffs


def _prepare_workdir(cfg: ml_collections.ConfigDict, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        new = json.loads(json.dumps(cfg.to_dict(), default=list))
        fixed = [d for d in _config_differences(old, new) if d not in RESUMABLE_FIELDS]
        if fixed:
            raise ValueError(
                f"{workdir} holds a run with a different config (fields {fixed}); resume with the "
                "same config or train into a new --workdir"
            )
    config_lib.save_config(cfg, path)


def _build(cfg: ml_collections.ConfigDict, rollbacks: int, mesh) -> Method:
    """The method of ``cfg`` as scaled after ``rollbacks`` rollbacks; validates the config."""
    method = build_method(config_lib.scaled_for_rollback(cfg, rollbacks))
    if method.data is not None:
        sharding.check_batch_size(method.data.batch_size, mesh)
    return method


class _Run:
    """Mutable bookkeeping of one ``train`` call."""

    def __init__(self, cfg, workdir: Path):
        self.cfg = cfg
        self.workdir = workdir
        self.mesh = sharding.make_mesh()
        self.replicated = sharding.replicated(self.mesh)
        self.ckpts = Checkpoints(workdir / "checkpoints", cfg.train.keep_checkpoints)
        self.writer = MetricWriter(workdir) if jax.process_index() == 0 else None
        self.rollbacks = 0

    def build(self) -> Method:
        return _build(self.cfg, self.rollbacks, self.mesh)

    def initial_state(self, method: Method):
        """Restores the latest checkpoint, or initializes at step 0."""
        init_key = jax.random.fold_in(root_key(self.cfg.seed, self.rollbacks), 2**31 - 2)
        abstract = abstract_like(jax.eval_shape(method.init, init_key), self.replicated)
        if self.ckpts.latest_step() is None:
            return jax.device_put(jax.jit(method.init)(init_key), self.replicated), 0
        state, record = self.ckpts.restore(abstract)
        return state, int(record["step"])

    def log(self, step, split, metrics):
        if self.writer is not None:
            return self.writer.write(step, split, metrics)
        return metrics


def train(cfg: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Trains ``cfg`` in ``workdir`` (resuming from its latest checkpoint); returns final eval."""
    config_lib.validate_common(cfg)
    workdir = Path(workdir)
    # Nothing is written until the config has built a method whose step has the bounded
    # metrics, so a bad config (unknown dataset, bad shapes, missing data, a misspelt metric)
    # fails before a new folder is created or a resumed run's config.json is rewritten.
    method = _build(cfg, 0, sharding.make_mesh())
    _check_bounded_metrics(cfg, method)
    _prepare_workdir(cfg, workdir)
    run = _Run(cfg, workdir)
    latest = run.ckpts.latest_step()
    if latest is not None:
        run.rollbacks = int(run.ckpts.record(latest).get("rollbacks", 0))
    if run.rollbacks:
        method = run.build()
    state, start = run.initial_state(method)
    while True:
        try:
            state = _run_steps(run, method, state, start)
            break
        except Diverged as err:
            if run.rollbacks >= cfg.train.max_rollbacks:
                raise
            run.rollbacks += 1
            rejected = _reject_relapsed(run)
            entry = {"rollback": run.rollbacks, "reason": str(err),
                     "restored_step": run.ckpts.latest_step() or 0}
            if rejected is not None:
                entry["rejected"] = str(rejected.relative_to(workdir))
            with (workdir / "rollbacks.jsonl").open("a") as f:
                f.write(json.dumps(entry) + "\n")
            where = (f"moved the checkpoint it restored last time to {entry['rejected']}; "
                     if rejected is not None else "")
            print(f"[jaxebm] {err}\n[jaxebm] rollback {run.rollbacks}/{cfg.train.max_rollbacks}: "
                  f"{where}restoring step {entry['restored_step']} with a new seed", flush=True)
            method = run.build()
            state, start = run.initial_state(method)
    results = _final_evaluation(run, method, state, cfg.train.num_steps)
    run.ckpts.close()
    if run.writer is not None:
        run.writer.close()
    return results


def _reject_relapsed(run: _Run) -> Path | None:
    """Sets the latest checkpoint aside if the previous rollback restored it; returns where.

    Divergence right after restoring a checkpoint, with nothing newer saved, means that
    checkpoint may already hold a diverging model, so the next restart goes further back.
    """
    log = run.workdir / "rollbacks.jsonl"
    latest = run.ckpts.latest_step()
    lines = log.read_text().splitlines() if log.is_file() else []
    if latest is None or not lines:
        return None
    if json.loads(lines[-1])["restored_step"] != latest:
        return None
    return run.ckpts.set_aside(latest, run.workdir / "rejected_checkpoints")


def _diverged_message(run: _Run, bad_step: int) -> str:
    latest = run.ckpts.latest_step()
    where = f"step {latest} in {run.ckpts.directory}" if latest is not None else "none yet"
    bounds = run.cfg.train.get("metric_bounds", "")
    metrics = f", a metric of train.metric_bounds={bounds!r} exceeded its bound" if bounds else ""
    return (f"training diverged at step {bad_step}: the loss was non-finite or above "
            f"train.loss_bound={run.cfg.train.loss_bound}{metrics}, or the state became non-finite. "
            f"Last good checkpoint: {where} (kept intact). Lower optim.learning_rate or set "
            "train.max_rollbacks to restart from it automatically.")


def _run_steps(run: _Run, method: Method, state, start: int):
    cfg = run.cfg
    t = cfg.train
    step_fn = guarded_step(method, float(t.loss_bound), config_lib.metric_bounds(cfg))
    root = root_key(cfg.seed, run.rollbacks)
    # placed like the step's output, so the second step reuses the first step's compilation
    bad = jax.device_put(jnp.asarray(-1, jnp.int32), run.replicated)
    pending: list[dict] = []
    progress = None
    if t.progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        progress = tqdm(total=t.num_steps, initial=start, desc=cfg.method, dynamic_ncols=True)
    last_time, last_step = time.perf_counter(), start
    try:
        for step in range(start, t.num_steps):
            batch = {} if method.data is None else sharding.shard_batch(
                method.data.train_batch(step), run.mesh)
            state, bad, metrics = step_fn(state, bad, batch, root, jnp.asarray(step, jnp.int32))
            pending.append(metrics)
            done = step + 1
            boundary = done % t.log_every == 0 or done == t.num_steps
            if not (boundary or done % t.ckpt_every == 0 or (t.eval_every and done % t.eval_every == 0)):
                continue
            if int(bad) >= 0:  # the only host sync: at log, checkpoint and eval boundaries
                raise Diverged(_diverged_message(run, int(bad)))
            if pending and boundary:
                means = {k: np.mean([np.asarray(m[k]) for m in pending]) for k in pending[0]}
                now = time.perf_counter()
                means["steps_per_sec"] = (done - last_step) / max(now - last_time, 1e-9)
                last_time, last_step = now, done
                run.log(done, "train", means)
                pending = []
                if progress is not None:
                    progress.update(done - progress.n)
                    progress.set_postfix(loss=f"{means['loss']:.4g}",
                                         **{k: f"{v:.3g}" for k, v in means.items()
                                            if k in ("nfe", "acc")})
            if done % t.ckpt_every == 0 or done == t.num_steps:
                run.ckpts.save(done, state, {"step": done, "rollbacks": run.rollbacks})
            if t.eval_every and done % t.eval_every == 0 and done != t.num_steps:
                run.log(done, "eval", method.evaluate(state, eval_key(cfg.seed, done)))
    finally:
        if progress is not None:
            progress.close()
    return state


def _final_evaluation(run: _Run, method: Method, state, step: int) -> dict:
    cfg = run.cfg
    results = method.evaluate(state, eval_key(cfg.seed, step))
    run.log(step, "eval", results)
    if jax.process_index() == 0:
        _write_eval(run.workdir, step, results)
        if method.write_figures is not None:
            (run.workdir / "samples").mkdir(exist_ok=True)
            method.write_figures(state, eval_key(cfg.seed, step + 1), run.workdir / "samples")
    return results


def _write_eval(workdir: Path, step: int, results: dict) -> None:
    record = {"step": step, **{k: to_float(v) for k, v in results.items()}}
    (workdir / "eval.json").write_text(json.dumps(record, indent=2) + "\n")


def restore(workdir: str | Path):
    """``(config, method, state, step)`` of a workdir's latest checkpoint."""
    workdir = Path(workdir)
    cfg = config_lib.read_config(workdir / "config.json")
    run = _Run.__new__(_Run)
    run.cfg, run.workdir = cfg, workdir
    run.mesh = sharding.make_mesh()
    run.replicated = sharding.replicated(run.mesh)
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} not found: train first with `jaxebm train`")
    run.ckpts = Checkpoints(directory, cfg.train.keep_checkpoints)
    latest = run.ckpts.latest_step()
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: train first with `jaxebm train`")
    run.rollbacks = int(run.ckpts.record(latest).get("rollbacks", 0))
    method = run.build()
    state, step = run.initial_state(method)
    return cfg, method, state, step


def evaluate(workdir: str | Path) -> dict:
    """Evaluates the latest checkpoint; writes ``eval.json`` and figures into ``samples/``."""
    workdir = Path(workdir)
    cfg, method, state, step = restore(workdir)
    results = method.evaluate(state, eval_key(cfg.seed, step))
    _write_eval(workdir, step, results)
    if method.write_figures is not None:
        (workdir / "samples").mkdir(exist_ok=True)
        method.write_figures(state, eval_key(cfg.seed, step + 1), workdir / "samples")
    return {"step": step, **results}


def sample(workdir: str | Path, num: int, out: str | Path, seed: int | None = None) -> Path:
    """Draws ``num`` samples from the latest checkpoint into ``out`` (.npz or .png)."""
    from jaxebm.eval.plots import save_samples

    out = Path(out)
    if out.suffix not in (".npz", ".png"):
        raise ValueError(f"--out {out}: expected a .npz or .png file")
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    cfg, method, state, step = restore(workdir)
    key = jax.random.fold_in(eval_key(cfg.seed, step), 7 if seed is None else seed)
    samples = np.asarray(method.sample(state, key, num))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, samples=samples)
    else:
        save_samples(samples, out)
    return out
