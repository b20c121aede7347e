"""Residuals, leave-one-cluster-out refits and Cook's distances.

* ``rstandard``: marginal residuals r = y - X b with SE sqrt(diag(V - X V_b X')), metafor's
  ``rstandard.rma.mv`` (diag of (I - H) V (I - H)' with H = X V_b X' V^{-1}).
* ``loo_cluster``: refit without each cluster (variance components re-estimated, warm-started
  from the full fit): estimate, SE, sigma2 and I^2.
* ``cooks_cluster``: metafor's ``cooks.distance(fit, cluster=)``: (b - b_(-c))' V_b^{-1}
  (b - b_(-c)) with V_b of the full model, variance components re-estimated; NaN when leaving the
  cluster out makes a coefficient inestimable.
Outliers are flagged at |z| > 1.96 (residuals) and Cook's distance above the median +
3 x the inter-quartile range of all clusters' distances (a common screening rule).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmeta.errors import ConvergenceError, InputError

__all__ = ["cluster_refits", "cooks_cluster", "loo_cluster", "one_pass_refits", "rstandard"]


def rstandard(res) -> pd.DataFrame:
    """Standardized marginal residuals in the data's row order (resid, se, z, outlier)."""
    X = res.data.X
    r = res.data.y - X @ res.core.beta
    var = res.data.v + float(np.sum(res.core.sigma2)) - np.einsum("ij,jk,ik->i", X,
                                                                   res.core.vcov, X)
    se = np.sqrt(np.maximum(var, 0.0))
    z = r / se
    return pd.DataFrame({"resid": r, "se": se, "z": z, "outlier": np.abs(z) > 1.959963984540054},
                        index=res.data.frame.index)


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
        self.tests = coef_tests(loo.beta[c], loo.vcov[c], None if df is None else df[c],
                                res.level)
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
    loo = leave_one_cluster_out(pr.st, pr.v, pr.M, res.core.sigma2, res.core.fixed,
                                reml=res.method == "REML")
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


def cluster_refits(res, cluster: str | None = None, progress=None) -> tuple[pd.DataFrame,
                                                                            pd.DataFrame]:
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
            rows.append({"left_out": lab, "beta": nan, "se": nan, "ci_lb": nan, "ci_ub": nan,
                         "pval": nan, "sigma2": np.full(len(res.core.sigma2), np.nan),
                         "I2": np.nan})
            vals.append(np.nan)
            continue
        if isinstance(r, _OnePass):
            i2 = r.i2_total()
        else:
            i2 = r.i2().total if r.data.random else np.nan
        one = (lambda a: float(a[0])) if r.p == 1 else (lambda a: np.array(a, dtype=float))
        rows.append({"left_out": lab, "beta": one(r.core.beta), "se": one(r.tests.se),
                     "ci_lb": one(r.tests.ci_lb), "ci_ub": one(r.tests.ci_ub),
                     "pval": one(r.tests.pval), "sigma2": r.core.sigma2.copy(), "I2": i2})
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
