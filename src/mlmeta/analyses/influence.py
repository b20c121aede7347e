"""Residuals, leave-one-cluster-out refits and Cook's distances.

* ``rstandard``: marginal residuals r = y - X b with SE sqrt(diag(V - X V_b X')), metafor's
  ``rstandard.rma.mv`` (diag of (I - H) V (I - H)' with H = X V_b X' V^{-1}).
* ``loo_cluster``: refit without each cluster (variance components re-estimated, warm-started
  from the full fit): estimate, SE, sigma2 and I^2.
* ``cooks_cluster``: metafor's ``cooks.distance(fit, cluster=)``: (b - b_(-c))' V_b^{-1}
  (b - b_(-c)) with V_b of the full model, variance components re-estimated; NaN when leaving the
  cluster out makes a coefficient inestimable.
* ``rstudent``: metafor's ``rstudent.rma.mv``: each row (or each cluster) is left out and the
  model refitted (variance components re-estimated, warm-started); the deleted residual
  e_i = y_i - x_i' b_(-i) has se sqrt(M_ii + x_i' V_b(-i) x_i) with M the marginal covariance
  at the left-out fit's variance components and V_b(-i) that fit's covariance of b; z = e / se.
  For a cluster c also X2_c = e_c' (M_cc + X_c V_b(-c) X_c')^{-1} e_c (its outlier test).
* ``dfbetas``: metafor's ``dfbetas.rma.mv``: (b - b_(-i)) / sqrt(diag V_b[sigma2_(-i)]), where
  V_b[sigma2_(-i)] is the covariance of b of the model fitted to all rows with the variance
  components fixed at the left-out fit's.
* ``hatvalues``: metafor's ``hatvalues.rma.mv``: the diagonal of H = X (X'WX)^{-1} X'W with
  W = M^{-1}, h_i = x_i' V_b (W X)_i, from the per-cluster blocks of M (never a k x k matrix);
  values above 1 - 10 eps are set to 1, as metafor does.
Outliers are flagged at |z| > 1.96 (residuals) and Cook's distance above the median +
3 x the inter-quartile range of all clusters' distances (a common screening rule).
References: Viechtbauer & Cheung (2010), Outlier and influence diagnostics for meta-analysis,
*Research Synthesis Methods, 1*(2), 112-125; metafor 3.8-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.errors import ConvergenceError, InputError

__all__ = ["cluster_refits", "cooks_cluster", "loo_cluster", "one_pass_refits", "rstandard"]


def rstandard(res) -> pd.DataFrame:
    """Standardized marginal residuals in the data's row order (resid, se, z, outlier)."""
    X = res.data.X
    r = res.data.y - X @ res.core.beta
    var = (
        res.data.v + float(np.sum(res.core.sigma2)) - np.einsum("ij,jk,ik->i", X, res.core.vcov, X)
    )
    se = np.sqrt(np.maximum(var, 0.0))
    z = r / se
    return pd.DataFrame(
        {"resid": r, "se": se, "z": z, "outlier": np.abs(z) > 1.959963984540054},
        index=res.data.frame.index,
    )


#: below this many clusters every leave-one-out fit is an exact refit; from it on, the
#: one-pass computation of :mod:`mlmeta.core.loo` is used (clusters it does not trust are
#: still refitted exactly)
ONE_PASS_MIN_CLUSTERS = 100


class _OnePass:
    """A leave-one-cluster-out fit from :func:`mlmeta.core.loo.leave_one_cluster_out`, with the
    attributes of a refit that :func:`cluster_refits` reads."""

    def __init__(self, res, c: int, loo, df, tv_parts):
        from types import SimpleNamespace

        from mlmeta.core.inference import coef_tests

        self.p = res.p
        self.data = res.data
        self.core = SimpleNamespace(beta=loo.beta[c], sigma2=loo.sigma2[c])
        self.tests = coef_tests(loo.beta[c], loo.vcov[c], None if df is None else df[c], res.level)
        sw, A, B, _ = tv_parts
        tr = sw[c] - float(np.trace(np.linalg.solve(A[c], B[c])))
        self.tv = (loo.k[c] - self.p) / tr

    def i2_total(self) -> float:
        tot = float(np.sum(self.core.sigma2))
        return 100.0 * tot / (tot + self.tv)


