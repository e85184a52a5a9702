"""The LSD test's power against the ensemble size, from one ``rbm_test`` workdir with
``lsd.ensemble = M``: the test of its first m members' mean field, m = 1, ..., M, on the same
problems (the first m members are the ensemble-m run), and each member alone.

    python benchmarks/lsd_rbm_members.py runs/lsd_ens/m4_seed100
"""

from __future__ import annotations

import argparse

import numpy as np
from jax.scipy.special import ndtri

from jaxebm.methods.lsd_gof import later_option, problem_z_scores, sigma_tag
from jaxebm.train.loop import restore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    args = parser.parse_args()
    cfg, _, state, step = restore(args.workdir)
    r, lsd = cfg.rbm, cfg.lsd
    members = int(later_option(cfg, "lsd", "ensemble"))
    n_problems = len(r.sigmas) * r.n_reps
    stats = np.asarray(state["best_test_stat"]).reshape(members, -1, r.n_test)
    threshold = float(ndtri(1.0 - lsd.alpha))

    def report(label, z):
        z = z.reshape(len(r.sigmas), r.n_reps)
        for sigma, row in zip(r.sigmas, z):
            print(f"| {label} | {sigma_tag(sigma)} | {np.mean(row > threshold):.2f} "
                  f"({int(np.sum(row > threshold))}/{r.n_reps}) | {row.mean():.2f} | "
                  f"{row.std(ddof=1) if r.n_reps > 1 else 0.0:.2f} | {row.min():.2f} |")

    print(f"{args.workdir}: step {step}, {members} members, {n_problems} problems")
    print("| critics | sigma | power | mean z | sd z | min z |\n|---|---|---|---|---|---|")
    for m in range(1, members + 1):
        report(f"mean of members 0-{m - 1}", problem_z_scores(
            stats[:m].reshape(-1, r.n_test), members=m, n_problems=n_problems,
            num_const=lsd.num_const))
    for m in range(1, members):
        report(f"member {m} alone", problem_z_scores(stats[m], members=1, n_problems=n_problems,
                                                     num_const=lsd.num_const))


if __name__ == "__main__":
    main()
