"""Small-study effects and publication bias with dependent effect sizes.

* Multilevel Egger test: the fitted model with sqrt(vi) added as a moderator (Egger et al.
  1997; Rodgers & Pustejovsky 2021 for its use with dependent effects); the test of the
  sqrt(vi) coefficient, model-based and with CR2 robust inference.
* PET and PEESE (Stanley & Doucouliagos 2014): the intercept of the model with sqrt(vi)
  (PET) or vi (PEESE) as moderator, i.e. the effect extrapolated to a study with SE = 0.
* Funnel-plot data: effect, SE and the pseudo-confidence region around the estimate.

References
----------
Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected
by a simple, graphical test. *BMJ, 315*, 629-634.
Rodgers, M. A., & Pustejovsky, J. E. (2021). Evaluating meta-analytic methods to detect
selective reporting in the presence of dependent effect sizes. *Psychological Methods, 26*,
141-160.
Stanley, T. D., & Doucouliagos, H. (2014). Meta-regression approximations to reduce
publication selection bias. *Research Synthesis Methods, 5*, 60-78.
Sterne, J. A. C., & Egger, M. (2001). Funnel plots for detecting bias in meta-analysis.
*Journal of Clinical Epidemiology, 54*, 1046-1055.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = ["EggerResult", "aggregated_bias", "egger", "funnel_data", "pet_peese"]


@dataclass(frozen=True)
class EggerResult:
    """Test of the small-study term: coefficient, SE, test statistic, df (None for z), p-value,
    and optionally the CR2 robust version (dict with se, stat, df, pval)."""

    coef: float
    se: float
    stat: float
    df: float | None
    pval: float
    robust: dict | None = None

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
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
    r"""Multilevel Egger regression test for funnel-plot asymmetry.

    The model of ``res`` (same random effects, method and inference) is refitted with the
    standard error added as a moderator,

    .. math:: y_{ij} = x_{ij}'\beta + \beta_{E} \sqrt{v_{ij}} + u + e_{ij},

    and :math:`H_0: \beta_E = 0` is tested (Egger et al. 1997, as a multilevel meta-regression:
    Rodgers & Pustejovsky 2021), with the model's own test (z or t) and, with ``robust=True``,
    also with the CR2 cluster-robust variance and Satterthwaite df (clubSandwich's
    ``coef_test``).

    Parameters
    ----------
    res : mlmeta.results.MetaResults
        Fitted model (with or without moderators).
    robust : bool
        Also the CR2 test (needs a random cluster level).

    Returns
    -------
    EggerResult
    """
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
    r"""PET and PEESE estimates of the effect of a study with standard error 0.

    PET: :math:`y = \beta_0 + \beta_1 \sqrt{v} + \dots`; PEESE: :math:`y = \beta_0 + \beta_1 v
    + \dots`, both fitted with the random effects and inference of ``res``; the intercept
    :math:`\beta_0` is the bias-adjusted effect (Stanley & Doucouliagos 2014). The usual
    conditional rule reports PEESE when PET's intercept is significant, else PET.

    Parameters
    ----------
    res : mlmeta.results.MetaResults
        Intercept-only fitted model.

    Returns
    -------
    pandas.DataFrame
        Rows ``PET``, ``PEESE``; columns estimate, se, ci_lb, ci_ub, pval (intercept), slope,
        slope_pval.
    """
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
    r"""Funnel-plot coordinates: :math:`y_i` (or the residual :math:`y_i - x_i'\hat\beta` for a
    moderator model) against :math:`\sqrt{v_i}` (Sterne & Egger 2001).

    Returns
    -------
    pandas.DataFrame
        Columns ``yi`` and ``sei``, indexed as the model's data.
    """
    y = res.data.y if res.intercept_only else res.data.y - res.data.X @ res.core.beta
    return pd.DataFrame({"yi": y, "sei": np.sqrt(res.data.v)}, index=res.data.frame.index)


def aggregated_bias(res, rho: float = 0.5, **kw) -> dict:
    """Rank test, trim-and-fill and the three-parameter selection model on study-aggregated
    effects: :func:`mlmeta.pubbias.aggregated.aggregated_bias`."""
    from mlmeta.pubbias.aggregated import aggregated_bias as _agg

    return _agg(res, rho=rho, **kw)
