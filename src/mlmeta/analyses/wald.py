"""Wald tests of any set or linear combination of coefficients, model-based and CR2.

Model-based, as metafor 3.8-1's ``anova(fit, btt = )`` and ``anova(fit, X = )``:

* ``btt`` (a set of m coefficients): QM = b_S' (V_b[S, S])^{-1} b_S with b_S = beta[S] - rhs,
  referred to chi2(m) for z tests; for t tests QM / m is referred to F(m, df2) with df2 the
  denominator df of the model's own omnibus test (``res.QM_df[1]``: metafor's ``x$QMdf[2]``,
  i.e. the smallest df of the coefficients of the default test, not of the tested ones; with
  ``dfs="contain"`` the two can differ).
* ``X`` (a matrix L of m linear combinations, one per row; with an intercept in the model a row
  of p - 1 values gets the intercept's 1 in front, as metafor does): each row j gives the estimate
  L_j b - rhs_j, se_j = sqrt(L_j V_b L_j'), z or t = estimate / se with df_j the smallest df of
  the coefficients the row involves (t tests), p-value and confidence limits; the omnibus test
  QM = (Lb - rhs)' (L V_b L')^{-1} (Lb - rhs) (divided by m, F(m, min_j df_j) for t tests), NaN
  when L does not have full row rank (metafor's NA).

CR2, as clubSandwich 0.5.8 with ``vcov = "CR2"`` (the fitted marginal covariance as working
model; what metafor's ``anova()`` does for ``robust(fit, cluster, clubSandwich = TRUE)``):

* ``btt``: ``Wald_test(fit, constraints = constrain_zero(btt), test = "HTZ")``;
* ``X``: ``linear_contrast(fit, contrasts = L, test = "Satterthwaite")`` per row (CR2 se and
  Satterthwaite df) and ``Wald_test(fit, constraints = L, test = "HTZ")`` for all rows.

The HTZ test of general constraints uses the invariance of the CR2 estimator to
reparametrisation: with an invertible T whose first m rows are L (the rest an orthonormal basis
of the complement of L's row space), the model in gamma = T beta has design X T^{-1}, bread
T V_b T', the same hat matrix, adjustment matrices and residuals, so the test of L beta = 0 is
clubSandwich's test of the first m coefficients of gamma (Pustejovsky & Tipton 2018; Tipton &
Pustejovsky 2015).

References: Viechtbauer (2010), metafor ``anova.rma``; Pustejovsky, J. E., & Tipton, E. (2018),
*Journal of Business & Economic Statistics, 36*(4), 672-683; Tipton, E., & Pustejovsky, J. E.
(2015), *Journal of Educational and Behavioral Statistics, 40*(6), 604-634.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.core.dist import chi2_sf, f_sf, norm_isf, norm_sf, t_isf, t_sf
from mlmeta.errors import InputError

__all__ = ["VCOVS", "WaldTest", "resolve_btt", "wald"]

#: covariance estimators of :func:`wald`
VCOVS = ("model", "CR2")


@dataclass(frozen=True)
class WaldTest:
    """A Wald test of m hypotheses on the coefficients (see :func:`wald`).

    ``table`` has one row per hypothesis (``hypothesis``, ``estimate``, ``se``, ``stat``,
    ``df`` (None for z tests), ``pval``, ``ci_lb``, ``ci_ub``); ``QM``/``QM_df``/``QMp`` are the
    omnibus test of all rows (``QM_df = (m, df2)`` with ``df2`` None for a chi-square test;
    ``QM`` NaN when the rows are linearly dependent).
    """

    vcov: str
    test: str
    table: pd.DataFrame
    QM: float
    QM_df: tuple[int, float | None]
    QMp: float
    L: np.ndarray
    btt: np.ndarray | None = None
    cluster: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def m(self) -> int:
        return len(self.table)

    def to_dict(self) -> dict[str, Any]:
        t = self.table

        def col(c):
            return [None if x is None or not np.isfinite(x) else float(x) for x in t[c]]

        return {
            "vcov": self.vcov,
            "test": self.test,
            "hypotheses": list(t["hypothesis"]),
            "estimate": col("estimate"),
            "se": col("se"),
            "stat": col("stat"),
            "df": None if t["df"].isna().all() else col("df"),
            "pval": col("pval"),
            "ci_lb": col("ci_lb"),
            "ci_ub": col("ci_ub"),
            "QM": None if not np.isfinite(self.QM) else float(self.QM),
            "QM_df": [self.QM_df[0], None if self.QM_df[1] is None else float(self.QM_df[1])],
            "QMp": None if not np.isfinite(self.QMp) else float(self.QMp),
            "btt": None if self.btt is None else [int(b) for b in self.btt],
            "cluster": self.cluster,
        }

    def __str__(self) -> str:
        stat = "zval" if self.test == "z" else "tval"
        lines = ["Hypotheses:"]
        for i, h in enumerate(self.table["hypothesis"], 1):
            lines.append(f"{i}: {h}")
        tab = self.table.drop(columns=["hypothesis"]).rename(columns={"stat": stat})
        if tab["df"].isna().all():
            tab = tab.drop(columns=["df"])
        tab.index = [f"{i}:" for i in range(1, len(tab) + 1)]
        lines += [
            "",
            f"Results ({'CR2, clustered by ' + str(self.cluster) if self.vcov == 'CR2' else 'model-based'}):",
            tab.to_string(float_format=lambda x: f"{x:.4f}"),
            "",
        ]
        if np.isfinite(self.QM):
            if self.QM_df[1] is None:
                lines.append(
                    f"Omnibus test: QM(df = {self.QM_df[0]}) = {self.QM:.4f}, "
                    f"p-val = {self.QMp:.4g}"
                )
            else:
                lines.append(
                    f"Omnibus test{' (HTZ)' if self.vcov == 'CR2' else ''}: "
                    f"F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]:.4g}) = "
                    f"{self.QM:.4f}, p-val = {self.QMp:.4g}"
                )
        else:
            lines.append("Omnibus test: not available (the hypotheses are linearly dependent)")
        return "\n".join(lines)


def resolve_btt(names, btt) -> np.ndarray:
    """0-based positions of the coefficients ``btt`` selects.

    A string is a regular expression searched in every coefficient name (metafor's
    ``grep(btt, names)``: ``"deltype"`` selects every coefficient whose name contains it, its
    interactions included; write ``"^year$"`` for one name). A sequence holds exact coefficient
    names and/or 0-based positions. An unknown name, a position out of range or a pattern that
    matches nothing is an InputError.
    """
    names = list(names)
    if isinstance(btt, str):
        try:
            rx = re.compile(btt)
        except re.error as exc:
            raise InputError(f"btt: {btt!r} is not a valid pattern ({exc})") from None
        sel = [j for j, n in enumerate(names) if rx.search(n)]
        if not sel:
            raise InputError(
                f"btt: the pattern {btt!r} matches no coefficient ({', '.join(names)})"
            )
        return np.array(sel, dtype=int)
    items = [btt] if isinstance(btt, (int, np.integer)) else list(btt)
    if not items:
        raise InputError("btt: no coefficient selected")
    sel = []
    for b in items:
        if isinstance(b, str):
            if b not in names:
                raise InputError(
                    f"btt: {b!r} is not a coefficient ({', '.join(names)}); a "
                    "single string is searched as a pattern"
                )
            sel.append(names.index(b))
        elif isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            if not 0 <= int(b) < len(names):
                raise InputError(
                    f"btt: position {b} is out of range 0..{len(names) - 1} "
                    "(positions count from 0)"
                )
            sel.append(int(b))
        else:
            raise InputError(f"btt: give coefficient names or 0-based positions; got {b!r}")
    return np.array(sorted(set(sel)), dtype=int)


def _hypothesis(row: np.ndarray, names, rhs: float) -> str:
    """metafor's text of a hypothesis: ``deltypegeneral - deltypeovert = 0``."""
    parts: list[str] = []
    for c, n in zip(row, names):
        if c == 0:
            continue
        c = float(round(c, 4))
        mag = "" if abs(c) == 1 else f"{abs(c):g}*"
        if not parts:
            parts.append(("-" if c < 0 else "") + mag + n)
        else:
            parts.append(("- " if c < 0 else "+ ") + mag + n)
    return f"{' '.join(parts) or '0'} = {rhs:g}"


