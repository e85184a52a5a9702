"""``jaxebm train | eval | sample``: parse the command line, then call ``jaxebm.train.loop``.

    jaxebm train --config configs/ffjord.py:8gaussians --workdir runs/8g [--config.a.b=v ...]
    jaxebm eval --workdir runs/8g
    jaxebm sample --workdir runs/8g --num 1000 --out runs/8g/samples.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxebm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or resume) a method in a workdir")
    train.add_argument("--config", required=True, help="configs/<method>.py[:<variant>]")
    train.add_argument("--workdir", required=True)
    train.add_argument("--distributed", action="store_true",
                       help="call jax.distributed.initialize() first (several hosts)")
    ev = sub.add_parser("eval", help="evaluate the latest checkpoint; writes WORKDIR/eval.json")
    ev.add_argument("--workdir", required=True)
    sample = sub.add_parser("sample", help="draw samples from the latest checkpoint")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--num", type=int, default=1000)
    sample.add_argument("--out", required=True, help="a .png (grid or plot) or .npz file")
    sample.add_argument("--seed", type=int, default=None)
    return parser


def _use_xla_flags(flags: str) -> None:
    """Adds the run's ``xla_flags`` to XLA_FLAGS; effective because nothing has started JAX's
    backend yet (importing jax does not)."""
    from jaxebm.train import config as config_lib

    merged = config_lib.merged_xla_flags(os.environ.get("XLA_FLAGS", ""), flags)
    if merged:
        os.environ["XLA_FLAGS"] = merged


def _workdir_xla_flags(workdir: str) -> str:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path) as f:
            return str(json.load(f).get("xla_flags", ""))
    except (OSError, ValueError):
        return ""  # the command itself reports a missing or broken workdir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # --config.a.b=v overrides are not argparse options: collect them first.
    overrides, rest = [], []
    for arg in argv:
        if arg.startswith("--config."):
            overrides.append(arg[len("--config."):])
        else:
            rest.append(arg)
    args = _parser().parse_args(rest)
    if overrides and args.command != "train":
        _parser().error("--config.* overrides only apply to `train`")

    from jaxebm.train import config as config_lib
    from jaxebm.train import loop

    try:
        if args.command == "train":
            cfg = config_lib.load_config(args.config, overrides)
            config_lib.validate_common(cfg)
            _use_xla_flags(cfg.xla_flags)
            if args.distributed:
                import jax

                jax.distributed.initialize()
            results = loop.train(cfg, args.workdir)
        elif args.command == "eval":
            _use_xla_flags(_workdir_xla_flags(args.workdir))
            results = loop.evaluate(args.workdir)
        else:
            _use_xla_flags(_workdir_xla_flags(args.workdir))
            path = loop.sample(args.workdir, args.num, args.out, args.seed)
            results = {"samples": str(path)}
    except (ValueError, FileNotFoundError, loop.Diverged) as err:
        print(f"jaxebm {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(results, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
