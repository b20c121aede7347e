"""Cluster-robust (sandwich) inference for GLS fits with a block-diagonal marginal covariance.

The model is ``y = X beta + e`` with ``Var(e) = V`` block-diagonal by (outer) cluster ``c``,
``V = bdiag(V_1, ..., V_C)``, and the fixed effects are estimated by GLS with inverse-variance
weights ``W_c = V_c^{-1}``::

    beta_hat = M X'W y,        M = (X'WX)^{-1} = (sum_c X_c' W_c X_c)^{-1}   ("bread").

Two estimators of ``Var(beta_hat)`` are provided, each with the small-sample inference that R's
metafor 3.8-1 reports from ``robust()``:

* **CR1** -- ``robust(fit, cluster, adjust = TRUE)`` (Hedges, Tipton & Johnson 2010)::

      V^CR1 = C / (C - p) * M (sum_c X_c'W_c e_c e_c'W_c X_c) M,

  ``t`` tests and confidence intervals with ``C - p`` degrees of freedom, and the Wald test
  ``QM = b' (V^CR1_bb)^{-1} b / m`` referred to ``F(m, C - p)`` (``b`` = the ``m`` coefficients
  in ``btt``).

* **CR2** -- ``robust(fit, cluster, clubSandwich = TRUE)``, i.e. clubSandwich 0.5.8's
  ``vcovCR(type = "CR2")`` with the fitted ``V`` as working model (inverse-variance weights),
  ``coef_test``/``conf_int`` with Satterthwaite degrees of freedom and ``Wald_test(test = "HTZ")``
  (Bell & McCaffrey 2002; Tipton & Pustejovsky 2015; Pustejovsky & Tipton 2018)::

      V^CR2 = M (sum_c X_c'W_c A_c e_c e_c' A_c W_c X_c) M,
      A_c   = L_c G_c^{-1/2} L_c',   G_c = L_c' (V_c - X_c M X_c') L_c,   V_c = L_c L_c'.

  ``G^{-1/2}`` is the symmetric (pseudo-)inverse square root; as in clubSandwich, eigenvalues not
  above the *absolute* threshold ``1e-12`` are treated as zero (this happens when a cluster alone
  identifies a coefficient, e.g. the only cluster with some moderator level).

Nothing here builds a ``k x k`` matrix: clusters of equal size are stacked and processed with
batched ``numpy.linalg`` calls, so the cost is ``O(sum_c n_c^3 + C p^3)``.

Satterthwaite and HTZ details (CR2)
-----------------------------------
Write ``Q_c = M X_c'W_c A_c`` (``p x n_c``) so that ``V^CR2 = sum_c Q_c e_c e_c' Q_c'``. Under the
working model the residuals are ``e = (I - X M X'W) u`` with ``Var(u) = V``. For a contrast
matrix ``K`` (``q x p``) let::

    a_c = K Q_c V_c Q_c' K'                (q x q),
    h_c = K Q_c X_c chol(M)                (q x p),
    P_st[c, d] = delta_cd a_c[s, t] - h_c[s] . h_d[t]      (a C x C matrix for each s, t).

Then ``E(K V^CR2 K') = Omega`` with ``Omega[s, t] = trace(P_st)`` and the covariances of its
entries are sums of products of the ``P``s. clubSandwich forms the ``C x C`` matrices explicitly;
here the needed sums are reduced to ``p x p`` quantities, e.g.::

    sum_{c,d} P_st[c,d] P_uv[c,d] = sum_c (a_c[s,t] a_c[u,v] - a_c[s,t] b_c[u,v]
                                           - a_c[u,v] b_c[s,t])
                                    + sum_{i,j} S_su[i,j] S_tv[i,j],
    b_c = h_c h_c',   S_su = sum_c h_c[s] h_c[u]'.

* Satterthwaite (one coefficient, ``K = e_i'``): ``df_i = Omega^2 / sum_{c,d} P[c,d]^2``.
* HTZ (``K`` = the rows ``btt`` of ``I_p``, ``q`` rows): after the transformation
  ``K -> Omega^{-1/2} K`` (so that the transformed ``Omega = I``),
  ``nu = q (q + 1) / sum_{s,t} (sum P_st P_ts + sum P_ss P_tt)``; the statistic is
  ``F = delta Q / q`` with ``Q = (Kb)' (K V^CR2 K')^{-1} (Kb)``, ``delta = max((nu - q + 1) / nu,
  0)``, referred to ``F(q, nu - q + 1)`` (p-value ``nan`` when ``nu - q + 1 <= 0``).
  ``QM`` is reported as ``max(0, F)`` and ``QM_df = [q, nu - q + 1]``. For ``q = 1`` this reduces
  to ``t^2`` with the Satterthwaite df (what metafor reports for intercept-only models).

References
----------
Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear regression
with multi-stage samples. *Survey Methodology, 28*(2), 169-181.

Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). Robust variance estimation in meta-regression
with dependent effect size estimates. *Research Synthesis Methods, 1*(1), 39-65.

Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests of moderators and
model fit using robust variance estimation in meta-regression. *Journal of Educational and
Behavioral Statistics, 40*(6), 604-634.

Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance
estimation and hypothesis testing in fixed effects models. *Journal of Business & Economic
Statistics, 36*(4), 672-683.

Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48 (function ``robust()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import special

from mlmeta.errors import InputError

__all__ = ["MAX_CLUSTER_SIZE", "check_cluster_sizes", "cr1", "cr2", "robust_test"]

#: the largest cluster the sandwich estimators accept: each cluster's covariance block is
#: factorised densely (n^3 operations, 8 n^2 bytes a matrix), so 2,000 effect sizes take seconds
#: and 10,000 would take many minutes and gigabytes
MAX_CLUSTER_SIZE = 2000


def check_cluster_sizes(sizes, labels=None) -> None:
    """Refuse a cluster larger than :data:`MAX_CLUSTER_SIZE` at once, naming it, before any
    dense block is built."""
    sizes = np.asarray(sizes)
    if sizes.size and int(sizes.max()) > MAX_CLUSTER_SIZE:
        j = int(np.argmax(sizes))
        who = f"{labels[j]!r}" if labels is not None else f"{j}"
        raise InputError(
            f"cluster-robust inference: cluster {who} has {int(sizes[j]):,} effect "
            f"sizes, more than the {MAX_CLUSTER_SIZE:,} whose covariance block "
            "can be factorised in reasonable time and memory; cluster by a finer "
            "level"
        )


#: A per-cluster covariance block source: ``blocks[c]`` or ``blocks(c)`` is the dense
#: ``n_c x n_c`` marginal covariance of cluster ``c`` in the row order of that cluster (rows of
#: ``X`` with ``cluster == c``, in increasing row index).
VBlocks = Sequence[Any] | Callable[[int], Any]

#: Eigenvalues at or below this (absolute) value are treated as zero in symmetric matrix powers,
#: exactly as clubSandwich's ``matrix_power(..., tol = -12)``.
_EIG_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# Cluster bookkeeping
# --------------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Clusters of one common size ``n`` stacked for batched linear algebra."""

    ids: np.ndarray  # (m,) cluster codes
    rows: np.ndarray  # (m, n) row indices into X, increasing within each cluster
    X: np.ndarray  # (m, n, p)
    e: np.ndarray  # (m, n)
    V: np.ndarray  # (m, n, n)
    L: np.ndarray  # (m, n, n) lower Cholesky factor of V
    Linv: np.ndarray  # (m, n, n) inverse of L
    XtW: np.ndarray  # (m, p, n) X_c' W_c


