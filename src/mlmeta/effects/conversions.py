"""Conversions between effect-size metrics: correlations from test statistics, and between the
standardized mean difference d, the (point-biserial) correlation r and the log odds ratio
(Borenstein et al. 2009, chapter 7).

The functions accept scalars or array-likes and broadcast like numpy; they return a float for
scalar input, a :class:`pandas.Series` (same index) when the first argument is a Series, and a
numpy array otherwise. ``NaN`` passes through them unchanged.

References
----------
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
meta-analysis*, chapter 7 (converting among effect sizes). Wiley.
Chinn, S. (2000). A simple method for converting an odds ratio to effect size for use in
meta-analysis. *Statistics in Medicine, 19*(22), 3127-3131.
Hasselblad, V., & Hedges, L. V. (1995). Meta-analysis of screening and diagnostic tests.
*Psychological Bulletin, 117*(1), 167-178.
Rosenthal, R. (1994). Parametric measures of effect size. In H. Cooper & L. V. Hedges (Eds.),
*The handbook of research synthesis* (pp. 231-244). Russell Sage Foundation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlmeta.effects.arrays import as_float_arg, broadcast, check_arg, like_input
from mlmeta.errors import InputError

__all__ = [
    "convert",
    "d_from_logor",
    "d_from_r",
    "logor_from_d",
    "r_from_d",
    "r_from_f",
    "r_from_t",
]


def r_from_t(t, df):
    r"""Correlation from a t statistic: ``r = t / sqrt(t^2 + df)``.

    Exact for the t test of a Pearson correlation (``df = n - 2``) and for the point-biserial
    correlation from an independent-groups t test (``df = n1 + n2 - 2``).

    Parameters
    ----------
    t : float or array-like
        t statistics (finite).
    df : float or array-like
        Degrees of freedom (> 0).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        ``r = t / sqrt(t^2 + df)``, with the sign of ``t``.

    References
    ----------
    Rosenthal, R. (1994). Parametric measures of effect size. In H. Cooper & L. V. Hedges (Eds.),
    *The handbook of research synthesis* (pp. 231-244). Russell Sage Foundation.
    """
    tt, dd = broadcast(as_float_arg(t, "t"), as_float_arg(df, "df"))
    check_arg(np.isinf(tt), tt, "t", "t statistic must be finite")
    check_arg(~(dd > 0), dd, "df", "degrees of freedom must be positive")
    return like_input(tt / np.sqrt(tt**2 + dd), t)


def r_from_f(F, df2, sign=+1):
    r"""Correlation from an ``F(1, df2)`` statistic: ``r = sign * sqrt(F / (F + df2))``.

    ``F(1, df2) = t(df2)^2``, so this is :func:`r_from_t` with ``|t| = sqrt(F)``; the F statistic
    has lost the direction, which ``sign`` restores.

    Parameters
    ----------
    F : float or array-like
        F statistics with 1 numerator degree of freedom (>= 0, finite).
    df2 : float or array-like
        Denominator degrees of freedom (> 0).
    sign : {+1, -1} or array-like of them, default +1
        Direction of the effect.

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        ``r = sign * sqrt(F / (F + df2))``.

    References
    ----------
    Rosenthal, R. (1994). Parametric measures of effect size. In H. Cooper & L. V. Hedges (Eds.),
    *The handbook of research synthesis* (pp. 231-244). Russell Sage Foundation.
    """
    ff, dd, ss = broadcast(
        as_float_arg(F, "F"), as_float_arg(df2, "df2"), as_float_arg(sign, "sign")
    )
    check_arg(~np.isfinite(ff) | (ff < 0), ff, "F", "F statistic must be finite and >= 0")
    check_arg(~(dd > 0), dd, "df2", "degrees of freedom must be positive")
    check_arg((ss != 1) & (ss != -1), ss, "sign", "sign must be +1 or -1")
    return like_input(ss * np.sqrt(ff / (ff + dd)), F)


def _a_factor(n1, n2):
    """``a = (n1 + n2)^2 / (n1 n2)``; 4 when no sizes are given."""
    if (n1 is None) != (n2 is None):
        raise InputError("give both n1 and n2, or neither (equal group sizes, a = 4)")
    if n1 is None:
        return None
    a1, a2 = as_float_arg(n1, "n1"), as_float_arg(n2, "n2")
    check_arg(~(a1 > 0) | np.isinf(a1), a1, "n1", "group size must be positive and finite")
    check_arg(~(a2 > 0) | np.isinf(a2), a2, "n2", "group size must be positive and finite")
    return (a1 + a2) ** 2 / (a1 * a2)


def r_from_d(d, n1=None, n2=None):
    r"""Point-biserial correlation from a standardized mean difference.

    ``r = d / sqrt(d^2 + a)`` with ``a = (n1 + n2)^2 / (n1 n2)``; ``a = 4`` (equal groups) when
    ``n1`` and ``n2`` are not given.

    This is Borenstein et al. (2009, eq. 7.5); it is exact when ``d`` uses the pooled SD with
    divisor ``N = n1 + n2``. (metafor's measure ``"RPB"`` instead uses
    ``a = (N - 2) N / (n1 n2)``, which is exact for the usual pooled SD with divisor ``N - 2``.)

    Parameters
    ----------
    d : float or array-like
        Standardized mean differences (finite).
    n1, n2 : float or array-like, optional
        Group sizes (> 0); give both or neither.

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        The correlation, in ``(-1, 1)``.

    References
    ----------
    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
    meta-analysis*, chapter 7. Wiley.
    """
    dd = as_float_arg(d, "d")
    check_arg(np.isinf(dd), dd, "d", "d must be finite")
    a = _a_factor(n1, n2)
    if a is None:
        a = np.float64(4.0)
    dd, a = broadcast(dd, a)
    return like_input(dd / np.sqrt(dd**2 + a), d)


def d_from_r(r, n1=None, n2=None):
    r"""Standardized mean difference from a point-biserial correlation; inverse of :func:`r_from_d`.

    ``d = sqrt(a) r / sqrt(1 - r^2)`` with ``a = (n1 + n2)^2 / (n1 n2)``; ``a = 4`` (so
    ``d = 2 r / sqrt(1 - r^2)``) when ``n1`` and ``n2`` are not given.

    Parameters
    ----------
    r : float or array-like
        Correlations in ``[-1, 1]`` (``±1`` give ``±inf``).
    n1, n2 : float or array-like, optional
        Group sizes (> 0); give both or neither.

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        The standardized mean difference.

    References
    ----------
    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
    meta-analysis*, chapter 7. Wiley.
    """
    rr = as_float_arg(r, "r")
    check_arg(np.abs(rr) > 1, rr, "r", "correlation must be between -1 and 1")
    a = _a_factor(n1, n2)
    if a is None:
        a = np.float64(4.0)
    rr, a = broadcast(rr, a)
    with np.errstate(divide="ignore"):
        return like_input(np.sqrt(a) * rr / np.sqrt(1 - rr**2), r)


_LOGIT_SCALE = math.pi / math.sqrt(3)  # SD of the standard logistic distribution


def logor_from_d(d):
    r"""Log odds ratio from a standardized mean difference (Hasselblad & Hedges 1995).

    .. math:: \log OR = d \, \pi / \sqrt{3}

    (Borenstein et al. 2009, ch. 7; exact when the outcome underlying the dichotomy follows a
    logistic distribution). The variance converts as :math:`v_{\log OR} = v_d\, \pi^2 / 3`
    (see :func:`convert`).

    Parameters
    ----------
    d : float or array-like
        Standardized mean differences (finite; NaN passes through).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
    """
    dd = as_float_arg(d, "d")
    check_arg(np.isinf(dd), dd, "d", "d must be finite")
    return like_input(dd * _LOGIT_SCALE, d)


def d_from_logor(logor):
    r"""Standardized mean difference from a log odds ratio (Hasselblad & Hedges 1995; Chinn
    2000).

    .. math:: d = \log OR \, \sqrt{3} / \pi

    (Borenstein et al. 2009, ch. 7); the variance converts as :math:`v_d = v_{\log OR}\,
    3/\pi^2` (see :func:`convert`).

    Parameters
    ----------
    logor : float or array-like
        Log odds ratios (finite; NaN passes through).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
    """
    ll = as_float_arg(logor, "logor")
    check_arg(np.isinf(ll), ll, "logor", "log odds ratio must be finite")
    return like_input(ll / _LOGIT_SCALE, logor)


_KINDS = ("d", "r", "logOR")


def convert(yi, vi, from_: str, to: str, n1=None, n2=None) -> pd.DataFrame:
    r"""Convert effect sizes *and* their sampling variances between d, r and log OR.

    Borenstein et al. (2009, chapter 7), with :math:`a = (n_1 + n_2)^2 / (n_1 n_2)` (``a = 4``
    when the group sizes are not given):

    ==========  =====================================  ==========================================
    from → to   estimate                               variance
    ==========  =====================================  ==========================================
    d → logOR   :math:`d\,\pi/\sqrt3`                   :math:`v_d\,\pi^2/3`
    logOR → d   :math:`\log OR\,\sqrt3/\pi`             :math:`v\,3/\pi^2`
    d → r       :math:`d/\sqrt{d^2 + a}`               :math:`a^2 v_d / (d^2 + a)^3`
    r → d       :math:`2r/\sqrt{1 - r^2}` (a = 4)       :math:`4 v_r / (1 - r^2)^3`
    logOR → r   via d                                  via d
    r → logOR   via d                                  via d
    ==========  =====================================  ==========================================

    For ``r → d`` with group sizes the general :math:`d = \sqrt{a}\, r/\sqrt{1 - r^2}`,
    :math:`v_d = a\, v_r / (1 - r^2)^3` is used (it reduces to the equal-groups formulas for a = 4).

    Parameters
    ----------
    yi, vi : array-like
        Estimates and sampling variances on the ``from_`` scale (vi >= 0).
    from_, to : {"d", "r", "logOR"}
        Scales: standardized mean difference (``"d"``, also Hedges' g), (point-biserial)
        correlation (``"r"``), log odds ratio (``"logOR"``).
    n1, n2 : array-like, optional
        Group sizes for the d ↔ r conversions (give both or neither).

    Returns
    -------
    pandas.DataFrame
        Columns ``yi`` and ``vi`` on the ``to`` scale (index of ``yi`` if it is a Series).

    Examples
    --------
    >>> convert([0.5], [0.04], "d", "logOR").round(4)
           yi      vi
    0  0.9069  0.1316
    """
    for name, val in (("from_", from_), ("to", to)):
        if val not in _KINDS:
            raise InputError(f"{name}={val!r}: must be one of {', '.join(map(repr, _KINDS))}")
    y = np.atleast_1d(as_float_arg(yi, "yi"))
    v = np.atleast_1d(as_float_arg(vi, "vi"))
    y, v = broadcast(y, v)
    check_arg(v < 0, v, "vi", "sampling variance must be >= 0")
    a = _a_factor(n1, n2)
    a = np.full(y.shape, 4.0) if a is None else broadcast(a, y)[0]
    index = yi.index if isinstance(yi, pd.Series) else None
    if from_ == to:
        return pd.DataFrame({"yi": y, "vi": v}, index=index)
    # to d first
    if from_ == "logOR":
        check_arg(np.isinf(y), y, "yi", "log odds ratio must be finite")
        d, vd = y / _LOGIT_SCALE, v / _LOGIT_SCALE**2
    elif from_ == "r":
        check_arg(np.abs(y) >= 1, y, "yi", "correlation must be strictly between -1 and 1")
        d = np.sqrt(a) * y / np.sqrt(1 - y**2)
        vd = a * v / (1 - y**2) ** 3
    else:
        check_arg(np.isinf(y), y, "yi", "d must be finite")
        d, vd = y, v
    if to == "d":
        out_y, out_v = d, vd
    elif to == "logOR":
        out_y, out_v = d * _LOGIT_SCALE, vd * _LOGIT_SCALE**2
    else:
        out_y = d / np.sqrt(d**2 + a)
        out_v = a**2 * vd / (d**2 + a) ** 3
    return pd.DataFrame({"yi": out_y, "vi": out_v}, index=index)
