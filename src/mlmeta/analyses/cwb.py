r"""Cluster wild bootstrap tests of meta-regression coefficients (Joshi, Pustejovsky & Beretvas 2022).

The test of ``H0: C beta = 0`` (``C`` a ``q x p`` constraint matrix, usually rows of the identity:
"these coefficients are zero") follows R's wildmeta 0.3 (``Wald_test_cwb``):

1. Fit the **null model**: the same model (random effects, ρ, method) with the design matrix
   ``X N``, ``N`` an orthonormal basis of the null space of ``C`` (for coefficient constraints:
   ``X`` without those columns). Its fitted values ``f = X_0 b_0`` and residuals ``e = y - f``.
2. **CWB-adjusted** (``adjust=True``): multiply each cluster's residuals by the CR2 adjustment
   matrix of the null model (clubSandwich's ``attr(vcovCR(null, type = "CR2"), "adjustments")``),
   ``e~_c = A_c e_c`` with ``A_c = L_c [L_c' (V_c - X_0c M_0 X_0c') L_c]^{-1/2} L_c'``,
   ``V_c = L_c L_c'`` the null model's fitted marginal covariance of cluster ``c`` and
   ``M_0 = (X_0' V^{-1} X_0)^{-1}``. Plain CWB (``adjust=False``): ``e~ = e``.
3. For ``b = 1..R``: draw one weight ``eta_c`` per cluster from the auxiliary distribution and
   form ``y*_c = f_c + eta_c e~_c``; refit the **full** model to ``y*`` (variance components
   re-estimated, as wildmeta's ``update()`` of the ``rma.mv`` fit does) and compute the test
   statistic ``F*_b``.
4. The p-value is ``mean(F*_b > F)`` over the replicates whose refit succeeded, ``F`` the
   statistic of the original fit (wildmeta: ``mean(boots > org_F, na.rm = TRUE)``).

The statistic is wildmeta's default, clubSandwich's ``Wald_test(test = "Naive-F")`` with the
``CR0`` sandwich estimator: ``F = (C b)' (C V^CR0 C')^{-1} (C b) / q`` with
``V^CR0 = M (sum_c X_c' W_c e_c e_c' W_c X_c) M``. ``type="CR1"`` multiplies ``V`` by
``C/(C - 1)`` (clubSandwich's CR1) and gives the same p-value; ``type="CR2"`` uses the CR2
estimator and ``test="HTZ"`` its Hotelling-T² approximation (the F of ``res.robust()``).
Auxiliary distributions: Rademacher (±1, probability 1/2 each), Mammen (``-(sqrt5 - 1)/2`` with
probability ``(sqrt5 + 1)/(2 sqrt5)``, else ``(sqrt5 + 1)/2``) and Webb's six-point
(``±sqrt(1/2), ±1, ±sqrt(3/2)``, 1/6 each); the weight of a cluster is indexed by the sorted
cluster labels, as R's factor codes.

References
----------
Joshi, M., Pustejovsky, J. E., & Beretvas, S. N. (2022). Cluster wild bootstrapping to handle
dependent effect sizes in meta-analysis with a small number of studies. *Research Synthesis
Methods, 13*(4), 457-477. doi:10.1002/jrsm.1554

Joshi, M., Pustejovsky, J. E., & Cappelli, P. (2023). wildmeta: Cluster wild bootstrapping for
meta-analysis (R package 0.3).

Webb, M. D. (2023). Reworking wild bootstrap-based inference for clustered errors. *Canadian
Journal of Economics, 56*(3), 839-858.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlmeta.errors import InputError, MlmetaError

__all__ = [
    "TESTS",
    "TYPES",
    "WEIGHTS",
    "CWBResult",
    "bootstrap_parts",
    "cwb_block",
    "cwb_test",
    "draw_weights",
    "null_model",
]

WEIGHTS = ("rademacher", "mammen", "webb")
TYPES = ("CR0", "CR1", "CR2")
TESTS = ("naive-F", "HTZ")
_EIG_TOL = 1e-12  # clubSandwich's matrix_power(tol = -12)
_FAIL = (MlmetaError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError)


@dataclass(frozen=True)
class CWBResult:
    """Result of :func:`cwb_test`."""

    statistic: float  # F of the original fit
    p_value: float
    R: int
    weights: str
    adjusted: bool
    type: str
    test: str
    constraints: tuple[str, ...] | np.ndarray  # coefficient names, or the C matrix
    q: int
    n_clusters: int
    cluster: str
    boot: np.ndarray  # F of each replicate (NaN where the refit failed)
    seed: int | None

    @property
    def n_failed(self) -> int:
        return int(np.sum(~np.isfinite(self.boot)))

    def to_dict(self) -> dict[str, Any]:
        """The numbers for results.json (without the replicates)."""
        cons: Any = (
            list(self.constraints)
            if isinstance(self.constraints, tuple)
            else np.asarray(self.constraints).tolist()
        )
        return {
            "test": "CWB adjusted" if self.adjusted else "CWB",
            "statistic": _py(self.statistic),
            "p_value": _py(self.p_value),
            "R": self.R,
            "weights": self.weights,
            "adjusted": self.adjusted,
            "type": self.type,
            "stat_test": self.test,
            "constraints": cons,
            "q": self.q,
            "n_clusters": self.n_clusters,
            "cluster": self.cluster,
            "n_failed": self.n_failed,
            "seed": self.seed,
        }

    def __str__(self) -> str:
        name = "CWB adjusted" if self.adjusted else "CWB"
        cons = (
            ", ".join(self.constraints)
            if isinstance(self.constraints, tuple)
            else f"{self.q} linear constraints"
        )
        return (
            f"Cluster wild bootstrap test ({name}, {self.weights} weights, R = {self.R}, "
            f"{self.n_clusters} clusters of {self.cluster!r})\n"
            f"H0: {cons} = 0;  {self.type} {self.test} F = {self.statistic:.4f}, "
            f"bootstrap p = {self.p_value:.4f}"
            + (f"  ({self.n_failed} failed refits)" if self.n_failed else "")
        )


def _py(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


def draw_weights(dist: str, R: int, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """``R x n_clusters`` auxiliary weights (module docstring) drawn from ``rng``."""
    d = _choice("weights", dist, WEIGHTS)
    if d == "rademacher":
        return rng.integers(0, 2, size=(R, n_clusters)).astype(float) * 2.0 - 1.0
    if d == "mammen":
        s5 = math.sqrt(5.0)
        lo, hi = -(s5 - 1) / 2, (s5 + 1) / 2
        return np.where(rng.random((R, n_clusters)) < (s5 + 1) / (2 * s5), lo, hi)
    vals = np.array([-math.sqrt(3), -math.sqrt(2), -1.0, 1.0, math.sqrt(2), math.sqrt(3)])
    return vals[rng.integers(0, 6, size=(R, n_clusters))] / math.sqrt(2.0)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    for a in allowed:
        if str(value).strip().lower() == a.lower():
            return a
    raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


# --------------------------------------------------------------------------------------------
# constraints and the null model
# --------------------------------------------------------------------------------------------


def _constraints(res, constraints: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(C matrix, selected coefficient positions or None, label for the result)."""
    names = list(res.coef_names)
    p = len(names)
    if constraints is None:
        sel = np.asarray(res.btt, dtype=int)
    elif isinstance(constraints, np.ndarray) and constraints.dtype.kind == "f":
        C = np.atleast_2d(constraints).astype(float)
        if C.ndim != 2 or C.shape[1] != p:
            raise InputError(
                f"constraints: a constraint matrix needs {p} columns (one per "
                f"coefficient); got shape {C.shape}"
            )
        if not np.all(np.isfinite(C)) or np.linalg.matrix_rank(C) < C.shape[0]:
            raise InputError(
                "constraints: the constraint matrix must be finite with linearly independent rows"
            )
        return C, None, C.copy()
    else:
        items = (
            [constraints] if isinstance(constraints, (str, int, np.integer)) else list(constraints)
        )
        pos = []
        for b in items:
            if isinstance(b, str):
                if b not in names:
                    raise InputError(
                        f"constraints: {b!r} is not a coefficient ({', '.join(names)})"
                    )
                pos.append(names.index(b))
            elif isinstance(b, (int, np.integer)) and not isinstance(b, bool):
                if not 0 <= int(b) < p:
                    raise InputError(f"constraints: position {b} is out of range 0..{p - 1}")
                pos.append(int(b))
            else:
                raise InputError(
                    f"constraints: give coefficient names, 0-based positions or "
                    f"a q x p matrix; got {b!r}"
                )
        if not pos:
            raise InputError("constraints: no coefficient given")
        sel = np.array(sorted(set(pos)), dtype=int)
    C = np.eye(p)[sel]
    return C, sel, tuple(names[i] for i in sel)


