"""Effect sizes and their sampling variances (metafor's ``escalc``) and effect-size conversions.

:func:`escalc` computes ``yi`` / ``vi`` for four measures with the definitions, argument names and
defaults of R's ``metafor::escalc`` (version 3.8-1): ``"ZCOR"``, ``"COR"``, ``"SMD"`` and ``"OR"``.
Where metafor silently returns ``NA`` for an impossible input (a correlation of 1 for ZCOR, a sample
size of 3, a pooled standard deviation of 0, ...) :func:`escalc` raises :class:`InputError` naming
the row and the column instead.

The conversions (:func:`ztor`, :func:`rtoz`, :func:`r_from_t`, :func:`r_from_f`, :func:`r_from_d`,
:func:`d_from_r`, :func:`ztor_int`) accept scalars or array-likes and broadcast like numpy; they
return a float for scalar input, a :class:`pandas.Series` (same index) when the first argument is a
Series, and a numpy array otherwise. ``NaN`` passes through them unchanged.

Rows are numbered from 1 in the order of the data (the data row, not the file line), or named by
the index label when the DataFrame has a non-default index.

References
----------
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
meta-analysis*. Wiley. (Chapters 4-7.)

Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced from a small
sample. *Metron, 1*, 3-32.

Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size and related
estimators. *Journal of Educational Statistics, 6*(2), 107-128.

Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48. (``escalc`` and ``transf`` help pages of metafor 3.8-1.)
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Number

import numpy as np
import pandas as pd
from scipy import integrate
from scipy.special import gammaln, roots_hermite

from mlmeta.errors import DataWarning, FitWarning, InputError

__all__ = [
    "MEASURES",
    "d_from_r",
    "escalc",
    "r_from_d",
    "r_from_f",
    "r_from_t",
    "rtoz",
    "ztor",
    "ztor_int",
]

#: The measures :func:`escalc` knows.
MEASURES = ("COR", "OR", "SMD", "ZCOR")

_USES = {
    "ZCOR": ("ri", "ni"),
    "COR": ("ri", "ni"),
    "SMD": ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),
    "OR": ("ai", "bi", "ci", "di", "n1i", "n2i"),
}
_VTYPES = {
    "ZCOR": ("LS",),
    "COR": ("LS", "AV"),
    "SMD": ("LS", "UB", "LS2", "AV"),
    "OR": ("LS",),
}
_TO = ("all", "only0", "if0all", "none")
_MISSING_STRINGS = ("", "NA")


# ------------------------------------------------------------------------------------------------
# input handling
# ------------------------------------------------------------------------------------------------


def _fmt(v) -> str:
    """A value for a message: ``repr`` of the float (``1.0``, ``-1.5``, ``inf``)."""
    if isinstance(v, float | np.floating):
        return repr(float(v))
    return repr(v)


def _fmt_count(v: float) -> str:
    """Counts and sample sizes: ``12`` rather than ``12.0`` when integral."""
    v = float(v)
    if math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class _Rows:
    """Row naming: 'row N' (1-based) for a default index, else 'row <index label>'."""

    def __init__(self, index: pd.Index):
        self.index = index
        self.default = (
            isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
        )

    def __call__(self, pos: int) -> str:
        if self.default:
            return f"row {pos + 1}"
        label = self.index[pos]
        if isinstance(label, np.generic):
            label = label.item()
        return f"row {label!s}"


@dataclass
class _Col:
    arg: str  # metafor's argument name
    label: str  # the column name if given by name, else the argument name
    values: np.ndarray  # float; NaN where missing


def _cells_to_float(cells: np.ndarray, label: str, rows: _Rows) -> np.ndarray:
    """Element-wise conversion of object cells; missing -> NaN, non-numeric -> InputError."""
    out = np.empty(len(cells), dtype=float)
    for i, x in enumerate(cells):
        if x is None or x is pd.NA or x is pd.NaT:
            out[i] = np.nan
        elif isinstance(x, bool | np.bool_):
            raise InputError(f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}")
        elif isinstance(x, str):
            s = x.strip()
            if s in _MISSING_STRINGS:
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
                out[i] = float(x)
            except (TypeError, ValueError):
                raise InputError(
                    f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}"
                ) from None
        else:
            raise InputError(f"column {label!r}, {rows(i)}: value must be numeric, got {x!r}")
    return out


def _to_float(values, label: str, rows: _Rows) -> np.ndarray:
    """Numeric 1-d float array (NaN for missing) from a Series / array-like."""
    if isinstance(values, pd.Series | pd.Index):
        dtype = values.dtype
        if pd.api.types.is_bool_dtype(dtype):
            raise InputError(f"column {label!r} must be numeric, got true/false values")
        if pd.api.types.is_numeric_dtype(dtype):
            return values.to_numpy(dtype=float, na_value=np.nan)
        return _cells_to_float(values.to_numpy(dtype=object), label, rows)
    if isinstance(values, list | tuple):
        # element by element, so that e.g. [10, True] is not silently read as [10, 1]
        arr = np.empty(len(values), dtype=object)
        try:
            arr[:] = values
        except ValueError:
            shape = np.shape(np.asarray(values, dtype=object))
            raise InputError(f"column {label!r} must be one-dimensional, got shape {shape}") \
                from None
        if any(np.ndim(v) > 0 for v in arr):
            shape = np.shape(np.asarray(values, dtype=object))
            raise InputError(f"column {label!r} must be one-dimensional, got shape {shape}")
        return _cells_to_float(arr, label, rows)
    arr = np.asarray(values)
    if arr.ndim > 1:
        raise InputError(f"column {label!r} must be one-dimensional, got shape {arr.shape}")
    arr = np.atleast_1d(arr)
    if arr.dtype.kind == "b":
        raise InputError(f"column {label!r} must be numeric, got true/false values")
    if arr.dtype.kind in "iuf":
        return arr.astype(float)
    return _cells_to_float(arr.astype(object), label, rows)


def _length(v) -> int | None:
    """Number of values of an array-like argument; None for a scalar (repeated for every row)."""
    if isinstance(v, np.ndarray | np.generic):
        return None if v.ndim == 0 else len(v)
    if isinstance(v, pd.Series | pd.Index | list | tuple):
        return len(v)
    if isinstance(v, Number) or v is pd.NA:
        return None
    try:
        return len(v)
    except TypeError:
        return None


def _resolve_data(data) -> pd.DataFrame | None:
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


def _gather(data: pd.DataFrame | None, given: dict[str, object]):
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
                raise InputError(f"column {spec!r} (argument {arg!r}) appears more than once "
                                 "in the data")
            raw[arg] = col
            labels[arg] = spec
        else:
            if isinstance(spec, pd.DataFrame):
                raise InputError(f"argument {arg!r} must be a column name or a 1-d array, "
                                 "got a DataFrame")
            raw[arg] = spec
            labels[arg] = arg

    lengths = {a: n for a, v in raw.items() if (n := _length(v)) is not None}  # scalars repeat
    if data is not None:
        k = len(data)
        for arg, n in lengths.items():
            if n != k:
                raise InputError(
                    f"column {labels[arg]!r} has {n} values but the data has {k} rows"
                )
        index = data.index
    else:
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{labels[a]!r} {n}" for a, n in lengths.items())
            raise InputError(f"the inputs have different lengths: {desc}")
        k = next(iter(lengths.values()), 1)
        index = None
        for arg in given:
            if isinstance(raw[arg], pd.Series):
                index = raw[arg].index
                break
        if index is None:
            index = pd.RangeIndex(k)
    return index, k, raw, labels


# ------------------------------------------------------------------------------------------------
# escalc
# ------------------------------------------------------------------------------------------------


def _libm(fun, npfun, x) -> np.ndarray:
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


def _log(x) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _libm(math.log, np.log, x)


# R's lgamma() for x > 0 (nmath: lgammafn, gammafn, lgammacor, chebyshev_eval; W. Fullerton's
# algorithms), so that the SMD correction factor reproduces metafor's bit for bit. scipy's gammaln
# differs from it by a few units in the last place, which the difference of two lgamma values of
# size ~n log n turns into relative errors of ~1e-13 in c(m) and ~1e-11 in vtype="UB" variances.
_GAMCS = (
    +.8571195590989331421920062399942e-2, +.4415381324841006757191315771652e-2,
    +.5685043681599363378632664588789e-1, -.4219835396418560501012500186624e-2,
    +.1326808181212460220584006796352e-2, -.1893024529798880432523947023886e-3,
    +.3606925327441245256578082217225e-4, -.6056761904460864218485548290365e-5,
    +.1055829546302283344731823509093e-5, -.1811967365542384048291855891166e-6,
    +.3117724964715322277790254593169e-7, -.5354219639019687140874081024347e-8,
    +.9193275519859588946887786825940e-9, -.1577941280288339761767423273953e-9,
    +.2707980622934954543266540433089e-10, -.4646818653825730144081661058933e-11,
    +.7973350192007419656460767175359e-12, -.1368078209830916025799499172309e-12,
    +.2347319486563800657233471771688e-13, -.4027432614949066932766570534699e-14,
    +.6910051747372100912138336975257e-15, -.1185584500221992907052387126192e-15,
)  # the first ngam = 22 of R's 42 coefficients
_ALGMCS = (
    +.1666389480451863247205729650822e+0, -.1384948176067563840732986059135e-4,
    +.9810825646924729426157171547487e-8, -.1809129475572494194263306266719e-10,
    +.6221098041892605227126015543416e-13,
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


def _r_lgamma(x: float) -> float:
    """R's ``lgamma(x)`` for ``x > 0`` (finite)."""
    if x <= 10:
        # gammafn(x) for 0 < x <= 10: gamma(1 + y) by a Chebyshev series, then recursion
        n = int(x)
        y = x - n
        n -= 1
        value = _chebyshev_eval(y * 2 - 1, _GAMCS) + .9375
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


