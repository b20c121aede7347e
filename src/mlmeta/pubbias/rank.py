"""Begg & Mazumdar's rank correlation test (metafor's ``ranktest``) and Kendall's tau helpers.

References
----------
Begg, C. B., & Mazumdar, M. (1994). Operating characteristics of a rank correlation test for
publication bias. *Biometrics, 50*, 1088-1101.
Kendall, M. G. (1970). *Rank Correlation Methods* (4th ed.). Griffin (exact null distribution
and the tie-corrected variance used by R's ``cor.test``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from mlmeta.errors import InputError
from mlmeta.pubbias._checks import as_yv

__all__ = ["ranktest"]

_EQUAL_RTOL = 1e-12
_ALL_EQUAL = (
    "all effect sizes are equal, so Kendall's tau is undefined (every standardised deviate is 0)"
)
_ALL_EQUAL_V = "all sampling variances are equal, so Kendall's tau is undefined"


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (R's ``cor(x, y, method = "kendall")``)."""
    n = x.size
    num = 0.0
    nx = 0.0
    ny = 0.0
    for i in range(n - 1):  # O(n^2) time, O(n) memory
        sx = np.sign(x[i + 1 :] - x[i])
        sy = np.sign(y[i + 1 :] - y[i])
        num += float(sx @ sy)
        nx += float(np.count_nonzero(sx))
        ny += float(np.count_nonzero(sy))
    if nx == 0 or ny == 0:
        return float("nan")
    return num / math.sqrt(nx * ny)


def _mahonian_pmf(n: int) -> np.ndarray:
    """P(T = q), q = 0..n(n-1)/2, for T = number of inversions of a random permutation of n.

    T is the sum of independent uniforms on {0, ..., j-1}, j = 1..n, so its distribution is
    built by repeated convolution (via cumulative sums). Under H0 of no association the number
    of concordant pairs has this distribution (R's ``ckendall``/``pkendall``).
    """
    pmf = np.array([1.0])
    for j in range(2, n + 1):
        m = pmf.size + j - 1
        cs = np.concatenate([[0.0], np.cumsum(pmf)])  # cs[t] = sum pmf[:t]
        q = np.arange(m)
        hi = np.minimum(q, pmf.size - 1) + 1
        lo = np.maximum(q - (j - 1), 0)
        pmf = (cs[hi] - cs[lo]) / j
    return pmf


def _kendall_pvalue(tau: float, x: np.ndarray, y: np.ndarray, exact: bool) -> tuple[float, bool]:
    """Two-sided p-value of Kendall's tau with the rules of R's ``cor.test``."""
    n = x.size
    ties = min(np.unique(x).size, np.unique(y).size) < n
    if exact and not ties:
        q = round((tau + 1) * n * (n - 1) / 4)  # number of concordant pairs
        pmf = _mahonian_pmf(n)
        if q > n * (n - 1) / 4:
            p = pmf[int(q) :].sum()  # 1 - pkendall(q - 1, n)
        else:
            p = pmf[: int(q) + 1].sum()  # pkendall(q, n)
        return float(min(2 * p, 1.0)), True
    _, xt = np.unique(x, return_counts=True)
    _, yt = np.unique(y, return_counts=True)
    xt = xt[xt > 1].astype(float)
    yt = yt[yt > 1].astype(float)
    t0 = n * (n - 1) / 2
    t1 = np.sum(xt * (xt - 1)) / 2
    t2 = np.sum(yt * (yt - 1)) / 2
    S = tau * math.sqrt((t0 - t1) * (t0 - t2))
    v0 = n * (n - 1) * (2 * n + 5)
    vt = np.sum(xt * (xt - 1) * (2 * xt + 5))
    vu = np.sum(yt * (yt - 1) * (2 * yt + 5))
    v1 = np.sum(xt * (xt - 1)) * np.sum(yt * (yt - 1))
    v2 = np.sum(xt * (xt - 1) * (xt - 2)) * np.sum(yt * (yt - 1) * (yt - 2))
    var_s = (v0 - vt - vu) / 18 + v1 / (2 * n * (n - 1)) + v2 / (9 * n * (n - 1) * (n - 2))
    z = S / math.sqrt(var_s)
    return float(2 * min(ndtr(z), ndtr(-z))), False