def _groups(
    X: np.ndarray, resid: np.ndarray, cluster: np.ndarray, n_clusters: int, V_blocks: VBlocks
) -> list[_Group]:
    order = np.argsort(cluster, kind="stable")
    sizes = np.bincount(cluster, minlength=n_clusters)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    groups: list[_Group] = []
    for n in np.unique(sizes):
        n = int(n)
        ids = np.flatnonzero(sizes == n)
        rows = order[starts[ids][:, None] + np.arange(n)[None, :]]
        Vg = np.empty((ids.size, n, n))
        for i, c in enumerate(ids):
            blk = V_blocks(int(c)) if callable(V_blocks) else V_blocks[int(c)]
            blk = np.asarray(blk, dtype=float)
            if blk.ndim == 0 and n == 1:
                blk = blk.reshape(1, 1)
            if blk.shape != (n, n):
                raise InputError(
                    f"V_blocks: block of cluster {int(c)} has shape {blk.shape}, "
                    f"expected ({n}, {n}) (the cluster has {n} rows)"
                )
            Vg[i] = blk
        Vg = 0.5 * (Vg + np.swapaxes(Vg, -1, -2))
        try:
            L = np.linalg.cholesky(Vg)
        except np.linalg.LinAlgError:
            raise InputError(
                "V_blocks: a covariance block is not positive definite "
                f"(one of the clusters of size {n})"
            ) from None
        Linv = np.linalg.solve(L, np.broadcast_to(np.eye(n), L.shape))
        Xg = X[rows]  # (m, n, p)
        LX = Linv @ Xg  # (m, n, p)
        XtW = np.swapaxes(LX, -1, -2) @ Linv  # X'L^{-T}L^{-1} = X'W
        groups.append(_Group(ids, rows, Xg, resid[rows], Vg, L, Linv, XtW))
    return groups


