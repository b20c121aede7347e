#!/usr/bin/env python
"""Scaling benchmark of the three-level REML fit in mlmeta.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_fit.py                       # k = 1e3, 1e4, 1e5, 1e6
    .venv/bin/python benchmarks/bench_fit.py --sizes 1e3,1e4 --quick
    .venv/bin/python benchmarks/bench_fit.py --json out.json        # also save raw numbers

What it does, per size k (each size runs in its own fresh Python subprocess):

* simulates three-level meta-analytic data with a fixed seed (``numpy.random.default_rng``):
  studies with 1-9 effect sizes each (uniform, mean 5), sample size per effect n ~ U{20..400},
  Fisher-z sampling variance vi = 1/(n - 3), and
  yi = mu + u_study + u_es + e with sigma2 = (0.05, 0.02), mu = 0.3;
* times the public API ``mlmeta.rma_mv(df, "yi", "vi", random="study/es", method="REML",
  test="t", dfs="contain")`` and the numerical core alone
  ``mlmeta.core.fit.fit_nested(y, v, X, [study, es], method="REML")`` (wall clock, best of a few
  repeats for small k, a single run for k >= 1e6);
* measures the peak memory of each fit in two ways:
    - RSS: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the fit minus before it. Before
      the fit the kernel's high-water mark is reset to the current RSS (``echo 5 >
      /proc/self/clear_refs``, Linux >= 4.0) so the increase is not hidden by an earlier peak
      (data simulation); where the reset is impossible this is stated in the output;
    - tracemalloc: peak of traced allocations during the fit (numpy reports its data buffers
      to tracemalloc), in a separate untimed run;
* records the Newton iterations (``res.core.optim.iterations``) and the estimates.

Hooks for later features (run at k = 1e4 and 1e5 by default, each in its own subprocess with a
time limit): robust CR2 ``res.robust(cluster="study", type="CR2")``, profile CIs
``res.profile_ci()`` and cluster leave-one-out ``res.loo_cluster()``. They are looked up with
``hasattr`` and reported as "not available" until they exist.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

# ----------------------------------------------------------------------------- constants
SEED = 20240607
MU = 0.3
SIGMA2 = (0.05, 0.02)  # (between studies, between effects within studies)
ES_PER_STUDY = (1, 9)  # uniform integer range, mean 5
N_RANGE = (20, 400)  # per-effect sample size, uniform integers, inclusive
DEFAULT_SIZES = (10**3, 10**4, 10**5, 10**6)
TARGET_K = 10**6
TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 1024**3  # 2 GiB
EXTRA_SIZES = (10**4, 10**5)

# Reported in the project brief for metafor::rma.mv (not measured here).
METAFOR_REPORTED = [
    ("k ~ 2,000, dense", "~160 s"),
    ("k ~ 4,900, sparse=TRUE", "~37 s"),
    ("k ~ 10,000", "does not finish in 200 s"),
]


# ----------------------------------------------------------------------------- simulation
def simulate(k: int, seed: int = SEED):
    """Three-level data with exactly ``k`` effect sizes; returns plain numpy arrays.

    study : study id 0..S-1 (rows grouped by study), es : effect id within study 1..n_s,
    yi, vi as described in the module docstring. The generator is seeded by (seed, k), so a
    given k always gives the same data whichever other sizes are run.
    """
    rng = np.random.default_rng([seed, k])
    lo, hi = ES_PER_STUDY
    n_draw = int(np.ceil(k / ((lo + hi) / 2) * 1.2)) + 10
    sizes = rng.integers(lo, hi + 1, n_draw)
    csum = np.cumsum(sizes)
    S = int(np.searchsorted(csum, k)) + 1  # studies needed to reach k
    sizes = sizes[:S].copy()
    sizes[-1] -= int(csum[S - 1] - k)  # trim the last study so the total is exactly k
    study = np.repeat(np.arange(S, dtype=np.int64), sizes)
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    es = np.arange(k, dtype=np.int64) - starts + 1
    n = rng.integers(N_RANGE[0], N_RANGE[1] + 1, k)
    vi = 1.0 / (n - 3.0)
    u_study = rng.normal(0.0, np.sqrt(SIGMA2[0]), S)
    u_es = rng.normal(0.0, np.sqrt(SIGMA2[1]), k)
    e = rng.normal(0.0, 1.0, k) * np.sqrt(vi)
    yi = MU + u_study[study] + u_es + e
    return study, es, yi, vi


def make_frame(study, es, yi, vi):
    import pandas as pd

    return pd.DataFrame({"study": study, "es": es, "yi": yi, "vi": vi})


# ----------------------------------------------------------------------------- memory helpers
def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)  # KiB on Linux, bytes on macOS


def _reset_peak() -> bool:
    """Reset the RSS high-water mark to the current RSS (Linux); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure(fn, repeats: int, trace: bool = True):
    """Run ``fn`` ``repeats`` times; best wall time, max peak-RSS increase, tracemalloc peak.

    Returns (result of the last run, dict of measurements).
    """
    times, rss_inc = [], []
    reset_ok = True
    out = None
    for _ in range(repeats):
        out = None
        gc.collect()
        reset_ok &= _reset_peak()
        before = _maxrss_bytes()
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        after = _maxrss_bytes()
        times.append(t1 - t0)
        rss_inc.append(after - before)
    m = {
        "time_best": min(times),
        "time_all": times,
        "rss_peak_increase": max(rss_inc),
        "rss_reset": reset_ok,
        "process_peak_rss": _maxrss_bytes(),
    }
    if trace:
        res_keep = out
        out = None
        gc.collect()
        tracemalloc.start()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        tmp = fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del tmp
        out = res_keep
        m["tracemalloc_peak"] = peak - base
    return out, m


