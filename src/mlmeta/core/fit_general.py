"""Fit models with general random-effects structures (crossed, ``~ inner | outer``, ``R=``, ``V``).

``fit_general`` is the array-level entry point for everything that is not a pure nesting
``~ 1 | a/b/c`` with ``vi`` (those keep the exact O(k) recursion of
:func:`mlmeta.core.fit.fit_nested`). It follows metafor's ``rma.mv`` conventions:

- parameters: ``sigma2`` (one per ``~ 1 | f`` term, in order), then per ``~ inner | outer`` term
  its ``tau2`` and ``rho`` (first such term) or ``gamma2`` and ``phi`` (second);
- fixed values (``sigma2=[None, 0]``, ``tau2=``, ``rho=`` ..., or ``hold=`` on the internal
  scale) are held; components that the data
  cannot identify are fixed as metafor fixes them (a factor with one level: sigma2 = 0; an inner
  factor with one level, or outer groups of one row each: rho = 0; UN pairs of inner levels that
  never meet in an outer group: their rho = 0; an inner level without data: its tau2 = 0; with
  two inner levels and a tau2 fixed at 0: rho = 0);
- starting values: metafor's (every variance ``total / n``, ``total = max(0.001 n,
  var(y - X b_FE) - 1 / mean(1 / diag(S)))``; correlations 0.5), then alternatives;
- the maximum is found by the projected Newton method with the exact Hessian
  (:mod:`mlmeta.core.optimize`), converged to near machine precision.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlmeta.core.general import FactorTerm, GeneralProblem, Term
from mlmeta.core.optimize import OptimResult, maximize
from mlmeta.core.sampling import SamplingCov
from mlmeta.errors import ConvergenceError, FitWarning, InputError

__all__ = ["GeneralFit", "auto_fixed", "contain_groupings", "fit_general"]

METHODS = ("REML", "ML")


@dataclass(frozen=True)
class TermEstimate:
    """Estimates of one term in metafor's names."""

    kind: str  # 'sigma2' or 'inner_outer'
    name: str
    sigma2: float | None = None
    tau2: np.ndarray | None = None
    rho: np.ndarray | None = None
    tau2_fixed: np.ndarray | None = None
    rho_fixed: np.ndarray | None = None
    struct: str | None = None
    n_levels: tuple[int, ...] = ()


@dataclass(frozen=True)
class GeneralFit:
    """Numerical result of :func:`fit_general` (rows in input order).

    Attributes
    ----------
    theta : internal parameter vector at the optimum (see
        :class:`mlmeta.core.general.GeneralProblem`).
    fixed : bool per parameter: held at a given or automatic value.
    beta, vcov : GLS coefficients and their covariance ``(X' V^-1 X)^-1``.
    ll : maximised (restricted) log-likelihood.
    """

    theta: np.ndarray
    fixed: np.ndarray
    beta: np.ndarray
    vcov: np.ndarray
    ll: float
    method: str
    optim: OptimResult
    problem: GeneralProblem

    @property
    def n_estimated(self) -> int:
        """Number of estimated variance/correlation parameters (metafor's ``parms - p``)."""
        return int(np.count_nonzero(~self.fixed))

    def estimates(self) -> list[TermEstimate]:
        """Per term: sigma2, or tau2/rho (with their fixed flags) as metafor reports them."""
        out = []
        pr = self.problem
        for t, sl in zip(pr.terms, pr.slices):
            th, fx = self.theta[sl], self.fixed[sl]
            if isinstance(t, FactorTerm):
                out.append(
                    TermEstimate(
                        "sigma2",
                        t.name,
                        sigma2=float(th[0]),
                        tau2_fixed=fx.copy(),
                        n_levels=(t.n_levels,),
                    )
                )
            else:
                cs = t.cov
                tau2, rho = cs.report(th)
                n_in = len(np.unique(t.inner))
                out.append(
                    TermEstimate(
                        "inner_outer",
                        t.name,
                        tau2=tau2,
                        rho=rho,
                        tau2_fixed=fx[: cs.n_var].copy(),
                        rho_fixed=fx[cs.n_var :].copy(),
                        struct=cs.struct,
                        n_levels=(n_in, t.n_outer),
                    )
                )
        return out

    @property
    def sigma2(self) -> np.ndarray:
        """Variance of every ``~ 1 | f`` term, in order."""
        return np.array([e.sigma2 for e in self.estimates() if e.kind == "sigma2"], dtype=float)


