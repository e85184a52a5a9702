"""LSD: the networks' forward-mode products, the Stein identity through the method's own score
paths, the toy and RBM-test methods (steps, counting, evaluation, selection), config errors."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.scipy.special import ndtr

from jaxebm.distributions import rbm as rbm_lib
from jaxebm.methods.lsd import EBM, Flat, batched_stein_terms
from jaxebm.nn.swish import SmallMLP
from jaxebm.stein import stein_statistic, stein_z_test
from jaxebm.train import config as config_lib
from jaxebm.train import sharding
from jaxebm.train.loop import guarded_step, root_key, train
from jaxebm.train.method import build_method

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "lsd.py")


def _cfg(variant, overrides=()):
    return config_lib.load_config(f"{CONFIG}:{variant}", list(overrides))


def _run(method, n):
    """``n`` harness steps; returns the states after each step and the metrics."""
    step = guarded_step(method, 1e8)
    root = root_key(0)
    mesh = sharding.make_mesh()
    # committed inputs, like the step's outputs, so the step compiles once
    state = jax.device_put(jax.jit(method.init)(root), sharding.replicated(mesh))
    bad = jax.device_put(jnp.asarray(-1, jnp.int32), sharding.replicated(mesh))
    states, metrics = [], []
    for i in range(n):
        batch = {} if method.data is None else sharding.shard_batch(method.data.train_batch(i),
                                                                    mesh)
        state, bad, m = step(state, bad, batch, root, jnp.int32(i))
        states.append(jax.tree.map(jnp.copy, state))
        metrics.append({k: float(v) for k, v in m.items()})
    assert int(bad) == -1
    return states, metrics


# ------------------------------------------------------------------ networks: forward mode


@pytest.mark.parametrize("out, rate", [(1, 0.0), (3, 0.0), (3, 0.5)])
def test_small_mlp_jvp_matches_autodiff(out, rate):
    net = SmallMLP(3, out, hidden=8, dropout_rate=rate, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 3))
    t = jax.random.normal(jax.random.key(2), (5, 3))
    key = jax.random.key(3) if rate else None
    graphdef, params = nnx.split(net)

    @jax.jit
    def both(params):
        m = nnx.merge(graphdef, params)
        return m.jvp(x, t, key=key), jax.jvp(lambda z: m(z, key=key), (x,), (t,))

    got, want = both(params)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_hidden, rate", [(1, 0.0), (2, 0.0), (2, 0.5)])
def test_small_mlp_exact_trace_in_closed_form_matches_the_jacobian(n_hidden, rate):
    net = SmallMLP(4, 4, hidden=7, n_hidden=n_hidden, dropout_rate=rate, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 4))
    key = jax.random.key(3) if rate else None
    graphdef, params = nnx.split(net)

    @jax.jit
    def both(params):
        m = nnx.merge(graphdef, params)
        jac = jax.jacfwd(lambda z: m(z, key=key))(x)  # (5, 4, 5, 4): rows use their own masks
        return m.value_and_trace(x, key=key), m(x, key=key), jnp.einsum("iaia->i", jac)

    (f, trace), f_direct, trace_direct = both(params)
    np.testing.assert_allclose(f, f_direct, rtol=1e-6)
    np.testing.assert_allclose(trace, trace_direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("base", [True, False])
def test_ebm_jvp_is_the_score_along_v(base):
    from ml_collections import ConfigDict

    model = ConfigDict(dict(hidden=8, n_hidden=2, init="torch", base_dist=base))
    ebm = EBM(2, model, np.array([0.5, -1.0]), np.array([2.0, 0.5]), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (6, 2))
    v = jax.random.normal(jax.random.key(2), (6, 2))
    graphdef, params = nnx.split(ebm)

    @jax.jit
    def all_of(params):
        m = nnx.merge(graphdef, params)
        return jax.grad(lambda z: jnp.sum(m(z)))(x), m.jvp(x, v), m(x)

    score, (value, sq_v), direct = all_of(params)
    np.testing.assert_allclose(value, direct, rtol=1e-6)
    np.testing.assert_allclose(sq_v, jnp.sum(score * v, axis=1), rtol=1e-5, atol=1e-6)


def test_batched_stein_terms_equal_the_per_sample_block():
    net = SmallMLP(3, 3, hidden=8, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (7, 3))
    sq = jax.random.normal(jax.random.key(2), (7, 3))
    eps = jax.random.normal(jax.random.key(3), (7, 3))
    graphdef, params = nnx.split(net)

    @jax.jit
    def both(params):
        m = nnx.merge(graphdef, params)
        return (batched_stein_terms(m, x, sq, eps),
                stein_statistic(lambda xi: m(xi[None])[0], x, sq, trace="gaussian", eps=eps))

    got, want = both(params)
    np.testing.assert_allclose(got.stat, want.stat, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sq_norm, want.sq_norm, rtol=1e-5, atol=1e-6)


def test_stein_identity_with_the_true_score_through_the_model_step_path():
    """An EBM whose network outputs 0 is exactly its Gaussian base; with data from that Gaussian
    the statistic s^T f + tr(df/dx) (s^T f by the EBM's forward-mode product, as in the model
    step) has mean 0 for any critic, here an untrained one, to Monte Carlo error."""
    from ml_collections import ConfigDict

    mu, std = np.array([1.0, -0.5]), np.array([0.7, 1.5])
    ebm = EBM(2, ConfigDict(dict(hidden=8, n_hidden=2, init="torch", base_dist=True)), mu, std,
              rngs=nnx.Rngs(0))
    ebm.net.out.kernel[...] = jnp.zeros_like(ebm.net.out.kernel[...])
    ebm.net.out.bias[...] = jnp.zeros_like(ebm.net.out.bias[...])
    critic = SmallMLP(2, 2, hidden=16, rngs=nnx.Rngs(4))
    n = 20000
    mu_, std_ = jnp.asarray(mu, jnp.float32)[None, :], jnp.asarray(std, jnp.float32)[None, :]
    (eg, ep), (cg, cp) = nnx.split(ebm), nnx.split(critic)

    @jax.jit
    def stats(ep, cp):
        x = mu_ + std_ * jax.random.normal(jax.random.key(5), (n, 2))
        eps = jax.random.normal(jax.random.key(6), (n, 2))
        fx, jeps = nnx.merge(cg, cp).jvp(x, eps)
        _, sq_f = nnx.merge(eg, ep).jvp(x, fx)
        trace = jnp.sum(eps * jeps, axis=1)
        # the same critic against a wrong model (mean shifted by 1 in both coordinates)
        wrong = jnp.sum(fx * (-(x - (mu_ + 1.0)) / std_**2), 1)
        return sq_f + trace, wrong + trace

    stat, shifted = stats(ep, cp)
    se = float(jnp.std(stat) / np.sqrt(n))
    assert abs(float(jnp.mean(stat))) < 4 * se
    assert abs(float(jnp.mean(shifted))) > 10 * se


# ------------------------------------------------------------------ the toy method


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """One in-process ``train`` of the smoke config (12 steps, logged every 6)."""
    import json

    workdir = tmp_path_factory.mktemp("lsd_smoke")
    results = train(_cfg("smoke"), workdir)
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return workdir, results, rows


def test_toy_train_alternates_five_critic_steps_and_one_model_step(toy):
    workdir, _, rows = toy
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [6, 12]
    # steps 0 and 6 update the model: one model step in each block of 6 logged steps
    assert all(r["model_step"] == pytest.approx(1 / 6) for r in train_rows)
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["critic_loss"]) for r in train_rows)
    assert (workdir / "samples" / "density.png").is_file()


def test_toy_evaluation_keys(toy):
    _, results, _ = toy
    # the evaluated energy is the moving average (nll); the raw parameters' NLL is nll_raw
    assert set(results) == {"nll", "nll_box4", "nll_raw", "nll_raw_box4", "lsd_test",
                            "critic_sq_norm", "true_nll", "optimizer_steps"}
    assert all(np.isfinite(v) for v in results.values())
    assert results["optimizer_steps"] == 12.0
    # no model beats the truth
    assert min(results["nll"], results["nll_raw"]) > results["true_nll"] - 0.05


def test_toy_samples_and_the_gaussian_base_alone_against_its_closed_form(toy):
    """Zero the energy network's output layer: log q~ is the base Gaussian, whose NLL on the
    grid box is the Gaussian NLL plus the log of its mass inside the box."""
    from jaxebm.train.loop import restore

    cfg, method, state, _ = restore(toy[0])
    samples = method.sample(state, jax.random.key(1), 50)
    assert samples.shape == (50, 2) and np.all(np.abs(samples) <= cfg.eval.plot_bound)
    data = method.data.split("train")["x"][: cfg.model.init_size]
    mu, std = data.mean(0), data.std(0, ddof=1)
    ebm = EBM(2, cfg.model, mu, std, rngs=nnx.Rngs(0))
    ebm.net.out.kernel[...] = jnp.zeros_like(ebm.net.out.kernel[...])
    ebm.net.out.bias[...] = jnp.zeros_like(ebm.net.out.bias[...])
    flat = Flat.of(ebm)  # as the raw energy and as the (evaluated) average
    out = method.evaluate(dict(state, ebm=flat, ebm_ema=0.5 * flat, ema_weight=jnp.float32(0.5)),
                          jax.random.key(0))
    test = method.data.split("test")["x"].astype(np.float64)
    gauss_nll = np.mean(np.sum(0.5 * ((test - mu) / std) ** 2 + np.log(std)
                               + 0.5 * np.log(2 * np.pi), axis=1))
    b = cfg.eval.grid_bound
    log_mass = np.sum(np.log(np.asarray(ndtr((b - mu) / std) - ndtr((-b - mu) / std))))
    np.testing.assert_allclose(out["nll"], gauss_nll + log_mass, atol=2e-3)
    np.testing.assert_allclose(out["nll_raw"], gauss_nll + log_mass, atol=2e-3)


def test_toy_several_steps_per_call_count_optimizer_steps_and_average_the_energy():
    method = build_method(_cfg("smoke", ["lsd.steps_per_call=3", "model.ema_decay=0.5",
                                         "model.ema_warmup=0"]))
    assert method.data.batch_size == 3 * 64
    states, metrics = _run(method, 2)
    assert int(states[-1]["step"]) == 6
    assert metrics[0]["model_step"] == pytest.approx(1 / 3)
    assert all(np.isfinite(m["loss"]) for m in metrics)
    # one model step (step 0) so far: the bias-corrected average is that step's parameters
    state = states[-1]
    assert float(state["ema_weight"]) == pytest.approx(0.5)
    np.testing.assert_allclose(state["ebm_ema"] / state["ema_weight"], state["ebm"], rtol=1e-6)


@pytest.mark.parametrize("per_call,start", [(13, 0), (13, 4)])
def test_toy_several_steps_per_call_are_the_single_steps_in_order(per_call, start):
    """k optimizer steps in one call (whole cycles batched, branch-free) from any counter equal
    k calls of the one-step method on the same batches and probe keys."""
    many = build_method(_cfg("smoke", [f"lsd.steps_per_call={per_call}", "model.ema_decay=0.9"]))
    one = build_method(_cfg("smoke", ["model.ema_decay=0.9"]))
    state = dict(jax.jit(one.init)(jax.random.key(0)), step=jnp.int32(start))
    x = jnp.asarray(many.data.train_batch(0)["x"])
    key = jax.random.key(7)
    got, metrics = jax.jit(many.train_step)(state, {"x": x}, key)
    step = jax.jit(one.train_step)
    want, model_steps = state, []
    for xi, ki in zip(jnp.split(x, per_call), jax.random.split(key, per_call)):
        want, m = step(want, {"x": xi}, ki)
        model_steps.append(float(m["model_step"]))
    assert int(got["step"]) == int(want["step"]) == start + per_call
    assert float(metrics["model_step"]) == pytest.approx(np.mean(model_steps))
    for name in ("ebm", "critic", "ebm_ema", "ema_weight"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


# ------------------------------------------------------------------ the RBM test method


@pytest.fixture(scope="module")
def rbm_run():
    cfg = _cfg("rbm_smoke")
    method = build_method(cfg)
    states, metrics = _run(method, 3)
    return cfg, method, states, metrics


def test_rbm_steps_train_every_critic_and_validate(rbm_run):
    cfg, _, states, metrics = rbm_run
    state = states[-1]
    n_problems = len(cfg.rbm.sigmas) * cfg.rbm.n_reps
    assert state["critic"].shape[0] == n_problems
    assert all(np.isfinite(m["loss"]) for m in metrics)
    # validations after steps 0 and 2 (val_every = 2): every critic has a finite selection
    assert np.all(np.isin(np.asarray(state["best_step"]), [0, 2]))
    assert np.all(np.isfinite(np.asarray(state["best_val"])))


def _assert_selected_z_is_the_z_test(cfg, state):
    r = cfg.rbm
    si = cfg.critic.score_input
    template = Flat(lambda: SmallMLP(2 * r.dim_x if si else r.dim_x, r.dim_x,
                                     hidden=cfg.critic.hidden, dropout_rate=cfg.critic.dropout,
                                     rngs=nnx.Rngs(0)))
    assert state["critic"].shape[1] == template.size  # 2 d_x inputs with the score

    @jax.jit
    def z_of(params, p, noise, sigma, x):
        q = p._replace(B=p.B + sigma * noise)
        critic = template.module(params)
        # the critic field written out by hand: the MLP of x, or of [x, s_q(x)]
        field = ((lambda xi: critic(jnp.concatenate([xi, rbm_lib.score(q, xi)])[None])[0])
                 if si else (lambda xi: critic(xi[None])[0]))
        stat = stein_statistic(field, x, rbm_lib.score(q, x)).stat
        return stein_z_test(stat).z

    for i in range(len(r.sigmas) * r.n_reps):
        s, rep = divmod(i, r.n_reps)
        p = jax.tree.map(lambda a: a[rep], state["rbm"])
        z = z_of(state["critic"][i], p, state["noise"][rep], jnp.float32(r.sigmas[s]),
                 state["data"][rep, r.n_train + r.n_val:])
        np.testing.assert_allclose(float(state["best_z"][i]), float(z), rtol=1e-4, atol=1e-4)


def test_rbm_selected_z_is_the_z_test_of_the_selected_critic(rbm_run):
    """After one step (which validates), every problem's stored z-score is the one-sided
    z-test of that critic on the test split, with the exact trace and the model's score."""
    cfg, _, states, _ = rbm_run
    _assert_selected_z_is_the_z_test(cfg, states[0])


