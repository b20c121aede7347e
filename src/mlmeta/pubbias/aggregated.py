"""Publication-bias methods for dependent effect sizes via per-cluster aggregation.

The classical small-study / publication-bias methods assume independent estimates. With several
effect sizes per study a common strategy (e.g. Assink & Wibbelink 2016; Iovoli et al. 2024;
metafor's ``aggregate.escalc``) is to

1. aggregate the estimates of each cluster (study) into one, assuming a constant sampling
   correlation ``rho`` within a cluster (:func:`aggregate`),
2. fit the two-level random-effects model to the aggregated estimates (:func:`rma_uni`), and
3. run the independent-effects methods on them: Begg & Mazumdar's rank correlation test
   (:func:`ranktest`), Duval & Tweedie's trim-and-fill (:func:`trimfill`) and the Vevea & Hedges
   step-function selection model (:func:`selmodel_stepfun`).

:func:`aggregated_bias` does all three for a fitted multilevel model. Every function reproduces
what R's metafor 3.8-1 computes (``aggregate.escalc``, ``rma``, ``ranktest``,
``trimfill.rma.uni``, ``selmodel.rma.uni`` with ``type = "stepfun"``); the differences are in
the optimisers' stopping rules, which here are tight by default (see ``threshold``) so that the
numbers are the actual (restricted) maximum-likelihood estimates.

References
----------
Begg, C. B., & Mazumdar, M. (1994). Operating characteristics of a rank correlation test for
publication bias. *Biometrics, 50*, 1088-1101.
Duval, S., & Tweedie, R. (2000). Trim and fill: A simple funnel-plot-based method of testing and
adjusting for publication bias in meta-analysis. *Biometrics, 56*, 455-463.
Duval, S., & Tweedie, R. (2000). A nonparametric "trim and fill" method of accounting for
publication bias in meta-analysis. *JASA, 95*, 89-98.
Hedges, L. V. (1992). Modeling publication selection effects in meta-analysis. *Statistical
Science, 7*, 246-255.
Vevea, J. L., & Hedges, L. V. (1995). A general linear model for estimating effect size in the
presence of publication bias. *Psychometrika, 60*, 419-435.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import ndtr, ndtri

from mlmeta.errors import ConvergenceError, DataWarning, FitWarning, InputError

__all__ = ["aggregate", "ranktest", "rma_uni", "trimfill", "selmodel_stepfun",
           "aggregated_bias"]

_EPS = np.finfo(float).eps
_EE_METHODS = ("EE", "FE", "CE")
_METHODS = ("REML", "ML", "DL") + _EE_METHODS


# ==================================================================================== helpers
def _as_yv(yi, vi, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.shape != v.shape:
        raise InputError(f"{name}yi and vi must have the same length; got {y.size} and {v.size}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise InputError(f"{name}yi and vi must be finite (drop missing values first)")
    if np.any(v <= 0):
        i = int(np.flatnonzero(v <= 0)[0])
        raise InputError(f"{name}vi must be > 0; got vi[{i}] = {v[i]!r}")
    return y, v


def _method(method: str) -> str:
    m = str(method).upper()
    if m not in _METHODS:
        raise InputError(f"method must be one of {', '.join(_METHODS)}; got {method!r}")
    return m


def _crit(level: float) -> float:
    if not (0 < float(level) < 100):
        raise InputError(f"level must be a percentage between 0 and 100; got {level!r}")
    return float(ndtri(1 - (1 - float(level) / 100) / 2))


# ================================================================================ aggregate
def _ldsum(values) -> float:
    """Sequential sum with an extended-precision accumulator, as R's ``sum()``."""
    acc = np.longdouble(0.0)
    for x in values:
        acc += np.longdouble(x)
    return float(acc)


def _r_gls_mean(y: list[float], s: list[float], rho: float) -> tuple[float, float]:
    """(1'W y / 1'W 1, 1 / 1'W 1), W = V^-1, in R's floating-point order of operations.

    metafor builds V = S R S by two BLAS products, inverts it with ``chol2inv(chol(V))``
    (reference LAPACK dpotrf2, dtrti2, dlauu2 for matrices smaller than LAPACK's block size
    64) and sums with R's ``sum()`` (extended-precision accumulator). Doing the same operations
    in the same order gives the same doubles, so that ties between aggregated values (which
    decide the rank correlation test) are the same as in R. Only used for m < 64.
    """
    m = len(y)
    # V[i][j] = s_j * (R_ij * s_i): (S %*% R) %*% S with diagonal S
    A = [[s[j] * ((1.0 if i == j else rho) * s[i]) for j in range(m)] for i in range(m)]

    def potrf2(o: int, n: int):  # upper Cholesky of A[o:o+n, o:o+n] in place (dpotrf2)
        if n == 1:
            if not A[o][o] > 0:
                raise np.linalg.LinAlgError
            A[o][o] = math.sqrt(A[o][o])
            return
        n1 = n // 2
        n2 = n - n1
        potrf2(o, n1)
        # dtrsm L,U,T,N: A12 <- inv(U11') A12
        for j in range(o + n1, o + n):
            for i in range(o, o + n1):
                t = A[i][j]
                for kk in range(o, i):
                    t = t - A[kk][i] * A[kk][j]
                A[i][j] = t / A[i][i]
        # dsyrk U,T: A22 <- A22 - A12' A12 (upper triangle)
        for j in range(o + n1, o + n):
            for i in range(o + n1, j + 1):
                t = 0.0
                for ll in range(o, o + n1):
                    t = t + A[ll][i] * A[ll][j]
                A[i][j] = -t + A[i][j]
        potrf2(o + n1, n2)

    potrf2(0, m)
    for i in range(m):  # the lower triangle is zero
        for j in range(i):
            A[i][j] = 0.0
    # dtrti2 (upper, non-unit): U <- inv(U)
    for j in range(m):
        A[j][j] = 1.0 / A[j][j]
        ajj = -A[j][j]
        # dtrmv U,N on x = A[0:j, j] with the leading j x j block
        for jj in range(j):
            xj = A[jj][j]
            if xj != 0.0:
                for i in range(jj):
                    A[i][j] = A[i][j] + xj * A[i][jj]
                A[jj][j] = xj * A[jj][jj]
        for i in range(j):
            A[i][j] = ajj * A[i][j]
    # dlauu2 (upper): U U'
    for i in range(m):
        aii = A[i][i]
        if i < m - 1:
            t = 0.0
            for c in range(i, m):
                t = t + A[i][c] * A[i][c]
            A[i][i] = t
            if i > 0:  # dgemv N: A[0:i, i] <- A[0:i, i+1:] A[i, i+1:]' + aii A[0:i, i]
                for r in range(i):
                    A[r][i] = aii * A[r][i]
                for c in range(i + 1, m):
                    xc = A[i][c]
                    for r in range(i):
                        A[r][i] = A[r][i] + xc * A[r][c]
        else:
            for r in range(i + 1):
                A[r][i] = aii * A[r][i]
    for j in range(m):  # chol2inv: copy the upper triangle to the lower one
        for i in range(j + 1, m):
            A[i][j] = A[j][i]
    sum_w = _ldsum(A[i][j] for j in range(m) for i in range(m))  # column-major
    z = [0.0] * m  # dgemv N, beta = 0: W y
    for j in range(m):
        for i in range(m):
            z[i] = z[i] + y[j] * A[i][j]
    return _ldsum(z) / sum_w, 1.0 / sum_w


