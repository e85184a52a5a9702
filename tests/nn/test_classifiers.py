"""Classifier networks (WRN, ConvNet, MLP) and the energies read from their logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxebm import energies
from jaxebm.nn.convnet import ConvNet
from jaxebm.nn.mlp import MLP
from jaxebm.nn.wrn import WideResNet



@pytest.fixture(autouse=True, scope="module")
def _fast_compiling_threefry():
    """Classic threefry lowering: the default partitionable one takes seconds per compile on
    this CPU; nothing here depends on which random stream initializes the networks."""
    with jax.threefry_partitionable(False):
        yield


def numpy_split(build, seed: int = 0):
    """``(graphdef, params)`` with parameters drawn in numpy, N(0, 1/fan_in).

    Shape and purity tests need parameters, not jax's initializers; compiling those costs
    seconds per network on the CPU. ``energies.init_split`` itself is tested once below.
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    rng = np.random.default_rng(seed)

    def draw(leaf):
        fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
        return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return graphdef, jax.tree.map(draw, abstract)


def module_types(model: nnx.Module) -> set[type]:
    return {type(node) for _, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}


def wrn_param_count(depth: int, k: int, c_in: int, classes: int) -> int:
    """Closed form for a norm-free WRN: conv weights + biases, 1x1 shortcuts, linear head."""
    n = (depth - 4) // 6
    total = 3 * 3 * c_in * 16 + 16
    prev = 16
    for width in (16 * k, 32 * k, 64 * k):
        for i in range(n):
            total += 9 * prev * width + width + 9 * width * width + width
            if prev != width or (i == 0 and width != 16 * k):
                total += prev * width + width
            prev = width
    return total + prev * classes + classes


@pytest.mark.parametrize(
    "depth,k,norm,activation,hw",
    [
        (10, 1, None, "leaky_relu", 16),
        (10, 2, "group", "swish", 8),
        (16, 1, "layer", "leaky_relu", 8),
    ],
)
def test_wrn_shapes_params_and_no_batchnorm(depth, k, norm, activation, hw):
    build = lambda r: WideResNet(depth, k, 7, norm=norm, activation=activation, rngs=r)
    types = module_types(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    assert nnx.BatchNorm not in types
    assert (nnx.GroupNorm in types) == (norm is not None)
    graphdef, params = numpy_split(build)
    variable_types = {
        type(v) for v in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    }
    assert variable_types == {nnx.Param}  # no batch statistics, no RNG state

    @jax.jit
    def logits_and_features(p, z):
        model = nnx.merge(graphdef, p)
        return model(z), model.features(z)

    logits, features = logits_and_features(params, jnp.zeros((3, hw, hw, 3), jnp.float32))
    assert logits.shape == (3, 7) and features.shape == (3, 64 * k)
    if norm is None:
        n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
        assert n_params == wrn_param_count(depth, k, 3, 7)


def test_wrn_28_10_size_without_allocating():
    abstract = nnx.eval_shape(lambda: WideResNet(28, 10, 10, rngs=nnx.Rngs(0)))
    _, params = nnx.split(abstract)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    assert n_params == wrn_param_count(28, 10, 3, 10)
    assert 36_000_000 < n_params < 37_000_000  # the familiar 36.5M, less BatchNorm's


@pytest.mark.parametrize(
    "hw,c_in,channels,norm", [(8, 1, (8, 16), None), (28, 1, (4, 8), "layer"), (8, 3, (8,), "group")]
)
def test_convnet_shapes(hw, c_in, channels, norm):
    build = lambda r: ConvNet(10, in_channels=c_in, channels=channels, norm=norm, rngs=r)
    assert nnx.BatchNorm not in module_types(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    graphdef, params = numpy_split(build, 1)
    out = jax.jit(energies.make_apply(graphdef))(params, jnp.ones((2, hw, hw, c_in), jnp.float32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("shape,hidden,out", [((5, 2), (16, 16), 1), ((5, 8, 8, 1), (32,), 10)])
def test_mlp_shapes(shape, hidden, out):
    d = int(np.prod(shape[1:]))
    graphdef, params = numpy_split(lambda r: MLP(d, hidden, out, rngs=r), 2)
    out_arr = jax.jit(energies.make_apply(graphdef))(params, jnp.ones(shape, jnp.float32))
    assert out_arr.shape == (shape[0], out)


def test_init_split_matches_eager_construction():
    build = lambda r: MLP(3, (4,), 2, activation="tanh", rngs=r)
    graphdef, params = energies.init_split(build, jax.random.key(7))
    eager_graphdef, eager_params = nnx.split(build(nnx.Rngs(jax.random.key(7))))
    assert graphdef == eager_graphdef
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(eager_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


@pytest.mark.parametrize(
    "build",
    [
        lambda r: WideResNet(10, 1, 4, dropout_rate=0.5, rngs=r),
        lambda r: ConvNet(4, channels=(4,), dropout_rate=0.5, in_channels=3, rngs=r),
        lambda r: MLP(8 * 8 * 3, (16,), 4, dropout_rate=0.5, rngs=r),
    ],
    ids=["wrn", "convnet", "mlp"],
)
def test_dropout_only_with_a_key_and_pure_under_jit(build):
    graphdef, params = numpy_split(build, 3)
    apply = jax.jit(energies.make_apply(graphdef))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 3)), jnp.float32)
    plain_a, plain_b = apply(params, x), apply(params, x)
    np.testing.assert_array_equal(np.asarray(plain_a), np.asarray(plain_b))
    k = jax.random.key(1)
    drop_a, drop_b = apply(params, x, key=k), apply(params, x, key=k)
    np.testing.assert_array_equal(np.asarray(drop_a), np.asarray(drop_b))  # no hidden state
    assert not np.allclose(np.asarray(drop_a), np.asarray(plain_a))
    assert not np.allclose(np.asarray(apply(params, x, key=jax.random.key(2))), np.asarray(drop_a))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda r: WideResNet(12, 1, rngs=r), "depth"),
        (lambda r: WideResNet(10, 1, norm="batch", rngs=r), "BatchNorm"),
        (lambda r: ConvNet(activation="sigmoidish", rngs=r), "activation"),
    ],
)
def test_bad_network_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build(nnx.Rngs(0))