def _design_rows(res, X) -> np.ndarray:
    L = np.asarray(X, dtype=float)
    if L.ndim == 0:
        L = L.reshape(1, 1)
    if L.ndim == 1:
        L = L[None, :]
    if L.ndim != 2:
        raise InputError(
            f"X must be a vector or a matrix with one row per hypothesis; got an "
            f"array of shape {L.shape}"
        )
    p = res.p
    if res.data.formula.has_intercept and L.shape[1] == p - 1 and p > 1:
        L = np.column_stack([np.ones(len(L)), L])
    elif res.data.formula.has_intercept and p == 1 and L.shape[1] == 1:
        pass
    if L.shape[1] != p:
        raise InputError(
            f"X has {L.shape[1]} columns but the model has {p} coefficients "
            f"({', '.join(res.coef_names)})"
        )
    if len(L) == 0:
        raise InputError("X has no rows")
    if not np.all(np.isfinite(L)):
        raise InputError("X must hold finite numbers")
    return L


def _rhs(rhs, m: int) -> np.ndarray:
    if rhs is None:
        return np.zeros(m)
    r = np.atleast_1d(np.asarray(rhs, dtype=float))
    if r.size == 1:
        r = np.full(m, float(r[0]))
    if r.size != m:
        raise InputError(f"rhs has {r.size} values but {m} hypotheses are tested")
    return r