def one_pass_refits(res, cluster):
    """One-pass leave-one-out fits per cluster index, or None where it does not apply (the
    cluster is not the outer random level, correlated sampling errors, few clusters, an
    estimate on the boundary)."""
    from mlmeta.core.fit import Problem
    from mlmeta.core.inference import contain_df_leave_out
    from mlmeta.core.loo import leave_one_cluster_out

    pr = res.core.problem
    if not res.data.random or res.rho is not None or not isinstance(pr, Problem):
        return None
    if cluster not in (None, res.data.random[0]):
        return None
    if pr.st.n_groups[0] < ONE_PASS_MIN_CLUSTERS:
        return None
    free = ~res.core.fixed
    if not np.all(res.core.sigma2[free] > 0):
        return None
    loo = leave_one_cluster_out(
        pr.st, pr.v, pr.M, res.core.sigma2, res.core.fixed, reml=res.method == "REML"
    )
    top = res.level_codes()[0]
    if res.test == "z":
        df = None
    elif res.dfs == "contain":
        df = contain_df_leave_out(res.data.X, res.level_codes(), res.n_levels, top)
    else:
        df = np.repeat((loo.k - res.p)[:, None].astype(float), res.p, axis=1)
    w = 1.0 / res.data.v
    X = res.data.X
    J = len(loo.k)
    Xw = X * w[:, None]
    A_c = np.zeros((J, res.p, res.p))
    B_c = np.zeros((J, res.p, res.p))
    np.add.at(A_c, top, X[:, :, None] * Xw[:, None, :])
    np.add.at(B_c, top, Xw[:, :, None] * Xw[:, None, :])
    sw = np.sum(w) - np.bincount(top, weights=w, minlength=J)
    parts = (sw, (X.T @ Xw)[None] - A_c, (Xw.T @ Xw)[None] - B_c, loo.k)
    return {c: _OnePass(res, c, loo, df, parts) for c in range(J) if loo.done[c]}


def _refits(res, cluster, progress=None):
    codes, labels = res.cluster_codes(cluster)
    fast = one_pass_refits(res, cluster) or {}
    for c, lab in enumerate(labels):
        if c in fast:
            r = fast[c]
        else:
            keep = codes != c
            try:
                r = res.refit(rows=keep)
            except (InputError, ConvergenceError, np.linalg.LinAlgError):
                r = None
        if progress is not None:
            progress()
        yield lab, r


