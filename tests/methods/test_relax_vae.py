"""RELAX discrete VAE: the ELBO and the training gradient against exact enumeration, steps, configs."""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxebm.methods import relax_vae as rv
from jaxebm.train import config as config_lib
from jaxebm.train import loop
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "relax.py")
DATA_DIM, LATENTS = 3, 2
X = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], jnp.float32)


def _config(variant="vae_smoke", overrides=()):
    return config_lib.load_config(f"{CONFIG}:{variant}", list(overrides))


def tiny(model: str, seed: int = 0):
    """A tiny SBN with weights large enough that q is far from uniform."""
    sbn = rv.SBN(model, DATA_DIM, LATENTS, hidden=3)
    params = sbn.init(jax.random.key(seed), output_bias=jnp.array([0.3, -0.5, 0.1]))
    params = jax.tree.map(lambda w: 2.0 * w + 0.1, params)
    return sbn, params


def enumerate_latents(sbn: rv.SBN) -> list[jax.Array]:
    """All 2^(L n) joint configurations, as the list [b_1, ..., b_L] of (K, n) arrays."""
    n, L = sbn.num_latents, sbn.num_layers
    bits = jnp.array(list(itertools.product([0.0, 1.0], repeat=n * L)), jnp.float32)
    return [bits[:, l * n:(l + 1) * n] for l in range(L)]


def exact(sbn: rv.SBN, params, x):
    """(log p(x), ELBO) of one data point by summing over every latent configuration."""
    configs = enumerate_latents(sbn)
    log_joint = jax.vmap(lambda *bs: sbn.log_joint(params, x, list(bs)))(*configs)
    log_q = jax.vmap(lambda *bs: sbn.log_posterior(params, x, list(bs)))(*configs)
    q = jnp.exp(log_q)
    return jax.nn.logsumexp(log_joint), jnp.sum(q * (log_joint - log_q)), jnp.sum(q)


@pytest.mark.parametrize("model", ["linear2", "nonlinear"])  # linear = nonlinear's code, depth 0
def test_elbo_against_enumeration(model):
    sbn, params = tiny(model)
    n = 10000
    for x in X:
        log_px, elbo, total_q = jax.jit(exact, static_argnums=0)(sbn, params, x)
        np.testing.assert_allclose(total_q, 1.0, rtol=1e-5)
        assert float(log_px) >= float(elbo)
        samples = jax.jit(jax.vmap(lambda k: sbn.elbo_sample(params, x, k)))(jax.random.split(jax.random.key(1), n))
        se = float(jnp.std(samples)) / np.sqrt(n)
        assert abs(float(jnp.mean(samples)) - float(elbo)) < 4 * se


@pytest.mark.parametrize("model, estimator, draws", [("linear2", "relax", 3000)])
def test_training_gradient_is_unbiased(model, estimator, draws):
    """Mean of the per-step gradient (estimator part + direct part) = exact -dELBO/dparams.

    Every leaf (encoder, decoder, prior) within 4 standard errors; the control variate has
    random (nonzero) r weights, eta != 1, lambda != 0.5, so it is not a trivial one.
    """
    sbn, params = tiny(model)
    cfg = _config(overrides=[f"vae.num_latents={LATENTS}", "vae.cv_hidden=4"])
    cv = rv.init_control_variate(jax.random.key(2), estimator, sbn, cfg.vae)
    if estimator != "reinforce":
        cv = jax.tree.map(lambda w: w + 0.3, cv)  # nonzero r output, eta 1.3, lambda 0.67
    grad_est = rv.Estimator(sbn, estimator, shared_noise=True)

    def draw(key):
        return rv.training_gradient(sbn, grad_est, params, cv, X, key, with_cv_grad=False)[0]

    grads = jax.jit(jax.vmap(draw))(jax.random.split(jax.random.key(3), draws))
    want = jax.jit(jax.grad(lambda p: -jnp.mean(jax.vmap(lambda x: exact(sbn, p, x)[1])(X))))(params)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    se = jax.tree.map(lambda g: jnp.std(g, axis=0) / np.sqrt(draws), grads)
    for m, s, w in zip(jax.tree.leaves(mean), jax.tree.leaves(se), jax.tree.leaves(want)):
        np.testing.assert_array_less(jnp.abs(m - w), 4 * s + 1e-5)