def _lgamma(x) -> np.ndarray:
    """R's lgamma element-wise for positive finite values; scipy's gammaln elsewhere."""
    x = np.asarray(x, dtype=float)
    out = np.array(gammaln(x), dtype=float)
    flat, res = x.ravel(), out.ravel()
    for i in np.flatnonzero(np.isfinite(flat) & (flat > 0)):
        res[i] = _r_lgamma(float(flat[i]))
    return res.reshape(x.shape)


def _cmicalc(mi: np.ndarray) -> np.ndarray:
    """metafor's exact small-sample correction ``Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))``."""
    mi = np.asarray(mi, dtype=float)
    with np.errstate(invalid="ignore"):
        out = _libm(math.exp, np.exp,
                    _lgamma(mi / 2) - _log(np.sqrt(mi / 2)) - _lgamma((mi - 1) / 2))
    return np.where(mi <= 1, np.nan, out)


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    """metafor's ``.wmean(x, w, na.rm = TRUE)``: ``sum(x w) / sum(w)``."""
    ok = ~(np.isnan(x) | np.isnan(w))
    return math.fsum(x[ok] * w[ok]) / math.fsum(w[ok])


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _rowlist(rows: _Rows, positions, limit: int = 10) -> str:
    positions = list(positions)
    names = [rows(p).removeprefix("row ") for p in positions[:limit]]
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    word = "row" if len(positions) == 1 else "rows"
    return f"{word} {', '.join(names)}{more}"