# ----------------------------------------------------------------------------- workers
def _warmup():
    """Import everything and run a tiny fit so lazy imports are not timed."""
    import mlmeta
    from mlmeta.core.fit import fit_nested

    study, es, yi, vi = simulate(200, seed=1)
    mlmeta.rma_mv(
        make_frame(study, es, yi, vi),
        "yi",
        "vi",
        random="study/es",
        method="REML",
        test="t",
        dfs="contain",
    )
    fit_nested(yi, vi, np.ones((len(yi), 1)), [study, es], method="REML")


def worker_fit(k: int, repeats: int, trace: bool) -> dict:
    import mlmeta
    from mlmeta.core.fit import fit_nested

    _warmup()
    t0 = time.perf_counter()
    study, es, yi, vi = simulate(k)
    t_sim = time.perf_counter() - t0
    df = make_frame(study, es, yi, vi)
    X = np.ones((k, 1))
    out = {
        "k": k,
        "n_studies": int(study[-1]) + 1,
        "simulate_s": t_sim,
        "rss_before_fits": _current_rss_bytes(),
    }

    def api():
        return mlmeta.rma_mv(
            df, "yi", "vi", random="study/es", method="REML", test="t", dfs="contain"
        )

    def core():
        return fit_nested(yi, vi, X, [study, es], method="REML")

    res, m_api = measure(api, repeats, trace)
    out["api"] = m_api
    out["api"].update(
        {
            "iterations": int(res.core.optim.iterations),
            "converged": bool(res.core.optim.converged),
            "optimizer": str(res.core.optim.method),
            "mu": float(res.beta.iloc[0]),
            "se": float(res.se.iloc[0]),
            "sigma2": [float(s) for s in res.sigma2],
            "n_levels": [int(n) for n in res.n_levels],
            "df": None if res.df is None else float(np.asarray(res.df).ravel()[0]),
        }
    )
    del res
    cf, m_core = measure(core, repeats, trace)
    out["core"] = m_core
    out["core"].update(
        {
            "iterations": int(cf.optim.iterations),
            "mu": float(cf.beta[0]),
            "sigma2": [float(s) for s in cf.sigma2],
        }
    )
    return out


# Hooks for features that may not exist yet. Each returns a short description of what was run.
def _extra_robust(res):
    return res.robust(cluster="study", type="CR2")


def _extra_profile(res):
    return res.profile_ci()


def _extra_loo(res):
    return res.loo_cluster()


LOO_SAMPLE_ABOVE = 5000  # clusters; above this the leave-one-out time is extrapolated
LOO_SAMPLE = 200