def _signif(x: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant decimal digits (R's ``signif``)."""
    return np.array([float(f"{e:.{digits}g}") for e in np.asarray(x, dtype=float)])


def ranktest(yi, vi, exact: bool = True, tie_digits: int | None = None) -> dict:
    r"""Begg & Mazumdar's rank correlation test for funnel-plot asymmetry.

    With the equal-effects estimate :math:`\hat\theta = \sum w_i y_i / \sum w_i`, :math:`w_i
    = 1/v_i`, and its variance :math:`v_b = 1/\sum w_i`, the standardised deviates

    .. math:: y_i^* = (y_i - \hat\theta) / \sqrt{v_i - v_b}

    are correlated with the sampling variances by Kendall's :math:`\tau_b`. The two-sided
    p-value follows R's ``cor.test(method = "kendall", exact = exact)``: the exact permutation
    distribution of the number of concordant pairs when there are no ties (and ``exact``),
    otherwise the normal approximation with the tie-corrected variance of S (no continuity
    correction). This is metafor's ``ranktest()``.

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (> 0).
    exact : bool
        Exact p-value when there are no ties (metafor's default ``TRUE``).
    tie_digits : int or None
        None (default): the doubles are compared exactly, as R does. An integer (e.g. 12):
        the deviates and variances are compared after rounding to that many significant
        digits, so that values that are mathematically equal but differ in the last bits
        (e.g. the aggregated variance of a study with three estimates of variance 4/26 and
        rho = 0.5, and 4/39 of a single-estimate study) count as tied. Whether such a tie is
        seen changes tau and the p-value; :func:`aggregate` reproduces R's doubles bit for
        bit (for clusters with < 64 rows), so the default agrees with metafor on aggregated
        data.

    When every estimate is equal (to 12 significant digits) or every sampling variance is
    equal, tau is undefined (R's ``cor`` gives ``NA``): ``tau`` and ``pval`` are NaN, with
    ``available = False`` and the ``reason``. The tolerance on the estimates matters: equal
    estimates aggregated within studies differ in the last bits, and the signs of those
    ~1e-17 deviates would otherwise decide tau (metafor then reports e.g. tau = -1,
    p < .0001 for identical estimates).

    Returns
    -------
    dict
        ``tau`` (Kendall's tau-b), ``pval`` (two-sided), ``exact`` (whether the exact
        distribution was used); when undefined also ``available`` (False) and ``reason``.
    """
    y, v = as_yv(yi, vi)
    if y.size < 3:
        raise InputError("ranktest needs at least 3 estimates")
    if np.ptp(y) <= _EQUAL_RTOL * np.max(np.abs(y)):
        # every deviate is 0 (or rounding noise of ~1e-17 whose signs would decide tau)
        return {
            "tau": float("nan"),
            "pval": float("nan"),
            "exact": False,
            "available": False,
            "reason": _ALL_EQUAL,
        }
    w = 1.0 / v
    theta = np.sum(w * y) / np.sum(w)
    vb = 1.0 / np.sum(w)
    ystar = (y - theta) / np.sqrt(v - vb)
    vv = v
    if tie_digits is not None:
        ystar, vv = _signif(ystar, int(tie_digits)), _signif(v, int(tie_digits))
    tau = _kendall_tau_b(ystar, vv)
    if not np.isfinite(tau):  # the sampling variances are all equal
        return {
            "tau": float("nan"),
            "pval": float("nan"),
            "exact": False,
            "available": False,
            "reason": _ALL_EQUAL_V,
        }
    pval, used_exact = _kendall_pvalue(tau, ystar, vv, exact)
    return {"tau": float(tau), "pval": pval, "exact": used_exact}
