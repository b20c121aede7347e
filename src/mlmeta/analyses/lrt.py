"""Likelihood-ratio tests: each variance component against 0, and model comparison.

``lrt_drop`` refits with one sigma2 fixed at 0 and compares (metafor's ``anova(full, reduced)``):
LRT = 2 (ll_full - ll_reduced) with the plain chi2(1) p-value, which is what metafor prints, and
the boundary-corrected p-value of the 50:50 mixture of chi2(0) and chi2(1) (Self & Liang 1987;
Stram & Lee 1994), which is the correct reference distribution for a variance tested at 0.

``anova`` compares two nested fits (LRT, AIC, BIC, AICc). REML likelihoods are only comparable
when the fixed effects are the same; when they differ both models are refitted by ML, and the
result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.core.dist import chi2_sf
from mlmeta.errors import InputError

__all__ = ["Anova", "LRTDrop", "anova", "lrt_drop"]


@dataclass(frozen=True)
class LRTDrop:
    table: pd.DataFrame

    def to_list(self) -> list[dict]:
        out = []
        for r in self.table.to_dict(orient="records"):
            out.append(
                {
                    "dropped": r["dropped"],
                    "LRT": float(r["LRT"]),
                    "df": int(r["df"]),
                    "pval": float(r["pval"]),
                    "pval_mixture": float(r["pval_mixture"]),
                    "sigma2_reduced": [float(x) for x in r["sigma2_reduced"]],
                    "logLik_reduced": float(r["logLik_reduced"]),
                    "AIC_reduced": float(r["AIC_reduced"]),
                    "BIC_reduced": float(r["BIC_reduced"]),
                }
            )
        return out


def lrt_drop(res) -> LRTDrop:
    """Test each estimated variance component against 0 by refitting without it."""
    if not res.data.random:
        raise InputError("the equal-effects model has no variance component to test")
    rows = []
    for j, col in enumerate(res.data.random):
        if res.core.fixed[j]:
            continue
        fx = [float(s) if f else None for s, f in zip(res.core.sigma2, res.core.fixed)]
        fx[j] = 0.0
        red = res.refit(sigma2=fx)
        lrt = max(2.0 * (res.core.ll - red.core.ll), 0.0)
        p = float(chi2_sf(lrt, 1))
        rows.append(
            {
                "dropped": col,
                "level": res.level_names[j],
                "LRT": lrt,
                "df": 1,
                "pval": p,
                "pval_mixture": 0.5 * p if lrt > 0 else 1.0,
                "sigma2_reduced": red.core.sigma2.copy(),
                "logLik_reduced": red.core.ll,
                "AIC_reduced": red.fitstats["AIC"],
                "BIC_reduced": red.fitstats["BIC"],
            }
        )
    return LRTDrop(pd.DataFrame(rows))


@dataclass(frozen=True)
class Anova:
    table: pd.DataFrame
    LRT: float
    df: int
    pval: float
    refitted_ml: bool
    note: str

    def __str__(self) -> str:
        return (
            self.table.to_string() + f"\nLRT = {self.LRT:.4f}, df = {self.df}, "
            f"p = {self.pval:.4g}" + (f"\n{self.note}" if self.note else "")
        )


def anova(full, reduced=None, *, btt=None, X=None, rhs=None, vcov: str = "model", cluster=None):
    """Likelihood-ratio comparison of two nested models fitted to the same rows; with one model,
    a Wald test of its coefficients as metafor's ``anova(fit, btt = )`` / ``anova(fit, X = )``
    (see :func:`mlmeta.analyses.wald.wald`; ``vcov="CR2"`` for clubSandwich's HTZ test).
    """
    if reduced is None:
        from mlmeta.analyses.wald import wald

        return wald(full, btt=btt, X=X, rhs=rhs, vcov=vcov, cluster=cluster)
    if btt is not None or X is not None:
        raise InputError("btt= and X= test the coefficients of one model; give one model")
    if full.k != reduced.k or not np.allclose(full.data.y, reduced.data.y):
        raise InputError("the two models must be fitted to the same effect sizes")
    note = ""
    refitted = False
    same_fixed = full.coef_names == reduced.coef_names and np.allclose(full.data.X, reduced.data.X)
    if not same_fixed and (full.method == "REML" or reduced.method == "REML"):
        full = full.refit(method="ML", warm=False)
        reduced = reduced.refit(method="ML", warm=False)
        refitted = True
        note = (
            "The models differ in their fixed effects, so both were refitted by ML: "
            "REML likelihoods of different fixed effects are not comparable."
        )
    par_f = full.p + int(np.sum(~full.core.fixed))
    par_r = reduced.p + int(np.sum(~reduced.core.fixed))
    if par_f < par_r:
        full, reduced, par_f, par_r = reduced, full, par_r, par_f
    df = par_f - par_r
    lrt = max(2.0 * (full.core.ll - reduced.core.ll), 0.0)
    p = float(chi2_sf(lrt, df)) if df > 0 else float("nan")
    tab = pd.DataFrame(
        {
            "df": [par_f, par_r],
            "AIC": [full.fitstats["AIC"], reduced.fitstats["AIC"]],
            "BIC": [full.fitstats["BIC"], reduced.fitstats["BIC"]],
            "AICc": [full.fitstats["AICc"], reduced.fitstats["AICc"]],
            "logLik": [full.core.ll, reduced.core.ll],
            "LRT": [np.nan, lrt],
            "pval": [np.nan, p],
        },
        index=["Full", "Reduced"],
    )
    return Anova(tab, lrt, df, p, refitted, note)