EXTRAS = {
    # name: (method looked up with hasattr, call, label)
    "robust_cr2": ("robust", _extra_robust, 'res.robust(cluster="study", type="CR2")'),
    "profile_ci": ("profile_ci", _extra_profile, "res.profile_ci()"),
    "loo_cluster": ("loo_cluster", _extra_loo, "res.loo_cluster()"),
}


def worker_extra(name: str, k: int) -> dict:
    import mlmeta

    attr, call, label = EXTRAS[name]
    study, es, yi, vi = simulate(k)
    df = make_frame(study, es, yi, vi)
    res = mlmeta.rma_mv(df, "yi", "vi", random="study/es", method="REML", test="t", dfs="contain")
    out = {"name": name, "k": k, "call": label}
    if not hasattr(res, attr):
        out["status"] = "not available"
        return out
    # warm-up on small data so imports are not timed
    try:
        s2, e2, y2, v2 = simulate(200, seed=1)
        small = mlmeta.rma_mv(
            make_frame(s2, e2, y2, v2),
            "yi",
            "vi",
            random="study/es",
            method="REML",
            test="t",
            dfs="contain",
        )
        call(small)
    except Exception:  # noqa: BLE001 - the timed call below reports the error
        pass
    n_clusters = int(res.n_levels[0])
    if name == "loo_cluster" and n_clusters > LOO_SAMPLE_ABOVE:
        # one refit per cluster, each O(k): time a sample of refits and extrapolate
        from itertools import islice

        from mlmeta.analyses.influence import _refits

        n = LOO_SAMPLE
        t0 = time.perf_counter()
        done = sum(1 for _ in islice(_refits(res, None), n))
        per = (time.perf_counter() - t0) / done
        out["status"] = "ok"
        out["call"] = f"{label} (first {done} of {n_clusters} refits timed, extrapolated)"
        out["seconds"] = per * n_clusters
        out["extrapolated"] = True
        out["per_refit_s"] = per
        return out
    try:
        _, m = measure(lambda: call(res), 1, trace=False)
        out["status"] = "ok"
        out.update(m)
    except Exception as exc:  # noqa: BLE001
        out["status"] = f"error: {type(exc).__name__}: {exc}"
    return out


