"""Profile-likelihood CIs, LRTs per term and I^2 for models with general random-effects structures.

Parameters, in metafor's names: ``sigma2`` of each ``~ 1 | ...`` component, and per
``~ inner | outer`` term its ``tau2`` (one, or one per inner level for HCS, HAR, DIAG, UN) and
``rho`` (one, or one per pair of inner levels for UN) -- ``gamma2`` and ``phi`` for the second
such term. Rows are labelled as the printout: ``sigma2[study]``, ``tau2``, ``tau2[A]``, ``rho``,
``rho[A-B]``, ``gamma2``, ``phi``.

Profile-likelihood CI (metafor 3.8-1's ``confint.rma.mv(fit, sigma2 = j)``, ``tau2 = j``,
``rho = j``, ``gamma2 = j``, ``phi = j``): the parameter ``x`` is held at each trial value while
every other estimated parameter is re-optimised (``ll_p(x)``); the bounds are the values where
``2 (ll_max - ll_p(x)) = qchisq(level, 1)``, searched, as metafor searches them, in

- variances: ``[0, max(10, 100 est)]`` (``[0, 10]`` when the estimate ``est`` is ~0);
- correlations of CS, HCS, UN: ``[-1, 1]``; of AR, HAR: ``[min(0, est), 1]``.

When the profile stays above the cut-off at an end of the interval, that end is the bound; metafor
marks it (``lb_sign = "<"`` when the end is not the edge of the parameter space -- a variance's
0, a correlation's -1 --, ``ub_sign = ">"`` for a variance's upper end and a correlation's end
below 1). When the refit at an end fails, the end moves by a tenth of its first distance to the
estimate (at most 10 times, as metafor's ``eptries``); a bound that cannot be obtained is NaN
with metafor's warning text. The roots are found by Newton's method on the signed root of the
likelihood-ratio statistic, ``sqrt(2 (ll_max - ll_p(x)))`` (linear in x for a quadratic
profile), with the exact slope of the profile (envelope theorem: the partial derivative of ll in
the held parameter at the profiled optimum), bracketed, from the Wald (quadratic) approximation
(or from the end when the Wald point is next to it).

The profile can have several local maxima at one held value (e.g. one with a variance at 0,
where the held correlation no longer matters). Each side is traced with one refit per point,
warm from the nearest point already evaluated -- never from the end of the interval, where such
a lower maximum is typically reached -- and the end from the estimates; the bound found is
then checked by a refit from the estimates, and when that finds a higher maximum the side is
traced again with every point refitted from the previous point and from the estimates (the
higher maximum kept). A refit tries metafor's starting values only when neither start
converges.

One difference from metafor: mlmeta keeps the G of a UN term positive semidefinite, while
metafor's refits accept an indefinite G. At a UN correlation of +-1 (which confines the other
correlations to a lower-dimensional set) mlmeta's refit can then fail where metafor's returns a
value, and the end moves as for any failed refit (tests/test_structures_profile.py, ``KNOWN``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.analyses.heterogeneity import I2Result
from mlmeta.analyses.lrt import LRTDrop
from mlmeta.analyses.profile import ProfileCI
from mlmeta.core.dist import chi2_isf, chi2_sf
from mlmeta.core.fit_general import fit_general
from mlmeta.core.general import FactorTerm
from mlmeta.errors import ConvergenceError, FitWarning, InputError, MlmetaWarning
from mlmeta.spec import to_fraction

__all__ = [
    "Param",
    "StructuredI2",
    "StructuredLRT",
    "StructuredProfileCI",
    "i2_structured",
    "lrt_drop_structured",
    "params",
    "profile_ci_structured",
]

EPTRIES = 10
#: how much higher than the traced profile (relative to max(1, |logLik|)) a refit from the
#: estimates at a bound may find the log-likelihood before the bound is traced again with both
#: starts at every point (refits of one maximum from different starts agree to ~1e-13)
VERIFY_TOL = 1e-9


@dataclass(frozen=True)
class Param:
    """One variance/correlation parameter in metafor's terms."""

    label: str  # printout name: sigma2[study], tau2, tau2[A], rho[A-B], gamma2, phi
    comp: str  # sigma2 | tau2 | rho | gamma2 | phi
    pos: int  # metafor's position within comp (1-based)
    index: int  # entry of the internal parameter vector
    kind: str  # var | sd | cor
    struct: str | None
    term: int
    fixed: bool
    estimate: float

    def internal(self, x: float) -> float:
        return float(np.sqrt(max(x, 0.0))) if self.kind == "sd" else float(x)


