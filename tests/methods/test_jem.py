"""JEM as a method: a smoke run through the harness (with an injected divergence and rollback),
the loss against its parts, the baseline and semi-supervised variants, the OOD sets, and config
errors that must fail before anything is compiled."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.eval import ood
from jaxebm.methods import jem
from jaxebm.train import config as config_lib
from jaxebm.train import loop
from jaxebm.train.checkpoint import Checkpoints
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "jem.py")
OOD_SETS = ("permuted", "interp", "noise")


def _cfg(variant="smoke", overrides=()):
    return config_lib.load_config(f"{CONFIG}:{variant}", list(overrides))


def _steps(method, n, loss_bound=1e8):
    step = loop.guarded_step(method, loss_bound)
    root = loop.root_key(0)
    state, bad = jax.jit(method.init)(root), jnp.asarray(-1, jnp.int32)
    history = []
    for i in range(n):
        state, bad, m = step(state, bad, method.data.train_batch(i), root, jnp.int32(i))
        history.append({k: float(v) for k, v in m.items()})
    assert int(bad) == -1
    return state, history


def test_smoke_run_rolls_back_once_and_finishes(tmp_path):
    """A NaN loss injected at step 4 is not applied; the run restores the step-3 checkpoint with
    a new seed, the scaled config moves the NaN past the end, and eval, figures and sampling
    work on the result."""
    cfg = _cfg(overrides=["debug.nan_at_step=4",
                          "train.rollback_scale=debug.nan_at_step:100,optim.learning_rate:0.5"])
    results = loop.train(cfg, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "rollbacks.jsonl").read_text().splitlines()]
    assert [r["rollback"] for r in log] == [1] and log[0]["restored_step"] == 3
    assert "diverged at step 4" in log[0]["reason"]
    assert Checkpoints(tmp_path / "checkpoints").record(6)["rollbacks"] == 1

    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["step"] == 6 and record == {"step": 6, **results}
    assert 0 <= record["accuracy"] <= 1 and 0 <= record["ece"] <= 1 and record["nll"] > 0
    assert 0.1 <= record["mean_confidence"] <= 1  # a max over 10 class probabilities
    assert 0 < record["ece_calibrated"] < 1  # the floor of 32 uncertain predictions is above 0
    for name in OOD_SETS:
        for score in ood.SCORES:
            assert 0 <= record[f"auroc_{name}_{score}"] <= 1
    for png in ("reliability.png", "samples.png", "samples_per_class.png", "buffer.png"):
        assert (tmp_path / "samples" / png).stat().st_size > 0
    saved = np.load(tmp_path / "samples" / "predictions.npz")  # the evaluated examples' log p(y|x)
    assert saved["log_probs"].shape == (32, 10) and saved["labels"].shape == (32,)
    np.testing.assert_allclose(np.exp(saved["log_probs"]).sum(1), 1.0, rtol=1e-5)
    assert np.mean(saved["log_probs"].argmax(1) == saved["labels"]) == record["accuracy"]


def _symmetric(x_uint8):
    return jnp.asarray(x_uint8, jnp.float32) / 16 * 2 - 1  # digits: 17 levels


def test_semi_supervised_class_conditional_loss_is_the_weighted_sum_of_its_terms():
    """loss = w_y CE(x_lab) + w_x (mean log p~(x_q) - mean log p~(x)) + w_2 (mean E(x)^2 + mean
    E(x_q)^2), recomputed from the initial parameters, the batch (a labelled batch apart from
    the p(x) batch), and the class-conditional chains' outputs that the step wrote into the
    buffer (so large that the 10 chains get 10 distinct entries)."""
    w_x, w_y, w_2 = 2.0, 0.5, 0.1  # distinct, so a swapped weight cannot pass
    cfg = _cfg(overrides=[f"jem.p_x_weight={w_x}", f"jem.p_y_given_x_weight={w_y}",
                          f"jem.l2_energy_weight={w_2}", "sgld.buffer_size=100000",
                          "jem.data_noise=0.0", "jem.pad=0", "data.labels_per_class=3",
                          "data.batch_size=10", "jem.class_conditional=True"])
    method = build_method(cfg)
    ds = method.data
    assert ds.num_labelled == 30
    assert np.all(np.bincount(ds.labelled.split("train")["y"], minlength=10) == 3)
    batch, again = ds.train_batch(0), ds.train_batch(0)
    assert set(batch) == {"x", "x_lab", "y_lab"} and batch["x"].shape == (10, 8, 8, 1)
    for k in batch:
        np.testing.assert_array_equal(batch[k], again[k])

    state0 = jax.jit(method.init)(jax.random.key(0))
    params0 = state0["params"]
    assert state0["buffer"].num_classes == 10
    before = np.asarray(state0["buffer"].samples)
    state, m = jax.jit(method.train_step)(jax.tree.map(jnp.copy, state0), batch, jax.random.key(1))
    after = np.asarray(state["buffer"].samples)
    changed = np.flatnonzero(np.any(after != before, axis=(1, 2, 3)))
    assert len(changed) == 10

    core = jem.make_core(cfg, (8, 8, 1), 10, 17)
    logits_lab = core.apply(params0, _symmetric(batch["x_lab"]))
    ce = -jnp.mean(jax.nn.log_softmax(logits_lab)[jnp.arange(10), batch["y_lab"]])
    lp_data = jax.nn.logsumexp(core.apply(params0, _symmetric(batch["x"])), axis=-1)
    lp_q = jax.nn.logsumexp(core.apply(params0, jnp.asarray(after[changed])), axis=-1)
    expected = (w_y * ce + w_x * (jnp.mean(lp_q) - jnp.mean(lp_data))
                + w_2 * (jnp.mean(lp_data**2) + jnp.mean(lp_q**2)))
    np.testing.assert_allclose(float(m["ce"]), float(ce), rtol=1e-5)
    np.testing.assert_allclose(float(m["logpx_data"]), float(jnp.mean(lp_data)), rtol=1e-5)
    np.testing.assert_allclose(float(m["logpx_sample"]), float(jnp.mean(lp_q)), rtol=1e-5)
    np.testing.assert_allclose(float(m["energy_gap"]), float(jnp.mean(lp_data) - jnp.mean(lp_q)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(m["loss"]), float(expected), rtol=1e-5)
    assert int(state["step"]) == 1

    samples = method.sample(state, jax.random.key(3), 25)  # two sampler batches of 20
    assert samples.shape == (25, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1


def test_baseline_is_cross_entropy_on_the_shared_batch_and_learns():
    cfg = _cfg("smoke", ["jem.p_x_weight=0.0", "optim.learning_rate=1e-2", "data.batch_size=64",
                         "model.hidden=(64,)", "jem.data_noise=0.0", "jem.pad=0"])
    method = build_method(cfg)
    state, history = _steps(method, 30)
    assert "buffer" not in state and "logpx_sample" not in history[0]
    # the first step's metrics are those of the initial parameters on batch 0
    params0 = jax.jit(method.init)(loop.root_key(0))["params"]
    batch = method.data.train_batch(0)
    logits = jem.make_core(cfg, (8, 8, 1), 10, 17).apply(params0, _symmetric(batch["x"]))
    ce = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(64), batch["y"]])
    np.testing.assert_allclose(history[0]["ce"], float(ce), rtol=1e-5)
    np.testing.assert_allclose(history[0]["loss"], float(ce), rtol=1e-5)
    np.testing.assert_allclose(history[0]["logpx_data"],
                               float(jnp.mean(jax.nn.logsumexp(logits, axis=-1))), rtol=1e-5)
    assert np.mean([h["ce"] for h in history[-5:]]) < np.mean([h["ce"] for h in history[:5]]) - 0.5


def test_cifar10_config_runs_under_tfds_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = _cfg("cifar10", ["model.depth=10", "model.width=1", "data.batch_size=4",
                           "data.validation_size=2", "sgld.n_steps=1", "sgld.buffer_size=20",
                           "eval.batch_size=6", "eval.max_examples=6"])
    assert (cfg.model.kind, cfg.model.depth, cfg.optim.warmup_steps) == ("wrn", 10, 1000)
    with tfds.testing.mock_data(num_examples=10):
        method = build_method(cfg)
        state, history = _steps(method, 2)
        results = method.evaluate(state, jax.random.key(0))
    assert all(np.isfinite(h["loss"]) for h in history)
    assert method.data.example_shape == (32, 32, 3)
    for name in ("svhn", "cifar100", "interp"):
        for score in ood.SCORES:
            assert 0 <= results[f"auroc_{name}_{score}"] <= 1


def test_ood_sets_are_fixed_transformations_of_the_test_images():
    cfg = _cfg()
    rng = np.random.default_rng(3)
    x = rng.integers(0, 17, (12, 8, 8, 1)).astype(np.uint8)
    sets = jem.make_ood_sets(cfg, x, 17)
    again = jem.make_ood_sets(cfg, x, 17)
    sym = x.astype(np.float32) / 16 * 2 - 1
    for name in OOD_SETS:
        assert sets[name].shape == x.shape
        np.testing.assert_array_equal(sets[name], again[name])
    # every permuted image holds the same pixel values as its source, in another order
    np.testing.assert_array_equal(np.sort(sets["permuted"].reshape(12, -1), axis=1),
                                  np.sort(sym.reshape(12, -1), axis=1))
    assert not np.array_equal(sets["permuted"], sym)
    # every interpolation is the mean of its image and a different one
    partners = [[j for j in range(12) if j != i and np.allclose(2 * sets["interp"][i] - sym[i], sym[j])]
                for i in range(12)]
    assert all(partners)
    assert sets["noise"].min() >= -1 and sets["noise"].max() <= 1


def test_eval_split_union_is_both_held_out_splits_in_order():
    ds = jem.load_data(_cfg())
    val, test = ds.split("validation"), ds.split("test")
    both = jem.eval_split(ds, "validation+test")
    n_val = len(val["y"])
    assert len(both["y"]) == n_val + len(test["y"]) == 358  # 10% + 10% of 1797 digits
    for k in ("x", "y"):
        np.testing.assert_array_equal(both[k][:n_val], val[k])
        np.testing.assert_array_equal(both[k][n_val:], test[k])
    np.testing.assert_array_equal(jem.eval_split(ds, "test")["x"], test["x"])
    assert _cfg("digits").eval.split == _cfg("digits_baseline").eval.split == "validation+test"


def test_every_variant_passes_the_checks():
    for variant in ("cifar10", "cifar10_baseline", "digits", "digits_baseline", "smoke"):
        cfg = _cfg(variant)
        config_lib.validate_common(cfg)  # includes the rollback_scale fields
        jem.validate_config(cfg)
        assert cfg.train.max_rollbacks > 0
    assert _cfg("cifar10_baseline").jem.p_x_weight == 0.0
    with pytest.raises(ValueError, match="unknown jem variant"):
        _cfg("imagenet")


@pytest.mark.parametrize("override, message", [
    ("sgld.n_steps=0", "sgld.n_steps must be a positive integer"),
    ("sgld.step_size=0.0", "sgld.step_size must be > 0"),
    ("sgld.reinit_prob=1.5", "sgld.reinit_prob"),
    ("sgld.loop=fast", "sgld.loop='fast'"),
    ("eval.ood_sets=('celeba',)", "unknown OOD set 'celeba'"),
    ("eval.ood_sets=('svhn',)", "'svhn' has images of shape"),
    ("model.kind=resnet", "model.kind='resnet'"),
    ("model.norm=batch", "BatchNorm"),
    ("model.activation=sigmoidish", "unknown activation"),
    ("jem.p_x_weight=-1.0", "jem.p_x_weight must be >= 0"),
    ("jem.class_conditional=True", "multiple of the 10 classes"),
    ("data.labels_per_class=1", "fewer than data.batch_size"),
    ("eval.sample_init=prior", "eval.sample_init"),
    ("eval.split=train", "eval.split='train'"),
])
def test_bad_config_values_fail_before_training(tmp_path, override, message):
    overrides = [override]
    if override == "jem.class_conditional=True":
        overrides.append("sgld.buffer_size=105")
    cfg = _cfg(overrides=overrides)
    with pytest.raises(ValueError, match=message):
        loop.train(cfg, tmp_path)
    assert not list((tmp_path / "checkpoints").glob("[0-9]*"))  # nothing was trained or saved


def _fold_workdir(root, folds, fold, log_probs, labels, bins=15):
    d = root / f"fold{fold}"
    (d / "samples").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(
        {"data": {"cv_folds": folds, "cv_fold": fold}, "eval": {"ece_bins": bins}}))
    np.savez(d / "samples" / "predictions.npz", log_probs=log_probs.astype(np.float32), labels=labels)
    return d


def test_pool_folds_pools_held_out_predictions_in_fold_order(tmp_path):
    """Three folds given out of order pool into one evaluation equal to the metrics computed by
    hand on the concatenation in fold order; missing, repeated or mixed folds are errors."""
    rng = np.random.default_rng(0)
    sizes = (7, 6, 6)
    logits = [rng.normal(size=(n, 4)) * 3 for n in sizes]
    log_probs = [x - np.log(np.exp(x).sum(1, keepdims=True)) for x in logits]
    labels = [rng.integers(0, 4, n) for n in sizes]
    dirs = [_fold_workdir(tmp_path, 3, f, log_probs[f], labels[f], bins=5) for f in range(3)]
    pooled_lp, pooled_y, m = jem.pool_folds([dirs[2], dirs[0], dirs[1]])
    lp, y = np.concatenate(log_probs), np.concatenate(labels)
    np.testing.assert_allclose(pooled_lp, lp, rtol=1e-6)
    np.testing.assert_array_equal(pooled_y, y)
    probs = np.exp(lp)
    conf, correct = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, 6)
    ece = sum(np.sum(sel) / y.size * abs(conf[sel].mean() - correct[sel].mean())
              for a, b in zip(edges[:-1], edges[1:]) if np.any(sel := (conf > a) & (conf <= b)))
    assert m["num_examples"] == 19 and m["folds"] == 3
    assert m["accuracy"] == pytest.approx(correct.mean())
    assert m["nll"] == pytest.approx(-np.mean(lp[np.arange(19), y]), rel=1e-5)
    assert m["ece"] == pytest.approx(ece, rel=1e-5)
    assert m["mean_confidence"] == pytest.approx(conf.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="folds 0..2 once each"):
        jem.pool_folds(dirs[:2])
    with pytest.raises(ValueError, match="folds 0..2 once each"):
        jem.pool_folds([dirs[0], dirs[1], dirs[1]])
    other = _fold_workdir(tmp_path / "k2", 2, 0, log_probs[0], labels[0])
    with pytest.raises(ValueError, match="share one data.cv_folds"):
        jem.pool_folds([*dirs, other])
