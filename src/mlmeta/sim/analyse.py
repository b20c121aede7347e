"""Analysis functions for simulation studies of three-level meta-analytic data.

Each takes the data of :func:`mlmeta.sim.generate_three_level` (columns ``study``, ``es``,
``yi``, ``vi`` and the covariates ``x_study``/``x_es`` when present, which then enter the
model as moderators) and the condition, fits one working model through mlmeta's public API and
returns a DataFrame with one row per coefficient:

``method``, ``term``, ``estimate``, ``se``, ``df``, ``p`` (two-sided), ``ci_lb``, ``ci_ub``
(95%), ``tau2`` (between-study variance), ``omega2`` (within-study variance; NaN for CE),
``true_value`` (the coefficient's value in the condition: ``mu`` for the intercept,
``beta_study``, ``beta_es``) and ``error`` (empty, or the message of a fit that failed, whose
numbers are then NaN).

Working models (Pustejovsky & Tipton 2022; Vembye, Pustejovsky & Pigott 2023):

* :func:`analyse_che_rve` — CHE: ``rma_mv(random="study/es", rho=r)`` with the working
  sampling correlation ``r`` = the condition's ``working_rho`` (default: its ``rho``), REML,
  and cluster-robust CR2 inference (clubSandwich's ``coef_test``: Satterthwaite df) by study.
* :func:`analyse_mlma` — MLMA, model-based: the same model with independent sampling errors
  (``rho=None``), t tests with metafor's containment df.
* :func:`analyse_ce_rve` — CE: the effects of a study aggregated into one under the working
  correlation (metafor's ``aggregate(..., rho = r)``: the GLS mean ``1'V^-1 y / 1'V^-1 1`` with
  variance ``1 / 1'V^-1 1``), a random-effects model (REML) on the study means, CR2 inference.
  Covariates are aggregated the same way.
* :func:`analyse_all` — the three, stacked.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

import mlmeta
from mlmeta.errors import MlmetaError

__all__ = ["COLUMNS", "analyse_all", "analyse_ce_rve", "analyse_che_rve", "analyse_mlma"]

COLUMNS = (
    "method",
    "term",
    "estimate",
    "se",
    "df",
    "p",
    "ci_lb",
    "ci_ub",
    "tau2",
    "omega2",
    "true_value",
    "error",
)
_TRUE = {"intrcpt": "mu", "x_study": "beta_study", "x_es": "beta_es"}
_FAIL = (MlmetaError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError)


def _mods(data: pd.DataFrame) -> str | None:
    cov = [c for c in ("x_study", "x_es") if c in data.columns]
    return "~ " + " + ".join(cov) if cov else None


def _terms(data: pd.DataFrame) -> list[str]:
    return ["intrcpt"] + [c for c in ("x_study", "x_es") if c in data.columns]


def _true(term: str, condition: Mapping[str, Any]) -> float:
    v = condition.get(_TRUE.get(term, term))
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _working_rho(condition: Mapping[str, Any]) -> float:
    return float(condition.get("working_rho", condition.get("rho", 0.0)) or 0.0)


def _table(
    method: str,
    terms: list[str],
    coefs: pd.DataFrame | None,
    tau2: float,
    omega2: float,
    condition: Mapping[str, Any],
    error: str = "",
) -> pd.DataFrame:
    n = len(terms)
    nan = np.full(n, np.nan)
    if coefs is None:
        cols = {k: nan for k in ("estimate", "se", "df", "p", "ci_lb", "ci_ub")}
    else:
        c = coefs.loc[terms]
        cols = {
            "estimate": c["estimate"].to_numpy(float),
            "se": c["se"].to_numpy(float),
            "df": c["df"].to_numpy(float),
            "p": c["pval"].to_numpy(float),
            "ci_lb": c["ci_lb"].to_numpy(float),
            "ci_ub": c["ci_ub"].to_numpy(float),
        }
    return pd.DataFrame(
        {
            "method": [method] * n,
            "term": terms,
            **cols,
            "tau2": np.full(n, tau2),
            "omega2": np.full(n, omega2),
            "true_value": [_true(t, condition) for t in terms],
            "error": [error] * n,
        }
    )


def _three_level(
    method: str, data: pd.DataFrame, condition: Mapping[str, Any], rho: float | None, robust: bool
) -> pd.DataFrame:
    terms = _terms(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mlmeta.rma_mv(
                data,
                "yi",
                "vi",
                random="study/es",
                mods=_mods(data),
                rho=rho,
                test="t",
                dfs="contain",
            )
            coefs = res.robust(type="CR2").coefs if robust else res.coefs
        s2 = res.sigma2.to_numpy(float)
        return _table(method, terms, coefs, float(s2[0]), float(s2[1]), condition)
    except _FAIL as e:
        return _table(method, terms, None, np.nan, np.nan, condition, str(e) or type(e).__name__)


def analyse_che_rve(data: pd.DataFrame, condition: Mapping[str, Any]) -> pd.DataFrame:
    """CHE working model with CR2 robust inference (see the module docstring)."""
    return _three_level("CHE-RVE", data, condition, _working_rho(condition), robust=True)


def analyse_mlma(data: pd.DataFrame, condition: Mapping[str, Any]) -> pd.DataFrame:
    """Multilevel model, independent sampling errors, model-based t tests (containment df)."""
    return _three_level("MLMA", data, condition, None, robust=False)


def aggregate_studies(data: pd.DataFrame, rho: float) -> pd.DataFrame:
    """One row per study: GLS means of ``yi`` (and covariates) under sampling correlation
    ``rho`` with their variance ``vi``, as metafor's ``aggregate.escalc(..., rho = rho)``.

    With ``V`` the study's sampling covariance (``vi`` on the diagonal, ``rho sqrt(vi vi')``
    off it) and ``w = V^-1 1``: ``yi = w'y / 1'w``, ``vi = 1 / 1'w``.
    """
    cov = [c for c in ("x_study", "x_es") if c in data.columns]
    rows = []
    for sid, g in data.groupby("study", sort=True):
        v = g["vi"].to_numpy(float)
        s = np.sqrt(v)
        V = rho * np.outer(s, s)
        np.fill_diagonal(V, v)
        w = np.linalg.solve(V, np.ones(len(v)))
        sw = w.sum()
        row = {"study": sid, "yi": float(w @ g["yi"].to_numpy(float) / sw), "vi": 1.0 / sw}
        for c in cov:
            row[c] = float(w @ g[c].to_numpy(float) / sw)
        rows.append(row)
    return pd.DataFrame(rows)


def analyse_ce_rve(data: pd.DataFrame, condition: Mapping[str, Any]) -> pd.DataFrame:
    """CE: study-aggregated effects, random-effects model, CR2 inference by study."""
    terms = _terms(data)
    try:
        agg = aggregate_studies(data, _working_rho(condition))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mlmeta.rma_mv(
                agg, "yi", "vi", random="study", mods=_mods(agg), test="t", dfs="contain"
            )
            coefs = res.robust(type="CR2").coefs
        return _table("CE-RVE", terms, coefs, float(res.sigma2.iloc[0]), np.nan, condition)
    except _FAIL as e:
        return _table("CE-RVE", terms, None, np.nan, np.nan, condition, str(e) or type(e).__name__)


def analyse_all(data: pd.DataFrame, condition: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`analyse_che_rve`, :func:`analyse_mlma` and :func:`analyse_ce_rve`, stacked."""
    return pd.concat(
        [
            analyse_che_rve(data, condition),
            analyse_mlma(data, condition),
            analyse_ce_rve(data, condition),
        ],
        ignore_index=True,
    )
