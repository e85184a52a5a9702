"""FFJORD on images: seconds per training step, with the ODE net's convolutions as jaxebm's
(``jaxebm.nn.conv.Conv(through_jvp=True)``, the default) or as plain ``nnx.Conv`` (lax's).

The method's own jitted step (``configs/ffjord.py:digits`` or ``:mnist``, multiscale, Rademacher
Hutchinson trace by JVP, tsit5, gradients through the solver). Each step differentiates the JVPs
of the ODE net inside the solver's loop, where XLA's CPU backend runs lax's convolution
gradients 5-85x slower than straight (benchmarks/README.md, "FFJORD on images")::

    python benchmarks/ffjord_image.py --data digits --conv polyphase,lax --steps 20
    python benchmarks/ffjord_image.py --data mnist --batch 20 --conv polyphase,lax --steps 5

``--data mnist`` writes random 28x28 images as IDX files into a temporary directory: the step's
cost, not its quality, is measured. Prints one JSON line per setting: compile plus first step,
the median seconds per step after it, and the NFE. ``--conv`` runs the settings in turn,
``--rounds`` times, so that a drifting machine shows in every setting alike. By default sets
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` (shared/CPU-NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

_YNN = "--xla_cpu_experimental_ynn_fusion_type"
if _YNN not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_YNN}=").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxebm.data.images import encode_idx  # noqa: E402
from jaxebm.nn import odenet  # noqa: E402
from jaxebm.train import config as config_lib  # noqa: E402
from jaxebm.train.loop import guarded_step, root_key  # noqa: E402
from jaxebm.train.method import build_method  # noqa: E402

CONFIG = str(Path(__file__).parent.parent / "configs" / "ffjord.py")
ORIGINAL_CONV = odenet.Conv  # jaxebm.nn.conv.Conv; "lax" swaps in plain_conv


def plain_conv(*args, through_jvp: bool = False, **kwargs) -> nnx.Conv:
    del through_jvp
    return nnx.Conv(*args, **kwargs)


def write_random_mnist(directory: Path, n_train: int = 6000, n_test: int = 1000) -> None:
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, (n,), dtype=np.uint8)
        (directory / f"{stem}-images-idx3-ubyte").write_bytes(encode_idx(images))
        (directory / f"{stem}-labels-idx1-ubyte").write_bytes(encode_idx(labels))


def time_steps(cfg, conv: str, steps: int) -> dict:
    odenet.Conv = plain_conv if conv == "lax" else ORIGINAL_CONV
    method = build_method(cfg)
    step_fn = guarded_step(method, 1e8)
    root = root_key(cfg.seed)
    state = method.init(root)
    bad = jax.numpy.asarray(-1, jax.numpy.int32)
    t0 = time.perf_counter()
    state, bad, m = step_fn(state, bad, method.data.train_batch(0), root, jax.numpy.int32(0))
    jax.block_until_ready(state)
    first = time.perf_counter() - t0
    times, nfes = [], [int(m["nfe"])]
    for step in range(1, steps):
        t0 = time.perf_counter()
        batch = method.data.train_batch(step)
        state, bad, m = step_fn(state, bad, batch, root, jax.numpy.int32(step))
        jax.block_until_ready(state)
        times.append(time.perf_counter() - t0)
        nfes.append(int(m["nfe"]))
    return {"conv": conv, "compile_and_first_step_s": round(first, 2),
            "median_step_s": round(statistics.median(times), 4) if times else None,
            "nfe_first_last": [nfes[0], nfes[-1]], "loss_last": float(m["loss"]),
            "bad_step": int(bad)}



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="digits", choices=("digits", "mnist"))
    p.add_argument("--conv", default="polyphase,lax")
    p.add_argument("--batch", type=int, default=0, help="0: the config's")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--override", nargs="*", default=[], help="extra config overrides, key=value")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overrides = list(args.override)
        if args.batch:
            overrides.append(f"data.batch_size={args.batch}")
        if args.data == "mnist":
            write_random_mnist(Path(tmp))
            overrides.append(f"data.dir={tmp}")
        cfg = config_lib.load_config(f"{CONFIG}:{args.data}", overrides)
        for round_ in range(args.rounds):
            for conv in args.conv.split(","):
                record = time_steps(cfg, conv, args.steps)
                print(json.dumps({"bench": "ffjord_image", "data": args.data, "round": round_,
                                  "batch": cfg.data.batch_size, "steps": args.steps, **record,
                                  "device": jax.devices()[0].device_kind}), flush=True)


if __name__ == "__main__":
    main()
