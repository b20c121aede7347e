"""Tests of the fixed effects, heterogeneity test and fit statistics, as metafor defines them.

References: Viechtbauer (2010), metafor 3.8-1 ``rma.mv`` and ``fitstats``; containment degrees
of freedom as in metafor's ``dfs="contain"`` (after SAS PROC MIXED's DDFM=CONTAIN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmeta.core.dist import chi2_sf, f_sf, norm_isf, norm_sf, t_isf, t_sf
from mlmeta.core.likelihood import LOG2PI

__all__ = [
    "CoefTests",
    "coef_tests",
    "contain_df",
    "contain_df_leave_out",
    "default_btt",
    "fit_statistics",
    "omnibus_test",
    "qe_test",
    "qe_test_blocks",
]


def contain_df(X: np.ndarray, level_codes: list[np.ndarray], n_groups: list[int]) -> np.ndarray:
    """Containment degrees of freedom per coefficient (metafor's ``dfs = "contain"``).

    For column ``j`` of ``X``, among the random-effect levels within whose groups ``X[:, j]`` is
    constant, take the smallest number of groups (``k`` when there is none); subtract ``p``;
    values below 1 become 1.
    """
    k, p = X.shape
    out = np.full(p, k, dtype=float)
    for j in range(p):
        best = k
        for codes, ng in zip(level_codes, n_groups):
            x = X[:, j]
            o = np.lexsort((x, codes))
            cs, xs = codes[o], x[o]
            same_group = cs[1:] == cs[:-1]
            varies = np.any(same_group & (xs[1:] != xs[:-1]))
            if not varies:
                best = min(best, ng)
        out[j] = best
    out = out - p
    out[out < 1] = 1
    return out


def contain_df_leave_out(
    X: np.ndarray, level_codes: list[np.ndarray], n_groups: list[int], top: np.ndarray
) -> np.ndarray:
    """Containment df of every leave-one-outer-cluster-out refit at once (rows: clusters).

    The rule of :func:`contain_df` applied to the rows outside each cluster ``c`` of ``top``
    (outer codes 0..J-1): a column is constant within the level-``l`` groups of the remaining
    rows unless some group outside ``c`` varies, and the remaining level has
    ``n_groups[l] - (groups of c)`` groups.
    """
    k, p = X.shape
    J = int(top.max()) + 1
    kc = np.bincount(top, minlength=J).astype(float)
    best = np.repeat((k - kc)[:, None], p, axis=1)
    for codes, ng in zip(level_codes, n_groups):
        first = np.zeros(ng, dtype=np.int64)
        first[codes[::-1]] = np.arange(k)[::-1]
        g_top = top[first]
        ng_c = np.bincount(g_top, minlength=J).astype(float)
        for j in range(p):
            x = X[:, j]
            lo = np.full(ng, np.inf)
            hi = np.full(ng, -np.inf)
            np.minimum.at(lo, codes, x)
            np.maximum.at(hi, codes, x)
            vary = lo != hi
            n_vary_c = np.bincount(g_top, weights=vary.astype(float), minlength=J)
            const = (vary.sum() - n_vary_c) == 0
            cand = np.where(const, ng - ng_c, np.inf)
            best[:, j] = np.minimum(best[:, j], cand)
    out = best - p
    out[out < 1] = 1
    return out


def default_btt(names: tuple[str, ...] | list[str], has_intercept: bool) -> np.ndarray:
    """Coefficients tested by the omnibus test: all but the intercept (metafor's default)."""
    p = len(names)
    if has_intercept and p > 1:
        return np.array([j for j, n in enumerate(names) if n != "intrcpt"], dtype=int)
    return np.arange(p)


@dataclass(frozen=True)
class CoefTests:
    se: np.ndarray
    stat: np.ndarray
    df: np.ndarray | None
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    crit: np.ndarray


def coef_tests(
    beta: np.ndarray, vcov: np.ndarray, df: np.ndarray | None, level: float = 0.95
) -> CoefTests:
    """Wald z (``df=None``) or t tests and confidence intervals for each coefficient."""
    se = np.sqrt(np.diag(vcov))
    stat = beta / se
    a = 1.0 - level
    if df is None:
        pval = 2.0 * norm_sf(np.abs(stat))
        crit = np.full(len(beta), norm_isf(a / 2.0))
    else:
        df = np.asarray(df, dtype=float)
        pval = 2.0 * t_sf(np.abs(stat), df)
        crit = t_isf(a / 2.0, df)
    return CoefTests(
        se, stat, None if df is None else df, pval, beta - crit * se, beta + crit * se, crit
    )


def omnibus_test(
    beta: np.ndarray, vcov: np.ndarray, btt: np.ndarray, df: np.ndarray | None
) -> tuple[float, tuple[int, float | None], float]:
    """Wald test of ``beta[btt] = 0``: chi-square (z tests) or F with ``min(df[btt])`` (t tests).

    QM = b' V_b^{-1} b (divided by m for the F form), as metafor's ``QM``.
    """
    b = beta[btt]
    Vb = vcov[np.ix_(btt, btt)]
    m = len(btt)
    QM = float(b @ np.linalg.solve(Vb, b))
    if df is None:
        return QM, (m, None), float(chi2_sf(QM, m))
    d2 = float(np.min(np.asarray(df)[btt]))
    QM /= m
    return QM, (m, d2), float(f_sf(QM, m, d2))


def qe_test(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> tuple[float, int, float]:
    """Test of residual heterogeneity: QE = y'(W - W X (X'WX)^{-1} X'W) y with W = diag(1/v).

    df = k - p; a saturated model gives QE = 0, p = 1 (metafor's convention).
    """
    k, p = X.shape
    if k - p <= 0:
        return 0.0, k - p, 1.0
    w = 1.0 / v
    Xw = X * w[:, None]
    b = np.linalg.solve(X.T @ Xw, Xw.T @ y) if p else np.zeros(0)
    r = y - X @ b
    QE = float(np.sum(w * r * r))
    return QE, k - p, float(chi2_sf(QE, k - p))


def qe_test_blocks(y: np.ndarray, X: np.ndarray, problem) -> tuple[float, int, float]:
    """QE with a block sampling covariance R: y'(R^{-1} - R^{-1}X(X'R^{-1}X)^{-1}X'R^{-1})y.

    ``problem`` is a dense problem; evaluating it with all variance components at 0 gives
    C = M'R^{-1}M, from which QE is the GLS residual sum of squares.
    """
    k, p = X.shape
    if k - p <= 0:
        return 0.0, k - p, 1.0
    L = problem.st.n_levels
    ev = problem(np.zeros(L), 0)
    C = ev.C
    QE = float(C[p, p] - C[:p, p] @ np.linalg.solve(C[:p, :p], C[:p, p])) if p else float(C[0, 0])
    return QE, k - p, float(chi2_sf(QE, k - p))


def fit_statistics(
    ll: float,
    method: str,
    k: int,
    p: int,
    n_par_var: int,
    v: np.ndarray | None,
    logdet_v: float | None = None,
) -> dict[str, float]:
    """logLik, deviance, AIC, BIC and AICc exactly as metafor's ``fitstats`` for rma.mv.

    parms = p + number of *estimated* variance components. For REML the sample size in BIC and
    AICc is k - p and the deviance is -2 ll; for ML the deviance is relative to the saturated
    model, -2 (ll - ll_sat) with ll_sat = -k/2 log(2 pi) - 1/2 sum log v (``logdet_v``, when
    given, replaces ``sum log v``: log|V| of a non-diagonal sampling covariance).
    """
    parms = p + n_par_var
    if method == "REML":
        n = k - p
        dev = -2.0 * ll
    else:
        n = k
        if logdet_v is not None:
            ld = float(logdet_v)
        elif v is not None:
            ld = float(np.sum(np.log(v)))
        else:
            raise ValueError("fit_statistics needs v or logdet_v for ML")
        ll_sat = -0.5 * k * LOG2PI - 0.5 * ld
        dev = -2.0 * (ll - ll_sat)
    aic = -2.0 * ll + 2.0 * parms
    bic = -2.0 * ll + parms * np.log(n)
    nn = max(n, parms + 2)
    aicc = -2.0 * ll + 2.0 * parms * nn / (nn - parms - 1)
    return {
        "logLik": float(ll),
        "deviance": float(dev),
        "AIC": float(aic),
        "BIC": float(bic),
        "AICc": float(aicc),
    }
