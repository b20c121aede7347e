"""Time `mlmeta run` on the default example (the main job), section by section.

    .venv/bin/python benchmarks/bench_run.py [--repeat 3] [--limit 5] [--toml FILE]

Runs the command as a user would (a fresh process: interpreter start, imports, the whole
analysis, figures, writing the report folder) ``--repeat`` times, prints the wall-clock time of
each run, then the per-section times the report records in results.json (``timings``) for the
fastest run. Figures are drawn in worker processes in parallel with the remaining
computations, so their times overlap the sections above them; "figures (wait)" is how long the
main process waited for them. Exits with status 1 when the best wall time exceeds ``--limit``
seconds (the issue's target: 5 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mlmeta_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "mlmeta"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlmeta.cli"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--toml", default=str(ROOT / "examples" / "alliance_like.toml"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=float, default=5.0)
    a = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="mlmeta-bench-") as tmp:
        for i in range(a.repeat):
            out = Path(tmp) / f"run{i}"
            t0 = time.perf_counter()
            p = subprocess.run(
                mlmeta_cmd() + ["run", a.toml, "--out", str(out), "--quiet"],
                capture_output=True,
                text=True,
                cwd=tmp,
            )
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 2
            timings = json.loads((out / "results.json").read_text())["timings"]
            runs.append((wall, timings))
            print(f"run {i + 1}: {wall:.2f} s wall clock")
    wall, timings = min(runs, key=lambda r: r[0])
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmlmeta run {Path(a.toml).name}  ({cpus} CPUs, load average {load:.2f})")
    print("section times of the fastest run (s):")
    figs = {k: v for k, v in timings.items() if k.startswith("figure ")}
    for k, v in timings.items():
        if k in figs or k == "total":
            continue
        print(f"  {k:<28s}{v:7.3f}")
    if figs:
        print("  figures, each (drawn in parallel with the above):")
        for k, v in figs.items():
            print(f"    {k[len('figure ') :]:<26s}{v:7.3f}")
    startup = wall - timings.get("total", wall)
    print(f"  {'start-up and imports':<28s}{startup:7.3f}")
    print(f"  {'total in run_report':<28s}{timings.get('total', float('nan')):7.3f}")
    print(f"TOTAL wall clock (best of {len(runs)}): {wall:.2f} s  (limit {a.limit:g} s)")
    return 0 if wall <= a.limit else 1


if __name__ == "__main__":
    sys.exit(main())
