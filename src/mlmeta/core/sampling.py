"""Known sampling covariance matrices: diagonal, dense, sparse, long format, constant rho.

The sampling covariance ``S`` of the ``k`` effect sizes is kept as its diagonal plus the list of
its non-zero off-diagonal entries (both triangles), so a model never needs a ``k x k`` array:
the likelihood works on the connected components of the non-zero pattern (blocks), which are
small when correlated effect sizes come in small clusters.

Ways to give ``S`` (all validated here, with one-line messages naming the row and column):

- ``vi`` only: ``S = diag(vi)``;
- a dense or ``scipy.sparse`` ``k x k`` matrix (must be symmetric);
- long format ``(row, col, value)`` with 0-based positions; each pair given once (either
  triangle) or twice with the same value;
- metafor's ``vcalc(vi, cluster, obs, rho)``: ``S[i, j] = rho sqrt(vi_i vi_j)`` for ``i != j`` in
  the same cluster (the "correlated and hierarchical effects" working model).

Positive definiteness is checked block by block when a model is built
(:func:`check_positive_definite`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlmeta.errors import InputError

__all__ = ["SamplingCov", "check_positive_definite"]


def _label(row_labels, i: int) -> str:
    return str(row_labels[i]) if row_labels is not None else str(i + 1)


@dataclass(frozen=True)
class SamplingCov:
    """Sparse symmetric sampling covariance: ``diag`` plus off-diagonal triplets (both halves).

    Attributes
    ----------
    diag : (k,) sampling variances.
    rows, cols, vals : off-diagonal non-zeros, each unordered pair stored as (i, j) and (j, i).
    row_labels : how rows are named in messages (default: 1-based positions).
    """

    diag: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    row_labels: tuple | None = None

    @property
    def k(self) -> int:
        return len(self.diag)

    @property
    def is_diagonal(self) -> bool:
        return self.rows.size == 0

    # ---- constructors ----------------------------------------------------------------------
    @classmethod
    def from_vi(cls, vi, row_labels=None) -> SamplingCov:
        """``S = diag(vi)``."""
        d = np.asarray(vi, dtype=float).ravel()
        _check_diag(d, row_labels)
        e = np.zeros(0, dtype=np.int64)
        return cls(d, e, e, np.zeros(0), _labels(row_labels))

    @classmethod
    def from_rho(cls, vi, cluster, rho: float, row_labels=None) -> SamplingCov:
        """metafor's ``vcalc(vi, cluster, obs = 1:k, rho)``: constant correlation ``rho``
        between the sampling errors of rows in the same cluster."""
        d = np.asarray(vi, dtype=float).ravel()
        _check_diag(d, row_labels)
        r = float(rho)
        if not np.isfinite(r) or not (-1.0 < r < 1.0):
            raise InputError(f"rho must be strictly between -1 and 1; got {rho!r}")
        _, c = np.unique(np.asarray(cluster), return_inverse=True)
        c = c.ravel()
        if len(c) != len(d):
            raise InputError(f"rho_cluster has {len(c)} values but there are {len(d)} rows")
        order = np.argsort(c, kind="stable")
        cs = c[order]
        starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
        sizes = np.diff(np.r_[starts, len(cs)])
        ri, ci = [], []
        for n in np.unique(sizes):
            if n < 2 or r == 0.0:
                continue
            st = starts[sizes == n]
            idx = order[st[:, None] + np.arange(n)[None, :]]  # (m, n)
            a = np.repeat(idx, n, axis=1).ravel()
            b = np.tile(idx, (1, n)).ravel()
            keep = a != b
            ri.append(a[keep])
            ci.append(b[keep])
        rows = np.concatenate(ri) if ri else np.zeros(0, dtype=np.int64)
        cols = np.concatenate(ci) if ci else np.zeros(0, dtype=np.int64)
        vals = r * np.sqrt(d[rows] * d[cols])
        return cls(d, rows.astype(np.int64), cols.astype(np.int64), vals, _labels(row_labels))

    @classmethod
    def from_matrix(cls, V, row_labels=None, name: str = "V") -> SamplingCov:
        """From a dense array or a ``scipy.sparse`` matrix (must be square and symmetric)."""
        import scipy.sparse as sp

        if sp.issparse(V):
            A: Any = sp.coo_matrix(V)  # type: ignore[call-overload]
            n0, n1 = A.shape
            if n0 != n1:
                raise InputError(f"{name} must be a square matrix; got {n0} x {n1}")
            r, c, v = A.row.astype(np.int64), A.col.astype(np.int64), A.data.astype(float)
            return cls.from_long(r, c, v, n0, row_labels=row_labels, name=name, symmetric=True)
        A = np.asarray(V, dtype=float)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise InputError(f"{name} must be a square matrix; got shape {A.shape}")
        r, c = np.nonzero(A)
        return cls.from_long(
            r, c, A[r, c], A.shape[0], row_labels=row_labels, name=name, symmetric=True
        )

    @classmethod
    def from_long(
        cls, rows, cols, vals, k: int, row_labels=None, name: str = "V", symmetric: bool = False
    ) -> SamplingCov:
        """From 0-based ``(row, col, value)`` triplets of a ``k x k`` matrix.

        Each unordered pair may be given once (in either triangle) or in both triangles with
        the same value; entries not given are 0; every diagonal entry must be given and > 0.
        With ``symmetric=True`` (a full matrix was given) both triangles must be present.
        """
        r = np.asarray(rows).astype(np.int64).ravel()
        c = np.asarray(cols).astype(np.int64).ravel()
        v = np.asarray(vals, dtype=float).ravel()
        labels = _labels(row_labels)
        for arr, what in ((r, "row"), (c, "col")):
            bad = np.flatnonzero((arr < 0) | (arr >= k))
            if bad.size:
                raise InputError(
                    f"{name}: {what} index {arr[bad[0]] + 1} is outside the data rows 1..{k}"
                )
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            i = bad[0]
            raise InputError(
                f"{name}: entry (row {_label(labels, r[i])}, col "
                f"{_label(labels, c[i])}) is not a finite number; got {float(v[i])!r}"
            )
        dg = r == c
        d = np.zeros(k)
        seen = np.bincount(r[dg], minlength=k)
        twice = np.flatnonzero(seen > 1)
        if twice.size:
            i = twice[0]
            raise InputError(
                f"{name}: entry (row {_label(labels, i)}, col {_label(labels, i)}) "
                "is given more than once"
            )
        missing = np.flatnonzero(seen == 0)
        if missing.size:
            i = missing[0]
            raise InputError(
                f"{name}: the sampling variance of row {_label(labels, i)} "
                f"(diagonal entry) is missing; every row needs one > 0"
            )
        d[r[dg]] = v[dg]
        _check_diag(d, labels, name)
        ro, co, vo = r[~dg], c[~dg], v[~dg]
        lo, hi = np.minimum(ro, co), np.maximum(ro, co)
        order = np.lexsort((ro < co, hi, lo))  # per pair: the lower-triangle entry first
        ro, co, vo, lo, hi = ro[order], co[order], vo[order], lo[order], hi[order]
        key = lo * k + hi
        start = np.r_[True, key[1:] != key[:-1]][: len(key)]
        gid = np.cumsum(start) - 1
        count = np.bincount(gid)
        first = np.flatnonzero(start)

        def where(i: int) -> str:
            return f"(row {_label(labels, ro[i])}, col {_label(labels, co[i])})"

        bad = np.flatnonzero(count > 2)
        if bad.size:
            raise InputError(f"{name}: entry {where(first[bad[0]])} is given more than once")
        pair = np.flatnonzero(count == 2)
        i1, i2 = first[pair], first[pair] + 1
        same_side = (ro[i1] > co[i1]) == (ro[i2] > co[i2])
        if same_side.any():
            raise InputError(f"{name}: entry {where(i1[same_side][0])} is given more than once")
        tol = 1e-10 * np.maximum(np.abs(vo[i1]), np.abs(vo[i2]))
        asym = np.flatnonzero(np.abs(vo[i1] - vo[i2]) > tol)
        if asym.size:
            j1, j2 = i1[asym[0]], i2[asym[0]]
            raise InputError(
                f"{name} must be symmetric: entry {where(j1)} is {float(vo[j1])!r} but "
                f"{where(j2)} is {float(vo[j2])!r}"
            )
        single = first[count == 1]
        if symmetric and single.size:
            j = single[0]
            raise InputError(
                f"{name} must be symmetric: entry {where(j)} is {float(vo[j])!r} but (row "
                f"{_label(labels, co[j])}, col {_label(labels, ro[j])}) is 0"
            )
        keep = first[vo[first] != 0.0]
        ro, co, vo = ro[keep], co[keep], vo[keep]
        return cls(d, np.r_[ro, co], np.r_[co, ro], np.r_[vo, vo], labels)

    # ---- helpers ---------------------------------------------------------------------------
    def block(self, idx: np.ndarray) -> np.ndarray:
        """Dense sub-matrix on rows ``idx`` (entries to rows outside ``idx`` are ignored)."""
        idx = np.asarray(idx)
        loc = {int(i): j for j, i in enumerate(idx)}
        out = np.diag(self.diag[idx])
        if self.rows.size:
            m = np.isin(self.rows, idx) & np.isin(self.cols, idx)
            for a, b, v in zip(self.rows[m], self.cols[m], self.vals[m]):
                out[loc[int(a)], loc[int(b)]] = v
        return out

    def subset(self, keep: np.ndarray) -> SamplingCov:
        """The covariance of the rows ``keep`` (boolean mask or positions), renumbered."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        new = np.full(self.k, -1)
        new[keep] = np.arange(len(keep))
        m = (new[self.rows] >= 0) & (new[self.cols] >= 0)
        labels = (
            tuple(self.row_labels[i] for i in keep)
            if self.row_labels is not None
            else tuple(int(i) + 1 for i in keep)
        )
        return SamplingCov(
            self.diag[keep].copy(),
            new[self.rows[m]],
            new[self.cols[m]],
            self.vals[m].copy(),
            labels,
        )

    def quad(self, x: np.ndarray) -> np.ndarray:
        """``S @ x`` for a (k,) or (k, c) array."""
        x = np.asarray(x, dtype=float)
        out = self.diag.reshape((-1,) + (1,) * (x.ndim - 1)) * x
        if self.rows.size:
            np.add.at(out, self.rows, self.vals.reshape((-1,) + (1,) * (x.ndim - 1)) * x[self.cols])
        return out


