"""Cluster-robust inference for a fitted model: CR2 (clubSandwich) and CR1 (metafor).

Builds the per-cluster blocks of the fitted marginal covariance and hands them to
:mod:`mlmeta.core.robust`. CR2 with Satterthwaite df and the HTZ Wald test reproduces
``metafor::robust(fit, cluster, clubSandwich = TRUE)``; CR1 reproduces
``robust(fit, cluster, adjust = TRUE)`` (df = number of clusters - p).
References: Pustejovsky & Tipton (2018); Tipton & Pustejovsky (2015); Hedges, Tipton & Johnson
(2010).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.core.robust import check_cluster_sizes, robust_test
from mlmeta.errors import FitWarning, InputError

__all__ = ["robust", "RobustResults"]

TYPES = ("CR2", "CR1")


@dataclass(frozen=True)
class RobustResults:
    type: str
    cluster: str
    n_clusters: int
    coefs: pd.DataFrame
    vcov: pd.DataFrame
    QM: float
    QM_df: tuple
    QMp: float

    def to_dict(self) -> dict:
        c = self.coefs
        return {
            "se": c["se"].tolist(),
            "stat": c["tval"].tolist(),
            "df": c["df"].tolist(),
            "pval": c["pval"].tolist(),
            "ci_lb": c["ci_lb"].tolist(),
            "ci_ub": c["ci_ub"].tolist(),
            "vcov": self.vcov.to_numpy().tolist(),
            "QM": self.QM,
            "QM_df": list(self.QM_df),
            "QMp": self.QMp,
            "n_clusters": self.n_clusters,
        }


def robust(res, cluster: str | None = None, type: str = "CR2", btt=None) -> RobustResults:
    """Cluster-robust tests of ``res``'s coefficients (default cluster: the outer level).

    ``btt`` selects the coefficients of the Wald test (names or 0-based positions; default: all
    but the intercept): with CR2 the HTZ test of clubSandwich's ``Wald_test``.
    """
    t = str(type).upper()
    if t not in TYPES:
        raise InputError(f"type must be one of {', '.join(TYPES)}; got {type!r}")
    codes, labels = res.cluster_codes(cluster)
    n = len(labels)
    if n <= res.p:
        raise InputError(
            f"robust inference needs more clusters than coefficients: {n} "
            f"clusters for {res.p} coefficients"
        )
    check_cluster_sizes(np.bincount(codes, minlength=n), labels)  # before any dense block
    blocks = res.marginal_blocks(codes)
    V = [None] * n
    for c, (_rows, Vc) in enumerate(blocks):
        # blocks come in code order; core.robust wants each block in data row order
        V[c] = Vc
    X = res.data.X
    resid = res.data.y - X @ res.core.beta
    scale = float(np.max(np.abs(res.data.y))) if res.k else 0.0
    if np.max(np.abs(resid), initial=0.0) <= 1e-12 * max(scale, np.sqrt(np.min(res.data.v))):
        # the sandwich would be rounding noise: t = 1e16, p < .001 for identical effects
        raise InputError(
            "every residual is 0 (the model fits the effect sizes exactly, e.g. "
            "they are all equal), so the cluster-robust variance is undefined"
        )
    if btt is None:
        sel = res.btt
    else:
        names = list(res.coef_names)
        sel = []
        for b in [btt] if isinstance(btt, (str, int)) else btt:
            if isinstance(b, str):
                if b not in names:
                    raise InputError(f"btt: {b!r} is not a coefficient ({', '.join(names)})")
                sel.append(names.index(b))
            else:
                if not 0 <= int(b) < len(names):
                    raise InputError(f"btt: position {b} is out of range 0..{len(names) - 1}")
                sel.append(int(b))
        sel = np.array(sorted(set(sel)), dtype=int)
    out = robust_test(
        X,
        res.core.beta,
        resid,
        codes,
        V,
        bread=res.core.vcov,
        btt=sel,
        type="CR2" if t == "CR2" else "CR1",
        level=res.level,
    )
    names = list(res.coef_names)
    coefs = pd.DataFrame(
        {
            "estimate": res.core.beta,
            "se": out["se"],
            "tval": out["stat"],
            "df": out["df"],
            "pval": out["pval"],
            "ci_lb": out["ci_lb"],
            "ci_ub": out["ci_ub"],
        },
        index=names,
    )
    if t == "CR2" and np.any(np.asarray(out["df"]) < 4):
        warnings.warn(
            "few clusters for robust inference: a Satterthwaite df is below 4, so "
            "CR2 tests are unreliable for that coefficient",
            FitWarning,
            stacklevel=2,
        )
    name = cluster or (res.data.random[0] if res.data.random else "")
    return RobustResults(
        t,
        name,
        n,
        coefs,
        pd.DataFrame(out["vcov"], index=names, columns=names),
        float(out["QM"]),
        tuple(out["QM_df"]),
        float(out["QMp"]),
    )