# --- energies of a classifier ------------------------------------------------------------


def np_logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=-1, keepdims=True)))[..., 0]


@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (30.0, 0.0), (1.0, 1000.0)])
def test_logit_energies_against_direct_computation(scale, offset):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(scale * rng.standard_normal((6, 5)) + offset, jnp.float32)
    logits_np = np.asarray(logits, np.float64)  # the float32 values, for a float64 reference
    y_np = rng.integers(0, 5, size=6)
    y = jnp.asarray(y_np, jnp.int32)

    log_px = np.asarray(energies.log_px_unnorm(logits), np.float64)
    np.testing.assert_allclose(log_px, np_logsumexp(logits_np), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.asarray(energies.energy(logits)), -log_px)
    np.testing.assert_allclose(
        np.asarray(energies.log_px_given_y_unnorm(logits, y)), logits_np[np.arange(6), y_np], rtol=1e-6
    )
    probs = np.exp(logits_np - np_logsumexp(logits_np)[:, None])
    np.testing.assert_allclose(np.asarray(energies.p_y_given_x(logits)), probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(energies.p_y_given_x(logits)).sum(axis=1), 1.0, atol=1e-6)
    # Bayes: log p(y|x) = log p~(x|y) - log p~(x); the normalizer cancels.
    np.testing.assert_allclose(
        np.asarray(energies.log_p_y_given_x(logits))[np.arange(6), y_np],
        np.asarray(energies.log_px_given_y_unnorm(logits, y)) - log_px,
        atol=1e-4,
    )


def test_linear_classifier_energy_gradients_closed_form():
    """For f(x) = W x + b: grad log p~(x) = W^T softmax(f(x)); grad log p~(x|y) = W[y]."""
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)
    b = jnp.asarray(rng.standard_normal(4), jnp.float32)
    apply = lambda x: x @ w.T + b[None, :]
    x = jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)
    y = jnp.asarray([0, 3, 1, 1, 2], jnp.int32)
    value, grad = energies.value_and_grad_log_px(apply, x)
    np.testing.assert_allclose(np.asarray(value), np.asarray(energies.log_px_unnorm(apply(x))), rtol=1e-6)
    expected = np.asarray(jax.nn.softmax(apply(x), axis=-1)) @ np.asarray(w)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-6)
    grad_y = energies.grad_log_px_given_y(apply, x, y)
    np.testing.assert_allclose(np.asarray(grad_y), np.asarray(w)[np.asarray(y)], rtol=1e-6)


def test_network_input_gradient_is_per_sample():
    """The batch-sum gradient equals the gradient of each sample alone (no coupling)."""
    graphdef, params = numpy_split(lambda r: ConvNet(3, channels=(4,), in_channels=1, rngs=r), 4)
    apply = lambda x: energies.make_apply(graphdef)(params, x)
    x = jnp.asarray(np.random.default_rng(5).standard_normal((3, 8, 8, 1)), jnp.float32)
    grads = jax.jit(lambda z: energies.grad_log_px(apply, z))(x)
    singles = jax.jit(jax.vmap(jax.grad(lambda xi: energies.log_px_unnorm(apply(xi[None]))[0])))(x)
    np.testing.assert_allclose(np.asarray(grads), np.asarray(singles), rtol=1e-4, atol=1e-6)
