"""2x2 tables (two groups, binary outcome): OR, RR, RD and PETO.

A row gives the cells ``ai`` (events) and ``bi`` (non-events) of group 1 and ``ci``, ``di`` of
group 2; ``bi`` and ``di`` may be replaced by the group sizes ``n1i``, ``n2i`` (then
``bi = n1i - ai``; when both are given they must agree). Each function takes the
:class:`~mlmeta.effects.inputs.Inputs` of :func:`mlmeta.escalc` and returns ``(yi, vi)``.

Zero cells, as metafor's ``escalc`` (3.8-1): with ``to="only0"`` (default) ``add`` (default 1/2)
is added to all four cells of the tables that have a zero cell; ``"all"``: to every table;
``"if0all"``: to every table if any has a zero cell; ``"none"``: never. This applies to all four
measures (also to RD and PETO, as in metafor). With ``drop00=True`` a table with no events in
both groups (``ai = ci = 0``) or only events (``bi = di = 0``) gets ``yi = vi = NaN`` before
anything is added.

References
----------
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
meta-analysis*, chapter 5. Wiley.
Woolf, B. (1955). On estimating the relation between blood group and disease. *Annals of Human
Genetics, 19*(4), 251-253.
Yusuf, S., Peto, R., Lewis, J., Collins, R., & Sleight, P. (1985). Beta blockade during and
after myocardial infarction: An overview of the randomized trials. *Progress in Cardiovascular
Diseases, 27*(5), 335-371.
"""

from __future__ import annotations

import numpy as np

from mlmeta.effects.inputs import Inputs, fmt_count
from mlmeta.effects.rmath import log
from mlmeta.errors import InputError

__all__ = ["odds_ratio", "peto", "risk_difference", "risk_ratio", "table"]


def _other_cell(x: Inputs, cell: str, nname: str, ename: str) -> np.ndarray:
    """bi from bi and/or n1i (metafor: bi <- replmiss(bi, n1i - ai)), with the checks."""
    ev = x.cols[ename]
    keep = x.keep
    if x.has(nname):
        nn = x[nname]
        over = keep & (ev.values > nn)
        if over.any():
            pos = int(np.flatnonzero(over)[0])
            raise InputError(
                f"column {ev.label!r}, {x.rows(pos)}: count must not exceed the group size in "
                f"column {x.label(nname)!r} ({fmt_count(nn[pos])}), got "
                f"{fmt_count(ev.values[pos])}"
            )
    if x.has(cell) and x.has(nname):
        b, nn = x[cell], x[nname]
        both = keep & ~np.isnan(b) & ~np.isnan(nn)
        bad = both & (nn != ev.values + b)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"column {x.label(nname)!r}, {x.rows(pos)}: group size must equal "
                f"{ename} + {cell} = {fmt_count(ev.values[pos] + b[pos])}, got "
                f"{fmt_count(nn[pos])}"
            )
        return np.where(np.isnan(b), nn - ev.values, b)
    if x.has(cell):
        b = x[cell]
        empty = keep & (ev.values + b <= 0)
        if empty.any():
            pos = int(np.flatnonzero(empty)[0])
            raise InputError(
                f"columns {ev.label!r} and {x.label(cell)!r}, {x.rows(pos)}: group size "
                f"{ename} + {cell} must be positive, got {fmt_count(ev.values[pos] + b[pos])}"
            )
        return b
    return x[nname] - ev.values


