"""Best linear unbiased predictions (BLUPs) of the random effects, metafor's ``ranef.rma.mv``.

For the variance component of level l (one random effect per group u of that level)::

    pred_u = sigma2_l z_u' W e,                     e = y - X b,  W = M^{-1},
    var_u  = sigma2_l - sigma2_l^2 z_u' P z_u,      P = W - W X (X'WX)^{-1} X'W,

with z_u the indicator of the rows of group u and M the marginal covariance (Robinson 1991;
metafor: ``pred = D Z' W e`` and ``vpred = D - D Z' W (I - H) Z D``, H = X (X'WX)^{-1} X'W).
se = sqrt(var); prediction limits pred -+ crit se with crit from the normal distribution (z
tests) or from t with df = the number of groups of the level - p (``dfs="contain"``) or k - p
(``dfs="residual"``), at least 1, as metafor's ``.ddf.calc(beta = FALSE)``.

Everything is computed block by block (clusters of the outer level, joined with the clusters of
correlated sampling errors): z_u' W z_u and X'W z_u only involve the block holding group u, so
no k x k matrix is formed and the cost is O(sum_c n_c^3 + k p^2).

Levels are labelled and ordered as metafor does: the outer level by its id, an inner level by
the ids outer to inner joined with "/" (``"3/2"``: effect size 2 of study 3); ordered by the
outer id, then the next, each in R's factor order (numbers ascending, text by R's collation).

References: Robinson, G. K. (1991). That BLUP is a good thing: the estimation of random effects.
*Statistical Science, 6*(1), 15-32. Viechtbauer (2010), metafor 3.8-1 ``ranef.rma.mv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmeta.analyses.influence import independent_blocks, marginal_block
from mlmeta.core.dist import norm_isf, t_isf
from mlmeta.errors import InputError
from mlmeta.io.formula import r_levels

__all__ = ["level_labels", "ranef"]


def _r_text(x) -> str:
    """A value as R's ``paste``/``as.character`` writes it (2 not 2.0; 4.5)."""
    if isinstance(x, (bool, np.bool_)):
        return "TRUE" if x else "FALSE"
    if isinstance(x, (float, np.floating)):
        xf = float(x)
        if xf.is_integer() and abs(xf) < 1e15:
            return str(int(xf))
        return f"{xf:.15g}"
    return str(x.item() if hasattr(x, "item") else x)


def level_labels(res) -> list[np.ndarray]:
    """metafor's label of every row's group at each level: the outer id, then the ids outer to
    inner joined with "/"."""
    out = []
    parts: list[list[str]] = []
    for col in res.data.factors:
        parts.append([_r_text(x) for x in col])
        out.append(np.array(["/".join(t) for t in zip(*parts)], dtype=object))
    return out


def _ranks(col) -> dict:
    """Rank of every value of a random-effect column in R's factor order."""
    return {
        v: i
        for i, v in enumerate(
            r_levels(pd.Series(np.asarray(col, dtype=object) if not _numeric(col) else col))
        )
    }


def _numeric(col) -> bool:
    a = np.asarray(col)
    return a.dtype.kind in "iuf"


def ranef(res, level: float | None = None) -> dict[str, pd.DataFrame]:
    """BLUPs of the random effects of every level (see the module docstring).

    Returns ``{level name: DataFrame}`` (names as ``res.level_names``, e.g. ``study`` and
    ``study/es``), each indexed by the group labels with columns ``pred``, ``se``, ``pi_lb``,
    ``pi_ub``. ``level`` in percent (default: the model's).
    """
    if res.spec.nesting is None:
        raise InputError(
            "ranef is available for nested random effects ('~ 1 | a/b'), not for "
            "crossed or '~ inner | outer' terms"
        )
    if not res.data.random:
        raise InputError("the equal-effects model has no random effects to predict")
    from mlmeta.spec import to_fraction

    lv = res.level if level is None else to_fraction(level)
    X, b = res.data.X, res.core.beta
    e = res.data.y - X @ b
    vb = res.core.vcov
    p = res.p
    s2 = res.core.sigma2
    codes = res.level_codes()
    ngroups = [int(c.max()) + 1 for c in codes]
    zWe = [np.zeros(n) for n in ngroups]
    zWz = [np.zeros(n) for n in ngroups]
    XWz = [np.zeros((n, p)) for n in ngroups]
    block, _ = independent_blocks(res)
    order = np.argsort(block, kind="stable")
    starts = np.flatnonzero(np.r_[True, block[order][1:] != block[order][:-1]])
    for rows in np.split(order, starts[1:]):
        W = np.linalg.inv(marginal_block(res, rows))
        W = 0.5 * (W + W.T)
        We = W @ e[rows]
        WX = W @ X[rows]
        for lvl, c in enumerate(codes):
            g, inv = np.unique(c[rows], return_inverse=True)
            inv = inv.ravel()
            A = np.zeros((len(rows), len(g)))
            A[np.arange(len(rows)), inv] = 1.0
            zWe[lvl][g] += A.T @ We
            zWz[lvl][g] += np.einsum("iu,ij,ju->u", A, W, A)
            XWz[lvl][g] += A.T @ WX
    labels = level_labels(res)
    cols = [np.asarray(c) for c in res.data.factors]
    ranks = [_ranks(c) for c in cols]
    k = res.k
    out = {}
    for lvl, name in enumerate(res.level_names):
        pred = s2[lvl] * zWe[lvl]
        pred[np.abs(pred) < 100 * np.finfo(float).eps] = 0.0
        quad = zWz[lvl] - np.einsum("up,pq,uq->u", XWz[lvl], vb, XWz[lvl])
        var = s2[lvl] - s2[lvl] ** 2 * quad
        se = np.sqrt(np.maximum(var, 0.0))
        if res.test == "t":
            df = (ngroups[lvl] if res.dfs == "contain" else k) - p
            crit = float(t_isf((1 - lv) / 2, max(df, 1)))
        else:
            crit = float(norm_isf((1 - lv) / 2))
        # the label of each group code (first row of the group)
        _, first = np.unique(codes[lvl], return_index=True)
        lab = [str(labels[lvl][i]) for i in first]
        # metafor's order: by the outer id, then the next, ... each in R's factor order
        keys = [tuple(rk[cols[j][i]] for j, rk in enumerate(ranks[: lvl + 1])) for i in first]
        o = sorted(range(len(lab)), key=lambda i: keys[i])
        out[name] = pd.DataFrame(
            {
                "pred": pred[o],
                "se": se[o],
                "pi_lb": (pred - crit * se)[o],
                "pi_ub": (pred + crit * se)[o],
            },
            index=pd.Index([lab[i] for i in o], name=name),
        )
    return out
