"""``escalc``: effect sizes and sampling variances for every registered measure.

The input handling (columns or arrays, missing values, lengths, row names in messages) is shared;
the formulas live in one module per family (:mod:`.correlation`, :mod:`.continuous`,
:mod:`.prepost`, :mod:`.binary`, :mod:`.proportion`) and are found through the registry
(:mod:`.registry`).
"""

from __future__ import annotations

import math
import warnings
from numbers import Number
from typing import TYPE_CHECKING

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.effects import registry
from mlmeta.effects.inputs import (
    Col,
    Inputs,
    Rows,
    fmt,
    gather,
    length,
    resolve_data,
    rowlist,
    to_float,
)
from mlmeta.errors import DataWarning, InputError

__all__ = ["check_arguments", "compute_columns", "escalc"]

_TO = ("all", "only0", "if0all", "none")


def _required_message(m: registry.Measure, given: set[str]) -> str | None:
    """None if the given arguments fill every slot of ``m``, else the error message."""
    for slot in m.slots:
        if any(all(a in given for a in alt) for alt in slot):
            continue
        if len(slot) == 1:
            miss = next(a for a in slot[0] if a not in given)
            return f"measure {m.name!r} requires argument {miss!r}"
        best = max(slot, key=lambda alt: sum(a in given for a in alt))
        if any(a in given for a in best):
            miss = next(a for a in best if a not in given)
            return f"measure {m.name!r} requires argument {miss!r}"
        if all(len(alt) == 1 for alt in slot):
            return f"measure {m.name!r} requires argument " + " or ".join(
                repr(alt[0]) for alt in slot
            )
        others = " or ".join(repr(alt[0]) for alt in slot[1:])
        return (
            f"measure {m.name!r} requires arguments "
            + ", ".join(repr(a) for a in slot[0])
            + f" (or {others})"
        )
    return None


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
    xi=None,
    mi=None,
    ti=None,
    r2i=None,
    add: float | None = None,
    to: str = "only0",
    drop00: bool = False,
    vtype: str = "LS",
    drop_missing: bool = False,
) -> pd.DataFrame:
    r"""Effect sizes ``yi`` and sampling variances ``vi``, as ``metafor::escalc`` (3.8-1).

    Every data argument is either the name of a column of ``data`` or an array-like (a scalar is
    repeated for every row). The result has the index of ``data`` (or of the first Series
    argument, else ``0 .. k-1``). Where metafor silently returns NA for an impossible input (a
    correlation of 1 for ZCOR, a sample size of 3, a pooled SD of 0, a negative count, ...),
    ``escalc`` raises :class:`~mlmeta.errors.InputError` naming the column and the row.

    Measures (metafor's names; the formulas and references are in the docstring of each
    measure's function, ``mlmeta.effects.registry.get(name).doc``):

    ==========  =================================================  =========================
    measure     effect size                                        arguments
    ==========  =================================================  =========================
    ``COR``     raw correlation                                    ri, ni
    ``ZCOR``    Fisher's z of r (back-transform: tanh)             ri, ni
    ``PCOR``    partial correlation from a t statistic             ti, ni, mi
    ``ZPCOR``   Fisher's z of the partial correlation              ti, ni, mi
    ``SPCOR``   semi-partial correlation                           ti, ni, mi, r2i
    ``MD``      raw mean difference                                m1i sd1i n1i m2i sd2i n2i
    ``SMD``     Hedges' g (exact correction; or from di / ti)      m1i sd1i n1i m2i sd2i n2i
    ``SMDH``    SMD with heteroscedastic variances (Bonett)        m1i sd1i n1i m2i sd2i n2i
    ``ROM``     log ratio of means                                 m1i sd1i n1i m2i sd2i n2i
    ``MC``      raw mean change (pre-post)                         m1i sd1i m2i sd2i ni ri
    ``SMCC``    standardized mean change, change-score SD          m1i sd1i m2i sd2i ni ri
    ``SMCR``    standardized mean change, raw-score SD             m1i sd1i m2i ni ri
    ``SMCRH``   SMCR with heteroscedastic variances (Bonett)       m1i sd1i m2i sd2i ni ri
    ``OR``      log odds ratio                                     ai bi ci di (or n1i n2i)
    ``RR``      log risk ratio                                     ai bi ci di (or n1i n2i)
    ``RD``      risk difference                                    ai bi ci di (or n1i n2i)
    ``PETO``    log odds ratio, Peto's method                      ai bi ci di (or n1i n2i)
    ``PR``      raw proportion                                     xi, mi (or ni)
    ``PLN``     log proportion                                     xi, mi (or ni)
    ``PLO``     logit proportion                                   xi, mi (or ni)
    ``PAS``     arcsine square-root proportion                     xi, mi (or ni)
    ==========  =================================================  =========================

    For example ``SMD``: :math:`g = c(m)\,(\bar x_1 - \bar x_2)/s_p` with
    :math:`s_p^2 = ((n_1-1)s_1^2 + (n_2-1)s_2^2)/m`, :math:`m = n_1 + n_2 - 2` and the exact
    :math:`c(m) = \Gamma(m/2)/(\sqrt{m/2}\,\Gamma((m-1)/2))` (Hedges 1981), and
    :math:`v = 1/n_1 + 1/n_2 + g^2/(2(n_1+n_2))` (``vtype="LS"``); ``OR``:
    :math:`\log(a d / (b c))`, :math:`v = 1/a + 1/b + 1/c + 1/d` (Woolf 1955).

    Parameters
    ----------
    measure : str
        A registered measure (case-sensitive, as in metafor); see
        :func:`mlmeta.effects.registry.names`.
    data : pandas.DataFrame or mapping, optional
        Where column names are looked up.
    ri, ni, m1i, sd1i, n1i, m2i, sd2i, n2i, ai, bi, ci, di, xi, mi, ti, r2i : str or array-like
        Inputs, with metafor's names and meanings (see :mod:`mlmeta.effects.registry`): ``ri``
        correlations, ``ni`` sample sizes, ``m1i``/``m2i`` means, ``sd1i``/``sd2i`` SDs,
        ``n1i``/``n2i`` group sizes, ``ai bi ci di`` the 2x2 cells, ``xi``/``mi`` events and
        non-events (proportions), ``ti`` t statistics, ``mi`` also the number of predictors
        (partial correlations), ``r2i`` R^2, ``di`` also the uncorrected d (SMD). Counts need
        not be integers.
    add : float, optional
        Added to the cells of 2x2 tables and to the counts of proportions, see ``to``.
        Default 1/2 (0 for PAS), as metafor.
    to : {"only0", "all", "if0all", "none"}, default "only0"
        Which rows receive ``add``: those with a zero cell (``"only0"``), all (``"all"``), all
        if any row has a zero cell (``"if0all"``), none.
    drop00 : bool, default False
        2x2 tables: a study with no events in both groups, or only events in both groups, gets
        ``yi = vi = NaN`` (metafor's ``drop00 = TRUE``; with a :class:`DataWarning`).
    vtype : str, default "LS"
        Variance type; which are available depends on the measure (``registry.get(m).vtypes``):
        "LS" large-sample, "UB" unbiased, "LS2" alternative large-sample, "AV" with the
        sample-size weighted average effect, "HO" homoscedastic, "AVHO" both.
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
    Statistical Software, 36*(3). ``escalc`` in metafor 3.8-1 and its references.
    Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
    meta-analysis*, chapters 4-7. Wiley.

    Examples
    --------
    >>> escalc("ZCOR", ri=[0.3, -0.1], ni=[50, 120]).round(4)
           yi      vi
    0  0.3095  0.0213
    1 -0.1003  0.0085
    """
    if not isinstance(measure, str):
        raise InputError(f"measure must be a string, got {type(measure).__name__}")
    try:
        m = registry.get(measure)
    except KeyError:
        raise InputError(
            f"unknown measure {measure!r}; valid measures are: "
            f"{', '.join(map(repr, registry.names()))}"
        ) from None
    if not isinstance(vtype, str) or vtype not in m.vtypes:
        raise InputError(
            f"vtype={vtype!r} is not available for {measure}; use one of "
            f"{', '.join(map(repr, m.vtypes))}"
        )
    if not isinstance(to, str) or to not in _TO:
        raise InputError(f"to={to!r}: must be one of {', '.join(map(repr, _TO))}")
    if add is None:
        add = m.default_add
    if isinstance(add, bool) or not isinstance(add, Number):
        raise InputError(f"add={add!r}: must be a number")
    add = float(add)
    if not math.isfinite(add) or add < 0:
        raise InputError(f"add={add!r}: must be a finite number >= 0")
    if not isinstance(drop_missing, bool | np.bool_):
        raise InputError(f"drop_missing={drop_missing!r}: must be True or False")
    if not isinstance(drop00, bool | np.bool_):
        raise InputError(f"drop00={drop00!r}: must be True or False")

    supplied = {
        "ri": ri,
        "ni": ni,
        "m1i": m1i,
        "sd1i": sd1i,
        "n1i": n1i,
        "m2i": m2i,
        "sd2i": sd2i,
        "n2i": n2i,
        "ai": ai,
        "bi": bi,
        "ci": ci,
        "di": di,
        "xi": xi,
        "mi": mi,
        "ti": ti,
        "r2i": r2i,
    }
    given = {a: v for a, v in supplied.items() if v is not None}
    check_arguments(m, given)

    frame = resolve_data(data)
    index, k, raw, labels = gather(frame, given)
    rows = Rows(index)
    if k == 0:
        raise InputError("the data has no rows")

    cols: dict[str, Col] = {}
    for a in given:
        vals = to_float(raw[a], labels[a], rows)
        if length(raw[a]) is None and k != 1:
            vals = np.repeat(vals, k)
        cols[a] = Col(a, labels[a], vals)

    yi, vi, keep, missing_any = compute_columns(
        m,
        cols,
        k,
        rows,
        vtype=vtype,
        add=add,
        to=to,
        drop00=bool(drop00),
        drop_missing=drop_missing,
    )
    out = pd.DataFrame({"yi": yi, "vi": vi}, index=index)
    if missing_any.any():
        out = out.loc[keep]
    return out


