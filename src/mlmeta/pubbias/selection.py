"""Step-function selection models (metafor's ``selmodel(..., type = "stepfun")``).

With the default cut-points (0.025, 1) this is the three-parameter selection model (3PSM).

References
----------
Hedges, L. V. (1992). Modeling publication selection effects in meta-analysis. *Statistical
Science, 7*, 246-255.
Vevea, J. L., & Hedges, L. V. (1995). A general linear model for estimating effect size in the
presence of publication bias. *Psychometrika, 60*, 419-435.
Iyengar, S., & Greenhouse, J. B. (1988). Selection models and the file drawer problem.
*Statistical Science, 3*, 109-117.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats
from scipy.special import ndtr, ndtri

from mlmeta.errors import ConvergenceError, FitWarning, InputError
from mlmeta.pubbias import univariate as uni
from mlmeta.pubbias._checks import EE_METHODS, EPS, as_yv, check_method, z_crit

__all__ = ["selmodel_stepfun"]


class _StepLik:
    r"""Log-likelihood of the step-function selection model (intercept only, preci = 1).

    Study i is observed with probability proportional to :math:`\delta_{g(p_i)}`, where
    :math:`g(p)` is the interval :math:`(s_{j-1}, s_j]` of the step cut-points that holds its
    p-value (:math:`s_0 = 0`, :math:`s_N = 1`, :math:`\delta_1 = 1`). With
    :math:`\sigma_i^2 = v_i + \tau^2`,

    .. math:: \ell = \sum_i \Big[\log\delta_{g(p_i)} + \log\phi(y_i; \mu, \sigma_i^2)
              - \log A_i\Big], \qquad A_i = \sum_j \delta_j \pi_{ij},

    :math:`\pi_{ij} = \Pr(s_{j-1} < p(Y) \le s_j)` for :math:`Y \sim N(\mu, \sigma_i^2)`, where
    for ``alternative="greater"`` :math:`p(y) \le s \iff y \ge \sqrt{v_i}\,\Phi^{-1}(1-s)`.
    """

    def __init__(self, y, v, steps, alternative):
        self.y, self.v = y, v
        self.steps = steps
        self.alt = alternative
        self.N = steps.size
        sv = np.sqrt(v)[:, None]
        s = steps[None, :-1]  # interior cut-points s_1..s_{N-1}
        if alternative == "greater":
            self.c = sv * ndtri(1 - s)
        elif alternative == "less":
            self.c = sv * ndtri(s)
        else:
            self.c = sv * ndtri(1 - s / 2)
        with np.errstate(divide="ignore"):
            z = y / np.sqrt(v)
        if alternative == "greater":
            p = ndtr(-z)
        elif alternative == "less":
            p = ndtr(z)
        else:
            p = 2 * ndtr(-np.abs(z))
        self.pvals = p
        self.grp = np.searchsorted(steps, p, side="left")  # first j with p <= s_j (0-based)

    # --- tail probabilities F(s_j) = P(p(Y) <= s_j) and their derivatives in (mu, tau2)
    def _tails(self, mu, s2):
        s = np.sqrt(s2)[:, None]
        c = self.c
        phi = stats.norm.pdf

        def fu(u):  # phi(u) and u phi(u), 0 at u = +-inf (cut-points at p = 0 or 1)
            f = phi(u)
            return f, np.where(np.isfinite(u), f * np.where(np.isfinite(u), u, 0.0), 0.0)

        def upper(cc):  # P(Y >= cc), d/dmu, d/dtau2
            u = (cc - mu) / s
            f, fu_ = fu(u)
            return ndtr(-u), f / s, fu_ / (2 * s**2)

        def lower(cc):  # P(Y <= cc)
            u = (cc - mu) / s
            f, fu_ = fu(u)
            return ndtr(u), -f / s, -fu_ / (2 * s**2)

        if self.alt == "greater":
            F, Fm, Ft = upper(c)
            G, Gm, Gt = lower(c)  # complements
        elif self.alt == "less":
            F, Fm, Ft = lower(c)
            G, Gm, Gt = upper(c)
        else:
            a, am, at = upper(c)
            b, bm, bt = lower(-c)
            F, Fm, Ft = a + b, am + bm, at + bt
            # complement P(-c < Y < c)
            G = ndtr((c - mu) / s) - ndtr((-c - mu) / s)
            Gm, Gt = -Fm, -Ft
        return F, Fm, Ft, G, Gm, Gt

    def _intervals(self, mu, s2):
        """pi_ij and derivatives, j = 1..N (columns)."""
        F, Fm, Ft, G, Gm, Gt = self._tails(mu, s2)
        k = self.y.size
        if self.N == 1:
            one = np.ones((k, 1))
            zero = np.zeros((k, 1))
            return one, zero, zero
        pi = np.empty((k, self.N))
        pm = np.empty((k, self.N))
        pt = np.empty((k, self.N))
        pi[:, 0], pm[:, 0], pt[:, 0] = F[:, 0], Fm[:, 0], Ft[:, 0]
        if self.N > 2:
            pi[:, 1:-1] = F[:, 1:] - F[:, :-1]
            pm[:, 1:-1] = Fm[:, 1:] - Fm[:, :-1]
            pt[:, 1:-1] = Ft[:, 1:] - Ft[:, :-1]
        pi[:, -1], pm[:, -1], pt[:, -1] = G[:, -1], Gm[:, -1], Gt[:, -1]
        return pi, pm, pt

    def loglik(self, mu, tau2, delta, grad: bool = False):
        """l(mu, tau2, delta) and optionally its gradient in (mu, tau2, delta_1..N)."""
        y, v = self.y, self.v
        tau2 = 0.0 if tau2 < 10 * EPS else tau2  # as metafor
        s2 = v + tau2
        pi, pm, pt = self._intervals(mu, s2)
        A = pi @ delta
        dg = delta[self.grp]
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = float(
                np.sum(
                    np.log(dg) - 0.5 * np.log(2 * np.pi * s2) - 0.5 * (y - mu) ** 2 / s2 - np.log(A)
                )
            )
        if not grad:
            return ll
        e = y - mu
        g_mu = float(np.sum(e / s2 - (pm @ delta) / A))
        g_t2 = float(np.sum(-0.5 / s2 + 0.5 * e**2 / s2**2 - (pt @ delta) / A))
        cnt = np.bincount(self.grp, minlength=self.N)
        g_d = cnt / delta - np.sum(pi / A[:, None], axis=0)
        return ll, g_mu, g_t2, g_d


_DMAX = 100.0  # metafor's delta.max for stepfun (delta.min = 0): delta = 100 / (1 + exp(-x))


def _delta_of(x):
    return _DMAX / (1 + np.exp(-x))


def _genD_hessian(f, x, r: int = 6, d: float = 0.1, eps: float = 1e-4):
    """Hessian of f at x by Richardson extrapolation of central differences.

    The scheme of R's numDeriv::hessian (genD, v = 2; hessian's defaults d = 0.1, eps = 1e-4,
    zero.tol = sqrt(machine eps / 7e-7)) with metafor's ``r = 6``: initial steps
    h = |d x| + eps [|x| < zero.tol], halved r - 1 times; diagonal entries from
    (f(x+h) - 2f(x) + f(x-h)) / h^2, off-diagonal ones from the double steps x +- (h_i e_i +
    h_j e_j) minus the diagonal parts; each sequence extrapolated with factors 4^m.
    """
    n = x.size
    zero_tol = math.sqrt(EPS / 7e-7)
    h0 = np.abs(d * x) + eps * (np.abs(x) < zero_tol)
    f0 = f(x)
    H = np.zeros((n, n))

    def extrapolate(a):
        a = list(a)
        for m in range(1, r):
            for kk in range(r - m):
                a[kk] = (a[kk + 1] * 4**m - a[kk]) / (4**m - 1)
        return a[0]

    for i in range(n):
        h = h0.copy()
        seq = []
        for _ in range(r):
            e = np.zeros(n)
            e[i] = h[i]
            seq.append((f(x + e) - 2 * f0 + f(x - e)) / h[i] ** 2)
            h = h / 2
        H[i, i] = extrapolate(seq)
    for i in range(n):
        for j in range(i):
            h = h0.copy()
            seq = []
            for _ in range(r):
                e = np.zeros(n)
                e[i] = h[i]
                e[j] = h[j]
                seq.append(
                    (f(x + e) - 2 * f0 + f(x - e) - H[i, i] * h[i] ** 2 - H[j, j] * h[j] ** 2)
                    / (2 * h[i] * h[j])
                )
                h = h / 2
            H[i, j] = H[j, i] = extrapolate(seq)
    return H


def _minimize(fun, x0):
    """Minimise a smooth function with analytic gradient: BFGS, then Newton polishing."""
    res = optimize.minimize(
        fun, x0, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 5000}
    )
    x = res.x
    fx, g = fun(x)
    # Newton steps with a Hessian from central differences of the analytic gradient
    for _ in range(50):
        if np.max(np.abs(g)) < 1e-12:
            break
        n = x.size
        H = np.empty((n, n))
        for i in range(n):
            h = 1e-5 * max(1.0, abs(x[i]))
            e = np.zeros(n)
            e[i] = h
            H[:, i] = (fun(x + e)[1] - fun(x - e)[1]) / (2 * h)
        H = (H + H.T) / 2
        try:
            np.linalg.cholesky(H)
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        improved = False
        while t > 1e-8:
            xn = x + t * step
            fn, gn = fun(xn)
            if np.isfinite(fn) and fn <= fx + 1e-14 * abs(fx):
                improved = True
                break
            t /= 2
        if not improved:
            break
        if np.max(np.abs(gn)) >= np.max(np.abs(g)) and fn >= fx:
            break
        x, fx, g = xn, fn, gn
    return x, fx, g


def selmodel_stepfun(
    yi,
    vi,
    steps: Sequence[float] = (0.025, 1.0),
    method: str = "ML",
    *,
    alternative: str = "greater",
    level: float = 95,
    threshold: float = 1e-10,
) -> dict:
    r"""Step-function selection model (Hedges 1992; Vevea & Hedges 1995).

    metafor's ``selmodel(rma(yi, vi, method = method), type = "stepfun", steps = steps)``.
    The observed estimates follow the random-effects model weighted by a step function of
    their one-sided p-values :math:`p_i = 1 - \Phi(y_i / \sqrt{v_i})` (``alternative =
    "greater"``): relative publication probability :math:`\delta_j` for p-values in
    :math:`(s_{j-1}, s_j]`, :math:`\delta_1 = 1` fixed. The log-likelihood is

    .. math:: \ell(\mu, \tau^2, \delta) = \sum_i \Big[\log\delta_{g(p_i)}
              + \log\phi(y_i; \mu, v_i + \tau^2) - \log \sum_j \delta_j \pi_{ij}\Big]

    with :math:`\pi_{ij}` the probability that an estimate drawn from
    :math:`N(\mu, v_i + \tau^2)` has its p-value in interval j. With the default steps
    (0.025, 1) this is the three-parameter selection model (3PSM).

    Estimation (as metafor): the model is first fitted by ML (a REML fit is refitted by ML);
    the ML estimates start the maximisation of :math:`\ell` over :math:`(\mu, \log(\tau^2),
    \mathrm{logit}(\delta_j/100))` (metafor bounds :math:`\delta_j` in (0, 100)); the start is
    :math:`(\hat\mu_{ML}, \log(\hat\tau^2_{ML} + 0.001), \mathrm{logit}(0.01))`. Standard
    errors come from the inverse Hessian of :math:`-\ell` on the untransformed scale
    :math:`(\mu, \tau^2, \delta_2, \dots)`, computed by Richardson extrapolation exactly as
    metafor does (numDeriv's ``hessian`` with ``r = 6``). The CI of :math:`\mu` is Wald-type;
    the likelihood-ratio test of :math:`H_0: \delta_2 = \dots = \delta_N = 1` compares
    :math:`\ell` with the log-likelihood of the ML random-effects model, on
    :math:`N - 1` degrees of freedom.

    Parameters
    ----------
    yi, vi : array_like
        Estimates and sampling variances (> 0).
    steps : sequence of float
        Cut-points in [0, 1] for the p-values; sorted, made unique, and 1 appended if missing.
    method : {"ML", "REML", "EE", "FE", "CE"}
        Method of the model the selection model is based on: ML and REML both lead to the ML
        fit (metafor refits REML models by ML); EE/FE/CE fix :math:`\tau^2 = 0`.
    alternative : {"greater", "less", "two.sided"}
        Direction of the p-values that drive selection.
    level : float
        Confidence level in percent.
    threshold : float
        Fisher-scoring threshold of the ML starting fit (see :func:`rma_uni`).

    Returns
    -------
    dict
        ``beta``, ``se``, ``zval``, ``pval_beta``, ``ci_lb``, ``ci_ub`` (Wald, for
        :math:`\mu`); ``tau2``, ``se_tau2``, ``tau2_ci_lb``, ``tau2_ci_ub``; ``delta`` (array,
        first = 1), ``se_delta`` (NaN for the fixed first one), ``delta_ci_lb``,
        ``delta_ci_ub``; ``LRT``, ``LRT_df``, ``pval`` (LRT p-value), ``ll`` (at the
        estimates), ``ll0`` (ML random-effects model), ``LRT_tau2`` and ``pval_tau2`` (LRT of
        :math:`\tau^2 = 0` within the selection model), ``steps``, ``ptable`` (number of
        p-values per interval), ``hessian``.

    Raises
    ------
    InputError
        If an interval whose :math:`\delta` is estimated contains no p-value, or there are too
        few estimates.
    """
    y, v = as_yv(yi, vi)
    m = check_method(method)
    if m == "DL":
        raise InputError(
            "selmodel needs a model fitted by ML, REML or EE (metafor refits "
            "random-effects models by ML)"
        )
    alt = str(alternative).lower()
    if alt not in ("greater", "less", "two.sided"):
        raise InputError(
            f"alternative must be 'greater', 'less' or 'two.sided'; got {alternative!r}"
        )
    st = np.unique(np.asarray(steps, dtype=float))
    if st.size == 0 or np.any(np.isnan(st)) or np.any((st < 0) | (st > 1)):
        raise InputError("steps must be values between 0 and 1")
    if st[-1] != 1:
        st = np.r_[st, 1.0]
    N = st.size
    fixed_tau2 = m in EE_METHODS
    base = uni.fit_uni(
        y, v, np.ones((y.size, 1)), "EE" if fixed_tau2 else "ML", threshold, 1000, level
    )
    k = y.size
    nfree = N - 1
    if k < 1 + (0 if fixed_tau2 else 1) + nfree:
        raise InputError(f"number of studies (k = {k}) is too small to fit the selection model")
    L = _StepLik(y, v, st, alt)
    ptable = np.bincount(L.grp, minlength=N)
    if np.any(ptable[1:] == 0):
        raise InputError(
            "one or more intervals do not contain any observed p-values: "
            + ", ".join(
                f"({lo:g}, {hi:g}]" for lo, hi, n in zip(np.r_[0, st[:-1]], st, ptable) if n == 0
            )
        )

    def unpack(theta):
        mu = theta[0]
        if fixed_tau2:
            t2, xd = 0.0, theta[1:]
        else:
            t2, xd = math.exp(theta[1]), theta[2:]
        return mu, t2, np.r_[1.0, _delta_of(xd)]

    def nll(theta):
        mu, t2, dl = unpack(theta)
        ll, gm, gt, gd = L.loglik(mu, t2, dl, grad=True)
        if not np.isfinite(ll):
            return np.inf, np.zeros_like(theta)
        dd = dl[1:] * (1 - dl[1:] / _DMAX)  # d delta / d x
        g = [gm] + ([] if fixed_tau2 else [gt * t2]) + list(gd[1:] * dd)
        return -ll, -np.asarray(g, dtype=float)

    x_init = math.log(1 / (_DMAX - 1))  # logit-type map of delta = 1 on (0, 100)
    theta0 = np.r_[
        base["beta"][0],
        [] if fixed_tau2 else [math.log(base["tau2"] + 0.001)],
        np.full(nfree, x_init),
    ]
    theta, fmin, _ = _minimize(nll, theta0)
    if not np.isfinite(fmin):
        raise ConvergenceError("selection model: the likelihood could not be maximised")
    mu, tau2, delta = unpack(theta)
    if tau2 < 10 * EPS:
        tau2 = 0.0
    ll = -float(fmin)
    if np.any(delta[1:] <= EPS**0.25) or np.any(delta[1:] >= _DMAX - 100 * EPS**0.25):
        warnings.warn(
            "one or more delta estimates are (almost) equal to their bound (0 or 100);"
            " treat the results with caution",
            FitWarning,
            stacklevel=2,
        )

    # Hessian of -ll on the untransformed scale (mu, tau2, delta_2..N), as metafor
    def nll_raw(x):
        if fixed_tau2:
            return -L.loglik(x[0], 0.0, np.r_[1.0, x[1:]])
        return -L.loglik(x[0], x[1], np.r_[1.0, x[2:]])

    xr = np.r_[mu, [] if fixed_tau2 else [tau2], delta[1:]]
    crit = z_crit(level)
    se = se_tau2 = float("nan")
    se_delta = np.full(N, np.nan)
    with np.errstate(all="ignore"):
        H = _genD_hessian(nll_raw, xr)
    try:
        if not np.all(np.isfinite(H)):
            raise np.linalg.LinAlgError
        C = np.linalg.cholesky(H)
        Ci = np.linalg.inv(C)
        iH = Ci.T @ Ci
        se = float(math.sqrt(iH[0, 0]))
        if not fixed_tau2:
            se_tau2 = float(math.sqrt(iH[1, 1]))
        se_delta[1:] = np.sqrt(np.diag(iH)[(1 if fixed_tau2 else 2) :])
    except np.linalg.LinAlgError:
        warnings.warn(
            "could not invert the Hessian of the selection model; standard errors are NaN",
            FitWarning,
            stacklevel=2,
        )
    z = mu / se
    d_lb = np.maximum(delta - crit * se_delta, 0.0)
    d_ub = delta + crit * se_delta
    t_lb = max(0.0, tau2 - crit * se_tau2) if np.isfinite(se_tau2) else float("nan")
    t_ub = tau2 + crit * se_tau2

    # LRT of tau2 = 0 inside the selection model (metafor's heterogeneity test)
    LRT_tau2 = pval_tau2 = float("nan")
    if not fixed_tau2:

        def nll0(th):
            dl = np.r_[1.0, _delta_of(th[1:])]
            ll0_, gm, _, gd = L.loglik(th[0], 0.0, dl, grad=True)
            if not np.isfinite(ll0_):
                return np.inf, np.zeros_like(th)
            dd = dl[1:] * (1 - dl[1:] / _DMAX)
            return -ll0_, -np.r_[gm, gd[1:] * dd]

        _, f0, _ = _minimize(nll0, np.r_[base["beta"][0], np.full(nfree, x_init)])
        if np.isfinite(f0):
            LRT_tau2 = max(0.0, -2 * (-f0 - ll))
            pval_tau2 = float(stats.chi2.sf(LRT_tau2, 1))

    ll0 = float(base["logLik"])
    LRT = max(0.0, -2 * (ll0 - ll))
    return {
        "beta": float(mu),
        "se": se,
        "zval": float(z),
        "pval_beta": float(2 * ndtr(-abs(z))),
        "ci_lb": float(mu - crit * se),
        "ci_ub": float(mu + crit * se),
        "tau2": float(tau2),
        "se_tau2": se_tau2,
        "tau2_ci_lb": t_lb,
        "tau2_ci_ub": t_ub,
        "delta": delta,
        "se_delta": se_delta,
        "delta_ci_lb": d_lb,
        "delta_ci_ub": d_ub,
        "LRT": float(LRT),
        "LRT_df": int(nfree),
        "pval": float(stats.chi2.sf(LRT, nfree)) if nfree > 0 else float("nan"),
        "ll": ll,
        "ll0": ll0,
        "LRT_tau2": LRT_tau2,
        "pval_tau2": pval_tau2,
        "steps": st,
        "ptable": ptable,
        "hessian": H,
        "k": k,
        "alternative": alt,
    }
