"""Duval & Tweedie's trim-and-fill method (metafor's ``trimfill.rma.uni``).

References
----------
Duval, S., & Tweedie, R. (2000a). Trim and fill: A simple funnel-plot-based method of testing
and adjusting for publication bias in meta-analysis. *Biometrics, 56*, 455-463.
Duval, S., & Tweedie, R. (2000b). A nonparametric "trim and fill" method of accounting for
publication bias in meta-analysis. *JASA, 95*, 89-98.
Duval, S. (2005). The trim and fill method. In H. R. Rothstein, A. J. Sutton, & M. Borenstein
(Eds.), *Publication bias in meta-analysis* (pp. 127-144). Wiley.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from mlmeta.errors import ConvergenceError, InputError
from mlmeta.pubbias import univariate as uni
from mlmeta.pubbias._checks import as_yv, check_method

__all__ = ["trimfill"]


#: centred estimates within this relative distance of the centre count as ties at the centre
CENTRE_RTOL = 1e-12


def trimfill(
    yi,
    vi,
    side: str | None = None,
    estimator: str = "L0",
    method: str = "REML",
    *,
    maxiter: int = 100,
    ilim: tuple[float, float] | None = None,
    level: float = 95,
    threshold: float = 1e-10,
) -> dict:
    r"""Duval & Tweedie's trim-and-fill method (metafor's ``trimfill.rma.uni``).

    1. Side: unless given, the side with the missing studies is taken from the Egger-type
       regression :math:`y_i = b_0 + b_1 \sqrt{v_i}` (fitted with the same ``method``):
       ``"right"`` if :math:`\hat b_1 < 0`, else ``"left"``. For ``"right"`` the estimates are
       flipped (:math:`y \to -y`) so that studies are always missing on the left.
    2. Sort by y. Iterate: fit the model (``method``) to the k - k0 smallest estimates, centre
       all k estimates at that :math:`\hat\mu` (one within 1e-12 of the largest
       :math:`|y_i|` of it counts as exactly at the centre), rank their absolute values (ties: first
       occurrence first) and give the ranks the sign of the centred value; with
       :math:`S_r` = the sum of the positive signed ranks,

       .. math:: L_0 = \frac{4 S_r - k(k+1)}{2k - 1}, \quad
                 R_0 = k - r^* - 1, \quad
                 Q_0 = k - \tfrac12 - \sqrt{2k^2 - 4S_r + \tfrac14},

       (:math:`r^*` the length of the rightmost run of positive ranks, i.e. the largest
       absolute rank of a negative centred value), :math:`k_0 = \max(0, \mathrm{round}(\cdot))`,
       until :math:`k_0` no longer changes.
    3. If :math:`k_0 > 0`, the :math:`k_0` most extreme estimates are mirrored about the last
       truncated-data estimate, :math:`y^{fill} = 2\hat\mu - y` (same :math:`v_i`), and the
       model is refitted to the k + k0 estimates. Otherwise the result is the model fitted to
       the original data.

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (> 0).
    side : {"left", "right"} or None
        Side of the funnel plot with the missing studies; None: estimated as above.
    estimator : {"L0", "R0", "Q0"}
    method : str
        Estimator of tau^2 for all fits (see :func:`rma_uni`).
    maxiter : int
        Maximum number of trim-and-fill iterations.
    ilim : (float, float) or None
        Limits for the imputed values (metafor's ``ilim``).
    level : float
        Confidence level in percent.
    threshold : float
        Fisher-scoring threshold of every model fit (see :func:`rma_uni`; 1e-5 = metafor's
        default).

    Returns
    -------
    dict
        ``k0``, ``se_k0``, ``side``, and of the model fitted to the filled-in data: ``beta``,
        ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``tau2``, ``k`` (= k + k0); also
        ``yi_filled``, ``vi_filled`` (the observed estimates in their original order followed
        by the k0 imputed ones) and ``fill`` (True for imputed rows). For R0 also ``p_k0``.
    """
    y0, v0 = as_yv(yi, vi)
    m = check_method(method)
    est = str(estimator).upper()
    if est not in ("L0", "R0", "Q0"):
        raise InputError(f"estimator must be 'L0', 'R0' or 'Q0'; got {estimator!r}")
    k = y0.size
    if k < 2:
        raise InputError("trim-and-fill needs at least 2 estimates")

    def fit(yv, vv, X=None):
        X = np.ones((yv.size, 1)) if X is None else X
        return uni.fit_uni(yv, vv, X, m, threshold, 1000, level)

    if side is None:
        reg = fit(y0, v0, np.column_stack([np.ones(k), np.sqrt(v0)]))
        side = "right" if reg["beta"][1] < 0 else "left"
    else:
        side = str(side).lower()
        if side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right'; got {side!r}")
    sgn = -1.0 if side == "right" else 1.0
    ys = sgn * y0
    ix = np.argsort(ys, kind="stable")
    ys = ys[ix]
    vs = v0[ix]

    scale = float(np.max(np.abs(ys)))
    k0_prev, k0, it = -1, 0, 0
    beta = se_k0 = float("nan")
    yc = ys
    while k0 != k0_prev:
        k0_prev = k0
        it += 1
        if it > maxiter:
            raise ConvergenceError("trim-and-fill algorithm did not converge")
        beta = float(fit(ys[: k - k0], vs[: k - k0])["beta"][0])
        yc = ys - beta
        # an estimate equal to the centre to 12 significant digits is at the centre: its sign
        # would be rounding noise (identical effects would otherwise impute studies at random)
        yc[np.abs(yc) <= CENTRE_RTOL * scale] = 0.0
        ranks = stats.rankdata(np.abs(yc), method="ordinal")
        signed = np.sign(yc) * ranks
        if est == "R0":
            neg = signed[signed < 0]
            if neg.size == 0:
                raise ConvergenceError("R0 estimator undefined: no estimate below the centre")
            k0f = float((k - np.max(-neg)) - 1)
            se_k0 = math.sqrt(2 * max(0.0, k0f) + 2)
        else:
            Sr = float(np.sum(signed[signed > 0]))
            if est == "L0":
                k0f = (4 * Sr - k * (k + 1)) / (2 * k - 1)
            else:
                disc = 2 * k**2 - 4 * Sr + 0.25
                if disc < 0:
                    raise ConvergenceError(
                        f"trim-and-fill Q0 estimator is undefined for these data (2k^2 - 4 S_r "
                        f"+ 1/4 = {disc:.4g} < 0 at iteration {it}); use estimator='L0'"
                    )
                k0f = k - 0.5 - math.sqrt(disc)
            var_sr = (
                k * (k + 1) * (2 * k + 1)
                + 10 * k0f**3
                + 27 * k0f**2
                + 17 * k0f
                - 18 * k * k0f**2
                - 18 * k * k0f
                + 6 * k**2 * k0f
            ) / 24
            den = (k - 0.5) ** 2 - k0f * (2 * k - k0f - 1)
            if var_sr < 0 or (est == "Q0" and den <= 0):
                se_k0 = float("nan")  # the variance formula breaks down: no SE for k0
            elif est == "L0":
                se_k0 = 4 * math.sqrt(var_sr) / (2 * k - 1)
            else:
                se_k0 = 2 * math.sqrt(var_sr) / math.sqrt(den)
        k0 = int(max(0, round(k0f)))  # R and Python both round half to even
        se_k0 = max(0.0, float(se_k0)) if np.isfinite(se_k0) else float("nan")
        if k0 >= k:
            raise ConvergenceError(f"trim-and-fill estimated k0 = {k0} >= k = {k}")

    if k0 > 0:
        # mirror the k0 largest (on the flipped scale) about beta, back on the original scale
        yfill = sgn * (2 * beta - ys[k - k0 :])
        if ilim is not None:
            lo, hi = sorted(float(x) for x in ilim)
            yfill = np.clip(yfill, lo, hi)
        y_all = np.concatenate([y0, yfill])
        v_all = np.concatenate([v0, vs[k - k0 :]])
        final = fit(y_all, v_all)
    else:
        y_all, v_all = y0.copy(), v0.copy()
        final = fit(y0, v0)
    out = uni.scalar_fit(final)
    out.pop("logLik")
    out.update(
        {
            "k0": k0,
            "se_k0": se_k0,
            "side": side,
            "yi_filled": y_all,
            "vi_filled": v_all,
            "fill": np.r_[np.zeros(k, bool), np.ones(k0, bool)],
            "estimator": est,
        }
    )
    if est == "R0":
        # metafor: 1 - sum_{m=-1}^{k0-1} choose(m+1, m+1) 0.5^(m+2) = 0.5^(k0+1)
        out["p_k0"] = 0.5 ** (k0 + 1)
    return out