def _labels(row_labels):
    return None if row_labels is None else tuple(row_labels)


def _check_diag(d: np.ndarray, row_labels, name: str = "vi") -> None:
    bad = np.flatnonzero(~np.isfinite(d) | (d <= 0))
    if bad.size:
        i = bad[0]
        raise InputError(
            f"{name}: the sampling variance of row {_label(row_labels, i)} must be "
            f"> 0; got {float(d[i])!r}"
        )


def check_positive_definite(S: SamplingCov, blocks: list[np.ndarray], name: str = "V") -> None:
    """Raise InputError naming the first rows of a block of ``S`` that is not positive
    definite (a Cholesky factorisation fails)."""
    for idx in blocks:
        if len(idx) < 2:
            continue
        B = S.block(idx)
        try:
            np.linalg.cholesky(B)
        except np.linalg.LinAlgError:
            # name the smallest leading sub-block that fails
            for n in range(2, len(idx) + 1):
                try:
                    np.linalg.cholesky(B[:n, :n])
                except np.linalg.LinAlgError:
                    rows = ", ".join(_label(S.row_labels, int(i)) for i in idx[:n][-2:])
                    raise InputError(
                        f"{name} is not positive definite: the block of rows "
                        f"{_label(S.row_labels, int(idx[0]))}..{_label(S.row_labels, int(idx[n - 1]))}"
                        f" fails (check the covariance of rows {rows})"
                    ) from None