def escalc(
    measure: str,
    data=None,
    *,
    ri=None,
    ni=None,
    m1i=None,
    sd1i=None,
    n1i=None,
    m2i=None,
    sd2i=None,
    n2i=None,
    ai=None,
    bi=None,
    ci=None,
    di=None,
    add: float = 0.5,
    to: str = "only0",
    vtype: str = "LS",
    drop_missing: bool = False,
) -> pd.DataFrame:
    r"""Effect sizes ``yi`` and sampling variances ``vi``, as ``metafor::escalc`` (3.8-1).

    Every data argument is either the name of a column of ``data`` or an array-like (a scalar is
    repeated for every row). The result has the index of ``data`` (or of the first Series
    argument, else ``0 .. k-1``).

    Measures (``m`` = ``n1i + n2i - 2``):

    ``"ZCOR"`` - Fisher's r-to-z transformed correlation (Fisher 1921):
        ``yi = 1/2 log((1 + ri) / (1 - ri))`` (= atanh(ri)), ``vi = 1 / (ni - 3)``.
        Needs ``-1 < ri < 1`` and ``ni > 3``.
    ``"COR"`` - raw correlation: ``yi = ri``; ``vtype="LS"``: ``vi = (1 - ri^2)^2 / (ni - 1)``;
        ``vtype="AV"``: ``ri^2`` replaced by the square of the ``ni``-weighted mean of ``ri``.
        Needs ``|ri| <= 1`` and ``ni > 3`` (metafor 3.8-1 sets ``vi`` to NA for ``ni <= 3``
        also for COR). ``|ri| = 1`` gives ``vi = 0`` and a :class:`DataWarning`.
    ``"SMD"`` - Hedges' g (Hedges 1981): ``yi = c(m) (m1i - m2i) / s_p`` with the pooled SD
        ``s_p = sqrt(((n1i - 1) sd1i^2 + (n2i - 1) sd2i^2) / m)`` and the *exact* correction
        ``c(m) = exp(lgamma(m/2) - log(sqrt(m/2)) - lgamma((m-1)/2))`` (not ``1 - 3/(4m - 1)``).
        Variances (``d`` = the uncorrected ``(m1i - m2i) / s_p``, ``N = n1i + n2i``):

        - ``"LS"`` (default): ``vi = 1/n1i + 1/n2i + yi^2 / (2 N)`` (note: ``yi``, i.e. g, in the
          last term, and ``N`` rather than ``N - 2``);
        - ``"UB"``: ``vi = 1/n1i + 1/n2i + (1 - (m - 2) / (m c(m)^2)) yi^2`` (unbiased);
        - ``"LS2"``: ``vi = c(m)^2 (1/n1i + 1/n2i + d^2 / (2 N))``;
        - ``"AV"``: as ``"LS"`` with ``yi`` replaced by the ``N``-weighted mean of ``yi``.

        Needs ``sd >= 0``, ``n1i, n2i > 0``, ``n1i + n2i > 3`` (``c(m)`` is undefined for
        ``m <= 1``) and ``s_p > 0``.
    ``"OR"`` - log odds ratio from the 2x2 table ``ai bi / ci di`` (``bi = n1i - ai`` and
        ``di = n2i - ci`` when group sizes are given instead; when both are given they must
        agree). With ``to="only0"`` (default) ``add`` (default 1/2) is added to all four cells of
        the studies that have a zero cell; ``to="all"``: to every study; ``to="if0all"``: to every
        study if any study has a zero cell; ``to="none"``: never. Then, with ``p1 = ai / (ai+bi)``,
        ``p2 = ci / (ci+di)``: ``yi = log(p1 / (1 - p1)) - log(p2 / (1 - p2))`` and
        ``vi = 1/ai + 1/bi + 1/ci + 1/di`` (Woolf). A double-zero study (``ai = ci = 0``) is
        kept, as in metafor (``drop00 = FALSE``). Infinite values (a zero cell with
        ``to="none"`` or ``add=0``) become NaN with a :class:`DataWarning`, as metafor recodes
        them to NA.

    Parameters
    ----------
    measure : {"ZCOR", "COR", "SMD", "OR"}
        The effect-size measure (case-sensitive, as in metafor).
    data : pandas.DataFrame or mapping, optional
        Where column names are looked up.
    ri, ni : str or array-like
        Correlations and sample sizes (ZCOR, COR).
    m1i, sd1i, n1i, m2i, sd2i, n2i : str or array-like
        Means, standard deviations and group sizes of group 1 and 2 (SMD); ``n1i``/``n2i`` are
        also the group sizes for OR.
    ai, bi, ci, di : str or array-like
        Cells of the 2x2 tables (OR): events / non-events in group 1 (``ai``, ``bi``) and in group
        2 (``ci``, ``di``). Counts need not be integers.
    add : float, default 0.5
        Value added to the cells (OR only), see ``to``.
    to : {"only0", "all", "if0all", "none"}, default "only0"
        Which studies receive ``add`` (OR only).
    vtype : str, default "LS"
        Variance type: "LS", "UB", "LS2", "AV" for SMD; "LS", "AV" for COR; "LS" for ZCOR and OR.
    drop_missing : bool, default False
        ``False``: a missing value (NaN, None, empty string, "NA") is an :class:`InputError`
        naming its row and column. ``True``: rows with a missing input are left out of the result
        and announced with a :class:`DataWarning`.

    Returns
    -------
    pandas.DataFrame
        Columns ``yi`` and ``vi``.

    Raises
    ------
    InputError
        Unknown measure or option, a missing or superfluous argument, an unknown column, inputs of
        different lengths, a non-numeric, missing (unless ``drop_missing``) or infinite value, or
        a value outside the measure's domain; the one-line message names the row and the column.

    References
    ----------
    Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
    Statistical Software, 36*(3). ``escalc`` in metafor 3.8-1.
    Hedges, L. V. (1981). *Journal of Educational Statistics, 6*(2), 107-128.
    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
    meta-analysis*, chapters 4-6. Wiley.
    Fisher, R. A. (1921). *Metron, 1*, 3-32.

    Examples
    --------
    >>> escalc("ZCOR", ri=[0.3, -0.1], ni=[50, 120]).round(4)
           yi      vi
    0  0.3095  0.0213
    1 -0.1003  0.0085
    """
    if not isinstance(measure, str):
        raise InputError(f"measure must be a string, got {type(measure).__name__}")
    if measure not in MEASURES:
        raise InputError(
            f"unknown measure {measure!r}; valid measures are: {', '.join(map(repr, MEASURES))}"
        )
    if not isinstance(vtype, str) or vtype not in _VTYPES[measure]:
        raise InputError(
            f"vtype={vtype!r} is not available for {measure}; use one of "
            f"{', '.join(map(repr, _VTYPES[measure]))}"
        )
    if not isinstance(to, str) or to not in _TO:
        raise InputError(f"to={to!r}: must be one of {', '.join(map(repr, _TO))}")
    if isinstance(add, bool) or not isinstance(add, Number):
        raise InputError(f"add={add!r}: must be a number")
    add = float(add)
    if not math.isfinite(add) or add < 0:
        raise InputError(f"add={add!r}: must be a finite number >= 0")
    if not isinstance(drop_missing, bool | np.bool_):
        raise InputError(f"drop_missing={drop_missing!r}: must be True or False")

    supplied = {"ri": ri, "ni": ni, "m1i": m1i, "sd1i": sd1i, "n1i": n1i, "m2i": m2i,
                "sd2i": sd2i, "n2i": n2i, "ai": ai, "bi": bi, "ci": ci, "di": di}
    given = {a: v for a, v in supplied.items() if v is not None}
    uses = _USES[measure]
    for a in given:
        if a not in uses:
            raise InputError(
                f"argument {a!r} is not used by measure {measure!r} (it uses "
                f"{', '.join(map(repr, uses))})"
            )
    if measure == "OR":
        for a in ("ai", "ci"):
            if a not in given:
                raise InputError(f"measure 'OR' requires argument {a!r}")
        if "bi" not in given and "n1i" not in given:
            raise InputError("measure 'OR' requires argument 'bi' or 'n1i'")
        if "di" not in given and "n2i" not in given:
            raise InputError("measure 'OR' requires argument 'di' or 'n2i'")
    else:
        for a in uses:
            if a not in given:
                raise InputError(f"measure {measure!r} requires argument {a!r}")

    frame = _resolve_data(data)
    index, k, raw, labels = _gather(frame, given)
    rows = _Rows(index)
    if k == 0:
        raise InputError("the data has no rows")

    cols: dict[str, _Col] = {}
    for a in given:
        vals = _to_float(raw[a], labels[a], rows)
        if _length(raw[a]) is None and k != 1:
            vals = np.repeat(vals, k)
        cols[a] = _Col(a, labels[a], vals)

    # --- missing values ------------------------------------------------------------------------
    def is_missing(a: str) -> np.ndarray:
        return np.isnan(cols[a].values)

    if measure == "OR":
        groups = [("ai",), ("ci",), ("bi", "n1i"), ("di", "n2i")]
    else:
        groups = [(a,) for a in uses]
    missing_any = np.zeros(k, dtype=bool)
    first_missing: tuple[int, str] | None = None
    for alternatives in groups:
        present = [a for a in alternatives if a in cols]
        miss = np.logical_and.reduce([is_missing(a) for a in present])
        if miss.any():
            pos = _first(miss)
            if first_missing is None or pos < first_missing[0]:
                first_missing = (pos, present[0])
            missing_any |= miss
    if first_missing is not None and not drop_missing:
        pos, a = first_missing
        raise InputError(
            f"column {cols[a].label!r}, {rows(pos)}: missing value; remove the row or use "
            "drop_missing=True"
        )
    keep = ~missing_any

    # --- infinite values -----------------------------------------------------------------------
    for a in uses:
        if a in cols:
            bad = np.isinf(cols[a].values) & keep
            if bad.any():
                pos = _first(bad)
                raise InputError(
                    f"column {cols[a].label!r}, {rows(pos)}: value must be finite, got "
                    f"{_fmt(cols[a].values[pos])}"
                )

    def check(mask: np.ndarray, a: str, text: str, count: bool = False) -> None:
        mask = mask & keep
        if mask.any():
            pos = _first(mask)
            v = cols[a].values[pos]
            shown = _fmt_count(v) if count else _fmt(v)
            raise InputError(f"column {cols[a].label!r}, {rows(pos)}: {text}, got {shown}")

    with np.errstate(invalid="ignore", divide="ignore"):
        if measure in ("ZCOR", "COR"):
            yi, vi = _escalc_cor(measure, cols, vtype, keep, rows, check)
        elif measure == "SMD":
            yi, vi = _escalc_smd(cols, vtype, keep, rows, check)
        else:
            yi, vi = _escalc_or(cols, add, to, keep, rows, check)

    # metafor: infinite or NaN yi/vi are recoded to NA; negative vi -> NA
    bad = keep & ~(np.isfinite(yi) & np.isfinite(vi) & (vi >= 0))
    if bad.any():
        warnings.warn(
            f"escalc({measure!r}): yi/vi are infinite or undefined for "
            f"{_rowlist(rows, np.flatnonzero(bad))} (zero cells without a continuity correction?);"
            " set to NaN, as metafor does",
            DataWarning,
            stacklevel=2,
        )
        yi = np.where(bad, np.nan, yi)
        vi = np.where(bad, np.nan, vi)

    out = pd.DataFrame({"yi": yi, "vi": vi}, index=index)
    if missing_any.any():
        warnings.warn(
            f"escalc({measure!r}): dropped {int(missing_any.sum())} of {k} rows with missing "
            f"values ({_rowlist(rows, np.flatnonzero(missing_any))})",
            DataWarning,
            stacklevel=2,
        )
        out = out.loc[keep]
    return out


