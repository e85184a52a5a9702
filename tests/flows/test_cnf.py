"""CNF blocks against closed forms: linear dynamics dz/dt = A z have z(T) = expm(A T) x,
int tr = tr(A) T, and log p(x) = log N(expm(AT) x; 0, I) + tr(A) T."""

import diffrax  # noqa: F401  (imported first: a clear failure if the solver stack is missing)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixtures.lowering import CANONICAL_CONV, conv_forms
from jaxebm.flows import cnf, multiscale
from jaxebm.nn.odenet import ODENet

A = jnp.array([[-0.4, 0.8], [-0.3, 0.2]], jnp.float32)
X = jax.random.normal(jax.random.key(0), (6, 2))


def linear(a, t, z):
    return a @ z


def closed_form_logp(a, x, t_end):
    z = x @ jax.scipy.linalg.expm(a * t_end).T
    return cnf.standard_normal_logpdf(z) + jnp.trace(a) * t_end


@pytest.mark.parametrize("solver", ["tsit5", "dopri5"])
@pytest.mark.parametrize("t_end", [0.5, 1.3])
def test_log_density_of_linear_flow_matches_closed_form(solver, t_end):
    s = cnf.SolverConfig(solver, rtol=1e-7, atol=1e-7)
    out = cnf.block_forward(linear, A, jnp.float32(t_end), X, solver=s)
    logp = cnf.standard_normal_logpdf(out.z) + out.int_trace
    np.testing.assert_allclose(logp, closed_form_logp(A, X, t_end), rtol=1e-5, atol=1e-5)
    assert int(out.nfe) > 0


@pytest.mark.parametrize("adjoint", ["recursive", "backsolve"])
def test_gradients_through_the_solver_match_closed_form(adjoint):
    s = cnf.SolverConfig("tsit5", rtol=1e-7, atol=1e-7, adjoint=adjoint)

    def solved(a, t_end):
        out = cnf.block_forward(linear, a, t_end, X, solver=s)
        return jnp.mean(cnf.standard_normal_logpdf(out.z) + out.int_trace)

    def exact(a, t_end):
        return jnp.mean(closed_form_logp(a, X, t_end))

    g_solved = jax.grad(solved, argnums=(0, 1))(A, jnp.float32(0.7))
    g_exact = jax.grad(exact, argnums=(0, 1))(A, jnp.float32(0.7))
    for a, b in zip(g_solved, g_exact):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_hutchinson_with_a_fixed_probe_is_exact_for_linear_dynamics():
    eps = jax.random.rademacher(jax.random.key(5), X.shape, jnp.float32)
    out = cnf.block_forward(linear, A, jnp.float32(1.0), X, trace="rademacher", eps=eps,
                            solver=cnf.SolverConfig(rtol=1e-7, atol=1e-7))
    expected = jnp.einsum("bi,ij,bj->b", eps, A, eps)  # eps^T A eps, constant along the path
    np.testing.assert_allclose(out.int_trace, expected, rtol=1e-5)


def test_regularizers_match_closed_forms():
    t_end = 0.8
    out = cnf.block_forward(linear, A, jnp.float32(t_end), X, regularize=True,
                            solver=cnf.SolverConfig(rtol=1e-7, atol=1e-7))
    np.testing.assert_allclose(out.frobenius, jnp.sum(A**2) * t_end, rtol=1e-5)
    ts = np.linspace(0.0, t_end, 2001)
    speeds = [np.sum((X @ (A @ jax.scipy.linalg.expm(A * t)).T) ** 2, axis=1) for t in ts]
    kinetic = np.trapezoid(np.stack(speeds), ts, axis=0)
    np.testing.assert_allclose(out.kinetic, kinetic, rtol=1e-4)


@pytest.mark.parametrize("layer_type", ["concat", "concatsquash"])
def test_sampling_inverts_the_density_map(layer_type):
    graphdef, params = nnx.split(ODENet(2, (16, 16), layer_type=layer_type, rngs=nnx.Rngs(1)))

    def f(p, t, z):
        return nnx.merge(graphdef, p)(t, z)

    s = cnf.SolverConfig(rtol=1e-7, atol=1e-7)
    out = cnf.block_forward(f, params, jnp.float32(0.9), X, solver=s)
    back, _ = cnf.block_inverse(f, params, jnp.float32(0.9), out.z, solver=s)
    np.testing.assert_allclose(back, X, atol=1e-4)


def test_failed_solve_gives_nan():
    out = cnf.block_forward(lambda p, t, z: p * z**3, jnp.float32(50.0), jnp.float32(1.0), X + 3.0,
                            solver=cnf.SolverConfig(max_steps=8))
    assert not np.any(np.isfinite(out.z))


def test_squeeze_round_trip_and_stage_shapes():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    s = multiscale.squeeze(x)
    assert s.shape == (2, 2, 2, 12)
    np.testing.assert_array_equal(multiscale.unsqueeze(s), x)
    assert multiscale.stage_shapes((8, 8, 1), 2) == [((8, 8, 1), False), ((4, 4, 4), True),
                                                     ((4, 4, 2), False)]
    with pytest.raises(ValueError, match="too large"):
        multiscale.stage_shapes((6, 6, 1), 3)


def test_solver_config_rejects_bad_values():
    with pytest.raises(ValueError, match="solver="):
        cnf.SolverConfig("euler")
    with pytest.raises(ValueError, match="adjoint="):
        cnf.SolverConfig(adjoint="magic")


def test_image_dynamics_train_on_canonical_convolutions():
    # Training an image CNF differentiates its dynamics' JVPs (the Hutchinson trace) inside the
    # solver's loop; XLA's CPU backend runs lax's own convolution gradients there 5-85x slower
    # (jaxebm.nn.conv). Every convolution of that gradient must be in the canonical form.
    net = ODENet(4, (8,), layer_type="concat", activation="softplus", conv=True, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(net)
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    eps = jax.random.rademacher(jax.random.key(1), x.shape, jnp.float32)

    def loss(params):
        out = cnf.block_forward(lambda p, t, z: nnx.merge(graphdef, p)(t, z), params,
                                jnp.float32(1.0), x, trace="rademacher", eps=eps,
                                solver=cnf.SolverConfig("tsit5", rtol=1e-3, atol=1e-3))
        return jnp.mean(cnf.standard_normal_logpdf(out.z) + out.int_trace)

    forms = conv_forms(jax.grad(loss), params)
    assert forms and set(forms) == {CANONICAL_CONV}