def check_arguments(m, given) -> None:
    """InputError unless the argument names ``given`` are used by measure ``m`` and complete
    one of its input alternatives (e.g. ai, bi, ci, di or ai, n1i, ci, n2i for OR)."""
    for a in given:
        if a not in m.args:
            raise InputError(
                f"argument {a!r} is not used by measure {m.name!r} (it uses "
                f"{', '.join(map(repr, m.args))})"
            )
    msg = _required_message(m, set(given))
    if msg is not None:
        raise InputError(msg)


def compute_columns(
    m,
    cols: dict[str, Col],
    k: int,
    rows: Rows,
    *,
    vtype: str = "LS",
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = False,
    drop_missing: bool = False,
):
    """The computation of :func:`escalc` on float columns (no pandas): ``m`` is the measure's
    registry entry, ``cols`` its inputs by argument (label for messages, values with NaN where
    missing), ``rows`` names rows in messages. Returns ``(yi, vi, keep, missing)`` over all
    ``k`` rows (``keep``: rows without a missing input). Same rules, messages and warnings as
    :func:`escalc` (infinite inputs refused; infinite or undefined results and negative
    variances set to NaN with a DataWarning, as metafor does)."""
    measure = m.name
    # --- missing values: a row misses a slot when no alternative of it is complete ------------
    missing_any = np.zeros(k, dtype=bool)
    first_missing: tuple[int, str] | None = None
    for slot in m.slots:
        alts = [alt for alt in slot if all(a in cols for a in alt)]
        complete = np.zeros(k, dtype=bool)
        for alt in alts:
            complete |= np.logical_and.reduce([~np.isnan(cols[a].values) for a in alt])
        miss = ~complete
        if miss.any():
            pos = int(np.flatnonzero(miss)[0])
            arg = next(a for a in alts[0] if np.isnan(cols[a].values[pos]))
            if first_missing is None or pos < first_missing[0]:
                first_missing = (pos, arg)
            missing_any |= miss
    if first_missing is not None and not drop_missing:
        pos, a = first_missing
        raise InputError(
            f"column {cols[a].label!r}, {rows(pos)}: missing value; remove the row or use "
            "drop_missing=True"
        )
    keep = ~missing_any

    # --- infinite values -----------------------------------------------------------------------
    for a in m.args:
        if a in cols:
            bad = np.isinf(cols[a].values) & keep
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise InputError(
                    f"column {cols[a].label!r}, {rows(pos)}: value must be finite, got "
                    f"{fmt(cols[a].values[pos])}"
                )

    x = Inputs(measure, cols, keep, rows, vtype=vtype, add=add, to=to, drop00=bool(drop00))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        yi, vi = m.function(x)
    yi = np.asarray(yi, dtype=float)
    vi = np.asarray(vi, dtype=float)

    # metafor: infinite or NaN yi/vi are recoded to NA (both); a negative vi to NA (yi kept)
    live = keep & ~x.undefined
    bad = live & ~(np.isfinite(yi) & np.isfinite(vi))
    if bad.any():
        hint = " (zero cells without a continuity correction?)" if m.zero_cells else ""
        warnings.warn(
            f"escalc({measure!r}): yi/vi are infinite or undefined for "
            f"{rowlist(rows, np.flatnonzero(bad))}{hint}; set to NaN, as metafor does",
            DataWarning,
            stacklevel=3,
        )
    negative = live & ~bad & (vi < 0)
    if negative.any():
        warnings.warn(
            f"escalc({measure!r}): the sampling variance is negative for "
            f"{rowlist(rows, np.flatnonzero(negative))}; vi set to NaN, as metafor does",
            DataWarning,
            stacklevel=3,
        )
    nan = bad | x.undefined
    yi = np.where(nan, np.nan, yi)
    vi = np.where(nan | negative, np.nan, vi)

    if missing_any.any():
        warnings.warn(
            f"escalc({measure!r}): dropped {int(missing_any.sum())} of {k} rows with missing "
            f"values ({rowlist(rows, np.flatnonzero(missing_any))})",
            DataWarning,
            stacklevel=3,
        )
    return yi, vi, keep, missing_any
