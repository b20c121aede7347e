"""Small-study effects and publication bias with dependent effect sizes.

* Multilevel Egger test: the fitted model with sqrt(vi) added as a moderator (Egger et al.
  1997; Rodgers & Pustejovsky 2021 for its use with dependent effects); the test of the
  sqrt(vi) coefficient, model-based and with CR2 robust inference.
* PET and PEESE (Stanley & Doucouliagos 2014): the intercept of the model with sqrt(vi)
  (PET) or vi (PEESE) as moderator, i.e. the effect extrapolated to a study with SE = 0.
* Both with the sample-size predictor sqrt(1/n~) (and 1/n~ for PEESE) instead of the standard
  error, n~ = n1 n2 / (n1 + n2) for two-group designs or the total n: for standardized mean
  differences and log odds ratios the standard error depends on the estimate, which inflates
  the false-positive rate of the SE-based test (Pustejovsky & Rodgers 2019).
* Funnel-plot data: effect, SE and the pseudo-confidence region around the estimate.

References
----------
Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected
by a simple, graphical test. *BMJ, 315*, 629-634.
Pustejovsky, J. E., & Rodgers, M. A. (2019). Testing for funnel plot asymmetry of standardized
mean differences. *Research Synthesis Methods, 10*, 57-71.
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

__all__ = [
    "PREDICTORS",
    "EggerResult",
    "aggregated_bias",
    "effective_n",
    "egger",
    "funnel_data",
    "pet_peese",
]

#: predictors of the small-study regression: the standard error, or sqrt(1/n~)
PREDICTORS = ("sei", "sqrt_inv_n")


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
    predictor: str = "sei"

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        d = {
            "coef": self.coef,
            "se": self.se,
            "stat": self.stat,
            "df": None if self.df is None else _int(self.df),
            "pval": self.pval,
        }
        if self.robust is not None:
            d["robust"] = self.robust
        return d


def _int(x):
    x = float(x)
    return int(x) if x.is_integer() else x


def effective_n(n1, n2=None) -> np.ndarray:
    r"""Effective sample size of the small-study predictor (Pustejovsky & Rodgers 2019).

    .. math:: \tilde n = \frac{n_1 n_2}{n_1 + n_2} \quad (\text{two groups}), \qquad
              \tilde n = n \quad (\text{one sample size}),

    so that :math:`\sqrt{1/\tilde n} = \sqrt{1/n_1 + 1/n_2}`, the part of the standard error
    of a standardized mean difference (or a log odds ratio) that does not depend on the
    estimate.

    Parameters
    ----------
    n1 : array_like
        Group 1 sizes, or the total sample sizes when ``n2`` is None.
    n2 : array_like, optional
        Group 2 sizes.

    Returns
    -------
    numpy.ndarray
    """
    a = np.asarray(n1, dtype=float).ravel()
    if n2 is None:
        return a
    b = np.asarray(n2, dtype=float).ravel()
    if a.shape != b.shape:
        raise InputError(f"n1 and n2 must have the same length; got {a.size} and {b.size}")
    return a * b / (a + b)


def _column(res, spec, what: str) -> tuple[np.ndarray, str]:
    """Values of ``spec`` (a column name of the model's data, or k values) and their name."""
    k = res.data.y.size
    if isinstance(spec, str):
        frame = res.data.frame
        if spec not in frame.columns:
            raise InputError(
                f"{what}: column {spec!r} not found in the model's data (columns: "
                f"{', '.join(map(str, frame.columns))})"
            )
        try:
            return frame[spec].to_numpy(dtype=float), f"column {spec!r}"
        except (TypeError, ValueError):
            raise InputError(f"{what}: column {spec!r} must be numeric") from None
    vals = np.asarray(spec, dtype=float).ravel()
    if vals.size != k:
        raise InputError(
            f"{what}: got {vals.size} values for the k = {k} effect sizes of the model"
        )
    return vals, what


def _sample_sizes(res, n) -> np.ndarray:
    """n~ for each effect size from ``n`` (column name, k values, or a pair for two groups)."""
    if n is None:
        raise InputError(
            "predictor 'sqrt_inv_n' needs the sample sizes: n = column name (total "
            "n), a pair of columns (n1, n2), or one value per effect size"
        )
    pair = (
        isinstance(n, tuple | list)
        and len(n) == 2
        and not all(isinstance(x, int | float | np.number) for x in n)
    )
    parts = (
        [_column(res, x, f"n[{i}]") for i, x in enumerate(n)] if pair else [_column(res, n, "n")]
    )
    for vals, name in parts:
        bad = ~np.isfinite(vals) | (vals <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{name}, effect size {i + 1}: sample size must be finite and > 0, "
                f"got {float(vals[i])!r}"
            )
    return effective_n(parts[0][0], parts[1][0] if pair else None)


def _predictor_values(res, predictor: str, n) -> np.ndarray:
    predictor = "sei" if predictor == "se" else predictor
    if predictor not in PREDICTORS:
        raise InputError(
            f"predictor must be one of {', '.join(map(repr, PREDICTORS))}; got {predictor!r}"
        )
    if predictor == "sei":
        return np.sqrt(res.data.v)
    return np.sqrt(1.0 / _sample_sizes(res, n))


def _with_moderator(res, values: np.ndarray, name: str):
    X = np.column_stack([res.data.X, values])
    return res.refit(design=(X, list(res.coef_names) + [name]))


def egger(
    res, robust: bool = False, predictor: str = "sei", n=None, cluster: str | None = None
) -> EggerResult:
    r"""Multilevel Egger regression test for funnel-plot asymmetry.

    The model of ``res`` (same random effects, method and inference) is refitted with the
    standard error added as a moderator,

    .. math:: y_{ij} = x_{ij}'\beta + \beta_{E} \sqrt{v_{ij}} + u + e_{ij},

    and :math:`H_0: \beta_E = 0` is tested (Egger et al. 1997, as a multilevel meta-regression:
    Rodgers & Pustejovsky 2021), with the model's own test (z or t) and, with ``robust=True``,
    also with the CR2 cluster-robust variance and Satterthwaite df (clubSandwich's
    ``coef_test``).

    The refit goes through ``res.refit(design=...)``, so the test applies to every fitted
    model: nested levels, and general structures (:class:`mlmeta.structures.StructuredResults`:
    crossed terms, ``R=``, ``~ inner | outer`` terms; there :math:`v_{ij}` is the diagonal of
    the sampling covariance, as ``sqrt(vi)`` added to metafor's ``rma.mv``). The CR2 test
    clusters by ``cluster`` (default: the model's default cluster, its outer level; for
    structured models :meth:`~mlmeta.structures.StructuredResults.default_cluster`).

    With ``predictor="sqrt_inv_n"`` the moderator is :math:`\sqrt{1/\tilde n_{ij}}` instead of
    :math:`\sqrt{v_{ij}}` (:func:`effective_n`): for standardized mean differences and log odds
    ratios :math:`v_{ij}` depends on the estimate, so the SE-based test rejects too often
    without selection; the sample-size predictor keeps the level (Pustejovsky & Rodgers 2019).

    Parameters
    ----------
    res : mlmeta.results.MetaResults
        Fitted model (with or without moderators).
    robust : bool
        Also the CR2 test (needs a random cluster level).
    predictor : {"sei", "sqrt_inv_n"}
        The small-study moderator (``"se"`` is accepted for ``"sei"``).
    n : str, pair, or array_like, optional
        Sample sizes for ``"sqrt_inv_n"``: a column of the model's data or one value per effect
        size (total n, or n~ itself), or a pair ``(n1, n2)`` of columns/arrays with the group
        sizes (then n~ = n1 n2 / (n1 + n2)).
    cluster : str, optional
        Cluster column of the CR2 test (default: the model's default cluster).

    Returns
    -------
    EggerResult
    """
    predictor = "sei" if predictor == "se" else predictor
    values = _predictor_values(res, predictor, n)
    name = "sqrt(vi)" if predictor == "sei" else "sqrt(1/n)"
    if name in res.coef_names:
        raise InputError(f"the model already has {name} as a moderator")
    fit = _with_moderator(res, values, name)
    j = fit.p - 1
    t = fit.tests
    rob = None
    if robust:
        if not res.data.random and cluster is None and getattr(res, "tau2", None) is None:
            raise InputError("robust Egger test needs a cluster level (random effects)")
        from dataclasses import replace

        fit_r = replace(fit, btt=np.array([j]))
        rb = fit_r.robust(cluster=cluster, type="CR2")
        rob = {
            "se": float(rb.coefs["se"].iloc[j]),
            "stat": float(rb.coefs["tval"].iloc[j]),
            "df": float(rb.coefs["df"].iloc[j]),
            "pval": float(rb.coefs["pval"].iloc[j]),
        }
    return EggerResult(
        float(fit.core.beta[j]),
        float(t.se[j]),
        float(t.stat[j]),
        None if t.df is None else float(t.df[j]),
        float(t.pval[j]),
        rob,
        predictor,
    )


def pet_peese(res, predictor: str = "sei", n=None) -> pd.DataFrame:
    r"""PET and PEESE estimates of the effect of a study with standard error 0.

    PET: :math:`y = \beta_0 + \beta_1 \sqrt{v} + \dots`; PEESE: :math:`y = \beta_0 + \beta_1 v
    + \dots`, both fitted with the random effects and inference of ``res``; the intercept
    :math:`\beta_0` is the bias-adjusted effect (Stanley & Doucouliagos 2014). The usual
    conditional rule reports PEESE when PET's intercept is significant, else PET. With
    ``predictor="sqrt_inv_n"``, :math:`\sqrt{1/\tilde n}` and :math:`1/\tilde n` replace
    :math:`\sqrt v` and :math:`v` (Pustejovsky & Rodgers 2019; see :func:`egger`).

    Parameters
    ----------
    res : mlmeta.results.MetaResults
        Intercept-only fitted model.
    predictor : {"sei", "sqrt_inv_n"}
    n : str, pair, or array_like, optional
        Sample sizes for ``"sqrt_inv_n"`` (as in :func:`egger`).

    Returns
    -------
    pandas.DataFrame
        Rows ``PET``, ``PEESE``; columns estimate, se, ci_lb, ci_ub, pval (intercept), slope,
        slope_pval.
    """
    if not res.intercept_only:
        raise InputError("PET-PEESE is defined for the intercept-only model")
    rows = {}
    p1 = _predictor_values(res, predictor, n)
    names = ("sqrt(vi)", "vi") if predictor == "sei" else ("sqrt(1/n)", "1/n")
    p2 = res.data.v if predictor == "sei" else p1**2
    for name, vals, mod in (("PET", p1, names[0]), ("PEESE", p2, names[1])):
        f = _with_moderator(res, vals, mod)
        t = f.tests
        rows[name] = {
            "estimate": float(f.core.beta[0]),
            "se": float(t.se[0]),
            "ci_lb": float(t.ci_lb[0]),
            "ci_ub": float(t.ci_ub[0]),
            "pval": float(t.pval[0]),
            "slope": float(f.core.beta[1]),
            "slope_pval": float(t.pval[1]),
        }
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