def _escalc_cor(measure, cols, vtype, keep, rows, check):
    r = cols["ri"].values
    n = cols["ni"].values
    if measure == "ZCOR":
        check(np.abs(r) >= 1, "ri", "correlation must be strictly between -1 and 1 for ZCOR")
        check(n <= 3, "ni", "sample size must be greater than 3 for ZCOR (vi = 1/(n - 3))",
              count=True)
        yi = 0.5 * _log((1 + r) / (1 - r))
        vi = 1 / (n - 3)
        return yi, vi
    check(np.abs(r) > 1, "ri", "correlation must be between -1 and 1 for COR")
    check(n <= 3, "ni", "sample size must be greater than 3 for COR (metafor 3.8-1 leaves vi "
          "undefined for n <= 3)", count=True)
    yi = r.copy()
    if vtype == "AV":
        mn = _wmean(np.where(keep, yi, np.nan), n)
        vi = (1 - mn**2) ** 2 / (n - 1)
    else:
        vi = (1 - yi**2) ** 2 / (n - 1)
    one = keep & (np.abs(r) == 1)
    if one.any() and vtype == "LS":
        warnings.warn(
            f"escalc('COR'): |r| = 1 gives a sampling variance of 0 in "
            f"{_rowlist(rows, np.flatnonzero(one))} (column {cols['ri'].label!r}); these rows "
            "would get infinite weight",
            DataWarning,
            stacklevel=3,
        )
    return yi, vi


