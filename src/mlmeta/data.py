"""From a DataFrame to validated model arrays: columns, missing values, random-effect levels.

Rules (each violation is an InputError naming the column, the row and the value):
- ``yi`` and ``vi`` must be numeric and finite; ``vi`` must be > 0.
- Random-effect id columns may not have missing values (an effect size that belongs to no
  study cannot be placed in the hierarchy).
- Rows with a missing ``yi``, ``vi`` or moderator are dropped, as metafor does, and counted: the
  count is kept on the result and announced with a DataWarning, never silently lost.
Rows are numbered from 1 in the order of the data (the data row, not the file line), or by the
index label when the DataFrame has a non-default index.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Sequence

import numpy as np
import pandas as pd

from mlmeta.errors import DataWarning, InputError
from mlmeta.formula import ModelFormula, parse_formula, required_variables

__all__ = ["ModelData", "prepare", "parse_random", "row_label"]


@dataclass(frozen=True)
class ModelData:
    """The rows a model is fitted to, aligned: outcome, variances, design, random factors."""

    y: np.ndarray
    v: np.ndarray
    X: np.ndarray
    coef_names: tuple[str, ...]
    formula: ModelFormula
    random: tuple[str, ...]
    factors: tuple[np.ndarray, ...]
    frame: pd.DataFrame  # the used rows of the input, with columns _yi and _vi added
    k_all: int
    dropped: tuple[str, ...]  # labels of the rows dropped for missing values

    @property
    def k(self) -> int:
        return len(self.y)


def row_label(df: pd.DataFrame, pos: int) -> str:
    """'row N' (1-based position) for a default index, else 'row <index label>'."""
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return f"row {pos + 1}"
    return f"row {idx[pos]!s}"


def parse_random(random) -> tuple[str, ...]:
    """Normalise a random-effects spec to column names, outer to inner.

    Accepts ``"study/es"``, ``"~ 1 | study/es"``, ``["study", "es"]``, ``None`` or ``"none"``
    (no random effects: the equal-effects model).
    """
    if random is None:
        return ()
    if isinstance(random, str):
        s = random.strip()
        if s.lower() in ("", "none"):
            return ()
        if "|" in s:
            lhs, s = s.split("|", 1)
            if lhs.replace("~", "").strip() not in ("1", ""):
                raise InputError(f"random={random!r}: only random intercepts '~ 1 | a/b' "
                                 "are supported")
        parts = [x.strip() for x in s.split("/")]
    else:
        parts = [str(x).strip() for x in random]
    if any(not x for x in parts):
        raise InputError(f"random={random!r}: empty level name; write e.g. 'study/es'")
    if len(set(parts)) != len(parts):
        raise InputError(f"random={random!r}: a column appears twice in the nesting")
    return tuple(parts)


def _check_column(df: pd.DataFrame, col: str, role: str) -> None:
    if col not in df.columns:
        near = get_close_matches(col, [str(c) for c in df.columns], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise InputError(f"{role} column {col!r} not found in the data (columns: "
                         f"{', '.join(map(str, df.columns))}){hint}")


def _numeric(df: pd.DataFrame, s: pd.Series, name: str) -> np.ndarray:
    """Numeric values of ``s``; non-numeric cells are an error naming the row."""
    if pd.api.types.is_bool_dtype(s):
        raise InputError(f"column {name!r} must be numeric, got true/false values")
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bool(bad.any()):
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(f"column {name!r}, {row_label(df, pos)}: value {s.iloc[pos]!r} is not "
                         "a number")
    return num.to_numpy(dtype=float, na_value=np.nan)


def prepare(
    data: pd.DataFrame | None,
    yi,
    vi,
    random=None,
    mods: str | None = None,
) -> ModelData:
    """Validate the inputs and return aligned model arrays (see the module docstring)."""
    if data is None:
        data = pd.DataFrame()
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    df = data
    if len(df.columns) and not df.columns.is_unique:
        dup = df.columns[df.columns.duplicated()][0]
        raise InputError(f"column {dup!r} appears more than once in the data")

    def column(arg, role):
        if isinstance(arg, str):
            _check_column(df, arg, role)
            return arg, df[arg]
        arr = np.asarray(arg)
        if arr.ndim != 1:
            raise InputError(f"{role} must be a column name or a 1-d array")
        if len(df.columns) and len(arr) != len(df):
            raise InputError(f"{role} has {len(arr)} values but the data has {len(df)} rows")
        return role, pd.Series(arr, index=df.index if len(df.columns) else None)

    yname, ys = column(yi, "yi")
    vname, vs = column(vi, "vi")
    if not len(df.columns):
        df = pd.DataFrame(index=ys.index)
    if len(df) == 0:
        raise InputError("the data has no rows")
    y = _numeric(df, ys, yname)
    v = _numeric(df, vs, vname)
    levels = parse_random(random)
    for c in levels:
        _check_column(df, c, "random-effect")
    modvars = required_variables(mods, list(df.columns))

    for name, arr in ((yname, y), (vname, v)):
        inf = np.isinf(arr)
        if inf.any():
            pos = int(np.flatnonzero(inf)[0])
            raise InputError(f"column {name!r}, {row_label(df, pos)}: value is infinite")
    badv = v <= 0
    if badv.any():
        pos = int(np.flatnonzero(badv)[0])
        raise InputError(f"column {vname!r}, {row_label(df, pos)}: sampling variance must be "
                         f"> 0, got {v[pos]!r}")
    for c in levels:
        miss = df[c].isna().to_numpy()
        if miss.any():
            pos = int(np.flatnonzero(miss)[0])
            raise InputError(f"random-effect column {c!r}, {row_label(df, pos)}: missing id; "
                             "every effect size needs an id at every level")
    keep = ~(np.isnan(y) | np.isnan(v))
    for c in modvars:
        keep &= df[c].notna().to_numpy()
    dropped = tuple(row_label(df, int(i)) for i in np.flatnonzero(~keep))
    if dropped:
        what = ", ".join([yname, vname] + modvars)
        warnings.warn(f"{len(dropped)} of {len(df)} rows dropped for missing values in "
                      f"{what} ({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})",
                      DataWarning, stacklevel=3)
    if not keep.any():
        raise InputError("no rows left after dropping rows with missing values")
    frame = df.loc[keep].copy() if len(df.columns) else pd.DataFrame(index=df.index[keep])
    frame["_yi"] = y[keep]
    frame["_vi"] = v[keep]
    sub = frame.reset_index(drop=True)
    X, formula = parse_formula(mods, sub)
    factors = []
    for c in levels:
        col = sub[c]
        factors.append(col.astype(str).to_numpy() if col.dtype == object or
                       pd.api.types.is_string_dtype(col) else col.to_numpy())
    return ModelData(
        y=y[keep], v=v[keep], X=X, coef_names=formula.columns, formula=formula,
        random=levels, factors=tuple(factors), frame=frame, k_all=len(df), dropped=dropped,
    )


def level_names(random: Sequence[str]) -> tuple[str, ...]:
    """metafor's factor labels per level: 'study', 'study/es', ..."""
    return tuple("/".join(random[: i + 1]) for i in range(len(random)))


def subset(md: ModelData, keep: np.ndarray) -> ModelData:
    """The same model data restricted to the rows where ``keep`` is True (for refits)."""
    keep = np.asarray(keep, dtype=bool)
    return ModelData(
        y=md.y[keep], v=md.v[keep], X=md.X[keep], coef_names=md.coef_names,
        formula=md.formula, random=md.random, factors=tuple(f[keep] for f in md.factors),
        frame=md.frame.loc[keep] if len(md.frame) == len(keep) else md.frame,
        k_all=md.k_all, dropped=md.dropped,
    )


def with_design(md: ModelData, X: np.ndarray, names: Sequence[str]) -> ModelData:
    """The same rows with another design matrix (e.g. Egger's test adds sqrt(vi))."""
    from dataclasses import replace

    form = replace(md.formula, columns=tuple(names))
    return replace(md, X=np.asarray(X, dtype=float), coef_names=tuple(names), formula=form)
