"""Single proportions: PR (raw), PLN (log), PLO (logit) and PAS (arcsine square root).

A row gives the number of events ``xi`` and non-events ``mi``, or ``xi`` and the sample size
``ni`` (then ``mi = ni - xi``; when both are given they must agree). Zero counts are handled as
for 2x2 tables (metafor's ``escalc``, 3.8-1): with ``to="only0"`` (default), ``add`` (default
1/2, but 0 for PAS) is added to ``xi`` and ``mi`` of the rows where one of them is 0. Each
function takes the :class:`~mlmeta.effects.inputs.Inputs` of :func:`mlmeta.escalc` and returns
``(yi, vi)``; below :math:`p_i = x_i / n_i` and :math:`n_i = x_i + m_i` after the correction.

References
----------
Freeman, M. F., & Tukey, J. W. (1950). Transformations related to the angular and the square
root. *Annals of Mathematical Statistics, 21*(4), 607-611.
Lipsey, M. W., & Wilson, D. B. (2001). *Practical meta-analysis*. Sage.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48.
"""

from __future__ import annotations

import math

import numpy as np

from mlmeta.effects.inputs import Inputs, fmt_count
from mlmeta.effects.rmath import libm, log
from mlmeta.errors import InputError

__all__ = ["counts", "pas", "pln", "plo", "pr"]


def counts(x: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events, non-events and sample size ``(xi, mi, ni)`` after the checks and ``add``."""
    xi = np.array(x["xi"], dtype=float)
    keep = x.keep
    x.check(xi < 0, "xi", "counts must be non-negative", count=True)
    if x.has("mi"):
        x.check(x["mi"] < 0, "mi", "counts must be non-negative", count=True)
    if x.has("ni"):
        nn = x["ni"]
        x.check(nn <= 0, "ni", "sample size must be positive", count=True)
        over = keep & (xi > nn)
        if over.any():
            pos = int(np.flatnonzero(over)[0])
            raise InputError(
                f"column {x.label('xi')!r}, {x.rows(pos)}: count must not exceed the sample "
                f"size in column {x.label('ni')!r} ({fmt_count(nn[pos])}), got "
                f"{fmt_count(xi[pos])}"
            )
    if x.has("mi") and x.has("ni"):
        m, nn = x["mi"], x["ni"]
        bad = keep & ~np.isnan(m) & ~np.isnan(nn) & (nn != xi + m)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"column {x.label('ni')!r}, {x.rows(pos)}: sample size must equal xi + mi = "
                f"{fmt_count(xi[pos] + m[pos])}, got {fmt_count(nn[pos])}"
            )
        mi = np.where(np.isnan(m), nn - xi, m)
    elif x.has("mi"):
        mi = np.array(x["mi"], dtype=float)
        x.check_rows(
            xi + mi <= 0,
            ["xi", "mi"],
            "sample size xi + mi must be positive",
            got=lambda p: fmt_count(float(xi[p] + mi[p])),
        )
    else:
        mi = x["ni"] - xi
    add = x.add
    if x.to == "all":
        xi, mi = xi + add, mi + add
    elif x.to in ("only0", "if0all"):
        id0 = keep & ((xi == 0) | (mi == 0))
        if x.to == "only0":
            xi, mi = np.where(id0, xi + add, xi), np.where(id0, mi + add, mi)
        elif id0.any():
            xi, mi = xi + add, mi + add
    return xi, mi, xi + mi


def pr(x: Inputs):
    r"""PR: raw proportion.

    .. math:: y_i = p_i, \qquad v_i = \frac{p_i (1 - p_i)}{n_i} \ (\text{"LS"}),

    ``"UB"``: divisor :math:`n_i - 1`; ``"AV"``: :math:`p_i` in the variance replaced by the
    :math:`n`-weighted mean proportion.
    """
    xi, _mi, ni = counts(x)
    p = xi / ni
    if x.vtype == "UB":
        return p, p * (1 - p) / (ni - 1)
    if x.vtype == "AV":
        mn = x.wmean(p, ni)
        return p, mn * (1 - mn) / ni
    return p, p * (1 - p) / ni


def pln(x: Inputs):
    r"""PLN: log transformed proportion.

    .. math:: y_i = \log p_i, \qquad v_i = \frac{1}{x_i} - \frac{1}{n_i} \ (\text{"LS"}),
              \qquad v_i = \frac{1}{\bar p\, n_i} - \frac{1}{n_i} \ (\text{"AV"}),

    :math:`\bar p` the :math:`n`-weighted mean proportion. Back-transformation :math:`\exp`.
    """
    xi, _mi, ni = counts(x)
    p = xi / ni
    yi = log(p)
    if x.vtype == "AV":
        mn = x.wmean(p, ni)
        return yi, 1 / (mn * ni) - 1 / ni
    return yi, 1 / xi - 1 / ni


def plo(x: Inputs):
    r"""PLO: logit transformed proportion (log odds; Lipsey & Wilson 2001).

    .. math:: y_i = \log\frac{p_i}{1 - p_i}, \qquad
              v_i = \frac{1}{x_i} + \frac{1}{m_i} \ (\text{"LS"}), \qquad
              v_i = \frac{1}{\bar p\, n_i} + \frac{1}{(1 - \bar p)\, n_i} \ (\text{"AV"}).

    Back-transformation: the inverse logit :math:`e^y / (1 + e^y)` (proportion).
    """
    xi, mi, ni = counts(x)
    p = xi / ni
    yi = log(p / (1 - p))
    if x.vtype == "AV":
        mn = x.wmean(p, ni)
        return yi, 1 / (mn * ni) + 1 / ((1 - mn) * ni)
    return yi, 1 / xi + 1 / mi


def pas(x: Inputs):
    r"""PAS: arcsine square root transformed proportion (variance-stabilising; Freeman & Tukey
    1950).

    .. math:: y_i = \arcsin\sqrt{p_i}, \qquad v_i = \frac{1}{4 n_i}.

    No continuity correction by default (``add = 0``, as metafor). Back-transformation
    :math:`\sin(y)^2` (proportion).
    """
    xi, _mi, ni = counts(x)
    p = xi / ni
    return libm(math.asin, np.arcsin, np.sqrt(p)), 1 / (4 * ni)