def _escalc_smd(cols, vtype, keep, rows, check):
    m1, sd1, n1 = cols["m1i"].values, cols["sd1i"].values, cols["n1i"].values
    m2, sd2, n2 = cols["m2i"].values, cols["sd2i"].values, cols["n2i"].values
    check(sd1 < 0, "sd1i", "standard deviation must be non-negative")
    check(sd2 < 0, "sd2i", "standard deviation must be non-negative")
    check(n1 <= 0, "n1i", "group size must be positive", count=True)
    check(n2 <= 0, "n2i", "group size must be positive", count=True)
    small = keep & (n1 + n2 <= 3)
    if small.any():
        pos = _first(small)
        raise InputError(
            f"columns {cols['n1i'].label!r} and {cols['n2i'].label!r}, {rows(pos)}: total sample "
            "size n1i + n2i must be greater than 3 for SMD (the correction factor needs "
            f"n1i + n2i - 2 > 1), got {_fmt_count(n1[pos] + n2[pos])}"
        )
    mi = n1 + n2 - 2
    sdp = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / mi)
    zero = keep & (sdp == 0)
    if zero.any():
        pos = _first(zero)
        raise InputError(
            f"columns {cols['sd1i'].label!r} and {cols['sd2i'].label!r}, {rows(pos)}: the pooled "
            "standard deviation is 0, so SMD is undefined (sd1i = "
            f"{_fmt(sd1[pos])}, sd2i = {_fmt(sd2[pos])})"
        )
    npi = n1 + n2
    d = (m1 - m2) / sdp
    cmi = _cmicalc(mi)
    yi = cmi * d
    if vtype == "LS":
        vi = 1 / n1 + 1 / n2 + yi**2 / (2 * npi)
    elif vtype == "UB":
        vi = 1 / n1 + 1 / n2 + (1 - (mi - 2) / (mi * cmi**2)) * yi**2
    elif vtype == "LS2":
        vi = cmi**2 * (1 / n1 + 1 / n2 + d**2 / (2 * npi))
    else:  # AV
        mn = _wmean(np.where(keep, yi, np.nan), npi)
        vi = 1 / n1 + 1 / n2 + mn**2 / (2 * npi)
    return yi, vi