def aggregate(yi, vi, cluster, rho: float | Sequence[float], weighted: bool = True
              ) -> pd.DataFrame:
    r"""Aggregate dependent estimates to one estimate per cluster.

    Within cluster c the sampling covariance matrix is assumed compound symmetric (metafor's
    ``struct = "CS"``):

    .. math:: V_c[i, j] = \rho \sqrt{v_i v_j} \ (i \ne j), \qquad V_c[i, i] = v_i ,

    and the aggregated estimate is the generalised-least-squares (inverse-variance) mean

    .. math:: \bar y_c = \frac{1' V_c^{-1} y_c}{1' V_c^{-1} 1}, \qquad
              \bar v_c = \frac{1}{1' V_c^{-1} 1}.

    With ``weighted=False``: :math:`\bar y_c` is the plain mean and
    :math:`\bar v_c = 1'V_c 1 / k_c^2`. This is metafor's
    ``aggregate(escalc(yi = yi, vi = vi), cluster = cluster, rho = rho)`` (defaults
    ``struct = "CS"``, ``weighted = TRUE``), except that the rows are sorted by cluster id
    (metafor keeps the order of first appearance).

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (vi > 0). Rows with a missing yi or vi are dropped
        (with a :class:`~mlmeta.errors.DataWarning`), as metafor does.
    cluster : array_like
        Cluster id of every row (no missing values).
    rho : float or sequence of float
        Within-cluster sampling correlation in [-1, 1]; one value, or one per cluster in the
        order of the sorted cluster ids.
    weighted : bool
        Inverse-variance (GLS) aggregation (default) or the unweighted mean.

    Returns
    -------
    pandas.DataFrame
        Columns ``cluster``, ``yi``, ``vi``; one row per cluster, sorted by cluster id.

    Raises
    ------
    InputError
        If lengths differ, rho is outside [-1, 1], or V_c is not positive definite in a cluster
        (e.g. rho = 1 with two estimates of equal variance).
    """
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    cl = np.asarray(cluster).ravel()
    if not (y.size == v.size == cl.size):
        raise InputError(f"yi, vi and cluster must have the same length; got {y.size}, "
                         f"{v.size} and {cl.size}")
    if pd.isna(cl).any():
        raise InputError("no missing values allowed in 'cluster'")
    bad = np.isnan(y) | np.isnan(v)
    if bad.any():
        warnings.warn(f"{int(bad.sum())} row(s) with missing yi or vi dropped before "
                      "aggregation", DataWarning, stacklevel=2)
        y, v, cl = y[~bad], v[~bad], cl[~bad]
    if y.size == 0:
        raise InputError("no rows left to aggregate")
    if np.any(v < 0):
        raise InputError("vi must be >= 0")
    labels, codes = np.unique(cl, return_inverse=True)
    codes = codes.ravel()
    n = labels.size
    rhos = np.broadcast_to(np.asarray(rho, dtype=float), (n,)) if np.ndim(rho) == 0 else \
        np.asarray(rho, dtype=float).ravel()
    if rhos.size != n:
        raise InputError(f"length of rho ({rhos.size}) does not match the number of clusters "
                         f"({n})")
    if np.any(rhos > 1) or np.any(rhos < -1):
        raise InputError("value(s) of rho must be in [-1, 1]")
    ya = np.empty(n)
    va = np.empty(n)
    for c in range(n):
        idx = np.flatnonzero(codes == c)
        s = np.sqrt(v[idx])
        V = rhos[c] * np.outer(s, s)
        np.fill_diagonal(V, v[idx])
        ev = np.linalg.eigvalsh(V)
        if np.any(ev <= _EPS):
            raise InputError(f"V is not positive definite in cluster {labels[c]!r}; cannot "
                             "aggregate (lower rho?)")
        if weighted and idx.size < 64:
            ya[c], va[c] = _r_gls_mean(y[idx].tolist(), s.tolist(), float(rhos[c]))
        elif weighted:
            w = np.linalg.solve(V, np.ones(idx.size))  # V^-1 1
            sw = w.sum()
            ya[c] = w @ y[idx] / sw
            va[c] = 1.0 / sw
        else:
            ya[c] = y[idx].mean()
            va[c] = V.sum() / idx.size ** 2
    return pd.DataFrame({"cluster": labels, "yi": ya, "vi": va})