def contain_groupings(terms: Sequence[Term]) -> tuple[list[np.ndarray], list[int]]:
    """Groupings that metafor's ``dfs = "contain"`` checks, with their numbers of groups:
    every ``~ 1 | f`` factor, and per ``~ inner | outer`` term the inner-outer combinations
    and the outer factor."""
    codes, ng = [], []
    for t in terms:
        if isinstance(t, FactorTerm):
            codes.append(np.asarray(t.codes))
            ng.append(len(np.unique(t.codes)))
        else:
            _, comb = np.unique(t.outer * t.cov.m + t.inner, return_inverse=True)
            codes.append(comb.ravel())
            ng.append(int(comb.max()) + 1)
            codes.append(np.asarray(t.outer))
            ng.append(len(np.unique(t.outer)))
    return codes, ng


def auto_fixed(terms: Sequence[Term], fixed: np.ndarray, values: np.ndarray) -> list[str]:
    """Fix, in place, the components the data cannot identify (metafor's rules, see the module
    docstring). Returns one warning text per rule applied."""
    notes = []
    pos = 0
    for t in terms:
        n = t.n_params
        sl = slice(pos, pos + n)
        pos += n
        f, v = fixed[sl], values[sl]
        if isinstance(t, FactorTerm):
            if t.n_levels <= 1 and not f[0]:
                f[0], v[0] = True, 0.0
                notes.append(f"single-level factor {t.name!r}: its sigma2 fixed to 0")
            continue
        cs = t.cov
        nv, m = cs.n_var, cs.m
        present = np.zeros(m, dtype=bool)
        present[np.unique(t.inner)] = True
        if nv == m and not present.all():
            for a in np.flatnonzero(~present):
                if not f[a]:
                    f[a], v[a] = True, 0.0
            notes.append(f"{t.name}: tau2 fixed to 0 for inner levels without data")
        if cs.n_cor == 0:
            continue
        cors = slice(nv, nv + cs.n_cor)
        fc, vc = f[cors], v[cors]
        n_present = int(present.sum())
        single_rows = len(np.unique(t.outer)) == len(t.outer)
        if cs.struct != "UN":
            if (n_present <= 1 or single_rows) and not fc[0]:
                fc[0], vc[0] = True, 0.0
                notes.append(f"{t.name}: rho fixed to 0 (no outer group has two inner levels)")
        else:
            if m < 2:
                if not fc[0]:
                    fc[0], vc[0] = True, 0.0
            else:
                occ = np.zeros((t.n_outer, m), dtype=bool)
                occ[t.outer, t.inner] = True
                both = occ.T.astype(float) @ occ.astype(float)
                hit = False
                for j, (ia, ib) in enumerate(cs.cor_pairs()):
                    if both[ia, ib] == 0 and not fc[j]:
                        fc[j], vc[j] = True, 0.0
                        hit = True
                if hit:
                    notes.append(
                        f"{t.name}: rho fixed to 0 for pairs of inner levels that never "
                        "occur in the same outer group"
                    )
        if m == 2:
            tf = f[:nv]
            tv = v[:nv]
            if np.any(tf & (tv == 0.0)) and not fc[0]:
                fc[0], vc[0] = True, 0.0
        f[cors], v[cors] = fc, vc
        fixed[sl], values[sl] = f, v
    return notes


def _user_fixed(terms: Sequence[Term], sigma2, tau2, rho, gamma2, phi):
    """Internal fixed mask and values from metafor-style arguments (None or NaN = estimate)."""
    n = sum(t.n_params for t in terms)
    fixed = np.zeros(n, dtype=bool)
    vals = np.full(n, np.nan)
    n_sig = sum(isinstance(t, FactorTerm) for t in terms)
    if n_sig == 0 and sigma2 is not None and len(np.atleast_1d(sigma2)):
        raise InputError("sigma2 was given but the model has no '~ 1 | factor' term")
    sig = _expand("sigma2", sigma2, n_sig)
    io_args = [("tau2", tau2, "rho", rho), ("gamma2", gamma2, "phi", phi)]
    pos = 0
    si = 0
    io = 0
    for t in terms:
        if isinstance(t, FactorTerm):
            s = sig[si]
            si += 1
            if s is not None:
                fixed[pos], vals[pos] = True, s
            pos += 1
            continue
        cs = t.cov
        if io < 2:
            vname, vv, rname, rv = io_args[io]
        else:  # pragma: no cover - the caller allows two inner|outer terms
            vname, vv, rname, rv = "tau2", None, "rho", None
        io += 1
        tv = _expand(vname, vv, cs.n_var)
        rvv = _expand(rname, rv, cs.n_cor)
        for j, x in enumerate(tv):
            if x is not None:
                fixed[pos + j] = True
                vals[pos + j] = np.sqrt(x) if cs.sd_scale else x
        for j, x in enumerate(rvv):
            if x is not None:
                if not -1.0 <= x <= 1.0:
                    raise InputError(f"{rname} must be between -1 and 1; got {x!r}")
                fixed[pos + cs.n_var + j] = True
                vals[pos + cs.n_var + j] = x
        pos += cs.n_params
    if io < 1 and (tau2 is not None or rho is not None):
        raise InputError("tau2/rho were given but the model has no '~ inner | outer' term")
    if io < 2 and (gamma2 is not None or phi is not None):
        raise InputError("gamma2/phi were given but the model has no second '~ inner | outer' term")
    return fixed, vals


