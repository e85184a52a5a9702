"""LSD's ICA experiment: the closed-form score-matching trace, each objective's steps, the exact
evaluation, config errors."""

from pathlib import Path

import jax
import numpy as np
import pytest

from jaxebm.distributions import ica
from jaxebm.estimators.divergence import batched_divergence
from jaxebm.methods.lsd_ica import score_jacobian_trace
from jaxebm.train import config as config_lib
from jaxebm.train.loop import root_key
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "lsd.py")


def _cfg(overrides=()):
    return config_lib.load_config(f"{CONFIG}:ica_smoke", list(overrides))


def test_closed_form_trace_of_the_score_jacobian_matches_autodiff():
    b = jax.random.normal(jax.random.key(0), (4, 4))
    x = jax.random.normal(jax.random.key(1), (6, 4)) * 2.0

    @jax.jit
    def both(b, x):
        _, exact = batched_divergence(lambda xi: ica.score(b, xi), x, method="exact")
        return score_jacobian_trace(b, x), exact

    got, want = both(b, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("objective", ["lsd", "sm", "ssm", "mle"])
def test_objective_steps_and_exact_evaluation(objective):
    cfg = _cfg([f"objective={objective}"])
    method = build_method(cfg)
    root = root_key(0)
    state = jax.jit(method.init)(root)
    step = jax.jit(method.train_step)
    losses = []
    for i in range(3):
        state, metrics = step(state, {}, jax.random.fold_in(root, i))
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert int(state["step"]) == 3
    out = method.evaluate(state, jax.random.key(0))
    assert set(out) == {"test_loglik", "true_loglik", "loglik_gap", "optimizer_steps"}
    assert out["loglik_gap"] == pytest.approx(out["true_loglik"] - out["test_loglik"])
    assert out["loglik_gap"] > -0.05  # the truth is the best model (up to sampling)
    samples = method.sample(state, jax.random.key(1), 7)
    assert samples.shape == (7, cfg.model.dim) and np.all(np.isfinite(samples))
    if objective == "mle":  # the true unmixing matrix scores exactly the true log-likelihood
        true_b = ica.init_unmixing(jax.random.split(jax.random.key(cfg.seed), 3)[0], cfg.model.dim)
        truth = method.evaluate(dict(state, B=true_b), jax.random.key(0))
        assert truth["loglik_gap"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("override, message", [
    ("objective=nce", "objective='nce'"),
    ("model.dim=1", "model.dim"),
    ("lsd.trace=exact", "lsd.trace='exact'"),
    ("model.dims=3", "unknown config field 'model.dims'"),
])
def test_bad_ica_config_fails_clearly(override, message):
    with pytest.raises(ValueError, match=message):
        build_method(_cfg([override]))