def _null_design(
    X: np.ndarray, names: list[str], C: np.ndarray, sel: np.ndarray | None
) -> tuple[np.ndarray, list[str]]:
    if sel is not None:
        keep = [j for j in range(X.shape[1]) if j not in set(sel.tolist())]
        return X[:, keep], [names[j] for j in keep]
    # wildmeta's constrain_predictors: X times a basis of the null space of C
    p, q = C.shape[1], C.shape[0]
    P = np.eye(p) - C.T @ np.linalg.solve(C @ C.T, C)
    _, _, vt = np.linalg.svd(P)
    N = vt[: p - q].T
    return X @ N, [f"null{j + 1}" for j in range(p - q)]


def null_model(res, constraints: Any = None):
    """The fit of ``res``'s model under ``H0: C beta = 0`` (module docstring, step 1): the same
    random effects, ρ, method and fixed components, refitted with the reduced design."""
    C, sel, _ = _constraints(res, constraints)
    X0, names0 = _null_design(res.data.X, list(res.coef_names), C, sel)
    return res.refit(design=(X0, names0))


# --------------------------------------------------------------------------------------------
# the bootstrap state (picklable) and the statistic
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    ids: np.ndarray  # cluster codes
    rows: np.ndarray  # (m, n) data rows
    S: np.ndarray  # (m, n, n) sampling covariance
    Z: np.ndarray  # (L, m, n, n) indicators "same group at level l"