def params(res) -> list[Param]:
    """Every variance/correlation parameter of a :class:`~mlmeta.structures.StructuredResults`,
    in metafor's order (sigma2 components, then tau2, rho, then gamma2, phi)."""
    pr = res.core.problem
    th, fx = res.core.theta, res.core.fixed
    out: list[Param] = []
    si = 0
    io = 0
    io_infos = [i for i in res.data.info if i.kind == "inner_outer"]
    for ti, (t, sl) in enumerate(zip(pr.terms, pr.slices)):
        a = sl.start
        if isinstance(t, FactorTerm):
            out.append(
                Param(
                    f"sigma2[{res.level_names[si]}]",
                    "sigma2",
                    si + 1,
                    a,
                    "var",
                    None,
                    ti,
                    bool(fx[a]),
                    float(th[a]),
                )
            )
            si += 1
            continue
        cs = t.cov
        vn, rn = ("tau2", "rho") if io == 0 else ("gamma2", "phi")
        lv = [str(x) for x in io_infos[io].levels]
        io += 1
        for j in range(cs.n_var):
            lab = f"{vn}[{lv[j]}]" if cs.n_var > 1 else vn
            x = float(th[a + j])
            out.append(
                Param(
                    lab,
                    vn,
                    j + 1,
                    a + j,
                    "sd" if cs.sd_scale else "var",
                    cs.struct,
                    ti,
                    bool(fx[a + j]),
                    x * x if cs.sd_scale else x,
                )
            )
        pairs = (
            [f"{lv[p]}-{lv[q]}" for p, q in cs.cor_pairs()]
            if cs.struct == "UN" and cs.m > 1
            else [""]
        )
        for j in range(cs.n_cor):
            i = a + cs.n_var + j
            lab = f"{rn}[{pairs[j]}]" if pairs[j] else rn
            out.append(Param(lab, rn, j + 1, i, "cor", cs.struct, ti, bool(fx[i]), float(th[i])))
    return out


def _reported(res, theta: np.ndarray) -> np.ndarray:
    """Parameters on metafor's scale (tau2 = s^2 for the sd-scaled structures)."""
    out = np.asarray(theta, dtype=float).copy()
    for pi, info in enumerate(res.core.problem.params):
        if info.kind == "sd":
            out[pi] = out[pi] ** 2
    return out