def test_rbm_score_input_critic_trains_and_its_z_is_the_z_test_of_x_and_the_score():
    """critic.score_input: the critic is an MLP of [x, s_q(x)]; the stored z is the z-test of
    that composed field (exact trace through the score)."""
    cfg = _cfg("rbm_smoke", ["critic.score_input=True", "lsd.trace=gaussian"])
    states, metrics = _run(build_method(cfg), 1)
    assert np.isfinite(metrics[0]["loss"])
    _assert_selected_z_is_the_z_test(cfg, states[0])


def test_rbm_input_noise_trains_on_noisy_points_and_tests_on_clean_ones(rbm_run):
    """critic.input_noise: the critic's training points are perturbed (its first update differs
    from the noiseless run's with the same seed), while the stored z is still the z-test of the
    critic on the clean test points."""
    _, _, states0, _ = rbm_run
    cfg = _cfg("rbm_smoke", ["critic.input_noise=0.5"])
    states, metrics = _run(build_method(cfg), 1)
    assert np.isfinite(metrics[0]["loss"])
    np.testing.assert_array_equal(states[0]["data"], states0[0]["data"])
    assert not np.allclose(states[0]["critic"], states0[0]["critic"])
    _assert_selected_z_is_the_z_test(cfg, states[0])


def test_rbm_cross_fit_pools_every_point_under_the_critic_that_held_it_out():
    """lsd.cross_fit = K: K critics per problem; critic k's stored statistics are its Stein
    statistics on the k-th block of n_test points from the end (fold 0: the single split's test
    points), the K blocks tile the data, and each problem's z-test pools all of its points."""
    folds = 4  # rbm_smoke: 40 train + 20 validation + 20 test = 4 x 20
    cfg = _cfg("rbm_smoke", [f"lsd.cross_fit={folds}"])
    r = cfg.rbm
    n_total = r.n_train + r.n_val + r.n_test
    method = build_method(cfg)
    states, metrics = _run(method, 1)  # step 0 validates, so every critic has a selection
    state = states[0]
    n_problems = len(r.sigmas) * r.n_reps
    assert state["critic"].shape[0] == n_problems * folds and np.isfinite(metrics[0]["loss"])
    template = Flat(lambda: SmallMLP(r.dim_x, r.dim_x, hidden=cfg.critic.hidden,
                                     dropout_rate=cfg.critic.dropout, rngs=nnx.Rngs(0)))

    @jax.jit
    def stats_of(params, p, noise, sigma, x):
        q = p._replace(B=p.B + sigma * noise)
        critic = template.module(params)
        return stein_statistic(lambda xi: critic(xi[None])[0], x, rbm_lib.score(q, x)).stat

    pooled_z = []
    for i in range(n_problems):
        s, rep = divmod(i, r.n_reps)
        p = jax.tree.map(lambda a: a[rep], state["rbm"])
        blocks = []
        for k in range(folds):
            start = n_total - (k + 1) * r.n_test
            block = stats_of(state["critic"][i * folds + k], p, state["noise"][rep],
                             jnp.float32(r.sigmas[s]), state["data"][rep, start:start + r.n_test])
            np.testing.assert_allclose(state["best_test_stat"][i * folds + k], block,
                                       rtol=1e-4, atol=1e-4)
            blocks.append(block)
        pooled_z.append(float(stein_z_test(jnp.concatenate(blocks)).z))
    result = method.evaluate(state, jax.random.key(0))
    for j, sigma in enumerate(r.sigmas):
        z = pooled_z[j * r.n_reps:(j + 1) * r.n_reps]
        assert result[f"mean_z_lsd_s{sigma:g}"] == pytest.approx(np.mean(z), rel=1e-4, abs=1e-4)
        assert result[f"sd_z_lsd_s{sigma:g}"] == pytest.approx(np.std(z, ddof=1), rel=1e-3,
                                                               abs=1e-4)


