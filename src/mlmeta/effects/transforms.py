"""Back-transformations of effect sizes to the scale they are reported on.

:data:`TRANSFORMS` maps the name a measure's registry entry gives (``Measure.transf``) to the
function: ``"none"`` (identity), ``"ztor"`` (Fisher's z to r: tanh), ``"exp"`` (log ratios to
ratios), ``"ilogit"`` (log odds to proportions), ``"iarcsin"`` (arcsine square-root
proportions back to proportions). :func:`ztor_int` averages tanh over a normal distribution of
z (metafor's ``transf.ztor.int``). :func:`rtoz` is Fisher's r-to-z transformation.

All functions accept scalars or array-likes and broadcast like numpy; they return a float for
scalar input, a :class:`pandas.Series` (same index) when the first argument is a Series, and a
numpy array otherwise. ``NaN`` passes through them unchanged.

References
----------
Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced from a small
sample. *Metron, 1*, 3-32.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48 (``transf`` help page of metafor 3.8-1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy import integrate
from scipy.special import roots_hermite

from mlmeta.effects.arrays import as_float_arg, broadcast, check_arg, like_input
from mlmeta.effects.rmath import libm
from mlmeta.errors import FitWarning, InputError

__all__ = ["TRANSFORMS", "exp", "iarcsin", "identity", "ilogit", "rtoz", "ztor", "ztor_int"]


def ztor(z):
    r"""Fisher's z back to a correlation: ``r = tanh(z)``.

    Parameters
    ----------
    z : float or array-like
        Fisher-z values (any real number; NaN passes through).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        ``r = tanh(z) = (exp(2z) - 1) / (exp(2z) + 1)``.

    References
    ----------
    Fisher, R. A. (1921). *Metron, 1*, 3-32. metafor's ``transf.ztor``.
    """
    zz = as_float_arg(z, "z")
    return like_input(libm(math.tanh, np.tanh, zz), z)


def rtoz(r):
    r"""Fisher's r-to-z transformation: ``z = atanh(r) = 1/2 log((1 + r) / (1 - r))``.

    Parameters
    ----------
    r : float or array-like
        Correlations in ``[-1, 1]`` (``±1`` give ``±inf``; NaN passes through).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        ``z = atanh(r)``; its large-sample variance is ``1 / (n - 3)``.

    Raises
    ------
    InputError
        If ``|r| > 1``.

    References
    ----------
    Fisher, R. A. (1921). *Metron, 1*, 3-32. metafor's ``transf.rtoz``.
    """
    rr = as_float_arg(r, "r")
    check_arg(np.abs(rr) > 1, rr, "r", "correlation must be between -1 and 1")
    with np.errstate(divide="ignore"):
        return like_input(libm(math.atanh, np.arctanh, rr), r)


# R's dnorm (nmath/dnorm.c, R 4.2), so that ztor_int evaluates the same integrand as metafor.
_M_1_SQRT_2PI = 0.398942280401432677939946059934
_DNORM_BIG = 2 * math.sqrt(np.finfo(float).max)
_DNORM_UNDERFLOW = math.sqrt(-2 * math.log(2) * (-1021 + 1 - 53))


def _r_dnorm(x: float, mu: float, sigma: float) -> float:
    x = abs((x - mu) / sigma)
    if x >= _DNORM_BIG:
        return 0.0
    if x < 5:
        return _M_1_SQRT_2PI * math.exp(-0.5 * x * x) / sigma
    if x > _DNORM_UNDERFLOW:
        return 0.0
    x1 = math.ldexp(round(math.ldexp(x, 16)), -16)  # round(): half to even, as nearbyint()
    x2 = x - x1
    return _M_1_SQRT_2PI / sigma * (math.exp(-0.5 * x1 * x1) * math.exp((-0.5 * x2 - x1) * x2))


_R_INTEGRATE_TOL = np.finfo(float).eps ** 0.25  # R's integrate(): rel.tol = abs.tol = eps^0.25


def _ztor_int_quad(z: float, v: float) -> float:
    sd = math.sqrt(v)

    def f(x: float) -> float:
        return math.tanh(x) * _r_dnorm(x, z, sd)

    val, _err, _info, *rest = integrate.quad(
        f,
        z - 10 * sd,
        z + 10 * sd,
        epsabs=_R_INTEGRATE_TOL,
        epsrel=_R_INTEGRATE_TOL,
        limit=100,
        full_output=1,
    )
    if rest:  # pragma: no cover - QUADPACK's ier != 0 (R's integrate() would stop here)
        warnings.warn(
            f"ztor_int: integration for z = {z!r}, vi_total = {v!r} reported: {rest[0]}",
            FitWarning,
            stacklevel=3,
        )
    return val


def ztor_int(z, vi_total, n_points=None):
    r"""Back-transform Fisher's z to r by integration, as metafor's ``transf.ztor.int``.

    Returns the mean of ``tanh(Z)`` for ``Z ~ N(z, vi_total)``:

    ``E[tanh(Z)] = integral over [z - 10 s, z + 10 s] of tanh(x) phi((x - z) / s) / s dx``,
    ``s = sqrt(vi_total)``; ``tanh(z)`` when ``vi_total = 0``.

    Because ``tanh`` is concave for positive and convex for negative arguments, this is closer to
    0 than ``tanh(z)``: the mean correlation of a normal distribution of true z effects with mean
    ``z`` and variance ``vi_total`` (e.g. ``vi_total = tau2``, metafor's
    ``targs = list(tau2 = ...)``; or ``tau2 + se^2`` for a prediction).

    Parameters
    ----------
    z : float or array-like
        Mean(s) on the Fisher-z scale (NaN passes through).
    vi_total : float or array-like
        Variance(s) of Z (>= 0, finite); broadcast against ``z``.
    n_points : int, optional
        ``None`` (default): exactly metafor's computation - R's ``integrate()`` (QUADPACK
        ``dqags``, 21-point Gauss-Kronrod, ``rel.tol = abs.tol = eps^0.25``, 100 subintervals)
        over ``z ± 10 s`` of ``tanh(x) * dnorm(x, z, s)``, with R's ``dnorm``; agrees with
        metafor 3.8-1 to about 1e-15. Like metafor's own value, it may differ from the exact
        integral by about 1e-10 relatively. An integer: Gauss-Hermite quadrature with that many
        nodes (vectorised; converges to the exact integral, ``n_points=200`` is good to about
        1e-12 for ``vi_total <= 2``, larger variances need more nodes).

    Returns
    -------
    float, numpy.ndarray or pandas.Series
        The back-transformed correlation(s).

    References
    ----------
    Viechtbauer, W. (2010). *Journal of Statistical Software, 36*(3); metafor 3.8-1
    ``transf.ztor.int`` (help page ``transf``).
    """
    zz, vv = broadcast(as_float_arg(z, "z"), as_float_arg(vi_total, "vi_total"))
    check_arg(np.isinf(zz), zz, "z", "z must be finite")
    check_arg((vv < 0) | np.isinf(vv), vv, "vi_total", "variance must be finite and >= 0")
    if n_points is not None and (
        isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 2
    ):
        raise InputError(f"n_points={n_points!r}: must be None or an integer >= 2")
    out = libm(math.tanh, np.tanh, zz)
    todo = (vv > 0) & ~np.isnan(zz)
    out = np.where(np.isnan(vv), np.nan, out)
    if todo.any():
        zs, vs = zz[todo], vv[todo]
        if n_points is None:
            vals = np.array(
                [_ztor_int_quad(float(a), float(b)) for a, b in zip(zs, vs, strict=True)]
            )
        else:
            x, w = roots_hermite(int(n_points))
            nodes = zs[:, None] + np.sqrt(2 * vs)[:, None] * x[None, :]
            vals = np.tanh(nodes) @ w / math.sqrt(math.pi)
        out = np.array(out, dtype=float)
        out[todo] = vals
    return like_input(out, z)


def identity(x):
    """No back-transformation: ``x`` unchanged (float, ndarray or Series like the input)."""
    xx = as_float_arg(x, "x")
    return like_input(xx, x)


def exp(x):
    r"""Log ratios back to ratios: :math:`e^x` (log odds ratio, log risk ratio, log ratio of
    means; metafor's ``transf = exp``)."""
    xx = as_float_arg(x, "x")
    with np.errstate(over="ignore"):
        return like_input(libm(math.exp, np.exp, xx), x)


def ilogit(x):
    r"""Inverse logit, log odds to a proportion: :math:`e^x / (1 + e^x)` (metafor's
    ``transf.ilogit``); computed as :math:`1/(1 + e^{-x})` for :math:`x \ge 0` to avoid
    overflow."""
    xx = as_float_arg(x, "x")
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(xx))
        out = np.where(xx >= 0, 1 / (1 + e), e / (1 + e))
    return like_input(out, x)


def iarcsin(x):
    r"""Arcsine square-root proportion back to a proportion: :math:`\sin(x)^2` for
    :math:`0 \le x \le \pi/2` (clipped to that range; metafor's ``transf.iarcsin``)."""
    xx = as_float_arg(x, "x")
    out = np.sin(np.clip(xx, 0, np.pi / 2)) ** 2
    return like_input(out, x)


#: back-transformations by the name a measure's registry entry uses (``Measure.transf``)
TRANSFORMS: dict[str, Callable] = {
    "none": identity,
    "ztor": ztor,
    "exp": exp,
    "ilogit": ilogit,
    "iarcsin": iarcsin,
}