@dataclass(frozen=True)
class _State:
    res: Any  # the full fit (refits start from it)
    groups: tuple[_Group, ...]
    n_clusters: int
    cluster: str | None
    C: np.ndarray
    sel: np.ndarray | None
    type: str
    test: str
    fitted: np.ndarray  # null model's fitted values
    resid: np.ndarray  # (adjusted) null residuals
    codes: np.ndarray  # cluster code of each row


def _structure(res, codes: np.ndarray) -> tuple[_Group, ...]:
    blocks = res.marginal_blocks(codes)
    lc = res.level_codes()
    s2 = np.asarray(res.core.sigma2, dtype=float)
    sizes = np.array([len(r) for r, _ in blocks])
    groups = []
    for n in np.unique(sizes):
        ids = np.flatnonzero(sizes == n)
        rows = np.stack([blocks[i][0] for i in ids])
        V = np.stack([blocks[i][1] for i in ids])
        Z = (
            np.stack([(c[rows][:, :, None] == c[rows][:, None, :]).astype(float) for c in lc])
            if lc
            else np.zeros((0, len(ids), n, n))
        )
        S = V - np.einsum("l,lmij->mij", s2, Z)
        groups.append(_Group(ids, rows, S, Z))
    return tuple(groups)


def _sym_power(A: np.ndarray, power: float) -> np.ndarray:
    A = 0.5 * (A + np.swapaxes(A, -1, -2))
    vals, vecs = np.linalg.eigh(A)
    keep = vals > _EIG_TOL
    f = np.where(keep, np.where(keep, vals, 1.0) ** power, 0.0)
    return (vecs * f[..., None, :]) @ np.swapaxes(vecs, -1, -2)


def _adjust(res0, groups: tuple[_Group, ...], resid: np.ndarray) -> np.ndarray:
    """CR2-adjusted null residuals ``A_c e_c`` (module docstring, step 2)."""
    s2 = np.asarray(res0.core.sigma2, dtype=float)
    X0 = np.asarray(res0.data.X, dtype=float)
    M0 = np.asarray(res0.core.vcov, dtype=float).reshape(X0.shape[1], X0.shape[1])
    out = resid.copy()
    for g in groups:
        V = g.S + np.einsum("l,lmij->mij", s2, g.Z)
        L = np.linalg.cholesky(V)
        Lt = np.swapaxes(L, -1, -2)
        Xc = X0[g.rows]  # (m, n, p0)
        XMX = Xc @ M0 @ np.swapaxes(Xc, -1, -2) if X0.shape[1] else 0.0
        A = L @ _sym_power(Lt @ (V - XMX) @ L, -0.5) @ Lt
        out[g.rows] = np.einsum("mij,mj->mi", A, resid[g.rows])
    return out


def _null_parts(
    res, C: np.ndarray, sel: np.ndarray | None, groups: tuple[_Group, ...], adjust: bool
) -> tuple[np.ndarray, np.ndarray]:
    res0 = null_model(res, C if sel is None else [int(i) for i in sel])
    fitted0 = (
        np.asarray(res0.data.X, dtype=float) @ np.asarray(res0.core.beta, dtype=float)
        if res0.data.X.shape[1]
        else np.zeros(res.k)
    )
    resid0 = np.asarray(res.data.y, dtype=float) - fitted0
    if adjust:
        resid0 = _adjust(res0, groups, resid0)
    return fitted0, resid0


