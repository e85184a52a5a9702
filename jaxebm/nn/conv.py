r"""Strided convolutions whose input gradient is made of stride-1 convolutions (fast on the CPU).

Along one spatial axis, a stride-:math:`s` convolution with taps :math:`a = 0..k-1` and low
padding :math:`P` is

.. math::

    y[i] = \sum_a x[s i + a - P]\, w[a].

Write :math:`a - P = s j + r` with the phase :math:`r \in \{0..s-1\}`; then
:math:`x[s i + a - P] = x_r[i + j]` with :math:`x_r = x[r::s]`, the :math:`r`-th polyphase
component, and

.. math::

    y[i] = \sum_r \sum_j x_r[i + j]\, w[s j + r + P],

a sum over phases of *stride-1* correlations of :math:`x_r` with the sub-kernel
:math:`w[c_r::s]` (:math:`c_r` the first tap in phase :math:`r`; phases without taps drop out).
On an image the phases are pairs :math:`(r_1, r_2)`: :math:`s^2` stride-1 convolutions that
together use every tap once, the FLOPs of the strided convolution.

Why: reverse-mode autodiff transposes a stride-:math:`s` convolution into a convolution of the
output cotangent dilated by :math:`s` (zeros between samples), which XLA's CPU backend runs at a
fraction of its forward speed (a quarter at the Wide-ResNet's 32x32, 64-channel stride-2 shape),
and that input gradient is what every SGLD step of a conv-net energy computes. Transposed, the
polyphase form is stride-1 convolutions and strided scatters instead. :func:`polyphase_conv`
therefore keeps XLA's strided convolution for the value and for the weight term of the
derivative (both faster that way) and writes only the input term of its tangent map
:math:`\mathrm{conv}(\dot x, w) + \mathrm{conv}(x, \dot w)` in polyphase form, as a ``custom_jvp``
whose rule is that exact derivative: jvp, vjp and higher orders all work, and results agree with
``lax.conv_general_dilated`` to float rounding. Other backends run strided transposes natively
and keep the plain convolution. Measured in benchmarks/README.md ("JEM step").
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

Array = jax.Array


def _phases(k: int, s: int, pad_lo: int) -> list[tuple[int, int, int, int]]:
    """Per phase ``r`` with taps: ``(r, first tap c_r, number of taps n_r, low padding -j_min)``."""
    plan = []
    for r in range(s):
        taps = [a for a in range(k) if (a - pad_lo) % s == r]
        if taps:
            plan.append((r, taps[0], len(taps), -((taps[0] - pad_lo - r) // s)))
    return plan


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


def _polyphase(lhs: Array, rhs: Array, strides: Sequence[int], pads: Sequence[tuple[int, int]],
               precision: Any, kwargs: dict) -> Array:
    """The strided convolution as a sum over phases of stride-1 convolutions (module docstring)."""
    window = rhs.shape[:-2]
    spatial = lhs.shape[1:-1]
    out = [(n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(spatial, pads, window, strides)]
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _channels_last_spec(lhs.ndim))
    plans = [_phases(k, s, lo) for k, s, (lo, _) in zip(window, strides, pads)]
    y = None
    for combo in itertools.product(*plans):
        phase = tuple(slice(r, None, s) for (r, _, _, _), s in zip(combo, strides))
        x_r = lhs[(slice(None),) + phase]
        w_r = rhs[tuple(slice(c, c + s * n, s) for (_, c, n, _), s in zip(combo, strides))]
        # Low padding lines x_r up with the first tap's offset; high padding (negative = crop)
        # makes each phase's output exactly ``out`` long.
        pad_r = [(lo, o + n - 1 - m - lo) for (_, _, n, lo), o, m in zip(combo, out, x_r.shape[1:-1])]
        term = lax.conv_general_dilated(
            x_r, w_r, (1,) * len(strides), pad_r, dimension_numbers=dn, precision=precision, **kwargs
        )
        y = term if y is None else y + term
    return y


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _strided_conv(lhs: Array, rhs: Array, static: tuple) -> Array:
    """The plain strided convolution, differentiated through its polyphase form in ``lhs``."""
    strides, pads, precision, kwargs = static
    return lax.conv_general_dilated(
        lhs, rhs, strides, pads, dimension_numbers=_channels_last_spec(lhs.ndim),
        precision=precision, **dict(kwargs),
    )


@functools.partial(_strided_conv.defjvp, symbolic_zeros=True)
def _strided_conv_jvp(static: tuple, primals: tuple, tangents: tuple) -> tuple[Array, Array]:
    # The exact tangent map, conv(d lhs, rhs) + conv(lhs, d rhs), bilinear as it is; only the
    # lhs term is written in polyphase form, so that its transpose (the input gradient) is made
    # of stride-1 convolutions. The primal and the rhs term stay XLA's own convolution, which is
    # the faster one for the forward pass and the weight gradient.
    lhs, rhs = primals
    d_lhs, d_rhs = tangents
    strides, pads, precision, kwargs = static
    y = _strided_conv(lhs, rhs, static)
    terms = []
    if not isinstance(d_lhs, SymbolicZero):
        terms.append(_polyphase(d_lhs, rhs, strides, pads, precision, dict(kwargs)))
    if not isinstance(d_rhs, SymbolicZero):
        terms.append(_strided_conv(lhs, d_rhs, static))
    return y, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)


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
    **kwargs: Any,
) -> Array:
    """Drop-in for ``lax.conv_general_dilated`` (as ``nnx.Conv(conv_general_dilated=...)`` calls it).

    Channels-last strided convolutions without dilation or feature groups run on the CPU as
    the polyphase sum of the module docstring; everything else, and every other backend, is the
    plain ``lax.conv_general_dilated``.
    """

    def plain(lhs, rhs):
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, precision=precision, **kwargs,
        )

    strides = tuple(window_strides)
    undilated = all(d == 1 for d in (lhs_dilation or ())) and all(d == 1 for d in (rhs_dilation or ()))
    if (
        all(s == 1 for s in strides)
        or not undilated
        or feature_group_count != 1
        or not 1 <= lhs.ndim - 2 <= 3
        or not _is_channels_last(lhs, rhs, dimension_numbers)
    ):
        return plain(lhs, rhs)
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)
    else:
        pads = [tuple(p) for p in padding]
    return lax.platform_dependent(
        lhs, rhs,
        cpu=lambda lhs, rhs: _strided_conv(lhs, rhs, (strides, tuple(map(tuple, pads)), precision,
                                                      tuple(sorted(kwargs.items())))),
        default=plain,
    )
