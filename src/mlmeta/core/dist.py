"""Tail probabilities and quantiles of the normal, t, chi-square and F distributions.

A fitted model needs a handful of these numbers (one per coefficient and test), and importing
:mod:`scipy.special` for them costs more start-up time than the whole fit of a typical
meta-analysis. Small inputs are therefore evaluated here in double precision from the standard
library's ``erfc``, ``lgamma`` and ``NormalDist``:

* t, F: the regularised incomplete beta function I_x(a, b) by its continued fraction (modified
  Lentz; Press et al., *Numerical Recipes*, 3rd ed., sec. 6.4), with P(T > t) =
  I_{df/(df+t^2)}(df/2, 1/2) / 2 and P(F > f) = I_{d2/(d2+d1 f)}(d2/2, d1/2);
* chi-square: the regularised incomplete gamma function (series below a + 1, continued fraction
  above; sec. 6.2), P(X > x) = Q(df/2, x/2);
* quantiles by safeguarded Newton steps on the log tail probability, from the normal or
  Wilson-Hilferty approximation.

They agree with :mod:`scipy.special` (``stdtr``, ``stdtrit``, ``chdtrc``, ``chdtri``, ``fdtrc``,
``ndtr``, ``ndtri``) to ~1e-12 relative (tested); arrays of more than :data:`SMALL` values are
handed to scipy.special itself, imported then.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["SMALL", "chi2_isf", "chi2_sf", "f_sf", "norm_isf", "norm_sf", "t_isf", "t_sf"]

#: inputs with more values than this are evaluated by scipy.special
SMALL = 64
_EPS = 1e-16
_TINY = 1e-300
_N01 = NormalDist()


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = _TINY if abs(d) < _TINY else d
        c = 1.0 + aa / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        de = d * c
        h *= de
        if abs(de - 1.0) < _EPS:
            break
    return h


def _stirling_corr(z: float) -> float:
    """lgamma(z) - [(z - 1/2) log z - z + log(2 pi)/2] for z >= 10 (Stirling's series)."""
    z2 = 1.0 / (z * z)
    return (
        1.0 / 12.0 - z2 * (1.0 / 360.0 - z2 * (1.0 / 1260.0 - z2 * (1.0 / 1680.0 - z2 / 1188.0)))
    ) / z


def _lgamma_ratio(a: float, b: float) -> float:
    """lgamma(a + b) - lgamma(a), without the cancellation of two large lgamma values."""
    if a < 10.0 or a + b < 10.0:
        return math.lgamma(a + b) - math.lgamma(a)
    return (
        (a + b - 0.5) * math.log1p(b / a)
        + b * math.log(a)
        - b
        + _stirling_corr(a + b)
        - _stirling_corr(a)
    )


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with ``y = 1 - x`` given separately (no cancellation)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    lab = (
        (_lgamma_ratio(a, b) - math.lgamma(b)) if a >= b else (_lgamma_ratio(b, a) - math.lgamma(a))
    )
    lx = math.log1p(-y) if x > 0.5 else math.log(x)
    ly = math.log1p(-x) if y > 0.5 else math.log(y)
    lbt = lab + a * lx + b * ly
    bt = math.exp(lbt)
    if x < (a + 1.0) / (a + b + 2.0):
        return bt * _betacf(a, b, x) / a
    return 1.0 - bt * _betacf(b, a, y) / b


def _gammainc_p_series(a: float, x: float) -> float:
    """Regularised lower incomplete gamma P(a, x) by its series (accurate for x < a + 1)."""
    if x <= 0.0:
        return 0.0
    lpre = -x + a * math.log(x) - math.lgamma(a)
    ap, s, term = a, 1.0 / a, 1.0 / a
    for _ in range(100_000):
        ap += 1.0
        term *= x / ap
        s += term
        if abs(term) < abs(s) * _EPS:
            break
    return s * math.exp(lpre)


def _gammainc_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x)."""
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    lpre = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        return 1.0 - _gammainc_p_series(a, x)
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        de = d * c
        h *= de
        if abs(de - 1.0) < _EPS:
            break
    return math.exp(lpre) * h


# ------------------------------------------------------------------ scalar functions
def _norm_sf(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def _norm_isf(q: float) -> float:
    if not 0.0 < q < 1.0:
        return math.inf if q == 0.0 else -math.inf if q == 1.0 else math.nan
    return -_N01.inv_cdf(q)


def _t_sf(x: float, df: float) -> float:
    if math.isnan(x) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(df):
        return _norm_sf(x)
    if math.isinf(x):
        return 0.0 if x > 0 else 1.0
    if x == 0.0:
        return 0.5
    q = math.sqrt(df) / abs(x)
    if q > 1e150:
        return 0.5  # |x| is below 1e-150 sqrt(df): 0.5 to the last bit
    r = q * q  # df / t^2 without overflow
    tail = 0.5 * _betainc(0.5 * df, 0.5, r / (1.0 + r), 1.0 / (1.0 + r))
    return tail if x > 0 else 1.0 - tail


def _t_pdf(x: float, df: float) -> float:
    lc = math.lgamma(0.5 * (df + 1.0)) - math.lgamma(0.5 * df) - 0.5 * math.log(df * math.pi)
    return math.exp(lc - 0.5 * (df + 1.0) * math.log1p(x * x / df))


def _solve_tail(sf, pdf, q: float, x0: float, lo: float, hi: float) -> float:
    """x with sf(x) = q (sf decreasing) by Newton on log sf, safeguarded by a bracket
    (pass the lower tail and -pdf as ``sf``/``pdf`` with ``lo``/``hi`` swapped roles to solve
    an increasing function: see :func:`_chi2_isf`)."""
    lq = math.log(q)
    x = x0
    for _ in range(2000):
        s = sf(x)
        if s <= 0.0:
            hi = min(hi, x)
            x = 0.5 * (lo + hi) if math.isfinite(lo + hi) else x - 1.0
            continue
        f = math.log(s) - lq
        if f > 0:
            lo = max(lo, x)
        else:
            hi = min(hi, x)
        g = -pdf(x) / s
        new = x - f / g if g < 0 else math.nan
        if not (lo < new < hi):
            new = (
                0.5 * (lo + hi)
                if math.isfinite(lo) and math.isfinite(hi)
                else (10.0 * abs(x) + 1.0 if f > 0 else x - abs(x) - 1.0)
            )
        if abs(new - x) <= 4e-16 * max(abs(new), 1e-300):
            return new
        x = new
    return x


def _t_isf(q: float, df: float) -> float:
    if math.isnan(q) or math.isnan(df) or df <= 0 or not 0.0 <= q <= 1.0:
        return math.nan
    if q == 0.0:
        return math.inf
    if q == 1.0:
        return -math.inf
    if math.isinf(df):
        return _norm_isf(q)
    if q > 0.5:
        return -_t_isf(1.0 - q, df)
    if q == 0.5:
        return 0.0
    z = _norm_isf(q)
    # Cornish-Fisher start (Abramowitz & Stegun 26.7.5)
    x0 = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)
    return _solve_tail(
        lambda x: _t_sf(x, df), lambda x: _t_pdf(x, df), q, max(x0, 1e-8), 0.0, math.inf
    )


def _chi2_sf(x: float, df: float) -> float:
    if math.isnan(x) or math.isnan(df) or df <= 0:
        return math.nan
    return _gammainc_q(0.5 * df, 0.5 * x) if x > 0 else 1.0


def _chi2_pdf(x: float, df: float) -> float:
    if x <= 0:
        return 0.0
    a = 0.5 * df
    return math.exp((a - 1.0) * math.log(0.5 * x) - 0.5 * x - math.lgamma(a)) * 0.5


def _chi2_isf(q: float, df: float) -> float:
    if math.isnan(q) or math.isnan(df) or df <= 0 or not 0.0 <= q <= 1.0:
        return math.nan
    if q == 0.0:
        return math.inf
    if q == 1.0:
        return 0.0
    z = _norm_isf(q)
    h = 2.0 / (9.0 * df)
    x0 = df * max(1.0 - h + z * math.sqrt(h), 1e-3) ** 3  # Wilson-Hilferty
    if q > 0.5:
        # near the lower end solve P(df/2, x/2) = 1 - q (accurate series) in u = -x, where
        # the lower tail of x is a decreasing "survival" function of u
        a, p = 0.5 * df, 1.0 - q
        x_small = 2.0 * math.exp((math.log(p) + math.lgamma(a + 1.0)) / a)
        start = min(x0, x_small) if x_small > 0 else x0
        u = _solve_tail(
            lambda u: (
                _gammainc_p_series(a, -0.5 * u)
                if -u < 2 * a + 2
                else 1.0 - _gammainc_q(a, -0.5 * u)
            ),
            lambda u: _chi2_pdf(-u, df),
            p,
            -start,
            -math.inf,
            0.0,
        )
        return -u
    return _solve_tail(lambda x: _chi2_sf(x, df), lambda x: _chi2_pdf(x, df), q, x0, 0.0, math.inf)


def _f_sf(x: float, d1: float, d2: float) -> float:
    if math.isnan(x) or math.isnan(d1) or math.isnan(d2) or d1 <= 0 or d2 <= 0:
        return math.nan
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    return _betainc(0.5 * d2, 0.5 * d1, d2 / (d2 + d1 * x), d1 * x / (d2 + d1 * x))


# ------------------------------------------------------------------ array interface
def _apply(scalar, big, *args):
    arrs = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args))
    if arrs[0].size > SMALL:
        return big(*arrs)
    out = np.empty(arrs[0].shape)
    flat = [a.ravel() for a in arrs]
    for i in range(out.size):
        out.flat[i] = scalar(*(float(f[i]) for f in flat))
    return out[()] if out.ndim == 0 else out


def norm_sf(x):
    """P(Z > x) for Z ~ N(0, 1)."""

    def big(x):
        from scipy import special

        return special.ndtr(-x)

    return _apply(_norm_sf, big, x)


def norm_isf(q):
    """x with P(Z > x) = q."""

    def big(q):
        from scipy import special

        return -special.ndtri(q)

    return _apply(_norm_isf, big, q)


def t_sf(x, df):
    """P(T > x) for T ~ t(df)."""

    def big(x, df):
        from scipy import special

        return special.stdtr(df, -x)

    return _apply(_t_sf, big, x, df)


def t_isf(q, df):
    """x with P(T > x) = q for T ~ t(df)."""

    def big(q, df):
        from scipy import special

        return -special.stdtrit(df, q)

    return _apply(_t_isf, big, q, df)


def chi2_sf(x, df):
    """P(X > x) for X ~ chi-square(df)."""

    def big(x, df):
        from scipy import special

        return special.chdtrc(df, x)

    return _apply(_chi2_sf, big, x, df)


def f_sf(x, df1, df2):
    """P(F > x) for F ~ F(df1, df2)."""

    def big(x, df1, df2):
        from scipy import special

        return special.fdtrc(df1, df2, x)

    return _apply(_f_sf, big, x, df1, df2)


def chi2_isf(q, df):
    """x with P(X > x) = q for X ~ chi-square(df)."""

    def big(q, df):
        from scipy import special

        return special.chdtri(df, q)

    return _apply(_chi2_isf, big, q, df)
