"""General random-effects structures at linear cost in k: crossed terms, ``~ inner | outer``
terms with a ``struct``, known correlation matrices of a factor's levels (``R=``) and known
sampling covariances (``V``), with exact first and second derivatives.

Model (metafor's ``rma.mv``): ``y ~ N(X beta, V)`` with

    V = S + sum_t Z_t G_t(theta) Z_t',

``S`` the sampling covariance (:mod:`mlmeta.core.sampling`), and one term per random-effects
formula: ``~ 1 | f`` (``G = sigma2 I`` or ``sigma2 R`` over the levels of ``f``) or
``~ inner | outer`` (``G = I_outer (x) T(theta)``, :mod:`mlmeta.core.covstruct`).

Two layers keep the cost linear in ``k`` and never form a ``k x k`` matrix:

1. **Blocks.** The rows split into the connected components of the pattern of ``S`` and of the
   groupings of the *block terms* (chosen automatically: nested factors, per-row levels and
   ``~ inner | outer`` terms whose outer groups stay small). ``V_B = S + sum_{block terms}`` is
   block-diagonal; each block is factorised densely, blocks of equal size in one batched call.
2. **Woodbury layer.** The other terms (crossed factors such as a lab or a species, factors with
   an ``R`` matrix, ``~ inner | outer`` terms whose outer groups would merge the blocks) stack
   into ``U Gamma U'`` with ``U`` the ``k x q`` incidence matrix of their ``q`` random effects.
   With ``W = U' V_B^{-1} U`` and ``A = I + Gamma W``,

       log|V| = log|V_B| + log|A|,
       V^{-1} = V_B^{-1} - V_B^{-1} U K U' V_B^{-1},   K = A^{-1} Gamma,

   so ``M' V^{-1} M`` (``M = [X, y]``) needs only ``V_B^{-1}`` applied blockwise and ``q x q``
   algebra. ``Gamma`` enters without being inverted, so a variance exactly 0 is allowed.

Derivatives. With ``V_i = dV/dtheta_i``, ``P = V^{-1}``, ``N = P M``:

    d log|V| = tr(P V_i),  d2 log|V| = tr(P V_ij) - tr(P V_i P V_j),
    d C = -N' V_i N,       d2 C = N'(V_i P V_j + V_j P V_i) N - N' V_ij N,

evaluated exactly through the two layers (block parameters through ``V_B^{-1} D_i``, Woodbury
parameters through ``Omega = U' P U = W A^{-1}``), so the projected Newton optimiser of
:mod:`mlmeta.core.optimize` gets the exact gradient and Hessian of the (restricted)
log-likelihood (:func:`mlmeta.core.likelihood.assemble`).

Cost per evaluation: ``O(sum_b n_b^3 + k T q_b + q^3)`` times the number of parameters, with
``n_b`` the block sizes and ``q`` the number of random effects of the Woodbury terms; ``q`` is
meant to stay below a few thousand (a lab, a species list, a phylogeny).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlmeta.core.covstruct import CovStruct
from mlmeta.core.likelihood import Evaluation, ProblemShape, assemble
from mlmeta.core.sampling import SamplingCov
from mlmeta.errors import InputError

__all__ = [
    "MAX_BLOCK",
    "FactorTerm",
    "GeneralProblem",
    "InnerOuterTerm",
    "ParamInfo",
    "factor_term",
    "inner_outer_term",
    "nested_terms",
]

MAX_BLOCK = 2000  # largest block the automatic choice of block terms may create


# --------------------------------------------------------------------------------------------
# terms
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FactorTerm:
    """``~ 1 | f``: one random effect per level of ``f`` with covariance ``sigma2 R``.

    Attributes
    ----------
    codes : (k,) level of each row, 0..n_levels-1.
    n_levels : number of levels.
    R : None (independent levels) or the (n_levels, n_levels) correlation matrix of the levels,
        in the order of the codes.
    name : label used in messages and printouts.
    """

    codes: np.ndarray
    n_levels: int
    R: np.ndarray | None = None
    name: str = ""

    @property
    def n_params(self) -> int:
        return 1


@dataclass(frozen=True)
class InnerOuterTerm:
    """``~ inner | outer`` with covariance structure ``cov`` of the inner levels.

    Attributes
    ----------
    inner : (k,) inner level of each row, 0..m-1 in R's ``factor()`` order.
    outer : (k,) outer group of each row, 0..n_outer-1.
    cov : the structure (its ``m`` is the number of inner levels).
    n_outer : number of outer groups.
    name : label used in messages.
    """

    inner: np.ndarray
    outer: np.ndarray
    cov: CovStruct
    n_outer: int
    name: str = ""

    @property
    def n_params(self) -> int:
        return self.cov.n_params


Term = FactorTerm | InnerOuterTerm


def _codes(labels) -> tuple[np.ndarray, np.ndarray]:
    lv, c = np.unique(np.asarray(labels), return_inverse=True)
    return lv, c.ravel().astype(np.int64)


def factor_term(labels, *, R=None, R_names=None, name: str = "") -> FactorTerm:
    """A ``~ 1 | f`` term from the raw labels of ``f`` (levels sorted as ``np.unique``).

    ``R`` (optional) is a correlation matrix whose rows/columns are named by ``R_names``
    (matched to the labels as strings; extra levels are dropped). As metafor's default
    ``Rscale = "cor"``, the matched sub-matrix is rescaled to a correlation matrix
    (``cov2cor``).
    """
    lv, c = _codes(labels)
    Rm = None
    if R is not None:
        R = np.asarray(R, dtype=float)
        if R.ndim != 2 or R.shape[0] != R.shape[1]:
            raise InputError(
                f"R for {name or 'the factor'} must be a square matrix; got shape {R.shape}"
            )
        names = [str(x) for x in (R_names if R_names is not None else range(R.shape[0]))]
        if len(names) != R.shape[0]:
            raise InputError(
                f"R for {name or 'the factor'}: {len(names)} level names for a "
                f"{R.shape[0]} x {R.shape[0]} matrix"
            )
        pos = {}
        for i, nm in enumerate(names):
            if nm in pos:
                raise InputError(f"R for {name or 'the factor'}: level {nm!r} appears twice")
            pos[nm] = i
        missing = [str(x) for x in lv if str(x) not in pos]
        if missing:
            raise InputError(
                f"R for {name or 'the factor'} has no row/column for level "
                f"{missing[0]!r} ({len(missing)} level(s) of the data missing)"
            )
        idx = np.array([pos[str(x)] for x in lv], dtype=np.int64)
        Rm = R[np.ix_(idx, idx)]
        if not np.all(np.isfinite(Rm)):
            raise InputError(f"R for {name or 'the factor'} contains missing or infinite values")
        if np.max(np.abs(Rm - Rm.T)) > 1e-8 * max(1.0, float(np.max(np.abs(Rm)))):
            i, j = (int(x) for x in np.unravel_index(np.argmax(np.abs(Rm - Rm.T)), Rm.shape))
            raise InputError(
                f"R for {name or 'the factor'} must be symmetric: entry "
                f"({lv[i]}, {lv[j]}) differs from ({lv[j]}, {lv[i]})"
            )
        Rm = 0.5 * (Rm + Rm.T)
        d = np.diag(Rm)
        if np.any(d <= 0):
            i = int(np.flatnonzero(d <= 0)[0])
            raise InputError(
                f"R for {name or 'the factor'}: the diagonal entry of level "
                f"{str(lv[i])!r} must be > 0; got {float(d[i])!r}"
            )
        s = 1.0 / np.sqrt(d)
        Rm = Rm * np.outer(s, s)
        np.fill_diagonal(Rm, 1.0)
    return FactorTerm(c, len(lv), Rm, name)


def nested_terms(factors: Sequence, names: Sequence[str] | None = None) -> list[FactorTerm]:
    """The terms of ``~ 1 | a/b/c``: ``a``, ``a/b``, ``a/b/c`` (levels are combinations)."""
    out = []
    prev = None
    for i, f in enumerate(factors):
        _, c = _codes(f)
        if prev is not None:
            key = prev * (int(c.max()) + 1 if c.size else 1) + c
            _, c = _codes(key)
        prev = c
        nm = names[i] if names is not None else f"level{i + 1}"
        out.append(FactorTerm(c, int(c.max()) + 1 if c.size else 0, None, nm))
    return out


def inner_outer_term(
    inner_labels, outer_labels, struct: str, *, name: str = "", inner_levels=None
) -> InnerOuterTerm:
    """``~ inner | outer`` from raw labels. Inner levels are sorted as ``np.unique`` sorts them
    (numbers numerically, strings lexicographically) unless ``inner_levels`` gives the order."""
    if inner_levels is not None:
        pos = {v: i for i, v in enumerate(inner_levels)}
        inner = np.array([pos[v] for v in np.asarray(inner_labels).tolist()], dtype=np.int64)
        m = len(inner_levels)
    else:
        lv, inner = _codes(inner_labels)
        m = len(lv)
    _, outer = _codes(outer_labels)
    return InnerOuterTerm(inner, outer, CovStruct(struct, m), int(outer.max()) + 1, name)


def _term_groups(t: Term) -> np.ndarray:
    """The grouping that makes rows covary through ``t`` (levels or outer groups)."""
    return t.codes if isinstance(t, FactorTerm) else t.outer


@dataclass(frozen=True)
class ParamInfo:
    """One entry of the parameter vector ``theta``."""

    term: int
    local: int
    kind: str  # 'var' | 'sd' | 'cor'
    lower: float
    upper: float
    label: str


# --------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------
def _components(k: int, groupings: list[np.ndarray], pairs=None) -> np.ndarray:
    """Connected components of rows linked by sharing a group (or by ``pairs`` (i, j))."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ii, jj = [], []
    for g in groupings:
        o = np.argsort(g, kind="stable")
        gs = g[o]
        same = gs[1:] == gs[:-1]
        ii.append(o[:-1][same])
        jj.append(o[1:][same])
    if pairs is not None:
        ii.append(pairs[0])
        jj.append(pairs[1])
    i = np.concatenate(ii) if ii else np.zeros(0, dtype=np.int64)
    j = np.concatenate(jj) if jj else np.zeros(0, dtype=np.int64)
    A = coo_matrix((np.ones(len(i)), (i, j)), shape=(k, k))
    _, lab = connected_components(A, directed=False)
    return lab.astype(np.int64)