def wald(
    res, btt=None, X=None, *, rhs=None, vcov: str = "model", cluster: str | None = None
) -> WaldTest:
    """Wald test of a set of coefficients (``btt``) or of linear combinations (``X``).

    Parameters
    ----------
    res : MetaResults
    btt : coefficients to test jointly against 0 (see :func:`resolve_btt`: a string is a
        pattern, as metafor's; a list holds names or 0-based positions). Default (neither
        ``btt`` nor ``X``): the model's own omnibus test.
    X : one linear combination (a vector of p values, or p - 1 with an intercept) or a matrix with
        one per row (metafor's ``anova(fit, X = L)``).
    rhs : the hypothesised value(s) (default 0), model-based tests only.
    vcov : "model" (metafor's ``anova``) or "CR2" (clubSandwich's ``Wald_test`` with HTZ and
        ``linear_contrast`` with Satterthwaite df).
    cluster : the cluster variable of CR2 (default: the outer random level).

    Returns
    -------
    WaldTest

    Model-based: each hypothesis L_j b = rhs_j gets est = L_j b - rhs_j, se = sqrt(L_j V_b L_j'),
    z or t = est / se (t with the smallest df of the coefficients L_j involves); the omnibus
    QM = est' (L V_b L')^{-1} est, chi2(m), or QM / m ~ F(m, df2) for t tests (metafor 3.8-1's
    ``anova``). CR2: V_b replaced by the CR2 estimator, Satterthwaite df per row and the HTZ
    F test of all rows (clubSandwich 0.5.8). See the module docstring for the details.

    Examples: ``res.wald(btt="deltype")``, ``res.wald(X=[[0, 0, 1, -1, 0]])``,
    ``res.wald(btt=[2, 3], vcov="CR2")``, ``mlmeta.anova(res, X=L)``.
    """
    kind = str(vcov).upper() if str(vcov).upper() == "CR2" else str(vcov).lower()
    if kind not in VCOVS:
        raise InputError(f"vcov must be one of {', '.join(VCOVS)}; got {vcov!r}")
    if btt is not None and X is not None:
        raise InputError(
            "give either btt= (a set of coefficients) or X= (linear combinations), not both"
        )
    names = list(res.coef_names)
    p = res.p
    if X is None:
        sel = res.btt if btt is None else resolve_btt(names, btt)
        L = np.eye(p)[sel]
    else:
        sel = None
        L = _design_rows(res, X)
    m = len(L)
    r = _rhs(rhs, m)
    if kind == "CR2":
        if rhs is not None and np.any(r != 0):
            raise InputError(
                "rhs is not available with vcov='CR2' (clubSandwich tests against "
                "0); subtract the value from the outcome or use vcov='model'"
            )
        return _cr2(res, L, sel, cluster)
    if cluster is not None:
        raise InputError("cluster= applies to vcov='CR2'")
    return _model(res, L, sel, r)


