"""Small-study effects and publication bias with dependent effect sizes.

* Multilevel Egger test: the fitted model with sqrt(vi) added as a moderator (Egger et al.
  1997; Rodgers & Pustejovsky 2021 for its use with dependent effects); the test of the
  sqrt(vi) coefficient, model-based and with CR2 robust inference.
* PET and PEESE (Stanley & Doucouliagos 2014): the intercept of the model with sqrt(vi)
  (PET) or vi (PEESE) as moderator, i.e. the effect extrapolated to a study with SE = 0.
* Funnel-plot data: effect, SE and the pseudo-confidence region around the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = ["egger", "pet_peese", "funnel_data", "aggregated_bias", "EggerResult"]


@dataclass(frozen=True)
class EggerResult:
    coef: float
    se: float
    stat: float
    df: float | None
    pval: float
    robust: dict | None = None

    def to_dict(self) -> dict:
        d = {"coef": self.coef, "se": self.se, "stat": self.stat,
             "df": None if self.df is None else _int(self.df), "pval": self.pval}
        if self.robust is not None:
            d["robust"] = self.robust
        return d


def _int(x):
    x = float(x)
    return int(x) if x.is_integer() else x


def _with_moderator(res, values: np.ndarray, name: str):
    X = np.column_stack([res.data.X, values])
    return res.refit(design=(X, list(res.coef_names) + [name]))


def egger(res, robust: bool = False) -> EggerResult:
    """Egger-type regression test: coefficient of sqrt(vi) added to ``res``'s moderators."""
    if "sqrt(vi)" in res.coef_names:
        raise InputError("the model already has sqrt(vi) as a moderator")
    fit = _with_moderator(res, np.sqrt(res.data.v), "sqrt(vi)")
    j = fit.p - 1
    t = fit.tests
    rob = None
    if robust:
        if not res.data.random:
            raise InputError("robust Egger test needs a cluster level (random effects)")
        from dataclasses import replace
        fit_r = replace(fit, btt=np.array([j]))
        rb = fit_r.robust(type="CR2")
        rob = {"se": float(rb.coefs["se"].iloc[j]), "stat": float(rb.coefs["tval"].iloc[j]),
               "df": float(rb.coefs["df"].iloc[j]), "pval": float(rb.coefs["pval"].iloc[j])}
    return EggerResult(float(fit.core.beta[j]), float(t.se[j]), float(t.stat[j]),
                       None if t.df is None else float(t.df[j]), float(t.pval[j]), rob)


def pet_peese(res) -> pd.DataFrame:
    """PET (sqrt(vi) moderator) and PEESE (vi moderator) intercepts with CIs (intercept-only)."""
    if not res.intercept_only:
        raise InputError("PET-PEESE is defined for the intercept-only model")
    rows = {}
    for name, vals in (("PET", np.sqrt(res.data.v)), ("PEESE", res.data.v)):
        f = _with_moderator(res, vals, "sqrt(vi)" if name == "PET" else "vi")
        t = f.tests
        rows[name] = {"estimate": float(f.core.beta[0]), "se": float(t.se[0]),
                      "ci_lb": float(t.ci_lb[0]), "ci_ub": float(t.ci_ub[0]),
                      "pval": float(t.pval[0]), "slope": float(f.core.beta[1]),
                      "slope_pval": float(t.pval[1])}
    return pd.DataFrame(rows).T


def funnel_data(res) -> pd.DataFrame:
    """Effect sizes (or residuals for moderator models) against their standard errors."""
    y = res.data.y if res.intercept_only else res.data.y - res.data.X @ res.core.beta
    return pd.DataFrame({"yi": y, "sei": np.sqrt(res.data.v)}, index=res.data.frame.index)


def aggregated_bias(res, rho: float = 0.5, **kw) -> dict:
    """Rank test, trim-and-fill and the three-parameter selection model on study-aggregated
    effects (see :func:`mlmeta.pubbias.aggregated_bias`)."""
    from mlmeta.pubbias.aggregated import aggregated_bias as _agg

    return _agg(res, rho=rho, **kw)