def _escalc_or(cols, add, to, keep, rows, check):
    a = cols["ai"].values
    c = cols["ci"].values
    for name in ("ai", "bi", "ci", "di"):
        if name in cols:
            check(cols[name].values < 0, name, "counts must be non-negative", count=True)
    for name in ("n1i", "n2i"):
        if name in cols:
            check(cols[name].values <= 0, name, "group size must be positive", count=True)

    def other_cell(cell, nname, ename):
        """bi from bi and/or n1i (metafor: bi <- replmiss(bi, n1i - ai))."""
        ev = cols[ename]
        if nname in cols:
            nn = cols[nname].values
            over = keep & (ev.values > nn)
            if over.any():
                pos = _first(over)
                raise InputError(
                    f"column {ev.label!r}, {rows(pos)}: count must not exceed the group size in "
                    f"column {cols[nname].label!r} ({_fmt_count(nn[pos])}), got "
                    f"{_fmt_count(ev.values[pos])}"
                )
        if cell in cols and nname in cols:
            b = cols[cell].values
            nn = cols[nname].values
            both = keep & ~np.isnan(b) & ~np.isnan(nn)
            bad = both & (nn != ev.values + b)
            if bad.any():
                pos = _first(bad)
                raise InputError(
                    f"column {cols[nname].label!r}, {rows(pos)}: group size must equal "
                    f"{ename} + {cell} = {_fmt_count(ev.values[pos] + b[pos])}, got "
                    f"{_fmt_count(nn[pos])}"
                )
            return np.where(np.isnan(b), nn - ev.values, b)
        if cell in cols:
            b = cols[cell].values
            empty = keep & (ev.values + b <= 0)
            if empty.any():
                pos = _first(empty)
                raise InputError(
                    f"columns {ev.label!r} and {cols[cell].label!r}, {rows(pos)}: group size "
                    f"{ename} + {cell} must be positive, got {_fmt_count(ev.values[pos] + b[pos])}"
                )
            return b
        return cols[nname].values - ev.values

    b = other_cell("bi", "n1i", "ai")
    d = other_cell("di", "n2i", "ci")
    a, b, c, d = (np.array(x, dtype=float) for x in (a, b, c, d))
    if to == "all":
        a, b, c, d = a + add, b + add, c + add, d + add
    elif to in ("only0", "if0all"):
        id0 = keep & ((a == 0) | (b == 0) | (c == 0) | (d == 0))
        if to == "only0":
            a, b, c, d = (np.where(id0, x + add, x) for x in (a, b, c, d))
        elif id0.any():
            a, b, c, d = a + add, b + add, c + add, d + add
    p1 = a / (a + b)
    p2 = c / (c + d)
    yi = _log(p1 / (1 - p1)) - _log(p2 / (1 - p2))
    vi = 1 / a + 1 / b + 1 / c + 1 / d
    return yi, vi