def _cube_cost(labels: np.ndarray) -> float:
    sizes = np.bincount(labels).astype(float)
    return float(np.sum(sizes**3))


def choose_block_terms(
    S: SamplingCov, terms: Sequence[Term], max_block: int = MAX_BLOCK
) -> tuple[list[int], np.ndarray]:
    """Split the terms into block terms and Woodbury terms; returns the indices of the block
    terms and the block label of each row.

    Terms with an ``R`` matrix always go to the Woodbury layer. The others are tried in
    decreasing number of random effects; a term joins the blocks when the blocks it creates
    cost less (sum of cubed block sizes) than its random effects would in the Woodbury layer
    (cube of their number) and no block grows beyond ``max_block`` rows.
    """
    k = S.k
    pairs = (S.rows, S.cols) if S.rows.size else None
    labels = _components(k, [], pairs)
    ncols = [_n_random_effects(t) for t in terms]
    q = float(sum(ncols))
    cost = _cube_cost(labels) + q**3
    cands = [i for i, t in enumerate(terms) if not (isinstance(t, FactorTerm) and t.R is not None)]
    cands.sort(key=lambda i: -ncols[i])
    chosen = []
    for i in cands:
        new = _components(k, [labels, _term_groups(terms[i])])
        if np.bincount(new).max() > max(max_block, np.bincount(labels).max()):
            continue
        c2 = _cube_cost(new) + (q - ncols[i]) ** 3
        if c2 <= cost:
            chosen.append(i)
            labels, q, cost = new, q - ncols[i], c2
    return sorted(chosen), labels