def _expand(name: str, val, n: int) -> list[float | None]:
    if val is None:
        return [None] * n
    arr = list(np.atleast_1d(np.asarray(val, dtype=object)))
    if len(arr) == 1 and n > 1:
        arr = arr * n
    if len(arr) != n:
        raise InputError(f"{name} has {len(arr)} entries but the model has {n}")
    out: list[float | None] = []
    for x in arr:
        if x is None or (isinstance(x, float) and np.isnan(x)):
            out.append(None)
            continue
        x = float(x)
        if not np.isfinite(x) or (name in ("sigma2", "tau2", "gamma2") and x < 0):
            raise InputError(f"{name} values must be finite and >= 0; got {x!r}")
        out.append(x)
    return out


def start_values(pr: GeneralProblem) -> list[np.ndarray]:
    """metafor's starting values first (variances total / n, correlations 0.5), then
    alternatives (correlations 0; a larger and a smaller total)."""
    k = pr.k
    p = pr.p
    X, y = pr.M[:, :p], pr.M[:, p]
    S = pr.S
    # GLS with the sampling covariance only (metafor's beta.FE)
    SiX = np.empty((k, p + 1))
    for b in pr.batches:
        SiX[b.rows] = np.linalg.solve(b.S, b.M)
    C = pr.M.T @ SiX
    beta = np.linalg.solve(C[:p, :p], C[:p, p]) if p else np.zeros(0)
    r = y - X @ beta if p else y
    vr = float(np.var(r, ddof=1)) if k > 1 else 0.0
    typical = 1.0 / float(np.mean(1.0 / S.diag))
    n_var = sum(1 if isinstance(t, FactorTerm) else t.cov.n_var for t in pr.terms)
    n_var = max(n_var, 1)
    total = max(0.001 * n_var, vr - typical)

    def make(tot: float, rho: float) -> np.ndarray:
        th = np.empty(pr.n_params)
        for pi_, info in enumerate(pr.params):
            if info.kind == "var":
                th[pi_] = tot / n_var
            elif info.kind == "sd":
                th[pi_] = np.sqrt(tot / n_var)
            else:
                th[pi_] = rho
        return th

    return [
        make(total, 0.5),
        make(total, 0.0),
        make(max(vr, typical), 0.0),
        make(0.1 * typical, 0.0),
    ]


def _maximize_un_angles(pr: GeneralProblem, fixed, vals, starts, exc: ConvergenceError):
    """The fallback of :func:`fit_general` for UN terms (see :mod:`mlmeta.core.corr_angles`):
    re-raises ``exc`` when the model has no UN term with free correlations or when it fails."""
    from mlmeta.core.corr_angles import maximize_over_angles

    blocks = []
    for t, sl in zip(pr.terms, pr.slices):
        if isinstance(t, FactorTerm) or t.cov.struct != "UN" or t.cov.m < 2:
            continue
        idx = np.arange(sl.start, sl.stop)[t.cov.n_var :]
        if not fixed[idx].any():
            blocks.append((idx, t.cov.m))
    if not blocks:
        raise exc
    lo, hi = pr.lower, pr.upper
    best = None
    for s in list(starts())[:3]:
        th0 = np.where(fixed, vals, np.clip(np.asarray(s, dtype=float), lo, hi))
        out = maximize_over_angles(
            pr, th0, ~fixed, lo, hi, blocks, attempts=(str(exc).split("; tried: ")[-1],)
        )
        if out is not None and (best is None or out.evaluation.ll > best.evaluation.ll):
            best = out
    if best is None:
        raise exc
    return best