# ================================================================================= ranktest
def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (R's ``cor(x, y, method = "kendall")``)."""
    n = x.size
    num = 0.0
    nx = 0.0
    ny = 0.0
    for i in range(n - 1):  # O(n^2) time, O(n) memory
        sx = np.sign(x[i + 1:] - x[i])
        sy = np.sign(y[i + 1:] - y[i])
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
            p = pmf[int(q):].sum()           # 1 - pkendall(q - 1, n)
        else:
            p = pmf[: int(q) + 1].sum()      # pkendall(q, n)
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

    Returns
    -------
    dict
        ``tau`` (Kendall's tau-b), ``pval`` (two-sided), ``exact`` (whether the exact
        distribution was used).
    """
    y, v = _as_yv(yi, vi)
    if y.size < 3:
        raise InputError("ranktest needs at least 3 estimates")
    w = 1.0 / v
    theta = np.sum(w * y) / np.sum(w)
    vb = 1.0 / np.sum(w)
    ystar = (y - theta) / np.sqrt(v - vb)
    vv = v
    if tie_digits is not None:
        ystar, vv = _signif(ystar, int(tie_digits)), _signif(v, int(tie_digits))
    tau = _kendall_tau_b(ystar, vv)
    if not np.isfinite(tau):
        return {"tau": float("nan"), "pval": float("nan"), "exact": False}
    pval, used_exact = _kendall_pvalue(tau, ystar, vv, exact)
    return {"tau": float(tau), "pval": pval, "exact": used_exact}


# ================================================================= two-level model (rma.uni)
def _wls(y, v, X, tau2):
    w = 1.0 / (v + tau2)
    XtW = X.T * w
    A = XtW @ X
    Ainv = np.linalg.inv(A)
    beta = Ainv @ (XtW @ y)
    return w, Ainv, beta


def _proj(w, X, Ainv):
    """P = W - W X (X'WX)^-1 X'W."""
    WX = X * w[:, None]
    return np.diag(w) - WX @ Ainv @ WX.T


def _loglik(y, v, X, tau2, reml: bool) -> float:
    k, p = X.shape
    w, Ainv, beta = _wls(y, v, X, tau2)
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    if not reml:
        return -0.5 * k * math.log(2 * math.pi) - 0.5 * np.sum(np.log(v + tau2)) - 0.5 * rss
    _, ldxx = np.linalg.slogdet(X.T @ X)
    _, ldxwx = np.linalg.slogdet(X.T @ (X * w[:, None]))
    return (-0.5 * (k - p) * math.log(2 * math.pi) + 0.5 * ldxx
            - 0.5 * np.sum(np.log(v + tau2)) - 0.5 * ldxwx - 0.5 * rss)


def _tau2_uni(y, v, X, method: str, threshold: float, maxiter: int) -> float:
    """tau^2 of the two-level model by metafor's rma.uni algorithms.

    ML / REML: Fisher scoring from the Hedges (HE) estimate, step-halving to stay >= 0, until
    the change is < ``threshold``; then metafor's check that tau^2 = 0 does not have a larger
    likelihood. DL: the DerSimonian-Laird moment estimator, truncated at 0.
    """
    k, p = X.shape
    if method in _EE_METHODS:
        return 0.0
    if method == "DL":
        w = 1.0 / v
        _, Ainv, _ = _wls(y, v, X, 0.0)
        P = _proj(w, X, Ainv)
        Q = float(y @ P @ y)
        return max(0.0, (Q - (k - p)) / float(np.trace(P)))
    if k - p < 1:
        raise InputError(f"too few estimates (k = {k}) to estimate tau^2")
    # Hedges (HE) starting value: (RSS_ols - tr(P_ols V)) / (k - p)
    H = X @ np.linalg.solve(X.T @ X, X.T)
    Pols = np.eye(k) - H
    r = Pols @ y
    tau2 = max(0.0, (float(r @ r) - float(np.sum(np.diag(Pols) * v))) / (k - p))
    reml = method == "REML"
    change = threshold + 1
    it = 0
    while change > threshold:
        it += 1
        if it > maxiter:
            raise ConvergenceError(f"Fisher scoring for tau^2 ({method}) did not converge in "
                                   f"{maxiter} iterations")
        old = tau2
        w, Ainv, _ = _wls(y, v, X, tau2)
        P = _proj(w, X, Ainv)
        Py = P @ y
        if reml:
            adj = (float(Py @ Py) - float(np.trace(P))) / float(np.sum(P * P))
        else:
            adj = (float(Py @ Py) - float(np.sum(w))) / float(np.sum(w ** 2))
        if not np.isfinite(adj):
            adj = 0.0
        while tau2 + adj < 0:
            adj /= 2
        tau2 = tau2 + adj
        change = abs(old - tau2)
    # metafor's ll0check: tau^2 = 0 if it has the larger (restricted) likelihood
    if tau2 > threshold and (_loglik(y, v, X, 0.0, reml) - _loglik(y, v, X, tau2, reml)
                             > _EPS ** 0.25):
        warnings.warn("Fisher scoring may have stopped at a local maximum; setting tau^2 = 0",
                      FitWarning, stacklevel=3)
        tau2 = 0.0
    return max(0.0, tau2)


def _fit_uni(y, v, X, method: str, threshold: float = 1e-10, maxiter: int = 1000,
             level: float = 95) -> dict:
    k, p = X.shape
    tau2 = _tau2_uni(y, v, X, method, threshold, maxiter)
    w, Ainv, beta = _wls(y, v, X, tau2)
    se = np.sqrt(np.diag(Ainv))
    z = beta / se
    crit = _crit(level)
    reml = method == "REML"
    out = {"beta": beta, "se": se, "zval": z, "pval": 2 * ndtr(-np.abs(z)),
           "ci_lb": beta - crit * se, "ci_ub": beta + crit * se, "vb": Ainv,
           "tau2": float(tau2), "k": k, "method": method,
           "logLik": float(_loglik(y, v, X, tau2, reml))}
    if method == "REML":
        P = _proj(w, X, Ainv)
        out["se_tau2"] = float(math.sqrt(2 / np.sum(P * P)))
    elif method == "ML":
        out["se_tau2"] = float(math.sqrt(2 / np.sum(w ** 2)))
    elif method == "DL":
        w0 = 1.0 / v
        _, A0, _ = _wls(y, v, X, 0.0)
        P = _proj(w0, X, A0)
        trP = float(np.trace(P))
        out["se_tau2"] = float(math.sqrt((2 * (k - p) + 4 * tau2 * trP
                                          + 2 * tau2 ** 2 * np.sum(P * P)) / trP ** 2))
    else:
        out["se_tau2"] = float("nan")
    return out


def rma_uni(yi, vi, method: str = "REML", *, level: float = 95, threshold: float = 1e-10,
            maxiter: int = 1000) -> dict:
    r"""Two-level random-effects model :math:`y_i = \mu + u_i + e_i` (metafor's ``rma()``).

    :math:`u_i \sim N(0, \tau^2)`, :math:`e_i \sim N(0, v_i)`. Given :math:`\tau^2`,
    :math:`\hat\mu = \sum w_i y_i / \sum w_i` with :math:`w_i = 1/(v_i + \tau^2)` and
    :math:`SE(\hat\mu) = (\sum w_i)^{-1/2}`; Wald z test and CI. :math:`\tau^2` is estimated by

    * REML / ML: Fisher scoring, :math:`\tau^2 \leftarrow \tau^2 + (y'PPy - \mathrm{tr}P) /
      \mathrm{tr}(PP)` (REML) or :math:`(y'PPy - \sum w_i)/\sum w_i^2` (ML), with
      :math:`P = W - W1(1'W1)^{-1}1'W`, started at the Hedges estimate and kept >= 0 by
      step halving (metafor's algorithm);
    * DL: DerSimonian-Laird; EE (FE, CE): :math:`\tau^2 = 0`.

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (> 0).
    method : {"REML", "ML", "DL", "EE", "FE", "CE"}
    level : float
        Confidence level in percent.
    threshold : float
        Fisher scoring stops when the change in :math:`\tau^2` is below this. metafor's default
        is 1e-5, which leaves :math:`\tau^2` off by up to ~1e-4 relative; the default here
        (1e-10) gives the actual maximum. ``threshold=1e-5`` reproduces metafor's default
        output exactly (the iteration is the same).
    maxiter : int
        Maximum number of Fisher scoring iterations.

    Returns
    -------
    dict
        ``beta``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``tau2``, ``se_tau2``,
        ``k``, ``logLik`` (restricted for REML, as metafor's ``logLik``), ``method``.
    """
    y, v = _as_yv(yi, vi)
    m = _method(method)
    fit = _fit_uni(y, v, np.ones((y.size, 1)), m, threshold, maxiter, level)
    return _scalar_fit(fit)


def _scalar_fit(fit: dict) -> dict:
    out = {}
    for key in ("beta", "se", "zval", "pval", "ci_lb", "ci_ub"):
        out[key] = float(fit[key][0])
    for key in ("tau2", "se_tau2", "k", "logLik", "method"):
        out[key] = fit[key]
    return out


# ================================================================================ trimfill
def trimfill(yi, vi, side: str | None = None, estimator: str = "L0", method: str = "REML", *,
             maxiter: int = 100, ilim: tuple[float, float] | None = None, level: float = 95,
             threshold: float = 1e-10) -> dict:
    r"""Duval & Tweedie's trim-and-fill method (metafor's ``trimfill.rma.uni``).

    1. Side: unless given, the side with the missing studies is taken from the Egger-type
       regression :math:`y_i = b_0 + b_1 \sqrt{v_i}` (fitted with the same ``method``):
       ``"right"`` if :math:`\hat b_1 < 0`, else ``"left"``. For ``"right"`` the estimates are
       flipped (:math:`y \to -y`) so that studies are always missing on the left.
    2. Sort by y. Iterate: fit the model (``method``) to the k - k0 smallest estimates, centre
       all k estimates at that :math:`\hat\mu`, rank their absolute values (ties: first
       occurrence first) and give the ranks the sign of the centred value; with
       :math:`S_r` = the sum of the positive signed ranks,

       .. math:: L_0 = \frac{4 S_r - k(k+1)}{2k - 1}, \quad
                 R_0 = k - r^* - 1, \quad
                 Q_0 = k - \tfrac12 - \sqrt{2k^2 - 4S_r + \tfrac14},

       (:math:`r^*` the length of the rightmost run of positive ranks, i.e. the largest
       absolute rank of a negative centred value), :math:`k_0 = \max(0, \mathrm{round}(\cdot))`,
       until :math:`k_0` no longer changes.
    3. If :math:`k_0 > 0`, the :math:`k_0` most extreme estimates are mirrored about the last
       truncated-data estimate, :math:`y^{fill} = 2\hat\mu - y` (same :math:`v_i`), and the
       model is refitted to the k + k0 estimates. Otherwise the result is the model fitted to
       the original data.

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (> 0).
    side : {"left", "right"} or None
        Side of the funnel plot with the missing studies; None: estimated as above.
    estimator : {"L0", "R0", "Q0"}
    method : str
        Estimator of tau^2 for all fits (see :func:`rma_uni`).
    maxiter : int
        Maximum number of trim-and-fill iterations.
    ilim : (float, float) or None
        Limits for the imputed values (metafor's ``ilim``).
    level : float
        Confidence level in percent.
    threshold : float
        Fisher-scoring threshold of every model fit (see :func:`rma_uni`; 1e-5 = metafor's
        default).

    Returns
    -------
    dict
        ``k0``, ``se_k0``, ``side``, and of the model fitted to the filled-in data: ``beta``,
        ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``tau2``, ``k`` (= k + k0); also
        ``yi_filled``, ``vi_filled`` (the observed estimates in their original order followed
        by the k0 imputed ones) and ``fill`` (True for imputed rows). For R0 also ``p_k0``.
    """
    y0, v0 = _as_yv(yi, vi)
    m = _method(method)
    est = str(estimator).upper()
    if est not in ("L0", "R0", "Q0"):
        raise InputError(f"estimator must be 'L0', 'R0' or 'Q0'; got {estimator!r}")
    k = y0.size
    if k < 2:
        raise InputError("trim-and-fill needs at least 2 estimates")

    def fit(yv, vv, X=None):
        X = np.ones((yv.size, 1)) if X is None else X
        return _fit_uni(yv, vv, X, m, threshold, 1000, level)

    if side is None:
        reg = fit(y0, v0, np.column_stack([np.ones(k), np.sqrt(v0)]))
        side = "right" if reg["beta"][1] < 0 else "left"
    else:
        side = str(side).lower()
        if side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right'; got {side!r}")
    sgn = -1.0 if side == "right" else 1.0
    ys = sgn * y0
    ix = np.argsort(ys, kind="stable")
    ys = ys[ix]
    vs = v0[ix]

    k0_prev, k0, it = -1, 0, 0
    beta = se_k0 = float("nan")
    yc = ys
    while k0 != k0_prev:
        k0_prev = k0
        it += 1
        if it > maxiter:
            raise ConvergenceError("trim-and-fill algorithm did not converge")
        beta = float(fit(ys[: k - k0], vs[: k - k0])["beta"][0])
        yc = ys - beta
        ranks = stats.rankdata(np.abs(yc), method="ordinal")
        signed = np.sign(yc) * ranks
        if est == "R0":
            neg = signed[signed < 0]
            if neg.size == 0:
                raise ConvergenceError("R0 estimator undefined: no estimate below the centre")
            k0 = (k - np.max(-neg)) - 1
            se_k0 = math.sqrt(2 * max(0, k0) + 2)
        else:
            Sr = float(np.sum(signed[signed > 0]))
            if est == "L0":
                k0 = (4 * Sr - k * (k + 1)) / (2 * k - 1)
            else:
                disc = 2 * k ** 2 - 4 * Sr + 0.25
                if disc < 0:
                    raise ConvergenceError(
                        f"trim-and-fill Q0 estimator is undefined for these data (2k^2 - 4 S_r "
                        f"+ 1/4 = {disc:.4g} < 0 at iteration {it}); use estimator='L0'")
                k0 = k - 0.5 - math.sqrt(disc)
            var_sr = (k * (k + 1) * (2 * k + 1) + 10 * k0 ** 3 + 27 * k0 ** 2 + 17 * k0
                      - 18 * k * k0 ** 2 - 18 * k * k0 + 6 * k ** 2 * k0) / 24
            den = (k - 0.5) ** 2 - k0 * (2 * k - k0 - 1)
            if var_sr < 0 or (est == "Q0" and den <= 0):
                se_k0 = float("nan")  # the variance formula breaks down: no SE for k0
            elif est == "L0":
                se_k0 = 4 * math.sqrt(var_sr) / (2 * k - 1)
            else:
                se_k0 = 2 * math.sqrt(var_sr) / math.sqrt(den)
        k0 = int(max(0, round(float(k0))))  # R and Python both round half to even
        se_k0 = max(0.0, float(se_k0)) if np.isfinite(se_k0) else float("nan")
        if k0 >= k:
            raise ConvergenceError(f"trim-and-fill estimated k0 = {k0} >= k = {k}")

    if k0 > 0:
        # mirror the k0 largest (on the flipped scale) about beta, back on the original scale
        yfill = sgn * (2 * beta - ys[k - k0:])
        if ilim is not None:
            lo, hi = sorted(float(x) for x in ilim)
            yfill = np.clip(yfill, lo, hi)
        y_all = np.concatenate([y0, yfill])
        v_all = np.concatenate([v0, vs[k - k0:]])
        final = fit(y_all, v_all)
    else:
        y_all, v_all = y0.copy(), v0.copy()
        final = fit(y0, v0)
    out = _scalar_fit(final)
    out.pop("logLik")
    out.update({"k0": k0, "se_k0": se_k0, "side": side, "yi_filled": y_all,
                "vi_filled": v_all, "fill": np.r_[np.zeros(k, bool), np.ones(k0, bool)],
                "estimator": est})
    if est == "R0":
        # metafor: 1 - sum_{m=-1}^{k0-1} choose(m+1, m+1) 0.5^(m+2) = 0.5^(k0+1)
        out["p_k0"] = 0.5 ** (k0 + 1)
    return out


# ====================================================================== selection model
class _StepLik:
    r"""Log-likelihood of the step-function selection model (intercept only, preci = 1).

    Study i is observed with probability proportional to :math:`\delta_{g(p_i)}`, where
    :math:`g(p)` is the interval :math:`(s_{j-1}, s_j]` of the step cut-points that holds its
    p-value (:math:`s_0 = 0`, :math:`s_N = 1`, :math:`\delta_1 = 1`). With
    :math:`\sigma_i^2 = v_i + \tau^2`,

    .. math:: \ell = \sum_i \Big[\log\delta_{g(p_i)} + \log\phi(y_i; \mu, \sigma_i^2)
              - \log A_i\Big], \qquad A_i = \sum_j \delta_j \pi_{ij},

    :math:`\pi_{ij} = \Pr(s_{j-1} < p(Y) \le s_j)` for :math:`Y \sim N(\mu, \sigma_i^2)`, where
    for ``alternative="greater"`` :math:`p(y) \le s \iff y \ge \sqrt{v_i}\,\Phi^{-1}(1-s)`.
    """

    def __init__(self, y, v, steps, alternative):
        self.y, self.v = y, v
        self.steps = steps
        self.alt = alternative
        self.N = steps.size
        sv = np.sqrt(v)[:, None]
        s = steps[None, :-1]  # interior cut-points s_1..s_{N-1}
        if alternative == "greater":
            self.c = sv * ndtri(1 - s)
        elif alternative == "less":
            self.c = sv * ndtri(s)
        else:
            self.c = sv * ndtri(1 - s / 2)
        with np.errstate(divide="ignore"):
            z = y / np.sqrt(v)
        if alternative == "greater":
            p = ndtr(-z)
        elif alternative == "less":
            p = ndtr(z)
        else:
            p = 2 * ndtr(-np.abs(z))
        self.pvals = p
        self.grp = np.searchsorted(steps, p, side="left")  # first j with p <= s_j (0-based)

    # --- tail probabilities F(s_j) = P(p(Y) <= s_j) and their derivatives in (mu, tau2)
    def _tails(self, mu, s2):
        s = np.sqrt(s2)[:, None]
        c = self.c
        phi = stats.norm.pdf

        def fu(u):  # phi(u) and u phi(u), 0 at u = +-inf (cut-points at p = 0 or 1)
            f = phi(u)
            return f, np.where(np.isfinite(u), f * np.where(np.isfinite(u), u, 0.0), 0.0)

        def upper(cc):  # P(Y >= cc), d/dmu, d/dtau2
            u = (cc - mu) / s
            f, fu_ = fu(u)
            return ndtr(-u), f / s, fu_ / (2 * s ** 2)

        def lower(cc):  # P(Y <= cc)
            u = (cc - mu) / s
            f, fu_ = fu(u)
            return ndtr(u), -f / s, -fu_ / (2 * s ** 2)

        if self.alt == "greater":
            F, Fm, Ft = upper(c)
            G, Gm, Gt = lower(c)  # complements
        elif self.alt == "less":
            F, Fm, Ft = lower(c)
            G, Gm, Gt = upper(c)
        else:
            a, am, at = upper(c)
            b, bm, bt = lower(-c)
            F, Fm, Ft = a + b, am + bm, at + bt
            # complement P(-c < Y < c)
            G = ndtr((c - mu) / s) - ndtr((-c - mu) / s)
            Gm, Gt = -Fm, -Ft
        return F, Fm, Ft, G, Gm, Gt

    def _intervals(self, mu, s2):
        """pi_ij and derivatives, j = 1..N (columns)."""
        F, Fm, Ft, G, Gm, Gt = self._tails(mu, s2)
        k = self.y.size
        if self.N == 1:
            one = np.ones((k, 1))
            zero = np.zeros((k, 1))
            return one, zero, zero
        pi = np.empty((k, self.N))
        pm = np.empty((k, self.N))
        pt = np.empty((k, self.N))
        pi[:, 0], pm[:, 0], pt[:, 0] = F[:, 0], Fm[:, 0], Ft[:, 0]
        if self.N > 2:
            pi[:, 1:-1] = F[:, 1:] - F[:, :-1]
            pm[:, 1:-1] = Fm[:, 1:] - Fm[:, :-1]
            pt[:, 1:-1] = Ft[:, 1:] - Ft[:, :-1]
        pi[:, -1], pm[:, -1], pt[:, -1] = G[:, -1], Gm[:, -1], Gt[:, -1]
        return pi, pm, pt

    def loglik(self, mu, tau2, delta, grad: bool = False):
        """l(mu, tau2, delta) and optionally its gradient in (mu, tau2, delta_1..N)."""
        y, v = self.y, self.v
        tau2 = 0.0 if tau2 < 10 * _EPS else tau2  # as metafor
        s2 = v + tau2
        pi, pm, pt = self._intervals(mu, s2)
        A = pi @ delta
        dg = delta[self.grp]
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = float(np.sum(np.log(dg) - 0.5 * np.log(2 * np.pi * s2)
                              - 0.5 * (y - mu) ** 2 / s2 - np.log(A)))
        if not grad:
            return ll
        e = y - mu
        g_mu = float(np.sum(e / s2 - (pm @ delta) / A))
        g_t2 = float(np.sum(-0.5 / s2 + 0.5 * e ** 2 / s2 ** 2 - (pt @ delta) / A))
        cnt = np.bincount(self.grp, minlength=self.N)
        g_d = cnt / delta - np.sum(pi / A[:, None], axis=0)
        return ll, g_mu, g_t2, g_d


_DMAX = 100.0  # metafor's delta.max for stepfun (delta.min = 0): delta = 100 / (1 + exp(-x))


def _delta_of(x):
    return _DMAX / (1 + np.exp(-x))


def _genD_hessian(f, x, r: int = 6, d: float = 0.1, eps: float = 1e-4):
    """Hessian of f at x by Richardson extrapolation of central differences.

    The scheme of R's numDeriv::hessian (genD, v = 2; hessian's defaults d = 0.1, eps = 1e-4,
    zero.tol = sqrt(machine eps / 7e-7)) with metafor's ``r = 6``: initial steps
    h = |d x| + eps [|x| < zero.tol], halved r - 1 times; diagonal entries from
    (f(x+h) - 2f(x) + f(x-h)) / h^2, off-diagonal ones from the double steps x +- (h_i e_i +
    h_j e_j) minus the diagonal parts; each sequence extrapolated with factors 4^m.
    """
    n = x.size
    zero_tol = math.sqrt(_EPS / 7e-7)
    h0 = np.abs(d * x) + eps * (np.abs(x) < zero_tol)
    f0 = f(x)
    H = np.zeros((n, n))

    def extrapolate(a):
        a = list(a)
        for m in range(1, r):
            for kk in range(r - m):
                a[kk] = (a[kk + 1] * 4 ** m - a[kk]) / (4 ** m - 1)
        return a[0]

    for i in range(n):
        h = h0.copy()
        seq = []
        for _ in range(r):
            e = np.zeros(n)
            e[i] = h[i]
            seq.append((f(x + e) - 2 * f0 + f(x - e)) / h[i] ** 2)
            h = h / 2
        H[i, i] = extrapolate(seq)
    for i in range(n):
        for j in range(i):
            h = h0.copy()
            seq = []
            for _ in range(r):
                e = np.zeros(n)
                e[i] = h[i]
                e[j] = h[j]
                seq.append((f(x + e) - 2 * f0 + f(x - e) - H[i, i] * h[i] ** 2
                            - H[j, j] * h[j] ** 2) / (2 * h[i] * h[j]))
                h = h / 2
            H[i, j] = H[j, i] = extrapolate(seq)
    return H


def _minimize(fun, x0):
    """Minimise a smooth function with analytic gradient: BFGS, then Newton polishing."""
    res = optimize.minimize(fun, x0, jac=True, method="BFGS",
                            options={"gtol": 1e-10, "maxiter": 5000})
    x = res.x
    fx, g = fun(x)
    # Newton steps with a Hessian from central differences of the analytic gradient
    for _ in range(50):
        if np.max(np.abs(g)) < 1e-12:
            break
        n = x.size
        H = np.empty((n, n))
        for i in range(n):
            h = 1e-5 * max(1.0, abs(x[i]))
            e = np.zeros(n)
            e[i] = h
            H[:, i] = (fun(x + e)[1] - fun(x - e)[1]) / (2 * h)
        H = (H + H.T) / 2
        try:
            np.linalg.cholesky(H)
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        improved = False
        while t > 1e-8:
            xn = x + t * step
            fn, gn = fun(xn)
            if np.isfinite(fn) and fn <= fx + 1e-14 * abs(fx):
                improved = True
                break
            t /= 2
        if not improved:
            break
        if np.max(np.abs(gn)) >= np.max(np.abs(g)) and fn >= fx:
            break
        x, fx, g = xn, fn, gn
    return x, fx, g


def selmodel_stepfun(yi, vi, steps: Sequence[float] = (0.025, 1.0), method: str = "ML", *,
                     alternative: str = "greater", level: float = 95,
                     threshold: float = 1e-10) -> dict:
    r"""Step-function selection model (Hedges 1992; Vevea & Hedges 1995).

    metafor's ``selmodel(rma(yi, vi, method = method), type = "stepfun", steps = steps)``.
    The observed estimates follow the random-effects model weighted by a step function of
    their one-sided p-values :math:`p_i = 1 - \Phi(y_i / \sqrt{v_i})` (``alternative =
    "greater"``): relative publication probability :math:`\delta_j` for p-values in
    :math:`(s_{j-1}, s_j]`, :math:`\delta_1 = 1` fixed. The log-likelihood is

    .. math:: \ell(\mu, \tau^2, \delta) = \sum_i \Big[\log\delta_{g(p_i)}
              + \log\phi(y_i; \mu, v_i + \tau^2) - \log \sum_j \delta_j \pi_{ij}\Big]

    with :math:`\pi_{ij}` the probability that an estimate drawn from
    :math:`N(\mu, v_i + \tau^2)` has its p-value in interval j. With the default steps
    (0.025, 1) this is the three-parameter selection model (3PSM).

    Estimation (as metafor): the model is first fitted by ML (a REML fit is refitted by ML);
    the ML estimates start the maximisation of :math:`\ell` over :math:`(\mu, \log(\tau^2),
    \mathrm{logit}(\delta_j/100))` (metafor bounds :math:`\delta_j` in (0, 100)); the start is
    :math:`(\hat\mu_{ML}, \log(\hat\tau^2_{ML} + 0.001), \mathrm{logit}(0.01))`. Standard
    errors come from the inverse Hessian of :math:`-\ell` on the untransformed scale
    :math:`(\mu, \tau^2, \delta_2, \dots)`, computed by Richardson extrapolation exactly as
    metafor does (numDeriv's ``hessian`` with ``r = 6``). The CI of :math:`\mu` is Wald-type;
    the likelihood-ratio test of :math:`H_0: \delta_2 = \dots = \delta_N = 1` compares
    :math:`\ell` with the log-likelihood of the ML random-effects model, on
    :math:`N - 1` degrees of freedom.

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (> 0).
    steps : sequence of float
        Cut-points in [0, 1] for the p-values; sorted, made unique, and 1 appended if missing.
    method : {"ML", "REML", "EE", "FE", "CE"}
        Method of the model the selection model is based on: ML and REML both lead to the ML
        fit (metafor refits REML models by ML); EE/FE/CE fix :math:`\tau^2 = 0`.
    alternative : {"greater", "less", "two.sided"}
        Direction of the p-values that drive selection.
    level : float
        Confidence level in percent.
    threshold : float
        Fisher-scoring threshold of the ML starting fit (see :func:`rma_uni`).

    Returns
    -------
    dict
        ``beta``, ``se``, ``zval``, ``pval_beta``, ``ci_lb``, ``ci_ub`` (Wald, for
        :math:`\mu`); ``tau2``, ``se_tau2``, ``tau2_ci_lb``, ``tau2_ci_ub``; ``delta`` (array,
        first = 1), ``se_delta`` (NaN for the fixed first one), ``delta_ci_lb``,
        ``delta_ci_ub``; ``LRT``, ``LRT_df``, ``pval`` (LRT p-value), ``ll`` (at the
        estimates), ``ll0`` (ML random-effects model), ``LRT_tau2`` and ``pval_tau2`` (LRT of
        :math:`\tau^2 = 0` within the selection model), ``steps``, ``ptable`` (number of
        p-values per interval), ``hessian``.

    Raises
    ------
    InputError
        If an interval whose :math:`\delta` is estimated contains no p-value, or there are too
        few estimates.
    """
    y, v = _as_yv(yi, vi)
    m = _method(method)
    if m == "DL":
        raise InputError("selmodel needs a model fitted by ML, REML or EE (metafor refits "
                         "random-effects models by ML)")
    alt = str(alternative).lower()
    if alt not in ("greater", "less", "two.sided"):
        raise InputError(f"alternative must be 'greater', 'less' or 'two.sided'; "
                         f"got {alternative!r}")
    st = np.unique(np.asarray(steps, dtype=float))
    if st.size == 0 or np.any(np.isnan(st)) or np.any((st < 0) | (st > 1)):
        raise InputError("steps must be values between 0 and 1")
    if st[-1] != 1:
        st = np.r_[st, 1.0]
    N = st.size
    fixed_tau2 = m in _EE_METHODS
    base = _fit_uni(y, v, np.ones((y.size, 1)), "EE" if fixed_tau2 else "ML", threshold,
                    1000, level)
    k = y.size
    nfree = N - 1
    if k < 1 + (0 if fixed_tau2 else 1) + nfree:
        raise InputError(f"number of studies (k = {k}) is too small to fit the selection model")
    L = _StepLik(y, v, st, alt)
    ptable = np.bincount(L.grp, minlength=N)
    if np.any(ptable[1:] == 0):
        raise InputError("one or more intervals do not contain any observed p-values: "
                         + ", ".join(f"({lo:g}, {hi:g}]" for lo, hi, n in
                                     zip(np.r_[0, st[:-1]], st, ptable) if n == 0))

    def unpack(theta):
        mu = theta[0]
        if fixed_tau2:
            t2, xd = 0.0, theta[1:]
        else:
            t2, xd = math.exp(theta[1]), theta[2:]
        return mu, t2, np.r_[1.0, _delta_of(xd)]

    def nll(theta):
        mu, t2, dl = unpack(theta)
        ll, gm, gt, gd = L.loglik(mu, t2, dl, grad=True)
        if not np.isfinite(ll):
            return np.inf, np.zeros_like(theta)
        dd = dl[1:] * (1 - dl[1:] / _DMAX)  # d delta / d x
        g = [gm] + ([] if fixed_tau2 else [gt * t2]) + list(gd[1:] * dd)
        return -ll, -np.asarray(g, dtype=float)

    x_init = math.log(1 / (_DMAX - 1))  # logit-type map of delta = 1 on (0, 100)
    theta0 = np.r_[base["beta"][0], [] if fixed_tau2 else [math.log(base["tau2"] + 0.001)],
                   np.full(nfree, x_init)]
    theta, fmin, g = _minimize(nll, theta0)
    if not np.isfinite(fmin):
        raise ConvergenceError("selection model: the likelihood could not be maximised")
    mu, tau2, delta = unpack(theta)
    if tau2 < 10 * _EPS:
        tau2 = 0.0
    ll = -float(fmin)
    if np.any(delta[1:] <= _EPS ** 0.25) or np.any(delta[1:] >= _DMAX - 100 * _EPS ** 0.25):
        warnings.warn("one or more delta estimates are (almost) equal to their bound (0 or 100);"
                      " treat the results with caution", FitWarning, stacklevel=2)

    # Hessian of -ll on the untransformed scale (mu, tau2, delta_2..N), as metafor
    def nll_raw(x):
        if fixed_tau2:
            return -L.loglik(x[0], 0.0, np.r_[1.0, x[1:]])
        return -L.loglik(x[0], x[1], np.r_[1.0, x[2:]])

    xr = np.r_[mu, [] if fixed_tau2 else [tau2], delta[1:]]
    crit = _crit(level)
    se = se_tau2 = float("nan")
    se_delta = np.full(N, np.nan)
    with np.errstate(all="ignore"):
        H = _genD_hessian(nll_raw, xr)
    try:
        if not np.all(np.isfinite(H)):
            raise np.linalg.LinAlgError
        C = np.linalg.cholesky(H)
        Ci = np.linalg.inv(C)
        iH = Ci.T @ Ci
        se = float(math.sqrt(iH[0, 0]))
        if not fixed_tau2:
            se_tau2 = float(math.sqrt(iH[1, 1]))
        se_delta[1:] = np.sqrt(np.diag(iH)[(1 if fixed_tau2 else 2):])
    except np.linalg.LinAlgError:
        warnings.warn("could not invert the Hessian of the selection model; standard errors "
                      "are NaN", FitWarning, stacklevel=2)
    z = mu / se
    d_lb = np.maximum(delta - crit * se_delta, 0.0)
    d_ub = delta + crit * se_delta
    t_lb = max(0.0, tau2 - crit * se_tau2) if np.isfinite(se_tau2) else float("nan")
    t_ub = tau2 + crit * se_tau2

    # LRT of tau2 = 0 inside the selection model (metafor's heterogeneity test)
    LRT_tau2 = pval_tau2 = float("nan")
    if not fixed_tau2:
        def nll0(th):
            dl = np.r_[1.0, _delta_of(th[1:])]
            ll0_, gm, _, gd = L.loglik(th[0], 0.0, dl, grad=True)
            if not np.isfinite(ll0_):
                return np.inf, np.zeros_like(th)
            dd = dl[1:] * (1 - dl[1:] / _DMAX)
            return -ll0_, -np.r_[gm, gd[1:] * dd]

        th0, f0, _ = _minimize(nll0, np.r_[base["beta"][0], np.full(nfree, x_init)])
        if np.isfinite(f0):
            LRT_tau2 = max(0.0, -2 * (-f0 - ll))
            pval_tau2 = float(stats.chi2.sf(LRT_tau2, 1))

    ll0 = float(base["logLik"])
    LRT = max(0.0, -2 * (ll0 - ll))
    return {
        "beta": float(mu), "se": se, "zval": float(z), "pval_beta": float(2 * ndtr(-abs(z))),
        "ci_lb": float(mu - crit * se), "ci_ub": float(mu + crit * se),
        "tau2": float(tau2), "se_tau2": se_tau2, "tau2_ci_lb": t_lb, "tau2_ci_ub": t_ub,
        "delta": delta, "se_delta": se_delta, "delta_ci_lb": d_lb, "delta_ci_ub": d_ub,
        "LRT": float(LRT), "LRT_df": int(nfree),
        "pval": float(stats.chi2.sf(LRT, nfree)) if nfree > 0 else float("nan"),
        "ll": ll, "ll0": ll0, "LRT_tau2": LRT_tau2, "pval_tau2": pval_tau2,
        "steps": st, "ptable": ptable, "hessian": H, "k": k, "alternative": alt,
    }


# ========================================================================= all together
def aggregated_bias(res, rho: float = 0.5, *, steps: Sequence[float] = (0.025, 1.0),
                    level: float = 95, threshold: float = 1e-10) -> dict:
    r"""Publication-bias checks of a multilevel model on per-cluster aggregated estimates.

    The estimates of ``res`` (``res.data.y``, ``res.data.v``) are aggregated within the
    clusters of its outer random level with within-cluster sampling correlation ``rho``
    (:func:`aggregate`); the two-level random-effects model is fitted to the aggregates by REML
    (:func:`rma_uni`), and on them are run: the rank correlation test (:func:`ranktest`),
    trim-and-fill (:func:`trimfill`, L0, REML) and the step-function selection model
    (:func:`selmodel_stepfun`, refitted by ML as metafor's ``selmodel(rma(yi, vi, data=agg),
    type = "stepfun", steps = steps)`` does). Moderators of ``res`` are ignored: the methods
    concern the overall effect.

    Parameters
    ----------
    res : mlmeta.results.MetaResults
        A fitted model with at least one random level (its outer level defines the clusters).
    rho : float
        Assumed within-cluster sampling correlation (results are usually reported for a few
        values, e.g. 0.5 and 0.8).
    steps : sequence of float
        Cut-points of the selection model's step function.
    level : float
        Confidence level in percent.
    threshold : float
        Fisher-scoring threshold of the model fits (see :func:`rma_uni`).

    Returns
    -------
    dict
        ``aggregate`` (DataFrame: cluster, yi, vi), ``rma_agg`` (beta, se, zval, pval, ci_lb,
        ci_ub, tau2, ...), ``ranktest``, ``trimfill``, ``selmodel`` (the dicts of the
        functions above), and ``rho``.
    """
    codes, labels = res.cluster_codes(None)
    # codes are 0..C-1 in the order of the sorted labels, so the aggregated rows line up
    agg = aggregate(res.data.y, res.data.v, codes, rho)
    agg["cluster"] = labels
    y, v = agg["yi"].to_numpy(), agg["vi"].to_numpy()
    return {
        "rho": float(rho),
        "aggregate": agg,
        "rma_agg": rma_uni(y, v, "REML", level=level, threshold=threshold),
        "ranktest": ranktest(y, v),
        "trimfill": trimfill(y, v, method="REML", level=level, threshold=threshold),
        "selmodel": selmodel_stepfun(y, v, steps, method="REML", level=level,
                                     threshold=threshold),
    }