def _n_random_effects(t: Term) -> int:
    if isinstance(t, FactorTerm):
        return t.n_levels
    return len(np.unique(t.outer * t.cov.m + t.inner))


@dataclass
class _Batch:
    """Blocks of one size ``n``: ``rows`` (nb, n) row indices."""

    rows: np.ndarray
    S: np.ndarray  # (nb, n, n)
    M: np.ndarray  # (nb, n, c)
    gidx: dict = field(default_factory=dict)  # block term -> (nb, n, n) index into G.ravel()
    dest: np.ndarray | None = None  # (T*T, nb, n, n) flat index into the q x q Woodbury space


@dataclass
class _Wood:
    """A block of the q random effects of the Woodbury layer and how Gamma is built on it:
    either one ``~ inner | outer`` term (``gidx``) or every ``~ 1 | f`` term with the same
    grouping (``members``: term index and R or None; e.g. species and phylogeny share the
    species as columns, Gamma = s1 I + s2 R)."""

    start: int
    stop: int
    members: list  # [(term, R or None)] of factor terms
    gidx: np.ndarray | None  # InnerOuterTerm: (q_w, q_w) index into G.ravel(), -1 = 0
    io_term: int = -1

    @property
    def terms(self) -> list[int]:
        return [self.io_term] if self.gidx is not None else [t for t, _ in self.members]


def _neg_inf(theta, n, c):
    return Evaluation(
        theta, -np.inf, np.full(n, np.nan), np.full((n, n), np.nan), np.zeros((c, c)), np.nan
    )


