r"""Performance criteria of a simulation study, each with its Monte Carlo standard error.

The definitions are those of R's simhelpers (Joshi & Pustejovsky; ``calc_absolute``,
``calc_relative``, ``calc_rejection``, ``calc_coverage``), following Morris, White & Crowther
(2019). For the ``K`` non-missing estimates ``T_1..T_K`` of a parameter ``theta``, with mean
``T̄``, standard deviation ``s`` (divisor ``K - 1``), skewness ``g = sum (T - T̄)^3 / (K s^3)``
and kurtosis ``k = sum (T - T̄)^4 / (K s^4)``:

=================  ===========================  ==============================================
criterion          estimate                     Monte Carlo SE
=================  ===========================  ==============================================
bias               ``T̄ - theta``                ``s / sqrt(K)``
var                ``s^2``                      ``s^2 sqrt((k - 1) / K)``
stddev             ``s``                        jackknife (below)
mse                ``mean((T - theta)^2)``      ``sqrt((s^4 (k - 1) + 4 s^3 g bias
                                                + 4 s^2 bias^2) / K)``
rmse               ``sqrt(mse)``                jackknife (below)
rel_bias           ``T̄ / theta``                ``bias_mcse / |theta|``
rel_mse            ``mse / theta^2``            ``mse_mcse / theta^2``
rel_rmse           ``rmse / |theta|``           ``rmse_mcse / |theta|``
rej_rate           ``mean(p < alpha)``          ``sqrt(r (1 - r) / K_p)``
coverage           ``mean(lb <= theta <= ub)``  ``sqrt(c (1 - c) / K_ci)``
width              ``mean(ub - lb)``            ``sd(ub - lb) / sqrt(K_ci)``
=================  ===========================  ==============================================

Jackknife: leaving out ``T_i``, ``T̄_(i) = (K T̄ - T_i) / (K - 1)`` and ``s^2_(i) = ((K - 1) s^2
- K (T_i - T̄)^2 / (K - 1)) / (K - 2)``; ``stddev_mcse = sqrt((K - 1) / K sum (s_(i) - s)^2)``
and ``rmse_mcse = sqrt((K - 1) / K sum (rmse_(i) - rmse)^2)`` with ``rmse_(i) = sqrt((T̄_(i) -
theta)^2 + s^2_(i))``. Relative criteria are NaN when ``theta = 0``; simhelpers divides the
MCSE by ``theta`` itself, here by ``|theta|`` so that an MCSE is never negative.
``K_p`` and ``K_ci`` count the non-missing p-values and intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = ["performance", "summarise"]


def _absolute(t: np.ndarray, theta: float) -> dict[str, float]:
    t = t[~np.isnan(t)]
    K = t.size
    nan = float("nan")
    if K == 0:
        return {
            "K": 0,
            **{
                k: nan
                for k in (
                    "bias",
                    "bias_mcse",
                    "var",
                    "var_mcse",
                    "stddev",
                    "stddev_mcse",
                    "mse",
                    "mse_mcse",
                    "rmse",
                    "rmse_mcse",
                )
            },
        }
    # a constant series has mean t[0] exactly (t.mean() of [0.1] * 3 is not 0.1, which left
    # s ~ 1e-17 and a spurious kurtosis)
    tbar = t[0] if t.min() == t.max() else t.mean()
    bias = tbar - theta
    mse = float(np.mean((t - theta) ** 2))
    rmse = float(np.sqrt(mse))
    out = {
        "K": K,
        "bias": bias,
        "bias_mcse": nan,
        "var": nan,
        "var_mcse": nan,
        "stddev": nan,
        "stddev_mcse": nan,
        "mse": mse,
        "mse_mcse": nan,
        "rmse": rmse,
        "rmse_mcse": nan,
    }
    if K < 2:
        return out
    d = t - tbar
    s2 = float(d @ d / (K - 1))
    s = float(np.sqrt(s2))
    out.update(bias_mcse=s / np.sqrt(K), var=s2, stddev=s)
    if s > 0:
        # standardised first: s^3 and s^4 underflow (s ~ 1e-120) or overflow (s ~ 1e100)
        z = d / s
        g = float(np.mean(z**3))
        kurt = float(np.mean(z**4))
        with np.errstate(invalid="ignore"):  # NaN, as simhelpers, if rounding makes k < 1
            out["var_mcse"] = s2 * np.sqrt((kurt - 1) / K)
            out["mse_mcse"] = s * float(
                np.sqrt((s2 * (kurt - 1) + 4 * s * g * bias + 4 * bias**2) / K)
            )
    else:
        out["var_mcse"] = out["mse_mcse"] = 0.0
    if K > 2:
        tbar_j = (K * tbar - t) / (K - 1)
        s2_j = ((K - 1) * s2 - d**2 * K / (K - 1)) / (K - 2)
        s2_j = np.maximum(s2_j, 0.0)  # rounding can leave -1e-18 when all T are equal
        rmse_j = np.sqrt((tbar_j - theta) ** 2 + s2_j)
        out["stddev_mcse"] = float(np.sqrt((K - 1) / K * np.sum((np.sqrt(s2_j) - s) ** 2)))
        out["rmse_mcse"] = float(np.sqrt((K - 1) / K * np.sum((rmse_j - rmse) ** 2)))
    return out


def _relative(a: dict[str, float], theta: float) -> dict[str, float]:
    if theta == 0 or not np.isfinite(theta):
        nan = float("nan")
        return dict.fromkeys(
            ("rel_bias", "rel_bias_mcse", "rel_mse", "rel_mse_mcse", "rel_rmse", "rel_rmse_mcse"),
            nan,
        )
    at = np.float64(abs(theta))
    theta = np.float64(theta)
    with np.errstate(all="ignore"):
        return {
            "rel_bias": 1.0 + a["bias"] / theta,
            "rel_bias_mcse": a["bias_mcse"] / at,
            "rel_mse": a["mse"] / theta**2,
            "rel_mse_mcse": a["mse_mcse"] / theta**2,
            "rel_rmse": a["rmse"] / at,
            "rel_rmse_mcse": a["rmse_mcse"] / at,
        }


def _rejection(p: np.ndarray, alpha: float) -> dict[str, float]:
    p = p[~np.isnan(p)]
    K = p.size
    if K == 0:
        return {"K_rejection": 0, "rej_rate": float("nan"), "rej_rate_mcse": float("nan")}
    r = float(np.mean(p < alpha))
    return {"K_rejection": K, "rej_rate": r, "rej_rate_mcse": float(np.sqrt(r * (1 - r) / K))}


def _coverage(lb: np.ndarray, ub: np.ndarray, theta: float) -> dict[str, float]:
    ok = ~(np.isnan(lb) | np.isnan(ub))
    lb, ub = lb[ok], ub[ok]
    K = lb.size
    nan = float("nan")
    if K == 0:
        return {
            "K_coverage": 0,
            "coverage": nan,
            "coverage_mcse": nan,
            "width": nan,
            "width_mcse": nan,
        }
    c = float(np.mean((lb <= theta) & (theta <= ub)))
    w = ub - lb
    w_mcse = float(np.sqrt(np.var(w, ddof=1) / K)) if K > 1 else nan
    return {
        "K_coverage": K,
        "coverage": c,
        "coverage_mcse": float(np.sqrt(c * (1 - c) / K)),
        "width": float(w.mean()),
        "width_mcse": w_mcse,
    }


def performance(
    estimates: Any,
    true_value: float,
    *,
    p_values: Any = None,
    ci_lb: Any = None,
    ci_ub: Any = None,
    alpha: float = 0.05,
) -> dict[str, float]:
    """The criteria of the module docstring for one set of replications (arrays).

    Returns a dict: ``K``, ``bias``, ``var``, ``stddev``, ``mse``, ``rmse``, the relative
    criteria, and (when ``p_values`` / ``ci_lb`` and ``ci_ub`` are given) ``rej_rate`` and
    ``coverage``/``width``, each followed by its ``_mcse``.
    """
    theta = float(true_value)
    t = np.asarray(estimates, dtype=float).ravel()
    out: dict[str, float] = _absolute(t, theta)
    out.update(_relative(out, theta))
    if p_values is not None:
        out.update(_rejection(np.asarray(p_values, dtype=float).ravel(), alpha))
    if ci_lb is not None and ci_ub is not None:
        out.update(
            _coverage(
                np.asarray(ci_lb, dtype=float).ravel(),
                np.asarray(ci_ub, dtype=float).ravel(),
                theta,
            )
        )
    return out


def summarise(
    results: pd.DataFrame,
    true_value: float | str | Callable[[pd.DataFrame], float],
    by: str | Sequence[str] | None = None,
    *,
    estimate: str = "estimate",
    p_value: str | None = "p",
    ci: tuple[str, str] | None = ("ci_lb", "ci_ub"),
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Performance of an estimator per condition: bias, variance, RMSE, rejection rate,
    coverage and interval width with their Monte Carlo SEs (module docstring; simhelpers).

    Parameters
    ----------
    results : DataFrame
        The table of :func:`mlmeta.sim.run` (or any table with one row per replication).
    true_value : number, column name or callable
        The parameter: a number, the name of a column that is constant within each group
        (e.g. ``"mu"`` or the built-in analyses' ``"true_value"``), or a function of the
        group's rows returning a number.
    by : column name(s), optional
        Groups; default: ``condition`` (when present) and ``method``/``term`` (when present).
        The other columns that are constant within every group (the design parameters) are
        carried into the output.
    estimate, p_value, ci : column names
        Where the estimates, two-sided p-values and interval bounds are; ``p_value=None`` or
        ``ci=None`` skips that criterion (also skipped when the columns are absent).
    alpha : float
        Level of the tests: a replication rejects when ``p < alpha`` (as simhelpers).

    Returns
    -------
    DataFrame, one row per group.
    """
    if not isinstance(results, pd.DataFrame):
        raise InputError(f"results must be a DataFrame; got {type(results).__name__}")
    if estimate not in results.columns:
        raise InputError(f"estimate column {estimate!r} not found in results")
    if not (0 < float(alpha) < 1):
        raise InputError(f"alpha must lie strictly between 0 and 1; got {alpha!r}")
    if by is None:
        by = [c for c in ("condition", "method", "term") if c in results.columns]
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in results.columns]
    if missing:
        raise InputError(f"by: column {missing[0]!r} not found in results")
    if isinstance(true_value, str) and true_value not in results.columns:
        raise InputError(f"true_value column {true_value!r} not found in results")
    use_p = p_value is not None and p_value in results.columns
    lb_col, ub_col = ci if ci is not None else ("", "")
    use_ci = ci is not None and lb_col in results.columns and ub_col in results.columns

    skip = set(by) | {"rep", estimate, "true_value", "error"} | _RESULT_COLS
    skip |= {p_value} if p_value else set()
    skip |= set(ci) if ci else set()
    carry = [c for c in results.columns if c not in skip and _constant(results, by, c)]
    groups = results.groupby(by, sort=True, dropna=False) if by else [((), results)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        if callable(true_value):
            theta = float(true_value(g))
        elif isinstance(true_value, str):
            vals = pd.unique(g[true_value].dropna())
            if len(vals) != 1:
                raise InputError(
                    f"true_value column {true_value!r} must have one value per "
                    f"group; group {key!r} has {len(vals)}"
                )
            theta = float(vals[0])
        else:
            theta = float(true_value)
        row: dict[str, Any] = dict(zip(by, key))
        for c in carry:
            row[c] = g[c].iloc[0]
        row["true_value"] = theta
        perf = performance(
            g[estimate].to_numpy(float),
            theta,
            p_values=g[p_value].to_numpy(float) if use_p else None,
            ci_lb=g[lb_col].to_numpy(float) if use_ci else None,
            ci_ub=g[ub_col].to_numpy(float) if use_ci else None,
            alpha=alpha,
        )
        row.update(perf)
        rows.append(row)
    return pd.DataFrame(rows)


#: output columns of the built-in analyses that are results, not design parameters
_RESULT_COLS = {"se", "df", "p", "ci_lb", "ci_ub", "tau2", "omega2", "estimate"}


def _constant(results: pd.DataFrame, by: list[str], col: str) -> bool:
    """Whether ``col`` holds hashable values, one per group (a design parameter)."""
    s = results[col]
    if s.map(lambda x: isinstance(x, (list, dict, np.ndarray))).any():
        return False
    if not by:
        return bool(s.nunique(dropna=False) <= 1)
    return bool(results.groupby(by, sort=False, dropna=False)[col].nunique(dropna=False).max() <= 1)
