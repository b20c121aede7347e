"""Input checks and constants shared by the publication-bias modules."""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from mlmeta.errors import InputError

__all__ = ["EE_METHODS", "EPS", "METHODS", "as_yv", "check_method", "z_crit"]

EPS = float(np.finfo(float).eps)
EE_METHODS = ("EE", "FE", "CE")
METHODS = ("REML", "ML", "DL") + EE_METHODS


def as_yv(yi, vi, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """yi and vi as float vectors of equal length, finite, with vi > 0 (else InputError)."""
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.shape != v.shape:
        raise InputError(f"{name}yi and vi must have the same length; got {y.size} and {v.size}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        raise InputError(f"{name}yi and vi must be finite (drop missing values first)")
    if np.any(v <= 0):
        i = int(np.flatnonzero(v <= 0)[0])
        raise InputError(f"{name}vi must be > 0; got vi[{i}] = {v[i]!r}")
    return y, v


def check_method(method: str) -> str:
    """The upper-cased tau^2 method, one of :data:`METHODS` (else InputError)."""
    m = str(method).upper()
    if m not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return m


def z_crit(level: float) -> float:
    """Two-sided normal critical value of a ``level`` percent confidence interval."""
    if not (0 < float(level) < 100):
        raise InputError(f"level must be a percentage between 0 and 100; got {level!r}")
    return float(ndtri(1 - (1 - float(level) / 100) / 2))