def _sym_power(A: np.ndarray, power: float) -> np.ndarray:
    """Symmetric matrix power (batched) with clubSandwich's eigenvalue threshold."""
    A = 0.5 * (A + np.swapaxes(A, -1, -2))
    vals, vecs = np.linalg.eigh(A)
    keep = vals > _EIG_TOL
    f = np.where(keep, np.where(keep, vals, 1.0) ** power, 0.0)
    return (vecs * f[..., None, :]) @ np.swapaxes(vecs, -1, -2)


def _check_inputs(
    X: Any, beta: Any, resid: Any, cluster: Any, V_blocks: VBlocks, btt: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise InputError(f"X: expected a 2-D design matrix, got an array of shape {X.shape}")
    k, p = X.shape
    beta = np.asarray(beta, dtype=float).ravel()
    if beta.size != p:
        raise InputError(f"beta: expected {p} coefficients (columns of X), got {beta.size}")
    resid = np.asarray(resid, dtype=float).ravel()
    if resid.size != k:
        raise InputError(f"resid: expected {k} residuals (rows of X), got {resid.size}")
    cl = np.asarray(cluster)
    if cl.ndim != 1 or cl.size != k:
        raise InputError(f"cluster: expected {k} integer codes (rows of X), got shape {cl.shape}")
    if not np.issubdtype(cl.dtype, np.integer):
        integral = np.issubdtype(cl.dtype, np.floating) and bool(
            np.all(np.isfinite(cl)) and np.all(cl == np.round(cl))
        )
        if integral:
            cl = cl.astype(np.int64)
        else:
            raise InputError("cluster: codes must be integers 0..C-1")
    cl = cl.astype(np.int64)
    if k == 0:
        raise InputError("X: no rows")
    if cl.min() < 0:
        raise InputError(f"cluster: codes must be integers 0..C-1, found {int(cl.min())}")
    n_clusters = int(cl.max()) + 1
    if not callable(V_blocks):
        if len(V_blocks) != n_clusters:
            raise InputError(
                f"V_blocks: expected one block per cluster ({n_clusters}), got {len(V_blocks)}"
            )
    counts = np.bincount(cl, minlength=n_clusters)
    if np.any(counts == 0):
        raise InputError(
            f"cluster: code {int(np.flatnonzero(counts == 0)[0])} has no rows; "
            "codes must be 0..C-1 with every code used"
        )
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(resid)) and np.all(np.isfinite(beta))):
        raise InputError("X, beta and resid must be finite")
    if btt is None:
        btt_arr = np.arange(p)
    else:
        btt_arr = np.unique(np.asarray(btt, dtype=np.int64).ravel())
        if btt_arr.size == 0 or btt_arr.min() < 0 or btt_arr.max() >= p:
            raise InputError(f"btt: expected coefficient indices in 0..{p - 1}, got {btt!r}")
    if n_clusters - p <= 0:
        raise InputError(
            f"cluster: the number of clusters ({n_clusters}) must be larger than the number "
            f"of coefficients ({p})"
        )
    return X, beta, resid, cl, n_clusters, btt_arr


def _bread(groups: list[_Group], p: int, bread: Any) -> np.ndarray:
    if bread is not None:
        M = np.asarray(bread, dtype=float)
        if M.shape != (p, p):
            raise InputError(f"bread: expected a {p} x {p} matrix, got shape {M.shape}")
        return 0.5 * (M + M.T)
    XWX = np.zeros((p, p))
    for g in groups:
        XWX += np.einsum("mpn,mnq->pq", g.XtW, g.X)
    XWX = 0.5 * (XWX + XWX.T)
    try:
        cf = np.linalg.cholesky(XWX)
    except np.linalg.LinAlgError:
        raise InputError("X: X'WX is singular (the design matrix is rank deficient)") from None
    Linv = np.linalg.inv(cf)
    return Linv.T @ Linv


