"""Correlation measures: COR, ZCOR (Fisher's z), PCOR, ZPCOR (partial) and SPCOR (semi-partial).

Each function takes the :class:`~mlmeta.effects.inputs.Inputs` of :func:`mlmeta.escalc` and
returns ``(yi, vi)``; the formulas are metafor's (``escalc``, 3.8-1).

References
----------
Aloe, A. M., & Becker, B. J. (2012). An effect size for regression predictors in meta-analysis.
*Journal of Educational and Behavioral Statistics, 37*(2), 278-297.
Fisher, R. A. (1921). On the "probable error" of a coefficient of correlation deduced from a small
sample. *Metron, 1*, 3-32.
Olkin, I., & Finn, J. D. (1995). Correlations redux. *Psychological Bulletin, 118*(1), 155-164.
Olkin, I., & Pratt, J. W. (1958). Unbiased estimation of certain correlation coefficients.
*Annals of Mathematical Statistics, 29*(1), 201-211.
"""

from __future__ import annotations

import numpy as np

from mlmeta.effects.inputs import Inputs, fmt_count
from mlmeta.effects.rmath import log

__all__ = ["cor", "pcor", "spcor", "zcor", "zpcor"]


def _check_r_n(x: Inputs, measure: str, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    r, n = x["ri"], x["ni"]
    if strict:
        x.check(
            np.abs(r) >= 1, "ri", f"correlation must be strictly between -1 and 1 for {measure}"
        )
        x.check(
            n <= 3,
            "ni",
            f"sample size must be greater than 3 for {measure} (vi = 1/(n - 3))",
            count=True,
        )
    else:
        x.check(np.abs(r) > 1, "ri", f"correlation must be between -1 and 1 for {measure}")
        x.check(
            n <= 3,
            "ni",
            f"sample size must be greater than 3 for {measure} (metafor "
            "3.8-1 leaves vi undefined for n <= 3)",
            count=True,
        )
    return r, n


def zcor(x: Inputs):
    r"""ZCOR: Fisher's r-to-z transformed correlation (Fisher 1921).

    .. math:: y_i = \tfrac12 \log\frac{1 + r_i}{1 - r_i} = \operatorname{atanh}(r_i), \qquad
              v_i = \frac{1}{n_i - 3}.

    Needs :math:`-1 < r_i < 1` and :math:`n_i > 3`. Back-transformation: :math:`r = \tanh(z)`
    (or :func:`~mlmeta.effects.transforms.ztor_int` for an average over a distribution).
    """
    r, n = _check_r_n(x, "ZCOR", strict=True)
    return 0.5 * log((1 + r) / (1 - r)), 1 / (n - 3)


def cor(x: Inputs):
    r"""COR: raw (Pearson) correlation.

    :math:`y_i = r_i`; ``vtype="LS"``: :math:`v_i = (1 - r_i^2)^2 / (n_i - 1)`;
    ``vtype="AV"``: :math:`r_i^2` replaced by the square of the :math:`n_i`-weighted mean of
    :math:`r_i` (Olkin & Pratt 1958; Borenstein et al. 2009, ch. 6). Needs :math:`|r_i| \le 1`
    and :math:`n_i > 3` (metafor 3.8-1 sets vi to NA for :math:`n_i \le 3` also for COR);
    :math:`|r_i| = 1` gives :math:`v_i = 0` and a :class:`~mlmeta.errors.DataWarning`.
    """
    r, n = _check_r_n(x, "COR", strict=False)
    yi = r.copy()
    if x.vtype == "AV":
        mn = x.wmean(yi, n)
        vi = (1 - mn**2) ** 2 / (n - 1)
    else:
        vi = (1 - yi**2) ** 2 / (n - 1)
    one = x.keep & (np.abs(r) == 1)
    if one.any() and x.vtype == "LS":
        x.warn(
            f"|r| = 1 gives a sampling variance of 0 in {x.rowlist(one)} (column "
            f"{x.label('ri')!r}); these rows would get infinite weight"
        )
    return yi, vi


def _partial_inputs(x: Inputs, measure: str):
    t, n, m = x["ti"], x["ni"], x["mi"]
    x.check(n <= 0, "ni", "sample size must be positive", count=True)
    x.check(m < 0, "mi", f"number of predictors must be non-negative for {measure}", count=True)
    df = n - m - 1
    x.check_rows(
        df <= 0,
        ["ni", "mi"],
        f"residual degrees of freedom ni - mi - 1 must be positive for {measure}",
        lambda p: fmt_count(df[p]),
    )
    return t, n, m, df


def pcor(x: Inputs):
    r"""PCOR: partial correlation from the t statistic of a regression coefficient.

    With :math:`t_i` the t statistic of the predictor of interest in a regression with
    :math:`m_i` predictors on :math:`n_i` observations (residual df :math:`n_i - m_i - 1`):

    .. math:: y_i = \frac{t_i}{\sqrt{t_i^2 + n_i - m_i - 1}}, \qquad
              v_i = \frac{(1 - y_i^2)^2}{n_i - m_i - 1} \ (\text{LS}),

    ``vtype="AV"``: :math:`y_i^2` replaced by the square of the :math:`n_i`-weighted mean
    (Olkin & Finn 1995; Aloe & Thompson 2013). metafor 3.8-1's formulas.
    """
    t, n, _m, df = _partial_inputs(x, "PCOR")
    yi = t / np.sqrt(t**2 + df)
    if x.vtype == "AV":
        mn = x.wmean(yi, n)
        return yi, (1 - mn**2) ** 2 / df
    return yi, (1 - yi**2) ** 2 / df


def zpcor(x: Inputs):
    r"""ZPCOR: Fisher's r-to-z transformed partial correlation.

    .. math:: r_i = \frac{t_i}{\sqrt{t_i^2 + n_i - m_i - 1}}, \qquad
              y_i = \tfrac12 \log\frac{1 + r_i}{1 - r_i}, \qquad v_i = \frac{1}{n_i - m_i - 1}

    (Olkin & Finn 1995; the variance as in metafor 3.8-1 — later metafor versions use
    :math:`1/(n_i - m_i - 3)`). Back-transformation: :math:`\tanh`.
    """
    t, _n, _m, df = _partial_inputs(x, "ZPCOR")
    r = t / np.sqrt(t**2 + df)
    return 0.5 * log((1 + r) / (1 - r)), 1 / df


def spcor(x: Inputs):
    r"""SPCOR: semi-partial correlation (Aloe & Becker 2012).

    With :math:`R^2_i` of the full regression model,

    .. math:: y_i = \frac{t_i \sqrt{1 - R^2_i}}{\sqrt{n_i - m_i - 1}}, \qquad
              v_i = \frac{R_i^4 - 2R^2_i + (R^2_i - y_i^2) + 1 - (R^2_i - y_i^2)^2}{n_i}
              \ (\text{LS}),

    ``vtype="AV"``: :math:`y_i^2` replaced by the square of the :math:`n_i`-weighted mean.
    Needs :math:`0 \le R^2_i \le 1`.
    """
    t, n, _m, df = _partial_inputs(x, "SPCOR")
    r2 = x["r2i"]
    x.check((r2 < 0) | (r2 > 1), "r2i", "R^2 must be between 0 and 1")
    yi = t * np.sqrt(1 - r2) / np.sqrt(df)
    y2 = x.wmean(yi, n) ** 2 if x.vtype == "AV" else yi**2
    return yi, (r2**2 - 2 * r2 + (r2 - y2) + 1 - (r2 - y2) ** 2) / n
