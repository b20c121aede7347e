#!/usr/bin/env python
"""Benchmark of the general random-effects engine (crossed terms, UN structures, R matrices).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_structures.py               # every scenario
    .venv/bin/python benchmarks/bench_structures.py --only crossed_1e4,un_1e4
    .venv/bin/python benchmarks/bench_structures.py --json out.json
    .venv/bin/python benchmarks/bench_structures.py --threads 1    # OPENBLAS_NUM_THREADS=1
    .venv/bin/python benchmarks/bench_structures.py --r-timeout 300  # metafor beside each

Every scenario simulates its data (SIMULATED, fixed seeds) and fits it with the public API
``mlmeta.rma_mv`` in a fresh Python subprocess, after a small warm-up fit so that imports are
not timed. Reported: wall time of the fit (data preparation, optimisation, tests), Newton
iterations, the estimates against the truth, the peak RSS increase during the fit (the kernel's
high-water mark reset just before it via ``/proc/self/clear_refs``) and the whole process peak.

Scenarios (targets from the design brief):

* ``crossed_1e3``: as below with k = 1,000 and 20 labs, a size metafor finishes.
* ``crossed_1e4`` / ``crossed_1e5``: k = 10^4 / 10^5 effect sizes, studies of 5 effect sizes
  (2,000 / 20,000 studies), each effect size from one of 100 / 500 labs drawn at random (lab
  crossed with study); ``random=["~ 1 | study/es", "~ 1 | lab"]``; truth sigma2 = (0.04, 0.01,
  0.02). Targets: <= 5 s and <= 60 s.
* ``un_1e4``: 10^4 trials reporting up to 3 outcomes (each present with probability 0.85,
  about 25,500 rows), ``random="~ outcome | trial"``, ``struct="UN"``, sampling correlation
  0.5 within trials (``rho=0.5``); truth tau2 = (0.05, 0.04, 0.06), rho = (0.67, 0.37, 0.51).
  Target: <= 10 s.
* ``phylo_2000``: a correlation matrix R over 2,000 species (an ultrametric random tree),
  6,000 effect sizes from 3,000 studies, ``random=["~ 1 | study", "~ 1 | es", "~ 1 | species",
  "~ 1 | phylo"]`` with ``R={"phylo": R}``; truth sigma2 = (0.04, 0.01, 0.01, 0.03).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

SCENARIOS = ("crossed_1e3", "crossed_1e4", "crossed_1e5", "un_1e4", "phylo_2000")
TARGETS = {
    "crossed_1e3": None,
    "crossed_1e4": 5.0,
    "crossed_1e5": 60.0,
    "un_1e4": 10.0,
    "phylo_2000": None,
}
#: metafor builds the k x k marginal covariance: not attempted where it alone needs > 16 GB
R_SKIP = {"crossed_1e5": "the dense 100,000 x 100,000 V of rma.mv needs 80 GB"}

#: the same model in metafor 3.8-1 (sparse = TRUE), timed inside R around rma.mv (and vcalc)
R_CODE = {
    "crossed": "r <- rma.mv(yi, vi, random = list(~ 1 | study/es, ~ 1 | lab), data = d, "
    "sparse = TRUE)",
    # V block-diagonal and sparse (metafor 3.8-1's vcalc builds it dense: 24 GB at k = 25,429)
    "un": "V <- Matrix::bdiag(lapply(split(seq_len(nrow(d)), d$trial), function(i) "
    "{S <- 0.5 * sqrt(outer(d$vi[i], d$vi[i])); diag(S) <- d$vi[i]; S})); "
    "r <- rma.mv(yi, V, mods = ~ 0 + outcome, random = ~ outcome | trial, "
    'struct = "UN", data = d, sparse = TRUE)',
    "phylo": "A <- as.matrix(read.csv(fR, row.names = 1, check.names = FALSE)); "
    "r <- rma.mv(yi, vi, random = list(~ 1 | study, ~ 1 | es, ~ 1 | species, ~ 1 | phylo), "
    "R = list(phylo = A), data = d, sparse = TRUE)",
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- data
def crossed(k: int, n_lab: int):
    import pandas as pd

    rng = np.random.default_rng([20241207, k])
    ns = k // 5
    study = np.repeat(np.arange(ns), 5)
    es = np.tile(np.arange(1, 6), ns)
    lab = rng.integers(0, n_lab, k)
    n = rng.integers(20, 400, k)
    vi = 1.0 / (n - 3.0)
    yi = (
        0.3
        + rng.normal(0, 0.2, ns)[study]
        + rng.normal(0, 0.1, k)
        + rng.normal(0, np.sqrt(0.02), n_lab)[lab]
        + rng.normal(0, np.sqrt(vi))
    )
    df = pd.DataFrame(
        {"study": study, "es": es, "lab": [f"L{x:04d}" for x in lab], "yi": yi, "vi": vi}
    )
    return df, {"random": ["~ 1 | study/es", "~ 1 | lab"]}, "sigma2 = (0.04, 0.01, 0.02)"


def un(n_trials: int):
    import pandas as pd

    rng = np.random.default_rng([20241208, n_trials])
    T = np.array([[0.05, 0.03, 0.02], [0.03, 0.04, 0.025], [0.02, 0.025, 0.06]])
    trial = np.repeat(np.arange(n_trials), 3)
    out = np.tile(np.arange(3), n_trials)
    keep = rng.random(3 * n_trials) < 0.85
    trial, out = trial[keep], out[keep]
    k = len(trial)
    u = rng.multivariate_normal(np.zeros(3), T, n_trials)
    vi = rng.uniform(0.01, 0.05, k)
    # sampling errors with correlation 0.5 within a trial (the model's V)
    z = rng.normal(size=k)
    shared = rng.normal(size=n_trials)[trial]
    e = np.sqrt(vi) * (np.sqrt(0.5) * shared + np.sqrt(0.5) * z)
    yi = np.array([0.2, 0.3, 0.1])[out] + u[trial, out] + e
    df = pd.DataFrame(
        {"trial": trial, "outcome": np.array(["anx", "dep", "str"])[out], "yi": yi, "vi": vi}
    )
    kw = {"random": "~ outcome | trial", "struct": "UN", "rho": 0.5, "mods": "~ 0 + outcome"}
    return df, kw, "tau2 = (0.05, 0.04, 0.06), rho = (0.67, 0.37, 0.51)"


def phylo(q: int, k: int):
    import pandas as pd

    rng = np.random.default_rng([20241209, q])
    R = np.zeros((q, q))

    def split(a: int, b: int, h: float) -> None:  # ultrametric tree: R[i, j] = depth of MRCA
        stack = [(a, b, h)]
        while stack:
            a, b, h = stack.pop()
            R[a:b, a:b] = h
            if b - a == 1:
                continue
            m = int(rng.integers(a + 1, b))
            h2 = h + (1 - h) * rng.uniform(0.05, 0.5)
            stack.append((a, m, h2 if m - a > 1 else h))
            stack.append((m, b, h2 if b - m > 1 else h))

    split(0, q, 0.0)
    np.fill_diagonal(R, 1.0)
    names = [f"sp{i:04d}" for i in range(q)]
    sp = rng.integers(0, q, k)
    ns = k // 2
    study = np.repeat(np.arange(ns), 2)
    L = np.linalg.cholesky(R + 1e-9 * np.eye(q))
    vi = rng.uniform(0.01, 0.05, k)
    yi = (
        0.2
        + np.sqrt(0.03) * (L @ rng.normal(size=q))[sp]
        + rng.normal(0, 0.2, ns)[study]
        + rng.normal(0, 0.1, q)[sp]
        + rng.normal(0, 0.1, k)
        + rng.normal(0, np.sqrt(vi))
    )
    df = pd.DataFrame(
        {"study": study, "es": np.arange(k), "species": np.array(names)[sp], "yi": yi, "vi": vi}
    )
    df["phylo"] = df["species"]
    Rdf = pd.DataFrame(R, index=names, columns=names)
    kw = {
        "random": ["~ 1 | study", "~ 1 | es", "~ 1 | species", "~ 1 | phylo"],
        "R": {"phylo": Rdf},
    }
    return df, kw, "sigma2 = (0.04, 0.01, 0.01, 0.03)"


def make(name: str):
    if name == "crossed_1e3":
        return crossed(1_000, 20)
    if name == "crossed_1e4":
        return crossed(10_000, 100)
    if name == "crossed_1e5":
        return crossed(100_000, 500)
    if name == "un_1e4":
        return un(10_000)
    if name == "phylo_2000":
        return phylo(2000, 6000)
    raise SystemExit(f"unknown scenario {name!r}")


# ----------------------------------------------------------------------------- worker
def worker(name: str, data_dir: str | None = None) -> dict:
    import warnings

    import mlmeta

    warnings.simplefilter("ignore")
    df, kw, truth = make(name)
    if data_dir:  # the same data for metafor
        df.to_csv(os.path.join(data_dir, f"{name}.csv"), index=False)
        if "R" in kw:
            kw["R"]["phylo"].to_csv(os.path.join(data_dir, f"{name}_R.csv"))
    # warm-up on a small slice: imports and first-call costs are not timed
    small, skw, _ = crossed(500, 10) if name != "un_1e4" else un(100)
    mlmeta.rma_mv(small, "yi", "vi", **skw)
    before = _rss_mib()
    reset = _reset_peak()
    base = _rss_mib() if reset else before
    t0 = time.perf_counter()
    res = mlmeta.rma_mv(df, "yi", "vi", **kw)
    dt = time.perf_counter() - t0
    peak = _rss_mib()
    est = {"sigma2": [round(float(x), 4) for x in res.sigma2]}
    if res.tau2 is not None:
        est["tau2"] = [round(float(x), 4) for x in res.tau2]
        est["rho"] = [round(float(x), 4) for x in res.rho]
    return {
        "scenario": name,
        "k": int(res.k),
        "seconds": dt,
        "iterations": int(res.core.optim.iterations),
        "woodbury_q": int(res.core.problem.q),
        "block_terms": [res.core.problem.terms[i].name for i in res.core.problem.block_terms],
        "largest_block": int(np.bincount(res.core.problem.block_labels).max()),
        "estimates": est,
        "truth": truth,
        "peak_rss_increase_mib": peak - base,
        "peak_reset": reset,
        "process_peak_rss_mib": peak,
        "target_s": TARGETS[name],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument(
        "--r-timeout",
        type=float,
        default=0.0,
        help="also fit each scenario with metafor (Rscript), stopping it after this many "
        "seconds (0: no metafor)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads of the workers (OPENBLAS/OMP/MKL_NUM_THREADS); default: "
        "the environment's",
    )
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.data_dir)))
        return 0
    import numpy as _np
    import scipy

    env = dict(os.environ)
    if a.threads:
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[v] = str(a.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Python {platform.python_version()}, numpy {_np.__version__}, scipy "
        f"{scipy.__version__}, {os.cpu_count()} cores, load average {load:.1f}, BLAS threads "
        f"{a.threads or 'default'}; SIMULATED data"
    )
    import tempfile

    tmp = tempfile.TemporaryDirectory()
    rows, bad = [], 0
    for name in a.only.split(","):
        try:
            r = subprocess.run(
                [sys.executable, __file__, "--worker", name]
                + (["--data-dir", tmp.name] if a.r_timeout > 0 else []),
                check=False,
                capture_output=True,
                text=True,
                timeout=a.timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            print(f"{name}: no result in {a.timeout:.0f} s")
            bad += 1
            continue
        if r.returncode:
            print(f"{name}: failed: {r.stderr.strip().splitlines()[-1:]}")
            bad += 1
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        rows.append(d)
        tgt = d["target_s"]
        verdict = "met" if tgt is not None and d["seconds"] <= tgt else "MISSED"
        ok = "" if tgt is None else f" (target <= {tgt:g} s: {verdict})"
        if tgt is not None and d["seconds"] > tgt:
            bad += 1
        print(
            f"{name}: k = {d['k']:,}, {d['seconds']:.2f} s{ok}, {d['iterations']} Newton "
            f"iterations, Woodbury q = {d['woodbury_q']}, largest block "
            f"{d['largest_block']} rows, peak RSS +{d['peak_rss_increase_mib']:.0f} MiB "
            f"(process {d['process_peak_rss_mib']:.0f} MiB); {d['estimates']} "
            f"(truth {d['truth']})"
        )
        if a.r_timeout > 0:
            d["metafor"] = _metafor(name, tmp.name, a.r_timeout)
            m = d["metafor"]
            if m.get("seconds") is not None:
                print(
                    f"    metafor: {m['seconds']:.1f} s ({m['seconds'] / d['seconds']:.0f}x "
                    f"mlmeta's time); sigma2 {m.get('sigma2')}"
                )
            else:
                print(f"    metafor: {m['note']}")
    tmp.cleanup()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if bad else 0


def _metafor(name: str, data_dir: str, timeout: float) -> dict:
    """metafor's time for scenario ``name`` (inside R, around rma.mv; None when it did not
    finish within ``timeout`` seconds or was not attempted)."""
    if name in R_SKIP:
        return {"seconds": None, "note": f"not attempted: {R_SKIP[name]}"}
    f = os.path.join(data_dir, f"{name}.csv")
    code = (
        f"suppressMessages(library(metafor)); d <- read.csv('{f}'); "
        f"fR <- '{os.path.join(data_dir, name + '_R.csv')}'; "
        f"t <- system.time({{{R_CODE[name.split('_')[0]]}}})[['elapsed']]; "
        "cat(t, r$sigma2, '\\n')"
    )
    try:
        p = subprocess.run(
            ["Rscript", "-e", code], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        return {"seconds": None, "note": "Rscript not found"}
    except subprocess.TimeoutExpired:
        return {"seconds": None, "note": f"no result within {timeout:.0f} s"}
    if p.returncode:
        return {"seconds": None, "note": "failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]}
    vals = [float(x) for x in p.stdout.split()]
    return {"seconds": vals[0], "sigma2": [round(x, 4) for x in vals[1:]]}


if __name__ == "__main__":
    sys.exit(main())
