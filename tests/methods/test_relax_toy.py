"""The RELAX toy as a method: harness steps, the whole-run scan, the learned control variate."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.methods import relax as relax_method
from jaxebm.train import config as config_lib
from jaxebm.train import loop
from jaxebm.train.loop import guarded_step, root_key
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "relax.py")


def _config(variant="smoke", overrides=()):
    return config_lib.load_config(f"{CONFIG}:{variant}", list(overrides))


@pytest.mark.parametrize("estimator", relax_method.ESTIMATORS)
def test_harness_steps_equal_the_scanned_run(estimator):
    """Five steps through the harness's guarded step = the same five steps in run_toy's scan."""
    cfg = _config(overrides=[f"estimator={estimator}"])
    method = build_method(cfg)
    root = root_key(cfg.seed)
    state = method.init(jax.random.fold_in(root, 2**31 - 2))
    step = guarded_step(method, 1e8)
    bad = jnp.asarray(-1, jnp.int32)
    thetas = []
    for i in range(5):
        state, bad, metrics = step(state, bad, {}, root, jnp.asarray(i, jnp.int32))
        thetas.append(float(metrics["theta"]))
        assert set(metrics) >= {"loss", "theta", "grad_sq"}
    assert int(bad) == -1
    final, trace = relax_method.run_toy(cfg, estimator, 5)(cfg.seed)
    np.testing.assert_allclose(trace["theta"], thetas, rtol=1e-6)
    np.testing.assert_allclose(final["logits"], state["logits"], rtol=1e-6)
    # and the reported loss is the exact expected loss at the new theta
    p = np.asarray(trace["theta"])
    t = cfg.toy.target
    np.testing.assert_allclose(trace["loss"], p * (1 - t) ** 2 + (1 - p) * t**2, rtol=1e-6)


def reinforce_variance(p: float, t: float) -> float:
    """Var[f(b)(b - p)] for f(b) = (b - t)^2, b ~ Bernoulli(p): closed form."""
    f1, f0 = (1 - t) ** 2, t**2
    second = p * (f1 * (1 - p)) ** 2 + (1 - p) * (f0 * p) ** 2
    return second - (p * (1 - p) * (f1 - f0)) ** 2


def test_relax_control_variate_learns_to_cut_the_variance():
    """After 400 steps RELAX's gradient variance is 100x below REINFORCE's at the same theta."""
    cfg = _config("toy", ["eval.variance_samples=256"])
    _, trace = relax_method.run_toy(cfg, "relax", 400, variance_every=200)(0)
    theta = float(trace["theta"][-1])
    assert float(trace["log10_var"][-1]) < np.log10(reinforce_variance(theta, cfg.toy.target)) - 2.0


def test_evaluate_sample_and_figure(tmp_path):
    cfg = _config(overrides=["figure.num_steps=20", "figure.variance_every=10", "figure.estimators=('relax',)"])
    results = loop.train(cfg, tmp_path / "run")
    assert set(results) >= {"loss", "theta", "grad_var", "log10_grad_var"}
    assert np.isfinite(results["log10_grad_var"])
    assert (tmp_path / "run" / "samples" / "toy_loss_variance.png").stat().st_size > 1000
    method = build_method(cfg)
    samples = method.sample(method.init(jax.random.key(0)), jax.random.key(1), 7)
    assert samples.shape == (7, cfg.toy.num_latents)
    assert set(np.unique(samples)) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "override, field",
    [
        ("estimator=lax", "estimator"),
        ("toy.batch_size=0", "toy.batch_size"),
        ("toy.init_temperature=0.0", "toy.init_temperature"),
        ("eval.variance_samples=1", "eval.variance_samples"),
        ("experiment=vae", "experiment"),
        ("figure.estimators=('relax', 'lax')", "figure.estimators"),
    ],
)
def test_bad_config_fails_naming_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_method(_config(overrides=[override]))
