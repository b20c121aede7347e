"""From a DataFrame to validated model arrays: columns, missing values, random-effect levels.

Rules (each violation is an InputError naming the column, the row and the value):
- ``yi`` and ``vi`` must be numeric and finite; ``vi`` must be > 0.
- Random-effect id columns may not have missing values (an effect size that belongs to no
  study cannot be placed in the hierarchy).
- Rows with a missing ``yi``, ``vi`` or moderator are dropped, as metafor does, and counted: the
  count is kept on the result and announced with a DataWarning, never silently lost. If no
  row is left, that is an error.
- Redundant moderator columns are dropped, as metafor's ``rma.mv`` drops them ("Redundant
  predictors dropped from the model."), with a DataWarning naming each one and why: a column
  that is 0 in every row, a constant next to the intercept, a column perfectly collinear with
  earlier ones (e.g. the interaction of an empty cell in ``~ a * b``). Which columns go is
  decided as R's ``lm()`` decides (see :func:`redundant_columns`), so the coefficients are
  metafor's. Refused: a formula all of whose columns are redundant, moderators whose scales
  differ too much to be estimated together, and fewer rows than coefficients (there must be
  more rows than coefficients).
- A categorical moderator level without rows (an unused pandas category, or a level whose rows
  were all dropped for missing values) gets no coefficient; a DataWarning says so.

Notes (DataWarning, the fit goes ahead, as in metafor):
- a random-effect level with a single group (e.g. one study): its variance component is not
  identified;
- with two or more random-effect levels, rows that share every id with an earlier row (two
  outcomes coded with the same effect-size id): the count and the first such rows. Only when
  at most 20% of the innermost groups have more than one row (:data:`SHARED_ID_SHARE`), i.e.
  when the innermost level looks like an effect-size id; an innermost level that groups
  several rows on purpose (e.g. ``district/school`` with several effect sizes per school) is
  a valid model, not a mistake. (The fit's diagnostics note repeated ids in every case.)

Checks run before any warning is issued, so a refused input produces exactly one message.
Rows are numbered from 1 in the order of the data (the data row, not the file line), or by the
index label when the DataFrame has a non-default index.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import TYPE_CHECKING

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.errors import DataWarning, InputError
from mlmeta.io.formula import ModelFormula, formula_variables, parse_formula

__all__ = ["ALIAS_TOL", "SHARED_ID_SHARE", "ModelData", "prepare", "redundant_columns", "row_label"]

#: relative tolerance of R's ``lm()`` QR decomposition (``qr(tol = 1e-07)``), below which a
#: column counts as a linear combination of the columns before it
ALIAS_TOL = 1e-7

#: rows sharing every random-effect id are flagged when at most this share of the innermost
#: groups has more than one row (the innermost level then looks like an effect-size id)
SHARED_ID_SHARE = 0.2


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


def id_codes(values) -> tuple[np.ndarray, list]:
    """Integer codes 0..n-1 and the sorted distinct labels of an id column (study, cluster).

    The one coding of ids used for clusters of correlated sampling errors, robust inference
    and leave-one-out: labels are compared as they are stored (numbers as numbers, text as
    text, so the text ids "01" and "1" are two clusters); text and mixed columns are compared
    as text.
    """
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind in "USO":
        arr = arr.astype(str)
    uniq, codes = np.unique(arr, return_inverse=True)
    return codes.ravel(), [u.item() if hasattr(u, "item") else u for u in uniq]


def row_label(df: pd.DataFrame, pos: int) -> str:
    """'row N' (1-based position) for a default index, else 'row <index label>'."""
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return f"row {pos + 1}"
    return f"row {idx[pos]!s}"


def _nesting(random) -> tuple[str, ...]:
    """The nesting (outer to inner) of a single ``~ 1 | a/b`` term, parsed by
    :func:`mlmeta.spec.parse_random`; a tuple of names is taken as it is."""
    if isinstance(random, tuple) and all(isinstance(x, str) for x in random):
        return random
    from mlmeta.spec import parse_random

    terms = parse_random(random)
    if not terms:
        return ()
    if len(terms) > 1 or not terms[0].nested:
        raise InputError(f"random={random!r}: prepare() takes one '~ 1 | a/b' term")
    return terms[0].outer


def _check_column(df: pd.DataFrame, col: str, role: str) -> None:
    if not isinstance(col, str):
        raise InputError(f"{role} must be a column name or a 1-d array, got {col!r}")
    if col not in df.columns:
        names = [str(c) for c in df.columns]
        near = get_close_matches(col, names, n=1)
        if not near:
            near = [c for c in names if c.lower() == col.lower().strip()][:1]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        from mlmeta.io.read import lookalike_hint

        hint = lookalike_hint(col, names) or hint
        shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        raise InputError(f"{role} column {col!r} not found in the data (columns: {shown}){hint}")


_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


#: sampling variances and |effect sizes| mlmeta fits: beyond them the likelihood's derivatives
#: over- or underflow in double precision (vi = 5e-324 gives Q = nan; yi ~ 1e150 stopped the
#: optimiser at its start values). Inside them a rescaled data set gives the same fit.
V_RANGE = (1e-60, 1e60)
Y_MAX = 1e30


def _check_range(df: pd.DataFrame, y, v, yname: str, vname: str) -> None:
    with np.errstate(invalid="ignore"):
        bad_v = (v < V_RANGE[0]) | (v > V_RANGE[1])
        bad_y = np.abs(y) > Y_MAX
    if not (bad_v.any() or bad_y.any()):
        return
    med_v, med_y = float(np.nanmedian(v)), float(np.nanmedian(np.abs(y)))
    typical = not (V_RANGE[0] <= med_v <= V_RANGE[1] and med_y <= Y_MAX)  # the whole scale
    c = float(np.sqrt(med_v)) if bad_v.any() else med_y
    fix = (
        f"; rescale the data (e.g. divide {yname} by {c:.3g} and {vname} by {c * c:.3g})"
        if typical and np.isfinite(c) and c > 0 and np.isfinite(c * c)
        else "; check this value"
    )
    if bad_v.any():
        pos = int(np.flatnonzero(bad_v)[0])
        raise InputError(
            f"column {vname!r}, {row_label(df, pos)}: sampling variance "
            f"{_fmt(v[pos])} is outside the range that can be fitted in double "
            f"precision ({_fmt(V_RANGE[0])} to {_fmt(V_RANGE[1])}){fix}"
        )
    pos = int(np.flatnonzero(bad_y)[0])
    raise InputError(
        f"column {yname!r}, {row_label(df, pos)}: effect size {_fmt(y[pos])} is "
        f"outside the range that can be fitted in double precision (|{yname}| <= "
        f"{_fmt(Y_MAX)}){fix}"
    )


def _numeric(df: pd.DataFrame, s: pd.Series, name: str) -> np.ndarray:
    """Numeric values of ``s``; non-numeric cells are an error naming the row."""
    if pd.api.types.is_bool_dtype(s.dtype):
        raise InputError(f"column {name!r} must be numeric, got true/false values")
    if pd.api.types.is_complex_dtype(s.dtype) or (
        s.dtype == object and any(isinstance(x, complex) for x in s)
    ):
        raise InputError(f"column {name!r} must hold real numbers, got complex values")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype=float, na_value=np.nan)
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & s.notna()
    if bool(bad.any()):
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        val = s.iloc[pos]
        hint = ""
        if isinstance(val, str) and _DECIMAL_COMMA.match(val):
            hint = " (a decimal comma? write 0.35, or use ';' as the delimiter)"
        elif isinstance(val, (bool, np.bool_)):
            val = bool(val)
        raise InputError(
            f"column {name!r}, {row_label(df, pos)}: value must be numeric, got {val!r}{hint}"
        )
    return num.to_numpy(dtype=float, na_value=np.nan)


def _fmt(x) -> str:
    """A value for a message: ``-0.1``, ``0.0``, ``inf``, ``'S1'``, ``3``."""
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    if isinstance(x, np.generic):
        return repr(x.item())
    return repr(x)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class _Labels:
    """Row names ('row 7') of selected rows of ``df``, computed on demand."""

    def __init__(self, df: pd.DataFrame, positions: np.ndarray):
        self.df, self.positions = df, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> str:
        return row_label(self.df, int(self.positions[i]))


def redundant_columns(X: np.ndarray, tol: float = ALIAS_TOL) -> list[int]:
    """Positions of the columns of ``X`` that R's ``lm()`` finds aliased (coefficient NA).

    metafor's ``rma.mv`` fits ``lm(yi ~ X - 1)`` and drops the columns whose coefficient is NA.
    ``lm`` uses LINPACK's ``dqrdc2``, a Householder QR with limited column pivoting: going left
    to right, a column whose norm after removing its projection on the columns kept so far is
    below ``tol`` times its own norm (1 for a column of zeros) is moved to the end, i.e.
    dropped. The same rule by Gram-Schmidt (twice, for accuracy), O(k p^2), never k x k.
    """
    k, p = X.shape
    Q = np.zeros((k, 0))
    out = []
    for j in range(p):
        x = np.asarray(X[:, j], dtype=float)
        norm = float(np.linalg.norm(x))
        r = x - Q @ (Q.T @ x)
        r = r - Q @ (Q.T @ r)
        rn = float(np.linalg.norm(r))
        if rn < tol * (norm if norm > 0 else 1.0):
            out.append(j)
        else:
            Q = np.column_stack([Q, r / rn])
    return out


def _drop_redundant(
    X: np.ndarray, names: Sequence[str], formula: ModelFormula, has_int: bool
) -> tuple[np.ndarray, ModelFormula, str | None]:
    """Drop the columns metafor drops; returns (X, formula, the warning text or None)."""
    from dataclasses import replace

    text = formula.text
    drop = redundant_columns(X)
    if not drop:
        return X, formula, None
    p = X.shape[1]
    if len(drop) == p:
        j = drop[0]
        raise InputError(
            f"moderator formula {text!r}: coefficient {names[j]!r} is 0 in every "
            "row, so it cannot be estimated"
        )
    keep = [j for j in range(p) if j not in drop]
    why = []
    for j in drop:
        col = X[:, j]
        if not np.any(col):
            why.append(f"{names[j]!r} (0 in every row)")
            continue
        if np.ptp(col) == 0 and has_int:
            why.append(
                f"{names[j]!r} (constant, {col[0]:g} in every row, so it is the intercept again)"
            )
            continue
        before = [i for i in keep if i < j]
        b = np.linalg.lstsq(X[:, before], col, rcond=None)[0]
        scale = max(float(np.max(np.abs(b))), 1e-300)
        with_ = [repr(names[i]) for i, bi in zip(before, b) if abs(bi) > 1e-8 * scale]
        shown = ", ".join(with_[:6]) + (f" and {len(with_) - 6} more" if len(with_) > 6 else "")
        why.append(f"{names[j]!r} (collinear with {shown})")
    msg = (
        f"moderator formula {text!r}: redundant predictors dropped from the model, as metafor "
        f"does: {'; '.join(why[:8])}{'; ...' if len(why) > 8 else ''}"
    )
    kept_names = tuple(names[j] for j in keep)
    old_keep = formula.keep
    keep_in_mm = tuple(keep) if old_keep is None else tuple(old_keep[j] for j in keep)
    form = replace(
        formula,
        columns=kept_names,
        keep=keep_in_mm,
        dropped=formula.dropped + tuple(names[j] for j in drop),
    )
    return X[:, keep], form, msg


def _check_design(X: np.ndarray, names: Sequence[str], formula: ModelFormula) -> None:
    """Refuse moderators whose scales differ too much to be estimated together (the design
    has full rank once redundant columns are dropped)."""
    p = X.shape[1]
    if p == 0:
        return
    text = formula.text
    norm = np.max(np.abs(X), axis=0)
    sign, _ = np.linalg.slogdet(X.T @ X)
    if sign <= 0 or np.linalg.matrix_rank(X) < p:
        j = int(np.argmax(norm))
        raise InputError(
            f"moderator formula {text!r}: coefficient {names[j]!r} reaches "
            f"{norm[j]:.3g}, so the moderators differ too much in scale to be "
            "estimated together; rescale it (e.g. scale() or divide by a "
            "constant)"
        )


def _text_numbers(df: pd.DataFrame, c: str, factored) -> list[str]:
    """A text moderator column that is almost all numbers: a typo would silently turn a
    continuous moderator into a categorical one. Refused when some values are numbers and
    others not (naming the first), noted when every value is a number stored as text."""
    s = df[c]
    if (
        c in factored
        or pd.api.types.is_numeric_dtype(s.dtype)
        or pd.api.types.is_bool_dtype(s.dtype)
        or isinstance(s.dtype, pd.CategoricalDtype)
    ):
        return []
    vals = s.dropna()
    if not len(vals):
        return []
    num = pd.to_numeric(vals.astype(str).str.strip(), errors="coerce")
    ok = num.notna().to_numpy()
    if ok.all():
        return [
            (
                f"moderator {c!r} holds numbers stored as text; it is treated as categorical "
                f"({vals.nunique()} levels); convert it to numbers for a continuous moderator, "
                f"or write factor({c}) to keep it categorical"
            )
        ]
    if ok.mean() >= 0.5:
        pos = int(np.flatnonzero(s.notna().to_numpy())[np.flatnonzero(~ok)[0]])
        raise InputError(
            f"moderator {c!r}, {row_label(df, pos)}: value {s.iloc[pos]!r} is not "
            f"a number, but most values of {c!r} are, so {c!r} would be treated "
            f"as categorical; fix the value, or write factor({c}) if it is "
            "categorical"
        )
    return []


def prepare(
    data: pd.DataFrame | None,
    yi,
    vi,
    random=None,
    mods: str | None = None,
) -> ModelData:
    """Validate the inputs and return aligned model arrays (see the module docstring).

    Problems that make a fit impossible raise InputError/FormulaError before any warning is
    issued; the DataWarnings (dropped rows, levels left without rows, shared ids, a
    random-effect level with one group) are issued together once the data passed every check.
    """
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
        if arg is None:
            raise InputError(f"{role} must be a column name or a 1-d array, got None")
        arr = np.asarray(arg)
        if arr.ndim != 1:
            raise InputError(
                f"{role} must be a column name or a 1-d array, got an array of shape {arr.shape}"
            )
        if len(df.columns) and len(arr) != len(df):
            raise InputError(f"{role} has {len(arr)} values but the data has {len(df)} rows")
        return role, pd.Series(arr, index=df.index if len(df.columns) else None)

    yname, ys = column(yi, "yi")
    vname, vs = column(vi, "vi")
    if not len(df.columns):
        df = pd.DataFrame(index=ys.index)
    if len(df) == 0:
        raise InputError("the data has no rows")
    levels = _nesting(random)
    for c in levels:
        _check_column(df, c, "random-effect")
    modvars, factored = formula_variables(mods, list(df.columns))
    y = _numeric(df, ys, yname)
    v = _numeric(df, vs, vname)

    for name, arr in ((yname, y), (vname, v)):
        inf = np.isinf(arr)
        if inf.any():
            pos = int(np.flatnonzero(inf)[0])
            raise InputError(
                f"column {name!r}, {row_label(df, pos)}: value must be finite, got {_fmt(arr[pos])}"
            )
    badv = v <= 0
    if badv.any():
        pos = int(np.flatnonzero(badv)[0])
        raise InputError(
            f"column {vname!r}, {row_label(df, pos)}: sampling variance must be "
            f"> 0, got {_fmt(v[pos])}"
        )
    _check_range(df, y, v, yname, vname)
    for c in levels:
        miss = df[c].isna().to_numpy()
        if miss.any():
            pos = int(np.flatnonzero(miss)[0])
            raise InputError(
                f"random-effect column {c!r}, {row_label(df, pos)}: missing id; "
                "every effect size needs an id at every level"
            )

    notes: list[str] = []
    for c in modvars:
        notes += _text_numbers(df, c, factored)

    # rows with missing values: dropped (as metafor does), counted and announced
    miss_cols = [(yname, np.isnan(y)), (vname, np.isnan(v))]
    miss_cols += [(c, df[c].isna().to_numpy()) for c in modvars]
    missing = np.zeros(len(df), dtype=bool)
    for _, m in miss_cols:
        missing |= m
    keep = ~missing
    dropped = tuple(row_label(df, int(i)) for i in np.flatnonzero(missing))
    if dropped:
        shown = []
        for i in np.flatnonzero(missing)[:5]:
            what = ", ".join(c for c, m in miss_cols if m[i])
            shown.append(f"{row_label(df, int(i))} ({what})")
        more = ", ..." if len(dropped) > 5 else ""
        notes.append(
            f"{len(dropped)} of {len(df)} rows dropped for missing values: {', '.join(shown)}{more}"
        )
    if not keep.any():
        counts = ", ".join(f"{c} in {int(m.sum())}" for c, m in miss_cols if m.any())
        raise InputError(
            f"no rows left after dropping rows with missing values: all "
            f"{len(df)} rows have one (missing {counts})"
        )

    frame = df.loc[keep].copy() if len(df.columns) else pd.DataFrame(index=df.index[keep])
    frame["_yi"] = y[keep]
    frame["_vi"] = v[keep]
    sub = frame.reset_index(drop=True)
    labels = _Labels(df, np.flatnonzero(keep))  # names of the kept rows, for messages

    # categorical moderator levels without rows: left out of the model, announced
    for c in modvars:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            sub[c] = sub[c].cat.remove_unused_categories()
            gone = [x for x in col.cat.categories if x not in set(sub[c].cat.categories)]
        elif c in factored or not (
            pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)
        ):
            if not dropped:
                continue
            gone = sorted(set(col.dropna().unique()) - set(sub[c].unique()), key=str)
        else:
            continue
        if gone:
            lv = ", ".join(_fmt(x) for x in gone[:5]) + (", ..." if len(gone) > 5 else "")
            why = " (its rows were dropped for missing values)" if dropped else ""
            notes.append(
                f"moderator {c!r}: level{'s' if len(gone) > 1 else ''} {lv} "
                f"{'have' if len(gone) > 1 else 'has'} no rows{why}, so "
                f"{'they get' if len(gone) > 1 else 'it gets'} no coefficient"
            )

    # a categorical moderator with a single level in the rows used adds no coefficient: said,
    # and never replaced by a test of the intercept (see the check after the design below)
    single = {}
    for c in modvars:
        col = sub[c]
        if (
            c in factored
            or isinstance(col.dtype, pd.CategoricalDtype)
            or not (
                pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)
            )
        ) and col.nunique() == 1:
            single[c] = col.dropna().iloc[0]

    X, formula = parse_formula(mods, sub, rows=labels)
    k, p = X.shape
    if k <= p:
        names = ", ".join(formula.columns[:8]) + (", ..." if p > 8 else "")
        raise InputError(
            f"{_plural(k, 'effect size')} {'is' if k == 1 else 'are'} too few to "
            f"estimate {_plural(p, 'coefficient')} ({names}); more rows than "
            "coefficients are needed"
        )
    X, formula, redundant = _drop_redundant(X, formula.columns, formula, formula.has_intercept)
    _check_design(X, formula.columns, formula)
    if redundant:
        notes.append(redundant)
    for c, val in single.items():
        text = (
            f"moderator {c!r} has a single level ({_fmt(val)}) in the {len(sub)} rows used, "
            "so it cannot be tested"
        )
        if formula.has_intercept and X.shape[1] == 1:
            raise InputError(
                f"{text}; the model would have no moderator left and its omnibus "
                "test would test the intercept instead; remove it from the formula"
            )
        notes.append(f"{text}: it adds no coefficient and is not part of the moderator test")
    if modvars and formula.has_intercept and X.shape[1] == 1:
        raise InputError(
            f"moderator formula {mods!r} leaves no moderator once constant or "
            "redundant columns are dropped, so there is nothing to test (the "
            "omnibus test would test the intercept); remove the moderator"
        )
    factors = []
    for c in levels:
        col = sub[c]
        factors.append(
            col.astype(str).to_numpy()
            if col.dtype == object or pd.api.types.is_string_dtype(col)
            else col.to_numpy()
        )

    # random-effect structure: a level with a single group; rows sharing every id
    if levels and sub[levels[0]].nunique() == 1:
        c = levels[0]
        notes.append(
            f"random-effect level {c!r} has a single group ({_fmt(sub[c].iloc[0])}), "
            "so its variance component is not identified (it is fitted, as metafor "
            "does, but do not interpret it)"
        )
    if len(levels) >= 2:
        # flagged when the innermost level looks like an effect-size id (at least 80% of its
        # ids label a single row) yet some rows repeat an id; an innermost level that groups
        # rows on purpose (e.g. district/school with several effect sizes per school) is a
        # valid model and is not flagged
        repeat = sub.duplicated(subset=list(levels), keep="first").to_numpy()
        if repeat.any():
            codes = sub.groupby(list(levels), sort=False, dropna=False).ngroup().to_numpy()
            _, first_pos, sizes = np.unique(codes, return_index=True, return_counts=True)
        if repeat.any() and np.mean(sizes > 1) <= SHARED_ID_SHARE:
            pairs = []
            for i in np.flatnonzero(repeat)[:3]:
                j = int(first_pos[codes[i]])
                ids = ", ".join(f"{c}={_fmt(sub[c].iloc[i])}" for c in levels)
                pairs.append(f"{labels[i]} repeats {labels[j]} ({ids})")
            n = int(repeat.sum())
            notes.append(
                f"{_plural(n, 'row')} share{'s' if n == 1 else ''} every random-effect "
                f"id ({'/'.join(levels)}) with an earlier row: "
                f"{'; '.join(pairs)}{'; ...' if n > 3 else ''}; metafor accepts this, "
                f"but a repeated {levels[-1]!r} id is usually a coding mistake"
            )

    for msg in notes:
        warnings.warn(msg, DataWarning, stacklevel=3)
    return ModelData(
        y=y[keep],
        v=v[keep],
        X=X,
        coef_names=formula.columns,
        formula=formula,
        random=levels,
        factors=tuple(factors),
        frame=frame,
        k_all=len(df),
        dropped=dropped,
    )


def level_names(random: Sequence[str]) -> tuple[str, ...]:
    """metafor's factor labels per level: 'study', 'study/es', ..."""
    return tuple("/".join(random[: i + 1]) for i in range(len(random)))


def subset(md: ModelData, keep: np.ndarray) -> ModelData:
    """The same model data restricted to the rows where ``keep`` is True (for refits)."""
    keep = np.asarray(keep, dtype=bool)
    return ModelData(
        y=md.y[keep],
        v=md.v[keep],
        X=md.X[keep],
        coef_names=md.coef_names,
        formula=md.formula,
        random=md.random,
        factors=tuple(f[keep] for f in md.factors),
        frame=md.frame.loc[keep] if len(md.frame) == len(keep) else md.frame,
        k_all=md.k_all,
        dropped=md.dropped,
    )


def with_design(md: ModelData, X: np.ndarray, names: Sequence[str]) -> ModelData:
    """The same rows with another design matrix (e.g. Egger's test adds sqrt(vi))."""
    from dataclasses import replace

    X = np.asarray(X, dtype=float)
    has_int = bool(len(names)) and names[0] == "intrcpt" and bool(np.all(X[:, 0] == 1.0))
    form = replace(md.formula, columns=tuple(names), has_intercept=has_int)
    return replace(md, X=np.asarray(X, dtype=float), coef_names=tuple(names), formula=form)