# ----------------------------------------------------------------------------- driver
def _run_worker(args: list[str], timeout: float | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return {"status": f"failed (exit {p.returncode}): {' | '.join(tail)}"}
    for line in reversed(p.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"status": "failed: no result on stdout"}


def _parse_sizes(s: str) -> list[int]:
    return [int(float(x)) for x in s.split(",") if x.strip()]


def fmt_k(k: int) -> str:
    e = np.log10(k)
    return f"1e{int(round(e))}" if abs(e - round(e)) < 1e-9 else f"{k:,}"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "-"
    if b >= 1024**3:
        return f"{b / 1024**3:.2f} GiB"
    return f"{b / 1024**2:.1f} MiB"


def fmt_s(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def machine_info() -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    import numpy
    import pandas
    import scipy

    try:
        import mlmeta

        mv = mlmeta.__version__
    except Exception:  # noqa: BLE001
        mv = "?"
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
        "mlmeta": mv,
    }


def print_report(results: list[dict], extras: list[dict], info: dict) -> None:
    print()
    print(f"mlmeta {info['mlmeta']} scaling benchmark - {info['date']}")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {fmt_bytes(info['memory'])} RAM, "
        f"{info['os']}; Python {info['python']}, numpy {info['numpy']}, "
        f"scipy {info['scipy']}, pandas {info['pandas']}"
    )
    print(f"truth: mu = {MU}, sigma2 = {SIGMA2}; seed {SEED}")
    ok = [r for r in results if "api" in r]
    bad = [r for r in results if "api" not in r]
    for r in bad:
        print(f"k = {r.get('k')}: {r.get('status')}")
    if not ok:
        return
    reset = all(r["api"]["rss_reset"] and r["core"]["rss_reset"] for r in ok)
    print()
    hdr = (
        "| k | studies | runs | rma_mv time | fit_nested time | rma_mv peak RSS + "
        "| fit_nested peak RSS + | rma_mv tracemalloc peak | process peak RSS | Newton it. "
        "| mu (se) | sigma2 study | sigma2 es |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in ok:
        a, c = r["api"], r["core"]
        print(
            f"| {fmt_k(r['k'])} | {r['n_studies']:,} | {len(a['time_all'])} "
            f"| {fmt_s(a['time_best'])} | {fmt_s(c['time_best'])} "
            f"| {fmt_bytes(a['rss_peak_increase'])} | {fmt_bytes(c['rss_peak_increase'])} "
            f"| {fmt_bytes(a.get('tracemalloc_peak'))} | {fmt_bytes(a['process_peak_rss'])} "
            f"| {a['iterations']} | {a['mu']:.4f} ({a['se']:.4f}) "
            f"| {a['sigma2'][0]:.4f} | {a['sigma2'][1]:.4f} |"
        )
    print()
    print(
        "peak RSS + : ru_maxrss after the fit minus before it, "
        + (
            "with the high-water mark reset to the current RSS just before the fit "
            "(/proc/self/clear_refs)"
            if reset
            else "WITHOUT a high-water-mark reset (not supported here): an increase may be "
            "hidden by the earlier peak of the data simulation"
        )
        + "; tracemalloc peak: traced Python + numpy allocations during a separate run; "
        "process peak RSS: whole worker process (interpreter, data, fits)."
    )
    agree = all(
        abs(r["api"]["mu"] - r["core"]["mu"]) <= 1e-10 * max(1, abs(r["core"]["mu"]))
        and np.allclose(r["api"]["sigma2"], r["core"]["sigma2"], rtol=1e-10, atol=0)
        for r in ok
    )
    print(
        f"rma_mv and fit_nested give identical estimates: {'yes' if agree else 'NO'}; "
        f"Newton iterations (fit_nested): {[r['core']['iterations'] for r in ok]}"
    )

    # recovery of the truth
    print()
    print("recovery of the truth (z = (mu_hat - mu) / se):")
    for r in ok:
        a = r["api"]
        z = (a["mu"] - MU) / a["se"]
        print(
            f"  k = {fmt_k(r['k'])}: mu_hat = {a['mu']:.4f} (z = {z:+.2f}), "
            f"sigma2 = ({a['sigma2'][0]:.4f}, {a['sigma2'][1]:.4f}) vs {SIGMA2}, "
            f"contain df = {a['df']:.0f}, converged = {a['converged']}"
        )

    # scaling
    if len(ok) > 1:
        print()
        print("scaling (time ratio per 10x k; 10 = linear):")
        for r0, r1 in zip(ok, ok[1:]):
            f = r1["k"] / r0["k"]
            ra = r1["api"]["time_best"] / r0["api"]["time_best"]
            rc = r1["core"]["time_best"] / r0["core"]["time_best"]
            per10a = ra ** (1 / np.log10(f)) if f > 1 else float("nan")
            per10c = rc ** (1 / np.log10(f)) if f > 1 else float("nan")
            print(
                f"  {fmt_k(r0['k'])} -> {fmt_k(r1['k'])}: rma_mv x{per10a:.1f}, "
                f"fit_nested x{per10c:.1f}"
            )
        print(
            "  time per effect size: "
            + ", ".join(
                f"{fmt_k(r['k'])}: {r['api']['time_best'] / r['k'] * 1e6:.2f} us (rma_mv) / "
                f"{r['core']['time_best'] / r['k'] * 1e6:.2f} us (fit_nested)"
                for r in ok
            )
        )

    # target
    print()
    tgt = [r for r in ok if r["k"] == TARGET_K]
    if tgt:
        a = tgt[0]["api"]
        t_ok = a["time_best"] < TARGET_SECONDS
        m_ok = a["rss_peak_increase"] < TARGET_BYTES
        p_ok = a["process_peak_rss"] < TARGET_BYTES
        print(
            f"target k = 1e6 in < {TARGET_SECONDS:.0f} s and < 2 GiB (rma_mv): "
            f"time {fmt_s(a['time_best'])} {'PASS' if t_ok else 'FAIL'}, "
            f"fit peak RSS increase {fmt_bytes(a['rss_peak_increase'])} "
            f"{'PASS' if m_ok else 'FAIL'} (whole process peak "
            f"{fmt_bytes(a['process_peak_rss'])} {'PASS' if p_ok else 'FAIL'}) "
            f"=> {'PASS' if (t_ok and m_ok) else 'FAIL'}"
        )
    else:
        print("target k = 1e6 in < 10 s and < 2 GiB: not run (k = 1e6 not in --sizes)")

    print()
    print("for context, metafor::rma.mv as reported in the project brief (NOT measured here):")
    for what, t in METAFOR_REPORTED:
        print(f"  {what}: {t}")

    if extras:
        print()
        print("later features (hooks):")
        for e in extras:
            st = e.get("status", "?")
            if st == "ok" and e.get("extrapolated"):
                print(
                    f"  k = {fmt_k(e['k'])}: {e['call']}: ~{fmt_s(e['seconds'])} "
                    f"({fmt_s(e['per_refit_s'])} per refit)"
                )
            elif st == "ok":
                print(
                    f"  k = {fmt_k(e['k'])}: {e['call']}: {fmt_s(e['time_best'])}, "
                    f"peak RSS + {fmt_bytes(e['rss_peak_increase'])}"
                )
            else:
                print(f"  k = {fmt_k(e['k'])}: {e['call']}: {st}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="comma-separated k values, e.g. 1e3,1e4,1e5,1e6 (default: all four; "
        "with --quick 1e3,1e4,1e5)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one run per size, no tracemalloc run, hooks only at k = 1e4, and "
        "sizes up to 1e5 unless --sizes is given",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs per size (default: 7 / 5 / 3 / 1 for k <= 1e3 / 1e4 / 1e5 / more)",
    )
    ap.add_argument("--no-extras", action="store_true", help="skip the robust/profile/LOO hooks")
    ap.add_argument(
        "--extra-timeout",
        type=float,
        default=900.0,
        help="time limit in seconds for each hook subprocess (default 900)",
    )
    ap.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    # internal: worker modes
    ap.add_argument("--_worker", choices=["fit", "extra"], help=argparse.SUPPRESS)
    ap.add_argument("--_k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_name", help=argparse.SUPPRESS)
    ap.add_argument("--_notrace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker == "fit":
        reps = args.repeats or 1
        print(json.dumps(worker_fit(args._k, reps, trace=not args._notrace)))
        return 0
    if args._worker == "extra":
        print(json.dumps(worker_extra(args._name, args._k)))
        return 0

    sizes = args.sizes or ([10**3, 10**4, 10**5] if args.quick else list(DEFAULT_SIZES))
    info = machine_info()
    results = []
    for k in sizes:
        reps = args.repeats or (
            1 if args.quick else 7 if k <= 10**3 else 5 if k <= 10**4 else 3 if k <= 10**5 else 1
        )
        wargs = ["--_worker", "fit", "--_k", str(k), "--repeats", str(reps)]
        if args.quick:
            wargs.append("--_notrace")
        print(f"k = {fmt_k(k)}: {reps} run(s) in a fresh subprocess ...", flush=True)
        r = _run_worker(wargs, timeout=None)
        r.setdefault("k", k)
        if "api" in r:
            print(
                f"  rma_mv {fmt_s(r['api']['time_best'])}, "
                f"fit_nested {fmt_s(r['core']['time_best'])}, "
                f"peak RSS + {fmt_bytes(r['api']['rss_peak_increase'])}",
                flush=True,
            )
        else:
            print(f"  {r.get('status')}", flush=True)
        results.append(r)

    extras = []
    if not args.no_extras:
        ek = [10**4] if args.quick else list(EXTRA_SIZES)
        for k in ek:
            for name in EXTRAS:
                print(f"hook {name} at k = {fmt_k(k)} ...", flush=True)
                e = _run_worker(
                    ["--_worker", "extra", "--_name", name, "--_k", str(k)],
                    timeout=args.extra_timeout,
                )
                e.setdefault("k", k)
                e.setdefault("call", EXTRAS[name][2])
                e.setdefault("name", name)
                extras.append(e)

    print_report(results, extras, info)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results, "extras": extras}, f, indent=1)
    tgt = [r for r in results if r.get("k") == TARGET_K and "api" in r]
    if tgt and not (
        tgt[0]["api"]["time_best"] < TARGET_SECONDS
        and tgt[0]["api"]["rss_peak_increase"] < TARGET_BYTES
    ):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
