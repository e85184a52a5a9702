r"""Convolutions whose gradients are written as plain stride-1 convolutions, fast on the CPU.

Along one spatial axis a convolution with stride :math:`s`, taps :math:`a = 0..k-1` and low
padding :math:`P` is :math:`y[i] = \sum_a x[s i + a - P]\, w[a]`, so its input gradient (the VJP
for a cotangent :math:`\bar y`) is

.. math::

    \bar x[n] = \sum_{(i, a):\ s i + a - P = n} \bar y[i]\, w[a]^\top .

Split :math:`n = s u + r` by its phase :math:`r \in \{0..s-1\}`: only the taps
:math:`a = c_r + s j` with :math:`c_r \equiv r + P \pmod s` reach phase :math:`r`, through
:math:`i = u + e_r - j` with :math:`e_r = (r + P - c_r) / s`, so

.. math::

    \bar x_r[u] = \sum_{j=0}^{J_r - 1} \bar y[u + e_r - j]\, w[c_r + s j]^\top ,

a stride-1 correlation of :math:`\bar y` (padded by :math:`J_r - 1 - e_r` below) with the phase's
taps reversed and their in/out channels swapped; the phases interleave into :math:`\bar x`. For
:math:`s = 1` there is one phase, the familiar correlation with the flipped kernel. On an image
the phases are pairs :math:`(r_1, r_2)`, which together use every tap once: the FLOPs of the
forward pass. The weight gradient splits the same way, by the phase :math:`r` of the tap
:math:`a = r + s j`: with :math:`\tilde x` the padded input and :math:`\tilde x_r = \tilde
x[r::s]`,

.. math::

    \bar w[r + s j] = \sum_{n, i} \tilde x_r[n, i + j] \otimes \bar y[n, i],

a stride-1 correlation of :math:`\tilde x_r` with :math:`\bar y` as the kernel, the batch summed
as the input feature and the input channels in the place of the batch (:func:`weight_grad`).

Why: autodiff's own transpose of a convolution is a convolution of :math:`\bar y` dilated by
the stride, with the kernel's in/out dimensions swapped in the dimension numbers rather than in
memory; its weight gradient is a convolution that reads both operands in their native layouts.
XLA's CPU backend runs the dilated forms at a third to two thirds of the speed of the polyphase
ones, and inside a loop (a ``lax.scan`` SGLD chain, an ODE solve) it runs all of them on a slow
path: input gradients 3-14x and weight gradients 20-140x slower than the canonical forms
(``benchmarks/conv_grad.py``). Outside loops XLA's own weight gradient is 10-20% faster.

:func:`polyphase_conv` computes the value with XLA's convolution and defines its derivative (a
``custom_jvp`` whose rule is the exact tangent map
:math:`\mathrm{conv}(\dot x, w) + \mathrm{conv}(x, \dot w)`) so that reverse mode computes
:math:`\bar x` as above (and, with ``canonical_weight_grad``, :math:`\bar w`), with both
operands of every convolution materialized in the canonical layout: each such term of the
tangent is ``linear_transpose`` of its gradient's formula, which reverse mode transposes back
into it. Forward mode therefore evaluates transposed forms, fine outside loops.

For networks whose JVPs are themselves differentiated in reverse mode (a CNF's dynamics under a
JVP trace estimator, inside the ODE solve), ``through_jvp=True`` gives a second rule whose
tangent is the same convolution applied to the tangents: forward mode runs canonical
convolutions, and the reverse pass over them differentiates each by the first rule, with
canonical weight gradients. Results agree with ``lax.conv_general_dilated`` to float rounding in
every autodiff mode. Other backends run these convolutions natively and keep the plain
convolution. Measured in benchmarks/README.md ("JEM step", "FFJORD on images").
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax
from jax.custom_derivatives import SymbolicZero

Array = jax.Array


def _channels_last_spec(ndim: int) -> tuple[str, str, str]:
    """("NHWC", "HWIO", "NHWC") and its 1-D and 3-D analogues."""
    axes = "DHW"[3 - (ndim - 2):]
    return "N" + axes + "C", axes + "IO", "N" + axes + "C"


def _is_channels_last(lhs: Array, rhs: Array, dimension_numbers: Any) -> bool:
    if dimension_numbers is None:  # lax's default is channels-first
        return False
    spec = _channels_last_spec(lhs.ndim)
    return (lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
            == lax.conv_dimension_numbers(lhs.shape, rhs.shape, spec))


def _phase(n: int, k: int, s: int, pad_lo: int, r: int) -> tuple[int, int, int, int]:
    """Phase ``r`` of an axis of length ``n``: ``(c_r, J_r, low padding J_r - 1 - e_r, length)``."""
    c = (r + pad_lo) % s
    taps = len(range(c, k, s))
    return c, taps, taps - 1 - (r + pad_lo - c) // s, -(-(n - r) // s)


def input_grad(cot: Array, rhs: Array, strides: Sequence[int], pads: Sequence[tuple[int, int]],
               in_spatial: Sequence[int], precision: Any = None) -> Array:
    r"""The VJP of the channels-last convolution ``(x, rhs) -> y`` in ``x``, for the cotangent
    ``cot`` of ``y``, as one stride-1 convolution per phase (module docstring).

    ``in_spatial``: the spatial shape of ``x``. Every kernel is reversed and transposed in memory,
    so each convolution has the canonical (..., in, out) layout.
    """
    nd = len(strides)
    batch, channels = cot.shape[0], rhs.shape[-2]
    dn = lax.conv_dimension_numbers(cot.shape, rhs.shape, _channels_last_spec(cot.ndim))
    full = [-(-n // s) for n, s in zip(in_spatial, strides)]  # every phase padded to this length
    phases = []
    for rs in itertools.product(*(range(s) for s in strides)):
        axes = [_phase(n, k, s, lo, r) for n, k, s, (lo, _), r in
                zip(in_spatial, rhs.shape[:nd], strides, pads, rs)]
        if any(n_taps == 0 for _, n_taps, _, _ in axes):
            phases.append(jnp.zeros((batch, *full, channels), cot.dtype))
            continue
        sub = rhs[tuple(slice(c, c + s * j, s) for (c, j, _, _), s in zip(axes, strides))]
        kernel = jnp.flip(sub, tuple(range(nd))).swapaxes(-1, -2)
        padding = [(lo, length + j - 1 - m - lo)
                   for (_, j, lo, length), m in zip(axes, cot.shape[1:-1])]
        x_r = lax.conv_general_dilated(cot, kernel, (1,) * nd, padding, dimension_numbers=dn,
                                       precision=precision)
        tail = [(0, f - m) for f, m in zip(full, x_r.shape[1:-1])]
        phases.append(jnp.pad(x_r, [(0, 0), *tail, (0, 0)]))
    # (s_1, .., s_nd, batch, full_1, .., full_nd, C) -> (batch, full_1, s_1, .., full_nd, s_nd, C)
    stacked = jnp.stack(phases).reshape(*strides, batch, *full, channels)
    order = [nd] + [a for d in range(nd) for a in (nd + 1 + d, d)] + [2 * nd + 1]
    x_bar = stacked.transpose(order).reshape(batch, *(f * s for f, s in zip(full, strides)),
                                             channels)
    return x_bar[(slice(None),) + tuple(slice(0, n) for n in in_spatial)]


def weight_grad(lhs: Array, cot: Array, kernel_spatial: Sequence[int], strides: Sequence[int],
                pads: Sequence[tuple[int, int]], precision: Any = None) -> Array:
    """The VJP of the channels-last convolution ``(lhs, w) -> y`` in ``w``, for the cotangent
    ``cot`` of ``y``, as one stride-1 convolution per phase of the stride (module docstring).

    Both operands are transposed in memory (the input channels as the batch, the batch as the
    input feature), so each convolution has the canonical layout.
    """
    nd = len(strides)
    c_in, c_out = lhs.shape[-1], cot.shape[-1]
    x_pad = lax.pad(lhs, jnp.zeros((), lhs.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads),
                                                    (0, 0, 0)])
    spec = _channels_last_spec(lhs.ndim)
    kernel = jnp.moveaxis(cot, 0, -2)  # (out spatial.., batch, c_out): batch is the input feature
    w_bar = jnp.zeros((*kernel_spatial, c_in, c_out), cot.dtype)
    for rs in itertools.product(*(range(s) for s in strides)):
        taps = [len(range(r, k, s)) for r, k, s in zip(rs, kernel_spatial, strides)]
        if 0 in taps:
            continue
        # x_r = x_pad[r::s], cropped to the out length + taps - 1 that the taps read.
        x_r = x_pad[(slice(None),) + tuple(slice(r, r + s * (m + j - 2) + 1, s) for r, s, m, j in
                                           zip(rs, strides, cot.shape[1:-1], taps))]
        image = jnp.swapaxes(x_r, 0, -1)  # (c_in, spatial.., batch): c_in is the batch
        dn = lax.conv_dimension_numbers(image.shape, kernel.shape, spec)
        part = lax.conv_general_dilated(image, kernel, (1,) * nd, "VALID", dimension_numbers=dn,
                                        precision=precision)  # (c_in, taps.., c_out)
        part = jnp.moveaxis(part, 0, -2)
        if all(s == 1 for s in strides):
            return part
        w_bar = w_bar.at[tuple(slice(r, None, s) for r, s in zip(rs, strides))].set(part)
    return w_bar


def _sum(terms: list[Array], like: Array) -> Array:
    """The tangent: the sum of the nonzero terms, or zeros shaped like the output."""
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(like)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv(lhs: Array, rhs: Array, static: tuple) -> Array:
    """XLA's convolution; differentiated so that reverse mode computes ``input_grad`` (and, with
    ``static``'s last flag, ``weight_grad``)."""
    strides, pads, precision, kwargs, _ = static
    return lax.conv_general_dilated(
        lhs, rhs, strides, pads, dimension_numbers=_channels_last_spec(lhs.ndim),
        precision=precision, **dict(kwargs),
    )


