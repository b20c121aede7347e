"""Tail probabilities and quantiles of the normal, t, chi-square and F distributions.

Thin wrappers over :mod:`scipy.special` (the same functions :mod:`scipy.stats` evaluates, so
the numbers are identical) that avoid importing :mod:`scipy.stats`, which alone costs a quarter
of a second at start-up of the command line.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["norm_sf", "norm_isf", "t_sf", "t_isf", "chi2_sf", "chi2_isf", "f_sf"]


def norm_sf(x):
    """P(Z > x) for Z ~ N(0, 1)."""
    return special.ndtr(-np.asarray(x, dtype=float))


def norm_isf(q):
    """x with P(Z > x) = q."""
    return -special.ndtri(np.asarray(q, dtype=float))


def t_sf(x, df):
    """P(T > x) for T ~ t(df)."""
    return special.stdtr(np.asarray(df, dtype=float), -np.asarray(x, dtype=float))


def t_isf(q, df):
    """x with P(T > x) = q for T ~ t(df)."""
    return -special.stdtrit(np.asarray(df, dtype=float), np.asarray(q, dtype=float))


def chi2_sf(x, df):
    """P(X > x) for X ~ chi-square(df)."""
    return special.chdtrc(np.asarray(df, dtype=float), np.asarray(x, dtype=float))


def f_sf(x, df1, df2):
    """P(F > x) for F ~ F(df1, df2)."""
    return special.fdtrc(np.asarray(df1, dtype=float), np.asarray(df2, dtype=float),
                         np.asarray(x, dtype=float))


def chi2_isf(q, df):
    """x with P(X > x) = q for X ~ chi-square(df)."""
    return special.chdtri(np.asarray(df, dtype=float), np.asarray(q, dtype=float))
