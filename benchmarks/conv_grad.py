"""Convolution gradients on the CPU: lax's own against ``jaxebm.nn.conv.polyphase_conv``.

For each convolution of WRN-10-2 at batch 64 (CIFAR-shaped input), times the forward pass and
the gradient in ``x`` of ``sum(tanh(conv(x, w)))`` (a forward pass and an input gradient, what
every SGLD step computes per layer) by autodiff of ``lax.conv_general_dilated`` and of
``polyphase_conv``, each both straight and inside a ``lax.fori_loop`` that feeds the gradient
back (as a scanned SGLD chain does), where XLA's CPU backend runs a kernel whose in/out
dimensions are swapped in the dimension numbers on a slow path. ``--weights`` adds the gradient
in ``w``, straight and inside a loop that feeds it back into ``w`` (as a training step whose
forward pass is a loop, an ODE solve, computes it)::

    python benchmarks/conv_grad.py [--batch 64] [--loop-steps 10] [--repeats 5] [--weights]

Prints one JSON line per convolution, milliseconds per call (medians of ``--repeats``).
By default sets ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` (shared/CPU-NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

_YNN = "--xla_cpu_experimental_ynn_fusion_type"
if _YNN not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_YNN}=").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from jaxebm.nn.conv import polyphase_conv  # noqa: E402

DN = ("NHWC", "HWIO", "NHWC")
# WRN-10-2 on 32x32x3: (input side, in channels, out channels, kernel, stride, padding)
WRN_10_2 = [(32, 3, 16, 3, 1, 1), (32, 16, 32, 3, 1, 1), (32, 32, 32, 3, 1, 1), (32, 16, 32, 1, 1, 0),
            (32, 32, 64, 3, 1, 1), (32, 64, 64, 3, 2, 1), (32, 32, 64, 1, 2, 0), (16, 64, 128, 3, 1, 1),
            (16, 128, 128, 3, 2, 1), (16, 64, 128, 1, 2, 0)]


def median_ms(fn, *args, repeats: int, per: int = 1) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - t)
    return round(1e3 * statistics.median(runs) / per, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--loop-steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--weights", action="store_true", help="also the weight gradients")
    args = p.parse_args()
    n = args.loop_steps
    for side, c_in, c_out, k, s, pad in WRN_10_2:
        x = jax.random.normal(jax.random.key(0), (args.batch, side, side, c_in))
        w = jax.random.normal(jax.random.key(1), (k, k, c_in, c_out)) / (k * k * c_in) ** 0.5
        pads = ((pad, pad), (pad, pad))
        record = {"bench": "conv_grad", "shape": f"{side}x{side}x{c_in}->{c_out} k{k} s{s}"}
        for name, conv in (("lax", lax.conv_general_dilated), ("polyphase", polyphase_conv)):
            def f(x, w, conv=conv):
                return conv(x, w, (s, s), pads, dimension_numbers=DN)

            def input_grad(x, w, f=f):
                return jax.grad(lambda x: jnp.sum(jnp.tanh(f(x, w))))(x)

            def weight_grad(x, w, f=f):
                return jax.grad(lambda w: jnp.sum(jnp.tanh(f(x, w))))(w)

            def looped(x, w, g=input_grad):  # the gradient fed back, as an SGLD chain does
                return lax.fori_loop(0, n, lambda i, x: x + 1e-3 * g(x, w), x)

            def looped_w(x, w, g=weight_grad):  # as a training loop inside jit (an ODE solve) does
                return lax.fori_loop(0, n, lambda i, w: w - 1e-3 * g(x, w), w)

            if name == "lax":
                record["forward_ms"] = median_ms(f, x, w, repeats=args.repeats)
            record[f"{name}_grad_ms"] = median_ms(input_grad, x, w, repeats=args.repeats)
            record[f"{name}_in_loop_ms"] = median_ms(looped, x, w, repeats=args.repeats, per=n)
            if args.weights:
                record[f"{name}_wgrad_ms"] = median_ms(weight_grad, x, w, repeats=args.repeats)
                record[f"{name}_wgrad_in_loop_ms"] = median_ms(looped_w, x, w, repeats=args.repeats,
                                                               per=n)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
