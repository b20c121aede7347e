"""(Restricted) log-likelihood of the nested random-effects model in O(k), with exact derivatives.

Model: ``y ~ N(X beta, V)``, ``V = diag(v) + sum_l sigma2_l Z_l Z_l'`` (nested levels, see
:mod:`mlmeta.core.structure`). With ``M = [X, y]`` everything the likelihood needs is

    log|V|   and   C = M' V^{-1} M   (so X'V^{-1}X, X'V^{-1}y, y'V^{-1}y),

and both follow from a bottom-up recursion over the nesting. For a group ``g`` whose covariance
is ``A_g = B_g + s 1 1'`` (``B_g`` block-diagonal in the children, ``s`` the level's variance),
the Sherman-Morrison formula gives, with ``a = 1'B^{-1}1`` and ``b = 1'B^{-1}M``,

    1'A^{-1}1 = a / (1 + s a),   1'A^{-1}M = b / (1 + s a),
    M'A^{-1}M = M'B^{-1}M - s b'b / (1 + s a),   log|A| = log|B| + log(1 + s a),

and ``a``, ``b`` of a parent are sums over its children. No k x k matrix is ever formed; the
cost is O(k p^2) per evaluation. First and second derivatives with respect to every variance
component are carried through the recursion exactly (forward-mode differentiation by hand), so
the optimiser gets the exact gradient and Hessian.

The restricted log-likelihood is metafor's (Viechtbauer 2010; Harville 1977):

    ll_REML = -1/2 [(k - p) log(2 pi) - log|X'X| + log|V| + log|X'V^{-1}X| + r'V^{-1}r],
    ll_ML   = -1/2 [k log(2 pi) + log|V| + r'V^{-1}r],   r = y - X beta_hat(sigma2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmeta.core.structure import NestedStructure

__all__ = ["LOG2PI", "Evaluation", "ProblemShape", "assemble", "evaluate", "evaluate_terms"]

LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class Evaluation:
    """Result of one likelihood evaluation at ``theta`` (all variance components)."""

    theta: np.ndarray
    ll: float
    grad: np.ndarray | None
    hess: np.ndarray | None
    C: np.ndarray  # M' V^{-1} M, (p+1) x (p+1)
    logdet: float

    @property
    def p(self) -> int:
        return self.C.shape[0] - 1


class ProblemShape:
    """k and p of a likelihood problem holding the sorted ``M = [X, y]``."""

    M: np.ndarray

    @property
    def p(self) -> int:
        return self.M.shape[1] - 1

    @property
    def k(self) -> int:
        return self.M.shape[0]


def _reduce(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts, axis=0)


def reciprocal_rule(v, g, h):
    """Value, gradient and Hessian of 1/u from those of u (vectorised over the first axes)."""
    iv = 1.0 / v
    ig = -g * (iv * iv)[..., None]
    ih = -h * (iv * iv)[..., None, None] + 2.0 * (iv**3)[..., None, None] * (
        g[..., :, None] * g[..., None, :]
    )
    return iv, ig, ih


def product_rule(xv, xg, xh, yv, yg, yh):
    """Product rule to second order; shapes broadcast, derivative axes last."""
    v = xv * yv
    g = xg * yv[..., None] + xv[..., None] * yg
    h = (
        xh * yv[..., None, None]
        + xg[..., :, None] * yg[..., None, :]
        + yg[..., :, None] * xg[..., None, :]
        + xv[..., None, None] * yh
    )
    return v, g, h


def evaluate(
    theta: np.ndarray,
    st: NestedStructure,
    v: np.ndarray,
    M: np.ndarray,
    *,
    reml: bool,
    order: int = 2,
    logdet_xtx: float = 0.0,
) -> Evaluation:
    """Evaluate the log-likelihood at ``theta`` (length ``L``), sorted rows.

    ``v`` and ``M = [X, y]`` must already be in the structure's sorted row order. ``order`` is 0
    (value only), 1 (and gradient) or 2 (and Hessian). ``logdet_xtx`` is ``log|X'X|``, metafor's
    constant in the restricted likelihood.
    """
    theta = np.asarray(theta, dtype=float)
    C, Cg, Ch, logdet, lg, lh = evaluate_terms(theta, st, v, M, order=order)
    return assemble(
        theta,
        C,
        Cg,
        Ch,
        logdet,
        lg,
        lh,
        k=M.shape[0],
        reml=reml,
        order=order,
        logdet_xtx=logdet_xtx,
    )


def evaluate_terms(
    theta: np.ndarray, st: NestedStructure, v: np.ndarray, M: np.ndarray, *, order: int = 2
):
    """``C = M'V^{-1}M`` and ``log|V|`` with their first and second derivatives in ``theta``
    (``Cg``: m x m x L, ``Ch``: m x m x L x L, ``lg``: L, ``lh``: L x L; zeros above ``order``)."""
    theta = np.asarray(theta, dtype=float)
    L = st.n_levels
    _k, m = M.shape
    e = np.zeros(L)
    for lv in st.diag_levels:
        e[lv] = 1.0
    d = v + float(theta @ e) if L else v.copy()
    w = 1.0 / d
    Mw = M * w[:, None]
    C = M.T @ Mw
    logdet = float(np.sum(np.log(d)))
    Cg = np.zeros((m, m, L))
    Ch = np.zeros((m, m, L, L))
    lg = np.zeros(L)
    lh = np.zeros((L, L))
    ee = np.outer(e, e)
    if order >= 1 and st.diag_levels:
        w2 = w * w
        C2 = M.T @ (M * w2[:, None])
        Cg -= C2[:, :, None] * e
        lg += np.sum(w) * e
        if order >= 2:
            C3 = M.T @ (M * (w2 * w)[:, None])
            Ch += 2.0 * C3[:, :, None, None] * ee
            lh -= np.sum(w2) * ee

    if st.group_levels:
        # leaves -> innermost group level
        rs = st.row_starts
        assert rs is not None  # a structure with group levels has row starts
        av = _reduce(w, rs)
        bv = _reduce(Mw, rs)
        G = av.shape[0]
        if order >= 1:
            w2 = w * w
            ag = -_reduce(w2, rs)[:, None] * e
            bg = -_reduce(M * w2[:, None], rs)[:, :, None] * e
        else:
            ag = np.zeros((G, L))
            bg = np.zeros((G, m, L))
        if order >= 2:
            w3 = w2 * w
            ah = 2.0 * _reduce(w3, rs)[:, None, None] * ee
            bh = 2.0 * _reduce(M * w3[:, None], rs)[:, :, None, None] * ee
        else:
            ah = np.zeros((G, L, L))
            bh = np.zeros((G, m, L, L))
        levels = st.group_levels
        for idx in range(len(levels) - 1, -1, -1):
            lv = levels[idx]
            s = float(theta[lv])
            G = av.shape[0]
            u = np.zeros(L)
            u[lv] = 1.0
            # den = 1 + s a
            dv = 1.0 + s * av
            dg = av[:, None] * u + s * ag
            dh = ag[:, :, None] * u[None, None, :] + u[None, :, None] * ag[:, None, :] + s * ah
            logdet += float(np.sum(np.log(dv)))
            iv, ig, ih = reciprocal_rule(dv, dg, dh)
            if order >= 1:
                lg += np.sum(dg * iv[:, None], axis=0)
            if order >= 2:
                lh += np.tensordot(iv, dh, axes=(0, 0)) - np.tensordot(
                    dg * (iv * iv)[:, None], dg, axes=(0, 0)
                )
            # f = s / den
            fv = s * iv
            fg = u[None, :] * iv[:, None] + s * ig
            fh = u[None, :, None] * ig[:, None, :] + ig[:, :, None] * u[None, None, :] + s * ih
            # C -= sum_g f b b' (sums over the groups g as BLAS products: tensordot over g)
            fb = bv * fv[:, None]
            C -= fb.T @ bv
            if order >= 1:
                # sum_g fg[g, i] b_g b_g' as one BLAS product per parameter i (never the
                # G x m x m array of all b_g b_g': 640 MB for 500 studies and 400 coefficients)
                t1 = np.stack([(bv * fg[:, i, None]).T @ bv for i in range(L)], axis=2)
                t2 = np.tensordot(bg * fv[:, None, None], bv, axes=(0, 0))  # m x i x n
                t2 = t2.transpose(0, 2, 1)
                Cg -= t1 + t2 + t2.transpose(1, 0, 2)
            if order >= 2:
                h1 = np.empty((m, m, L, L))  # m n i j
                for i in range(L):
                    for j in range(L):
                        h1[:, :, i, j] = (bv * fh[:, i, j, None]).T @ bv
                h2 = np.tensordot(bg, fg[:, None, :] * bv[:, :, None], axes=(0, 0))  # m j n i
                h2 = h2.transpose(0, 2, 3, 1)
                h2 = h2 + h2.transpose(1, 0, 2, 3)
                h2 = h2 + h2.transpose(0, 1, 3, 2)
                h3 = np.tensordot(bh * fv[:, None, None, None], bv, axes=(0, 0))  # m i j n
                h3 = h3.transpose(0, 3, 1, 2)
                h3 = h3 + h3.transpose(1, 0, 2, 3)
                h4 = np.tensordot(bg * fv[:, None, None], bg, axes=(0, 0))  # m i n j
                h4 = h4.transpose(0, 2, 1, 3)
                h4 = h4 + h4.transpose(0, 1, 3, 2)
                Ch -= h1 + h2 + h3 + h4
            if idx == 0:
                break  # the top level has no parent: its a, b are not needed
            # new a, b: a/den, b/den
            if order >= 2:
                av, ag, ah = product_rule(av, ag, ah, iv, ig, ih)
                bv, bg, bh = product_rule(
                    bv, bg, bh, iv[:, None], ig[:, None, :], ih[:, None, :, :]
                )
            elif order == 1:
                av, ag = av * iv, ag * iv[:, None] + av[:, None] * ig
                bv, bg = bv * iv[:, None], bg * iv[:, None, None] + bv[:, :, None] * ig[:, None, :]
            else:
                av = av * iv
                bv = bv * iv[:, None]
            if idx > 0:
                cs = st.child_starts[idx - 1]
                av, bv = _reduce(av, cs), _reduce(bv, cs)
                ag, bg = _reduce(ag, cs), _reduce(bg, cs)
                ah, bh = _reduce(ah, cs), _reduce(bh, cs)
    return C, Cg, Ch, logdet, lg, lh


def assemble(
    theta, C, Cg, Ch, logdet, lg, lh, *, k: int, reml: bool, order: int, logdet_xtx: float
) -> Evaluation:
    """Log-likelihood, gradient and Hessian from log|V|, C = M'V^{-1}M and their derivatives."""
    p = C.shape[0] - 1
    C = 0.5 * (C + C.T)
    Cxx = C[:p, :p]
    Cxy = C[:p, p]
    Cyy = C[p, p]
    if p > 0:
        cf = np.linalg.cholesky(Cxx)
        K = np.linalg.inv(Cxx)
        beta = K @ Cxy
        rss = float(Cyy - Cxy @ beta)
        logdet_cxx = 2.0 * float(np.sum(np.log(np.diag(cf))))
    else:
        K = np.zeros((0, 0))
        beta = np.zeros(0)
        rss = float(Cyy)
        logdet_cxx = 0.0
    if reml:
        ll = -0.5 * ((k - p) * LOG2PI - logdet_xtx + logdet + logdet_cxx + rss)
    else:
        ll = -0.5 * (k * LOG2PI + logdet + rss)

    grad = hess = None
    if order >= 1:
        Axg = Cg[:p, :p, :]
        cg = Cg[:p, p, :]
        yg = Cg[p, p, :]
        # d rss = d Cyy - (2 beta' dc - beta' dA beta)
        dq = 2.0 * np.einsum("m,mi->i", beta, cg) - np.einsum("m,mni,n->i", beta, Axg, beta)
        drss = yg - dq
        g = lg + drss
        if reml:
            g = g + np.einsum("mn,nmi->i", K, Axg)
        grad = -0.5 * g
        if order >= 2:
            Axh = Ch[:p, :p]
            ch = Ch[:p, p]
            yh = Ch[p, p]
            # d beta_j = K (dc_j - dA_j beta)
            dbeta = K @ (cg - np.einsum("mnj,n->mj", Axg, beta))
            d2q = (
                2.0 * np.einsum("mj,mi->ij", dbeta, cg)
                + 2.0 * np.einsum("m,mij->ij", beta, ch)
                - 2.0 * np.einsum("mj,mni,n->ij", dbeta, Axg, beta)
                - np.einsum("m,mnij,n->ij", beta, Axh, beta)
            )
            h = lh + yh - d2q
            if reml:
                KA = np.einsum("mn,nri->mri", K, Axg)
                h = h + np.einsum("mn,nmij->ij", K, Axh) - np.einsum("mri,rmj->ij", KA, KA)
            hess = -0.5 * 0.5 * (h + h.T)
    return Evaluation(theta=theta, ll=float(ll), grad=grad, hess=hess, C=C, logdet=logdet)
