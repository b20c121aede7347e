"""Profile likelihood of the variance components and its confidence intervals.

The profile of sigma2_j is ll_p(s) = max over the other components of ll(sigma2_j = s, ...). The
profile-likelihood CI (metafor's ``confint.rma.mv``) is {s : 2 (ll_max - ll_p(s)) <= chi2_{1,level}},
found by Brent's method to ~1e-12 relative; a lower limit of 0 means the profile stays above the
cut-off down to the boundary. Each profile point is a warm-started Newton refit in O(k).
A profile that stays flat (the limit runs to the search cap) or that has a second peak points to a
component the data cannot identify; it is flagged.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.core.dist import chi2_isf
from mlmeta.errors import ConvergenceError, FitWarning, InputError
from mlmeta.spec import to_fraction

__all__ = ["ProfileCI", "profile", "profile_ci"]


@dataclass(frozen=True)
class ProfileCI:
    table: pd.DataFrame  # estimate, ci_lb, ci_ub per level
    others: dict  # bound -> list (per j) of the other components' values at that bound
    flags: tuple[str, ...]

    def to_list(self) -> list[dict]:
        return [
            {
                "estimate": float(r["estimate"]),
                "ci_lb": float(r["ci_lb"]),
                "ci_ub": float(r["ci_ub"]),
            }
            for r in self.table.to_dict(orient="records")
        ]


class _Profiler:
    def __init__(self, res):
        if not res.data.random:
            raise InputError("profile likelihood needs random effects")
        self.res = res
        self.md = res.data
        self.pr = res.core.problem
        self.base_fixed = [float(s) if f else None for s, f in zip(res.core.sigma2, res.core.fixed)]
        self.ll_max = res.core.ll
        self.est = res.core.sigma2

    def at(self, j: int, s: float, start=None):
        return self.at_with_slope(j, s, start)[:2]

    def at_with_slope(self, j: int, s: float, start=None):
        """Profile log-likelihood at sigma2_j = s, the other components, and the slope
        d ll_p / d s, which by the envelope theorem is the partial derivative of ll in
        sigma2_j at the profiled optimum (exact from the likelihood's gradient)."""
        fx = list(self.base_fixed)
        fx[j] = float(s)
        st = self.est if start is None else start
        fit = self.res.refit(sigma2=fx, start=np.where(np.arange(len(st)) == j, s, st)).core
        return fit.ll, fit.sigma2, float(fit.optim.evaluation.grad[j])


def _bracketed_newton(fd, x, fx, gx, other, f_other, xtol, ftol=0.0):
    """Root of f between ``x`` and ``other`` (f(x), f(other) of opposite signs) by Newton's
    method on the exact slope, falling back to bisection when a step leaves the bracket or
    stalls; converges quadratically, so ~4-6 profile refits per limit instead of Brent's ~12.
    """
    a, fa = x, fx
    b, _fb = other, f_other
    for _ in range(200):
        if abs(fx) <= ftol:
            return float(x)  # at the likelihood's own rounding level: an evaluated point
        step = fx / gx if gx != 0 and np.isfinite(gx) else np.inf
        new = x - step
        lo, hi = min(a, b), max(a, b)
        if not (lo < new < hi) or not np.isfinite(new):
            new = 0.5 * (a + b)
            step = x - new
        if abs(step) <= xtol or hi - lo <= xtol:
            return float(x if abs(x - new) <= xtol else new)
        fn, gn = fd(new)
        if fn == 0.0:
            return float(new)
        if (fn > 0) == (fa > 0):
            a, fa = new, fn
        else:
            b, _fb = new, fn
        x, fx, gx = new, fn, gn
    return float(x)


def _wald_halfwidth(res, j: int, drop: float) -> float | None:
    """sqrt(2 drop (-H^-1)_jj) from the Hessian of ll at the optimum over the free components
    (None when it is not negative definite, e.g. at the boundary)."""
    ev = res.core.optim.evaluation
    if ev.hess is None:
        return None
    free = [int(i) for i in np.flatnonzero(~res.core.fixed & (res.core.sigma2 > 0))]
    if j not in free:
        return None
    H = ev.hess[np.ix_(free, free)]
    try:
        cov = np.linalg.inv(-H)
    except np.linalg.LinAlgError:
        return None
    vj = float(cov[free.index(j), free.index(j)])
    if not np.isfinite(vj) or vj <= 0 or not np.all(np.linalg.eigvalsh(-H) > 0):
        return None
    return float(np.sqrt(2.0 * drop * vj))


def profile(res, j: int, values) -> pd.DataFrame:
    """Profile log-likelihood of component ``j`` at ``values`` (for plots)."""
    pf = _Profiler(res)
    out = []
    start = None
    for s in np.asarray(values, dtype=float):
        ll, s2 = pf.at(j, s, start)
        start = s2
        out.append((s, ll))
    return pd.DataFrame(out, columns=["sigma2", "logLik"])


def profile_ci(res, level: float = 95, components=None, xtol: float = 1e-13) -> ProfileCI:
    """Profile-likelihood CIs for the estimated variance components (fixed ones give NaN)."""
    pf = _Profiler(res)
    L = len(pf.est)
    cut = pf.ll_max - chi2_isf(1 - to_fraction(level), 1) / 2.0
    comps = range(L) if components is None else components
    rows, flags = [], []
    others: dict[str, list[np.ndarray]] = {"ci_lb": [], "ci_ub": []}
    for j in range(L):
        est = float(pf.est[j])
        if j not in comps or res.core.fixed[j]:
            rows.append((est, np.nan, np.nan))
            others["ci_lb"].append(np.full(L - 1, np.nan))
            others["ci_ub"].append(np.full(L - 1, np.nan))
            continue
        cache: dict[float, np.ndarray] = {}
        last = [pf.est]

        def fd(s, j=j, cache=cache, last=last):
            ll, s2, g = pf.at_with_slope(j, s, last[0])
            cache[s] = s2
            last[0] = s2  # warm start the next point from this one
            return ll - cut, g

        scale = max(est, float(np.sum(pf.est)), 1e-4 * float(np.mean(res.data.v)))
        f_est = pf.ll_max - cut
        # first points from the quadratic (Wald) approximation of the profile at the optimum,
        # est -+ sqrt(chi2 (-H^-1)_jj): close to the limits when the profile is near-quadratic
        # (large k), so the bracketed Newton needs only a few refits
        w = _wald_halfwidth(res, j, pf.ll_max - cut)
        ftol = 1e-12 * max(1.0, abs(pf.ll_max))
        # lower limit
        lb = None
        if est > 0 and w is not None and est - w > 0:
            x = est - w
            fx, gx = fd(x)
            if fx < 0:
                lb = _bracketed_newton(fd, x, fx, gx, est, f_est, xtol * scale, ftol)
        if lb is None:
            f0, g0 = fd(0.0)
            if f0 >= 0 or est <= 0:
                lb = 0.0
            else:
                lb = _bracketed_newton(fd, 0.0, f0, g0, est, f_est, xtol * scale, ftol)
        # upper limit: expand until below the cut-off
        hi = est + (w if w is not None else scale)
        fhi, ghi = fd(hi)
        inner, f_inner = (est if est > 0 else 0.0), f_est
        n = 0
        while fhi > 0 and n < 60:
            inner, f_inner = hi, fhi
            # a Newton step from the inside (slope < 0) lands near the limit; go 10 % further
            # so that it is likely outside, and at least double the distance when it is not
            far = hi - 1.1 * fhi / ghi if ghi < 0 and np.isfinite(ghi) else np.inf
            hi = min(far, est + 2.0 * (hi - est)) if n < 3 else est + 2.0 * (hi - est)
            fhi, ghi = fd(hi)
            n += 1
        if fhi > 0:
            ub = np.inf
            flags.append(
                f"profile of sigma2 for {res.level_names[j]!r} stays above the cut-off "
                "up to very large values: the component is not identified by the data"
            )
        else:
            ub = _bracketed_newton(fd, hi, fhi, ghi, inner, f_inner, xtol * scale, ftol)
        rows.append((est, lb, ub))
        for bound, s in (("ci_lb", lb), ("ci_ub", ub)):
            if np.isfinite(s):
                s2 = cache.get(s)
                if s2 is None:
                    _, s2 = pf.at(j, s)
                others[bound].append(np.delete(s2, j))
            else:
                others[bound].append(np.full(L - 1, np.nan))
    for fl in flags:
        warnings.warn(fl, FitWarning, stacklevel=2)
    tab = pd.DataFrame(rows, columns=["estimate", "ci_lb", "ci_ub"], index=list(res.level_names))
    return ProfileCI(tab, others, tuple(flags))


def check_profile_shape(res, j: int, n: int = 10) -> str | None:
    """Look for a flat or multi-peaked profile of component ``j``; return a message or None.

    The profile is evaluated on ``n`` points from 0 to max(4 sigma2_j, 4 sum sigma2), each with
    its exact slope (envelope theorem, :meth:`_Profiler.at_with_slope`), warm-started from the
    previous point. Flat: the log-likelihood varies by less than 1e-3 over the grid, or moving
    sigma2_j by half its value either way costs nothing (a ridge). Several peaks: the slope turns
    from positive to negative more than once along the grid (a maximum at 0 counts as one when
    the slope is negative there); slopes see a peak between two grid points that values alone
    would need a finer grid for.
    """
    pf = _Profiler(res)
    est = float(res.core.sigma2[j])
    top = max(4.0 * est, 4.0 * float(np.sum(res.core.sigma2)), 1e-6)
    grid = np.linspace(0.0, top, n)
    ll = np.empty(n)
    slope = np.empty(n)
    start = None
    try:
        for i, s in enumerate(grid):
            ll[i], start, slope[i] = pf.at_with_slope(j, float(s), start)
        near = [pf.at(j, f * est)[0] for f in (0.5, 1.5)] if est > 0 else None
    except ConvergenceError:
        return f"profile of {res.level_names[j]!r} could not be computed"
    if np.ptp(ll) < 1e-3 or (near is not None and all(abs(x - res.core.ll) < 1e-7 for x in near)):
        return f"profile likelihood of {res.level_names[j]!r} is flat: not identifiable"
    eps = 1e-8 * max(1.0, float(np.max(np.abs(slope))))
    sign = np.where(slope > eps, 1, np.where(slope < -eps, -1, 0))
    sign = sign[sign != 0]
    peaks = int(np.sum((sign[:-1] > 0) & (sign[1:] < 0))) + int(len(sign) > 0 and sign[0] < 0)
    if peaks > 1:
        return f"profile likelihood of {res.level_names[j]!r} has several peaks"
    return None
