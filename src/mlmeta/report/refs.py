"""The references the report cites, and the citations of one report.

Every method the report uses is cited where it is used, author-year in the text
("(Viechtbauer, 2010)"), and listed once, numbered, in the reference list at the end (APA 7th
edition style, sorted by first author). :class:`Citations` collects what a report cites, so the
list holds exactly the works cited.
"""

from __future__ import annotations

__all__ = ["REFERENCES", "Citations"]

#: key -> (in-text author(s), year, full APA reference)
REFERENCES: dict[str, tuple[str, str, str]] = {
    "assink2016": (
        "Assink & Wibbelink",
        "2016",
        (
            "Assink, M., & Wibbelink, C. J. M. (2016). Fitting three-level meta-analytic "
            "models in R: A step-by-step tutorial. The Quantitative Methods for "
            "Psychology, 12(3), 154–174. https://doi.org/10.20982/tqmp.12.3.p154"
        ),
    ),
    "begg1994": (
        "Begg & Mazumdar",
        "1994",
        (
            "Begg, C. B., & Mazumdar, M. (1994). Operating characteristics of a rank "
            "correlation test for publication bias. Biometrics, 50(4), 1088–1101. "
            "https://doi.org/10.2307/2533446"
        ),
    ),
    "chen2010": (
        "Chen et al.",
        "2010",
        (
            "Chen, H., Cohen, P., & Chen, S. (2010). How big is a big odds ratio? "
            "Interpreting the magnitudes of odds ratios in epidemiological studies. "
            "Communications in Statistics—Simulation and Computation, 39(4), 860–864. "
            "https://doi.org/10.1080/03610911003650383"
        ),
    ),
    "cheung2014": (
        "Cheung",
        "2014",
        (
            "Cheung, M. W.-L. (2014). Modeling dependent effect sizes with three-level "
            "meta-analyses: A structural equation modeling approach. Psychological "
            "Methods, 19(2), 211–229. https://doi.org/10.1037/a0032968"
        ),
    ),
    "cohen1988": (
        "Cohen",
        "1988",
        (
            "Cohen, J. (1988). Statistical power analysis for the behavioral sciences "
            "(2nd ed.). Lawrence Erlbaum Associates."
        ),
    ),
    "duval2000": (
        "Duval & Tweedie",
        "2000",
        (
            "Duval, S., & Tweedie, R. (2000). Trim and fill: A simple funnel-plot-based "
            "method of testing and adjusting for publication bias in meta-analysis. "
            "Biometrics, 56(2), 455–463. https://doi.org/10.1111/j.0006-341X.2000.00455.x"
        ),
    ),
    "egger1997": (
        "Egger et al.",
        "1997",
        (
            "Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in "
            "meta-analysis detected by a simple, graphical test. BMJ, 315(7109), 629–634. "
            "https://doi.org/10.1136/bmj.315.7109.629"
        ),
    ),
    "fisher1921": (
        "Fisher",
        "1921",
        (
            'Fisher, R. A. (1921). On the "probable error" of a coefficient of '
            "correlation deduced from a small sample. Metron, 1, 3–32."
        ),
    ),
    "hedges1981": (
        "Hedges",
        "1981",
        (
            "Hedges, L. V. (1981). Distribution theory for Glass's estimator of effect "
            "size and related estimators. Journal of Educational Statistics, 6(2), "
            "107–128. https://doi.org/10.3102/10769986006002107"
        ),
    ),
    "higgins2009": (
        "Higgins et al.",
        "2009",
        (
            "Higgins, J. P. T., Thompson, S. G., & Spiegelhalter, D. J. (2009). A "
            "re-evaluation of random-effects meta-analysis. Journal of the Royal "
            "Statistical Society: Series A, 172(1), 137–159. "
            "https://doi.org/10.1111/j.1467-985X.2008.00552.x"
        ),
    ),
    "hoenig2001": (
        "Hoenig & Heisey",
        "2001",
        (
            "Hoenig, J. M., & Heisey, D. M. (2001). The abuse of power: The pervasive "
            "fallacy of power calculations for data analysis. The American "
            "Statistician, 55(1), 19–24. https://doi.org/10.1198/000313001300339897"
        ),
    ),
    "pustejovsky2018": (
        "Pustejovsky & Tipton",
        "2018",
        (
            "Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for "
            "cluster-robust variance estimation and hypothesis testing in fixed "
            "effects models. Journal of Business & Economic Statistics, 36(4), "
            "672–683. https://doi.org/10.1080/07350015.2016.1247004"
        ),
    ),
    "pustejovsky2019": (
        "Pustejovsky & Rodgers",
        "2019",
        (
            "Pustejovsky, J. E., & Rodgers, M. A. (2019). Testing for funnel plot "
            "asymmetry of standardized mean differences. Research Synthesis "
            "Methods, 10(1), 57–71. https://doi.org/10.1002/jrsm.1332"
        ),
    ),
    "pustejovsky2022": (
        "Pustejovsky & Tipton",
        "2022",
        (
            "Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis with robust "
            "variance estimation: Expanding the range of working models. "
            "Prevention Science, 23(3), 425–438. "
            "https://doi.org/10.1007/s11121-021-01246-3"
        ),
    ),
    "rodgers2021": (
        "Rodgers & Pustejovsky",
        "2021",
        (
            "Rodgers, M. A., & Pustejovsky, J. E. (2021). Evaluating meta-analytic "
            "methods to detect selective reporting in the presence of dependent effect "
            "sizes. Psychological Methods, 26(2), 141–160. "
            "https://doi.org/10.1037/met0000300"
        ),
    ),
    "self1987": (
        "Self & Liang",
        "1987",
        (
            "Self, S. G., & Liang, K.-Y. (1987). Asymptotic properties of maximum "
            "likelihood estimators and likelihood ratio tests under nonstandard conditions. "
            "Journal of the American Statistical Association, 82(398), 605–610. "
            "https://doi.org/10.1080/01621459.1987.10478472"
        ),
    ),
    "stanley2014": (
        "Stanley & Doucouliagos",
        "2014",
        (
            "Stanley, T. D., & Doucouliagos, H. (2014). Meta-regression approximations "
            "to reduce publication selection bias. Research Synthesis Methods, 5(1), "
            "60–78. https://doi.org/10.1002/jrsm.1095"
        ),
    ),
    "tipton2015": (
        "Tipton & Pustejovsky",
        "2015",
        (
            "Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests "
            "of moderators and model fit using robust variance estimation in "
            "meta-regression. Journal of Educational and Behavioral Statistics, 40(6), "
            "604–634. https://doi.org/10.3102/1076998615606099"
        ),
    ),
    "vandennoortgate2013": (
        "Van den Noortgate et al.",
        "2013",
        (
            "Van den Noortgate, W., López-López, J. A., Marín-Martínez, F., & "
            "Sánchez-Meca, J. (2013). Three-level meta-analysis of dependent "
            "effect sizes. Behavior Research Methods, 45(2), 576–594. "
            "https://doi.org/10.3758/s13428-012-0261-6"
        ),
    ),
    "vembye2023": (
        "Vembye et al.",
        "2023",
        (
            "Vembye, M. H., Pustejovsky, J. E., & Pigott, T. D. (2023). Power "
            "approximations for overall average effects in meta-analysis with dependent "
            "effect sizes. Journal of Educational and Behavioral Statistics, 48(1), "
            "70–102. https://doi.org/10.3102/10769986221127379"
        ),
    ),
    "vevea1995": (
        "Vevea & Hedges",
        "1995",
        (
            "Vevea, J. L., & Hedges, L. V. (1995). A general linear model for estimating "
            "effect size in the presence of publication bias. Psychometrika, 60(3), "
            "419–435. https://doi.org/10.1007/BF02294384"
        ),
    ),
    "viechtbauer2010": (
        "Viechtbauer",
        "2010",
        (
            "Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor "
            "package. Journal of Statistical Software, 36(3), 1–48. "
            "https://doi.org/10.18637/jss.v036.i03"
        ),
    ),
    "viechtbauer_cheung2010": (
        "Viechtbauer & Cheung",
        "2010",
        (
            "Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and "
            "influence diagnostics for meta-analysis. Research Synthesis "
            "Methods, 1(2), 112–125. https://doi.org/10.1002/jrsm.11"
        ),
    ),
}


