"""Input handling of :func:`mlmeta.escalc`: columns or arrays to float vectors, row names for
messages, and :class:`Inputs`, the object a measure's function receives.

Rows are numbered from 1 in the order of the data (the data row, not the file line), or named by
the index label when the DataFrame has a non-default index. Every error is one line naming the
column, the row, the rule and the offending value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Number
from typing import TYPE_CHECKING, cast

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.effects.rmath import wmean
from mlmeta.errors import DataWarning, InputError

__all__ = [
    "Col",
    "Inputs",
    "Rows",
    "first",
    "fmt",
    "fmt_count",
    "gather",
    "length",
    "resolve_data",
    "rowlist",
    "to_float",
]

MISSING_STRINGS = ("", "NA")


def fmt(v) -> str:
    """A value for a message: ``repr`` of the float (``1.0``, ``-1.5``, ``inf``)."""
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return repr(v)


def fmt_count(v: float) -> str:
    """Counts and sample sizes: ``12`` rather than ``12.0`` when integral."""
    v = float(v)
    if math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class Rows:
    """Row naming: 'row N' (1-based) for a default index (or None), else 'row <index label>'."""

    def __init__(self, index: pd.Index | None):
        self.index = index
        self.default = index is None or (
            isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
        )

    def __call__(self, pos: int) -> str:
        if self.default or self.index is None:
            return f"row {pos + 1}"
        label = self.index[pos]
        if isinstance(label, np.generic):
            label = label.item()
        return f"row {label!s}"


@dataclass
class Col:
    """One input of escalc: argument name, the name to show in messages, the values."""

    arg: str  # metafor's argument name
    label: str  # the column name if given by name, else the argument name
    values: np.ndarray  # float; NaN where missing


def cells_to_float(cells: np.ndarray, label: str, rows: Rows) -> np.ndarray:
    """Element-wise conversion of object cells; missing -> NaN, non-numeric -> InputError."""
    out = np.empty(len(cells), dtype=float)
    for i, x in enumerate(cells):
        if x is None or x is pd.NA or x is pd.NaT:
            out[i] = np.nan
        elif isinstance(x, bool | np.bool_):
            raise InputError(f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}")
        elif isinstance(x, str):
            s = x.strip()
            if s in MISSING_STRINGS:
                out[i] = np.nan
                continue
            try:
                out[i] = float(s)
            except ValueError:
                raise InputError(
                    f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}"
                ) from None
        elif isinstance(x, Number):
            try:
                out[i] = float(cast(float, x))
            except (TypeError, ValueError):
                raise InputError(
                    f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}"
                ) from None
        else:
            raise InputError(f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}")
    return out


def to_float(values, label: str, rows: Rows) -> np.ndarray:
    """Numeric 1-d float array (NaN for missing) from a Series / array-like."""
    if isinstance(values, pd.Series | pd.Index):
        dtype = values.dtype
        if pd.api.types.is_bool_dtype(dtype):
            raise InputError(f"column {label!r} must be numeric, got true/false values")
        if pd.api.types.is_numeric_dtype(dtype):
            return values.to_numpy(dtype=float, na_value=np.nan)
        return cells_to_float(values.to_numpy(dtype=object), label, rows)
    if isinstance(values, list | tuple):
        # element by element, so that e.g. [10, True] is not silently read as [10, 1]
        arr = np.empty(len(values), dtype=object)
        try:
            arr[:] = values
        except ValueError:
            shape = np.shape(np.asarray(values, dtype=object))
            raise InputError(
                f"column {label!r} must be one-dimensional, got shape {shape}"
            ) from None
        if any(np.ndim(v) > 0 for v in arr):
            shape = np.shape(np.asarray(values, dtype=object))
            raise InputError(f"column {label!r} must be one-dimensional, got shape {shape}")
        return cells_to_float(arr, label, rows)
    arr = np.asarray(values)
    if arr.ndim > 1:
        raise InputError(f"column {label!r} must be one-dimensional, got shape {arr.shape}")
    arr = np.atleast_1d(arr)
    if arr.dtype.kind == "b":
        raise InputError(f"column {label!r} must be numeric, got true/false values")
    if arr.dtype.kind in "iuf":
        return arr.astype(float)
    return cells_to_float(arr.astype(object), label, rows)


def length(v) -> int | None:
    """Number of values of an array-like argument; None for a scalar (repeated for every row)."""
    if isinstance(v, np.ndarray | np.generic):
        return None if v.ndim == 0 else int(np.shape(v)[0])
    if isinstance(v, pd.Series | pd.Index | list | tuple):
        return len(v)
    if isinstance(v, Number) or v is pd.NA:
        return None
    try:
        return len(v)
    except TypeError:
        return None


def resolve_data(data) -> pd.DataFrame | None:
    """``data`` as a DataFrame (a mapping is converted); None stays None."""
    if data is None:
        return None
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame(dict(data))
        except ValueError as exc:
            raise InputError(f"data could not be turned into a DataFrame: {exc}") from None
    raise InputError(f"data must be a pandas DataFrame or a mapping, got {type(data).__name__}")


def gather(data: pd.DataFrame | None, given: dict[str, object]):
    """Look up columns / arrays, check lengths; return (index, rows, raw values per argument)."""
    raw: dict[str, object] = {}
    labels: dict[str, str] = {}
    for arg, spec in given.items():
        if isinstance(spec, str):
            if data is None:
                raise InputError(
                    f"{arg}={spec!r} names a column, but no data was given; pass data=... or "
                    "an array"
                )
            if spec not in data.columns:
                raise InputError(
                    f"column {spec!r} (argument {arg!r}) not found in the data (columns: "
                    f"{', '.join(map(str, data.columns))})"
                )
            col = data[spec]
            if isinstance(col, pd.DataFrame):
                raise InputError(
                    f"column {spec!r} (argument {arg!r}) appears more than once in the data"
                )
            raw[arg] = col
            labels[arg] = spec
        else:
            if isinstance(spec, pd.DataFrame):
                raise InputError(
                    f"argument {arg!r} must be a column name or a 1-d array, got a DataFrame"
                )
            raw[arg] = spec
            labels[arg] = arg

    lengths = {a: n for a, v in raw.items() if (n := length(v)) is not None}  # scalars repeat
    if data is not None:
        k = len(data)
        for arg, n in lengths.items():
            if n != k:
                raise InputError(f"column {labels[arg]!r} has {n} values but the data has {k} rows")
        index = data.index
    else:
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{labels[a]!r} {n}" for a, n in lengths.items())
            raise InputError(f"the inputs have different lengths: {desc}")
        k = next(iter(lengths.values()), 1)
        index = None
        for arg in given:
            s = raw[arg]
            if isinstance(s, pd.Series):
                index = s.index
                break
        if index is None:
            index = pd.RangeIndex(k)
    return index, k, raw, labels


def first(mask: np.ndarray) -> int | None:
    """Position of the first True in ``mask``, or None."""
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def rowlist(rows: Rows, positions, limit: int = 10) -> str:
    """'row 3' or 'rows 3, 5, 9 and 4 more' for a message."""
    positions = list(positions)
    names = [rows(p).removeprefix("row ") for p in positions[:limit]]
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    word = "row" if len(positions) == 1 else "rows"
    return f"{word} {', '.join(names)}{more}"


def _names(labels: list[str]) -> str:
    if len(labels) == 1:
        return f"column {labels[0]!r}"
    return "columns " + ", ".join(repr(x) for x in labels[:-1]) + f" and {labels[-1]!r}"


@dataclass
class Inputs:
    """What the function of a measure receives from :func:`mlmeta.escalc`.

    ``x["ai"]`` is the float vector of argument ``ai`` (NaN where missing), ``x.get("bi")`` the
    same or None when the argument was not given. Rows outside ``keep`` (dropped for missing
    values) are never checked. :meth:`check` raises the one-line :class:`InputError` naming
    column, row, rule and value; :meth:`warn` issues a :class:`DataWarning`.

    Attributes
    ----------
    measure : str
    cols : dict of str to Col
    keep : numpy.ndarray of bool
    rows : Rows
    vtype, to : str
    add : float
    drop00 : bool
    undefined : numpy.ndarray of bool
        Rows the measure sets to NaN on purpose (e.g. ``drop00``); the caller does not warn
        about them again.
    """

    measure: str
    cols: dict[str, Col]
    keep: np.ndarray
    rows: Rows
    vtype: str = "LS"
    add: float = 0.5
    to: str = "only0"
    drop00: bool = False
    undefined: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        if self.undefined.size != self.keep.size:
            self.undefined = np.zeros(self.keep.size, dtype=bool)

    @property
    def k(self) -> int:
        """Number of rows."""
        return int(self.keep.size)

    def has(self, arg: str) -> bool:
        """Whether argument ``arg`` was given."""
        return arg in self.cols

    def __getitem__(self, arg: str) -> np.ndarray:
        return self.cols[arg].values

    def get(self, arg: str) -> np.ndarray | None:
        """Values of ``arg``, or None if it was not given."""
        col = self.cols.get(arg)
        return None if col is None else col.values

    def label(self, arg: str) -> str:
        """The column name of ``arg`` (or the argument name for arrays)."""
        return self.cols[arg].label if arg in self.cols else arg

    def where(self, args, pos: int) -> str:
        """``"column 'x', row 3"`` / ``"columns 'x' and 'y', row 3"``."""
        return f"{_names([self.label(a) for a in args])}, {self.rows(pos)}"

    def first(self, mask: np.ndarray) -> int | None:
        """First kept row where ``mask`` holds."""
        return first(np.asarray(mask, dtype=bool) & self.keep)

    def check(self, mask: np.ndarray, arg: str, text: str, count: bool = False) -> None:
        """Raise ``column 'arg', row N: text, got value`` for the first kept row in ``mask``."""
        pos = self.first(mask)
        if pos is not None:
            v = self.cols[arg].values[pos]
            shown = fmt_count(v) if count else fmt(v)
            raise InputError(f"{self.where([arg], pos)}: {text}, got {shown}")

    def check_rows(self, mask: np.ndarray, args, text: str, got=None, values=None) -> None:
        """Raise ``columns 'a' and 'b', row N: text, got <got(pos)>`` (or ``text
        (<values(pos)>)``) for the first kept row where ``mask`` holds."""
        pos = self.first(mask)
        if pos is not None:
            tail = f", got {got(pos)}" if got is not None else ""
            if values is not None:
                tail += f" ({values(pos)})"
            raise InputError(f"{self.where(args, pos)}: {text}{tail}")

    def wmean(self, x: np.ndarray, w: np.ndarray) -> float:
        """metafor's ``.wmean(x, w, na.rm = TRUE)`` over the kept rows."""
        return wmean(np.where(self.keep, x, np.nan), w)

    def warn(self, text: str, depth: int = 0) -> None:
        """A :class:`DataWarning` ``escalc('MEASURE'): text`` pointing at escalc's caller
        (``depth``: number of helper calls between the measure's function and this one)."""
        warnings.warn(f"escalc({self.measure!r}): {text}", DataWarning, stacklevel=4 + depth)

    def rowlist(self, mask: np.ndarray) -> str:
        """'row 3' / 'rows 3, 5' for the kept rows in ``mask``."""
        return rowlist(self.rows, np.flatnonzero(np.asarray(mask, dtype=bool) & self.keep))
