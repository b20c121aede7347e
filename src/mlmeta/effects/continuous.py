"""Two independent groups, continuous outcome: MD, SMD (Hedges' g), SMDH and ROM.

Each function takes the :class:`~mlmeta.effects.inputs.Inputs` of :func:`mlmeta.escalc` and
returns ``(yi, vi)``; the formulas are metafor's (``escalc``, 3.8-1). Notation:
:math:`m = n_1 + n_2 - 2`, :math:`N = n_1 + n_2`, the pooled SD
:math:`s_p = \\sqrt{((n_1 - 1) s_1^2 + (n_2 - 1) s_2^2) / m}`.

References
----------
Bonett, D. G. (2008). Confidence intervals for standardized linear contrasts of means.
*Psychological Methods, 13*(2), 99-109.
Bonett, D. G. (2009). Meta-analytic interval estimation for standardized and unstandardized
mean differences. *Psychological Methods, 14*(3), 225-238.
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
meta-analysis*, chapter 4. Wiley.
Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect size and related
estimators. *Journal of Educational Statistics, 6*(2), 107-128.
Hedges, L. V., Gurevitch, J., & Curtis, P. S. (1999). The meta-analysis of response ratios in
experimental ecology. *Ecology, 80*(4), 1150-1156.
Lajeunesse, M. J. (2011). On the meta-analysis of response ratios for studies with correlated
and multi-group designs. *Ecology, 92*(11), 2049-2055.
"""

from __future__ import annotations

import numpy as np

from mlmeta.effects.inputs import Inputs, fmt, fmt_count
from mlmeta.effects.rmath import cmicalc, log

__all__ = ["md", "rom", "smd", "smdh"]


def _groups(x: Inputs, sd_rows=None):
    """Check SDs (>= 0) and group sizes (> 0) and return (m1, sd1, n1, m2, sd2, n2)."""
    n1, n2 = x["n1i"], x["n2i"]
    sd1, sd2 = x.get("sd1i"), x.get("sd2i")
    rows = np.ones(x.k, dtype=bool) if sd_rows is None else sd_rows
    if sd1 is not None:
        x.check(rows & (sd1 < 0), "sd1i", "standard deviation must be non-negative")
    if sd2 is not None:
        x.check(rows & (sd2 < 0), "sd2i", "standard deviation must be non-negative")
    x.check(n1 <= 0, "n1i", "group size must be positive", count=True)
    x.check(n2 <= 0, "n2i", "group size must be positive", count=True)
    return x.get("m1i"), sd1, n1, x.get("m2i"), sd2, n2


def md(x: Inputs):
    r"""MD: raw mean difference (Borenstein et al. 2009, eqs. 4.1-4.5).

    .. math:: y_i = \bar x_{1i} - \bar x_{2i}, \qquad
              v_i = \frac{s_{1i}^2}{n_{1i}} + \frac{s_{2i}^2}{n_{2i}}
              \ (\text{"LS"} = \text{"UB"}), \qquad
              v_i = s_{pi}^2 \Big(\frac{1}{n_{1i}} + \frac{1}{n_{2i}}\Big) \ (\text{"HO"}).
    """
    m1, sd1, n1, m2, sd2, n2 = _groups(x)
    yi = m1 - m2
    if x.vtype == "HO":
        x.check_rows(
            n1 + n2 <= 2,
            ["n1i", "n2i"],
            "total sample size n1i + n2i must be greater than 2 for vtype='HO' (pooled SD)",
            lambda p: fmt_count(n1[p] + n2[p]),
        )
        mi = n1 + n2 - 2
        sdp = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / mi)
        return yi, sdp**2 * (1 / n1 + 1 / n2)
    return yi, sd1**2 / n1 + sd2**2 / n2