def bootstrap_parts(
    res, constraints: Any = None, *, adjust: bool = True, cluster: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The null model's fitted values ``f`` and the residuals the bootstrap multiplies
    (CR2-adjusted when ``adjust``), in data row order: replicate ``b`` is
    ``f + eta_b[cluster] * e`` (module docstring, steps 1-3)."""
    C, sel, _ = _constraints(res, constraints)
    codes, _ = res.cluster_codes(cluster)
    return _null_parts(res, C, sel, _structure(res, codes), adjust)


def _wald(b: np.ndarray, V: np.ndarray) -> float:
    try:
        cf_ = np.linalg.cholesky(0.5 * (V + V.T))
    except np.linalg.LinAlgError:
        return float("nan")
    z = np.linalg.solve(cf_, b)
    return float(z @ z)


def _statistic(st: _State, fit) -> float:
    """The test statistic of a fit of the full model (module docstring)."""
    beta = np.asarray(fit.core.beta, dtype=float)
    q = st.C.shape[0]
    if st.type == "CR2":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rob = fit.robust(
                cluster=st.cluster,
                type="CR2",
                btt=None if st.sel is None else [int(i) for i in st.sel],
            )
        if st.test == "HTZ":
            return float(rob.QM)
        Vr = rob.vcov.to_numpy(float)
    else:
        X = np.asarray(fit.data.X, dtype=float)
        e = np.asarray(fit.data.y, dtype=float) - X @ beta
        s2 = np.asarray(fit.core.sigma2, dtype=float)
        p = X.shape[1]
        meat = np.zeros((p, p))
        for g in st.groups:
            V = g.S + np.einsum("l,lmij->mij", s2, g.Z)
            rhs = np.concatenate([X[g.rows], e[g.rows][..., None]], axis=2)
            sol = np.linalg.solve(V, rhs)  # V^-1 [X, e]
            u = np.einsum("mnp,mn->mp", X[g.rows], sol[..., -1])  # X_c' W_c e_c
            meat += u.T @ u
        M = np.asarray(fit.core.vcov, dtype=float)
        Vr = M @ meat @ M
        if st.type == "CR1":
            Vr = Vr * st.n_clusters / (st.n_clusters - 1)
    cb = st.C @ beta
    return _wald(cb, st.C @ Vr @ st.C.T) / q


def _refit_outcome(res, y: np.ndarray):
    """``res``'s model refitted to the outcome ``y`` (same rows, design and settings; variance
    components re-estimated, warm-started from ``res``)."""
    from mlmeta.model import fit_prepared

    md = dataclasses.replace(res.data, y=np.asarray(y, dtype=float))
    return fit_prepared(md, res.spec, start=res.core.sigma2)


def _boot_chunk(st: _State, eta: np.ndarray) -> np.ndarray:
    """Statistics of the replicates with cluster weights ``eta`` (rows = replicates)."""
    out = np.full(eta.shape[0], np.nan)
    for b in range(eta.shape[0]):
        ystar = st.fitted + eta[b][st.codes] * st.resid
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[b] = _statistic(st, _refit_outcome(st.res, ystar))
        except _FAIL:
            pass
    return out


# --------------------------------------------------------------------------------------------
# the test
# --------------------------------------------------------------------------------------------


def cwb_test(
    res,
    constraints: Any = None,
    *,
    R: int = 1999,
    weights: Any = "rademacher",
    adjust: bool = True,
    type: str = "CR0",
    test: str = "naive-F",
    seed: int | None = None,
    executor: Any = None,
    cluster: str | None = None,
    chunk_size: int = 100,
) -> CWBResult:
    """Cluster wild bootstrap test of ``H0: C beta = 0`` for a fitted model (module docstring).

    Parameters
    ----------
    res : MetaResults
        The full model (any nested model, with or without a working ρ).
    constraints : name, position, list of them, or a ``q x p`` float array
        The coefficients tested jointly (default: all but the intercept, as ``res.robust()``),
        or a constraint matrix ``C`` for ``C beta = 0``.
    R : int
        Bootstrap replicates (default 1999).
    weights : "rademacher" (default), "mammen", "webb", or an ``R x C`` array
        The auxiliary distribution, or the weights themselves (one row per replicate, one
        column per cluster in sorted label order; e.g. to reproduce another program's draws).
    adjust : bool
        CWB-adjusted (default): multiply the null residuals by the null model's CR2 adjustment
        matrices; False: plain CWB.
    type : "CR0" (default, as wildmeta), "CR1" or "CR2"
        Sandwich estimator of the Wald statistic.
    test : "naive-F" (default) or "HTZ" (with type="CR2" and coefficient constraints)
    seed : int, optional
        Seed of ``numpy.random.default_rng`` for the weights (None: fresh entropy).
    executor : None, "serial", concurrent.futures.Executor or dask Client
        Where the replicates run, in chunks of ``chunk_size`` (None/"serial": here). The
        weights are drawn here first, so the result does not depend on the executor.
    cluster : column name, optional
        Cluster variable (default: the outer random level).

    Returns
    -------
    CWBResult
        ``statistic``, ``p_value``, ``R``, ``weights``, ``adjusted``, ``boot`` (the replicate
        statistics), ``n_failed`` ...; ``to_dict()`` for JSON.

    Examples
    --------
    >>> res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ x", rho=0.6)  # doctest: +SKIP
    >>> cwb_test(res, "x", R=999, seed=1).p_value                                     # doctest: +SKIP
    """
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)) or R < 1:
        raise InputError(f"R must be a positive integer (bootstrap replicates); got {R!r}")
    R = int(R)
    typ = _choice("type", type, TYPES)
    tst = _choice("test", test, TESTS)
    C, sel, label = _constraints(res, constraints)
    if tst == "HTZ" and (typ != "CR2" or sel is None):
        raise InputError("test='HTZ' needs type='CR2' and constraints given as coefficients")
    codes, labels = res.cluster_codes(cluster)
    n_cl = len(labels)
    if n_cl < 2:
        raise InputError(f"the cluster wild bootstrap needs at least 2 clusters; got {n_cl}")
    if isinstance(weights, str):
        wname = _choice("weights", weights, WEIGHTS)
        eta = draw_weights(wname, R, n_cl, np.random.default_rng(seed))
    else:
        eta = np.asarray(weights, dtype=float)
        if eta.shape != (R, n_cl) or not np.all(np.isfinite(eta)):
            raise InputError(
                f"weights: an array of weights must be finite with shape (R, "
                f"clusters) = ({R}, {n_cl}); got shape {eta.shape}"
            )
        wname = "user"

    groups = _structure(res, codes)
    fitted0, resid0 = _null_parts(res, C, sel, groups, adjust)
    st = _State(
        res=res,
        groups=groups,
        n_clusters=n_cl,
        cluster=cluster,
        C=C,
        sel=sel,
        type=typ,
        test=tst,
        fitted=fitted0,
        resid=resid0,
        codes=codes,
    )
    F = _statistic(st, res)
    boot = _run(st, eta, executor, chunk_size)
    ok = np.isfinite(boot)
    p = float(np.mean(boot[ok] > F)) if ok.any() and math.isfinite(F) else float("nan")
    cname = cluster or (res.data.random[0] if res.data.random else "")
    return CWBResult(
        statistic=F,
        p_value=p,
        R=R,
        weights=wname,
        adjusted=bool(adjust),
        type=typ,
        test=tst,
        constraints=label,
        q=C.shape[0],
        n_clusters=n_cl,
        cluster=cname,
        boot=boot,
        seed=seed,
    )


def _run(st: _State, eta: np.ndarray, executor: Any, chunk_size: int) -> np.ndarray:
    if executor is None or (isinstance(executor, str) and executor.lower() == "serial"):
        return _boot_chunk(st, eta)
    if isinstance(executor, str):
        raise InputError(
            f"executor must be 'serial', a concurrent.futures.Executor or a "
            f"dask.distributed Client; got {executor!r}"
        )
    owned = False
    ex: Any = executor
    if isinstance(executor, int) and not isinstance(executor, bool):
        ex, owned = cf.ProcessPoolExecutor(max_workers=max(1, executor)), True
    elif not isinstance(executor, cf.Executor):
        get = getattr(executor, "get_executor", None)
        if not callable(get):
            raise InputError(
                f"executor must be 'serial', a concurrent.futures.Executor or a "
                f"dask.distributed Client; got {type(executor).__name__}"
            )
        ex = get(pure=False)
    size = max(1, int(chunk_size))
    starts = list(range(0, eta.shape[0], size))
    try:
        futs = [ex.submit(_boot_chunk, st, eta[s : s + size]) for s in starts]
        return np.concatenate([f.result() for f in futs])
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)


def cwb_block(res) -> dict[str, Any]:
    """The ``cwb`` block of results.json: :func:`cwb_test` of the default constraints (all
    coefficients but the intercept; the intercept of an intercept-only model) with R = 1999
    Rademacher weights, CWB-adjusted, seed 1."""
    return cwb_test(res, R=1999, weights="rademacher", adjust=True, seed=1).to_dict()