def fit_general(
    y,
    X,
    S: SamplingCov,
    terms: Sequence[Term],
    *,
    method: str = "REML",
    sigma2=None,
    tau2=None,
    rho=None,
    gamma2=None,
    phi=None,
    start: Sequence[float] | None = None,
    problem: GeneralProblem | None = None,
    block_terms: Sequence[int] | None = None,
    hold: dict[int, float] | None = None,
    default_starts: bool = True,
) -> GeneralFit:
    """Fit ``y ~ N(X beta, S + sum_t Z_t G_t Z_t')`` by REML or ML.

    Parameters
    ----------
    y, X : effect sizes and design matrix.
    S : sampling covariance (:class:`mlmeta.core.sampling.SamplingCov`).
    terms : ``FactorTerm`` / ``InnerOuterTerm`` objects (:mod:`mlmeta.core.general`).
    method : ``"REML"`` or ``"ML"``.
    sigma2, tau2, rho, gamma2, phi : metafor's arguments: values to fix (None/NaN = estimate);
        a scalar is recycled over the term's components.
    start : internal starting vector (warm starts of refits).
    hold : ``{index: value}`` of entries of the internal parameter vector to hold fixed (on the
        internal scale: standard deviations for HCS, HAR, UN), on top of the fixed values above;
        profile likelihoods hold one parameter while the others are re-optimised.
    default_starts : with ``start`` given, False tries only ``start`` (Newton, then L-BFGS-B
        from it) and not metafor's starting values after it: a refit whose caller already tried
        those with the same ``hold`` (Newton from them is deterministic) need not repeat them.

    Returns
    -------
    GeneralFit

    Examples
    --------
    >>> import numpy as np
    >>> from mlmeta.core.general import factor_term
    >>> from mlmeta.core.sampling import SamplingCov
    >>> rng = np.random.default_rng(1)
    >>> study, lab = np.repeat(np.arange(20), 3), np.tile(np.arange(6), 10)
    >>> y = rng.normal(0.3, 0.3, 60)
    >>> fit = fit_general(y, np.ones((60, 1)), SamplingCov.from_vi(np.full(60, 0.02)),
    ...                   [factor_term(study, name="study"), factor_term(lab, name="lab")])
    >>> fit.sigma2.shape
    (2,)
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    y = np.asarray(y, dtype=float).ravel()
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    pr = (
        problem
        if problem is not None
        else GeneralProblem(y, X, S, terms, reml=(method == "REML"), block_terms=block_terms)
    )
    fixed, vals = _user_fixed(pr.terms, sigma2, tau2, rho, gamma2, phi)
    for i, v in (hold or {}).items():
        i = int(i)
        if not 0 <= i < pr.n_params:
            raise InputError(f"hold: no parameter {i} (the model has {pr.n_params})")
        v = float(v)
        if not (np.isfinite(v) and pr.lower[i] <= v <= pr.upper[i]):
            raise InputError(
                f"hold: {v!r} is outside [{pr.lower[i]}, {pr.upper[i]}] for {pr.params[i].label}"
            )
        fixed[i], vals[i] = True, v
    notes = auto_fixed(pr.terms, fixed, vals)
    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)

    def starts():
        if start is not None:
            yield np.asarray(start, dtype=float)
            if not default_starts:
                return
        yield from start_values(pr)

    lo, hi = pr.lower, pr.upper
    try:
        opt = maximize(
            pr,
            (np.where(fixed, vals, np.clip(s, lo, hi)) for s in starts()),
            ~fixed,
            lower=lo,
            upper=hi,
        )
    except ConvergenceError as exc:
        # a maximum on the boundary of a UN term's positive semidefinite cone: over the angles
        # of its correlation matrix (mlmeta.core.corr_angles) that boundary is an interior point
        opt = _maximize_un_angles(pr, fixed, vals, starts, exc)
    ev = opt.evaluation
    p = pr.p
    C = ev.C
    vcov = np.linalg.inv(C[:p, :p]) if p else np.zeros((0, 0))
    beta = vcov @ C[:p, p] if p else np.zeros(0)
    return GeneralFit(
        theta=np.array(opt.theta, dtype=float),
        fixed=fixed,
        beta=beta,
        vcov=0.5 * (vcov + vcov.T),
        ll=ev.ll,
        method="REML" if pr.reml else "ML",
        optim=opt,
        problem=pr,
    )
