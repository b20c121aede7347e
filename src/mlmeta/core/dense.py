"""Likelihood with correlated sampling errors: dense per-cluster blocks, still linear in k.

When the sampling errors of effect sizes from the same cluster are correlated (the "correlated
and hierarchical effects" working model, Pustejovsky & Tipton 2022), the sampling covariance is
block-diagonal R = bdiag(R_c) with, for a constant within-cluster correlation rho,

    R_c[i, j] = rho sqrt(v_i v_j)  (i != j),   R_c[i, i] = v_i

(metafor's ``vcalc(vi, cluster, obs, rho)``; clubSandwich's ``impute_covariance_matrix``). The
marginal covariance V_c = R_c + sum_l sigma2_l E_lc (E_lc[i, j] = 1 when rows i, j share their
level-l group) is then handled cluster by cluster: clusters of equal size are stacked and
factorised with batched LAPACK calls. The cost is O(sum_c n_c^3), linear in k for bounded
cluster sizes, and no k x k matrix is formed. Derivatives are exact:

    d log|V| / d s_l = tr(V^{-1} E_l),         d2 = -tr(V^{-1} E_l V^{-1} E_m),
    d (M'V^{-1}M) / d s_l = -M'V^{-1} E_l V^{-1} M,
    d2 (M'V^{-1}M) = M'V^{-1}(E_l V^{-1} E_m + E_m V^{-1} E_l) V^{-1} M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmeta.core.likelihood import Evaluation, ProblemShape, assemble
from mlmeta.core.structure import NestedStructure

__all__ = ["DenseProblem", "constant_rho_blocks", "block_codes"]


def block_codes(level_codes: list[np.ndarray], rho_codes: np.ndarray) -> np.ndarray:
    """Codes of the dense blocks: the outer random level or the correlation cluster, whichever
    contains the other (V must be block-diagonal by them)."""
    from mlmeta.errors import InputError

    if not level_codes:
        return rho_codes
    outer = level_codes[0]
    n_outer = len(np.unique(outer))
    n_rho = len(np.unique(rho_codes))
    n_pairs = len(np.unique(np.column_stack([outer, rho_codes]), axis=0))
    if n_pairs == n_outer:  # correlation clusters nested in the outer level
        return outer
    if n_pairs == n_rho:  # outer groups nested in the correlation clusters
        return rho_codes
    raise InputError(
        "the clusters of correlated sampling errors cut across the outer random "
        "level; use a cluster that contains, or lies within, each outer group"
    )


def constant_rho_blocks(
    v: np.ndarray, rows: list[np.ndarray], rho_codes: np.ndarray, rho: float
) -> list[np.ndarray]:
    """R_c for each block: rho sqrt(v_i v_j) for rows of the same correlation cluster."""
    out = []
    for r in rows:
        s = np.sqrt(v[r])
        same = rho_codes[r][:, None] == rho_codes[r][None, :]
        R = np.where(same, rho * np.outer(s, s), 0.0)
        np.fill_diagonal(R, v[r])
        out.append(R)
    return out


@dataclass(frozen=True)
class _Batch:
    rows: np.ndarray  # (m, n) sorted-row indices
    R: np.ndarray  # (m, n, n)
    E: np.ndarray  # (L, m, n, n)
    M: np.ndarray  # (m, n, q)


class DenseProblem(ProblemShape):
    """Same interface as :class:`mlmeta.core.fit.Problem`, for block sampling covariances."""

    def __init__(
        self,
        st: NestedStructure,
        v_sorted: np.ndarray,
        M_sorted: np.ndarray,
        reml: bool,
        logdet_xtx: float,
        blocks_sorted: np.ndarray,
        R_of_rows,
    ) -> None:
        self.st = st
        self.v = v_sorted
        self.M = M_sorted
        self.reml = reml
        self.logdet_xtx = logdet_xtx
        L = st.n_levels
        order = np.argsort(blocks_sorted, kind="stable")
        sizes = np.bincount(blocks_sorted)
        sizes = sizes[sizes > 0]
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        batches = []
        for n in np.unique(sizes):
            ids = np.flatnonzero(sizes == n)
            rows = order[starts[ids][:, None] + np.arange(n)[None, :]]
            R = np.stack(R_of_rows(list(rows)))
            E = np.empty((L, len(ids), n, n))
            for lv in range(L):
                c = st.codes[lv][rows]
                E[lv] = c[:, :, None] == c[:, None, :]
            batches.append(_Batch(rows, R, E, M_sorted[rows]))
        self.batches = batches

    def __call__(self, theta: np.ndarray, order: int = 2) -> Evaluation:
        theta = np.asarray(theta, dtype=float)
        L = len(theta)
        q = self.M.shape[1]
        C = np.zeros((q, q))
        Cg = np.zeros((q, q, L))
        Ch = np.zeros((q, q, L, L))
        lg = np.zeros(L)
        lh = np.zeros((L, L))
        logdet = 0.0
        for b in self.batches:
            A = b.R + np.einsum("l,lmij->mij", theta, b.E) if L else b.R.copy()
            try:
                Lc = np.linalg.cholesky(A)
            except np.linalg.LinAlgError:
                return Evaluation(
                    theta, -np.inf, np.full(L, np.nan), np.full((L, L), np.nan), C, np.nan
                )
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(Lc, axis1=1, axis2=2))))
            n = A.shape[1]
            Ainv = np.linalg.solve(A, np.broadcast_to(np.eye(n), A.shape))
            AM = Ainv @ b.M
            C += np.einsum("mij,mik->jk", b.M, AM)
            if order >= 1 and L:
                G = np.einsum("lmij,mjq->lmiq", b.E, AM)  # E_l A^{-1} M
                Cg -= np.einsum("miq,lmir->qrl", AM, G)
                F = np.einsum("mij,lmjk->lmik", Ainv, b.E)  # A^{-1} E_l
                lg += np.einsum("lmii->l", F)
                if order >= 2:
                    H = np.einsum("lmiq,mij,tmjr->qrlt", G, Ainv, G)
                    Ch += H + H.transpose(0, 1, 3, 2)
                    lh -= np.einsum("lmij,tmji->lt", F, F)
        return assemble(
            theta,
            C,
            Cg,
            Ch,
            logdet,
            lg,
            lh,
            k=self.k,
            reml=self.reml,
            order=order,
            logdet_xtx=self.logdet_xtx,
        )