def smd(x: Inputs):
    r"""SMD: standardized mean difference with Hedges' exact bias correction (Hedges 1981).

    .. math:: d_i = \frac{\bar x_{1i} - \bar x_{2i}}{s_{pi}}, \qquad y_i = g_i = c(m_i)\, d_i,
              \qquad c(m) = \frac{\Gamma(m/2)}{\sqrt{m/2}\,\Gamma((m-1)/2)}

    (the exact factor, not the approximation :math:`1 - 3/(4m - 1)`). Variances
    (:math:`N_i = n_{1i} + n_{2i}`):

    * ``"LS"`` (default): :math:`v_i = 1/n_{1i} + 1/n_{2i} + g_i^2 / (2 N_i)` (metafor uses
      :math:`g_i` and :math:`N_i`, Borenstein et al. 2009 eq. 4.20 with g for d);
    * ``"UB"`` (unbiased; Hedges 1983): :math:`v_i = 1/n_{1i} + 1/n_{2i} + (1 - (m_i - 2) /
      (m_i c(m_i)^2))\, g_i^2`;
    * ``"LS2"``: :math:`v_i = c(m_i)^2 (1/n_{1i} + 1/n_{2i} + d_i^2 / (2 N_i))`;
    * ``"AV"``: as ``"LS"`` with :math:`g_i` replaced by the :math:`N_i`-weighted mean of g.

    Instead of means and SDs a row may give the uncorrected :math:`d_i` (argument ``di``) or the
    t statistic of the two-sample t test (``ti``), :math:`d_i = t_i \sqrt{1/n_{1i} + 1/n_{2i}}`
    (metafor: ``di``, then ``ti``, then the means). Needs SDs >= 0, group sizes > 0,
    :math:`n_{1i} + n_{2i} > 3` (:math:`c(m)` needs :math:`m > 1`) and :math:`s_p > 0`.
    """
    n1, n2 = x["n1i"], x["n2i"]
    dgiven = np.full(x.k, np.nan)
    if x.has("di"):
        dgiven = x["di"].copy()
    if x.has("ti"):
        dgiven = np.where(np.isnan(dgiven), x["ti"] * np.sqrt(1 / n1 + 1 / n2), dgiven)
    use_d = ~np.isnan(dgiven)
    means = ~use_d
    m1, sd1, _, m2, sd2, _ = _groups(x, sd_rows=means)
    small = n1 + n2 <= 3
    x.check_rows(
        small,
        ["n1i", "n2i"],
        "total sample size n1i + n2i must be greater than 3 for "
        "SMD (the correction factor needs n1i + n2i - 2 > 1)",
        lambda p: fmt_count(n1[p] + n2[p]),
    )
    if m1 is None:  # every row from di / ti
        m1 = m2 = sd1 = sd2 = np.full(x.k, np.nan)
    m1 = np.where(use_d, dgiven, m1)
    m2 = np.where(use_d, 0.0, m2)
    sd1 = np.where(use_d, 1.0, sd1)
    sd2 = np.where(use_d, 1.0, sd2)
    mi = n1 + n2 - 2
    sdp = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / mi)
    x.check_rows(
        sdp == 0,
        ["sd1i", "sd2i"],
        "the pooled standard deviation is 0, so SMD is undefined",
        values=lambda p: f"sd1i = {fmt(sd1[p])}, sd2i = {fmt(sd2[p])}",
    )
    npi = n1 + n2
    d = (m1 - m2) / sdp
    cmi = cmicalc(mi)
    yi = cmi * d
    if x.vtype == "UB":
        vi = 1 / n1 + 1 / n2 + (1 - (mi - 2) / (mi * cmi**2)) * yi**2
    elif x.vtype == "LS2":
        vi = cmi**2 * (1 / n1 + 1 / n2 + d**2 / (2 * npi))
    elif x.vtype == "AV":
        mn = x.wmean(yi, npi)
        vi = 1 / n1 + 1 / n2 + mn**2 / (2 * npi)
    else:
        vi = 1 / n1 + 1 / n2 + yi**2 / (2 * npi)
    return yi, vi


