"""Single group measured twice (pre-post designs): MC, SMCC, SMCR and SMCRH.

Inputs: means ``m1i``, ``m2i`` and SDs ``sd1i``, ``sd2i`` at the two time points, the sample
size ``ni`` and the correlation ``ri`` between the two measurements. Each function takes the
:class:`~mlmeta.effects.inputs.Inputs` of :func:`mlmeta.escalc` and returns ``(yi, vi)``; the
formulas are metafor's (``escalc``, 3.8-1), with :math:`c(\\cdot)` the exact bias correction of
:func:`mlmeta.effects.rmath.cmicalc` at :math:`n_i - 1` degrees of freedom.

References
----------
Becker, B. J. (1988). Synthesizing standardized mean-change measures. *British Journal of
Mathematical and Statistical Psychology, 41*(2), 257-278.
Bonett, D. G. (2008). Confidence intervals for standardized linear contrasts of means.
*Psychological Methods, 13*(2), 99-109.
Gibbons, R. D., Hedeker, D. R., & Davis, J. M. (1993). Estimation of effect size from a series
of experiments involving paired comparisons. *Journal of Educational Statistics, 18*(3),
271-279.
Morris, S. B. (2000). Distribution of the standardized mean change effect size for meta-analysis
on repeated measures. *British Journal of Mathematical and Statistical Psychology, 53*(1),
17-29.
"""

from __future__ import annotations

import numpy as np

from mlmeta.effects.inputs import Inputs, fmt
from mlmeta.effects.rmath import cmicalc

__all__ = ["mc", "smcc", "smcr", "smcrh"]


def _inputs(x: Inputs, measure: str, min_n: int):
    m1, m2, sd1, n, r = x["m1i"], x["m2i"], x["sd1i"], x["ni"], x["ri"]
    sd2 = x.get("sd2i")
    x.check(sd1 < 0, "sd1i", "standard deviation must be non-negative")
    if sd2 is not None:
        x.check(sd2 < 0, "sd2i", "standard deviation must be non-negative")
    x.check(np.abs(r) > 1, "ri", f"correlation must be between -1 and 1 for {measure}")
    if min_n == 0:
        x.check(n <= 0, "ni", "sample size must be positive", count=True)
    else:
        x.check(
            n <= min_n,
            "ni",
            f"sample size must be greater than {min_n} for {measure} "
            "(the correction factor needs ni - 1 > 1)",
            count=True,
        )
    return m1, m2, sd1, sd2, n, r


def mc(x: Inputs):
    r"""MC: raw mean change (Becker 1988).

    .. math:: y_i = \bar x_{1i} - \bar x_{2i}, \qquad
              v_i = \frac{s_{1i}^2 + s_{2i}^2 - 2 r_i s_{1i} s_{2i}}{n_i}.
    """
    m1, m2, sd1, sd2, n, r = _inputs(x, "MC", 0)
    return m1 - m2, (sd1**2 + sd2**2 - 2 * r * sd1 * sd2) / n


def smcc(x: Inputs):
    r"""SMCC: standardized mean change with change-score standardization (Gibbons et al. 1993).

    .. math:: s_{di} = \sqrt{s_{1i}^2 + s_{2i}^2 - 2 r_i s_{1i} s_{2i}}, \qquad
              d_i = \frac{\bar x_{1i} - \bar x_{2i}}{s_{di}}, \qquad y_i = c(n_i - 1)\, d_i,

    ``"LS"``: :math:`v_i = 1/n_i + y_i^2/(2 n_i)`; ``"LS2"``:
    :math:`v_i = c(n_i - 1)^2 (1/n_i + d_i^2/(2 n_i))` (Morris 2000; Becker 1988). Needs
    :math:`n_i > 2` and :math:`s_{di} > 0`.
    """
    m1, m2, sd1, sd2, n, r = _inputs(x, "SMCC", 2)
    sdd = np.sqrt(sd1**2 + sd2**2 - 2 * r * sd1 * sd2)
    x.check_rows(
        ~(sdd > 0),
        ["sd1i", "sd2i", "ri"],
        "the SD of the change scores, sqrt(sd1i^2 "
        "+ sd2i^2 - 2 ri sd1i sd2i), must be positive for SMCC",
        values=lambda p: f"sd1i = {fmt(sd1[p])}, sd2i = {fmt(sd2[p])}, ri = {fmt(r[p])}",
    )
    cmi = cmicalc(n - 1)
    d = (m1 - m2) / sdd
    yi = cmi * d
    if x.vtype == "LS2":
        return yi, cmi**2 * (1 / n + d**2 / (2 * n))
    return yi, 1 / n + yi**2 / (2 * n)


def smcr(x: Inputs):
    r"""SMCR: standardized mean change with raw-score standardization (Becker 1988).

    .. math:: d_i = \frac{\bar x_{1i} - \bar x_{2i}}{s_{1i}}, \qquad y_i = c(n_i - 1)\, d_i,

    ``"LS"``: :math:`v_i = 2(1 - r_i)/n_i + y_i^2/(2 n_i)`; ``"LS2"``:
    :math:`v_i = c(n_i - 1)^2 (2(1 - r_i)/n_i + d_i^2/(2 n_i))` (Becker 1988; Morris 2000).
    ``sd1i`` is the SD at the first time point (the standardizer). Needs :math:`n_i > 2` and
    :math:`s_{1i} > 0`.
    """
    m1, m2, sd1, _sd2, n, r = _inputs(x, "SMCR", 2)
    x.check(
        sd1 == 0, "sd1i", "standard deviation must be positive for SMCR (it standardizes by sd1i)"
    )
    cmi = cmicalc(n - 1)
    d = (m1 - m2) / sd1
    yi = cmi * d
    if x.vtype == "LS2":
        return yi, cmi**2 * (2 * (1 - r) / n + d**2 / (2 * n))
    return yi, 2 * (1 - r) / n + yi**2 / (2 * n)


def smcrh(x: Inputs):
    r"""SMCRH: raw-score standardized mean change without assuming equal variances (Bonett 2008).

    .. math:: y_i = c(n_i - 1) \frac{\bar x_{1i} - \bar x_{2i}}{s_{1i}}, \qquad
              v_i = c(n_i - 1)^2 \Big[\frac{s_{1i}^2 + s_{2i}^2 - 2 r_i s_{1i} s_{2i}}
              {s_{1i}^2 (n_i - 1)} + \frac{y_i^2}{2 (n_i - 1)}\Big].

    Needs :math:`n_i > 2` and :math:`s_{1i} > 0`.
    """
    m1, m2, sd1, sd2, n, r = _inputs(x, "SMCRH", 2)
    x.check(
        sd1 == 0, "sd1i", "standard deviation must be positive for SMCRH (it standardizes by sd1i)"
    )
    cmi = cmicalc(n - 1)
    vardi = sd1**2 + sd2**2 - 2 * r * sd1 * sd2
    yi = cmi * (m1 - m2) / sd1
    vi = vardi / (sd1**2 * (n - 1)) + yi**2 / (2 * (n - 1))
    return yi, cmi**2 * vi
