"""Fit the nested multilevel model from arrays: the numerical entry point of mlmeta.

``fit_nested`` takes plain arrays (no pandas): effect sizes ``y``, sampling variances ``v``, the
design matrix ``X`` and the random-effect factors outer to inner. It returns a :class:`CoreFit`
with the variance components, GLS coefficients and their covariance, the maximised (restricted)
log-likelihood and the optimiser's record. Inference, heterogeneity statistics and printing
live elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlmeta.core.likelihood import Evaluation, ProblemShape, evaluate
from mlmeta.core.optimize import OptimResult, maximize
from mlmeta.core.structure import NestedStructure, build_structure
from mlmeta.errors import InputError

__all__ = ["CoreFit", "fit_nested", "start_values", "Problem"]

METHODS = ("REML", "ML")


@dataclass(frozen=True)
class Problem(ProblemShape):
    """A model ready for likelihood evaluation: sorted rows and the nested structure."""

    st: NestedStructure
    v: np.ndarray  # sorted
    M: np.ndarray  # sorted [X, y]
    reml: bool
    logdet_xtx: float

    def __call__(self, theta: np.ndarray, order: int = 2) -> Evaluation:
        return evaluate(
            theta, self.st, self.v, self.M, reml=self.reml, order=order, logdet_xtx=self.logdet_xtx
        )


@dataclass(frozen=True)
class CoreFit:
    """Numerical result of a nested fit (row order of the input, not the sorted order)."""

    sigma2: np.ndarray
    fixed: np.ndarray  # bool per level: held at a user value
    beta: np.ndarray
    vcov: np.ndarray
    ll: float
    method: str
    optim: OptimResult
    problem: Problem

    @property
    def n_levels(self) -> tuple[int, ...]:
        return self.problem.st.n_groups


def make_problem(
    y,
    v,
    X,
    factors: Sequence[np.ndarray],
    method: str,
    st: NestedStructure | None = None,
    *,
    rho: float | None = None,
    rho_codes: np.ndarray | None = None,
):
    """Sort the rows by the nesting and precompute constants.

    With ``rho`` (and ``rho_codes``, the cluster of each row), sampling errors within a cluster
    are correlated: the problem is evaluated with dense per-cluster blocks
    (:class:`mlmeta.core.dense.DenseProblem`).
    """
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    k = len(y)
    if st is None:
        st = build_structure([np.asarray(f) for f in factors], k)
    o = st.order
    M = np.column_stack([X[o], y[o]])
    p = X.shape[1]
    if p:
        sign, ld = np.linalg.slogdet(X.T @ X)
        if sign <= 0 or np.linalg.matrix_rank(X) < p:
            raise InputError(
                "the design matrix is not of full rank: some moderators are "
                "constant or perfectly collinear"
            )
    else:
        ld = 0.0
    if rho is not None:
        from mlmeta.core.dense import DenseProblem, block_codes, constant_rho_blocks

        if not (-1.0 < float(rho) < 1.0):
            raise InputError(f"rho must be strictly between -1 and 1; got {rho!r}")
        rc = np.asarray(rho_codes)[o]
        bc = block_codes(list(st.codes), rc)
        vs = v[o]
        return DenseProblem(
            st,
            vs,
            M,
            method == "REML",
            float(ld),
            bc,
            lambda rows: constant_rho_blocks(vs, rows, rc, float(rho)),
        )
    return Problem(st, v[o], M, method == "REML", float(ld))


def start_values(y, v, X, L: int) -> list[np.ndarray]:
    """Starting values: metafor's rule first, then alternatives for restarts.

    metafor (rma.mv) starts every sigma2 at total / L with
    total = max(0.001 L, var(y - X b_FE) - 1 / mean(1/v)), b_FE the inverse-variance fit.
    """
    if L == 0:
        return [np.zeros(0)]
    w = 1.0 / v
    Xw = X * w[:, None]
    try:
        b = np.linalg.solve(X.T @ Xw, Xw.T @ y) if X.shape[1] else np.zeros(0)
    except np.linalg.LinAlgError:
        b = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ b if X.shape[1] else y
    vr = float(np.var(r, ddof=1)) if len(r) > 1 else 0.0
    total = max(0.001 * L, vr - 1.0 / float(np.mean(w)))
    typical = 1.0 / float(np.mean(w))
    out = [np.full(L, total / L)]
    out.append(np.full(L, max(vr, typical) / L))
    out.append(np.full(L, 0.1 * typical))
    return out


def fit_nested(
    y,
    v,
    X,
    factors: Sequence[np.ndarray],
    *,
    method: str = "REML",
    sigma2_fixed: Sequence[float | None] | None = None,
    start: Sequence[float] | None = None,
    problem: Problem | None = None,
    rho: float | None = None,
    rho_codes: np.ndarray | None = None,
) -> CoreFit:
    """Fit ``y ~ N(X beta, diag(v) + sum_l sigma2_l Z_l Z_l')`` by REML or ML.

    ``sigma2_fixed[l]`` holds a value to fix level ``l`` at (0 allowed) or None to estimate it.
    ``start`` overrides the starting values (used to warm-start refits).
    """
    pr = (
        problem
        if problem is not None
        else make_problem(y, v, X, factors, method, rho=rho, rho_codes=rho_codes)
    )
    L = pr.st.n_levels
    fixed = np.zeros(L, dtype=bool)
    fixval = np.zeros(L)
    if sigma2_fixed is not None:
        if len(sigma2_fixed) != L:
            raise InputError(
                f"sigma2 has {len(sigma2_fixed)} entries but the model has {L} random-effect levels"
            )
        for i, s in enumerate(sigma2_fixed):
            if s is not None and not (isinstance(s, float) and np.isnan(s)):
                if not np.isfinite(s) or s < 0:
                    raise InputError(f"sigma2[{i + 1}] must be a finite value >= 0; got {s!r}")
                fixed[i] = True
                fixval[i] = float(s)

    def starts():
        # a given (warm) start first; the default starting values only if it fails
        if start is not None:
            yield np.asarray(start, dtype=float)
        yield from start_values(
            np.asarray(y, float), np.asarray(v, float), np.asarray(X, float).reshape(len(y), -1), L
        )

    opt = maximize(pr, (np.where(fixed, fixval, np.maximum(s, 0.0)) for s in starts()), ~fixed)
    ev = opt.evaluation
    p = pr.p
    C = ev.C
    vcov = np.linalg.inv(C[:p, :p]) if p else np.zeros((0, 0))
    beta = vcov @ C[:p, p] if p else np.zeros(0)
    return CoreFit(
        sigma2=np.array(opt.theta, dtype=float),
        fixed=fixed,
        beta=beta,
        vcov=0.5 * (vcov + vcov.T),
        ll=ev.ll,
        method="REML" if pr.reml else "ML",
        optim=opt,
        problem=pr,
    )