def _model(res, L: np.ndarray, sel, r: np.ndarray) -> WaldTest:
    b = res.core.beta
    V = res.core.vcov
    est = L @ b - r
    VL = L @ V @ L.T
    se = np.sqrt(np.diag(VL))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    m = len(L)
    level = res.level
    if res.test == "t":
        ddf = np.asarray(res.tests.df, dtype=float)
        df = np.array([np.min(ddf[row != 0]) if np.any(row != 0) else np.nan for row in L])
        pval = 2.0 * t_sf(np.abs(stat), df)
        crit = t_isf((1 - level) / 2, df)
    else:
        df = np.full(m, np.nan)
        pval = 2.0 * norm_sf(np.abs(stat))
        crit = np.full(m, norm_isf((1 - level) / 2))
    QM, QMp = float("nan"), float("nan")
    df2: float | None = None
    if np.linalg.matrix_rank(L) == m:
        try:
            cf = np.linalg.cholesky(0.5 * (VL + VL.T))
            z = np.linalg.solve(cf, est)
            QM = float(z @ z)
        except np.linalg.LinAlgError:
            QM = float("nan")
    if res.test == "t":
        # metafor: btt -> the model's own QM df2; X -> the smallest df of the rows
        df2 = float(res.QM_df[1]) if sel is not None else float(np.nanmin(df))
        QM = QM / m
        QMp = float(f_sf(QM, m, df2)) if np.isfinite(QM) else float("nan")
    elif np.isfinite(QM):
        QMp = float(chi2_sf(QM, m))
    names = list(res.coef_names)
    table = pd.DataFrame(
        {
            "hypothesis": [_hypothesis(row, names, rj) for row, rj in zip(L, r)],
            "estimate": est,
            "se": se,
            "stat": stat,
            "df": df if res.test == "t" else [None] * m,
            "pval": pval,
            "ci_lb": est - crit * se,
            "ci_ub": est + crit * se,
        }
    )
    return WaldTest("model", res.test, table, QM, (m, df2), QMp, L, sel)


def _cr2(res, L: np.ndarray, sel, cluster) -> WaldTest:
    from mlmeta.core.robust import robust_test

    codes, labels = res.cluster_codes(cluster)
    n = len(labels)
    if n <= res.p:
        raise InputError(
            f"robust inference needs more clusters than coefficients: {n} "
            f"clusters for {res.p} coefficients"
        )
    V = [Vc for _, Vc in res.marginal_blocks(codes)]
    Xd = res.data.X
    b = res.core.beta
    M = res.core.vcov
    resid = res.data.y - Xd @ b
    m = len(L)

    def transformed(rows: np.ndarray) -> dict:
        """CR2 of the coefficients gamma = T beta whose first len(rows) rows are ``rows``."""
        q = len(rows)
        _, _, vt = np.linalg.svd(rows)
        T = np.vstack([rows, vt[q:]])
        Ti = np.linalg.inv(T)
        return robust_test(
            Xd @ Ti,
            T @ b,
            resid,
            codes,
            V,
            bread=T @ M @ T.T,
            btt=np.arange(q),
            type="CR2",
            level=res.level,
        )

    est = L @ b
    se, df, pval, lo, hi = (np.full(m, np.nan) for _ in range(5))
    for j, row in enumerate(L):
        if not np.any(row):
            continue
        o = transformed(row[None, :])
        se[j], df[j], pval[j] = o["se"][0], o["df"][0], o["pval"][0]
        lo[j], hi[j] = o["ci_lb"][0], o["ci_ub"][0]
    QM, QMp, df2 = float("nan"), float("nan"), None
    if np.linalg.matrix_rank(L) == m:
        o = transformed(L)
        QM, QMp, df2 = float(o["QM"]), float(o["QMp"]), float(o["QM_df"][1])
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    names = list(res.coef_names)
    table = pd.DataFrame(
        {
            "hypothesis": [_hypothesis(row, names, 0.0) for row in L],
            "estimate": est,
            "se": se,
            "stat": stat,
            "df": df,
            "pval": pval,
            "ci_lb": lo,
            "ci_ub": hi,
        }
    )
    name = cluster or (res.data.random[0] if res.data.random else "")
    return WaldTest("CR2", "HTZ", table, QM, (m, df2), QMp, L, sel, name)