@functools.partial(_conv.defjvp, symbolic_zeros=True)
def _conv_jvp(static: tuple, primals: tuple, tangents: tuple) -> tuple[Array, Array]:
    # The exact tangent map conv(d lhs, rhs) + conv(lhs, d rhs). Its lhs term is the transpose of
    # input_grad (a linear map of the cotangent), so reverse mode, transposing it once more, runs
    # input_grad itself; likewise the rhs term with weight_grad when asked, else XLA's
    # convolution, whose transpose is XLA's weight gradient: slightly faster outside loops.
    lhs, rhs = primals
    d_lhs, d_rhs = tangents
    strides, pads, precision, _, canonical_weight_grad = static
    y = _conv(lhs, rhs, static)
    terms = []
    if not isinstance(d_lhs, SymbolicZero):
        grad_map = functools.partial(input_grad, rhs=rhs, strides=strides, pads=pads,
                                     in_spatial=lhs.shape[1:-1], precision=precision)
        (term,) = jax.linear_transpose(grad_map, jax.ShapeDtypeStruct(y.shape, y.dtype))(d_lhs)
        terms.append(term)
    if not isinstance(d_rhs, SymbolicZero) and canonical_weight_grad:
        w_grad_map = functools.partial(weight_grad, lhs, kernel_spatial=rhs.shape[:-2],
                                       strides=strides, pads=pads, precision=precision)
        (term,) = jax.linear_transpose(w_grad_map, jax.ShapeDtypeStruct(y.shape, y.dtype))(d_rhs)
        terms.append(term)
    elif not isinstance(d_rhs, SymbolicZero):
        terms.append(_conv(lhs, d_rhs, static))
    return y, _sum(terms, y)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_through_jvp(lhs: Array, rhs: Array, static: tuple) -> Array:
    """``_conv`` whose tangent is ``_conv`` of the tangents: canonical convolutions when
    evaluated, and, differentiated again in reverse mode, ``_conv``'s derivatives."""
    return _conv(lhs, rhs, static)


