"""Aggregation of dependent estimates to one estimate per cluster (study).

Under a working within-cluster sampling correlation ``rho`` the estimates of each cluster are
combined by generalised least squares, as metafor's ``aggregate.escalc`` does; the aggregated
estimates are independent across clusters, so the classical publication-bias methods
(:mod:`.rank`, :mod:`.trim_fill`, :mod:`.selection`, the Egger regression) apply to them.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48 (``aggregate.escalc``).
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
Meta-Analysis*, ch. 24 (multiple outcomes within a study).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlmeta.errors import DataWarning, InputError
from mlmeta.pubbias._checks import EPS

__all__ = ["aggregate"]


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


def aggregate(yi, vi, cluster, rho: float | Sequence[float], weighted: bool = True) -> pd.DataFrame:
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
        raise InputError(
            f"yi, vi and cluster must have the same length; got {y.size}, {v.size} and {cl.size}"
        )
    if pd.isna(cl).any():
        raise InputError("no missing values allowed in 'cluster'")
    bad = np.isnan(y) | np.isnan(v)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} row(s) with missing yi or vi dropped before aggregation",
            DataWarning,
            stacklevel=2,
        )
        y, v, cl = y[~bad], v[~bad], cl[~bad]
    if y.size == 0:
        raise InputError("no rows left to aggregate")
    if np.any(v < 0):
        raise InputError("vi must be >= 0")
    labels, codes = np.unique(cl, return_inverse=True)
    codes = codes.ravel()
    n = labels.size
    rhos = (
        np.broadcast_to(np.asarray(rho, dtype=float), (n,))
        if np.ndim(rho) == 0
        else np.asarray(rho, dtype=float).ravel()
    )
    if rhos.size != n:
        raise InputError(f"length of rho ({rhos.size}) does not match the number of clusters ({n})")
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
        if np.any(ev <= EPS):
            raise InputError(
                f"V is not positive definite in cluster {labels[c]!r}; cannot "
                "aggregate (lower rho?)"
            )
        if weighted and idx.size < 64:
            ya[c], va[c] = _r_gls_mean(y[idx].tolist(), s.tolist(), float(rhos[c]))
        elif weighted:
            w = np.linalg.solve(V, np.ones(idx.size))  # V^-1 1
            sw = w.sum()
            ya[c] = w @ y[idx] / sw
            va[c] = 1.0 / sw
        else:
            ya[c] = y[idx].mean()
            va[c] = V.sum() / idx.size**2
    return pd.DataFrame({"cluster": labels, "yi": ya, "vi": va})
