"""Maximisation of the (restricted) likelihood over variance components sigma2 >= 0.

A projected Newton method with the exact Hessian from :mod:`mlmeta.core.likelihood`:
components at the bound 0 whose gradient points outward are held there (active set); the
Newton direction of the others uses the Hessian with its eigenvalues made negative where it is
not negative definite, and a backtracking line search guarantees ascent. Once the Newton
decrement (g' (-H)^{-1} g, twice the predicted gain) falls below ``tol`` relative to the
log-likelihood, the predicted gain approaches the rounding noise of the likelihood itself, so
the last steps are pure Newton steps accepted while the exact gradient keeps shrinking; they stop
when one more step would change every component by less than ~1e-11 of its scale. The estimate
is thus converged to close to machine precision rather than to an objective tolerance as in
``nlminb``. An estimate on the boundary is exactly 0.

If Newton fails (non-finite values, no ascent possible, iteration limit), it is restarted from
other starting values and finally handed to L-BFGS-B on sqrt(sigma2); when all of these fail a
:class:`~mlmeta.errors.ConvergenceError` lists what was tried.

Parameters other than variances (correlations of structured random effects) are supported by
general box bounds ``lower <= theta <= upper`` (default ``0 <= theta``): a component at either
bound whose gradient points outward is held there, steps are projected onto the box.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlmeta.core.likelihood import Evaluation
from mlmeta.errors import ConvergenceError

__all__ = ["OptimResult", "maximize"]


@dataclass(frozen=True)
class OptimResult:
    theta: np.ndarray
    evaluation: Evaluation
    iterations: int
    converged: bool
    grad_norm: float
    method: str
    attempts: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Box:
    """Bounds of the free components (``lo``/``hi``) and of the whole vector (``lo_all``...)."""

    lo: np.ndarray
    hi: np.ndarray
    lo_all: np.ndarray
    hi_all: np.ndarray

    def held(self, th: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Components at a bound whose gradient points out of the box."""
        return ((th <= self.lo) & (g <= 0.0)) | ((th >= self.hi) & (g >= 0.0))

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(x, self.lo), self.hi)


def _make_box(free, n, lower, upper) -> _Box:
    lo = np.zeros(n) if lower is None else np.broadcast_to(np.asarray(lower, float), (n,)).copy()
    hi = (
        np.full(n, np.inf)
        if upper is None
        else np.broadcast_to(np.asarray(upper, float), (n,)).copy()
    )
    return _Box(lo[free], hi[free], lo, hi)


_DEFAULT_BOX: dict[int, _Box] = {}


def _box_for(box, free):
    if box is not None:
        return box
    n = int(np.count_nonzero(free))
    if n not in _DEFAULT_BOX:
        _DEFAULT_BOX[n] = _Box(np.zeros(n), np.full(n, np.inf), np.zeros(0), np.zeros(0))
    return _DEFAULT_BOX[n]


def _direction(ev, theta, free, box=None):
    """Projected, eigen-modified Newton direction on the components not held at a bound."""
    box = _box_for(box, free)
    g = ev.grad[free]
    H = ev.hess[np.ix_(free, free)]
    th = theta[free]
    S = ~box.held(th, g)
    if not S.any():
        return S, np.zeros(0), 0.0
    gS = g[S]
    lam, U = np.linalg.eigh(H[np.ix_(S, S)])
    scale = max(float(np.max(np.abs(lam))), 1e-300)
    lam_mod = -np.maximum(np.abs(lam), 1e-10 * scale)
    step = -U @ ((U.T @ gS) / lam_mod)
    return S, step, float(gS @ step)


def _polish(fun, theta, ev, free, n=6, box=None):
    """Pure Newton steps near the optimum, judged by the gradient rather than by the
    log-likelihood: there the remaining gain (~1e-14) is below the rounding noise of ll, so a
    line search cannot see it, but the exact gradient still shrinks quadratically."""
    box = _box_for(box, free)
    for _ in range(n):
        if _scaled_gnorm(ev, theta, free, box) <= 1e-11:
            break
        S, step, dec = _direction(ev, theta, free, box)
        if not S.any() or dec <= 0.0:
            break
        th = theta[free]
        new = th.copy()
        new[S] += step
        new = box.clip(new)
        cand = theta.copy()
        cand[free] = new
        evn = fun(cand, 2)
        if not np.isfinite(evn.ll) or evn.ll < ev.ll - 1e-9 * (1.0 + abs(ev.ll)):
            break
        if _gnorm(evn, cand, free, box) >= _gnorm(ev, theta, free, box):
            break
        theta, ev = cand, evn
    return theta, ev


