"""REINFORCE / REBAR / RELAX / LAX against exact gradients by enumeration and closed forms."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from jaxebm.estimators import black_box as est
from jaxebm.estimators import relaxations as rx

N_SAMPLES = 200_000
KEY = jax.random.key(0)

# --------------------------------------------------------------------------- the small problems

BERN_LOGITS = jnp.array([-0.7, 0.2, 1.3], jnp.float32)
BERN_W = jnp.array([0.5, -0.8, 0.9], jnp.float32)
CAT_LOGITS = jnp.array([[0.3, -1.0, 0.8, 0.0], [1.5, 0.2, -0.4, -2.0]], jnp.float32)
CAT_W = jnp.array([[0.4, -0.6, 1.0, 0.1], [-0.3, 0.7, 0.2, -0.9]], jnp.float32)


def f_blackbox_bern(b):
    """Non-smooth and discontinuous: only ever evaluated on hard samples."""
    return jnp.abs(jnp.sum(b * BERN_W) - 0.3) + 0.5 * (b[0] > 0.5).astype(b.dtype)


def f_continuous_bern(b):
    """Non-smooth but continuous on relaxed inputs, as REBAR's control variate needs."""
    return jnp.abs(jnp.sum(b * BERN_W) - 0.3) + b[0] * b[2]


def f_blackbox_cat(b):
    return jnp.abs(jnp.sum(b * CAT_W) - 0.3) + 0.5 * (b[0, 1] > 0.5).astype(b.dtype)


def f_continuous_cat(b):
    return jnp.abs(jnp.sum(b * CAT_W) - 0.3) + b[0, 2] * b[1, 0]


def outcomes(dist_name: str, shape: tuple[int, ...]) -> jax.Array:
    """Every joint outcome b, stacked on a leading axis."""
    if dist_name == "bernoulli":
        rows = list(itertools.product([0.0, 1.0], repeat=int(np.prod(shape))))
        return jnp.array(rows, jnp.float32).reshape((-1, *shape))
    n_vars, n_classes = shape
    eye = np.eye(n_classes, dtype=np.float32)
    rows = [np.stack([eye[i] for i in idx]) for idx in itertools.product(range(n_classes), repeat=n_vars)]
    return jnp.array(np.stack(rows))


def exact_gradient(dist: rx.Relaxation, f, logits):
    bs = outcomes(dist.name, logits.shape)
    values = jax.vmap(f)(bs)

    def expectation(lg):
        log_p = jax.vmap(lambda b: dist.log_prob(lg, b))(bs)
        return jnp.sum(jnp.exp(log_p) * values)

    return jax.grad(expectation)(logits)


def mlp_control_variate(dist: rx.Relaxation, f_soft):
    """An arbitrary, nonzero c_phi(z): a small tanh net on the relaxation plus a REBAR-like term."""

    def control_variate(phi, z):
        soft = dist.soft(z, jnp.exp(phi["log_temperature"]))
        h = jnp.tanh(soft.reshape(-1) @ phi["w1"] + phi["b1"])
        return h @ phi["w2"] + phi["scale"] * f_soft(soft)

    return control_variate


def mlp_params(key, n_in: int, zero: bool = False):
    k1, k2 = jax.random.split(key)
    w2 = jnp.zeros((5,), jnp.float32) if zero else jax.random.normal(k2, (5,), jnp.float32)
    return {
        "w1": jax.random.normal(k1, (n_in, 5), jnp.float32),
        "b1": jnp.full((5,), 0.1, jnp.float32),
        "w2": w2,
        "scale": jnp.asarray(0.0 if zero else 0.7, jnp.float32),
        "log_temperature": jnp.log(jnp.asarray(0.5, jnp.float32)),
    }


PROBLEMS = {
    "bernoulli": (rx.bernoulli, BERN_LOGITS, f_blackbox_bern, f_continuous_bern),
    "categorical": (rx.categorical, CAT_LOGITS, f_blackbox_cat, f_continuous_cat),
}