# ------------------------------------------------------------------------------------------------
# conversions
# ------------------------------------------------------------------------------------------------


def _arg(x, name: str) -> np.ndarray:
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
            out[i] = float(v)
        else:
            where = f"argument {name!r}" if arr.ndim == 0 else f"argument {name!r}, element {i + 1}"
            raise InputError(f"{where}: value must be numeric, got {v!r}")
    return out.reshape(arr.shape)


def _check(mask: np.ndarray, arr: np.ndarray, name: str, text: str) -> None:
    """Raise for the first element where ``mask`` holds (NaN never fails)."""
    mask = np.asarray(mask) & ~np.isnan(arr)
    if mask.any():
        flat = np.flatnonzero(mask.ravel())[0]
        value = arr.ravel()[flat]
        where = f"argument {name!r}" if arr.ndim == 0 else f"argument {name!r}, element {flat + 1}"
        raise InputError(f"{where}: {text}, got {_fmt(value)}")


def _out(result: np.ndarray, like):
    """Float for scalar input, Series for a Series first argument, else ndarray."""
    if isinstance(like, pd.Series) and np.ndim(result) == 1 and len(result) == len(like):
        return pd.Series(result, index=like.index, name=like.name)
    if np.ndim(result) == 0:
        return float(result)
    return result