class _Prof:
    """Refits with one parameter held (all user-fixed parameters stay held)."""

    def __init__(self, res):
        self.res = res
        self.pr = res.core.problem
        self.base = {int(i): float(res.core.theta[i]) for i in np.flatnonzero(res.core.fixed)}
        self.ll_max = float(res.core.ll)

    def at(self, p: Param, x: float, start=None, both: bool = True):
        """(ll_p(x), internal theta, d ll_p / d x); ll NaN when the refit fails.

        The refit starts from ``start`` (default: the estimates) with ``x`` put in; with
        ``both`` (or when that refit fails) also from the estimates with ``x`` put in (for a UN
        correlation, the term's other correlations shrunk until its G is positive semidefinite),
        keeping the higher maximum: warm starts alone can follow a lower local maximum (e.g. one
        with a variance at 0, reached at the end of the interval)."""
        fit = self.fit(p, x, start, both)
        if fit is None:
            return np.nan, None, np.nan
        return float(fit.ll), fit.theta, self.slope(p, x, fit)

    def fit(self, p: Param, x: float, start=None, both: bool = True):
        """The refit behind :meth:`at` (None when it fails).

        Newton (then L-BFGS-B) from the warm start, with ``both`` (or when that fails) also
        from the estimates, the higher maximum kept; metafor's starting values
        (:func:`fit_general`'s) are tried only when neither start converges."""
        v = p.internal(x)
        hold = dict(self.base)
        hold[p.index] = v
        first = self._psd_start(p, v, start)
        alt_start = self._psd_start(p, v)
        if np.array_equal(alt_start, first):  # the same start gives the same refit
            return self._refit(hold, first, p.index, v)
        best = self._refit(hold, first, p.index, v, default_starts=False)
        if both or best is None:
            alt = self._refit(hold, alt_start, p.index, v, default_starts=best is None)
            if alt is not None and (best is None or alt.ll > best.ll):
                best = alt
        return best

    def alternative(self, p: Param, x: float):
        """The refit at ``x`` from the estimates (the second start of :meth:`fit`)."""
        v = p.internal(x)
        hold = dict(self.base)
        hold[p.index] = v
        return self._refit(hold, self._psd_start(p, v), p.index, v, default_starts=False)

    @staticmethod
    def slope(p: Param, x: float, fit) -> float:
        g = float(fit.optim.evaluation.grad[p.index])
        if p.kind == "sd":
            v = p.internal(x)
            g = g / (2.0 * v) if v > 0 else np.nan
        return g

    def _refit(self, hold, start, index: int, v: float, default_starts: bool = True):
        """Refit with ``hold``, from ``start`` (None: from metafor's starting values only)."""
        st = None
        if start is not None:
            st = np.array(start, dtype=float)
            st[index] = v
        md = self.res.data
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MlmetaWarning)
                fit = fit_general(
                    md.y,
                    md.X,
                    md.S,
                    list(md.terms),
                    method=self.res.core.method,
                    problem=self.pr,
                    hold=hold,
                    start=None if st is None else list(st),
                    default_starts=default_starts,
                )
        except (ConvergenceError, np.linalg.LinAlgError):
            return None
        return fit if np.isfinite(fit.ll) else None

    def _psd_start(self, p: Param, v: float, start=None) -> np.ndarray:
        """``start`` (default: the estimates) with ``v`` put in; for a UN correlation, the
        term's other correlations shrunk until its G is positive semidefinite."""
        th = np.array(self.res.core.theta if start is None else start, dtype=float)
        th[p.index] = v
        t = self.pr.terms[p.term]
        sl = self.pr.slices[p.term]
        if isinstance(t, FactorTerm) or t.cov.struct != "UN" or t.cov.m < 3 or p.kind != "cor":
            return th
        cs = t.cov
        cors = np.arange(sl.start + cs.n_var, sl.stop)
        others = cors[cors != p.index]
        base = th[others].copy()
        for f in (1.0, 0.9, 0.75, 0.5, 0.25, 0.0):
            th[others] = f * base
            G = cs.matrix(np.r_[np.ones(cs.n_var), th[cors]])
            if np.linalg.eigvalsh(G)[0] >= 1e-10:
                break
        return th


def _interval(p: Param) -> tuple[float, float]:
    """metafor's search interval (``con$vc.min``, ``con$vc.max``)."""
    vc = p.estimate
    if p.kind in ("var", "sd"):
        return 0.0, (10.0 if vc <= np.finfo(float).eps ** 0.5 else max(10.0, vc * 100.0))
    lo = min(0.0, vc) if p.struct in ("AR", "HAR") else -1.0
    return lo, 1.0


def _wald_halfwidth(res, p: Param, drop: float) -> float | None:
    """sqrt(2 drop var(x)) from the Hessian over the free parameters off the boundary (on
    metafor's scale), or None."""
    ev = res.core.optim.evaluation
    if ev.hess is None:
        return None
    pr = res.core.problem
    th = res.core.theta
    free = [int(i) for i in np.flatnonzero(~res.core.fixed) if pr.lower[i] < th[i] < pr.upper[i]]
    if p.index not in free:
        return None
    H = np.asarray(ev.hess)[np.ix_(free, free)]
    try:
        if not np.all(np.linalg.eigvalsh(-H) > 0):
            return None
        cov = np.linalg.inv(-H)
    except np.linalg.LinAlgError:
        return None
    vj = float(cov[free.index(p.index), free.index(p.index)])
    if p.kind == "sd":
        vj *= (2.0 * th[p.index]) ** 2
    if not np.isfinite(vj) or vj <= 0:
        return None
    return float(np.sqrt(2.0 * drop * vj))