def _estimators(problem: str) -> dict:
    """name -> (g(key), the f whose expectation's gradient it estimates), all for one problem.

    Every estimator draws b from the key the same way, so the ``*_zero`` variants (REBAR with
    eta = 0, RELAX with a zero-weighted control variate) must equal REINFORCE sample by sample.
    """
    dist, logits, f_box, f_cont = PROBLEMS[problem]
    cv = mlp_control_variate(dist, f_cont)
    phi = mlp_params(jax.random.key(7), logits.size)
    phi0 = mlp_params(jax.random.key(3), logits.size, zero=True)
    table = {
        "reinforce": (lambda k: est.reinforce(f_box, logits, key=k, dist=dist), f_box),
        "reinforce_cont": (lambda k: est.reinforce(f_cont, logits, key=k, dist=dist), f_cont),
        "reinforce_baseline": (lambda k: est.reinforce(f_box, logits, key=k, baseline=0.4, dist=dist), f_box),
    }
    for shared in (True, False):
        tag = "shared" if shared else "fresh"
        table[f"rebar_{tag}"] = (
            lambda k, s=shared: est.rebar(f_cont, logits, 0.8, jnp.log(0.4), key=k, dist=dist, shared_noise=s),
            f_cont,
        )
        table[f"relax_{tag}"] = (
            lambda k, s=shared: est.relax(f_box, cv, phi, logits, key=k, dist=dist, shared_noise=s),
            f_box,
        )
        table[f"rebar_zero_{tag}"] = (
            lambda k, s=shared: est.rebar(f_cont, logits, 0.0, jnp.log(0.5), key=k, dist=dist, shared_noise=s),
            f_cont,
        )
        table[f"relax_zero_{tag}"] = (
            lambda k, s=shared: est.relax(f_box, cv, phi0, logits, key=k, dist=dist, shared_noise=s),
            f_box,
        )
    return table


@functools.lru_cache(maxsize=None)
def estimator_samples(problem: str) -> dict:
    """N_SAMPLES estimates from every estimator, in one jit: XLA shares the identical noise draws,
    so the compile (which dominates on the CPU) is paid once per problem."""
    table = _estimators(problem)

    def all_estimates(key):
        return {name: g(key) for name, (g, _) in table.items()}

    out = jax.jit(jax.vmap(all_estimates))(jax.random.split(KEY, N_SAMPLES))
    return {name: np.asarray(x) for name, x in out.items()}


# ------------------------------------------------------------------------------------ unbiased

UNBIASED_CASES = [
    (problem, name)
    for problem in PROBLEMS
    for name in ["reinforce", "reinforce_baseline", "rebar_shared", "rebar_fresh", "relax_shared", "relax_fresh"]
]


@pytest.mark.parametrize("problem,name", UNBIASED_CASES)
def test_mean_matches_exact_gradient(problem, name):
    dist, logits, _, _ = PROBLEMS[problem]
    samples = estimator_samples(problem)[name]
    f = _estimators(problem)[name][1]
    mean = samples.mean(axis=0)
    stderr = samples.std(axis=0) / np.sqrt(N_SAMPLES)
    exact = np.asarray(exact_gradient(dist, f, logits))
    assert np.all(np.isfinite(mean))
    assert np.all(stderr > 0)
    assert np.all(np.abs(mean - exact) <= 4.0 * stderr), (mean, exact, stderr)