def _broadcast(*arrays):
    try:
        return np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise InputError(f"arguments cannot be broadcast together: {exc}") from None


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
    zz = _arg(z, "z")
    return _out(_libm(math.tanh, np.tanh, zz), z)


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
    rr = _arg(r, "r")
    _check(np.abs(rr) > 1, rr, "r", "correlation must be between -1 and 1")
    with np.errstate(divide="ignore"):
        return _out(_libm(math.atanh, np.arctanh, rr), r)


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
    tt, dd = _broadcast(_arg(t, "t"), _arg(df, "df"))
    _check(np.isinf(tt), tt, "t", "t statistic must be finite")
    _check(~(dd > 0), dd, "df", "degrees of freedom must be positive")
    return _out(tt / np.sqrt(tt**2 + dd), t)


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
    ff, dd, ss = _broadcast(_arg(F, "F"), _arg(df2, "df2"), _arg(sign, "sign"))
    _check(~np.isfinite(ff) | (ff < 0), ff, "F", "F statistic must be finite and >= 0")
    _check(~(dd > 0), dd, "df2", "degrees of freedom must be positive")
    _check((ss != 1) & (ss != -1), ss, "sign", "sign must be +1 or -1")
    return _out(ss * np.sqrt(ff / (ff + dd)), F)


def _a_factor(n1, n2):
    """``a = (n1 + n2)^2 / (n1 n2)``; 4 when no sizes are given."""
    if (n1 is None) != (n2 is None):
        raise InputError("give both n1 and n2, or neither (equal group sizes, a = 4)")
    if n1 is None:
        return None
    a1, a2 = _arg(n1, "n1"), _arg(n2, "n2")
    _check(~(a1 > 0) | np.isinf(a1), a1, "n1", "group size must be positive and finite")
    _check(~(a2 > 0) | np.isinf(a2), a2, "n2", "group size must be positive and finite")
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
    dd = _arg(d, "d")
    _check(np.isinf(dd), dd, "d", "d must be finite")
    a = _a_factor(n1, n2)
    if a is None:
        a = np.float64(4.0)
    dd, a = _broadcast(dd, a)
    return _out(dd / np.sqrt(dd**2 + a), d)


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
    rr = _arg(r, "r")
    _check(np.abs(rr) > 1, rr, "r", "correlation must be between -1 and 1")
    a = _a_factor(n1, n2)
    if a is None:
        a = np.float64(4.0)
    rr, a = _broadcast(rr, a)
    with np.errstate(divide="ignore"):
        return _out(np.sqrt(a) * rr / np.sqrt(1 - rr**2), r)


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
        f, z - 10 * sd, z + 10 * sd, epsabs=_R_INTEGRATE_TOL, epsrel=_R_INTEGRATE_TOL, limit=100,
        full_output=1,
    )
    if rest:  # pragma: no cover - QUADPACK's ier != 0 (R's integrate() would stop here)
        warnings.warn(f"ztor_int: integration for z = {z!r}, vi_total = {v!r} reported: {rest[0]}",
                      FitWarning, stacklevel=3)
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
    zz, vv = _broadcast(_arg(z, "z"), _arg(vi_total, "vi_total"))
    _check(np.isinf(zz), zz, "z", "z must be finite")
    _check((vv < 0) | np.isinf(vv), vv, "vi_total", "variance must be finite and >= 0")
    if n_points is not None and (
        isinstance(n_points, bool) or not isinstance(n_points, int | np.integer) or n_points < 2
    ):
        raise InputError(f"n_points={n_points!r}: must be None or an integer >= 2")
    out = _libm(math.tanh, np.tanh, zz)
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
    return _out(out, z)