def test_variance_gradient_matches_autodiff_of_the_objective():
    """grad_cv is d/dcv of sum_k mean_i ||g_{k,i} / B||^2 at fixed noise."""
    sbn, params = tiny("linear")
    cfg = _config(overrides=[f"vae.num_latents={LATENTS}", "vae.cv_hidden=4"])
    cv = jax.tree.map(lambda w: w + 0.3, rv.init_control_variate(jax.random.key(2), "relax", sbn, cfg.vae))
    grad_est = rv.Estimator(sbn, "relax")
    key = jax.random.key(5)
    batch = X.shape[0]
    objective = lambda c: sum(jnp.sum((g / batch) ** 2) / batch for g in grad_est(params, c, X, key)[0])

    @jax.jit
    def both(cv):
        return rv.training_gradient(sbn, grad_est, params, cv, X, key, with_cv_grad=True)[1], jax.grad(objective)(cv)

    grad_cv, want = both(cv)
    for got, w in zip(jax.tree.leaves(grad_cv), jax.tree.leaves(want)):
        np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-6)
    assert any(float(jnp.max(jnp.abs(w))) > 0 for w in jax.tree.leaves(want))


@pytest.mark.parametrize("estimator", ["rebar", "relax"])  # REINFORCE: the end-to-end test
def test_a_few_steps_give_finite_values(estimator):
    cfg = _config(overrides=[f"estimator={estimator}", "vae.model=linear"])
    method = build_method(cfg)
    state = jax.jit(method.init)(jax.random.key(0))
    step = jax.jit(method.train_step)
    for i in range(3):
        state, metrics = step(state, method.data.train_batch(i), jax.random.key(i))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["loss"]) > 0 and float(metrics["elbo"]) == -float(metrics["loss"])
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state))


def _fake_mnist(directory: Path) -> Path:
    """MNIST-format IDX files (28x28 uint8 images, labels) with 64 train and 16 test images."""
    from jaxebm.data.images import encode_idx

    rng = np.random.default_rng(0)
    directory.mkdir()
    for stem, n in (("train", 64), ("t10k", 16)):
        (directory / f"{stem}-images-idx3-ubyte").write_bytes(encode_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (directory / f"{stem}-labels-idx1-ubyte").write_bytes(encode_idx(rng.integers(0, 10, (n,), dtype=np.uint8)))
    return directory


def test_train_end_to_end_on_mnist_files_writes_eval_and_figures(tmp_path):
    """The MNIST path (784 pixels, 0..255, IDX files) through ``jaxebm train``'s loop."""
    data_dir = _fake_mnist(tmp_path / "mnist")
    overrides = ["estimator=reinforce", "vae.model=linear", "train.ckpt_every=6", "data.name=mnist",
                 f"data.dir={data_dir}", "data.validation_size=16"]
    cfg = _config(overrides=overrides)
    results = loop.train(cfg, tmp_path / "run")
    assert set(results) >= {"val_elbo", "test_elbo", "grad_var", "log10_grad_var", "logit_grad_var"}
    assert all(np.isfinite(v) for v in results.values())
    assert results["val_elbo"] < 0 and results["grad_var"] > 0
    assert (tmp_path / "run" / "samples" / "vae_elbo_variance.png").stat().st_size > 1000
    assert (tmp_path / "run" / "samples" / "vae_samples.png").is_file()


def test_binarize_thresholds_at_half_range():
    x = np.array([[[[0], [8]], [[9], [16]]]], np.uint8)  # digits: 0..16
    np.testing.assert_array_equal(rv.binarize(x, 17, 0.5), [[0.0, 0.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    "override, field",
    [
        ("estimator=lax", "estimator"),
        ("vae.model=deep", "vae.model"),
        ("vae.num_latents=0", "vae.num_latents"),
        ("vae.init_temperature=0.0", "vae.init_temperature"),
        ("data.name=moons", "data.name"),
        ("eval.variance_samples=1", "eval.variance_samples"),
    ],
)
def test_bad_config_fails_naming_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build_method(_config(overrides=[override]))