@dataclass(frozen=True)
class StructuredProfileCI(ProfileCI):
    """A :class:`~mlmeta.analyses.profile.ProfileCI` whose table has one row per parameter
    (labelled as the printout) with metafor's ``lb_sign``/``ub_sign`` marks."""

    def to_list(self) -> list[dict]:
        out = []
        for name, r in self.table.iterrows():
            d: dict[str, Any] = {"component": str(name)}
            for c in ("estimate", "ci_lb", "ci_ub"):
                x = float(r[c])
                d[c] = x if np.isfinite(x) else None
            d["lb_sign"], d["ub_sign"] = str(r["lb_sign"]), str(r["ub_sign"])
            out.append(d)
        return out


def profile_ci_structured(
    res, level: float = 95, components=None, xtol: float = 1e-13
) -> StructuredProfileCI:
    """Profile-likelihood CIs of every estimated parameter (see the module docstring).

    ``components``: row positions (or labels) to compute; the others, and fixed parameters,
    get NaN bounds. Returns a table with ``estimate``, ``ci_lb``, ``ci_ub``, ``lb_sign``,
    ``ub_sign`` (metafor's marks) per parameter; ``others[bound]`` holds, per row, every other
    parameter (metafor's scale) at that bound.
    """
    ps = params(res)
    if not ps:
        raise InputError("profile likelihood needs random effects")
    labels = [p.label for p in ps]
    if components is None:
        want = set(range(len(ps)))
    else:
        want = set()
        for c in [components] if isinstance(components, (int, str)) else components:
            if isinstance(c, str):
                if c not in labels:
                    raise InputError(f"no parameter {c!r}; the model has {', '.join(labels)}")
                want.add(labels.index(c))
            else:
                want.add(int(c))
    pf = _Prof(res)
    crit = chi2_isf(1 - to_fraction(level), 1)
    cut = pf.ll_max - crit / 2.0
    ftol = 1e-12 * max(1.0, abs(pf.ll_max))
    vcheck = VERIFY_TOL * max(1.0, abs(pf.ll_max))
    rows: list[tuple] = []
    flags: list[str] = []
    others: dict[str, list[np.ndarray]] = {"ci_lb": [], "ci_ub": []}
    n = len(ps)
    for r, p in enumerate(ps):
        if r not in want or p.fixed:
            rows.append((p.estimate, np.nan, np.nan, "", ""))
            others["ci_lb"].append(np.full(n - 1, np.nan))
            others["ci_ub"].append(np.full(n - 1, np.nan))
            continue
        vc = p.estimate
        f_est = pf.ll_max - cut
        scale = max(abs(vc), 1e-4) if p.kind != "cor" else 1.0
        w = _wald_halfwidth(res, p, crit / 2.0)
        lo_end, hi_end = _interval(p)
        cache: dict[float, np.ndarray] = {}
        bounds = []
        for end, direction in ((lo_end, -1), (hi_end, +1)):
            tr = _Trace(pf, p, cut, vcheck)
            b = _one_side(tr.fd, p, vc, f_est, end, direction, w, xtol * scale, ftol)
            if not tr.verified(b[0]):
                # a refit followed a lower local maximum: trace this side again with both
                # starts at every point
                tr = _Trace(pf, p, cut, vcheck, robust=True)
                b = _one_side(tr.fd, p, vc, f_est, end, direction, w, xtol * scale, ftol)
            cache.update(tr.theta)
            bounds.append(b)
        (lb, lb_sign), (ub, ub_sign) = bounds
        for bound, val in (("lower", lb), ("upper", ub)):
            if not np.isfinite(val):
                flags.append(
                    f"{p.label}: cannot obtain {bound} bound of profile likelihood CI "
                    "due to convergence problems"
                )
        rows.append((vc, lb, ub, lb_sign, ub_sign))
        for bound, x in (("ci_lb", lb), ("ci_ub", ub)):
            th = cache.get(x) if np.isfinite(x) else None
            if th is None and np.isfinite(x):
                th = pf.at(p, x)[1]
            others[bound].append(
                np.delete(_reported(res, th), p.index) if th is not None else np.full(n - 1, np.nan)
            )
    for fl in flags:
        warnings.warn(fl, FitWarning, stacklevel=3)
    tab = pd.DataFrame(
        rows, columns=["estimate", "ci_lb", "ci_ub", "lb_sign", "ub_sign"], index=labels
    )
    return StructuredProfileCI(tab, others, tuple(flags))


