#!/usr/bin/env python
"""Type I error of the cluster wild bootstrap with few studies (a simulation with mlmeta.sim).

Usage (from the repository root)::

    .venv/bin/python benchmarks/cwb_null_rejection.py                   # J = 10, 20; 400 data sets
    .venv/bin/python benchmarks/cwb_null_rejection.py --reps 1000 --R 99 --workers 2 \\
        --checkpoint cwb-ck                                             # resumable

SIMULATED data (``mlmeta.sim.generate_three_level``): J studies with 1 + Poisson(2) effect
sizes, tau = 0.2, omega = 0.1, sampling variances drawn from {0.01, 0.03, 0.06, 0.1}, a
study-level covariate ``x_study`` with coefficient 0 (H0 true) and an effect-level covariate
``x_es`` with coefficient 0.1. The working model is the three-level model with moderators
``x_study + x_es`` (REML). For each data set the hypothesis ``x_study = 0`` is tested by

* CWB: the cluster wild bootstrap, Rademacher weights, CR0 naive-F (wildmeta's defaults);
* CWB-adj: the same with CR2-adjusted residuals;
* CR2-HTZ: the HTZ Wald test with CR2 (clubSandwich's default, ``res.robust()``);
* CR2-t: the CR2 t test with Satterthwaite df (``coef_test``).

and the rejection rates at alpha = 0.05 are reported with their Monte Carlo SEs
(``mlmeta.sim.summarise``).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

import mlmeta
from mlmeta import sim
from mlmeta.analyses import cwb


def tests(data: pd.DataFrame, condition: dict) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlmeta.rma_mv(data, "yi", "vi", random="study/es", mods="~ x_study + x_es")
        seed = int(
            np.random.SeedSequence(
                np.frombuffer(data["yi"].to_numpy().tobytes(), np.uint32)
            ).generate_state(1)[0]
        )
        rows = []
        for adjust in (False, True):
            out = cwb.cwb_test(res, "x_study", R=condition["R"], adjust=adjust, seed=seed)
            rows.append(("CWB-adj" if adjust else "CWB", out.p_value))
        rob = res.robust(type="CR2", btt="x_study")
        rows.append(("CR2-HTZ", rob.QMp))
        rows.append(("CR2-t", float(rob.coefs.loc["x_study", "pval"])))
    return pd.DataFrame(rows, columns=["method", "p"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", default="10,20")
    ap.add_argument("--reps", type=int, default=400, help="data sets per condition")
    ap.add_argument("--R", type=int, default=39, help="bootstrap replicates")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--seed", type=int, default=20240607)
    args = ap.parse_args()
    design = [
        {
            "J": int(J),
            "mu": 0.1,
            "tau": 0.2,
            "omega": 0.1,
            "rho": 0.0,
            "k": 3,
            "k_dist": "poisson",
            "sigma2": [0.01, 0.03, 0.06, 0.1],
            "beta_study": 0.0,
            "beta_es": 0.1,
            "R": args.R,
        }
        for J in args.studies.split(",")
    ]
    t0 = time.perf_counter()
    res = sim.run(
        design,
        sim.generate_three_level,
        tests,
        reps=args.reps,
        seed=args.seed,
        executor=args.workers,
        checkpoint=args.checkpoint,
        chunk_size=10,
    )
    perf = sim.summarise(res, true_value=0.0, estimate="p", ci=None)
    print(
        f"\n{args.reps} simulated data sets per condition, R = {args.R}, alpha = 0.05, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(
        perf[["J", "method", "K_rejection", "rej_rate", "rej_rate_mcse"]].to_string(
            index=False, float_format=lambda x: f"{x:.3f}"
        )
    )


if __name__ == "__main__":
    main()