def cluster_refits(
    res, cluster: str | None = None, progress=None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-one-cluster-out table and Cook's distances from ONE pass of refits.

    ``progress`` (optional) is called once after each refit. Returns (loo, cooks) as
    :func:`loo_cluster` and :func:`cooks_cluster` do.
    """
    Vinv = np.linalg.inv(res.core.vcov)
    b = res.core.beta
    rows, labs, vals = [], [], []
    for lab, r in _refits(res, cluster, progress):
        labs.append(lab)
        if r is None:
            nan = np.nan if res.p == 1 else np.full(res.p, np.nan)
            rows.append(
                {
                    "left_out": lab,
                    "beta": nan,
                    "se": nan,
                    "ci_lb": nan,
                    "ci_ub": nan,
                    "pval": nan,
                    "sigma2": np.full(len(res.core.sigma2), np.nan),
                    "I2": np.nan,
                }
            )
            vals.append(np.nan)
            continue
        if isinstance(r, _OnePass):
            i2 = r.i2_total()
        else:
            i2 = r.i2().total if r.data.random else np.nan
        one = (lambda a: float(a[0])) if r.p == 1 else (lambda a: np.array(a, dtype=float))
        rows.append(
            {
                "left_out": lab,
                "beta": one(r.core.beta),
                "se": one(r.tests.se),
                "ci_lb": one(r.tests.ci_lb),
                "ci_ub": one(r.tests.ci_ub),
                "pval": one(r.tests.pval),
                "sigma2": r.core.sigma2.copy(),
                "I2": i2,
            }
        )
        d = b - r.core.beta
        vals.append(float(d @ Vinv @ d))
    v = np.array(vals)
    fin = v[np.isfinite(v)]
    if fin.size:
        q1, med, q3 = np.percentile(fin, [25, 50, 75])
        flag = v > med + 3.0 * (q3 - q1)
    else:
        flag = np.zeros(len(v), dtype=bool)
    cooks = pd.DataFrame({"cluster": labs, "value": v, "influential": flag})
    return pd.DataFrame(rows), cooks


def loo_cluster(res, cluster: str | None = None, progress=None) -> pd.DataFrame:
    """Leave-one-cluster-out estimates (one row per left-out cluster, sorted ids).

    Columns: left_out, beta, se, ci_lb, ci_ub, pval (scalars for one coefficient, arrays
    otherwise; CIs and tests with the refit's own test and df), sigma2 (array), I2 (total, %).
    """
    return cluster_refits(res, cluster, progress)[0]


def cooks_cluster(res, cluster: str | None = None, progress=None) -> pd.DataFrame:
    """Cook's distance of each cluster (sorted ids) with an outlier flag (NaN when leaving the
    cluster out makes a coefficient inestimable)."""
    return cluster_refits(res, cluster, progress)[1]


# ------------------------------------------------------------------------------------------------
# case deletion diagnostics of single rows or clusters (metafor's rstudent, dfbetas) and leverages
# ------------------------------------------------------------------------------------------------


def _nested_only(res, what: str) -> None:
    if res.spec.nesting is None:
        raise InputError(
            f"{what} is available for nested random effects ('~ 1 | a/b'), not for "
            "crossed or '~ inner | outer' terms"
        )


def independent_blocks(res) -> tuple[np.ndarray, int]:
    """Codes 0..C-1 of the smallest groups of rows whose marginal covariance is independent of
    the others' (the outer random level, joined with the clusters of correlated sampling errors;
    every row alone in the equal-effects model), and C."""
    k = res.k
    parts = []
    if res.data.random:
        parts.append(res.level_codes()[0])
    if res.rho is not None:
        parts.append(res.rho_codes())
    if not parts:
        return np.arange(k), k
    # connected components of rows linked by any of the groupings (union-find over labels)
    parent = np.arange(k)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for codes in parts:
        first: dict[int, int] = {}
        for i, c in enumerate(codes):
            j = first.setdefault(int(c), i)
            ri, rj = find(i), find(j)
            if ri != rj:
                parent[ri] = rj
    roots = np.array([find(i) for i in range(k)])
    _, out = np.unique(roots, return_inverse=True)
    out = out.ravel()
    return out, int(out.max()) + 1


def marginal_block(res, rows: np.ndarray, sigma2=None) -> np.ndarray:
    """Dense marginal covariance M of ``rows`` (data row positions) at ``sigma2`` (default: the
    fit's): the sampling (co)variances plus sum_l sigma2_l [rows i, j share their level-l group].
    """
    rows = np.asarray(rows)
    s2 = res.core.sigma2 if sigma2 is None else np.asarray(sigma2, dtype=float)
    v = res.data.v
    if res.rho is None:
        M = np.diag(v[rows]).astype(float)
    else:
        from mlmeta.core.dense import constant_rho_blocks

        rc = res.rho_codes()
        M = constant_rho_blocks(v, [rows], rc, res.rho)[0]
    for lv, c in enumerate(res.level_codes()):
        cc = c[rows]
        M = M + s2[lv] * (cc[:, None] == cc[None, :])
    return M


def _groups(codes: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
    return np.split(order, starts[1:])


def hatvalues(res) -> pd.Series:
    """Leverages h_i, the diagonal of X (X'WX)^{-1} X'W (metafor's ``hatvalues.rma.mv``).

    h_i = x_i' V_b (W X)_i with W = M^{-1} block by block (clusters of the outer level, or of
    correlated sampling errors); sum_i h_i = p. Values above 1 - 10 eps are set to 1.
    """
    _nested_only(res, "hatvalues")
    codes, _ = independent_blocks(res)
    X = res.data.X
    WX = np.empty_like(X, dtype=float)
    for rows in _groups(codes):
        WX[rows] = np.linalg.solve(marginal_block(res, rows), X[rows])
    h = np.einsum("ij,jk,ik->i", X, res.core.vcov, WX)
    h[h > 1 - 10 * np.finfo(float).eps] = 1.0
    return pd.Series(h, index=res.data.frame.index, name="hat")


@dataclass(frozen=True)
class RStudent:
    """Externally studentized residuals (see :func:`rstudent`).

    ``obs``: per row, the deleted residual ``resid``, its ``se`` and ``z`` (NaN where the refit
    failed or left a coefficient inestimable); ``clusters`` (with ``cluster=``): per cluster
    (sorted ids) the number of rows ``k`` and ``X2``, the cluster's outlier statistic.
    """

    obs: pd.DataFrame
    clusters: pd.DataFrame | None = None

    def __getitem__(self, key: str) -> pd.Series:
        """A column by name: ``resid``, ``se``, ``z`` (per row) or ``cluster``, ``k``, ``X2``
        (per cluster), as metafor's list elements."""
        if key in self.obs.columns:
            return self.obs[key]
        if self.clusters is not None and key in self.clusters.columns:
            return self.clusters[key]
        raise KeyError(key)

    def to_dict(self) -> dict:
        def fl(s):
            return [None if not np.isfinite(x) else float(x) for x in s]

        d = {"resid": fl(self.obs["resid"]), "se": fl(self.obs["se"]), "z": fl(self.obs["z"])}
        if self.clusters is not None:
            d["cluster"] = [_py(x) for x in self.clusters["cluster"]]
            d["k"] = [int(x) for x in self.clusters["k"]]
            d["X2"] = fl(self.clusters["X2"])
        return d


def _py(x):
    return x.item() if hasattr(x, "item") else x


def _deletions(res, cluster):
    """(label, rows left out) for every row (cluster None) or every cluster (sorted ids)."""
    if cluster is None:
        for i in range(res.k):
            yield i, np.array([i])
        return
    codes, labels = res.cluster_codes(cluster)
    for c, lab in enumerate(labels):
        yield lab, np.flatnonzero(codes == c)


def _refit_without(res, rows: np.ndarray):
    """The refit without ``rows``; None when it fails or when leaving the rows out makes a
    coefficient inestimable (metafor: a redundant predictor, NA)."""
    from mlmeta.io.prepare import redundant_columns

    keep = np.ones(res.k, dtype=bool)
    keep[rows] = False
    if redundant_columns(res.data.X[keep]):
        return None
    try:
        r = res.refit(rows=keep)
    except (InputError, ConvergenceError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(r.core.beta)) or not np.all(np.isfinite(r.core.vcov)):
        return None
    return r


def case_deletion(
    res, cluster: str | None = None, progress=None, *, rstudent: bool = True, dfbetas: bool = True
) -> tuple[RStudent | None, pd.DataFrame | None]:
    """:func:`rstudent` and :func:`dfbetas` from ONE pass of leave-one-out refits.

    ``cluster=None`` leaves out each row, else each cluster (sorted ids); ``progress`` is
    called after each deletion. Returns (RStudent or None, DFBETAS table or None).
    """
    _nested_only(res, "case deletion diagnostics")
    y, X, b = res.data.y, res.data.X, res.core.beta
    resid = np.full(res.k, np.nan)
    se = np.full(res.k, np.nan)
    labs, ks, x2s, dfb = [], [], [], []
    for lab, rows in _deletions(res, cluster):
        r = _refit_without(res, rows)
        labs.append(lab)
        ks.append(len(rows))
        x2 = np.nan
        d_b = np.full(res.p, np.nan)
        if r is not None and rstudent:
            Xi = X[rows]
            d = y[rows] - Xi @ r.core.beta
            d[np.abs(d) < 100 * np.finfo(float).eps] = 0.0
            S = marginal_block(res, rows, r.core.sigma2) + Xi @ r.core.vcov @ Xi.T
            resid[rows] = d
            se[rows] = np.sqrt(np.diag(S))
            try:
                cf = np.linalg.cholesky(0.5 * (S + S.T))
                z = np.linalg.solve(cf, d)
                x2 = float(z @ z)
            except np.linalg.LinAlgError:
                pass
        if r is not None and dfbetas:
            if res.data.random and not np.array_equal(r.core.sigma2, res.core.sigma2):
                full = res.refit(sigma2=[float(x) for x in r.core.sigma2], start=r.core.sigma2)
                vb = full.core.vcov
            else:
                vb = res.core.vcov
            d_b = (b - r.core.beta) / np.sqrt(np.diag(vb))
        x2s.append(x2)
        dfb.append(d_b)
        if progress is not None:
            progress()
    rs = None
    if rstudent:
        with np.errstate(invalid="ignore", divide="ignore"):
            obs = pd.DataFrame(
                {"resid": resid, "se": se, "z": resid / se}, index=res.data.frame.index
            )
        clusters = None
        if cluster is not None:
            clusters = pd.DataFrame({"cluster": labs, "k": ks, "X2": x2s})
        rs = RStudent(obs, clusters)
    tab = None
    if dfbetas:
        index = res.data.frame.index if cluster is None else pd.Index(labs, name=cluster)
        tab = pd.DataFrame(np.array(dfb), index=index, columns=list(res.coef_names))
    return rs, tab


def rstudent(res, cluster: str | None = None, progress=None) -> RStudent:
    """Externally studentized (deleted) residuals, metafor's ``rstudent.rma.mv``.

    Leaves out each row (``cluster=None``) or each cluster, refits (variance components
    re-estimated, warm-started from this fit) and standardises the left-out rows' residuals by
    their variance under the refit::

        e_i = y_i - x_i' b_(-i),   se_i = sqrt(M_ii[sigma2_(-i)] + x_i' V_b(-i) x_i),   z = e / se

    and, per cluster, X2_c = e_c' (M_cc[sigma2_(-c)] + X_c V_b(-c) X_c')^{-1} e_c, where
    M[sigma2_(-i)] is the marginal covariance at the left-out fit's variance components and
    V_b(-i) that fit's covariance of b. One refit per row or cluster (``progress`` is called
    after each); NaN where the refit failed or left a coefficient inestimable. References:
    Viechtbauer & Cheung (2010); metafor 3.8-1.
    """
    out = case_deletion(res, cluster, progress, dfbetas=False)[0]
    assert out is not None
    return out


def dfbetas(res, cluster: str | None = None, progress=None) -> pd.DataFrame:
    """DFBETAS of each row (``cluster=None``) or cluster, metafor's ``dfbetas.rma.mv``.

    (b - b_(-i)) / sqrt(diag V_b[sigma2_(-i)]): the change of each coefficient when the row or
    cluster is left out (variance components re-estimated), scaled by the coefficient's se in the
    model fitted to all rows with the variance components fixed at the left-out fit's. Rows are
    the data's rows (or the sorted cluster ids), columns the coefficients; NaN where the refit
    failed or left a coefficient inestimable. Two refits per row or cluster.
    """
    out = case_deletion(res, cluster, progress, rstudent=False)[1]
    assert out is not None
    return out