def table(x: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cells (a, b, c, d) after the checks, ``drop00`` and the continuity correction.

    Rows removed by ``drop00`` are marked in ``x.undefined``.
    """
    for name in ("ai", "bi", "ci", "di"):
        if x.has(name):
            x.check(x[name] < 0, name, "counts must be non-negative", count=True)
    for name in ("n1i", "n2i"):
        if x.has(name):
            x.check(x[name] <= 0, name, "group size must be positive", count=True)
    a = np.array(x["ai"], dtype=float)
    c = np.array(x["ci"], dtype=float)
    b = np.array(_other_cell(x, "bi", "n1i", "ai"), dtype=float)
    d = np.array(_other_cell(x, "di", "n2i", "ci"), dtype=float)
    if x.drop00:
        id00 = x.keep & (((a == 0) & (c == 0)) | ((b == 0) & (d == 0)))
        if id00.any():
            x.undefined = x.undefined | id00
            x.warn(
                f"drop00=True: yi and vi set to NaN for {x.rowlist(id00)} (no events, or "
                "only events, in both groups)",
                depth=1,
            )
    live = x.keep & ~x.undefined
    add = x.add
    if x.to == "all":
        a, b, c, d = a + add, b + add, c + add, d + add
    elif x.to in ("only0", "if0all"):
        id0 = live & ((a == 0) | (b == 0) | (c == 0) | (d == 0))
        if x.to == "only0":
            a, b, c, d = (np.where(id0, v + add, v) for v in (a, b, c, d))
        elif id0.any():
            a, b, c, d = a + add, b + add, c + add, d + add
    return a, b, c, d


def odds_ratio(x: Inputs):
    r"""OR: log odds ratio (Woolf 1955; Borenstein et al. 2009, eqs. 5.8-5.10).

    With :math:`p_1 = a/(a + b)`, :math:`p_2 = c/(c + d)` (cells after the continuity
    correction):

    .. math:: y_i = \log\frac{p_1}{1 - p_1} - \log\frac{p_2}{1 - p_2} = \log\frac{a d}{b c},
              \qquad v_i = \frac1a + \frac1b + \frac1c + \frac1d.

    A double-zero table is kept (with 1/2 added), as metafor's ``drop00 = FALSE``; infinite
    values (a zero cell with ``to="none"`` or ``add=0``) become NaN with a
    :class:`~mlmeta.errors.DataWarning`. Back-transformation :math:`\exp` (odds ratio).
    """
    a, b, c, d = table(x)
    p1 = a / (a + b)
    p2 = c / (c + d)
    return log(p1 / (1 - p1)) - log(p2 / (1 - p2)), 1 / a + 1 / b + 1 / c + 1 / d


def risk_ratio(x: Inputs):
    r"""RR: log risk ratio (Borenstein et al. 2009, eqs. 5.1-5.3).

    .. math:: y_i = \log\frac{a/n_1}{c/n_2}, \qquad
              v_i = \frac1a - \frac1{n_1} + \frac1c - \frac1{n_2},

    :math:`n_1 = a + b`, :math:`n_2 = c + d` after the continuity correction.
    Back-transformation :math:`\exp` (risk ratio).
    """
    a, b, c, d = table(x)
    n1, n2 = a + b, c + d
    return log(a / n1) - log(c / n2), 1 / a - 1 / n1 + 1 / c - 1 / n2


def risk_difference(x: Inputs):
    r"""RD: risk difference (Borenstein et al. 2009, ch. 5).

    .. math:: y_i = p_1 - p_2, \qquad
              v_i = \frac{p_1(1-p_1)}{n_1} + \frac{p_2(1-p_2)}{n_2} \ (\text{"LS"}),

    ``"UB"``: divisors :math:`n_1 - 1`, :math:`n_2 - 1` (unbiased); ``"AV"``: :math:`p_1`,
    :math:`p_2` in the variance replaced by their :math:`n`-weighted means over the studies.
    metafor adds ``add`` to tables with a zero cell also for RD (``to="only0"``); give
    ``add=0`` for the uncorrected risk difference.
    """
    a, b, c, d = table(x)
    n1, n2 = a + b, c + d
    p1, p2 = a / n1, c / n2
    yi = p1 - p2
    if x.vtype == "UB":
        return yi, p1 * (1 - p1) / (n1 - 1) + p2 * (1 - p2) / (n2 - 1)
    if x.vtype == "AV":
        live = x.keep & ~x.undefined
        m1 = x.wmean(np.where(live, p1, np.nan), n1)
        m2 = x.wmean(np.where(live, p2, np.nan), n2)
        return yi, m1 * (1 - m1) / n1 + m2 * (1 - m2) / n2
    return yi, p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2


def peto(x: Inputs):
    r"""PETO: log odds ratio by Peto's one-step method (Yusuf et al. 1985).

    With :math:`N = n_1 + n_2`, :math:`E = (a + c)\, n_1 / N` the expected number of events in
    group 1 and the hypergeometric variance
    :math:`V = (a + c)(b + d)\,(n_1/N)(n_2/N)/(N - 1)`:

    .. math:: y_i = \frac{a - E}{V}, \qquad v_i = \frac{1}{V}.

    Back-transformation :math:`\exp` (odds ratio).
    """
    a, b, c, d = table(x)
    n1, n2 = a + b, c + d
    ni = n1 + n2
    xt, yt = a + c, b + d
    ei = xt * n1 / ni
    vi = xt * yt * (n1 / ni) * (n2 / ni) / (ni - 1)
    return (a - ei) / vi, 1 / vi