def _newton(fun, theta0, free, max_iter, tol, box=None):
    box = _box_for(box, free)
    theta = np.array(theta0, dtype=float)
    ev = fun(theta, 2)
    if not np.isfinite(ev.ll):
        return None, 0, "non-finite log-likelihood at the start"
    for it in range(1, max_iter + 1):
        g = ev.grad[free]
        H = ev.hess[np.ix_(free, free)]
        th = theta[free]
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return None, it, "non-finite gradient or Hessian"
        active = box.held(th, g)
        S = ~active
        if not S.any():
            return (theta, ev), it, None
        if np.isfinite(ev.ll) and it > 1 and _gnorm(ev, theta, free, box) == 0.0:
            return (theta, ev), it, None
        gS = g[S]
        HS = H[np.ix_(S, S)]
        lam, U = np.linalg.eigh(HS)
        scale = max(float(np.max(np.abs(lam))), 1e-300)
        lam_mod = -np.maximum(np.abs(lam), 1e-10 * scale)
        step = -U @ ((U.T @ gS) / lam_mod)
        dec = float(gS @ step)
        if dec <= tol * (1.0 + abs(ev.ll)):
            # in the quadratic region the predicted gain approaches the rounding noise of the
            # log-likelihood, where a line search cannot judge steps: finish on the gradient
            return _polish(fun, theta, ev, free, box=box), it, None
        t = 1.0
        accepted = False
        for _ in range(40):
            new = th.copy()
            new[S] += t * step
            new = box.clip(new)
            cand = theta.copy()
            cand[free] = new
            evn = fun(cand, 2)
            gain = float(gS @ (new - th)[S])
            if np.isfinite(evn.ll) and evn.ll >= ev.ll + 1e-4 * min(gain, dec * t):
                accepted = True
                break
            if np.isfinite(evn.ll) and np.allclose(new, th, rtol=1e-15, atol=0):
                break
            t *= 0.5
        if not accepted:
            # no ascent possible along the modified Newton direction: at a (numerical) optimum
            if dec <= 1e-8 * (1.0 + abs(ev.ll)):
                return _polish(fun, theta, ev, free, box=box), it, None
            return None, it, "line search found no ascent"
        theta, ev = cand, evn
    return None, max_iter, f"no convergence in {max_iter} Newton iterations"


def _lbfgs(fun, theta0, free, box=None):
    """L-BFGS-B on sqrt(theta) for components bounded by [0, inf), on theta itself (with its
    bounds) for the others."""
    from scipy import optimize as _sopt

    box = _box_for(box, free)
    base = np.array(theta0, dtype=float)
    sq = (box.lo == 0.0) & np.isinf(box.hi)

    def to_theta(x):
        return np.where(sq, x * x, x)

    def negll(x):
        th = base.copy()
        th[free] = to_theta(x)
        ev = fun(th, 1)
        if not np.isfinite(ev.ll):
            return 1e300, np.zeros_like(x)
        return -ev.ll, -ev.grad[free] * np.where(sq, 2.0 * x, 1.0)

    x0 = np.where(sq, np.sqrt(np.maximum(base[free], 1e-8)), box.clip(base[free]))
    bounds = [
        (None, None)
        if s
        else (None if not np.isfinite(lo) else lo, None if not np.isfinite(hi) else hi)
        for s, lo, hi in zip(sq, box.lo, box.hi)
    ]
    r = _sopt.minimize(
        negll,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
    )
    th = base.copy()
    th[free] = to_theta(r.x)
    return th, r


