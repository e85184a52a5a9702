"""FFJORD as a method: a few steps of each model kind, sampling shapes, config validation."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.train import config as config_lib
from jaxebm.train.loop import guarded_step, root_key
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "ffjord.py")
FAST = ["solver.rtol=1e-3", "solver.atol=1e-3", "eval.rtol=1e-3", "eval.atol=1e-3"]


def _steps(method, n):
    step = guarded_step(method, 1e8)
    root = root_key(0)
    state, bad = method.init(root), jnp.asarray(-1, jnp.int32)
    losses = []
    for i in range(n):
        state, bad, m = step(state, bad, method.data.train_batch(i), root, jnp.int32(i))
        losses.append(float(m["loss"]))
    assert int(bad) == -1
    return state, losses


@pytest.mark.parametrize("variant, overrides", [
    ("smoke", []),
    ("smoke", ["model.trace=rademacher", "reg.kinetic=0.01", "reg.jac_frobenius=0.01"]),
    ("tabular_default", ["model.hidden=(16,)", "data.batch_size=32", "eval.max_examples=64",
                         "eval.batch_size=64", "model.trace=gaussian"]),
    ("digits", ["model.hidden=(8,)", "data.batch_size=16", "eval.batch_size=16",
                "eval.max_examples=16"]),
])
def test_training_steps_evaluation_and_sampling(variant, overrides):
    cfg = config_lib.load_config(f"{CONFIG}:{variant}", FAST + overrides)
    method = build_method(cfg)
    state, losses = _steps(method, 3)
    assert np.all(np.isfinite(losses))
    results = method.evaluate(state, jax.random.key(1))
    assert np.isfinite(results["nll"]) and results["nfe"] > 0
    if variant == "digits":
        assert 0 < results["bpd"] < 20
    samples = method.sample(state, jax.random.key(2), 5)
    assert samples.shape == (5, *method.data.example_shape)
    assert np.all(np.isfinite(samples))
    if variant == "digits":
        assert samples.min() >= 0 and samples.max() <= 1


def test_a_fixed_end_time_stays_fixed():
    cfg = config_lib.load_config(f"{CONFIG}:smoke", ["model.train_end_time=False"] + FAST)
    method = build_method(cfg)
    state, _ = _steps(method, 3)
    assert "sqrt_end_time" not in state["params"]
    assert method.evaluate(state, jax.random.key(0))["end_time"] == pytest.approx(0.5)


def test_loss_decreases_on_8gaussians():
    cfg = config_lib.load_config(f"{CONFIG}:smoke", ["optim.learning_rate=1e-2"])
    _, losses = _steps(build_method(cfg), 30)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3


@pytest.mark.parametrize("override, message", [
    ("data.name=nowhere", "unknown dataset 'nowhere'"),
    ("model.kind=multiscale", "needs images"),
    ("model.trace=exactish", "model.trace='exactish'"),
    ("solver.name=euler", "solver='euler'"),
    ("reg.kinetic=-1.0", "reg.kinetic"),
    ("optim.learning_rate=0.0", "optim.learning_rate must be > 0"),
])
def test_bad_config_values_fail_clearly(override, message):
    cfg = config_lib.load_config(f"{CONFIG}:smoke", [override])
    with pytest.raises(ValueError, match=message):
        build_method(cfg)


def test_every_variant_builds_a_config():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ffjord_cfg", CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for variant in (*mod.TOY, *mod.TABULAR, "mnist", "cifar10", "digits", "smoke"):
        cfg = mod.get_config(variant)
        assert cfg.data.name
    with pytest.raises(ValueError, match="unknown ffjord variant"):
        mod.get_config("nope")