def smdh(x: Inputs):
    r"""SMDH: standardized mean difference without assuming equal variances (Bonett 2008, 2009).

    .. math:: s_i = \sqrt{(s_{1i}^2 + s_{2i}^2)/2}, \qquad
              y_i = c(m_i) \frac{\bar x_{1i} - \bar x_{2i}}{s_i},

    ``"LS"``: :math:`v_i = c(m_i)^2 \Big[\frac{y_i^2 (s_{1i}^4/(n_{1i}-1) + s_{2i}^4/(n_{2i}-1))}
    {2 (s_{1i}^2 + s_{2i}^2)^2} + \frac{s_{1i}^2/(n_{1i}-1) + s_{2i}^2/(n_{2i}-1)}
    {(s_{1i}^2 + s_{2i}^2)/2}\Big]`;
    ``"LS2"``: :math:`v_i = \frac{y_i^2 (s_{1i}^2/n_{1i} + s_{2i}^2/n_{2i})}
    {2 (s_{1i}^2 + s_{2i}^2)^2} + \frac{2 (s_{1i}^2/n_{1i} + s_{2i}^2/n_{2i})}
    {s_{1i}^2 + s_{2i}^2}` (metafor's forms, :math:`c(m)` as for SMD). Needs group sizes > 1,
    :math:`n_{1i} + n_{2i} > 3` and not both SDs 0.
    """
    m1, sd1, n1, m2, sd2, n2 = _groups(x)
    x.check(n1 <= 1, "n1i", "group size must be greater than 1 for SMDH", count=True)
    x.check(n2 <= 1, "n2i", "group size must be greater than 1 for SMDH", count=True)
    x.check_rows(
        n1 + n2 <= 3,
        ["n1i", "n2i"],
        "total sample size n1i + n2i must be greater "
        "than 3 for SMDH (the correction factor needs n1i + n2i - 2 > 1)",
        lambda p: fmt_count(n1[p] + n2[p]),
    )
    x.check_rows(
        (sd1 == 0) & (sd2 == 0),
        ["sd1i", "sd2i"],
        "both standard deviations are 0, so SMDH is undefined",
        values=lambda p: f"sd1i = {fmt(sd1[p])}, sd2i = {fmt(sd2[p])}",
    )
    mi = n1 + n2 - 2
    cmi = cmicalc(mi)
    si = np.sqrt((sd1**2 + sd2**2) / 2)
    yi = cmi * (m1 - m2) / si
    if x.vtype == "LS2":
        vi = (
            yi**2 * sd1**2 / (2 * n1 * (sd1**2 + sd2**2) ** 2)
            + yi**2 * sd2**2 / (2 * n2 * (sd1**2 + sd2**2) ** 2)
            + 2 * sd1**2 / (n1 * (sd1**2 + sd2**2))
            + 2 * sd2**2 / (n2 * (sd1**2 + sd2**2))
        )
    else:
        vi = yi**2 * (sd1**4 / (n1 - 1) + sd2**4 / (n2 - 1)) / (2 * (sd1**2 + sd2**2) ** 2) + (
            sd1**2 / (n1 - 1) + sd2**2 / (n2 - 1)
        ) / ((sd1**2 + sd2**2) / 2)
        vi = cmi**2 * vi
    return yi, vi


def rom(x: Inputs):
    r"""ROM: log transformed ratio of means (response ratio; Hedges et al. 1999; Lajeunesse 2011).

    .. math:: y_i = \log(\bar x_{1i} / \bar x_{2i}),

    ``"LS"``: :math:`v_i = \frac{s_{1i}^2}{n_{1i}\bar x_{1i}^2} + \frac{s_{2i}^2}{n_{2i}
    \bar x_{2i}^2}`; ``"HO"``: both SDs replaced by the pooled :math:`s_{pi}`; ``"AV"``:
    :math:`v_i = \overline{cv}_1^2/n_{1i} + \overline{cv}_2^2/n_{2i}` with the
    :math:`n`-weighted mean coefficients of variation :math:`s/\bar x` of each group;
    ``"AVHO"``: :math:`v_i = \overline{cv}^2 (1/n_{1i} + 1/n_{2i})` with the mean over both
    groups. Back-transformation :math:`\exp` (ratio of means). Needs both means non-zero and of
    the same sign (ratio-scale data).
    """
    m1, sd1, n1, m2, sd2, n2 = _groups(x)
    x.check_rows(
        ~(m1 / m2 > 0),
        ["m1i", "m2i"],
        "ROM needs two non-zero means of the same sign (log of m1i/m2i)",
        values=lambda p: f"m1i = {fmt(m1[p])}, m2i = {fmt(m2[p])}",
    )
    yi = log(m1 / m2)
    if x.vtype == "HO":
        x.check_rows(
            n1 + n2 <= 2,
            ["n1i", "n2i"],
            "total sample size n1i + n2i must be greater than 2 for vtype='HO' (pooled SD)",
            lambda p: fmt_count(n1[p] + n2[p]),
        )
        sdp = np.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / (n1 + n2 - 2))
        return yi, sdp**2 / (n1 * m1**2) + sdp**2 / (n2 * m2**2)
    if x.vtype == "AV":
        mn1 = x.wmean(sd1 / m1, n1)
        mn2 = x.wmean(sd2 / m2, n2)
        return yi, mn1**2 / n1 + mn2**2 / n2
    if x.vtype == "AVHO":
        ok = x.keep
        cv = np.concatenate([(sd1 / m1)[ok], (sd2 / m2)[ok]])
        w = np.concatenate([n1[ok], n2[ok]])
        mn = float(np.sum(w * cv) / np.sum(w))
        return yi, mn**2 * (1 / n1 + 1 / n2)
    return yi, sd1**2 / (n1 * m1**2) + sd2**2 / (n2 * m2**2)