def maximize(
    fun: Callable[[np.ndarray, int], Evaluation],
    starts,
    free: np.ndarray,
    *,
    max_iter: int = 200,
    tol: float = 1e-8,
    lower=None,
    upper=None,
) -> OptimResult:
    """Maximise ``fun(theta, order).ll`` over ``lower <= theta[free] <= upper``; other entries
    stay fixed. ``lower`` defaults to 0 and ``upper`` to +inf (variance components).

    ``starts`` are tried in turn until one converges; if every Newton run fails, L-BFGS-B on
    ``sqrt(theta)`` from the first start is polished by Newton. Raises ConvergenceError naming
    every attempt when nothing converges.
    """
    free = np.asarray(free, dtype=bool)
    box = None if lower is None and upper is None else _make_box(free, len(free), lower, upper)
    attempts: list[str] = []
    starts = iter(starts)
    first = np.array(next(starts), dtype=float)
    if not free.any():
        th = first
        ev = fun(th, 2)
        if not np.isfinite(ev.ll):
            raise ConvergenceError("log-likelihood is not finite at the fixed variance components")
        return OptimResult(th, ev, 0, True, 0.0, "none (all components fixed)", ())
    for i, s in enumerate(_chain(first, starts)):
        try:
            out, it, why = _newton(fun, s, free, max_iter, tol, box)
        except np.linalg.LinAlgError as exc:  # pragma: no cover - defensive
            out, it, why = None, 0, f"linear algebra failure ({exc})"
        label = f"Newton from start {i + 1} ({_fmt(np.asarray(s)[free])})"
        if out is not None and (bad := _not_a_maximum(out[1], out[0], free, box)):
            attempts.append(label + f": stopped where {bad}")
            out = None
            continue
        if out is not None:
            th, ev = out
            attempts.append(label + f": converged in {it} iterations")
            return OptimResult(
                th, ev, it, True, _gnorm(ev, th, free, box), "newton", tuple(attempts)
            )
        attempts.append(label + f": {why}")
    try:
        th, r = _lbfgs(fun, first, free, box)
        attempts.append(f"L-BFGS-B on sqrt(sigma2): {r.message}")
        out, it, why = _newton(fun, th, free, max_iter, tol, box)
        if out is not None and (bad := _not_a_maximum(out[1], out[0], free, box)):
            out, why = None, f"stopped where {bad}"
        if out is not None:
            th, ev = out
            attempts.append(f"Newton polish: converged in {it} iterations")
            return OptimResult(
                th,
                ev,
                r.nit + it,
                True,
                _gnorm(ev, th, free, box),
                "lbfgsb+newton",
                tuple(attempts),
            )
        attempts.append(f"Newton polish: {why}")
        ev = fun(th, 2)
        if (
            r.success
            and np.isfinite(ev.ll)
            and _gnorm(ev, th, free, box) < 1e-6
            and not _not_a_maximum(ev, th, free, box)
        ):
            return OptimResult(
                th, ev, r.nit, True, _gnorm(ev, th, free, box), "lbfgsb", tuple(attempts)
            )
    except (np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
        attempts.append(f"L-BFGS-B on sqrt(sigma2): failed ({exc})")
    raise ConvergenceError("the likelihood could not be maximised; tried: " + "; ".join(attempts))


#: the log-likelihood one more Newton step may still gain at a reported optimum (relative to
#: max(1, |logLik|)): far above the rounding noise the polishing steps reach (~1e-12)
GAIN_TOL = 1e-6


def _not_a_maximum(ev: Evaluation, theta: np.ndarray, free: np.ndarray, box=None) -> str | None:
    """None when ``theta`` is a maximum (the Karush-Kuhn-Tucker conditions within the box):
    the gradient of the components not held at a bound predicts a gain of the log-likelihood
    below ``GAIN_TOL`` (relative) else a reason.

    The predicted gain of a Newton step, g' (-H)^{-1} g / 2, does not depend on the units of the
    components, so this check also holds for data on any scale."""
    box = _box_for(box, free)
    assert ev.grad is not None and ev.hess is not None  # evaluated with order=2
    g = ev.grad[free].copy()
    if not (np.isfinite(ev.ll) and np.all(np.isfinite(g))):
        return "the log-likelihood or its gradient is not finite"
    act = ~box.held(theta[free], g)
    if not act.any():
        return None
    ga = g[act]
    H = ev.hess[np.ix_(free, free)][np.ix_(act, act)]
    if not np.all(np.isfinite(H)):
        return "the Hessian is not finite"
    w, U = np.linalg.eigh(-0.5 * (H + H.T))
    tol = GAIN_TOL * max(1.0, abs(float(ev.ll)))
    z = U.T @ ga
    w = np.abs(w)
    wf = np.maximum(w, 1e-12 * (float(np.max(w)) if w.size else 0.0) + 1e-300)
    gain = 0.5 * float(np.sum(z * z / wf))
    if gain > tol:
        return (
            f"the gradient is not zero (max |gradient| {np.max(np.abs(ga)):.2g}; one more "
            f"Newton step would raise the log-likelihood by {gain:.2g})"
        )
    return None


def _scaled_gnorm(ev: Evaluation, theta: np.ndarray, free: np.ndarray, box=None) -> float:
    """Largest |g_i| times the scale of component i (its value, or the curvature scale when
    it is near 0): the predicted relative change of sigma2_i from one more Newton step is of
    this order divided by the curvature, so ~1e-11 means converged to working precision."""
    box = _box_for(box, free)
    assert ev.grad is not None and ev.hess is not None  # evaluated with order=2
    g = ev.grad[free].copy()
    th = theta[free]
    g[box.held(th, g)] = 0.0
    H = np.abs(np.diag(ev.hess[np.ix_(free, free)]))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(H > 0, np.abs(g) / H / np.maximum(np.abs(th), 1e-300), np.inf)
        rel = np.minimum(rel, np.abs(g) / np.maximum(H, 1e-300) * np.sqrt(H))
    return float(np.max(rel)) if rel.size else 0.0


def _gnorm(ev: Evaluation, theta: np.ndarray, free: np.ndarray, box=None) -> float:
    box = _box_for(box, free)
    assert ev.grad is not None and ev.hess is not None  # evaluated with order=2
    g = ev.grad[free].copy()
    th = theta[free]
    g[box.held(th, g)] = 0.0  # at a bound with outward gradient: KKT satisfied
    return float(np.max(np.abs(g))) if g.size else 0.0


def _chain(first, rest):
    yield first
    yield from rest


def _fmt(x: np.ndarray) -> str:
    return ", ".join(f"{v:.4g}" for v in x)
