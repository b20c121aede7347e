"""Argument handling shared by the conversions and back-transformations: float arrays from
scalars, lists, arrays or Series; element-wise checks with one-line messages; results shaped like
the input (float for a scalar, Series for a Series, else ndarray)."""

from __future__ import annotations

from numbers import Number
from typing import TYPE_CHECKING, cast

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.effects.inputs import fmt
from mlmeta.errors import InputError

__all__ = ["as_float_arg", "broadcast", "check_arg", "like_input"]


def as_float_arg(x, name: str) -> np.ndarray:
    """Float array of a conversion argument; non-numeric -> InputError. NaN is allowed."""
    if isinstance(x, pd.Series | pd.Index):
        if pd.api.types.is_bool_dtype(x.dtype):
            raise InputError(f"argument {name!r} must be numeric, got true/false values")
        if pd.api.types.is_numeric_dtype(x.dtype):
            return x.to_numpy(dtype=float, na_value=np.nan)
        x = x.to_numpy(dtype=object)
    if isinstance(x, bool | np.bool_):
        raise InputError(f"argument {name!r} must be numeric, got {x!r}")
    if isinstance(x, list | tuple):
        obj = np.asarray(x, dtype=object)
        if any(isinstance(v, bool | np.bool_) for v in obj.ravel()):
            raise InputError(f"argument {name!r} must be numeric, got true/false values")
    arr = np.asarray(x)
    if arr.dtype.kind == "b":
        raise InputError(f"argument {name!r} must be numeric, got true/false values")
    if arr.dtype.kind in "iuf":
        return arr.astype(float)
    flat = arr.astype(object).ravel()
    out = np.empty(flat.shape, dtype=float)
    for i, v in enumerate(flat):
        if v is None or v is pd.NA:
            out[i] = np.nan
        elif isinstance(v, Number) and not isinstance(v, bool | np.bool_):
            out[i] = float(cast(float, v))
        else:
            where = f"argument {name!r}" if arr.ndim == 0 else f"argument {name!r}, element {i + 1}"
            raise InputError(f"{where}: value must be numeric, got {v!r}")
    return out.reshape(arr.shape)


def check_arg(mask: np.ndarray, arr: np.ndarray, name: str, text: str) -> None:
    """Raise for the first element where ``mask`` holds (NaN never fails)."""
    mask = np.asarray(mask) & ~np.isnan(arr)
    if mask.any():
        flat = np.flatnonzero(mask.ravel())[0]
        value = arr.ravel()[flat]
        where = f"argument {name!r}" if arr.ndim == 0 else f"argument {name!r}, element {flat + 1}"
        raise InputError(f"{where}: {text}, got {fmt(value)}")


def like_input(result: np.ndarray, like):
    """Float for scalar input, Series for a Series first argument, else ndarray."""
    if isinstance(like, pd.Series) and np.ndim(result) == 1 and len(result) == len(like):
        return pd.Series(result, index=like.index, name=like.name)
    if np.ndim(result) == 0:
        return float(result)
    return result


def broadcast(*arrays):
    """numpy broadcasting of the arguments; InputError if their shapes do not fit."""
    try:
        return np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise InputError(f"arguments cannot be broadcast together: {exc}") from None