class Citations:
    """The works one report cites: ``cite("a", "b")`` returns "(A, 2010; B, 2013)" and
    records them; ``narrative("a")`` returns "A (2010)"; :meth:`entries` the numbered list."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def _use(self, key: str) -> tuple[str, str, str]:
        if key not in REFERENCES:
            raise KeyError(f"unknown reference {key!r}")
        if key not in self.used:
            self.used.append(key)
        return REFERENCES[key]

    def inner(self, *keys: str) -> str:
        """'A, 2010; B, 2013' (for text already in parentheses)."""
        return "; ".join(f"{a}, {y}" for a, y, _ in (self._use(k) for k in keys))

    def cite(self, *keys: str) -> str:
        return f"({self.inner(*keys)})"

    def narrative(self, key: str) -> str:
        a, y, _ = self._use(key)
        return f"{a} ({y})"

    def entries(self) -> list[dict]:
        """[{"n": 1, "key": ..., "text": ...}] sorted as APA lists them (by the reference)."""
        refs = sorted(self.used, key=lambda k: REFERENCES[k][2].lower())
        return [
            {
                "n": i + 1,
                "key": k,
                "text": REFERENCES[k][2],
                "cite": f"{REFERENCES[k][0]}, {REFERENCES[k][1]}",
            }
            for i, k in enumerate(refs)
        ]
