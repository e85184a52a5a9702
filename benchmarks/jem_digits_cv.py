"""Pools a K-fold cross-validation of a digits classifier (``configs/jem.py:digits`` or
``:digits_baseline`` with ``--config.data.cv_folds=K --config.data.cv_fold=k``, one workdir per
fold) into one evaluation on every image: accuracy, NLL, ECE beside its calibrated floor, mean
confidence; plus each fold's own ECE and OOD AUROC from its ``eval.json``.

    python benchmarks/jem_digits_cv.py runs/jemcv/jem_f0 ... runs/jemcv/jem_f4 [--figure PNG]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jaxebm.eval import calibration
from jaxebm.methods.jem import pool_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--figure", type=Path, help="pooled reliability diagram (PNG)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args()
    log_probs, labels, pooled = pool_folds(args.workdirs)
    configs = [json.loads((Path(d) / "config.json").read_text()) for d in args.workdirs]
    evals = [json.loads((Path(d) / "eval.json").read_text()) for d in args.workdirs]
    order = np.argsort([c["data"]["cv_fold"] for c in configs])
    per_fold = {key: [round(evals[i][key], 4) for i in order]
                for key in ("accuracy", "ece", "ece_calibrated", "auroc_permuted_log_px")
                if all(key in e for e in evals)}
    print(json.dumps({"pooled": {k: round(v, 5) if isinstance(v, float) else v
                                 for k, v in pooled.items()},
                      "per_fold": per_fold}))
    if args.figure:
        ece = calibration.reliability_diagram(np.exp(log_probs), labels, args.figure,
                                              n_bins=configs[0]["eval"]["ece_bins"],
                                              title=args.title)
        print(json.dumps({"figure": str(args.figure), "ece": round(ece, 5)}))


if __name__ == "__main__":
    main()