class _Trace:
    """The profile of one parameter on one side of its estimate, as ``_one_side`` evaluates it.

    The end of the interval, evaluated first (it decides whether the bound is that end), is
    refitted from the estimates (and, for a UN correlation, from them with the other
    correlations shrunk until G is positive semidefinite, the higher maximum kept). Every other
    point starts warm from the evaluated point nearest to it, the end left out (the estimates
    when they are nearer): a start from the end, where a variance may sit at 0, can stay on
    another, lower, local maximum all the way back towards the estimate. Where the warm refit
    fails, the point is refitted from the estimates too. The bound found is then verified
    (:meth:`verified`): a refit from the estimates there must not find a higher maximum; when it
    does, the side is traced again with ``robust``: every point refitted from the previous point
    and from the estimates, the higher maximum kept.
    """

    def __init__(self, pf: _Prof, p: Param, cut: float, vcheck: float, robust: bool = False):
        self.pf, self.p, self.cut, self.vcheck, self.robust = pf, p, cut, vcheck, robust
        self.theta: dict[float, np.ndarray] = {}
        self.ll: dict[float, float] = {}
        self.last = pf.res.core.theta
        self.both: set[float] = set()  # points refitted from both starts

    def fd(self, x: float):
        """(ll_p(x) - cut, slope)."""
        if self.robust:
            start, both = self.last, True
        else:
            start, both = self._inside(x), not self.ll  # the first point is the end
        fit = self.pf.fit(self.p, x, start, both)
        if fit is None:
            return np.nan, np.nan
        if both:
            self.both.add(x)
        self.theta[x] = self.last = fit.theta
        self.ll[x] = float(fit.ll)
        return float(fit.ll) - self.cut, self.pf.slope(self.p, x, fit)

    def _inside(self, x: float) -> np.ndarray:
        """Internal theta of the evaluated point nearest ``x``, the end of the interval left
        out (the estimates when that is nearer)."""
        best, dist = self.pf.res.core.theta, abs(x - self.p.estimate)
        for xi, th in self.theta.items():
            if xi not in self.both and abs(x - xi) < dist:
                best, dist = th, abs(x - xi)
        return best

    def verified(self, x: float) -> bool:
        """False when a refit from the estimates at the bound ``x`` finds a maximum higher than
        the traced one (by more than the rounding noise of the refits)."""
        if self.robust or not np.isfinite(x) or x in self.both:
            return True
        alt = self.pf.alternative(self.p, x)
        if x not in self.ll:
            # a root predicted by the last Newton step, not evaluated: the refit from the
            # estimates is that evaluation when it finds the cut-off there
            if alt is not None and abs(alt.ll - self.cut) <= self.vcheck:
                self.theta[x] = alt.theta
                self.ll[x] = float(alt.ll)
                return True
            self.fd(x)
            if x not in self.ll:
                return True  # as the robust trace would: the refits at the bound failed
        return alt is None or alt.ll <= self.ll[x] + self.vcheck


