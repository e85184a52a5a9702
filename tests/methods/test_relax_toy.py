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
        ("toy.relax_cv=eta_f_plus_q", "toy.relax_cv"),
        ("eval.variance_samples=1", "eval.variance_samples"),
        ("experiment=vae", "experiment"),
        ("figure.estimators=('relax', 'lax')", "figure.estimators"),
    ],
)
def test_bad_config_fails_naming_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_method(_config(overrides=[override]))


def _toy_estimate(overrides, estimator, key):
    cfg = _config("toy", list(overrides) + [f"estimator={estimator}"])
    toy = relax_method.Toy(cfg, estimator)
    state = toy.init(jax.random.key(3))
    return toy, state, toy.estimate(state["logits"], state["cv"], key)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relax_q_scale_at_zero_starts_as_reinforce(seed):
    """Q's output scale initialised at 0 (the TF toy): c = 0, so g is REINFORCE's sample, and
    d g^2 / d phi vanishes for everything but the scale, d g^2/d s = -2 g Q(z~) score."""
    key = jax.random.key(seed)
    toy, state, (g, d_cv) = _toy_estimate([], "relax", key)
    _, _, (g_reinforce, _) = _toy_estimate([], "reinforce", key)
    np.testing.assert_array_equal(g, g_reinforce)
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(d_cv["net"][name], 0.0)
    np.testing.assert_array_equal(d_cv["log_temperature"], 0.0)
    # the scale's gradient by hand: g(s) = [f(b) - s Q(z~)] score + s (dQ(z)/dtheta - dQ(z~)/dtheta)
    from jaxebm.estimators import relaxations as rx

    logits = state["logits"]
    u = rx.uniform_open(jax.random.split(key)[0], logits.shape)
    z = rx.bernoulli_reparameterize(logits, u)
    b = rx.bernoulli_hard(z)
    unscaled = {k: v for k, v in state["cv"]["net"].items() if k != "scale"}
    temperature = jnp.exp(state["cv"]["log_temperature"])

    def q(lg, conditional):
        zz = rx.bernoulli_reparameterize(lg, u)
        zz = rx.bernoulli_conditional_shared(lg, b, zz) if conditional else zz
        return relax_method.q_func(unscaled, rx.bernoulli_soft(zz, temperature))

    dg_ds = -q(logits, True) * rx.bernoulli_score(logits, b) + jax.grad(
        lambda lg: q(lg, False) - q(lg, True)
    )(logits)
    np.testing.assert_allclose(d_cv["net"]["scale"], 2.0 * g * dg_ds, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relax_f_plus_q_with_zero_scale_is_rebar_with_eta_one(seed):
    """c = f(sigma_lambda(z)) + 0 * Q is REBAR's c with eta = 1: same g, same d g^2/d log lambda."""
    key = jax.random.key(seed)
    _, _, (g, d_cv) = _toy_estimate(["toy.relax_cv=f_plus_q"], "relax", key)
    _, _, (g_rebar, d_rebar) = _toy_estimate([], "rebar", key)
    np.testing.assert_allclose(g, g_rebar, rtol=1e-6)
    np.testing.assert_allclose(d_cv["log_temperature"], d_rebar["log_temperature"], rtol=1e-5, atol=1e-12)


def test_relax_without_scale_uses_the_bare_net():
    """toy.q_learned_scale=False: no scale leaf, and the net's weights get a variance gradient."""
    _, state, (_, d_cv) = _toy_estimate(["toy.q_learned_scale=False"], "relax", jax.random.key(0))
    assert "scale" not in state["cv"]["net"]
    assert float(jnp.sum(jnp.abs(d_cv["net"]["w1"]))) > 0.0
