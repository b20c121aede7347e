"""Data for models with crossed terms, ``~ inner | outer`` structures, ``R`` matrices or ``V``.

:func:`prepare_structured` turns a DataFrame and a :class:`~mlmeta.spec.ModelSpec` into
:class:`StructuredData`: the arrays of :func:`mlmeta.io.prepare.prepare` (rows with a missing
``yi``, ``vi`` or moderator dropped and counted) plus the random-effects terms of
:mod:`mlmeta.core.general`, in metafor's order, and the sampling covariance. Conventions, as in
metafor's ``rma.mv``:

- ``~ 1 | a/b`` gives the terms ``a`` and ``a/b`` (levels of ``a/b`` are combinations);
  ``~ 1 | f`` with a matrix in ``R`` gets that correlation matrix, matched to the levels of
  ``f`` by name (extra rows/columns of ``R`` are ignored; metafor's ``Rscale = "cor"``);
- the inner levels of ``~ inner | outer`` are sorted as R's ``factor()`` sorts them: numbers
  numerically, text alphabetically (case-insensitively first, as R's usual collation);
- ``V`` (a known sampling covariance) is given on the rows of the data: a dense or
  ``scipy.sparse`` matrix, or a long table with 1-based ``row, col, value`` (entries not listed
  are 0; each pair in either triangle or both); rows dropped for missing values are dropped from
  ``V`` too. ``diag(V)`` replaces ``vi``;
- ``rho`` with ``rho_cluster`` builds metafor's ``vcalc(vi, cluster, obs, rho)``.

Readers for the command line and analysis files: :func:`read_V_csv` (long CSV) and
:func:`read_R_csv` (square CSV whose header row and first column hold the level names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.core.general import (
    FactorTerm,
    InnerOuterTerm,
    factor_term,
    inner_outer_term,
    nested_terms,
)
from mlmeta.core.sampling import SamplingCov
from mlmeta.errors import InputError
from mlmeta.io.prepare import ModelData, prepare, row_label

__all__ = [
    "StructuredData",
    "TermInfo",
    "needs_general",
    "prepare_structured",
    "r_sorted_levels",
    "read_R_csv",
    "read_V_csv",
    "subset_structured",
]


@dataclass(frozen=True)
class TermInfo:
    """How one core term is reported: metafor's name and, for ``~ inner | outer``, the
    inner/outer column names and the sorted inner levels."""

    kind: str  # "sigma2" or "inner_outer"
    name: str  # s.names entry ("study", "study/es") or the formula
    has_R: bool = False
    inner: str | None = None
    outer: str | None = None
    levels: tuple = ()
    struct: str | None = None


@dataclass(frozen=True)
class StructuredData(ModelData):
    """:class:`ModelData` plus the terms of a general random-effects structure.

    ``factors``/``random`` hold, per ``~ 1 | ...`` term, its level codes and name (so code that
    only asks whether there are random effects keeps working); the full description is in
    ``terms`` (core objects), ``info`` and ``S`` (the sampling covariance of the used rows).
    ``positions`` are the 0-based rows of the input data that are used.
    """

    terms: tuple = ()
    info: tuple[TermInfo, ...] = ()
    S: SamplingCov | None = None
    positions: np.ndarray | None = None
    V_given: bool = False


def needs_general(spec) -> bool:
    """True when the model needs the general engine (not one ``~ 1 | a/b`` term with vi/rho)."""
    return bool(spec.general)


def r_sorted_levels(values: pd.Series) -> list:
    """Distinct values sorted as R's ``factor()`` sorts them: numbers numerically, text
    alphabetically ignoring case first (ties: upper case after lower case, as R's collation
    in English locales)."""
    vals = values.dropna().unique().tolist()
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return sorted(vals)
    return sorted(vals, key=lambda x: (str(x).casefold(), str(x).swapcase()))


def _labels_of(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return s.to_numpy()
    return s.astype(str).to_numpy()


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
def read_V_csv(path) -> pd.DataFrame:
    """A sampling covariance in long format: CSV with columns ``row, col, value`` (1-based data
    rows; lower triangle with the diagonal, or both triangles)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"V file {str(path)!r} not found")
    try:
        d = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 -- pandas raises many types; one line
        raise InputError(
            f"V file {str(path)!r} could not be read: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    cols = [str(c).strip().lower() for c in d.columns]
    if cols != ["row", "col", "value"]:
        raise InputError(
            f"V file {str(path)!r} must have the header row,col,value; got "
            f"{','.join(str(c) for c in d.columns)}"
        )
    d.columns = ["row", "col", "value"]
    for c in ("row", "col"):
        num = pd.to_numeric(d[c], errors="coerce")
        bad = num.isna() | (num != np.round(num))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            v = d[c].iloc[i]
            raise InputError(
                f"V file {str(path)!r}, line {i + 2}: {c} must be a whole row "
                f"number; got {v.item() if hasattr(v, 'item') else v!r}"
            )
        d[c] = num.astype(np.int64)
    val = pd.to_numeric(d["value"], errors="coerce")
    if val.isna().any():
        i = int(np.flatnonzero(val.isna().to_numpy())[0])
        raise InputError(
            f"V file {str(path)!r}, line {i + 2}: value must be a number; got "
            f"{d['value'].iloc[i]!r}"
        )
    d["value"] = val.astype(float)
    return d


def read_R_csv(path, factor: str = "") -> pd.DataFrame:
    """A known correlation matrix: square CSV, header row and first column = level names."""
    p = Path(path)
    who = f"R file for {factor!r}" if factor else "R file"
    if not p.is_file():
        raise InputError(f"{who} {str(path)!r} not found")
    try:
        d = pd.read_csv(p, index_col=0, dtype={0: str})
    except Exception as exc:  # noqa: BLE001 -- pandas raises many types; one line
        raise InputError(
            f"{who} {str(path)!r} could not be read: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    d.index = [str(x) for x in d.index]
    d.columns = [str(x) for x in d.columns]
    if d.shape[0] != d.shape[1]:
        raise InputError(
            f"{who} {str(path)!r} must be square (level names in the header row "
            f"and the first column); got {d.shape[0]} rows and {d.shape[1]} "
            "columns"
        )
    if set(d.index) != set(d.columns):
        miss = sorted(set(d.columns) - set(d.index))[:1] or sorted(set(d.index) - set(d.columns))
        raise InputError(
            f"{who} {str(path)!r}: the first column and the header row must name "
            f"the same levels; {miss[0]!r} is in only one of them"
        )
    d = d.loc[list(d.columns)]
    try:
        d = d.astype(float)
    except (TypeError, ValueError):
        raise InputError(f"{who} {str(path)!r} holds a value that is not a number") from None
    return d


def _R_matrix(factor: str, R: Any) -> tuple[np.ndarray, list[str]]:
    if isinstance(R, (str, Path)):
        R = read_R_csv(R, factor)
    if isinstance(R, pd.DataFrame):
        names = [str(x) for x in R.columns]
        if [str(x) for x in R.index] != names:
            idx = [str(x) for x in R.index]
            if set(idx) != set(names):
                raise InputError(
                    f"R for {factor!r}: the index and the columns must name the same levels"
                )
            R = R.loc[[x for x in R.index if str(x) in names]]
            R.index = [str(x) for x in R.index]
            R = R.loc[names]
        return R.to_numpy(dtype=float), names
    raise InputError(
        f"R for {factor!r} must be a DataFrame whose index and columns are the "
        f"level names (or a CSV file); got {type(R).__name__}"
    )


def _row_ids(df: pd.DataFrame, positions) -> list[str]:
    """Row names for messages without the word 'row' ('7', or the index label)."""
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return [str(int(i) + 1) for i in positions]
    return [row_label(df, int(i)).removeprefix("row ") for i in positions]


def _sampling_V(V: Any, k_all: int, df: pd.DataFrame) -> SamplingCov:
    labels = _row_ids(df, range(k_all))
    if isinstance(V, (str, Path)):
        V = read_V_csv(V)
    if isinstance(V, pd.DataFrame):
        cols = [str(c).strip().lower() for c in V.columns]
        if cols[:3] != ["row", "col", "value"] or len(cols) != 3:
            raise InputError(
                "V given as a table must have the columns row, col, value (1-based "
                "data rows); give a square matrix as a numpy array"
            )
        r = V.iloc[:, 0].to_numpy()
        c = V.iloc[:, 1].to_numpy()
        return SamplingCov.from_long(
            np.asarray(r, dtype=np.int64) - 1,
            np.asarray(c, dtype=np.int64) - 1,
            V.iloc[:, 2].to_numpy(dtype=float),
            k_all,
            row_labels=labels,
        )
    import scipy.sparse as sp

    if sp.issparse(V) or isinstance(V, (np.ndarray, list)):
        shape = V.shape if hasattr(V, "shape") else np.asarray(V).shape
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InputError(f"V must be a square matrix; got shape {tuple(shape)}")
        if shape[0] != k_all:
            raise InputError(f"V is {shape[0]} x {shape[1]} but the data has {k_all} rows")
        return SamplingCov.from_matrix(V, row_labels=labels)
    raise InputError(
        f"V must be a matrix (numpy or scipy.sparse), a table with columns row, "
        f"col, value, or a CSV file; got {type(V).__name__}"
    )


# --------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------
def prepare_structured(data: pd.DataFrame | None, spec, yi=None, vi=None) -> StructuredData:
    """Validate ``data`` for a general random-effects model (see the module docstring)."""
    if data is None:
        data = pd.DataFrame()
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    yi = spec.yi if yi is None else yi
    vi = spec.vi if vi is None else vi
    df = data.reset_index(drop=True) if not isinstance(data.index, pd.RangeIndex) else data
    k_all = len(df)
    # random-effect columns: present, no missing ids (metafor refuses them on every row)
    cols = []
    for t in spec.random:
        cols += [c for c in t.columns if c not in cols]
    for c in cols:
        if c not in df.columns:
            raise InputError(
                f"random-effect column {c!r} not found in the data (columns: "
                f"{', '.join(str(x) for x in list(df.columns)[:30])})"
            )
        miss = df[c].isna().to_numpy()
        if miss.any():
            pos = int(np.flatnonzero(miss)[0])
            raise InputError(
                f"random-effect column {c!r}, {row_label(data, pos)}: missing id; "
                "every effect size needs an id in every random-effects term"
            )
    S_full = None
    if spec.V is not None:
        if spec.rho is not None:
            raise InputError(
                "give either V (a known sampling covariance) or rho (a constant "
                "sampling correlation), not both"
            )
        S_full = _sampling_V(spec.V, k_all, data)
        if not (isinstance(vi, str) and vi in df.columns):
            vi = S_full.diag.copy()
    frame_in = df.assign(_mlmeta_row=np.arange(k_all))
    md = prepare(frame_in, yi, vi, (), spec.mods)
    used = md.frame["_mlmeta_row"].to_numpy().astype(np.int64)
    sub = md.frame.reset_index(drop=True)
    if S_full is not None:
        S = S_full.subset(used)
        v = S.diag.copy()
    elif spec.rho is not None:
        cl = spec.rho_cluster
        if cl not in sub.columns:
            raise InputError(f"rho_cluster column {cl!r} not found in the data")
        if sub[cl].isna().any():
            raise InputError(f"rho_cluster column {cl!r} has missing values")
        S = SamplingCov.from_rho(
            md.v, _labels_of(sub[cl]), spec.rho, row_labels=_row_ids(data, used)
        )
        v = md.v
    else:
        S = SamplingCov.from_vi(md.v, row_labels=_row_ids(data, used))
        v = md.v
    terms, info = _terms(spec, sub)
    sig_names = tuple(i.name for i in info if i.kind == "sigma2")
    sig_codes = tuple(t.codes for t in terms if isinstance(t, FactorTerm))
    from dataclasses import fields

    base = {f.name: getattr(md, f.name) for f in fields(ModelData)}
    base.update(v=v, random=sig_names, factors=sig_codes)
    return StructuredData(
        **base,
        terms=tuple(terms),
        info=tuple(info),
        S=S,
        positions=used,
        V_given=spec.V is not None,
    )


def _terms(spec, sub: pd.DataFrame) -> tuple[list, list[TermInfo]]:
    R: Mapping[str, Any] = spec.R or {}
    used_R: set[str] = set()
    terms: list = []
    info: list[TermInfo] = []
    for t in spec.random:
        if t.nested:
            if len(t.outer) == 1:
                name = t.outer[0]
                labels = _labels_of(sub[name])
                if name in R:
                    Rm, names = _R_matrix(name, R[name])
                    terms.append(
                        factor_term(
                            np.asarray([str(x) for x in labels]), R=Rm, R_names=names, name=name
                        )
                    )
                    used_R.add(name)
                    info.append(TermInfo("sigma2", name, has_R=True))
                else:
                    terms.append(factor_term(labels, name=name))
                    info.append(TermInfo("sigma2", name))
            else:
                names = ["/".join(t.outer[: i + 1]) for i in range(len(t.outer))]
                for nm in names:
                    if nm in R:
                        raise InputError(
                            f"R: a correlation matrix is given for {nm!r}, a level "
                            "of a nested term; R applies to '~ 1 | factor' terms"
                        )
                terms += nested_terms([_labels_of(sub[c]) for c in t.outer], names)
                info += [TermInfo("sigma2", nm) for nm in names]
        else:
            inner, outer = t.inner, t.outer[0]
            levels = r_sorted_levels(sub[inner])
            term = inner_outer_term(
                sub[inner].to_numpy(),
                _labels_of(sub[outer]),
                t.struct,
                name=t.formula,
                inner_levels=levels,
            )
            terms.append(term)
            info.append(
                TermInfo(
                    "inner_outer",
                    t.formula,
                    inner=inner,
                    outer=outer,
                    levels=tuple(levels),
                    struct=t.struct,
                )
            )
    extra = sorted(set(R) - used_R)
    if extra:
        raise InputError(f"R names {extra[0]!r}, which is not a '~ 1 | {extra[0]}' term of random")
    if sum(1 for i in info if i.kind == "inner_outer") > 2:
        raise InputError(
            "at most two '~ inner | outer' terms are allowed (metafor's tau2/rho and gamma2/phi)"
        )
    return terms, info


def subset_structured(md: StructuredData, keep: np.ndarray) -> StructuredData:
    """The same model restricted to the rows where ``keep`` is True (refits); level codes are
    renumbered, the levels of ``~ inner | outer`` terms keep their order."""
    from dataclasses import replace

    from mlmeta.core.general import FactorTerm as _F

    keep = np.asarray(keep, dtype=bool)
    terms: list = []
    for t in md.terms:
        if isinstance(t, _F):
            u, c = np.unique(t.codes[keep], return_inverse=True)
            R = None if t.R is None else t.R[np.ix_(u, u)]
            terms.append(_F(c.ravel().astype(np.int64), len(u), R, t.name))
        else:
            assert isinstance(t, InnerOuterTerm)
            u, o = np.unique(t.outer[keep], return_inverse=True)
            terms.append(
                InnerOuterTerm(t.inner[keep], o.ravel().astype(np.int64), t.cov, len(u), t.name)
            )
    assert md.S is not None
    return replace(
        md,
        y=md.y[keep],
        v=md.v[keep],
        X=md.X[keep],
        factors=tuple(f[keep] for f in md.factors),
        frame=md.frame.loc[keep] if len(md.frame) == len(keep) else md.frame,
        terms=tuple(terms),
        S=md.S.subset(keep),
        positions=None if md.positions is None else md.positions[keep],
    )