def _one_side(
    fd,
    p: Param,
    vc: float,
    f_est: float,
    end: float,
    direction: int,
    w: float | None,
    xtol: float,
    ftol: float,
) -> tuple[float, str]:
    """One bound: the end of metafor's interval when the profile stays above the cut-off up to
    it, else the root between the estimate and the end (NaN when no refit at the end works).
    ``f_est`` is the profile at the estimate less the cut-off, ``qchisq(level, 1) / 2``."""
    crit = 2.0 * f_est
    eps = abs(end - vc) / EPTRIES
    f_end = g_end = np.nan
    for _ in range(EPTRIES):
        f_end, g_end = fd(end)
        if np.isfinite(f_end):
            break
        end = end - direction * eps
    if not np.isfinite(f_end):
        return np.nan, ""
    if f_end >= 0:
        sign = ""
        if direction < 0:
            edge = 0.0 if p.kind != "cor" else -1.0
            if end > edge:
                sign = "<"
        elif p.kind != "cor" or end < 1.0:
            sign = ">"
        return float(end), sign
    if vc == end:
        return float(end), ""
    # a first point from the Wald approximation narrows the bracket
    x0, f0, g0 = end, f_end, g_end
    if w is not None:
        xw = vc + direction * w
        # (not next to the end: a Wald interval reaching nearly to a correlation's +-1 says
        # little, and refits there are the hardest)
        if (xw - end) * direction < 0 and abs(xw - vc) < 0.9 * abs(end - vc):
            fw, gw = fd(xw)
            if np.isfinite(fw):
                if fw < 0:
                    x0, f0, g0 = xw, fw, gw
                elif abs(fw) < abs(f_end) and np.isfinite(gw) and gw * direction < 0:
                    # Newton from the Wald point, much nearer the root than an end far out
                    # (e.g. a variance's 100 est), with the end as the other side of the bracket
                    root = _root(_safe(fd), xw, fw, gw, end, xtol, ftol, crit)
                    return float(root), ""
                else:
                    vc, f_est = xw, fw
    root = _root(_safe(fd), x0, f0, g0, vc, xtol, ftol, crit)
    return float(root), ""


def _root(fd, x, fx, gx, other, xtol, ftol, crit):
    """Root of f between ``x`` and ``other`` (f of opposite signs there): Newton's
    method on ``h = sqrt(crit - 2 f) - sqrt(crit)``, the signed root of the likelihood-ratio
    statistic less its cut-off (``f = ll_p - cut = (crit - LR) / 2``), which is linear in x when
    the profile is quadratic; bisection when a step leaves the bracket. Stops at an evaluated
    point with ``|f| <= ftol`` or when the step is below ``xtol``."""
    a, fa = x, fx
    b = other
    curv: float | None = None
    for _ in range(200):
        if abs(fx) <= ftol:
            return float(x)
        D = crit - 2.0 * fx
        if gx != 0 and np.isfinite(gx) and D > 0:
            step = (np.sqrt(D) - np.sqrt(crit)) * np.sqrt(D) / -gx
        elif gx != 0 and np.isfinite(gx):
            step = fx / gx
        else:
            step = np.inf
        new = x - step
        lo, hi = min(a, b), max(a, b)
        if not (lo < new < hi) or not np.isfinite(new):
            new = 0.5 * (a + b)
            step = x - new
        if abs(step) <= xtol or hi - lo <= xtol:
            return float(x if abs(x - new) <= xtol else new)
        if curv is not None and curv * step * step <= 0.1 * xtol and abs(fx) <= 1e-6:
            # quadratic convergence: this step's own error, ~ h'' / (2 h') step^2 with
            # h'' / h' = f'' / f' + f' / crit at the root, is below the tolerance, so its point
            # is the root without a refit to confirm it
            return float(new)
        fn, gn = fd(new)
        if fn == 0.0:
            return float(new)
        if (fn > 0) == (fa > 0):
            a, fa = new, fn
        else:
            b = new
        curv = None
        if np.isfinite(gn) and np.isfinite(gx) and gn != 0 and new != x:
            curv = abs((gn - gx) / (new - x)) / (2.0 * abs(gn)) + abs(gn) / (2.0 * crit)
        x, fx, gx = new, fn, gn
    return float(x)


def _safe(fd):
    """A failed refit inside the bracket counts as outside the CI (metafor's uniroot would stop
    there; here the bracket shrinks past it)."""

    def f(x):
        v, g = fd(x)
        if not np.isfinite(v):
            return -1.0, np.nan
        return v, g

    return f