# --------------------------------------------------------------------------------------------
# the problem
# --------------------------------------------------------------------------------------------
class GeneralProblem(ProblemShape):
    """Likelihood of ``y ~ N(X beta, S + sum_t Z_t G_t Z_t')``; call it with ``theta``.

    Parameters
    ----------
    y, X : effect sizes (k,) and design matrix (k, p).
    S : the sampling covariance.
    terms : random-effects terms, in the order of the parameter vector.
    reml : restricted (True) or full likelihood.
    block_terms : indices of the terms to treat as block terms (default: chosen by
        :func:`choose_block_terms`).
    """

    def __init__(
        self,
        y,
        X,
        S: SamplingCov,
        terms: Sequence[Term],
        *,
        reml: bool,
        block_terms: Sequence[int] | None = None,
        max_block: int = MAX_BLOCK,
    ) -> None:
        y = np.asarray(y, dtype=float).ravel()
        k = len(y)
        X = np.asarray(X, dtype=float).reshape(k, -1)
        if S.k != k:
            raise InputError(
                f"the sampling covariance has {S.k} rows but there are {k} effect sizes"
            )
        self.M = np.column_stack([X, y])
        self.S = S
        self.terms = list(terms)
        self.reml = bool(reml)
        p = X.shape[1]
        if p:
            sign, ld = np.linalg.slogdet(X.T @ X)
            if sign <= 0 or np.linalg.matrix_rank(X) < p:
                raise InputError(
                    "the design matrix is not of full rank: some moderators are "
                    "constant or perfectly collinear"
                )
            self.logdet_xtx = float(ld)
        else:
            self.logdet_xtx = 0.0
        for t in self.terms:
            g = _term_groups(t)
            if len(g) != k:
                raise InputError(
                    f"random-effects term {t.name!r} has {len(g)} values but there are {k} rows"
                )
        # parameters
        params: list[ParamInfo] = []
        self.slices: list[slice] = []
        for ti, t in enumerate(self.terms):
            a = len(params)
            if isinstance(t, FactorTerm):
                params.append(ParamInfo(ti, 0, "var", 0.0, np.inf, f"sigma2[{t.name}]"))
            else:
                cs = t.cov
                for j, (kd, lo, hi) in enumerate(zip(cs.kinds, cs.lower, cs.upper)):
                    params.append(ParamInfo(ti, j, kd, float(lo), float(hi), f"{t.name}[{j}]"))
            self.slices.append(slice(a, len(params)))
        self.params = params
        self.lower = np.array([q.lower for q in params])
        self.upper = np.array([q.upper for q in params])
        # layers
        if block_terms is None:
            bt, labels = choose_block_terms(S, self.terms, max_block)
        else:
            bt = sorted(int(i) for i in block_terms)
            pairs = (S.rows, S.cols) if S.rows.size else None
            labels = _components(k, [_term_groups(self.terms[i]) for i in bt], pairs)
        self.block_terms = bt
        self.wood_terms = [i for i in range(len(self.terms)) if i not in set(bt)]
        self.block_labels = labels
        self._build_woodbury(k)
        self._build_batches(k)
        self._check_sampling_pd()

    # ---- construction ----------------------------------------------------------------------
    def _build_woodbury(self, k: int) -> None:
        from scipy.sparse import csr_matrix

        self.wood: list[_Wood] = []
        cols = []
        q = 0
        for ti in self.wood_terms:
            t = self.terms[ti]
            if isinstance(t, FactorTerm):
                shared = [
                    w
                    for w in self.wood
                    if w.gidx is None and np.array_equal(self.terms[w.members[0][0]].codes, t.codes)
                ]
                if shared:
                    shared[0].members.append((ti, t.R))
                    continue
                col = t.codes
                qw = t.n_levels
                self.wood.append(_Wood(q, q + qw, [(ti, t.R)], None))
            else:
                m = t.cov.m
                key = t.outer * m + t.inner
                uk, col = np.unique(key, return_inverse=True)
                col = col.ravel()
                qw = len(uk)
                o, inn = uk // m, uk % m
                same = o[:, None] == o[None, :]
                gidx = np.where(same, inn[:, None] * m + inn[None, :], -1)
                self.wood.append(_Wood(q, q + qw, [], gidx, ti))
            cols.append(col.astype(np.int64) + q)
            q += qw
        self.q = q
        self.ucols = np.column_stack(cols) if cols else np.zeros((k, 0), dtype=np.int64)
        T = self.ucols.shape[1]
        self.U: Any = None
        if T:
            self.U = csr_matrix(
                (np.ones(k * T), (np.repeat(np.arange(k), T), self.ucols.ravel())), shape=(k, q)
            )

    def _build_batches(self, k: int) -> None:
        lab = self.block_labels
        order = np.argsort(lab, kind="stable")
        sizes_all = np.bincount(lab)
        starts = np.r_[0, np.cumsum(sizes_all)[:-1]]
        self.batches: list[_Batch] = []
        # where each row lives: batch, block within batch, position within block
        self._row_batch = np.empty(k, dtype=np.int64)
        self._row_blk = np.empty(k, dtype=np.int64)
        self._row_pos = np.empty(k, dtype=np.int64)
        T = self.ucols.shape[1]
        for bi, n in enumerate(np.unique(sizes_all)):
            ids = np.flatnonzero(sizes_all == n)
            rows = order[starts[ids][:, None] + np.arange(n)[None, :]]
            nb = rows.shape[0]
            self._row_batch[rows] = bi
            self._row_blk[rows] = np.arange(nb)[:, None]
            self._row_pos[rows] = np.arange(n)[None, :]
            Sb = np.zeros((nb, n, n))
            Sb[:, np.arange(n), np.arange(n)] = self.S.diag[rows]
            b = _Batch(rows, Sb, self.M[rows])
            for ti in self.block_terms:
                t = self.terms[ti]
                if isinstance(t, FactorTerm):
                    c = t.codes[rows]
                    b.gidx[ti] = np.where(c[:, :, None] == c[:, None, :], 0, -1)
                else:
                    o, inn = t.outer[rows], t.inner[rows]
                    m = t.cov.m
                    b.gidx[ti] = np.where(
                        o[:, :, None] == o[:, None, :], inn[:, :, None] * m + inn[:, None, :], -1
                    )
            if T:
                uc = self.ucols[rows]  # (nb, n, T)
                d = uc[:, :, None, :, None] * self.q + uc[:, None, :, None, :]  # nb,n,n,T,T
                b.dest = np.moveaxis(d, (3, 4), (0, 1)).reshape(T * T, nb, n, n)
            self.batches.append(b)
        if self.S.rows.size:
            r, c, v = self.S.rows, self.S.cols, self.S.vals
            bb = self._row_batch[r]
            for bi, b in enumerate(self.batches):
                m = bb == bi
                b.S[self._row_blk[r[m]], self._row_pos[r[m]], self._row_pos[c[m]]] = v[m]
        if T:
            self._dest_all = np.concatenate([np.ravel(np.asarray(b.dest)) for b in self.batches])

    def _check_sampling_pd(self) -> None:
        from mlmeta.core.sampling import check_positive_definite

        for b in self.batches:
            if b.rows.shape[1] < 2:
                continue
            try:
                np.linalg.cholesky(b.S)
            except np.linalg.LinAlgError:
                bad = []
                for j in range(b.rows.shape[0]):
                    try:
                        np.linalg.cholesky(b.S[j])
                    except np.linalg.LinAlgError:
                        bad.append(np.sort(b.rows[j]))
                        break
                check_positive_definite(self.S, bad)

    # ---- helpers ---------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.params)

    def _to_rows(self, per_batch: list[np.ndarray], c: int) -> np.ndarray:
        out = np.empty((self.k, c))
        for b, x in zip(self.batches, per_batch):
            out[b.rows] = x
        return out

    def _bapply(self, mats: list[np.ndarray], Z: np.ndarray) -> np.ndarray:
        """Block-diagonal ``mats`` (one (nb, n, n) per batch) times the (k, c) array ``Z``."""
        out = np.empty_like(Z)
        for b, A in zip(self.batches, mats):
            out[b.rows] = A @ Z[b.rows]
        return out

    def _scatter(self, mats: list[np.ndarray]) -> np.ndarray:
        """``U' X U`` (q x q) for the block-diagonal ``X`` given per batch."""
        T2 = self.ucols.shape[1] ** 2
        w = np.concatenate([np.broadcast_to(A[None], (T2,) + A.shape).ravel() for A in mats])
        return np.bincount(self._dest_all, weights=w, minlength=self.q * self.q).reshape(
            self.q, self.q
        )

    def _scatter_sparse(self, mats: list[np.ndarray]):
        """``U' X U`` as a sparse matrix for the block-diagonal ``X`` given per batch (the
        sparsity pattern is computed once; each call only sums the entries into it)."""
        from scipy.sparse import csr_matrix

        if not hasattr(self, "_csr_pattern"):
            uniq, pos = np.unique(self._dest_all, return_inverse=True)
            r, c = uniq // self.q, uniq % self.q
            indptr = np.r_[0, np.cumsum(np.bincount(r, minlength=self.q))]
            self._csr_pattern = (pos.ravel(), c, indptr, len(uniq))
        pos, cols, indptr, nnz = self._csr_pattern
        T2 = self.ucols.shape[1] ** 2
        w = np.concatenate([np.broadcast_to(A[None], (T2,) + A.shape).ravel() for A in mats])
        return csr_matrix(
            (np.bincount(pos, weights=w, minlength=nnz), cols, indptr), shape=(self.q, self.q)
        )

    def _pullback(self, K: np.ndarray) -> list[np.ndarray]:
        """Row-space blocks of ``U K U'`` (within-block entries only)."""
        Kf = K.ravel()
        return [Kf[b.dest].sum(axis=0) for b in self.batches]

    def term_matrices(self, theta: np.ndarray, order: int = 2):
        """Per term: ``(G, dG, d2G)``; G of a factor term is the 1 x 1 matrix ``[sigma2]``."""
        out = []
        for t, sl in zip(self.terms, self.slices):
            th = theta[sl]
            if isinstance(t, FactorTerm):
                G = np.array([[th[0]]])
                dG = np.ones((1, 1, 1)) if order >= 1 else None
                d2G = np.zeros((1, 1, 1, 1)) if order >= 2 else None
                out.append((G, dG, d2G))
            else:
                out.append(t.cov.derivs(th, order))
        return out

    def _gamma(self, mats) -> np.ndarray:
        q = self.q
        Gam = np.zeros((q, q))
        for w in self.wood:
            sl = slice(w.start, w.stop)
            if w.gidx is None:
                for ti, R in w.members:
                    s2 = mats[ti][0][0, 0]
                    if R is not None:
                        Gam[sl, sl] += s2 * R
                    else:
                        Gam[sl, sl] += s2 * np.eye(w.stop - w.start)
            else:
                Gam[sl, sl] = np.r_[mats[w.io_term][0].ravel(), 0.0][w.gidx]
        return Gam

    def _dgamma(self, w: _Wood, dG: np.ndarray, term: int) -> np.ndarray:
        """Derivative of Gamma on the block ``w`` for a parameter of ``term``."""
        if w.gidx is None:
            R = dict(w.members)[term]
            val = dG[0, 0]
            return val * R if R is not None else val * np.eye(w.stop - w.start)
        return np.r_[dG.ravel(), 0.0][w.gidx]

    # ---- evaluation ------------------------------------------------------------------------
    def __call__(self, theta: np.ndarray, order: int = 2) -> Evaluation:
        """Log-likelihood at ``theta`` with its gradient (``order >= 1``) and Hessian (2)."""
        theta = np.asarray(theta, dtype=float)
        n = self.n_params
        c = self.M.shape[1]
        mats = self.term_matrices(theta, order)
        for t, (G, _, _) in zip(self.terms, mats):
            if isinstance(t, InnerOuterTerm) and t.cov.requires_psd and t.cov.m > 1:
                ev = np.linalg.eigvalsh(G)
                if ev[0] < -1e-12 * max(1.0, float(np.max(np.abs(G)))):
                    return _neg_inf(theta, n, c)
        # ---- block layer
        logdet = 0.0
        Bis = []
        for b in self.batches:
            Vb = b.S.copy()
            for ti, gi in b.gidx.items():
                Vb += np.r_[mats[ti][0].ravel(), 0.0][gi]
            try:
                L = np.linalg.cholesky(Vb)
            except np.linalg.LinAlgError:
                return _neg_inf(theta, n, c)
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
            Bi = np.linalg.inv(Vb)
            Bis.append(0.5 * (Bi + np.swapaxes(Bi, 1, 2)))
        BM = self._bapply(Bis, self.M)
        q = self.q
        if q:
            from scipy.linalg import lu_factor, lu_solve

            W = self._scatter(Bis)
            W = 0.5 * (W + W.T)
            UBM = self.U.T @ BM
            Gam = self._gamma(mats)
            A = np.eye(q) + Gam @ W
            lu, piv = lu_factor(A, check_finite=False)
            dA = np.diag(lu)
            sign = np.prod(np.sign(dA)) * (-1.0) ** int(np.sum(piv != np.arange(q)))
            if not sign > 0:
                return _neg_inf(theta, n, c)
            logdet += float(np.sum(np.log(np.abs(dA))))
            Ainv = Omega = None
            if order >= 2:
                Ainv = lu_solve((lu, piv), np.eye(q), check_finite=False)
                K = Ainv @ Gam  # A^{-1} Gamma
                Omega = W @ Ainv
            else:
                K = lu_solve((lu, piv), Gam, check_finite=False)
                if order == 1:
                    Omega = lu_solve((lu, piv), W, trans=1, check_finite=False).T  # W A^{-1}
            K = 0.5 * (K + K.T)
            t_ = K @ UBM
            C = self.M.T @ BM - UBM.T @ t_
            N = self._bapply(Bis, self.M - self.U @ t_)
        else:
            C = self.M.T @ BM
            N = BM
        C = 0.5 * (C + C.T)
        Cg = np.zeros((c, c, n))
        Ch = np.zeros((c, c, n, n))
        lg = np.zeros(n)
        lh = np.zeros((n, n))
        if order >= 1 and n:
            self._derivatives(
                theta, order, mats, Bis, N, Cg, Ch, lg, lh, (Omega, Ainv, K) if q else None
            )
        return assemble(
            theta,
            C,
            Cg,
            Ch,
            logdet,
            lg,
            lh,
            k=self.k,
            reml=self.reml,
            order=order,
            logdet_xtx=self.logdet_xtx,
        )

    def _derivatives(self, theta, order, mats, Bis, N, Cg, Ch, lg, lh, wood) -> None:
        c = self.M.shape[1]
        block_params = [i for i, pi in enumerate(self.params) if pi.term in self.block_terms]
        wood_of_term = {ti: w for w in self.wood for ti in w.terms}
        if wood is not None:
            Omega, Ainv, K = wood
            Kr = self._pullback(K)
            UN = self.U.T @ N  # = A^{-T} U' V_B^{-1} M
            Omega = 0.5 * (Omega + Omega.T)
        a: dict[int, np.ndarray] = {}
        F: dict[int, list] = {}
        E: dict[int, list] = {}
        KrF: dict[int, list] = {}
        XT: dict[int, np.ndarray] = {}  # T_i K with T_i = U' V_B^-1 D_i V_B^-1 U (sparse)
        # ---- block parameters: D_i = Z dG_i Z' within blocks
        for i in block_params:
            pi = self.params[i]
            dG = np.r_[mats[pi.term][1][pi.local].ravel(), 0.0]
            Fi, Ei, Ki = [], [], []
            tr = 0.0
            cg = np.zeros((c, c))
            ai = np.empty_like(N)
            for bi, b in enumerate(self.batches):
                D = dG[b.gidx[pi.term]]
                Fb = Bis[bi] @ D
                tr += float(np.einsum("bii->", Fb))
                Nb = N[b.rows]
                DN = D @ Nb
                ai[b.rows] = DN
                cg += np.einsum("bic,bid->cd", Nb, DN)
                if order >= 2 or wood is not None:
                    Eb = Fb @ Bis[bi]
                    Ei.append(Eb)
                    if wood is not None:
                        tr -= float(np.sum(Kr[bi] * Eb))
                        if order >= 2:
                            Ki.append(Kr[bi] @ Fb)
                Fi.append(Fb)
            lg[i] = tr
            Cg[:, :, i] = -cg
            if order >= 2:
                a[i], F[i], E[i], KrF[i] = ai, Fi, Ei, Ki
                if wood is not None:
                    XT[i] = np.asarray(self._scatter_sparse(Ei) @ K)
        # ---- Woodbury parameters: V_i = U dGamma_i U'
        OG: dict[int, np.ndarray] = {}
        dGam: dict[int, np.ndarray] = {}
        for i, pi in enumerate(self.params):
            if pi.term in self.block_terms:
                continue
            w = wood_of_term[pi.term]
            sl = slice(w.start, w.stop)
            Gi = self._dgamma(w, mats[pi.term][1][pi.local], pi.term)
            dGam[i] = Gi
            lg[i] = float(np.sum(Omega[sl, sl] * Gi))
            UNw = UN[sl]
            Cg[:, :, i] = -(UNw.T @ Gi @ UNw)
            if order >= 2:
                if w.gidx is None and dict(w.members)[pi.term] is None:
                    OG[i] = Omega[:, sl] * Gi[0, 0]  # Gi is a multiple of I
                else:
                    OG[i] = Omega[:, sl] @ Gi
                ai = np.asarray(self.U[:, sl] @ (Gi @ UNw))
                a[i] = ai
        if order < 2:
            return
        # ---- second order
        n = self.n_params

        def applyP(Z):
            BZ = self._bapply(Bis, Z)
            if wood is None:
                return BZ
            return self._bapply(Bis, Z - self.U @ (K @ (self.U.T @ BZ)))

        Pa = {i: applyP(a[i]) for i in range(n)}
        Zr: dict[int, list] = {}  # row-space blocks of A^-1 dGamma_j A^-T, Woodbury params j

        def zr(j: int) -> list:
            if j not in Zr:
                w = wood_of_term[self.params[j].term]
                Ai = Ainv[:, w.start : w.stop]
                Zr[j] = self._pullback(Ai @ dGam[j] @ Ai.T)
            return Zr[j]

        for i in range(n):
            pi = self.params[i]
            for j in range(i, n):
                pj = self.params[j]
                X = a[i].T @ Pa[j]
                chij = X + X.T
                lhij = 0.0
                same_term = pi.term == pj.term
                d2 = mats[pi.term][2][pi.local, pj.local] if same_term else np.zeros(1)
                has_d2 = bool(np.any(d2 != 0.0))
                ib, jb = pi.term in self.block_terms, pj.term in self.block_terms
                if ib and jb:
                    lhij -= sum(
                        float(np.sum(Fi * np.swapaxes(Fj, 1, 2))) for Fi, Fj in zip(F[i], F[j])
                    )
                    if wood is not None:
                        lhij += sum(
                            float(np.sum(A1 * np.swapaxes(B1, 1, 2)))
                            for A1, B1 in zip(KrF[j], E[i])
                        )
                        lhij += sum(
                            float(np.sum(A1 * np.swapaxes(B1, 1, 2)))
                            for A1, B1 in zip(KrF[i], E[j])
                        )
                        lhij -= float(np.sum(XT[i] * XT[j].T))
                    if has_d2:
                        d2e = np.r_[d2.ravel(), 0.0]
                        for bi, b in enumerate(self.batches):
                            D2 = d2e[b.gidx[pi.term]]
                            F2 = Bis[bi] @ D2
                            lhij += float(np.einsum("bii->", F2))
                            if wood is not None:
                                lhij -= float(np.sum(Kr[bi] * (F2 @ Bis[bi])))
                            Nb = N[b.rows]
                            chij -= np.einsum("bic,bij,bjd->cd", Nb, D2, Nb)
                elif not ib and not jb:
                    wi, wj = wood_of_term[pi.term], wood_of_term[pj.term]
                    si, sj = slice(wi.start, wi.stop), slice(wj.start, wj.stop)
                    lhij -= float(np.sum(OG[i][sj, :] * OG[j][si, :].T))
                    if has_d2:
                        G2 = self._dgamma(wi, d2, pi.term)
                        lhij += float(np.sum(Omega[si, si] * G2))
                        chij -= UN[si].T @ G2 @ UN[si]
                else:
                    # tr(P D_b P U dGamma_w U') = tr(T_b A^-1 dGamma_w A^-T)
                    bp, wp = (i, j) if ib else (j, i)
                    lhij -= sum(float(np.sum(Eb * Zb)) for Eb, Zb in zip(E[bp], zr(wp)))
                Ch[:, :, i, j] = Ch[:, :, j, i] = chij
                lh[i, j] = lh[j, i] = lhij
        return

    # ---- quantities at a given theta -------------------------------------------------------
    def marginal_inverse_apply(self, theta: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """``V(theta)^{-1} Z`` for a (k,) or (k, c) array, without forming ``V``."""
        theta = np.asarray(theta, dtype=float)
        Z = np.asarray(Z, dtype=float)
        vec = Z.ndim == 1
        Z2 = Z.reshape(self.k, -1)
        mats = self.term_matrices(theta, 0)
        Bis = []
        for b in self.batches:
            Vb = b.S.copy()
            for ti, gi in b.gidx.items():
                Vb += np.r_[mats[ti][0].ravel(), 0.0][gi]
            Bis.append(np.linalg.inv(Vb))
        BZ = self._bapply(Bis, Z2)
        if self.q:
            from scipy.linalg import solve

            W = self._scatter(Bis)
            Gam = self._gamma(mats)
            K = solve(np.eye(self.q) + Gam @ W, Gam)
            BZ = self._bapply(Bis, Z2 - self.U @ (K @ (self.U.T @ BZ)))
        return BZ.ravel() if vec else BZ

    def covariance_components(self) -> np.ndarray:
        """Label per row of the connected components of the non-zero pattern of the full
        marginal covariance ``V`` (sampling covariance, every term, levels linked by ``R``)."""
        groupings = [self.block_labels]
        for t in self.terms:
            if isinstance(t, FactorTerm) and t.R is not None:
                lev = _components(t.n_levels, [], np.nonzero(t.R))
                groupings.append(lev[t.codes])
            else:
                groupings.append(_term_groups(t))
        return _components(self.k, groupings)

    def marginal_blocks(
        self, theta: np.ndarray, labels: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Dense blocks ``(rows, V_c)`` of ``V(theta)`` for the groups ``labels`` (codes
        0..C-1), rows in increasing order. Entries of ``V`` between different groups are
        ignored: the caller checks that ``V`` is block-diagonal by ``labels`` (e.g. with
        :meth:`covariance_components`)."""
        theta = np.asarray(theta, dtype=float)
        labels = np.asarray(labels, dtype=np.int64)
        mats = self.term_matrices(theta, 0)
        C = int(labels.max()) + 1 if labels.size else 0
        order = np.argsort(labels, kind="stable")
        sizes = np.bincount(labels, minlength=C)
        starts = np.r_[0, np.cumsum(sizes)[:-1]]
        out: list = [None] * C
        blk = np.empty(self.k, dtype=np.int64)
        pos = np.empty(self.k, dtype=np.int64)
        S = self.S
        for n in np.unique(sizes):
            ids = np.flatnonzero(sizes == n)
            rows = order[starts[ids][:, None] + np.arange(n)[None, :]]
            nb = rows.shape[0]
            blk[rows] = np.arange(nb)[:, None]
            pos[rows] = np.arange(n)[None, :]
            Vb = np.zeros((nb, n, n))
            Vb[:, np.arange(n), np.arange(n)] = S.diag[rows]
            if S.rows.size:
                m = (sizes[labels[S.rows]] == n) & (labels[S.rows] == labels[S.cols])
                r, c = S.rows[m], S.cols[m]
                Vb[blk[r], pos[r], pos[c]] = S.vals[m]
            for t, (G, _, _) in zip(self.terms, mats):
                if isinstance(t, FactorTerm):
                    cd = t.codes[rows]
                    if t.R is not None:
                        Vb += G[0, 0] * t.R[cd[:, :, None], cd[:, None, :]]
                    else:
                        Vb += G[0, 0] * (cd[:, :, None] == cd[:, None, :])
                else:
                    o, inn = t.outer[rows], t.inner[rows]
                    Vb += G[inn[:, :, None], inn[:, None, :]] * (o[:, :, None] == o[:, None, :])
            for j, cid in enumerate(ids):
                out[int(cid)] = (rows[j], Vb[j])
        return out

    def marginal_diag(self, theta: np.ndarray) -> np.ndarray:
        """Diagonal of ``V(theta)``: sampling variance plus every term's variance per row."""
        mats = self.term_matrices(np.asarray(theta, dtype=float), 0)
        d = self.S.diag.copy()
        for t, (G, _, _) in zip(self.terms, mats):
            if isinstance(t, FactorTerm):
                d += G[0, 0] * (1.0 if t.R is None else np.diag(t.R)[t.codes])
            else:
                d += np.diag(G)[t.inner]
        return d

    def sampling_qe(self) -> tuple[float, float]:
        """``QE = y' (S^-1 - S^-1 X (X' S^-1 X)^-1 X' S^-1) y`` and ``log|S|`` (metafor's
        residual heterogeneity test uses the sampling covariance only)."""
        logdet = 0.0
        C = np.zeros((self.M.shape[1],) * 2)
        for b in self.batches:
            L = np.linalg.cholesky(b.S)
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
            C += np.einsum("bic,bid->cd", b.M, np.linalg.solve(b.S, b.M))
        p = self.p
        if p:
            beta = np.linalg.solve(C[:p, :p], C[:p, p])
            qe = float(C[p, p] - C[:p, p] @ beta)
        else:
            qe = float(C[p, p])
        return qe, logdet
