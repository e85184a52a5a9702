"""polyphase_conv: a convolution's values and every derivative, against lax's own, and the
input gradient's form on the CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fixtures.lowering import CANONICAL_CONV, conv_forms
from jaxebm.nn.conv import polyphase_conv

SPECS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}

# (spatial dims, kernel, strides, padding, input size): stride 1 (the WRN's 3x3 and an asymmetric
# one), the WRN's two strided shapes, odd sizes
# (phases of unequal length), strides 3 and 4, a kernel smaller than the stride (empty phases),
# asymmetric padding and strides, string padding, and VALID cropping (negative high padding).
CASES = [
    (2, 3, (1, 1), ((1, 1), (1, 1)), 8),
    (2, 3, (1, 1), ((0, 2), (2, 1)), 7),
    (2, 3, (2, 2), ((1, 1), (1, 1)), 8),
    (2, 1, (2, 2), "VALID", 8),
    (2, 4, (2, 2), ((1, 2), (0, 3)), 9),
    (2, 3, (3, 3), ((1, 1), (2, 0)), 10),
    (2, 5, (4, 4), "VALID", 13),
    (2, 2, (2, 1), ((0, 0), (1, 1)), 6),
    (2, 3, (2, 2), "SAME", 7),
    (1, 5, (2,), ((2, 2),), 11),
    (3, 3, (2, 2, 2), ((1, 1),) * 3, 6),
]


def _pair(d, k, strides, padding, **options):
    def fast(x, w):
        return polyphase_conv(x, w, strides, padding, dimension_numbers=SPECS[d], **options)

    def plain(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=SPECS[d])

    return fast, plain


def _close(a, b, tol=2e-6):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max()), 1e-6)
    assert float(np.abs(a - b).max()) <= tol * scale


@pytest.mark.parametrize("d, k, strides, padding, n", CASES)
def test_values_and_all_derivatives_match_lax(d, k, strides, padding, n):
    rng = np.random.default_rng(d * 100 + k * 10 + n)
    x = jnp.asarray(rng.standard_normal((2,) + (n,) * d + (3,)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k,) * d + (3, 4)), jnp.float32)
    fast, plain = _pair(d, k, strides, padding)

    y = plain(x, w)
    _close(jax.jit(fast)(x, w), y, tol=0)  # the value is lax's own convolution
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(jax.vjp(fast, x, w)[1](ct), jax.vjp(plain, x, w)[1](ct)):
        _close(got, want)
    dx = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    dw = jnp.asarray(rng.standard_normal(w.shape), jnp.float32)
    for tangents in ((dx, dw), (dx, jnp.zeros_like(w))):
        _close(jax.jvp(fast, (x, w), tangents)[1], jax.jvp(plain, (x, w), tangents)[1])

    # Second order, both ways round: the input gradient's gradient, and its forward-mode
    # derivative in the weights (what a gradient penalty on an energy differentiates).
    def input_grad(conv):
        return lambda x, w: jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w))))(x)

    _close(jax.grad(lambda x: jnp.sum(input_grad(fast)(x, w) ** 2))(x),
           jax.grad(lambda x: jnp.sum(input_grad(plain)(x, w) ** 2))(x), tol=1e-5)
    _close(jax.jvp(lambda w: input_grad(fast)(x, w), (w,), (dw,))[1],
           jax.jvp(lambda w: input_grad(plain)(x, w), (w,), (dw,))[1], tol=1e-5)
    _close(jax.vmap(fast, (0, None))(x[:, None], w), jax.vmap(plain, (0, None))(x[:, None], w), tol=0)


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in its equations' parameters."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _primitives(fn, *args) -> set[str]:
    return {eqn.primitive.name for eqn in _eqns(jax.make_jaxpr(fn)(*args).jaxpr)}


@pytest.mark.parametrize("d, k, strides, padding, n", CASES)
def test_canonical_weight_gradients_match_lax(d, k, strides, padding, n):
    rng = np.random.default_rng(3 + d * 100 + k * 10 + n)
    x = jnp.asarray(rng.standard_normal((2,) + (n,) * d + (3,)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k,) * d + (3, 4)), jnp.float32)
    fast, plain = _pair(d, k, strides, padding, canonical_weight_grad=True)
    y = plain(x, w)
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(jax.vjp(fast, x, w)[1](ct), jax.vjp(plain, x, w)[1](ct)):
        _close(got, want)
    dw = jnp.asarray(rng.standard_normal(w.shape), jnp.float32)
    _close(jax.jvp(lambda w: fast(x, w), (w,), (dw,))[1],
           jax.jvp(lambda w: plain(x, w), (w,), (dw,))[1])

    def penalty(conv):  # the weights' gradient of an input-gradient penalty: second order
        return lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w))))(x) ** 2)

    _close(jax.grad(penalty(fast))(w), jax.grad(penalty(plain))(w), tol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_cpu_gradients_are_canonical_undilated_convolutions(stride):
    x, w = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    fast, plain = _pair(2, 3, (stride, stride), ((1, 1), (1, 1)))
    canonical_w = _pair(2, 3, (stride, stride), ((1, 1), (1, 1)), canonical_weight_grad=True)[0]
    assert "custom_jvp_call" in _primitives(fast, x, w)
    # lax's input gradient swaps the kernel's in/out in the dimension numbers (and, strided,
    # dilates the cotangent); its weight gradient reads both operands in their native layouts
    # (and, strided, dilates the cotangent as the kernel). XLA's CPU backend runs these forms
    # slowly, inside loops 3-140x slowly. The rule's gradients are one canonical, undilated
    # convolution per phase of the stride; the weight gradient only when asked.
    d = f"{stride}, {stride}"
    lax_input_grad = [("[b, 0, 1, f]x[0, 1, o, i]->[b, 0, 1, f]", d, "1, 1")]
    lax_weight_grad = [("[f, 0, 1, b]x[i, 0, 1, o]->[0, 1, b, f]", "1, 1", d)]
    assert conv_forms(jax.grad(lambda x: jnp.sum(plain(x, w))), x) == lax_input_grad
    assert conv_forms(jax.grad(lambda w: jnp.sum(plain(x, w))), w) == lax_weight_grad
    for conv in (fast, canonical_w):
        grad = jax.grad(lambda x: jnp.sum(conv(x, w)))
        assert conv_forms(grad, x) == [CANONICAL_CONV] * stride**2
    assert conv_forms(jax.grad(lambda w: jnp.sum(fast(x, w))), w) == lax_weight_grad
    grad = jax.grad(lambda w: jnp.sum(canonical_w(x, w)))
    assert conv_forms(grad, w) == [CANONICAL_CONV] * stride**2


def _jvp_loss(conv):
    """A CNF-like loss of (x, w): the output and a JVP of it (a Hutchinson-style product)."""
    def loss(x, w, dx):
        y, dy = jax.jvp(lambda x: jnp.tanh(conv(x, w)), (x,), (dx,))
        return jnp.sum(y**2) + jnp.sum(dy * jnp.sin(y))
    return loss


@pytest.mark.parametrize("d, k, strides, padding, n", [CASES[i] for i in (0, 1, 2, 4, 9, 10)])
def test_through_jvp_values_and_derivatives_match_lax(d, k, strides, padding, n):
    rng = np.random.default_rng(7 + d * 100 + k * 10 + n)
    x = jnp.asarray(rng.standard_normal((2,) + (n,) * d + (3,)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k,) * d + (3, 4)), jnp.float32)
    dx = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    dw = jnp.asarray(rng.standard_normal(w.shape), jnp.float32)
    fast, plain = _pair(d, k, strides, padding, through_jvp=True)
    y = plain(x, w)
    _close(jax.jit(fast)(x, w), y, tol=0)
    _close(jax.jvp(fast, (x, w), (dx, dw))[1], jax.jvp(plain, (x, w), (dx, dw))[1])
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(jax.vjp(fast, x, w)[1](ct), jax.vjp(plain, x, w)[1](ct)):
        _close(got, want)
    # The gradient of a JVP (reverse over forward), in the input, the weights and the tangent.
    for got, want in zip(jax.grad(_jvp_loss(fast), (0, 1, 2))(x, w, dx),
                         jax.grad(_jvp_loss(plain), (0, 1, 2))(x, w, dx)):
        _close(got, want, tol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_cpu_gradient_of_a_jvp_is_canonical_undilated_convolutions(stride):
    x, w = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    fast, plain = _pair(2, 3, (stride, stride), ((1, 1), (1, 1)), through_jvp=True)
    grad_fast = jax.grad(_jvp_loss(fast), (0, 1))
    # Two forward convolutions (value and tangent); per phase, the value's input and weight
    # gradients and the tangent's weight gradient (its input gradient is not asked for).
    forms = conv_forms(grad_fast, x, w, x)
    assert forms == [CANONICAL_CONV] * (2 + 3 * stride**2)
    assert CANONICAL_CONV not in set(conv_forms(jax.grad(_jvp_loss(plain), (0, 1)), x, w, x)[2:])


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(window_strides=(2, 2), padding="SAME", dimension_numbers=("NCHW", "OIHW", "NCHW")),
        dict(window_strides=(2, 2), padding="SAME", dimension_numbers=SPECS[2], rhs_dilation=(2, 2)),
        dict(window_strides=(2, 2), padding="SAME", dimension_numbers=SPECS[2], feature_group_count=3),
    ],
    ids=["channels-first", "dilated", "grouped"],
)
def test_other_convolutions_are_plain_lax(kwargs):
    if kwargs["dimension_numbers"][0] == "NCHW":
        x, w = jnp.ones((1, 3, 8, 8)), jnp.ones((6, 3, 3, 3))
    else:
        groups = kwargs.get("feature_group_count", 1)
        x, w = jnp.ones((1, 8, 8, 3)), jnp.ones((3, 3, 3 // groups, 6))
    fast = lambda x, w: polyphase_conv(x, w, **kwargs)  # noqa: E731
    assert "custom_jvp_call" not in _primitives(fast, x, w)
    _close(fast(x, w), lax.conv_general_dilated(x, w, **kwargs), tol=0)
