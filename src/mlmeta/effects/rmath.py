"""R's arithmetic where it matters for bit-for-bit agreement with metafor.

* :func:`libm` / :func:`log`: the C library's ``log``, ``exp``, ``tanh``, ... element-wise (R calls
  the C library; numpy's vectorised versions may differ in the last bit).
* :func:`lgamma`: R's ``lgamma`` (nmath ``lgammafn``; W. Fullerton's algorithms) for x > 0.
* :func:`cmicalc`: metafor's exact bias-correction factor of the standardized mean difference.
* :func:`wmean`: metafor's ``.wmean``.

References
----------
Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size and related
estimators. *Journal of Educational Statistics, 6*(2), 107-128.
R Core Team. nmath library of R 4.2 (``lgamma.c``, ``gamma.c``, ``lgammacor.c``, ``chebyshev.c``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np

__all__ = ["cmicalc", "lgamma", "libm", "log", "r_lgamma", "wmean"]


def libm(fun: Callable[[float], float], npfun: Callable, x) -> np.ndarray:
    """``fun`` (a :mod:`math` function: the C library's, as R uses) element-wise on the finite
    values of ``x`` inside its domain, ``npfun`` elsewhere (for 0, inf, NaN, ...).

    numpy's vectorised ``log``/``tanh`` may differ from the C library's in the last bit; R (and
    so metafor) calls the C library, and this makes ``escalc`` reproduce metafor bit for bit.
    """
    x = np.asarray(x, dtype=float)
    out = np.array(npfun(x), dtype=float)
    flat, res = x.ravel(), out.ravel()
    for i in np.flatnonzero(np.isfinite(flat)):
        with contextlib.suppress(ValueError, OverflowError):
            res[i] = fun(flat[i])
    return res.reshape(x.shape)


def log(x) -> np.ndarray:
    """Natural logarithm element-wise with the C library's ``log`` (-inf at 0, NaN below)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return libm(math.log, np.log, x)


# R's lgamma() for x > 0 (nmath: lgammafn, gammafn, lgammacor, chebyshev_eval; W. Fullerton's
# algorithms), so that the SMD correction factor reproduces metafor's bit for bit. scipy's gammaln
# differs from it by a few units in the last place, which the difference of two lgamma values of
# size ~n log n turns into relative errors of ~1e-13 in c(m) and ~1e-11 in vtype="UB" variances.
_GAMCS = (
    +0.8571195590989331421920062399942e-2,
    +0.4415381324841006757191315771652e-2,
    +0.5685043681599363378632664588789e-1,
    -0.4219835396418560501012500186624e-2,
    +0.1326808181212460220584006796352e-2,
    -0.1893024529798880432523947023886e-3,
    +0.3606925327441245256578082217225e-4,
    -0.6056761904460864218485548290365e-5,
    +0.1055829546302283344731823509093e-5,
    -0.1811967365542384048291855891166e-6,
    +0.3117724964715322277790254593169e-7,
    -0.5354219639019687140874081024347e-8,
    +0.9193275519859588946887786825940e-9,
    -0.1577941280288339761767423273953e-9,
    +0.2707980622934954543266540433089e-10,
    -0.4646818653825730144081661058933e-11,
    +0.7973350192007419656460767175359e-12,
    -0.1368078209830916025799499172309e-12,
    +0.2347319486563800657233471771688e-13,
    -0.4027432614949066932766570534699e-14,
    +0.6910051747372100912138336975257e-15,
    -0.1185584500221992907052387126192e-15,
)  # the first ngam = 22 of R's 42 coefficients
_ALGMCS = (
    +0.1666389480451863247205729650822e0,
    -0.1384948176067563840732986059135e-4,
    +0.9810825646924729426157171547487e-8,
    -0.1809129475572494194263306266719e-10,
    +0.6221098041892605227126015543416e-13,
)  # the first nalgm = 5 of R's 15 coefficients
_M_LN_SQRT_2PI = 0.918938533204672741780329736406


def _chebyshev_eval(x: float, a: tuple[float, ...]) -> float:
    twox = x * 2
    b0 = b1 = b2 = 0.0
    for coef in reversed(a):
        b2 = b1
        b1 = b0
        b0 = twox * b1 - b2 + coef
    return (b0 - b2) * 0.5


def r_lgamma(x: float) -> float:
    """R's ``lgamma(x)`` for ``x > 0`` (finite)."""
    if x <= 10:
        # gammafn(x) for 0 < x <= 10: gamma(1 + y) by a Chebyshev series, then recursion
        n = int(x)
        y = x - n
        n -= 1
        value = _chebyshev_eval(y * 2 - 1, _GAMCS) + 0.9375
        if n < 0:  # 0 < x < 1
            value /= x
        else:
            for i in range(1, n + 1):
                value *= y + i
        return math.log(abs(value))
    if x > 1e17:
        return x * (math.log(x) - 1.0)
    if x > 4934720.0:
        return _M_LN_SQRT_2PI + (x - 0.5) * math.log(x) - x
    if x < 94906265.62425156:  # lgammacor(x); always true here
        tmp = 10 / x
        cor = _chebyshev_eval(tmp * tmp * 2 - 1, _ALGMCS) / x
    else:  # pragma: no cover
        cor = 1 / (x * 12)
    return _M_LN_SQRT_2PI + (x - 0.5) * math.log(x) - x + cor


def lgamma(x) -> np.ndarray:
    """R's ``lgamma`` element-wise for positive finite values; Python's ``math.lgamma``
    elsewhere (inf at the poles 0, -1, ..., NaN for NaN)."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, np.nan)
    for i, xi in enumerate(x.ravel()):
        if not math.isnan(xi):
            try:
                out.flat[i] = math.lgamma(xi)
            except ValueError:
                out.flat[i] = math.inf
    flat, res = x.ravel(), out.ravel()
    for j in np.flatnonzero(np.isfinite(flat) & (flat > 0)):
        res[j] = r_lgamma(float(flat[j]))
    return res.reshape(x.shape)


def cmicalc(mi) -> np.ndarray:
    r"""metafor's exact small-sample correction of the standardized mean difference.

    .. math:: c(m) = \frac{\Gamma(m/2)}{\sqrt{m/2}\,\Gamma((m-1)/2)}
              = \exp\{\ln\Gamma(m/2) - \ln\sqrt{m/2} - \ln\Gamma((m-1)/2)\},

    NaN for :math:`m \le 1` (Hedges 1981, eq. 6e; approximately :math:`1 - 3/(4m - 1)`).
    """
    mi = np.asarray(mi, dtype=float)
    with np.errstate(invalid="ignore"):
        out = libm(math.exp, np.exp, lgamma(mi / 2) - log(np.sqrt(mi / 2)) - lgamma((mi - 1) / 2))
    return np.where(mi <= 1, np.nan, out)


def wmean(x: np.ndarray, w: np.ndarray) -> float:
    """metafor's ``.wmean(x, w, na.rm = TRUE)``: ``sum(x w) / sum(w)`` over the pairs without NaN
    (sums taken exactly, as R's long-double accumulation nearly does)."""
    ok = ~(np.isnan(x) | np.isnan(w))
    return math.fsum(x[ok] * w[ok]) / math.fsum(w[ok])
