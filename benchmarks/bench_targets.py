"""The speed targets of mlmeta, each measured as a user meets it, with metafor beside it.

    .venv/bin/python benchmarks/bench_targets.py              # everything (~5 min with R)
    .venv/bin/python benchmarks/bench_targets.py --no-r       # skip the metafor comparisons
    .venv/bin/python benchmarks/bench_targets.py --only cold,loo

Rows (whole-process times are wall clock of a fresh process, best of ``--repeats``):

* ``cold``: ``mlmeta fit`` on the 48-row bundled example (whole process) against
  ``Rscript`` loading metafor and running the same ``rma.mv`` (whole process).
* ``k4900``: the same with k = 4,900 simulated effect sizes (~980 studies); metafor with
  ``sparse = TRUE``.
* ``csv1e6``: ``mlmeta fit`` on a CSV of 10^6 effect sizes (~200,000 studies), whole process:
  time and peak resident memory.
* ``run``: ``mlmeta run examples/alliance_like.toml`` (the whole report), whole process.
* ``loo``: leave-one-study-out at k = 10^5 (~20,000 studies), in process.
* ``profile``: profile-likelihood CIs of both variance components at k = 10^5, in process.

Data are simulated by ``bench_fit.simulate`` (seeded; SIMULATED data, not real studies). The
machine's load is printed: on a busy 2-core machine timings carry large noise.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_fit  # noqa: E402

BIN = Path(sys.executable).parent
MLMETA = str(BIN / "mlmeta")
EXAMPLE = ROOT / "src" / "mlmeta" / "examples" / "data" / "alliance_like.csv"
TARGETS = {
    "cold": "<= 0.6 s and <= 0.5 x Rscript+metafor",
    "k4900": ">= 100 x faster than Rscript + rma.mv(sparse=TRUE)",
    "csv1e6": "<= 3 s and <= 1 GiB",
    "run": "<= 5 s",
    "loo": "<= 120 s",
    "profile": "<= 5 s",
}


def _wall(cmd: list[str], repeats: int, env=None) -> tuple[float, int]:
    """Best wall time of ``cmd`` over ``repeats`` runs and the peak RSS (KiB) of the children."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        best = min(best, time.perf_counter() - t)
    return best, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def _write_csv(k: int, path: Path) -> None:
    study, es, yi, vi = bench_fit.simulate(k)
    bench_fit.make_frame(study, es, yi, vi).to_csv(path, index=False)


def _r_cmd(csv: Path, sparse: bool, escalc: bool) -> list[str]:
    es = "d <- escalc('ZCOR', ri = ri, ni = ni, data = d); " if escalc else ""
    sp = ", sparse = TRUE" if sparse else ""
    code = (
        f"suppressMessages(library(metafor)); d <- read.csv('{csv}'); {es}"
        "r <- rma.mv(yi, vi, random = ~ 1 | study/es, data = d, test = 't', "
        f"dfs = 'contain'{sp}); print(coef(r))"
    )
    return ["Rscript", "-e", code]


def bench_cold(a) -> dict:
    t, _ = _wall(
        [
            MLMETA,
            "fit",
            str(EXAMPLE),
            "--measure",
            "ZCOR",
            "--ri",
            "ri",
            "--ni",
            "ni",
            "--random",
            "study/es",
            "--test",
            "t",
            "--dfs",
            "contain",
        ],
        a.repeats,
    )
    out = {"mlmeta_s": t}
    if a.r:
        out["metafor_s"], _ = _wall(_r_cmd(EXAMPLE, False, True), a.repeats)
        out["ratio"] = t / out["metafor_s"]
    out["pass"] = t <= 0.6 and ("ratio" not in out or out["ratio"] <= 0.5)
    return out


def bench_k4900(a, tmp: Path) -> dict:
    csv = tmp / "k4900.csv"
    _write_csv(4900, csv)
    t, _ = _wall(
        [
            MLMETA,
            "fit",
            str(csv),
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "study/es",
            "--test",
            "t",
            "--dfs",
            "contain",
        ],
        a.repeats,
    )
    out = {"mlmeta_s": t}
    if a.r:
        out["metafor_s"], _ = _wall(_r_cmd(csv, True, False), 1)
        out["speedup"] = out["metafor_s"] / t
        out["pass"] = out["speedup"] >= 100
    return out


def bench_csv1e6(a, tmp: Path) -> dict:
    csv = tmp / "k1e6.csv"
    _write_csv(10**6, csv)
    cmd = [
        MLMETA,
        "fit",
        str(csv),
        "--yi",
        "yi",
        "--vi",
        "vi",
        "--random",
        "study/es",
        "--test",
        "t",
        "--dfs",
        "contain",
    ]
    timev = shutil.which("time") or "/usr/bin/time"
    best, peak = float("inf"), 0
    for _ in range(a.repeats):
        t = time.perf_counter()
        p = subprocess.run(
            [timev, "-f", "%M", *cmd],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        best = min(best, time.perf_counter() - t)
        peak = max(peak, int(p.stderr.strip().splitlines()[-1]))
    return {
        "mlmeta_s": best,
        "peak_MiB": peak / 1024,
        "csv_MiB": csv.stat().st_size / 2**20,
        "pass": best <= 3.0 and peak <= 1024 * 1024,
    }


def bench_run(a, tmp: Path) -> dict:
    best = float("inf")
    for i in range(a.repeats):
        out_dir = tmp / f"run{i}"
        t = time.perf_counter()
        subprocess.run(
            [
                MLMETA,
                "run",
                str(ROOT / "examples" / "alliance_like.toml"),
                "--out",
                str(out_dir),
                "--quiet",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        best = min(best, time.perf_counter() - t)
    return {"mlmeta_s": best, "pass": best <= 5.0}


def _fit_1e5():
    import mlmeta

    study, es, yi, vi = bench_fit.simulate(10**5)
    df = bench_fit.make_frame(study, es, yi, vi)
    return mlmeta.rma_mv(df, "yi", "vi", random="study/es", test="t", dfs="contain")


def bench_loo(a, res) -> dict:
    t = time.perf_counter()
    tab = res.loo_cluster()
    t = time.perf_counter() - t
    return {"mlmeta_s": t, "clusters": len(tab), "pass": t <= 120}


def bench_profile(a, res) -> dict:
    t = time.perf_counter()
    res.profile_ci()
    t = time.perf_counter() - t
    return {"mlmeta_s": t, "pass": t <= 5.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(TARGETS), help="comma-separated rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-r", dest="r", action="store_false", help="skip metafor")
    a = ap.parse_args(argv)
    if a.r and not shutil.which("Rscript"):
        print("Rscript not found: metafor comparisons skipped")
        a.r = False
    rows = [x.strip() for x in a.only.split(",") if x.strip()]
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; Python "
        f"{sys.version.split()[0]}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        res = _fit_1e5() if {"loo", "profile"} & set(rows) else None
        for name in rows:
            fn = {
                "cold": lambda: bench_cold(a),
                "k4900": lambda: bench_k4900(a, tmp),
                "csv1e6": lambda: bench_csv1e6(a, tmp),
                "run": lambda: bench_run(a, tmp),
                "loo": lambda: bench_loo(a, res),
                "profile": lambda: bench_profile(a, res),
            }[name]
            results[name] = r = fn()
            shown = ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in r.items()
                if k != "pass"
            )
            verdict = {True: "PASS", False: "MISS", None: "-"}[r.get("pass")]
            print(f"{name:8s} {shown:70s} target {TARGETS[name]:45s} {verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