# --------------------------------------------------------------------------------------------
# Distribution helpers (t and F with non-integer df)
# --------------------------------------------------------------------------------------------


def _t_pval(stat: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-value ``2 P(T_df > |t|)``."""
    return 2.0 * special.stdtr(df, -np.abs(stat))


def _t_crit(df: np.ndarray, level: float) -> np.ndarray:
    return special.stdtrit(df, 1.0 - (1.0 - level) / 2.0)


def _f_pval(F: float, df1: float, df2: float) -> float:
    if not (np.isfinite(F) and df2 > 0):
        return float("nan")
    return float(special.fdtrc(df1, df2, max(F, 0.0)))


#: A Wald covariance is treated as singular when, for some coefficient, the share of its variance
#: not explained by the preceding ones (squared Cholesky pivot over the diagonal entry, i.e.
#: ``1 - R^2``) is at most this. Rounding alone leaves ~1e-15 in an exactly singular matrix.
_SINGULAR_RTOL = 1e-12


def _wald_q(b: np.ndarray, Vb: np.ndarray) -> float:
    """``b' Vb^{-1} b`` by Cholesky; ``nan`` if ``Vb`` is not (numerically) positive definite.

    metafor returns ``NA`` for ``QM`` when ``chol()`` of the robust covariance fails. That happens
    e.g. for CR1 when a coefficient is identified by a single cluster: ``sum_c X_c'W_c e_c = 0``
    then zeroes that coefficient's row of the meat, so the covariance is exactly singular and only
    rounding decides whether a Cholesky factorisation "succeeds"; the relative pivot test makes
    the outcome deterministic.
    """
    Vb = 0.5 * (Vb + Vb.T)
    try:
        cf = np.linalg.cholesky(Vb)
    except np.linalg.LinAlgError:
        return float("nan")
    if np.any(np.diag(cf) ** 2 <= _SINGULAR_RTOL * np.diag(Vb)):
        return float("nan")
    z = np.linalg.solve(cf, b)
    return float(z @ z)


def _coef_table(
    beta: np.ndarray, vcov: np.ndarray, df: np.ndarray, level: float
) -> dict[str, np.ndarray]:
    se = np.sqrt(np.diag(vcov))
    stat = beta / se
    crit = _t_crit(df, level)
    return {
        "se": se,
        "stat": stat,
        "df": df,
        "pval": _t_pval(stat, df),
        "ci_lb": beta - crit * se,
        "ci_ub": beta + crit * se,
    }


# --------------------------------------------------------------------------------------------
# CR1
# --------------------------------------------------------------------------------------------


def cr1(
    X: Any,
    beta: Any,
    resid: Any,
    cluster: Any,
    V_blocks: VBlocks,
    *,
    bread: Any = None,
    btt: Any = None,
    level: float = 0.95,
) -> dict[str, Any]:
    r"""CR1 cluster-robust inference, as metafor's ``robust(fit, cluster, adjust = TRUE)``.

    .. math::

        \hat V^{CR1} = \frac{C}{C - p}\, M \Big(\sum_c X_c' W_c e_c e_c' W_c X_c\Big) M,
        \qquad M = (X'WX)^{-1},\ W_c = V_c^{-1},

    with ``C`` clusters and ``p`` coefficients (Hedges, Tipton & Johnson 2010). Coefficients are
    tested with ``t`` statistics on ``C - p`` degrees of freedom; the omnibus test of the
    coefficients ``btt`` (``m`` of them) is ``QM = b' (\hat V^{CR1}_{bb})^{-1} b / m`` referred to
    ``F(m, C - p)``.

    Parameters
    ----------
    X : (k, p) array
        Design matrix; rows may be in any order.
    beta : (p,) array
        GLS estimate ``M X'W y``.
    resid : (k,) array
        Marginal residuals ``y - X beta``.
    cluster : (k,) int array
        Cluster code of each row, ``0..C-1``, every code used.
    V_blocks : sequence or callable
        ``V_blocks[c]`` (or ``V_blocks(c)``): the dense ``n_c x n_c`` marginal covariance of
        cluster ``c``, its rows/columns in the order of the rows of ``X`` belonging to ``c``
        (increasing row index).
    bread : (p, p) array, optional
        ``(X'WX)^{-1}`` as obtained by the fit (metafor uses its ``vb``); computed from
        ``V_blocks`` when omitted.
    btt : sequence of int, optional
        0-based indices of the coefficients in the omnibus test (default: all). metafor uses all
        but the intercept when the model has one.
    level : float
        Confidence level of the intervals (default 0.95).

    Returns
    -------
    dict
        ``type`` (``"CR1"``), ``beta``, ``vcov`` (p x p), ``se``, ``stat``, ``df`` (``C - p`` for
        every coefficient), ``pval``, ``ci_lb``, ``ci_ub`` (arrays of length p), ``QM``,
        ``QM_df`` (``[m, C - p]``), ``QMp``, ``btt`` (0-based), ``n_clusters``, ``level``.
    """
    return robust_test(
        X, beta, resid, cluster, V_blocks, bread=bread, btt=btt, type="CR1", level=level
    )


def cr2(
    X: Any,
    beta: Any,
    resid: Any,
    cluster: Any,
    V_blocks: VBlocks,
    *,
    bread: Any = None,
    btt: Any = None,
    level: float = 0.95,
) -> dict[str, Any]:
    r"""CR2 cluster-robust inference, as ``robust(fit, cluster, clubSandwich = TRUE)``.

    Reproduces clubSandwich 0.5.8 for an ``rma.mv`` fit without user weights: ``vcovCR(type =
    "CR2")`` with the fitted marginal covariance as working model (Bell & McCaffrey 2002;
    Pustejovsky & Tipton 2018),

    .. math::

        \hat V^{CR2} = M \Big(\sum_c X_c' W_c A_c e_c e_c' A_c W_c X_c\Big) M, \qquad
        A_c = L_c \big[L_c' (V_c - X_c M X_c') L_c\big]^{-1/2} L_c',\ V_c = L_c L_c',

    ``coef_test``/``conf_int`` with Satterthwaite degrees of freedom per coefficient, and
    ``Wald_test(test = "HTZ")`` (Hotelling-``T^2`` approximation with estimated degrees of
    freedom; Tipton & Pustejovsky 2015) for the coefficients ``btt``. See the module docstring for
    the formulas.

    Parameters
    ----------
    X, beta, resid, cluster, V_blocks, bread, btt, level
        As in :func:`cr1`.

    Returns
    -------
    dict
        ``type`` (``"CR2"``), ``beta``, ``vcov``, ``se``, ``stat``, ``df`` (Satterthwaite),
        ``pval``, ``ci_lb``, ``ci_ub``, ``QM`` (the HTZ ``F`` statistic, ``max(0, F)``),
        ``QM_df`` (``[q, nu - q + 1]``), ``QMp`` (``nan`` when the denominator df is not
        positive), ``QM_delta`` (the HTZ multiplier), ``btt``, ``n_clusters``, ``level``.
    """
    return robust_test(
        X, beta, resid, cluster, V_blocks, bread=bread, btt=btt, type="CR2", level=level
    )


def robust_test(
    X: Any,
    beta: Any,
    resid: Any,
    cluster: Any,
    V_blocks: VBlocks,
    *,
    bread: Any = None,
    btt: Any = None,
    type: Literal["CR2", "CR1"] = "CR2",
    level: float = 0.95,
) -> dict[str, Any]:
    """Cluster-robust variance and tests; dispatches to the CR1 or CR2 method.

    See :func:`cr1` and :func:`cr2` for the parameters, formulas and the returned dictionary.
    """
    if type not in ("CR1", "CR2"):
        raise InputError(f"type: expected 'CR1' or 'CR2', got {type!r}")
    if not (0.0 < level < 1.0):
        raise InputError(f"level: expected a value in (0, 1), got {level!r}")
    X, beta, resid, cl, C, btt_arr = _check_inputs(X, beta, resid, cluster, V_blocks, btt)
    check_cluster_sizes(np.bincount(cl, minlength=C))
    p = X.shape[1]
    groups = _groups(X, resid, cl, C, V_blocks)
    M = _bread(groups, p, bread)
    if type == "CR1":
        return _cr1(groups, M, beta, C, btt_arr, level)
    return _cr2(groups, M, beta, C, btt_arr, level)


def _cr1(
    groups: list[_Group], M: np.ndarray, beta: np.ndarray, C: int, btt: np.ndarray, level: float
) -> dict[str, Any]:
    p = beta.size
    meat = np.zeros((p, p))
    for g in groups:
        u = np.einsum("mpn,mn->mp", g.XtW, g.e)  # X_c'W_c e_c
        meat += u.T @ u
    dfs = C - p
    vcov = (C / dfs) * (M @ meat @ M)
    vcov = 0.5 * (vcov + vcov.T)
    df = np.full(p, float(dfs))
    out: dict[str, Any] = {"type": "CR1", "beta": beta.copy(), "vcov": vcov}
    out.update(_coef_table(beta, vcov, df, level))
    m = btt.size
    QM = _wald_q(beta[btt], vcov[np.ix_(btt, btt)]) / m
    out.update(
        {
            "QM": QM,
            "QM_df": [m, dfs],
            "QMp": _f_pval(QM, m, dfs),
            "btt": btt,
            "n_clusters": C,
            "level": level,
        }
    )
    return out


# --------------------------------------------------------------------------------------------
# CR2
# --------------------------------------------------------------------------------------------


def _pp_sums(a: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Traces and second moments of the ``P`` matrices of clubSandwich, without ``C x C`` arrays.

    ``a``: (C, q, q) per-cluster ``K Q_c V_c Q_c' K'``; ``H``: (C, q, r) per-cluster
    ``K Q_c X_c chol(M)``. With ``P_st[c,d] = delta_cd a_c[s,t] - H_c[s].H_d[t]`` returns

    * ``Omega[s,t] = trace(P_st)``,
    * ``var1[s,t] = sum_{c,d} P_st[c,d] P_ts[c,d]``,
    * ``var2[s,t] = sum_{c,d} P_ss[c,d] P_tt[c,d]``.
    """
    b = H @ np.swapaxes(H, -1, -2)  # (C, q, q)
    Omega = a.sum(axis=0) - b.sum(axis=0)
    C, q, r = H.shape
    Z = H.reshape(C, q * r)  # S[s,t] = sum_c H_c[s] H_c[t]', one matrix product
    S = (Z.T @ Z).reshape(q, r, q, r).transpose(0, 2, 1, 3)
    d_a = np.einsum("css->cs", a)
    d_b = np.einsum("css->cs", b)
    var1 = (
        np.einsum("cst,cst->st", a, a)
        - 2.0 * np.einsum("cst,cst->st", a, b)
        + np.einsum("stij,stji->st", S, S)
    )
    var2 = d_a.T @ d_a - d_a.T @ d_b - d_b.T @ d_a + np.einsum("stij,stij->st", S, S)
    return Omega, var1, var2


def _omega(a: np.ndarray, H: np.ndarray) -> np.ndarray:
    """``Omega[s,t] = trace(P_st) = sum_c (a_c - H_c H_c')[s,t]`` of :func:`_pp_sums` alone,
    without its ``q r x q r`` product (12 GB for a 200-coefficient test)."""
    C, q, r = H.shape
    Hf = np.swapaxes(H, 0, 1).reshape(q, C * r)  # sum_c H_c H_c' as one product
    return a.sum(axis=0) - Hf @ Hf.T


#: the HTZ test's second moments cost about C^2 q^2 p operations (C clusters, q tested
#: coefficients, p coefficients), or N^2 (q + p) from the rank-n_c factors of the clusters
#: (N rows; :func:`_pp_total_lowrank`), when the C x C-free sums of :func:`_pp_sums` (C q^2 p^2
#: operations, q^2 p^2 memory) would be larger; beyond this many operations the test is not
#: computed (QM = nan, with a FitWarning saying why) rather than running for minutes
HTZ_MAX_OPS = 3e10


def _pp_total(a: np.ndarray, H: np.ndarray) -> float:
    """``sum_{s,t} (var1[s,t] + var2[s,t])`` of :func:`_pp_sums` (all the HTZ test needs),
    without its ``q x q x p x p`` array::

        sum_{s,t,i,j} S_st[i,j]^2     = || Z Z' ||_F^2,  Z = H reshaped to C x (q p),
        sum_{s,t,i,j} S_st[i,j] S_st[j,i] = sum_{c,d} trace((H_c H_d')^2).
    """
    C, q, r = H.shape
    b = H @ np.swapaxes(H, -1, -2)
    d_a = np.einsum("css->cs", a)
    d_b = np.einsum("css->cs", b)
    total = float(np.sum(a * a) - 2.0 * np.sum(a * b))
    total += float(np.sum(d_a.T @ d_a - d_a.T @ d_b - d_b.T @ d_a))
    Z = H.reshape(C, q * r)
    G = Z @ Z.T
    total += float(np.sum(G * G))
    Ht = np.swapaxes(H, -1, -2)
    for c in range(C):
        B = H[c][None] @ Ht  # H_c H_d' for every d
        total += float(np.sum(B * np.swapaxes(B, -1, -2)))
    return total


def _pp_total_lowrank(factors: list[tuple[np.ndarray, ...]]) -> float:
    """:func:`_pp_total` from the rank-``n_c`` factors of each cluster: ``a_c = R_c R_c'`` and
    ``H_c = U_c Y_c`` with ``R_c, U_c`` of shape ``q x n_c`` and ``Y_c`` of shape ``n_c x r``
    (``factors``: per group of clusters of one size, ``(ids, R, U, Y)`` stacked over its ``m``
    clusters). With all ``N`` rows side by side, ``UU = U' U`` and ``YY = Y Y'`` (``N x N``):

        sum_c ||a_c||^2 = sum_c ||R_c' R_c||^2,   sum_c <a_c, b_c> = sum_c ||R_c' U_c Y_c||^2,
        (Z Z')[c,d] = <H_c, H_d> = sum over the (c, d) block of UU * YY,
        trace((H_c H_d')^2) = trace(P_cd^2),  P_cd = YY[c,d] UU[d,c]  (n_c x n_c),

    which costs about ``N^2 (q + r) + N sum_c n_c^2`` operations instead of ``C^2 q^2 r``
    (a 200-coefficient test on 1,000 rows in 250 clusters: ~1e9 instead of 5e11).
    """
    tr_a, tr_b, sizes, Us, Ys = [], [], [], [], []
    total = 0.0
    for _, R, U, Y in factors:
        m, q, n = R.shape
        RtR = np.swapaxes(R, -1, -2) @ R
        total += float(np.sum(RtR * RtR))
        RUY = (np.swapaxes(R, -1, -2) @ U) @ Y
        total -= 2.0 * float(np.sum(RUY * RUY))
        H = U @ Y
        tr_a.append(np.einsum("mkk->m", RtR))
        tr_b.append(np.einsum("mij,mij->m", H, H))
        sizes.append(np.full(m, n))
        Us.append(np.swapaxes(U, 0, 1).reshape(q, m * n))  # clusters side by side
        Ys.append(Y.reshape(m * n, -1))
    ta, tb = np.concatenate(tr_a), np.concatenate(tr_b)
    total += float(np.sum(ta * ta) - 2.0 * np.sum(ta * tb))  # the diagonal (d_a, d_b) terms
    n_c = np.concatenate(sizes)
    starts = np.concatenate(([0], np.cumsum(n_c)[:-1]))
    Ua, Ya = np.concatenate(Us, axis=1), np.concatenate(Ys, axis=0)
    UU = Ua.T @ Ua
    YY = Ya @ Ya.T
    G = np.add.reduceat(np.add.reduceat(UU * YY, starts, axis=0), starts, axis=1)
    total += float(np.sum(G * G))
    for c0, n in zip(starts, n_c):
        blk = slice(c0, c0 + n)
        # P[k, d, k'] = sum over the rows l of cluster d of YY[k, l] UU[l, k']
        P = np.add.reduceat(YY[blk][:, :, None] * UU[:, blk][None, :, :], starts, axis=1)
        total += float(np.einsum("kdj,jdk->", P, P))
    return total


def _gram_sq_norms(H_all: np.ndarray) -> np.ndarray:
    """For each coefficient i, ||H_i' H_i||_F^2 with H_i the C x p matrix of rows H_c[i, :]
    (= ||H_i H_i'||_F^2: the smaller Gram matrix is formed), one contiguous BLAS product per
    coefficient instead of a p x p x p batch (512 MB and 7 s for 400 coefficients)."""
    C, p, _ = H_all.shape
    out = np.empty(p)
    for i in range(p):
        Hi = np.ascontiguousarray(H_all[:, i, :])
        G = Hi.T @ Hi if p <= C else Hi @ Hi.T
        out[i] = float(np.sum(G * G))
    return out


def _cr2(
    groups: list[_Group], M: np.ndarray, beta: np.ndarray, C: int, btt: np.ndarray, level: float
) -> dict[str, Any]:
    p = beta.size
    LM = np.linalg.cholesky(M)
    meat_u = np.empty((C, p))  # X_c'W_c A_c e_c
    a_all = np.empty((C, p, p))  # Q_c V_c Q_c'
    H_all = np.empty((C, p, p))  # Q_c X_c chol(M)
    factors: list[tuple[np.ndarray, ...]] = []  # per group: (ids, Q L, Q, X chol(M)): a_c
    # and H_c have rank n_c, which the HTZ moments of many coefficients use
    for g in groups:
        XM = g.X @ M  # (m, n, p)
        XMX = XM @ np.swapaxes(g.X, -1, -2)
        Lt = np.swapaxes(g.L, -1, -2)
        G = Lt @ (g.V - XMX) @ g.L
        A = g.L @ _sym_power(G, -0.5) @ Lt
        E = g.XtW @ A  # (m, p, n)
        meat_u[g.ids] = np.einsum("mpn,mn->mp", E, g.e)
        Q = M @ E  # (m, p, n)
        QL = Q @ g.L
        a_all[g.ids] = QL @ np.swapaxes(QL, -1, -2)
        Y = g.X @ LM  # (m, n, p): Q @ (X chol(M)), not (Q X) chol(M), is m n p^2, not m p^3
        H_all[g.ids] = Q @ Y
        factors.append((g.ids, QL, Q, Y))
    vcov = M @ (meat_u.T @ meat_u) @ M
    vcov = 0.5 * (vcov + vcov.T)

    # Satterthwaite df per coefficient (one-row contrasts, no rescaling).
    d_a = np.einsum("cii->ci", a_all)
    d_b = np.einsum("cij,cij->ci", H_all, H_all)
    E_coef = d_a.sum(axis=0) - d_b.sum(axis=0)
    SS_coef = (d_a * d_a).sum(axis=0) - 2.0 * (d_a * d_b).sum(axis=0) + _gram_sq_norms(H_all)
    df = E_coef**2 / SS_coef

    out: dict[str, Any] = {"type": "CR2", "beta": beta.copy(), "vcov": vcov}
    out.update(_coef_table(beta, vcov, df, level))

    # HTZ Wald test of the coefficients btt.
    q = btt.size
    a_K = a_all[:, btt][:, :, btt]
    H_K = H_all[:, btt, :]
    Omega = _omega(a_K, H_K)
    T = _sym_power(Omega, -0.5)
    N = sum(f[1].shape[0] * f[1].shape[2] for f in factors)  # rows
    pairs = C * C * q * q * p
    lowrank = float(N * N * (q + p) + sum(f[1].shape[0] * f[1].shape[2] ** 2 for f in factors) * N)
    n_max = max(f[1].shape[2] for f in factors)
    if N * N > 2.5e7 or n_max * n_max * N > 5e7:  # its N x N and n_c x N x n_c arrays
        lowrank = float("inf")
    if q * q * p * p <= 2e7:  # the q x q x p x p array fits in memory (160 MB)
        a_T = T @ a_K @ T
        H_T = T @ H_K
        _, var1, var2 = _pp_sums(a_T, H_T)
        nu = q * (q + 1) / float(np.sum(var1 + var2))
    elif min(pairs, lowrank) <= HTZ_MAX_OPS:
        if lowrank < pairs:
            nu = (
                q
                * (q + 1)
                / _pp_total_lowrank(
                    [(ids, T @ QL[:, btt], T @ Q[:, btt], Y) for ids, QL, Q, Y in factors]
                )
            )
        else:
            nu = q * (q + 1) / _pp_total(T @ a_K @ T, T @ H_K)
    else:
        import warnings

        from mlmeta.errors import FitWarning

        warnings.warn(
            f"CR2: the HTZ test of {q} coefficients at once with {C} clusters was not "
            f"computed (about {min(pairs, lowrank):.0e} operations); test fewer coefficients "
            "(btt) or use the per-coefficient CR2 tests",
            FitWarning,
            stacklevel=4,
        )
        nu = float("nan")
    delta = max((nu - q + 1) / nu, 0.0)
    df2 = nu - q + 1
    Q = _wald_q(beta[btt], vcov[np.ix_(btt, btt)])
    Fstat = delta * Q / q
    out.update(
        {
            "QM": max(0.0, Fstat) if np.isfinite(Fstat) else float("nan"),
            "QM_df": [q, df2],
            "QMp": _f_pval(Fstat, q, df2),
            "QM_delta": delta,
            "btt": btt,
            "n_clusters": C,
            "level": level,
        }
    )
    return out