@functools.partial(_conv_through_jvp.defjvp, symbolic_zeros=True)
def _conv_through_jvp_jvp(static: tuple, primals: tuple, tangents: tuple) -> tuple[Array, Array]:
    # Forward mode runs conv(d lhs, rhs) + conv(lhs, d rhs) as plain convolutions. A reverse pass
    # over that forward pass (the gradient of a JVP) sees only _conv calls, primal and tangent,
    # and differentiates each by _conv's rule. Plain reverse mode instead transposes these tangent
    # terms as lax would, so networks differentiated in reverse mode only use _conv directly.
    lhs, rhs = primals
    d_lhs, d_rhs = tangents
    y = _conv(lhs, rhs, static)
    terms = []
    if not isinstance(d_lhs, SymbolicZero):
        terms.append(_conv(d_lhs, rhs, static))
    if not isinstance(d_rhs, SymbolicZero):
        terms.append(_conv(lhs, d_rhs, static))
    return y, _sum(terms, y)


def polyphase_conv(
    lhs: Array,
    rhs: Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    *,
    through_jvp: bool = False,
    canonical_weight_grad: bool | None = None,
    **kwargs: Any,
) -> Array:
    """Drop-in for ``lax.conv_general_dilated``, as ``nnx.Conv(conv_general_dilated=...)`` calls it.

    On the CPU, channels-last convolutions without dilation or feature groups get the derivative
    of the module docstring; everything else, and every other backend, is the plain
    ``lax.conv_general_dilated``. ``through_jvp=True``: forward mode evaluates the tangent as
    plain convolutions, whose reverse-mode derivatives are again the module's (the gradient of
    a JVP); plain reverse mode is then lax's (use the default for it).
    ``canonical_weight_grad`` (default: ``through_jvp``): the weight gradient by
    :func:`weight_grad`, for weights differentiated inside loops; otherwise XLA's, 10-20%
    faster outside loops and 16-140x slower inside them (benchmarks/README.md, "JEM step").
    """

    def plain(lhs, rhs):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision, **kwargs,
        )

    strides = tuple(window_strides)
    undilated = all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    if (
        not undilated
        or feature_group_count != 1
        or not 1 <= lhs.ndim - 2 <= 3
        or not _is_channels_last(lhs, rhs, dimension_numbers)
    ):
        return plain(lhs, rhs)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)
    if canonical_weight_grad is None:
        canonical_weight_grad = through_jvp
    static = (strides, tuple(map(tuple, padding)), precision, tuple(sorted(kwargs.items())),
              bool(canonical_weight_grad))
    conv = _conv_through_jvp if through_jvp else _conv
    return lax.platform_dependent(lhs, rhs, cpu=lambda lhs, rhs: conv(lhs, rhs, static),
                                  default=plain)


def Conv(*args: Any, through_jvp: bool = False,  # noqa: N802
         canonical_weight_grad: bool | None = None, **kwargs: Any) -> nnx.Conv:
    """``nnx.Conv`` (a module factory, named like one) with :func:`polyphase_conv`: the same
    parameters and values, with gradients several times faster on the CPU, also inside loops (an
    SGLD chain, an ODE solve).

    The default suits networks differentiated in reverse mode, their weights outside loops
    (energies, classifiers). ``through_jvp=True`` for networks whose JVPs are differentiated in
    reverse mode inside loops (the dynamics of a CNF with a JVP trace estimator);
    ``canonical_weight_grad=True`` for weights differentiated inside loops.
    """
    conv = _configured(through_jvp, canonical_weight_grad)
    return nnx.Conv(*args, conv_general_dilated=conv, **kwargs)


@functools.cache
def _configured(through_jvp: bool, canonical_weight_grad: bool | None) -> Any:
    """One function object per option set, so that models built twice have equal graphdefs
    (the function is a static attribute of the module) and jit does not trace them again."""
    return functools.partial(polyphase_conv, through_jvp=through_jvp,
                             canonical_weight_grad=canonical_weight_grad)
