"""Generate the SIMULATED example data set src/mlmeta/examples/data/alliance_like.csv.

    .venv/bin/python scripts/make_alliance_like.py [--check]

The data are SIMULATED. They are shaped like the design of Iovoli et al. (2024; 27 studies,
48 correlations between patients' interpersonal problems and the therapeutic alliance, about
6,300 patients) because the real per-study data are not public, and they are generated to tell
that paper's story so the bundled report shows a moderator that matters: the association is
negative and stronger when the alliance is measured early in therapy than late. They are NOT
the published results and must never be cited as findings.

Model (Fisher z scale), for effect size j of study i:

    z_ij = -0.19 + 0.13 * [phase_ij = late] + u_i + w_ij + e_ij,
    u_i ~ N(0, 0.05^2) (between studies), w_ij ~ N(0, 0.035^2) (within studies),
    e_ij ~ N(0, 1 / (n_i - 3)) (sampling error),

so r is about -.19 early and -.06 late; rater, measure and treatment have no effect. The study
design (effect sizes per study, sample sizes, phase, rater, measure, treatment) is drawn once
from a seeded generator; r is rounded to 3 decimals as in a published table, and yi = atanh(r),
vi = 1 / (n - 3) are metafor's escalc("ZCOR") values. The seed is fixed, so the file is
reproducible byte for byte; ``--check`` verifies the bundled file instead of writing it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "mlmeta" / "examples" / "data" / "alliance_like.csv"
SEED = 20240611
SIZES = [1] * 13 + [2] * 9 + [3] * 3 + [4] * 2  # effect sizes per study: 27 studies, 48 ES
BETA0, BETA_LATE = -0.19, 0.13
SD_STUDY, SD_ES = 0.05, 0.035


def generate(seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.permutation(SIZES)
    rows = []
    es = 0
    for i, m in enumerate(sizes, start=1):
        n = int(np.clip(np.round(rng.lognormal(np.log(205), 0.5)), 45, 560))
        treatment = rng.choice(
            ["integrative", "other", "psychodynamic", "CBT"], p=[0.35, 0.27, 0.19, 0.19]
        )
        u = rng.normal(0, SD_STUDY)
        # studies with several correlations usually measure the alliance both early and late
        phases = (
            rng.permutation(["early", "late"] * 2)[:m] if m > 1 else [rng.choice(["early", "late"])]
        )
        for phase in phases:
            es += 1
            rater = rng.choice(["patient", "therapist", "observer"], p=[0.42, 0.37, 0.21])
            measure = rng.choice(["WAI", "CALPAS", "HAq", "other"], p=[0.35, 0.25, 0.23, 0.17])
            z = (
                BETA0
                + BETA_LATE * (phase == "late")
                + u
                + rng.normal(0, SD_ES)
                + rng.normal(0, 1 / np.sqrt(n - 3))
            )
            r = float(np.round(np.tanh(z), 3))
            rows.append(
                {
                    "study": i,
                    "es": es,
                    "ni": n,
                    "ri": r,
                    "phase": phase,
                    "rater": rater,
                    "measure": measure,
                    "treatment": treatment,
                    "yi": float(np.arctanh(r)),
                    "vi": 1.0 / (n - 3),
                }
            )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the bundled file")
    a = ap.parse_args(argv)
    text = generate().to_csv(index=False, float_format="%.17g", lineterminator="\n")
    if a.check:
        same = OUT.read_text(encoding="utf-8") == text
        print("alliance_like.csv is up to date" if same else "alliance_like.csv differs")
        return 0 if same else 1
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} (SIMULATED data)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