def test_rbm_ensemble_member_zero_is_the_single_run_and_the_test_scores_the_mean_field(rbm_run):
    """lsd.ensemble = M: M critics per fold; member 0 draws the keys of the ensemble-1 run (its
    critics and selections equal that run's), and each problem's z-test runs over the Stein
    statistics of the members' mean field, which is the mean of their statistics."""
    members = 3
    _, _, states0, _ = rbm_run
    cfg = _cfg("rbm_smoke", [f"lsd.ensemble={members}"])
    r = cfg.rbm
    method = build_method(cfg)
    states, metrics = _run(method, 1)  # step 0 validates: every critic is its selection
    state, single = states[0], states0[0]
    n_problems = len(r.sigmas) * r.n_reps
    assert state["critic"].shape[0] == members * n_problems and np.isfinite(metrics[-1]["loss"])
    np.testing.assert_allclose(state["critic"][:n_problems], single["critic"], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(state["best_test_stat"][:n_problems], single["best_test_stat"],
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(state["critic"][n_problems:2 * n_problems], single["critic"])
    template = Flat(lambda: SmallMLP(r.dim_x, r.dim_x, hidden=cfg.critic.hidden,
                                     dropout_rate=cfg.critic.dropout, rngs=nnx.Rngs(0)))

    @jax.jit
    def mean_field_z(params, p, noise, sigma, x):
        q = p._replace(B=p.B + sigma * noise)
        nets = [template.module(params[m]) for m in range(members)]
        field = lambda xi: sum(net(xi[None])[0] for net in nets) / members  # noqa: E731
        return stein_z_test(stein_statistic(field, x, rbm_lib.score(q, x)).stat).z

    z = []
    for i in range(n_problems):
        s, rep = divmod(i, r.n_reps)
        p = jax.tree.map(lambda a: a[rep], state["rbm"])
        want = mean_field_z(state["critic"][i::n_problems], p, state["noise"][rep],
                            jnp.float32(r.sigmas[s]), state["data"][rep, r.n_train + r.n_val:])
        z.append(float(want))
    result = method.evaluate(state, jax.random.key(0))
    for j, sigma in enumerate(r.sigmas):
        assert result[f"mean_z_lsd_s{sigma:g}"] == pytest.approx(
            np.mean(z[j * r.n_reps:(j + 1) * r.n_reps]), rel=1e-4, abs=1e-4)


def test_rbm_workdir_config_without_later_options_builds_the_same_run(rbm_run):
    """A workdir written before critic.input_noise and lsd.ensemble existed (its config.json
    lacks them) builds the run those options' off values give: same state, same first step."""
    from jaxebm.methods.lsd_gof import LATER_OPTIONS

    cfg, _, states, _ = rbm_run
    old = json.loads(cfg.to_json())
    for group, field in LATER_OPTIONS:
        assert cfg[group][field] == LATER_OPTIONS[group, field]
        del old[group][field]
    old_cfg = ml_collections.ConfigDict(old)
    old_cfg.lock()
    old_states, _ = _run(build_method(old_cfg), 1)
    for name in ("critic", "best_test_stat", "data"):
        np.testing.assert_array_equal(old_states[0][name], states[0][name])


@pytest.mark.parametrize("score_input, trace", [(False, "exact"), (False, "gaussian"),
                                                (True, "gaussian"), (True, "rademacher")])
def test_rbm_training_terms_are_the_stein_terms_of_the_critic_field(score_input, trace):
    """The training path's statistic (closed-form trace, or one forward-mode product through
    the score and the MLP) equals the generic per-sample Stein statistic of the field
    x -> MLP(x) or x -> MLP([x, s_q(x)]) with the same probes."""
    from jaxebm.methods.lsd_gof import training_terms

    dx = 4
    q = rbm_lib.init(jax.random.key(0), dx, 3)
    x = jax.random.normal(jax.random.key(1), (6, dx))
    critic = SmallMLP(2 * dx if score_input else dx, dx, hidden=8, rngs=nnx.Rngs(2))
    eps = None if trace == "exact" else jax.random.rademacher(jax.random.key(3), x.shape,
                                                              jnp.float32)
    got = training_terms(critic, q, x, score_input=score_input, trace=trace, eps=eps)

    def field(xi):
        inp = jnp.concatenate([xi, rbm_lib.score(q, xi)]) if score_input else xi
        return critic(inp[None])[0]

    want = stein_statistic(field, x, rbm_lib.score(q, x), trace=trace, eps=eps)
    np.testing.assert_allclose(got.stat, want.stat, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.sq_norm, want.sq_norm, rtol=1e-5, atol=1e-5)


def test_rbm_evaluation_reports_power_per_test_and_sigma(rbm_run):
    cfg, method, states, _ = rbm_run
    out = method.evaluate(states[-1], jax.random.key(0))
    for test in ("lsd", "ksd", "lksd"):
        for tag in ("s0", "s0.5"):
            assert 0.0 <= out[f"power_{test}_{tag}"] <= 1.0
            assert f"stderr_{test}_{tag}" in out
    assert out["n_reps"] == cfg.rbm.n_reps


def test_rbm_figures_write_each_problems_decisions_as_evaluated(rbm_run, tmp_path):
    """write_figures: the power figure and table, and decisions.csv, whose per-problem LSD z,
    p-values and rejections are the ones the evaluation averages, even under another key (the
    kernel tests' bootstrap keys are the final evaluation's): LSD's p is Phi(-z), and each test
    rejects exactly when p < alpha."""
    cfg, method, states, _ = rbm_run
    key = jax.random.key(3)
    paths = method.write_figures(states[-1], key, tmp_path)
    assert [p.name for p in paths] == ["power.png"] and paths[0].stat().st_size > 0
    assert "| lsd |" in (tmp_path / "power_table.md").read_text()
    rows = np.genfromtxt(tmp_path / "decisions.csv", delimiter=",", names=True)
    assert len(rows) == len(cfg.rbm.sigmas) * cfg.rbm.n_reps
    out = method.evaluate(states[-1], jax.random.key(4))
    np.testing.assert_allclose(rows["lsd_p"], ndtr(-rows["lsd_z"]), rtol=1e-3, atol=1e-6)
    for test in ("lsd", "ksd", "lksd"):
        np.testing.assert_array_equal(rows[f"{test}_reject"], rows[f"{test}_p"] < cfg.lsd.alpha)
        for sigma in cfg.rbm.sigmas:
            at = rows["sigma"] == sigma
            assert np.mean(rows[f"{test}_reject"][at]) == pytest.approx(
                out[f"power_{test}_s{sigma:g}"])
            if test == "lsd":
                assert np.mean(rows["lsd_z"][at]) == pytest.approx(
                    out[f"mean_z_lsd_s{sigma:g}"], abs=1e-3)


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("variant, override, message", [
    ("smoke", "lsd.c_itres=5", "unknown config field 'lsd.c_itres'"),
    ("smoke", "lsd.trace=exactish", "lsd.trace='exactish'"),
    ("smoke", "lsd.critic_objective=wasserstein", "lsd.critic_objective"),
    ("smoke", "model.init=xavier", "model.init='xavier'"),
    ("smoke", "experiment=mnist", "experiment='mnist'"),
    ("smoke", "lsd.steps_per_call=0", "lsd.steps_per_call"),
    ("smoke", "model.ema_warmup=-1.0", "model.ema_warmup"),
    ("smoke", "data.name=nowhere", "unknown dataset 'nowhere'"),
    ("rbm_smoke", "rbm.n_test=1", "rbm.n_test"),
    ("rbm_smoke", "critic.dropout=1.0", "critic.dropout"),
    ("rbm_smoke", "critic.input_noise=-0.1", "critic.input_noise"),
    ("rbm_smoke", "data.batch_size=1000", "data.batch_size=1000"),
    ("rbm_smoke", "ksd.statistic=w", "ksd.statistic"),
    ("rbm_smoke", "lsd.trace=hutch", "lsd.trace='hutch'"),
    ("rbm_smoke", "critic.score_input=True", "critic.score_input"),
    ("rbm_smoke", "lsd.cross_fit=3", "test folds to tile the data"),
    ("rbm_smoke", "lsd.cross_fit=0", "lsd.cross_fit"),
    ("rbm_smoke", "lsd.ensemble=0", "lsd.ensemble"),
])
def test_bad_config_fails_clearly(variant, override, message):
    with pytest.raises(ValueError, match=message):
        build_method(_cfg(variant, [override]))


def test_unknown_variant_fails_clearly():
    with pytest.raises(ValueError, match="unknown lsd variant '8gaussian'"):
        _cfg("8gaussian")


def test_every_variant_builds_a_config():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lsd_cfg", CONFIG)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for variant in mod.VARIANTS:
        cfg = mod.get_config(variant)
        assert cfg.method == "lsd" and cfg.experiment in ("toy", "rbm_test", "ica")


def test_pooled_power_counts_rejections_over_workdirs(tmp_path):
    """Two seeds' workdirs pool into rejection counts: (10 * .5 + 30 * .1) / 40 = .2 at a shared
    sigma; a sigma only one workdir ran keeps that workdir's rate and count."""
    from jaxebm.methods.lsd_gof import TESTS, pool_workdirs

    runs = [((0.0, 0.02), 10, {"s0": 0.1, "s0.02": 0.5}), ((0.02,), 30, {"s0.02": 0.1})]
    dirs = []
    for i, (sigmas, reps, powers) in enumerate(runs):
        d = tmp_path / f"seed{i}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"rbm": {"sigmas": list(sigmas)}}))
        ev = {"n_reps": float(reps)}
        for tag, p in powers.items():
            ev.update({f"power_{t}_{tag}": p for t in TESTS})
            ev[f"mean_z_lsd_{tag}"] = 10 * p
        (d / "eval.json").write_text(json.dumps(ev))
        dirs.append(d)
    sigmas, power, n, mean_z = pool_workdirs(dirs)
    assert sigmas == [0.0, 0.02]
    np.testing.assert_array_equal(n, [10, 40])
    for t in TESTS:
        np.testing.assert_allclose(power[t], [0.1, 0.2], rtol=1e-12)
    np.testing.assert_allclose(mean_z, [1.0, 2.0], rtol=1e-12)
