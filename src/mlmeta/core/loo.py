"""Leave-one-cluster-out refits of a nested model in one pass over the data.

Leaving out outer cluster ``c`` removes its block from the block-diagonal marginal covariance,
so the quantities the (restricted) likelihood needs split exactly:

    C_{-c}(theta) = C(theta) - C_c(theta),     log|V_{-c}(theta)| = log|V(theta)| - log|V_c(theta)|,

with ``C = M'V^{-1}M`` (``M = [X, y]``) and ``C_c`` the same sum restricted to cluster ``c``.
The cluster terms ``C_c``, ``log|V_c|`` and their first and second derivatives are computed for
*every* cluster, each at its own ``theta_c``, by one bottom-up pass (:func:`cluster_terms`,
the recursion of :mod:`mlmeta.core.likelihood` reduced per outer cluster instead of in total).
The full-data terms ``C(theta)`` and ``log|V(theta)|`` are needed near the full-data optimum
``theta_hat`` only: leaving one of ``J`` clusters out moves the estimates by O(1/J). They are
represented by their Taylor expansion to third order around ``theta_hat`` (exact first and
second derivatives; the third by central differences of the exact second derivatives), so the
gradient of each leave-one-out likelihood is exact up to O(|delta|^3) in the step
``delta = theta_c - theta_hat``. Newton's method then converges for all clusters at once.

A cluster whose step is not small relative to ``theta_hat`` (default 0.1 %, so the neglected
fourth-order terms stay ~1e-9 relative), whose estimate would
reach the boundary, or whose Hessian is not negative definite is reported as not done, and the
caller refits it exactly. The cost is a few O(k) passes in total instead of one fit per cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmeta.core.likelihood import LOG2PI, evaluate_terms, product_rule, reciprocal_rule
from mlmeta.core.structure import NestedStructure

__all__ = ["LooResult", "cluster_terms", "leave_one_cluster_out"]


def _red(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(x, starts, axis=0)


def _starts(codes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])


def cluster_terms(theta_c: np.ndarray, st: NestedStructure, v: np.ndarray, M: np.ndarray):
    """Per outer cluster: ``C_c``, ``Cg_c``, ``Ch_c``, ``log|V_c|``, ``lg_c``, ``lh_c``.

    ``theta_c`` (n_clusters x L) gives each cluster its own variance components; rows (``v``,
    ``M``) are in the structure's sorted order. Summed over clusters at a common ``theta`` the
    terms equal :func:`mlmeta.core.likelihood.evaluate_terms`.
    """
    L = st.n_levels
    _k, _m = M.shape
    top = st.codes[0]
    G0 = st.n_groups[0]
    ts = _starts(top)
    e = np.zeros(L)
    for lv in st.diag_levels:
        e[lv] = 1.0
    ee = np.outer(e, e)
    th_row = theta_c[top]
    d = v + th_row @ e
    w = 1.0 / d
    w2 = w * w
    w3 = w2 * w
    MM = M[:, :, None] * M[:, None, :]
    C = _red(MM * w[:, None, None], ts)
    Cg = -_red(MM * w2[:, None, None], ts)[..., None] * e
    Ch = 2.0 * _red(MM * w3[:, None, None], ts)[..., None, None] * ee
    logdet = _red(np.log(d), ts)
    lg = _red(w, ts)[:, None] * e
    lh = -_red(w2, ts)[:, None, None] * ee
    if st.group_levels:
        rs = st.row_starts
        assert rs is not None
        top_g = top[rs]
        Mw = M * w[:, None]
        av = _red(w, rs)
        bv = _red(Mw, rs)
        ag = -_red(w2, rs)[:, None] * e
        bg = -_red(M * w2[:, None], rs)[:, :, None] * e
        ah = 2.0 * _red(w3, rs)[:, None, None] * ee
        bh = 2.0 * _red(M * w3[:, None], rs)[:, :, None, None] * ee
        levels = st.group_levels
        for idx in range(len(levels) - 1, -1, -1):
            lv = levels[idx]
            s = theta_c[top_g, lv]
            gs = _starts(top_g)
            u = np.zeros(L)
            u[lv] = 1.0
            dv = 1.0 + s * av
            dg = av[:, None] * u + s[:, None] * ag
            dh = (
                ag[:, :, None] * u[None, None, :]
                + u[None, :, None] * ag[:, None, :]
                + s[:, None, None] * ah
            )
            logdet += _red(np.log(dv), gs)
            iv, ig, ih = reciprocal_rule(dv, dg, dh)
            lg += _red(dg * iv[:, None], gs)
            lh += _red(
                dh * iv[:, None, None] - dg[:, :, None] * dg[:, None, :] * (iv * iv)[:, None, None],
                gs,
            )
            fv = s * iv
            fg = u[None, :] * iv[:, None] + s[:, None] * ig
            fh = (
                u[None, :, None] * ig[:, None, :]
                + ig[:, :, None] * u[None, None, :]
                + s[:, None, None] * ih
            )
            bb = bv[:, :, None] * bv[:, None, :]
            C -= _red(bb * fv[:, None, None], gs)
            t1 = bb[..., None] * fg[:, None, None, :]
            t2 = (bg * fv[:, None, None])[:, :, None, :] * bv[:, None, :, None]  # g m n i
            Cg -= _red(t1 + t2 + t2.transpose(0, 2, 1, 3), gs)
            h1 = bb[..., None, None] * fh[:, None, None, :, :]
            h2 = (
                bg[:, :, None, None, :] * fg[:, None, None, :, None] * bv[:, None, :, None, None]
            )  # g m n i j
            h2 = h2 + h2.transpose(0, 2, 1, 3, 4)
            h2 = h2 + h2.transpose(0, 1, 2, 4, 3)
            h3 = (bh * fv[:, None, None, None])[:, :, None, :, :] * bv[:, None, :, None, None]
            h3 = h3 + h3.transpose(0, 2, 1, 3, 4)
            h4 = (bg * fv[:, None, None])[:, :, None, :, None] * bg[:, None, :, None, :]
            h4 = h4 + h4.transpose(0, 1, 2, 4, 3)
            Ch -= _red(h1 + h2 + h3 + h4, gs)
            if idx == 0:
                break
            av, ag, ah = product_rule(av, ag, ah, iv, ig, ih)
            bv, bg, bh = product_rule(bv, bg, bh, iv[:, None], ig[:, None, :], ih[:, None, :, :])
            cs = st.child_starts[idx - 1]
            av, bv = _red(av, cs), _red(bv, cs)
            ag, bg = _red(ag, cs), _red(bg, cs)
            ah, bh = _red(ah, cs), _red(bh, cs)
            top_g = top_g[cs]
    assert C.shape[0] == G0
    return C, Cg, Ch, logdet, lg, lh


def _assemble_batch(
    C, Cg, Ch, logdet, lg, lh, k, logdet_xtx, reml: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Batched :func:`mlmeta.core.likelihood.assemble`: ll, gradient, Hessian, beta, vcov."""
    p = C.shape[1] - 1
    C = 0.5 * (C + C.transpose(0, 2, 1))
    Cxx = C[:, :p, :p]
    Cxy = C[:, :p, p]
    Cyy = C[:, p, p]
    K = np.linalg.inv(Cxx)
    beta = np.einsum("gmn,gn->gm", K, Cxy)
    rss = Cyy - np.einsum("gm,gm->g", Cxy, beta)
    _, ldc = np.linalg.slogdet(Cxx)
    if reml:
        ll = -0.5 * ((k - p) * LOG2PI - logdet_xtx + logdet + ldc + rss)
    else:
        ll = -0.5 * (k * LOG2PI + logdet + rss)
    Axg = Cg[:, :p, :p, :]
    cg = Cg[:, :p, p, :]
    yg = Cg[:, p, p, :]
    dq = 2.0 * np.einsum("gm,gmi->gi", beta, cg) - np.einsum(
        "gm,gmni,gn->gi", beta, Axg, beta, optimize=True
    )
    g = lg + yg - dq
    if reml:
        g = g + np.einsum("gmn,gnmi->gi", K, Axg)
    grad = -0.5 * g
    Axh = Ch[:, :p, :p]
    ch = Ch[:, :p, p]
    yh = Ch[:, p, p]
    dbeta = np.einsum("gmn,gnj->gmj", K, cg - np.einsum("gmnj,gn->gmj", Axg, beta))
    d2q = (
        2.0 * np.einsum("gmj,gmi->gij", dbeta, cg)
        + 2.0 * np.einsum("gm,gmij->gij", beta, ch)
        - 2.0 * np.einsum("gmj,gmni,gn->gij", dbeta, Axg, beta, optimize=True)
        - np.einsum("gm,gmnij,gn->gij", beta, Axh, beta, optimize=True)
    )
    h = lh + yh - d2q
    if reml:
        KA = np.einsum("gmn,gnri->gmri", K, Axg)
        h = (
            h
            + np.einsum("gmn,gnmij->gij", K, Axh)
            - np.einsum("gmri,grmj->gij", KA, KA, optimize=True)
        )
    hess = -0.25 * (h + h.transpose(0, 2, 1))
    return ll, grad, hess, beta, 0.5 * (K + K.transpose(0, 2, 1))


