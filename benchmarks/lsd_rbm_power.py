"""Pools independent LSD goodness-of-fit runs (``configs/lsd.py:rbm_test``, one workdir per
``--config.seed``) into one power table and figure.

    python benchmarks/lsd_rbm_power.py benchmarks/figures/lsd_rbm_power.png runs/lsd_rbm_seed*
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxebm.methods.lsd_gof import plot_power, pool_workdirs, power_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figure", type=Path)
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    sigmas, power, n, mean_z = pool_workdirs(args.workdirs)
    print(power_table(sigmas, power, n))
    print("| mean z (LSD) | " + " | ".join(f"{z:.2f}" for z in mean_z) + " |")
    title = f"RBM d_x=50, d_h=40: {int(n.min())}-{int(n.max())} repetitions per sigma"
    print(plot_power(sigmas, power, n, args.figure, alpha=args.alpha, title=title))


if __name__ == "__main__":
    main()
