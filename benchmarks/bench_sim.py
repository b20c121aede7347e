#!/usr/bin/env python
"""Throughput of simulation studies with mlmeta.sim: fits per second, and 1 vs 2 workers.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_sim.py                 # k = 50 and 500, 1 and 2 workers
    .venv/bin/python benchmarks/bench_sim.py --reps 200 --sizes 50

What it does, per size k (effect sizes per replication; SIMULATED data from
``mlmeta.sim.generate_three_level``: k/5 studies with 5 effects each, tau = 0.2, omega = 0.1,
rho = 0.6, sigma2 drawn from {0.02, 0.04, 0.08}):

* runs ``mlmeta.sim.run`` with one analysis per replication, either ``analyse_mlma`` (one REML
  fit, model-based) or ``analyse_che_rve`` (one REML fit of the CHE working model with dense
  sampling-covariance blocks, plus CR2 robust inference), serially in this process
  (``executor="serial"``) and on a ``ProcessPoolExecutor`` with 1 and with 2 workers;
* reports replications (= fits) per second of wall-clock time, including the pool's start-up,
  and the speed-up of 2 workers over 1;
* checks that the tables of the three runs are identical (the seeds do not depend on the
  executor).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import time

import numpy as np
import pandas as pd

from mlmeta import sim


def design(k: int) -> list[dict]:
    return [
        {
            "J": k // 5,
            "mu": 0.2,
            "tau": 0.2,
            "omega": 0.1,
            "rho": 0.6,
            "k": 5,
            "sigma2": [0.02, 0.04, 0.08],
        }
    ]


def timed(k: int, analyse, reps: int, executor) -> tuple[float, pd.DataFrame]:
    t0 = time.perf_counter()
    if executor in (1, 2):
        with cf.ProcessPoolExecutor(executor) as ex:
            out = sim.run(
                design(k),
                sim.generate_three_level,
                analyse,
                reps=reps,
                seed=1,
                executor=ex,
                chunk_size=max(1, reps // 8),
                progress=False,
            )
    else:
        out = sim.run(
            design(k),
            sim.generate_three_level,
            analyse,
            reps=reps,
            seed=1,
            executor="serial",
            progress=False,
        )
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,500", help="comma-separated k (multiples of 5)")
    ap.add_argument(
        "--reps", type=int, default=None, help="replications (default 240 at k <= 100, else 60)"
    )
    args = ap.parse_args()
    print(
        f"mlmeta.sim benchmark — {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'k':>5} {'analysis':<16} {'reps':>5} {'serial /s':>10} {'1 worker /s':>12} "
        f"{'2 workers /s':>13} {'speed-up':>9}"
    )
    for k in (int(s) for s in args.sizes.split(",")):
        reps = args.reps or (240 if k <= 100 else 60)
        for name, fn in (("MLMA (1 fit)", sim.analyse_mlma), ("CHE + CR2", sim.analyse_che_rve)):
            t_s, a = timed(k, fn, reps, "serial")
            t_1, b = timed(k, fn, reps, 1)
            t_2, c = timed(k, fn, reps, 2)
            pd.testing.assert_frame_equal(a, b)
            pd.testing.assert_frame_equal(a, c)
            print(
                f"{k:>5} {name:<16} {reps:>5} {reps / t_s:>10.1f} {reps / t_1:>12.1f} "
                f"{reps / t_2:>13.1f} {t_1 / t_2:>8.2f}x",
                flush=True,
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