# ---------------------------------------------------------------------------------------------
# likelihood-ratio tests per term
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StructuredLRT(LRTDrop):
    """An :class:`~mlmeta.analyses.lrt.LRTDrop` with one row per ``~ 1 | ...`` component and
    per ``~ inner | outer`` term (``kind`` says which; ``pval_mixture`` is NaN where the 50:50
    mixture is not the reference distribution)."""

    def to_list(self) -> list[dict]:
        def f(x):
            x = float(x)
            return x if np.isfinite(x) else None

        out = []
        for r in self.table.to_dict(orient="records"):
            out.append(
                {
                    "dropped": r["dropped"],
                    "kind": r["kind"],
                    "LRT": f(r["LRT"]),
                    "df": int(r["df"]),
                    "pval": f(r["pval"]),
                    "pval_mixture": f(r["pval_mixture"]),
                    "sigma2_reduced": [float(x) for x in r["sigma2_reduced"]],
                    "logLik_reduced": f(r["logLik_reduced"]),
                    "AIC_reduced": f(r["AIC_reduced"]),
                    "BIC_reduced": f(r["BIC_reduced"]),
                }
            )
        return out


def lrt_drop_structured(res) -> StructuredLRT:
    """Likelihood-ratio test of each random-effects component against the model without it.

    As metafor's ``anova(full, reduced)``: ``LRT = 2 (ll_full - ll_reduced)``, ``df`` = the
    number of estimated parameters the reduced model lacks, p-value from chi2(df).

    - ``~ 1 | ...`` component (``kind = "sigma2"``): the reduced model has that sigma2 fixed at 0
      (df 1); ``pval_mixture`` is the p-value of the 50:50 mixture of chi2(0) and chi2(1), the
      reference distribution of one variance tested at its boundary 0 (Self & Liang 1987;
      Stram & Lee 1994).
    - ``~ inner | outer`` term (``kind = "inner_outer"``): the reduced model is refitted without
      the term (with no term left, the model with the sampling covariance only); ``df`` = the
      term's estimated parameters (tau2's and rho's). ``pval_mixture`` is given only when that is
      one variance (ID, or a structure whose correlation is fixed); with several parameters --
      variances at their boundary 0 together with correlations that are not identified there --
      the null distribution is a mixture whose weights depend on the information matrix
      (Stram & Lee 1994), not the 50:50 one, so it is NaN.
    """
    from mlmeta.core.inference import fit_statistics

    ps = params(res)
    if not ps:
        raise InputError("the equal-effects model has no variance component to test")
    md = res.data
    pr = res.core.problem
    _, logdet_s = pr.sampling_qe()
    k, p_ = md.X.shape
    base = {int(i): float(res.core.theta[i]) for i in np.flatnonzero(res.core.fixed)}
    rows = []

    def add(dropped, kind, level, fit, df, one_var):
        lrt = max(2.0 * (res.core.ll - fit.ll), 0.0)
        pv = float(chi2_sf(lrt, df)) if df > 0 else np.nan
        fs = fit_statistics(fit.ll, res.core.method, k, p_, fit.n_estimated, None, logdet_s)
        s2 = fit.sigma2
        rows.append(
            {
                "dropped": dropped,
                "kind": kind,
                "level": level,
                "LRT": lrt,
                "df": df,
                "pval": pv,
                "pval_mixture": (0.5 * pv if lrt > 0 else 1.0) if one_var else np.nan,
                "sigma2_reduced": s2,
                "logLik_reduced": float(fit.ll),
                "AIC_reduced": fs["AIC"],
                "BIC_reduced": fs["BIC"],
            }
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        for q in ps:
            if q.comp != "sigma2" or q.fixed:
                continue
            hold = dict(base)
            hold[q.index] = 0.0
            fit = fit_general(
                md.y,
                md.X,
                md.S,
                list(md.terms),
                method=res.core.method,
                problem=pr,
                hold=hold,
                start=res.core.theta,
            )
            add(md.random[q.pos - 1], "sigma2", res.level_names[q.pos - 1], fit, 1, True)
        io_infos = [i for i in md.info if i.kind == "inner_outer"]
        io = 0
        for ti, t in enumerate(pr.terms):
            if isinstance(t, FactorTerm):
                continue
            info = io_infos[io]
            io += 1
            keep = [u for j, u in enumerate(pr.terms) if j != ti]
            est = [q for q in ps if q.term == ti and not q.fixed]
            df = len(est)
            one_var = df == 1 and est[0].kind in ("var", "sd")
            hold = {}
            pos = 0
            for j, (u, sl2) in enumerate(zip(pr.terms, pr.slices)):
                if j == ti:
                    continue
                for i in range(sl2.start, sl2.stop):
                    if i in base:
                        hold[pos + i - sl2.start] = base[i]
                pos += u.n_params
            fit = fit_general(md.y, md.X, md.S, keep, method=res.core.method, hold=hold or None)
            add(_term_formula(info, res), "inner_outer", info.name, fit, df, one_var)
    return StructuredLRT(pd.DataFrame(rows))


def _term_formula(info, res) -> str:
    """The term's formula as the user wrote it (``~ inner | outer``)."""
    for f in res.spec.random_formulas or []:
        s = str(f).replace(" ", "")
        if s == f"~{info.inner}|{info.outer}":
            return str(f)
    return f"~ {info.inner} | {info.outer}"


# ---------------------------------------------------------------------------------------------
# I^2
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StructuredI2(I2Result):
    """An :class:`~mlmeta.analyses.heterogeneity.I2Result` whose ``levels`` also hold one row
    per tau2/gamma2 (per inner level when the term has one per level); ``to_dict`` adds the
    row names."""

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["names"] = [str(x) for x in self.levels.index]
        return d


def i2_structured(res) -> StructuredI2:
    """Multilevel I^2 of a model with ``~ inner | outer`` terms (percentages).

    The metafor FAQ's multilevel I^2 (Nakagawa & Santos 2012; Cheung 2014, three-level I^2),
    ``I^2_l = 100 sigma2_l / (sum_m sigma2_m + v~)``, with ``v~ = (k - p) / tr(P)``,
    ``P = W - W X (X'W X)^{-1} X'W``, ``W`` the inverse sampling covariance, extended to
    ``~ inner | outer`` terms through the random-effects variance of each effect size,
    ``r_i = sum_l sigma2_l + tau2_{a(i)} + gamma2_{b(i)}`` (``a(i)``, ``b(i)`` its inner levels;
    a term with one tau2 adds that tau2 to every row):

    - ``D = mean_i r_i + v~``; ``I^2_total = 100 mean_i r_i / D``;
    - each sigma2, and a term's single tau2 (CS, AR, ID) or gamma2: ``100 x / D`` (with only
      one-variance terms ``mean_i r_i`` is the sum of all variances, so this is the FAQ's
      formula with tau2 as one more component);
    - a term with one tau2 per inner level (HCS, HAR, DIAG, UN), level ``a``:
      ``100 tau2_a / D_a`` with ``D_a = mean_{i in a} r_i + v~`` (the sum of all variances
      of an effect size at level ``a``; ``D`` when the level has no effect size).

    References: metafor FAQ, "I^2 for multilevel and multivariate models"
    (https://www.metafor-project.org/doku.php/tips:i2_multilevel_multivariate); Cheung, M. W.-L.
    (2014). Modeling dependent effect sizes with three-level meta-analyses. *Psychological
    Methods, 19*(2), 211-229.
    """
    from mlmeta.analyses.heterogeneity import typical_v

    md = res.data
    pr = res.core.problem
    blocks = [(rows, Sb) for b in pr.batches for rows, Sb in zip(b.rows, b.S)]
    tv = typical_v(md.v, md.X, blocks)
    S = md.S
    r = pr.marginal_diag(res.core.theta) - S.diag
    D = float(np.mean(r)) + tv
    names: list[str] = []
    vals: list[float] = []
    for q in params(res):
        if q.comp == "sigma2":
            names.append(q.label[len("sigma2[") : -1])
            vals.append(100.0 * q.estimate / D)
        elif q.comp in ("tau2", "gamma2"):
            t = pr.terms[q.term]
            names.append(q.label)
            if t.cov.n_var == 1:
                vals.append(100.0 * q.estimate / D)
            else:
                rows = np.asarray(t.inner) == q.pos - 1
                Da = float(np.mean(r[rows])) + tv if rows.any() else D
                vals.append(100.0 * q.estimate / Da)
    levels = pd.Series(vals, index=names, name="I2", dtype=float)
    return StructuredI2(100.0 * float(np.mean(r)) / D, levels, tv, None)
