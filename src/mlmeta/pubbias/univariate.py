"""The two-level random-effects model fitted to independent (e.g. aggregated) estimates.

metafor's ``rma.uni`` algorithms: Fisher scoring for ML/REML from the Hedges estimate, the
DerSimonian-Laird moment estimator, and the equal-effects model. :func:`fit_uni` is the
matrix version (any fixed-effects design X) used by trim-and-fill, the selection model and
the regression test; :func:`rma_uni` is the intercept-only public entry point.

References
----------
DerSimonian, R., & Laird, N. (1986). Meta-analysis in clinical trials. *Controlled Clinical
Trials, 7*, 177-188.
Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in the
random-effects model. *Journal of Educational and Behavioral Statistics, 30*, 261-293.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import ndtr

from mlmeta.errors import ConvergenceError, FitWarning, InputError
from mlmeta.pubbias._checks import EE_METHODS, EPS, as_yv, check_method, z_crit

__all__ = ["fit_uni", "rma_uni", "scalar_fit"]


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
    w, _, beta = _wls(y, v, X, tau2)
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    if not reml:
        return -0.5 * k * math.log(2 * math.pi) - 0.5 * np.sum(np.log(v + tau2)) - 0.5 * rss
    _, ldxx = np.linalg.slogdet(X.T @ X)
    _, ldxwx = np.linalg.slogdet(X.T @ (X * w[:, None]))
    return (
        -0.5 * (k - p) * math.log(2 * math.pi)
        + 0.5 * ldxx
        - 0.5 * np.sum(np.log(v + tau2))
        - 0.5 * ldxwx
        - 0.5 * rss
    )


def _tau2_uni(y, v, X, method: str, threshold: float, maxiter: int) -> float:
    """tau^2 of the two-level model by metafor's rma.uni algorithms.

    ML / REML: Fisher scoring from the Hedges (HE) estimate, step-halving to stay >= 0, until
    the change is < ``threshold``; then metafor's check that tau^2 = 0 does not have a larger
    likelihood. DL: the DerSimonian-Laird moment estimator, truncated at 0.
    """
    k, p = X.shape
    if method in EE_METHODS:
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
            raise ConvergenceError(
                f"Fisher scoring for tau^2 ({method}) did not converge in {maxiter} iterations"
            )
        old = tau2
        w, Ainv, _ = _wls(y, v, X, tau2)
        P = _proj(w, X, Ainv)
        Py = P @ y
        if reml:
            adj = (float(Py @ Py) - float(np.trace(P))) / float(np.sum(P * P))
        else:
            adj = (float(Py @ Py) - float(np.sum(w))) / float(np.sum(w**2))
        if not np.isfinite(adj):
            adj = 0.0
        while tau2 + adj < 0:
            adj /= 2
        tau2 = tau2 + adj
        change = abs(old - tau2)
    # metafor's ll0check: tau^2 = 0 if it has the larger (restricted) likelihood
    if tau2 > threshold and (
        _loglik(y, v, X, 0.0, reml) - _loglik(y, v, X, tau2, reml) > EPS**0.25
    ):
        warnings.warn(
            "Fisher scoring may have stopped at a local maximum; setting tau^2 = 0",
            FitWarning,
            stacklevel=3,
        )
        tau2 = 0.0
    return max(0.0, tau2)


def fit_uni(
    y, v, X, method: str, threshold: float = 1e-10, maxiter: int = 1000, level: float = 95
) -> dict:
    r"""Mixed-effects meta-regression :math:`y = X\beta + u + e` of independent estimates.

    :math:`u_i \sim N(0, \tau^2)`, :math:`e_i \sim N(0, v_i)`; :math:`\tau^2` by ``method``
    (see :func:`rma_uni`), then weighted least squares with :math:`w_i = 1/(v_i + \tau^2)`:
    :math:`\hat\beta = (X'WX)^{-1}X'Wy`, :math:`\mathrm{Var}(\hat\beta) = (X'WX)^{-1}`,
    Wald z tests and CIs (metafor's ``rma.uni`` with ``test = "z"``; Viechtbauer 2010).

    Parameters
    ----------
    y, v : numpy.ndarray
        Estimates and sampling variances (already checked, vi > 0).
    X : numpy.ndarray
        k x p design matrix of full column rank.
    method : str
        One of :data:`~mlmeta.pubbias._checks.METHODS` (upper case).
    threshold, maxiter : float, int
        Fisher-scoring stopping rule and iteration limit.
    level : float
        Confidence level in percent.

    Returns
    -------
    dict
        Arrays ``beta``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, matrix ``vb``; and
        ``tau2``, ``se_tau2``, ``k``, ``method``, ``logLik`` (restricted for REML).
    """
    k, p = X.shape
    tau2 = _tau2_uni(y, v, X, method, threshold, maxiter)
    w, Ainv, beta = _wls(y, v, X, tau2)
    se = np.sqrt(np.diag(Ainv))
    z = beta / se
    crit = z_crit(level)
    reml = method == "REML"
    out = {
        "beta": beta,
        "se": se,
        "zval": z,
        "pval": 2 * ndtr(-np.abs(z)),
        "ci_lb": beta - crit * se,
        "ci_ub": beta + crit * se,
        "vb": Ainv,
        "tau2": float(tau2),
        "k": k,
        "method": method,
        "logLik": float(_loglik(y, v, X, tau2, reml)),
    }
    if method == "REML":
        P = _proj(w, X, Ainv)
        out["se_tau2"] = float(math.sqrt(2 / np.sum(P * P)))
    elif method == "ML":
        out["se_tau2"] = float(math.sqrt(2 / np.sum(w**2)))
    elif method == "DL":
        w0 = 1.0 / v
        _, A0, _ = _wls(y, v, X, 0.0)
        P = _proj(w0, X, A0)
        trP = float(np.trace(P))
        out["se_tau2"] = float(
            math.sqrt((2 * (k - p) + 4 * tau2 * trP + 2 * tau2**2 * np.sum(P * P)) / trP**2)
        )
    else:
        out["se_tau2"] = float("nan")
    return out


def rma_uni(
    yi,
    vi,
    method: str = "REML",
    *,
    level: float = 95,
    threshold: float = 1e-10,
    maxiter: int = 1000,
) -> dict:
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
    y, v = as_yv(yi, vi)
    m = check_method(method)
    fit = fit_uni(y, v, np.ones((y.size, 1)), m, threshold, maxiter, level)
    return scalar_fit(fit)


def scalar_fit(fit: dict) -> dict:
    """The intercept of a :func:`fit_uni` result as floats (beta, se, zval, pval, ci_lb, ci_ub),
    with tau2, se_tau2, k, logLik and method."""
    out = {}
    for key in ("beta", "se", "zval", "pval", "ci_lb", "ci_ub"):
        out[key] = float(fit[key][0])
    for key in ("tau2", "se_tau2", "k", "logLik", "method"):
        out[key] = fit[key]
    return out