def test_num_samples_averages_the_same_estimator():
    dist, logits, f_box, _ = PROBLEMS["bernoulli"]
    averaged, singles = jax.jit(
        lambda key: (
            est.reinforce(f_box, logits, key=key, dist=dist, num_samples=8),
            jax.vmap(lambda k: est.reinforce(f_box, logits, key=k, dist=dist))(jax.random.split(key, 8)),
        )
    )(KEY)
    np.testing.assert_allclose(averaged, jnp.mean(singles, axis=0), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------- reductions to REINFORCE, exact

ZERO_CASES = [
    (problem, zero, base)
    for problem in PROBLEMS
    for zero, base in [
        ("relax_zero_shared", "reinforce"),
        ("relax_zero_fresh", "reinforce"),
        ("rebar_zero_shared", "reinforce_cont"),
        ("rebar_zero_fresh", "reinforce_cont"),
    ]
]


@pytest.mark.parametrize("problem,zero,base", ZERO_CASES)
def test_zero_control_variates_reduce_to_reinforce(problem, zero, base):
    samples = estimator_samples(problem)
    np.testing.assert_array_equal(samples[zero], samples[base])


# ------------------------------------------------------------------------------- relaxations


EXTREME_BERN = jnp.array([-30.0, -8.0, -1e-3, 0.0, 2.5, 15.0, 40.0], jnp.float32)
EXTREME_CAT = jnp.array([[-30.0, 0.0, 30.0], [0.0, 0.0, 0.0], [5.0, -5.0, 1e-4], [-80.0, -80.0, 10.0]], jnp.float32)


@pytest.mark.parametrize("dist,logits", [(rx.bernoulli, EXTREME_BERN), (rx.categorical, EXTREME_CAT)])
def test_conditional_reproduces_hard_sample_exactly(dist, logits):
    def one(k):
        ku, kv = jax.random.split(k)
        u = rx.uniform_open(ku, logits.shape)
        v = rx.uniform_open(kv, logits.shape)
        z = dist.reparameterize(logits, u)
        b = dist.hard(z)
        z_shared = dist.conditional_shared(logits, b, z)
        z_fresh = dist.conditional(logits, b, v)
        return b, z, z_shared, z_fresh

    b, z, z_shared, z_fresh = jax.jit(jax.vmap(one))(jax.random.split(KEY, 50_000))
    np.testing.assert_array_equal(z_shared, z)
    np.testing.assert_array_equal(jax.vmap(dist.hard)(z_shared), b)
    np.testing.assert_array_equal(jax.vmap(dist.hard)(z_fresh), b)
    assert np.all(np.isfinite(z_fresh))



def _bernoulli_paper_conditional(logits, b, v):
    """The paper's form z~ = theta + logit(v'), v' = v(1-p) (b=0) or 1 - p + v p (b=1)."""
    p = jax.nn.sigmoid(logits)
    v_prime = jnp.where(b > 0, v * p + (1.0 - p), v * (1.0 - p))
    return logits + jnp.log(v_prime) - jnp.log1p(-v_prime)


def _categorical_paper_conditional(logits, b, v):
    theta = jax.nn.softmax(logits, axis=-1)
    log_v_b = jnp.sum(b * jnp.log(v), axis=-1, keepdims=True)
    others = -jnp.log(-jnp.log(v) / theta - log_v_b)
    return jnp.where(b > 0, -jnp.log(-log_v_b), others)


def _jacobian_sum(fn, logits):
    return jax.grad(lambda lg: jnp.sum(fn(lg)))(logits)


@jax.jit
def _conditional_pairs(key):
    """(ours, the paper's formula) for values and gradients of the conditional relaxations."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    logits = jax.random.normal(k1, (64,), jnp.float32) * 1.5
    z = rx.bernoulli_reparameterize(logits, rx.uniform_open(k2, (64,)))
    b = rx.bernoulli_hard(z)
    v = rx.uniform_open(k3, (64,))
    pairs = {
        # Independent noise: the stable softplus form is the paper's formula.
        "bern_value": (rx.bernoulli_conditional(logits, b, v), _bernoulli_paper_conditional(logits, b, v)),
        "bern_grad": (
            _jacobian_sum(lambda lg: rx.bernoulli_conditional(lg, b, v), logits),
            _jacobian_sum(lambda lg: _bernoulli_paper_conditional(lg, b, v), logits),
        ),
    }
    # Shared noise: v recovered from u as the papers' code does (v_from_u), held fixed.
    u = jax.nn.sigmoid(z - logits)
    p = jax.nn.sigmoid(logits)
    v_from_u = jax.lax.stop_gradient(jnp.where(b > 0, (u - (1.0 - p)) / p, u / (1.0 - p)))
    pairs["bern_shared_grad"] = (
        _jacobian_sum(lambda lg: rx.bernoulli_conditional_shared(lg, b, z), logits),
        _jacobian_sum(lambda lg: _bernoulli_paper_conditional(lg, b, v_from_u), logits),
    )
    # The same for the categorical, v derived from the Gumbel sample.
    cat_logits = jax.random.normal(k4, (16, 4), jnp.float32)
    zc = rx.categorical_reparameterize(cat_logits, rx.uniform_open(k2, (16, 4)))
    bc = rx.categorical_hard(zc)
    vc = rx.uniform_open(k3, (16, 4))
    pairs["cat_value"] = (
        rx.categorical_conditional(cat_logits, bc, vc),
        _categorical_paper_conditional(cat_logits, bc, vc),
    )
    theta = jax.nn.softmax(cat_logits, axis=-1)
    top = jnp.max(zc, axis=-1, keepdims=True)
    v_shared = jnp.where(bc > 0, jnp.exp(-jnp.exp(-top)), jnp.exp(-theta * (jnp.exp(-zc) - jnp.exp(-top))))
    v_shared = jax.lax.stop_gradient(v_shared)
    weights = jax.random.normal(k1, (16, 4), jnp.float32)
    pairs["cat_shared_grad"] = (
        _jacobian_sum(lambda lg: weights * rx.categorical_conditional_shared(lg, bc, zc), cat_logits),
        _jacobian_sum(lambda lg: weights * _categorical_paper_conditional(lg, bc, v_shared), cat_logits),
    )
    return pairs


def test_conditional_matches_paper_formula_value_and_gradient():
    for name, (ours, paper) in _conditional_pairs(jax.random.key(0)).items():
        np.testing.assert_allclose(ours, paper, rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("dist,logits", [(rx.bernoulli, BERN_LOGITS), (rx.categorical, CAT_LOGITS)])
def test_conditional_marginal_is_the_unconditional_law(dist, logits):
    """b ~ p(b), z~ ~ p(z|b): z~ must be logistic(theta) / Gumbel(log theta) again (CDF check)."""
    n = 100_000

    def one(k):
        ku, kv = jax.random.split(k)
        b = dist.hard(dist.reparameterize(logits, rx.uniform_open(ku, logits.shape)))
        return dist.conditional(logits, b, rx.uniform_open(kv, logits.shape))

    z_tilde = jax.jit(jax.vmap(one))(jax.random.split(KEY, n))
    if dist.name == "bernoulli":
        location = logits
        cdf = lambda q: jax.nn.sigmoid(q - location)  # noqa: E731
    else:
        location = jax.nn.log_softmax(logits, axis=-1)
        cdf = lambda q: jnp.exp(-jnp.exp(-(q - location)))  # noqa: E731
    for offset in (-1.5, 0.0, 0.7, 2.0):
        q = location + offset
        p_hat = jnp.mean((z_tilde <= q[None]).astype(jnp.float32), axis=0)
        p_true = cdf(q)
        stderr = jnp.sqrt(p_true * (1.0 - p_true) / n)
        assert np.all(np.abs(np.asarray(p_hat - p_true)) <= 4.0 * np.asarray(stderr)), (offset, p_hat, p_true)


# ----------------------------------------------------------------------------------------- LAX


GAUSS_MEAN = jnp.array([0.3, -0.4], jnp.float32)
GAUSS_LOG_STD = jnp.array([jnp.log(0.8), jnp.log(1.3)], jnp.float32)


def f_gauss(x):
    """A step and a kink: 1[x_0 > 0] + |x_1 - 0.2|."""
    return (x[0] > 0).astype(x.dtype) + jnp.abs(x[1] - 0.2)


def gauss_expectation(mean, log_std):
    """Closed form: Phi(mu_0/s_0) + E|X_1 - 0.2| = s sqrt(2/pi) e^{-d^2/2s^2} + d (1 - 2 Phi(-d/s))."""
    s = jnp.exp(log_std)
    d = mean[1] - 0.2
    abs_term = s[1] * jnp.sqrt(2.0 / jnp.pi) * jnp.exp(-(d**2) / (2.0 * s[1] ** 2)) + d * (1.0 - 2.0 * norm.cdf(-d / s[1]))
    return norm.cdf(mean[0] / s[0]) + abs_term


def gauss_cv(phi, x):
    return jnp.tanh(x @ phi["w1"] + phi["b1"]) @ phi["w2"] + phi["a"] * jnp.sum(x**2)


def gauss_phi(key, zero: bool = False):
    k1, k2 = jax.random.split(key)
    scale = 0.0 if zero else 1.0
    return {
        "w1": jax.random.normal(k1, (2, 6), jnp.float32),
        "b1": jnp.zeros((6,), jnp.float32),
        "w2": scale * jax.random.normal(k2, (6,), jnp.float32),
        "a": jnp.asarray(0.3 * scale, jnp.float32),
    }


def test_lax_unbiased_for_a_step_function():
    phi = gauss_phi(jax.random.key(5))
    params = (GAUSS_MEAN, GAUSS_LOG_STD)
    g = jax.jit(jax.vmap(lambda k: est.lax(f_gauss, gauss_cv, phi, params, key=k)))(jax.random.split(KEY, N_SAMPLES))
    exact = jax.grad(gauss_expectation, argnums=(0, 1))(*params)
    for samples, truth in zip(g, exact):
        mean = np.asarray(jnp.mean(samples, axis=0))
        stderr = np.asarray(jnp.std(samples, axis=0)) / np.sqrt(N_SAMPLES)
        assert np.all(np.abs(mean - np.asarray(truth)) <= 4.0 * stderr), (mean, truth, stderr)


def test_lax_with_zero_control_variate_is_the_score_function():
    phi = gauss_phi(jax.random.key(5), zero=True)
    params = (GAUSS_MEAN, GAUSS_LOG_STD)
    key = jax.random.key(11)
    g_mean, g_log_std = est.lax(f_gauss, gauss_cv, phi, params, key=key)
    eps = jax.random.normal(key, GAUSS_MEAN.shape, jnp.float32)
    x = GAUSS_MEAN + jnp.exp(GAUSS_LOG_STD) * eps
    # d log N(x; mu, s)/d mu = (x - mu)/s^2 ; d/d log s = ((x - mu)/s)^2 - 1
    s = jnp.exp(GAUSS_LOG_STD)
    fx = f_gauss(x)
    np.testing.assert_allclose(g_mean, fx * (x - GAUSS_MEAN) / s**2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_log_std, fx * (((x - GAUSS_MEAN) / s) ** 2 - 1.0), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- control-variate (variance) grads


def _cv_grad_case(which: str):
    """(phi, the *_with_cv_grad call, the plain estimator) for one estimator, at a fixed key."""
    key = jax.random.key(21)
    dist, logits, f_box, f_cont = PROBLEMS["bernoulli"]
    if which == "relax":
        cv = mlp_control_variate(dist, f_cont)
        phi = mlp_params(jax.random.key(7), logits.size)
        both = lambda p: est.relax_with_cv_grad(f_box, cv, p, logits, key=key)  # noqa: E731
        estimate = lambda p: est.relax(f_box, cv, p, logits, key=key)  # noqa: E731
    elif which == "rebar":
        phi = (jnp.asarray(0.8, jnp.float32), jnp.log(jnp.asarray(0.4, jnp.float32)))
        both = lambda p: est.rebar_with_cv_grad(f_cont, logits, p[0], p[1], key=key)  # noqa: E731
        estimate = lambda p: est.rebar(f_cont, logits, p[0], p[1], key=key)  # noqa: E731
    else:
        phi = gauss_phi(jax.random.key(5))
        params = (GAUSS_MEAN, GAUSS_LOG_STD)
        both = lambda p: est.lax_with_cv_grad(f_gauss, gauss_cv, p, params, key=key)  # noqa: E731
        estimate = lambda p: est.lax(f_gauss, gauss_cv, p, params, key=key)  # noqa: E731
    return phi, both, estimate


@pytest.mark.parametrize("which", ["relax", "rebar", "lax"])
def test_with_cv_grad_is_the_gradient_of_the_squared_estimate(which):
    phi, both, estimate = _cv_grad_case(which)

    @jax.jit
    def run(p):
        squared = lambda q: sum(jnp.sum(x**2) for x in jax.tree.leaves(estimate(q)))  # noqa: E731
        return both(p), estimate(p), jax.grad(squared)(p)

    (g, d_phi), g_plain, expected = run(phi)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), d_phi, expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), g, g_plain)
    assert any(float(jnp.max(jnp.abs(x))) > 0 for x in jax.tree.leaves(d_phi))


def test_has_aux_returns_f_aux_at_the_hard_sample():
    dist, logits, f_box, f_cont = PROBLEMS["bernoulli"]
    key = jax.random.key(4)

    def f_aux(b):
        return f_box(b), b

    @jax.jit
    def run(k):
        with_aux = est.rebar_with_cv_grad(lambda x: (f_cont(x), x), logits, 0.5, 0.0, key=k, has_aux=True)
        plain = est.rebar(f_cont, logits, 0.5, 0.0, key=k)
        return with_aux, plain, est.reinforce(f_aux, logits, key=k, has_aux=True)

    ((g, b), _), g_plain, (g_r, b_r) = run(key)
    np.testing.assert_allclose(g, g_plain, rtol=1e-6)
    np.testing.assert_array_equal(b, b_r)
    np.testing.assert_allclose(g_r, f_box(b_r) * (b_r - jax.nn.sigmoid(logits)), rtol=1e-6)
    assert set(np.unique(np.asarray(b))) <= {0.0, 1.0}


def test_variance_gradient_descent_lowers_rebar_variance():
    """A few plain gradient steps on (eta, log lambda) with the single-sample d g^2 lower Var[g]."""
    dist, logits, _, f_cont = PROBLEMS["bernoulli"]
    keys = jax.random.split(jax.random.key(9), 2000)

    @jax.jit
    def variance(params):
        g = jax.vmap(lambda k: est.rebar(f_cont, logits, params[0], params[1], key=k))(keys)
        return jnp.sum(jnp.var(g, axis=0))

    @jax.jit
    def mean_cv_grad(params):
        _, d = jax.vmap(lambda k: est.rebar_with_cv_grad(f_cont, logits, params[0], params[1], key=k))(keys)
        return jax.tree.map(lambda x: jnp.mean(x, axis=0), d)

    params = (jnp.asarray(0.0, jnp.float32), jnp.asarray(0.0, jnp.float32))
    start = float(variance(params))
    for _ in range(20):
        d = mean_cv_grad(params)
        params = jax.tree.map(lambda p, dp: p - 0.05 * dp, params, d)
    assert float(variance(params)) < 0.8 * start