@dataclass(frozen=True)
class LooResult:
    """Leave-one-cluster-out estimates, clusters in the order of their outer codes.

    ``done[c]`` is False where the one-pass computation was not trusted (large step, boundary,
    non-concave): refit those clusters exactly.
    """

    sigma2: np.ndarray  # n_clusters x L
    beta: np.ndarray  # n_clusters x p
    vcov: np.ndarray  # n_clusters x p x p
    ll: np.ndarray
    k: np.ndarray  # rows left per refit
    done: np.ndarray


def leave_one_cluster_out(
    st: NestedStructure,
    v: np.ndarray,
    M: np.ndarray,
    theta_hat,
    fixed,
    *,
    reml: bool,
    max_rel_step: float = 1e-3,
    max_iter: int = 20,
) -> LooResult:
    """All leave-one-outer-cluster-out refits of a nested model (see the module docstring).

    ``v``, ``M = [X, y]`` in the structure's sorted order; ``theta_hat`` the full-data optimum
    (every free component > 0); ``fixed`` marks components held at their value.
    """
    theta_hat = np.asarray(theta_hat, dtype=float)
    fixed = np.asarray(fixed, dtype=bool)
    L = len(theta_hat)
    free = np.flatnonzero(~fixed)
    k, m = M.shape
    p = m - 1
    top = st.codes[0]
    G = st.n_groups[0]
    ts = _starts(top)
    kc = np.diff(np.r_[ts, k])
    X = M[:, :p]
    XX = X[:, :, None] * X[:, None, :]
    xtx_c = _red(XX, ts)
    xtx = X.T @ X
    _, ld_xtx = np.linalg.slogdet(xtx[None] - xtx_c)
    # full-data terms and their Taylor expansion around theta_hat
    C0, Cg0, Ch0, ld0, lg0, lh0 = evaluate_terms(theta_hat, st, v, M, order=2)
    TC = np.zeros(Ch0.shape + (L,))
    TL = np.zeros((L, L, L))
    for i in free:
        hstep = 1e-3 * theta_hat[i]
        tp = theta_hat.copy()
        tm = theta_hat.copy()
        tp[i] += hstep
        tm[i] -= hstep
        _, _, Chp, _, _, lhp = evaluate_terms(tp, st, v, M, order=2)
        _, _, Chm, _, _, lhm = evaluate_terms(tm, st, v, M, order=2)
        TC[..., i] = (Chp - Chm) / (2.0 * hstep)
        TL[..., i] = (lhp - lhm) / (2.0 * hstep)
    # symmetrise the third derivatives over their three axes
    perms = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    TC = np.mean([np.transpose(TC, (0, 1) + tuple(2 + q for q in pm)) for pm in perms], axis=0)
    TL = np.mean([np.transpose(TL, pm) for pm in perms], axis=0)

    delta = np.zeros((G, L))
    done = np.ones(G, dtype=bool)
    scale = np.where(theta_hat > 0, theta_hat, 1.0)

    def terms(delta: np.ndarray) -> tuple[np.ndarray, ...]:
        Cf = (
            C0
            + np.einsum("mni,gi->gmn", Cg0, delta)
            + 0.5 * np.einsum("mnij,gi,gj->gmn", Ch0, delta, delta, optimize=True)
            + np.einsum("mnijl,gi,gj,gl->gmn", TC, delta, delta, delta, optimize=True) / 6.0
        )
        Cgf = (
            Cg0
            + np.einsum("mnij,gj->gmni", Ch0, delta)
            + 0.5 * np.einsum("mnijl,gj,gl->gmni", TC, delta, delta, optimize=True)
        )
        Chf = Ch0 + np.einsum("mnijl,gl->gmnij", TC, delta)
        ldf = (
            ld0
            + delta @ lg0
            + 0.5 * np.einsum("ij,gi,gj->g", lh0, delta, delta)
            + np.einsum("ijl,gi,gj,gl->g", TL, delta, delta, delta, optimize=True) / 6.0
        )
        lgf = lg0 + delta @ lh0 + 0.5 * np.einsum("ijl,gj,gl->gi", TL, delta, delta)
        lhf = lh0 + np.einsum("ijl,gl->gij", TL, delta)
        Cc, Cgc, Chc, ldc, lgc, lhc = cluster_terms(theta_hat + delta, st, v, M)
        return (Cf - Cc, Cgf - Cgc, Chf - Chc, ldf - ldc, lgf - lgc, lhf - lhc)

    for _ in range(max_iter):
        C_, Cg_, Ch_, ld_, lg_, lh_ = terms(delta)
        ll, grad, hess, beta, vcov = _assemble_batch(
            C_, Cg_, Ch_, ld_, lg_, lh_, k - kc, ld_xtx, reml
        )
        gF = grad[:, free]
        HF = hess[:, free][:, :, free]
        eig = np.linalg.eigvalsh(HF)
        bad = ~(np.all(eig < 0, axis=1) & np.all(np.isfinite(gF), axis=1))
        done &= ~bad
        HF = np.where(bad[:, None, None], -np.eye(len(free)), HF)
        step = -np.linalg.solve(HF, gF[..., None])[..., 0]
        step[bad] = 0.0
        delta[:, free] += step
        rel = np.max(np.abs(step) / scale[free], axis=1) if len(free) else np.zeros(G)
        if np.all(rel[done] < 1e-13):
            break
    C_, Cg_, Ch_, ld_, lg_, lh_ = terms(delta)
    ll, grad, hess, beta, vcov = _assemble_batch(C_, Cg_, Ch_, ld_, lg_, lh_, k - kc, ld_xtx, reml)
    theta = theta_hat + delta
    big = (
        np.max(np.abs(delta[:, free]) / scale[free], axis=1) > max_rel_step
        if len(free)
        else np.zeros(G, dtype=bool)
    )
    done &= ~big & np.all(theta[:, free] > 0, axis=1) & np.isfinite(ll)
    return LooResult(theta, beta, vcov, ll, k - kc, done)
