"""The report as a document model, built only from the numbers of results.json.

:func:`build_document` returns a list of blocks that the HTML and Markdown templates
(:mod:`mlmeta.report.render`) and the Word writer (:mod:`mlmeta.report.docx`) render alike:

``h`` (level, text, id), ``p`` (text, cls), ``notice`` (text, cls, id), ``table`` (number, title,
caption = "Table n. title", head, rows, align, note, id), ``figure`` (name, number, caption),
``list`` (items, ordered, id), ``code`` (text).

Rules the text follows (a user copies these sentences into a paper):

* every number comes from results.json, in APA style (:mod:`mlmeta.report.fmt`);
* every method is cited where it is used; the numbered reference list holds exactly the works
  cited (:mod:`mlmeta.report.refs`);
* a quantity that is not defined is said to be so in words, never "NA", "nan" or "inf";
* a cluster-robust test with Satterthwaite df below 4 carries, in the same paragraph or table,
  the warning that the small-sample test is unreliable (Tipton & Pustejovsky, 2015); below 1 it
  is not reported as a test at all;
* a non-significant test is never read as "no difference", and nothing is worded causally;
* the primary inference (model-based unless the analysis file declares CR2) is named, and a
  disagreement with the other one is said in the main text;
* negative pseudo-R² is "no variance explained", and R² is not given at a level the
  moderator cannot explain (a study-level moderator at the effect-size level).
"""

from __future__ import annotations

import math
import platform
from typing import Any

from mlmeta.report import fmt
from mlmeta.report.refs import Citations

__all__ = [
    "SMALL_DF_WARNING",
    "build_document",
    "figure_captions",
    "methods_text",
    "number_figures",
    "r_code",
    "render_context",
    "software_versions",
]

N_LEVEL_WORDS = {1: "two-level", 2: "three-level", 3: "four-level", 4: "five-level"}
SMALL_DF = 4.0
SMALL_DF_WARNING = (
    "with fewer than 4 Satterthwaite degrees of freedom the small-sample CR2 test is unreliable"
)


# ----------------------------------------------------------------------------- blocks
def _h(level, text, id_=None):
    return {"t": "h", "level": level, "text": text, "id": id_}


def _p(text, cls=None):
    return {"t": "p", "text": text, "cls": cls}


class _Doc:
    """Blocks plus the running table number and the citations."""

    def __init__(self):
        self.blocks: list[dict] = []
        self.n_tables = 0
        self.cites = Citations()

    def add(self, *blocks):
        self.blocks.extend(blocks)

    def table(self, title, head, rows, align=None, note=None, id_=None):
        self.n_tables += 1
        self.blocks.append(
            {
                "t": "table",
                "number": self.n_tables,
                "title": title,
                "caption": f"Table {self.n_tables}. {title}",
                "head": head,
                "rows": rows,
                "align": align or ("l" + "r" * (len(head) - 1)),
                "note": note,
                "id": id_,
            }
        )


def _fig(name):
    return {"t": "figure", "name": name, "number": None, "caption": None}


# ----------------------------------------------------------------------------- scale
class _S:
    """Display-scale formatting from the numbers' ``overall`` block."""

    def __init__(self, numbers):
        o = numbers["overall"]
        self.label = o["scale"]
        self.transformed = o["transformed"]
        self.measure = numbers["data"]["measure"]
        self.exp = self.measure == "OR"
        self.bounded = self.measure in ("ZCOR", "COR")
        self.model_scale = (
            "Fisher z" if self.transformed else "log odds ratio" if self.exp else self.label
        )

    def v(self, x, digits=3):
        if x is None:
            return "not defined"
        return fmt.num(x, 2 if self.exp else digits, self.bounded)

    def ci(self, lb, ub, digits=3):
        if lb is None or ub is None:
            return "not defined"
        return fmt.ci_text(lb, ub, 2 if self.exp else digits, self.bounded)

    @property
    def null(self) -> float:
        return 1.0 if self.exp else 0.0


def _pv(p) -> str:
    """A p-value for a table cell ('.034', '< .001'), 'not defined' when missing."""
    if p is None or not math.isfinite(float(p)):
        return "not defined"
    return fmt.pval(p).replace("= ", "")


def _ptext(p) -> str:
    if p is None or not math.isfinite(float(p)):
        return "p not defined"
    return fmt.p_text(p)


def _df(df) -> str:
    if df is None or not math.isfinite(float(df)):
        return "not defined"
    return fmt.df_text(df)


def _df_status(df) -> str:
    if df is None or not math.isfinite(float(df)) or float(df) < 1:
        return "undefined"
    return "small" if float(df) < SMALL_DF else "ok"


def _pct(x) -> str:
    return "not defined" if x is None else fmt.pct(x)


# ----------------------------------------------------------------------------- captions
def figure_captions(numbers: dict) -> dict[str, str]:
    """The caption of each figure (without its number)."""
    s = _S(numbers)
    lv = numbers["settings"]["level_text"]
    scale = (
        "correlations r, back-transformed from Fisher z"
        if s.transformed
        else "log odds ratios"
        if s.exp
        else "standardized mean differences"
        if s.measure == "SMD"
        else "correlations"
        if s.bounded
        else "effect sizes"
    )
    fo = numbers.get("forest") or {}
    levels = numbers["data"]["levels"]
    summary = (
        "the diamond is the pooled estimate and the bar below it the prediction interval"
        if levels
        else "the diamond is the pooled estimate"
    )
    if fo.get("level") == "study":
        forest = (
            f"Forest plot, one row per study: the study's effect sizes combined (k = their "
            f"number) with the {lv} CI; {summary} ({scale})."
        )
    else:
        forest = (
            f"Forest plot: each effect size with its {lv} CI"
            f"{', grouped by study' if len(levels) >= 2 else ''}; {summary} ({scale})."
        )
    if fo.get("truncated"):
        forest += (
            f" Shown: the first {fo['shown']} of {fo['total']} rows; all of them are in "
            f"{fo['pages_file']} ({fo['pages']} pages)."
        )
        if fo.get("effects_pages"):
            forest += (
                f" Every effect size: figures/forest_effects.pdf ({fo['effects_pages']} "
                "pages, none taller than 12 inches)."
            )
    elif fo.get("pages_file"):
        forest += (
            f" Every effect size: {fo['pages_file']} ({fo['pages']} pages, none taller "
            "than 12 inches)."
        )
    from mlmeta.plots.profileplot import STYLES

    caps = {
        "forest": forest,
        "funnel": (
            "Contour-enhanced funnel plot: effect sizes on the model scale against their "
            "standard errors; shaded regions mark two-sided p < .10, .05 and .01."
        ),
        "profile": (
            f"Profile likelihood of each variance component: the {STYLES['estimate']} "
            f"vertical line marks the estimate, the {STYLES['ci']} vertical lines the "
            f"{lv} profile-likelihood CI limits, and the {STYLES['cutoff']} horizontal "
            "line the cut-off that defines them."
        ),
        "loo": (
            f"Leave-one-study-out estimates with {lv} CIs; the band is the CI from all "
            "studies."
            + (
                f" Shown: the {numbers['loo_figure']['shown']} studies whose "
                f"omission changes the estimate most (of "
                f"{numbers['loo_figure']['total']})."
                if (numbers.get("loo_figure") or {}).get("truncated")
                else ""
            )
        ),
    }
    for m in numbers.get("moderators", []):
        if m.get("type") == "categorical":
            caps[f"orchard_{m['name']}"] = (
                f"Orchard plot of {m['name']}: effect sizes, "
                "subgroup estimates with CI (thick) and prediction "
                "interval (thin); k (studies) on the right."
            )
        else:
            caps[f"bubble_{m['name']}"] = (
                f"Bubble plot of {m['name']}: effect sizes (area ∝ "
                "weight), regression line, CI band and prediction "
                "band (dotted)."
            )
    return caps


def number_figures(blocks: list[dict], figmap: dict) -> None:
    """Number the figures that were drawn (in document order); drop the others."""
    n = 0
    keep = []
    for b in blocks:
        if b["t"] == "figure":
            f = figmap.get(b["name"])
            if f is None:
                continue
            n += 1
            f["number"] = n
            b["number"], b["caption"] = n, f["caption"]
        keep.append(b)
    blocks[:] = keep


# ----------------------------------------------------------------------------- methods
def _model_word(levels) -> str:
    return N_LEVEL_WORDS.get(len(levels), f"{len(levels) + 1}-level")


def _methods(numbers: dict, c: Citations) -> list[str]:
    """The methods paragraphs: every analysis and setting, each method cited."""
    st = numbers["settings"]
    d = numbers["data"]
    o = numbers["overall"]
    an = st["analyses"]
    model = st["model"]
    levels = d["levels"]
    measure = d["measure"]
    paras: list[str] = []
    parts: list[str] = []
    if d.get("escalc"):
        cols = ", ".join(f"{k} = {v}" for k, v in d["escalc"].items())
        if measure == "ZCOR":
            parts.append(
                f"Correlations were transformed to Fisher's z {c.cite('fisher1921')} "
                f"(yi = atanh(r), vi = 1/(n − 3); columns {cols})."
            )
        elif measure == "SMD":
            parts.append(
                f"Standardized mean differences (Hedges' g with the exact small-sample "
                f"correction; {c.inner('hedges1981')}) were computed from columns "
                f"{cols}."
            )
        else:
            parts.append(f"Effect sizes ({measure}) were computed from columns {cols}.")
    else:
        what = {
            "ZCOR": "Fisher's z-transformed correlations",
            "COR": "correlations",
            "SMD": "standardized mean differences",
            "OR": "log odds ratios",
        }.get(measure, "effect sizes")
        parts.append(
            f"The {what} and their sampling variances were taken from columns "
            f"{d['yi']} and {d['vi']}."
        )
    est = (
        "restricted maximum likelihood (REML)"
        if model["method"] == "REML"
        else "maximum likelihood (ML)"
    )
    terms = _structured_terms(model)
    if terms:
        extra = []
        if model.get("struct"):
            extra.append(f"struct {', '.join(model['struct'])}")
        if model.get("R"):
            extra.append("known correlation matrices for " + ", ".join(model["R"]))
        if model.get("V"):
            extra.append("the known sampling covariance matrix V")
        parts.append(
            f"A random-effects model with the terms {'; '.join(terms)}"
            f"{' (' + '; '.join(extra) + ')' if extra else ''} was fitted by {est} with "
            f"mlmeta, which reproduces metafor's rma.mv {c.cite('viechtbauer2010')}."
        )
    elif levels:
        lcols = [x.split("/")[-1] for x in levels]
        lv_parts = ["level 1: sampling error"]
        rev = list(reversed(lcols))
        for i, col in enumerate(rev):
            outer = rev[i + 1] if i + 1 < len(rev) else None
            lv_parts.append(f"level {i + 2}: {col}" + (f" within {outer}" if outer else ""))
        cite = "; " + c.inner("vandennoortgate2013", "assink2016") if len(levels) >= 2 else ""
        est = est.replace(")", cite + ")")
        parts.append(
            f"A {_model_word(levels)} random-effects model ({'; '.join(lv_parts)}) was "
            f"fitted by {est} with mlmeta, which reproduces metafor's rma.mv "
            f"{c.cite('viechtbauer2010')}."
        )
    else:
        parts.append(
            f"An equal-effects model (no random effects) was fitted by weighted least "
            f"squares with weights 1/vi, as metafor's rma {c.cite('viechtbauer2010')}."
        )
    if model.get("rho") is not None:
        parts.append(
            f"Sampling errors of effect sizes within the same "
            f"{model.get('rho_cluster') or levels[0]} were assumed to correlate with "
            f"ρ = {model['rho']:g} (correlated and hierarchical effects working model; "
            f"{c.inner('pustejovsky2022')})."
        )
    if model["test"] == "t":
        dfr = (
            "the containment rule (the number of groups of the lowest level within which "
            "the predictor is constant, minus the number of coefficients)"
            if model["dfs"] == "contain"
            else "k − p"
        )
        parts.append(
            f"Coefficients were tested with t tests and {st['level_text']} confidence "
            f"intervals with degrees of freedom from {dfr}; moderators with omnibus F "
            "tests."
        )
    else:
        parts.append(
            f"Coefficients were tested with Wald z tests and {st['level_text']} "
            "confidence intervals; moderators with omnibus QM (χ²) tests."
        )
    inf = numbers.get("inference") or {}
    if inf.get("primary") == "CR2":
        parts.append(
            "The primary inference is cluster-robust (CR2, declared in the analysis "
            "file); model-based results are reported alongside."
        )
    else:
        parts.append(
            "The primary inference is model-based (the tests above); cluster-robust "
            "(CR2) results are reported alongside."
        )
    if levels:
        parts.append(
            f"The prediction interval adds the sum of the variance components to the "
            f"squared standard error of the estimate {c.cite('higgins2009')}."
        )
    if o["transformed"]:
        parts.append(
            "Estimates and interval limits were back-transformed to r = tanh(z); the "
            "SE of r is the delta-method SE (1 − r²)·SE(z); tests use the z scale."
        )
    if measure == "OR":
        parts.append(
            "Estimates and interval limits were back-transformed to odds ratios "
            "(OR = exp(log OR)); tests use the log scale."
        )
    paras.append(" ".join(parts))

    parts = []
    het = numbers.get("heterogeneity") or {}
    if het.get("structured"):
        t = (
            "Heterogeneity is described by every variance and correlation parameter of the "
            f"random-effects terms and by I² per variance {c.cite('cheung2014')}"
        )
        if an.get("profile"):
            t += (
                ", with profile-likelihood CIs of each parameter, the others re-estimated at "
                "every profile point (metafor's confint)"
            )
        if an.get("lrt"):
            t += (
                "; each random-effects term was tested with a likelihood-ratio test against "
                "the model without it, on as many df as the term has parameters"
            )
        parts.append(t + ".")
    elif levels:
        t = (
            f"Heterogeneity is described by the variance components and by I² per level "
            f"{c.cite('cheung2014')}"
        )
        if an.get("profile"):
            t += (
                ", with profile-likelihood CIs of each σ²; the CI of I² is I² evaluated at "
                "the σ² profile limits (the other components at their estimates)"
            )
        if an.get("lrt"):
            t += (
                f"; each variance component was tested against 0 with a likelihood-ratio "
                f"test, with the p-value of χ²(1) and of the 50:50 mixture of χ²(0) and χ²(1) "
                f"that is correct on the boundary {c.cite('self1987')}"
            )
        parts.append(t + ".")
    rb = numbers.get("robust") or {}
    if an.get("robust") and rb.get("cluster"):
        parts.append(
            f"Cluster-robust inference used the CR2 estimator with Satterthwaite "
            f"degrees of freedom and HTZ Wald tests for several coefficients "
            f"{c.cite('tipton2015', 'pustejovsky2018')}, clustering by "
            f"{rb['cluster']} ({rb['n_clusters']} clusters); tests with fewer than 4 "
            "degrees of freedom are flagged as unreliable and tests with fewer than 1 "
            "are not reported."
        )
    if model["moderators"]:
        parts.append(
            "Each moderator was tested in its own model; subgroup estimates come from "
            "the cell-means model (~ 0 + factor(moderator)); R² per level is the "
            "proportional reduction of each variance component against the "
            "intercept-only model on the same rows, truncated at 0 (no variance "
            "explained), and not reported at a level the moderator cannot explain"
            + ("; all moderators were also tested together." if model.get("joint") else ".")
        )
    sens = numbers.get("sensitivity") or {}
    if sens.get("loo") and "cluster" in sens["loo"]:  # not when leave-one-out failed
        parts.append(
            f"Leave-one-out: the model was refitted without each "
            f"{sens['loo']['cluster']} in turn, variance components re-estimated."
        )
    if sens.get("cooks"):
        ck = sens["cooks"]
        parts.append(
            f"Cook's distances were computed per {sens.get('loo', {}).get('cluster', 'study')} "
            f"from the same refits; a {sens.get('loo', {}).get('cluster', 'study')} is "
            f"influential when its distance exceeds {ck['rule']} "
            f"({fmt.num(ck['cutoff'], 3)}; {c.inner('viechtbauer_cheung2010')})."
        )
    if sens.get("outliers"):
        ol = sens["outliers"]
        parts.append(
            f"Outliers are effect sizes with {ol['rule']}, using standardized "
            f"(internally studentized) marginal residuals "
            f"{c.cite('viechtbauer_cheung2010')}."
        )
    che = numbers.get("che_sweep")
    if che and che.get("available"):
        rhos = ", ".join(f"{r:g}" for r in che["rhos"])
        parts.append(
            f"Sensitivity to correlated sampling errors: the model was refitted under "
            f"the correlated and hierarchical effects working model with ρ = {rhos} "
            f"within {che['rho_cluster']} {c.cite('pustejovsky2022')}, each with "
            "model-based and CR2 inference."
        )
    if parts:
        paras.append(" ".join(parts))

    b = numbers.get("bias") or {}
    if an.get("bias") and b and b.get("available") is not False:
        parts = []
        pred = b.get("predictor") or {}
        if pred.get("name") == "sqrt_inv_n":
            plab = (
                f"√(1/ñ) as moderator (ñ = {pred.get('ntilde')}: a predictor that, unlike "
                f"the standard error, does not depend on the estimate; "
                f"{c.inner('pustejovsky2019')})"
            )
        else:
            plab = "the standard error √vi as moderator"
        multi = len(levels) >= 2 or bool(_structured_terms(model))
        word = "a multilevel " if multi else "an "
        parts.append(
            f"Small-study effects were assessed with {word}Egger regression test "
            f"{c.cite('egger1997')}{' applied to dependent effect sizes ' + c.cite('rodgers2021') if multi else ''} "
            f"with {plab}, and PET-PEESE {c.cite('stanley2014')} with the "
            "same predictor and its square (PEESE when PET's intercept is "
            "significant)."
        )
        mrho = model.get("rho")
        assumed = f"ρ = {mrho:g}" if mrho is not None else "independent sampling errors, ρ = 0"
        parts[-1] += (
            " Both refit the model itself, with its assumption about the sampling "
            f"errors ({assumed})."
        )
        a = b.get("aggregated") or {}
        if a.get("available"):
            sm = a.get("selmodel") or {}
            steps = [x for x in (sm.get("steps") or []) if x < 1]
            side = sm.get("side", "positive")
            parts.append(
                f"Effects were aggregated within {_agg_units(a)} assuming a sampling "
                f"correlation of ρ = {a['rho']:g} ({_rho_from(a)}); on the "
                f"{a.get('n_aggregated')} {_agg_unit(a)} estimates we ran the rank correlation test {c.cite('begg1994')}, "
                f"trim-and-fill (L0 estimator; {c.inner('duval2000')}), and a step-function "
                f"selection model {c.cite('vevea1995')} with one-sided p-value cut point"
                f"{'s' if len(steps) > 1 else ''} {', '.join(fmt.num(x, 3, True) for x in steps)}, "
                f"assuming selection favours significant {side} effects"
                f" ({'the direction of the pooled estimate' if a.get('selection_side_requested') == 'auto' else 'as declared in the analysis file'})."
            )
        paras.append(" ".join(parts))
    pw = numbers.get("power") or {}
    if pw.get("available"):
        paras.append(
            f"The power of the test of the overall average effect was approximated "
            f"for the {pw['label']} working model {c.cite('vembye2023')}, with every "
            f"study given the mean sampling variance and the mean number of effect "
            f"sizes per study."
        )
    versions = numbers["software"]
    paras.append(
        f"Analyses were run with mlmeta {versions['mlmeta']} (Python "
        f"{versions['python']}, NumPy {versions['numpy']}, SciPy {versions['scipy']}, "
        f"pandas {versions['pandas']}); the analysis file reproduces every number, and "
        "results.json holds them all."
    )
    return paras


def _rho_from(a: dict) -> str:
    src = a.get("rho_from") or ""
    if src.startswith("model (no rho"):
        return "as in the model, which assumes independent sampling errors"
    if src == "model":
        return "the model's ρ"
    return "set in the analysis file"


def methods_text(numbers: dict) -> str:
    """The methods section as one string (paragraphs separated by a blank line)."""
    return "\n\n".join(_methods(numbers, Citations()))


# ----------------------------------------------------------------------------- R code
def r_code(numbers: dict) -> str:
    st = numbers["settings"]
    d = numbers["data"]
    model = st["model"]
    lines = []
    if d.get("escalc"):
        args = ", ".join(f"{k} = {v}" for k, v in d["escalc"].items())
        lines.append(f'dat <- escalc("{d["measure"]}", {args}, data = dat)')
        yi, vi = "yi", "vi"
    else:
        yi, vi = d["yi"], d["vi"]
    levels = d["levels"]
    rnd = "/".join(x.split("/")[-1] for x in levels)
    V = vi
    if model.get("rho") is not None:
        cl = model.get("rho_cluster") or (levels[0] if levels else "study")
        # every effect size its own observation (vcalc without obs treats a cluster's rows as
        # one observation: correlation 1, a singular V)
        obs = levels[-1].split("/")[-1] if levels else "seq_len(nrow(dat))"
        lines.append(
            f"V <- vcalc({vi}, cluster = {cl}, obs = {obs}, rho = {model['rho']:g}, data = dat)"
        )
        V = "V"
    terms = _structured_terms(model)
    if terms and model.get("V"):
        lines.append(f'Vl <- read.csv("{model["V"]}")  # row, col, value (lower triangle)')
        lines.append(
            "V <- matrix(0, nrow(dat), nrow(dat)); V[cbind(Vl$row, Vl$col)] <- "
            "Vl$value; V[upper.tri(V)] <- t(V)[upper.tri(V)]"
        )
        V = "V"
    for fac, path in (model.get("R") or {}).items():
        lines.append(
            f'R_{fac} <- as.matrix(read.csv("{path}", row.names = 1, check.names = FALSE))'
        )
    rargs = [yi, V]
    if terms:
        rargs.append(
            f"random = list({', '.join(terms)})" if len(terms) > 1 else f"random = {terms[0]}"
        )
        if model.get("struct"):
            rargs.append(
                "struct = "
                + (
                    f'"{model["struct"][0]}"'
                    if len(model["struct"]) == 1
                    else "c(" + ", ".join(f'"{x}"' for x in model["struct"]) + ")"
                )
            )
        if model.get("R"):
            rargs.append("R = list(" + ", ".join(f"{f} = R_{f}" for f in model["R"]) + ")")
    elif levels:
        rargs.append(f"random = ~ 1 | {rnd}")
    rargs += ["data = dat", f'method = "{model["method"]}"', f'test = "{model["test"]}"']
    if model["test"] == "t":
        rargs.append(f'dfs = "{model["dfs"]}"')
    lines.append(f"res <- rma.mv({', '.join(rargs)})")
    if d["measure"] == "ZCOR":
        lines.append("predict(res, transf = transf.ztor)")
    elif d["measure"] == "OR":
        lines.append("predict(res, transf = exp)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- words
_BENCH = {
    "r": (("cohen1988", (0.10, 0.30, 0.50)),),
    "d": (("cohen1988", (0.2, 0.5, 0.8)),),
    "or": (("chen2010", (1.68, 3.47, 6.71)),),
}


def _size_word(s: _S, est: float, c: Citations) -> tuple[str, str]:
    """('small', 'by the benchmarks of Cohen (1988): .10 small, .30 medium, .50 large')."""
    if s.bounded:
        kind = "r"
    elif s.exp:
        kind = "or"
    elif s.measure == "SMD":
        kind = "d"
    else:
        return "", ""
    key, (a, b, cc) = _BENCH[kind][0]
    x = abs(est)
    if kind == "or":
        x = est if est >= 1 else 1 / est
    word = "very small" if x < a else "small" if x < b else "medium" if x < cc else "large"
    if kind == "r":
        bench = (
            f"{fmt.num(a, 2, True)} small, {fmt.num(b, 2, True)} medium, "
            f"{fmt.num(cc, 2, True)} large"
        )
    elif kind == "d":
        bench = f"{a:g} small, {b:g} medium, {cc:g} large"
    else:
        bench = f"{a:g} small, {b:g} medium, {cc:g} large (or their inverses)"
    return word, f"by the benchmarks of {c.narrative(key)}: {bench}"


def _direction(s: _S, est: float) -> str:
    if s.exp:
        return "higher odds" if est > 1 else "lower odds"
    return "positive" if est > 0 else "negative"


def _primary_p(m: dict, primary: str) -> float | None:
    if primary == "CR2":
        ro = m.get("robust_omnibus") or {}
        return ro.get("pval")
    return (m.get("omnibus") or {}).get("pval")


def _plain_summary(numbers: dict, s: _S, c: Citations) -> list[str]:
    """The summary for practitioners, generated by fixed rules from the numbers."""
    d = numbers["data"]
    o = numbers["overall"]
    disp = o["display"]
    inf = numbers.get("inference") or {}
    primary = inf.get("primary", "model")
    alpha = inf.get("alpha", 0.05)
    est = disp["estimate"]
    out = []
    n_st = d.get("n_studies")
    base = (
        f"Across {fmt.count(n_st)} studies ({fmt.count(d['k'])} effect sizes)"
        if n_st
        else f"Across {fmt.count(d['k'])} effect sizes"
    )
    if primary == "CR2" and (numbers.get("robust") or {}).get("pval") is not None:
        p = numbers["robust"]["pval"]
    else:
        p = o["pval"]
    word, bench = _size_word(s, est, c)
    sym = s.label
    if p is not None and p < alpha:
        size = f"{word} " if word else ""
        noun = "association" if s.bounded else "effect"
        txt = (
            f"{base}, the average {noun} was {size}and "
            f"{_direction(s, est)} ({sym} = {s.v(est)}, {numbers['settings']['level_text']} "
            f"CI {s.ci(disp['ci_lb'], disp['ci_ub'])})"
        )
        txt += f", {bench}." if bench else "."
    else:
        txt = (
            f"{base}, the average effect ({sym} = {s.v(est)}) was not statistically "
            f"different from {'1' if s.exp else 'zero'}; the data are compatible with "
            f"average effects from {s.v(disp['ci_lb'])} to {s.v(disp['ci_ub'])}, so this "
            "does not show that there is no effect."
        )
    out.append(txt)
    mod_sents = []
    for m in numbers.get("moderators") or []:
        if m.get("available") is False:
            continue
        pm = _primary_p(m, primary)
        name = m["name"]
        if pm is None:
            mod_sents.append(f"Whether the effect differs by {name} could not be tested reliably.")
            continue
        if pm >= alpha:
            noun = "association" if s.bounded else "effect"
            mod_sents.append(
                f"The {noun} did not differ significantly by {name} "
                f"({_ptext(pm)}); this does not show that it is the same "
                f"across {name} categories."
                if m["type"] == "categorical"
                else f"The {noun} was not significantly related to {name} "
                f"({_ptext(pm)}); this does not show that it is unrelated."
            )
            continue
        if m["type"] == "categorical":
            cats = [x for x in m.get("categories") or [] if x.get("estimate") is not None]
            if len(cats) < 2:
                continue
            ref = s.null
            same_sign = all((x["estimate"] - ref) * (est - ref) > 0 for x in cats)
            if same_sign:
                strong = max(cats, key=lambda x: abs(x["estimate"] - ref))
                weak = min(cats, key=lambda x: abs(x["estimate"] - ref))
                noun = "association" if s.bounded else "effect"
                mod_sents.append(
                    f"The {noun} was stronger when {name} was "
                    f"{strong['level']} ({sym} = {s.v(strong['estimate'])}) than "
                    f"when it was {weak['level']} ({sym} = "
                    f"{s.v(weak['estimate'])}; {_ptext(pm)})."
                )
            else:
                parts = ", ".join(f"{sym} = {s.v(x['estimate'])} for {x['level']}" for x in cats)
                noun = "association" if s.bounded else "effect"
                mod_sents.append(f"The {noun} differed by {name} ({parts}; {_ptext(pm)}).")
        else:
            sl = (m.get("coefficients") or [{}])[-1]
            b = sl.get("estimate")
            if b is None:
                continue
            stronger = (b < 0) == (est - s.null < 0 if not s.exp else est < 1)
            noun = "association" if s.bounded else "effect"
            mod_sents.append(
                f"The {noun} was {'stronger' if stronger else 'weaker'} in "
                f"studies with higher {name} ({_ptext(pm)})."
            )
    out += mod_sents
    if d["levels"] and disp.get("pi_lb") is not None:
        pl, pu = disp["pi_lb"], disp["pi_ub"]
        t = (
            f"In a new study like these, the true effect is expected to lie between "
            f"{sym} = {s.v(pl)} and {s.v(pu)} ({numbers['settings']['level_text']} prediction "
            "interval)"
        )
        if (pl - s.null) * (pu - s.null) < 0:
            t += (
                "; it includes "
                + ("1" if s.exp else "zero")
                + ", so some settings may show no association or one in the opposite direction."
            )
        else:
            t += "."
        out.append(t)
    out.append("These are associations across studies; they do not show cause and effect.")
    if numbers.get("simulated"):
        out.append("The data are simulated: these sentences show the wording, not findings.")
    return out


# ----------------------------------------------------------------------------- document
def build_document(numbers: dict) -> list[dict[str, Any]]:
    """The report's blocks (see the module docstring)."""
    doc = _Doc()
    c = doc.cites
    s = _S(numbers)
    d = numbers["data"]
    o = numbers["overall"]
    inf = numbers.get("inference") or {}
    primary = inf.get("primary", "model")
    doc.add(_h(1, numbers["title"], "title"))
    if numbers["simulated"]:
        doc.add(
            {
                "t": "notice",
                "cls": "simulated",
                "id": "simulated",
                "text": "SIMULATED DATA: these are simulated effect sizes, not results of real "
                "studies. Do not cite the numbers below as findings.",
            }
        )
    if numbers.get("notice"):
        doc.add({"t": "notice", "cls": "info", "text": numbers["notice"], "id": None})
    facts = [f"Data: {d['source']}"]
    counts = f"{fmt.count(d['k'])} effect sizes"
    if d.get("n_studies") is not None:
        counts = f"{fmt.count(d['n_studies'])} studies, " + counts
    facts.append(counts)
    pt = d.get("participants")
    if pt and pt.get("sum") is not None:
        t = f"N = {fmt.count(pt['sum'])} participants (sum of {pt['column']} over effect sizes"
        if pt.get("sum_of_study_max") is not None and pt["sum_of_study_max"] != pt["sum"]:
            t += f"; {fmt.count(pt['sum_of_study_max'])} counting each study's largest sample once"
        facts.append(t + ")")
    if d["rows_dropped"]:
        facts.append(f"{len(d['rows_dropped'])} of {d['rows']} rows dropped for missing values")
    facts.append(f"mlmeta {numbers['software']['mlmeta']}, {numbers['created']}")
    doc.add(_p(" · ".join(facts), "facts"))

    # --- plain-language summary
    doc.add(_h(2, "Summary for practitioners", "summary"))
    for t in _plain_summary(numbers, s, c):
        doc.add(_p(t, "summary"))

    # --- overall
    doc.add(_h(2, "Overall effect", "overall"))
    rb = numbers.get("robust") or {}
    if primary == "CR2" and rb.get("apa"):
        doc.add(_p(o["apa"], "apa-model"))
    doc.add(_p(rb["apa"] if primary == "CR2" and rb.get("apa") else o["apa"], "apa"))
    where = f"from {fmt.count(d['n_studies'])} studies " if d.get("n_studies") else ""
    kind = "correlation" if s.bounded else ("odds ratio" if s.exp else "effect")
    test_txt = (
        f"CR2 cluster-robust t test with {_df(rb.get('df'))} Satterthwaite df "
        f"{c.cite('tipton2015')}"
        if primary == "CR2" and rb.get("apa")
        else f"model-based {o['stat_name']} test"
        f"{' with ' + fmt.df_text(o['df']) + ' df' if o['df'] is not None else ''}"
    )
    txt = (
        f"Pooled {kind} of {fmt.count(d['k'])} effect sizes {where}"
        f"({'back-transformed from Fisher z; ' if o['transformed'] else ''}"
        f"{'back-transformed from the log odds ratio; ' if s.exp else ''}"
        f"primary inference: {test_txt})."
    )
    if d["levels"]:
        txt += (
            f" {o['pi_text']}: the range expected to contain the true effect in a new study "
            f"{c.cite('higgins2009')}."
        )
    doc.add(_p(txt))
    if rb.get("apa") and primary != "CR2":
        t = (
            f"With CR2 cluster-robust inference ({rb['n_clusters']} clusters by "
            f"{rb['cluster']}; {c.inner('tipton2015')}): {rb['apa']}."
        )
        if _df_status(rb.get("df")) == "small":
            t += f" Note: {SMALL_DF_WARNING} {c.cite('tipton2015')}."
        doc.add(_p(t, "robust"))
    elif primary == "CR2" and rb.get("apa"):
        doc.add(_p(f"Model-based inference: {o['apa']}."))
    if inf.get("differ"):
        a = fmt.num(inf["alpha"], 2, True)
        sig_m = "significant" if inf["model_significant"] else "not significant"
        sig_r = "significant" if inf.get("cr2_significant") else "not significant"
        doc.add(
            _p(
                f"The two inferences disagree: the pooled effect is {sig_m} at α = {a} with "
                f"the model-based test but {sig_r} with the CR2 cluster-robust test. The "
                f"primary inference is the {'CR2' if primary == 'CR2' else 'model-based'} "
                "test; the disagreement means the conclusion depends on the assumptions of "
                "the model (model-based) versus few-cluster robustness (CR2).",
                "disagree",
            )
        )
    doc.add(_p(f"Fit diagnostics: {numbers['diagnostics']['verdict']}.", "diagnostics"))
    doc.add(_fig("forest"))

    _heterogeneity_blocks(doc, numbers, s)
    _moderator_section(doc, numbers, s)
    _sensitivity_blocks(doc, numbers, s)
    _bias_blocks(doc, numbers, s)
    _power_blocks(doc, numbers)
    _studies_table(doc, numbers)

    ws = numbers.get("warnings") or []
    dg = numbers["diagnostics"]
    notes = list(dg.get("notes") or [])
    if ws or notes:
        doc.add(_h(2, "Notes and warnings", "warnings"))
        where2: dict[str, list[str]] = {}
        for w in ws:
            if "pseudo-R2 is negative" in w["message"]:
                continue  # the text says "no variance explained" where it applies
            secs = where2.setdefault(w["message"], [])
            if w["section"] not in secs:
                secs.append(w["section"])
        items = [f"{m} ({', '.join(secs)})" for m, secs in where2.items()] + notes
        doc.add({"t": "list", "items": items, "ordered": False, "id": None})

    doc.add(_h(2, "Methods", "methods"))
    for para in _methods(numbers, c):
        doc.add(_p(para, "methods"))
    doc.add(_p("The same model in R (metafor):"))
    doc.add({"t": "code", "text": r_code(numbers)})
    if numbers.get("command"):
        doc.add(_p(f"Reproduce this report: {numbers['command']}"))

    doc.add(_h(2, "References", "references"))
    doc.add(
        {
            "t": "list",
            "ordered": True,
            "id": "reference-list",
            "items": [e["text"] for e in c.entries()],
        }
    )
    return doc.blocks


# ----------------------------------------------------------------------------- sections
def _heterogeneity_structured_blocks(doc: _Doc, numbers: dict, s: _S) -> None:
    """Variance and correlation parameters of a model with '~ inner | outer' terms, their
    profile-likelihood CIs and I², and the likelihood-ratio test of each term."""
    het = numbers["heterogeneity"]
    c = doc.cites
    lv = numbers["settings"]["level_text"]
    doc.add(_h(2, "Heterogeneity", "heterogeneity"))
    any_ci = any(x.get("ci") for x in het["components"])

    def ci_text(x: dict) -> str:
        lo, hi = x["ci"]
        if lo is None or hi is None:
            return "[not defined]"
        d = 4 if x["kind"] == "variance" else 3
        beyond = x.get("ci_beyond") or ["", ""]
        return f"[{beyond[0]}{fmt.num(lo, d)}, {beyond[1]}{fmt.num(hi, d)}]"

    rows = [["Sampling error", fmt.count(numbers["data"]["k"]), "", _pct(het["I2_sampling"])]]
    for x in het["components"]:
        est = fmt.num(x["estimate"], 4 if x["kind"] == "variance" else 3)
        if x["fixed"]:
            est += " (fixed)"
        elif x.get("ci"):
            est += " " + ci_text(x)
        rows.append(
            [x["name"], fmt.count(x["n_groups"]), est, "" if x["I2"] is None else _pct(x["I2"])]
        )
    doc.table(
        f"Variance components and correlations ({s.model_scale} scale)"
        f"{' with ' + lv + ' profile-likelihood CIs' if any_ci else ''}, and I²",
        ["Parameter", "Groups", "Estimate" + (" [CI]" if any_ci else ""), "I²"],
        rows,
        id_="heterogeneity-table",
        note=(
            "sigma2 = variance of a '~ 1 | factor' term; tau2 and rho = variance(s) and "
            "correlation(s) of the first '~ inner | outer' term, gamma2 and phi of the "
            "second (metafor's names); Groups = levels of the outer factor. I² = share of "
            "the total variance (random effects + typical sampling variance; "
            f"{c.inner('cheung2014')}), per inner level where the term has one variance "
            "per level. CIs from the profile likelihood (metafor's confint); '<' or '>' "
            "(metafor's marks): the profile stays above the cut-off up to the end of "
            "the searched range, so the limit lies beyond the value shown."
        ),
    )
    terms = het.get("terms") or []
    if terms:
        trows = [[t["term"], fmt.num(t["LRT"], 3), str(t["df"]), _pv(t["pval"])] for t in terms]
        doc.table(
            "Likelihood-ratio tests of each random-effects term",
            ["Term dropped", "LRT χ²", "df", "p"],
            trows,
            id_="lrt-terms-table",
            note=(
                "Each term against the model without it, both fitted by "
                f"{numbers['settings']['model']['method']} (metafor's anova); df = the "
                "term's parameters. A variance on the boundary makes the χ² reference "
                f"conservative {c.cite('self1987')}."
            ),
        )
    doc.add(_p(f"Residual heterogeneity: {het['QE_text']}."))


def _heterogeneity_blocks(doc: _Doc, numbers: dict, s: _S) -> None:
    het = numbers.get("heterogeneity")
    if het and het.get("structured"):
        _heterogeneity_structured_blocks(doc, numbers, s)
        return
    if not het or not het.get("levels"):
        return
    c = doc.cites
    d = numbers["data"]
    lv = numbers["settings"]["level_text"]
    doc.add(_h(2, "Heterogeneity", "heterogeneity"))
    rows = [
        ["Sampling error (level 1)", fmt.count(d["k"]), "", _pct(het["I2_sampling"]), "", "", ""]
    ]
    any_ci = any("sigma2_ci" in x for x in het["levels"])
    for x in reversed(het["levels"]):
        s2 = fmt.num(x["sigma2"], 4)
        if x.get("sigma2_ci"):
            s2 += " " + (
                fmt.ci_text(x["sigma2_ci"][0], x["sigma2_ci"][1], digits=4)
                if None not in x["sigma2_ci"]
                else "[not defined]"
            )
        i2 = _pct(x["I2"])
        if x.get("I2_ci"):
            i2 += " " + (
                fmt.ci_text(x["I2_ci"][0], x["I2_ci"][1], digits=1)
                if None not in x["I2_ci"]
                else "[not defined]"
            )
        lr = x.get("lrt")
        rows.append(
            [
                f"{x['level']}",
                fmt.count(x["n_groups"]),
                s2,
                i2,
                fmt.num(lr["LRT"], 3) if lr else "",
                _pv(lr["pval"]) if lr else "",
                _pv(lr["pval_mixture"]) if lr else "",
            ]
        )
    tot = _pct(het["I2_total"])
    if het.get("I2_total_ci"):
        tot += " " + fmt.ci_text(het["I2_total_ci"][0], het["I2_total_ci"][1], digits=1)
    rows.append(
        [
            "Total (all random effects)",
            "",
            fmt.num(sum(x["sigma2"] for x in het["levels"]), 4),
            tot,
            "",
            "",
            "",
        ]
    )
    doc.table(
        f"Variance components ({s.model_scale} scale), I² per level"
        f"{' with ' + lv + ' profile-likelihood CIs' if any_ci else ''}, and "
        "likelihood-ratio tests of each level against 0",
        [
            "Level",
            "Groups",
            "σ²" + (" [CI]" if any_ci else ""),
            "I²" + (" [CI]" if any_ci else ""),
            "LRT χ²(1)",
            "p",
            "p (mixture)",
        ],
        rows,
        id_="heterogeneity-table",
        note=(
            "I² = share of the total variance (random effects + typical sampling "
            f"variance; {c.inner('cheung2014')}). The CI of I² is I² evaluated at the "
            "σ² profile-likelihood limits (other components at their estimates); the "
            "total's CI is conservative (sum of the per-level limits). p (mixture) = "
            "boundary-corrected p of the 50:50 χ²(0)/χ²(1) mixture "
            f"({c.inner('self1987')})."
        ),
    )
    doc.add(_p(f"Residual heterogeneity: {het['QE_text']}."))
    alpha = (numbers.get("inference") or {}).get("alpha", 0.05)
    for x in het["levels"]:
        lr = x.get("lrt")
        ci = x.get("sigma2_ci")
        if not lr or not ci or ci[0] is None:
            continue
        if ci[0] <= 1e-10 and lr.get("pval_mixture") is not None and lr["pval_mixture"] < alpha:
            doc.add(
                _p(
                    f"For {x['level']}, the {lv} profile-likelihood CI of σ² includes 0 although the "
                    f"likelihood-ratio test rejects σ² = 0 (χ²(1) = {fmt.num(lr['LRT'], 3)}, mixture "
                    f"{_ptext(lr['pval_mixture'])}). Both rest on the same likelihood ratio: the CI "
                    f"keeps every value whose ratio stays below the χ²(1) cut-off "
                    f"({fmt.num(_chi2_cut(numbers), 2)}), while the "
                    "test of a variance on its boundary uses the 50:50 mixture of χ²(0) and χ²(1), "
                    f"whose cut-off is lower {c.cite('self1987')}; a statistic between the two "
                    "cut-offs gives exactly this pattern. The evidence for this variance component "
                    "is therefore modest.",
                    "boundary",
                )
            )
    doc.add(_fig("profile"))


def _chi2_cut(numbers: dict) -> float:
    from mlmeta.core.dist import chi2_isf

    return float(chi2_isf(1 - numbers["settings"]["level"] / 100.0, 1))


def _r2_text(r2: dict | None, c: Citations) -> str:
    """'R² (proportional reduction of σ²): study 45%, es not applicable (...); total 30%'."""
    if not r2 or r2.get("available") is False:
        return ""
    appl = r2.get("applicable") or {}
    parts = []
    for k, v in (r2.get("levels") or {}).items():
        if appl and not appl.get(k, True):
            parts.append(
                f"{k} not applicable (the moderator does not vary within the groups "
                "this level's variance lies in)"
            )
        elif v is None:
            parts.append(f"{k} not defined (no variance at this level to explain)")
        elif v <= 0:
            parts.append(f"{k}: no variance explained")
        else:
            parts.append(f"{k} {fmt.pct(100 * v)}")
    tot = r2.get("total")
    tt = (
        "not defined"
        if tot is None
        else "no variance explained"
        if tot <= 0
        else fmt.pct(100 * tot)
    )
    return f"R² per level: {'; '.join(parts)}; total {tt}"


def _r2_cell(r2: dict | None) -> str:
    if not r2 or r2.get("available") is False:
        return ""
    appl = r2.get("applicable") or {}
    parts = []
    for k, v in (r2.get("levels") or {}).items():
        if appl and not appl.get(k, True):
            parts.append(f"{k} n/a")
        elif v is None:
            parts.append(f"{k} not defined")
        else:
            parts.append(f"{k} {fmt.pct(100 * max(v, 0.0), 0)}")
    return ", ".join(parts)


def _robust_text(ro: dict | None, c: Citations) -> str:
    """'; CR2: F(1, 20.5) = ..., p = ...' with the small-df warning, or 'not defined'."""
    if not ro:
        return ""
    if ro.get("available") is False:
        return f"; CR2 test not available ({ro.get('reason')})"
    if ro.get("df_status") == "undefined" or ro.get("apa") is None:
        return (
            f"; the CR2 test is not defined ({ro.get('why_undefined', 'its df are below 1')}"
            f"; {c.inner('tipton2015')})"
        )
    t = f"; CR2: {ro['apa']}"
    if ro.get("df_status") == "small":
        t += f" ({SMALL_DF_WARNING}; {c.inner('tipton2015')})"
    return t


def _robust_cell(ro: dict | None) -> str:
    if not ro or ro.get("available") is False:
        return ""
    if ro.get("df_status") == "undefined" or ro.get("apa") is None:
        return "not defined (df < 1)"
    return ro["apa"] + (" †" if ro.get("df_status") == "small" else "")


def _moderator_section(doc: _Doc, numbers: dict, s: _S) -> None:
    mods = numbers.get("moderators") or []
    if not mods:
        return
    c = doc.cites
    lv = numbers["settings"]["level_text"]
    L = s.label
    primary = (numbers.get("inference") or {}).get("primary", "model")
    doc.add(_h(2, "Moderators", "moderators"))
    # a CR2 column only when some moderator has a CR2 test (none when CR2 is switched off or
    # undefined for the model, e.g. crossed random effects without model.cluster)
    has_rob = any(m.get("robust_omnibus") for m in mods)
    rob_off = (numbers.get("robust") or {}).get("available") is False
    how = (
        f"model-based and with CR2 cluster-robust inference {c.cite('tipton2015')}"
        if has_rob
        else "model-based"
        + (
            " (CR2 cluster-robust inference is not available for this model; see Sensitivity)"
            if rob_off
            else ""
        )
    )
    doc.add(
        _p(
            f"Each moderator in its own model. Subgroup estimates ({L} with {lv} CI) come "
            "from the cell-means model; the omnibus test compares the subgroups (or tests "
            f"the slope) in the model with an intercept, {how}; the primary inference is "
            f"{'CR2' if primary == 'CR2' else 'model-based'}."
        )
    )
    # the journal-style table
    rows = []
    small = False
    for m in mods:
        if m.get("available") is False:
            rows.append([m["name"], "", "", "not available", "", "", "", ""])
            continue
        ro = m.get("robust_omnibus")
        small = small or (ro or {}).get("df_status") == "small"
        rows.append(
            [
                m["name"],
                str(m["k"]),
                "" if m.get("n_studies") is None else str(m["n_studies"]),
                "",
                "",
                m["omnibus"]["apa"],
                _robust_cell(ro),
                _r2_cell(m.get("R2")),
            ]
        )
        if m["type"] == "categorical":
            for cc in m["categories"]:
                rows.append(
                    [
                        f"   {cc['level']}",
                        str(cc["k"]),
                        "" if cc["n_studies"] is None else str(cc["n_studies"]),
                        s.v(cc["estimate"]),
                        s.ci(cc["ci_lb"], cc["ci_ub"]),
                        "",
                        "",
                        "",
                    ]
                )
        else:
            sl = m["coefficients"][-1]
            dg = fmt.coef_digits(sl["se"])
            rows.append(
                [
                    f"   slope ({s.model_scale} per unit)",
                    "",
                    "",
                    fmt.num(sl["estimate"], dg),
                    fmt.ci_text(sl["ci_lb"], sl["ci_ub"], dg),
                    "",
                    "",
                    "",
                ]
            )
    crn = f"; CR2 = cluster-robust HTZ test {c.cite('tipton2015')}" if has_rob else ""
    note = (
        f"k = effect sizes; Studies = studies contributing. Test = omnibus test of the "
        f"moderator ({'F' if numbers['overall']['stat_name'] == 't' else 'QM'}){crn}. R² = "
        "proportional reduction of each variance component (0 = no variance explained; "
        "n/a = the moderator cannot explain variance at that level)."
    )
    if small:
        note += f" † {SMALL_DF_WARNING[0].upper() + SMALL_DF_WARNING[1:]}."
    head = ["Moderator / level", "k", "Studies", f"{L}", f"{lv} CI", "Test", "CR2 test", "R²"]
    align = "lrrrrlll"
    if not has_rob:
        head, align = head[:6] + head[7:], align[:6] + align[7:]
        rows = [r[:6] + r[7:] for r in rows]
    doc.table("Moderator analyses", head, rows, align=align, note=note, id_="moderator-table")
    for m in mods:
        _moderator_blocks(doc, m, s, numbers)
    j = numbers.get("joint")
    if j and j.get("coefficients"):
        _joint_blocks(doc, j, numbers, s)


def _moderator_blocks(doc: _Doc, m: dict, s: _S, numbers: dict) -> None:
    c = doc.cites
    lv = numbers["settings"]["level_text"]
    L = s.label
    doc.add(_h(3, f"{m['name']} ({m['type']})", f"mod-{m['name']}"))
    if m.get("available") is False:
        doc.add(_p(f"Not available: {m['reason']}."))
        return
    facts = [f"k = {m['k']}"]
    if m.get("n_studies") is not None:
        facts.append(f"{m['n_studies']} studies")
    if m.get("rows_dropped"):
        facts.append(f"{m['rows_dropped']} rows with missing {m['name']} dropped")
    txt = f"Omnibus test: {m['omnibus']['apa']}" + _robust_text(m.get("robust_omnibus"), c)
    r2 = _r2_text(m.get("R2"), c)
    doc.add(_p(f"{txt} ({', '.join(facts)}){'. ' + r2 if r2 else ''}.", "omnibus"))
    if m["type"] == "categorical":
        has_rob = any("robust" in x for x in m["categories"])
        rows = []
        small = False
        for cc in m["categories"]:
            row = [
                cc["level"],
                str(cc["k"]),
                "" if cc["n_studies"] is None else str(cc["n_studies"]),
                s.v(cc["estimate"]),
                s.ci(cc["ci_lb"], cc["ci_ub"]),
                _pv(cc["pval"]),
            ]
            if has_rob:
                rr = cc.get("robust", {})
                stt = _df_status(rr.get("df"))
                small = small or stt == "small"
                if stt == "undefined":
                    row += ["not defined", _df(rr.get("df")), "not defined"]
                else:
                    row += [
                        s.ci(rr.get("ci_lb"), rr.get("ci_ub")),
                        _df(rr.get("df")) + (" †" if stt == "small" else ""),
                        _pv(rr.get("pval")),
                    ]
            rows.append(row)
        head = [m["name"], "k", "Studies", L, f"{lv} CI", "p"]
        if has_rob:
            head += [f"CR2 {lv} CI", "CR2 df", "CR2 p"]
        note = "p tests each subgroup's effect against " + ("1." if s.exp else "0.")
        if small:
            note += f" † {SMALL_DF_WARNING[0].upper() + SMALL_DF_WARNING[1:]} ({c.inner('tipton2015')})."
        doc.table(
            f"{m['name']}: subgroup estimates", head, rows, note=note, id_=f"mod-table-{m['name']}"
        )
        doc.add(_fig(f"orchard_{m['name']}"))
    else:
        doc.add(_p(f"Slope of {m['name']} ({s.model_scale} per unit): {m['apa']}.", "slope"))
        _coef_table(
            doc,
            m["coefficients"],
            f"{m['name']}: meta-regression coefficients ({s.model_scale} scale)",
            lv,
            f"mod-table-{m['name']}",
            numbers["overall"]["stat_name"],
        )
        doc.add(_fig(f"bubble_{m['name']}"))


def _coef_table(doc: _Doc, coefs, title, lv, id_, stat="t", note=None):
    c = doc.cites
    has_rob = any("robust" in x for x in coefs)
    rows = []
    small = False
    for x in coefs:
        dg = fmt.coef_digits(x["se"])
        row = [
            x["name"],
            fmt.num(x["estimate"], dg),
            fmt.num(x["se"], dg),
            fmt.ci_text(x["ci_lb"], x["ci_ub"], dg),
            fmt.num(x["stat"], 3),
            fmt.df_text(x["df"]) if x["df"] is not None else "",
            _pv(x["pval"]),
        ]
        if has_rob:
            rr = x["robust"]
            stt = _df_status(rr.get("df"))
            small = small or stt == "small"
            if stt == "undefined":
                row += ["not defined", _df(rr.get("df")), "not defined"]
            else:
                row += [
                    fmt.ci_text(rr["ci_lb"], rr["ci_ub"], dg),
                    _df(rr["df"]) + (" †" if stt == "small" else ""),
                    _pv(rr["pval"]),
                ]
        rows.append(row)
    head = ["Term", "b", "SE", f"{lv} CI", stat, "df", "p"]
    if has_rob:
        head += [f"CR2 {lv} CI", "CR2 df", "CR2 p"]
    if small:
        w = f"† {SMALL_DF_WARNING[0].upper() + SMALL_DF_WARNING[1:]} ({c.inner('tipton2015')})."
        note = f"{note} {w}" if note else w
    doc.table(title, head, rows, note=note, id_=id_)


def _joint_blocks(doc: _Doc, j: dict, numbers: dict, s: _S) -> None:
    c = doc.cites
    lv = numbers["settings"]["level_text"]
    doc.add(_h(3, "All moderators together", "mod-joint"))
    txt = f"Model {j['formula']} (k = {j['k']}): omnibus test {j['omnibus']['apa']}" + _robust_text(
        j.get("robust_omnibus"), c
    )
    r2 = _r2_text(j.get("R2"), c)
    doc.add(_p(txt + (". " + r2 if r2 else "") + ".", "omnibus"))
    refs = []
    names = [x["name"] for x in j["coefficients"]]
    for m in numbers.get("moderators") or []:
        if m.get("type") != "categorical" or m["name"] not in j.get("moderators", []):
            continue
        levels = [x["level"] for x in m.get("categories") or []]
        term = f"factor({m['name']})" if m["name"].isidentifier() else f"factor(`{m['name']}`)"
        plain = m["name"]
        coded = [
            lev
            for lev in levels
            if f"{term}{lev}" in names or f"{plain}{lev}" in names or f"{plain}[T.{lev}]" in names
        ]
        missing = [lev for lev in levels if lev not in coded]
        if len(missing) == 1:
            refs.append(f"{m['name']} = {missing[0]}")
    ref_txt = ("; reference categories: " + ", ".join(refs)) if refs else ""
    _coef_table(
        doc,
        j["coefficients"],
        f"Joint model coefficients ({s.model_scale} scale{ref_txt})",
        lv,
        "mod-table-joint",
        numbers["overall"]["stat_name"],
        note=(
            "Each category's coefficient is its difference from the reference "
            "category, the others held constant."
            if refs
            else None
        ),
    )


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


def _sensitivity_blocks(doc: _Doc, numbers: dict, s: _S) -> None:
    c = doc.cites
    sens = numbers.get("sensitivity") or {}
    st = numbers["settings"]
    lv = st["level_text"]
    L = s.label
    doc.add(_h(2, "Sensitivity", "sensitivity"))
    rb = numbers.get("robust")
    if rb:
        doc.add(_h(3, "Cluster-robust inference (CR2)", "sens-robust"))
        if rb.get("apa"):
            t = (
                f"CR2 cluster-robust: {rb['apa']} ({rb['n_clusters']} clusters, "
                f"Satterthwaite df; {c.inner('tipton2015', 'pustejovsky2018')})."
            )
            if _df_status(rb.get("df")) == "small":
                t += f" Note: {SMALL_DF_WARNING}."
            doc.add(_p(t))
        else:
            doc.add(_p(f"CR2 cluster-robust inference is not available: {rb.get('reason')}."))
    loo = sens.get("loo")
    if loo and loo.get("rows"):
        doc.add(_h(3, f"Leave one {loo['cluster']} out", "sens-loo"))
        if "min" in loo:
            doc.add(
                _p(
                    f"Leave-one-out: leaving out one {loo['cluster']} at a time, {L} ranged from "
                    f"{s.v(loo['min'])} (without {loo['cluster']} {loo['min_left_out']}) to "
                    f"{s.v(loo['max'])} (without {loo['cluster']} {loo['max_left_out']}); "
                    f"{loo['n_significant']} of {loo['n'] - loo['failed']} estimates differ from "
                    f"{'1' if s.exp else '0'} at p < {fmt.num(1 - st['level'] / 100, 2, True)}"
                    + (f"; {loo['sign_changes']} change sign" if loo["sign_changes"] else "")
                    + (f"; {loo['failed']} refits failed" if loo["failed"] else "")
                    + ".",
                    "loo",
                )
            )
        doc.add(_fig("loo"))
        rows = [
            [str(r["left_out"]), s.v(r["estimate"]), s.ci(r["ci_lb"], r["ci_ub"]), _pv(r["pval"])]
            for r in loo["rows"]
            if r["estimate"] is not None
        ]
        doc.table(
            f"Leave-one-{loo['cluster']}-out estimates",
            [f"{loo['cluster']} left out", L, f"{lv} CI", "p"],
            rows,
            id_="loo-table",
        )
    ck = sens.get("cooks")
    ol = sens.get("outliers")
    if ck or ol:
        doc.add(_h(3, "Influential studies and outliers", "sens-influence"))
    if ck:
        unit = (loo or {}).get("cluster", "study")
        rule = (
            f"Cook's distance above {ck['rule']}, {fmt.num(ck['cutoff'], 3)}; "
            f"{c.inner('viechtbauer_cheung2010')}"
        )
        if ck["influential"]:
            vals = {r["cluster"]: r["value"] for r in ck["rows"]}
            txt = ", ".join(f"{x} (D = {fmt.num(vals[x], 3)})" for x in ck["influential"])
            doc.add(_p(f"Influential {_plural(unit)} ({rule}): {txt}.", "cooks"))
        else:
            doc.add(_p(f"Influential {_plural(unit)} ({rule}): none.", "cooks"))
    if ol:
        cite = c.cite("viechtbauer_cheung2010")
        if ol["rows"]:
            doc.add(
                _p(
                    f"Outliers: {ol['n']} of {ol['k']} effect sizes have {ol['rule']} {cite}.",
                    "outliers",
                )
            )
            keys = [k for k in ol["rows"][0] if k not in ("row", "z", "yi", "effect")]
            rows = [
                [str(r["row"])] + [str(r[k]) for k in keys] + [s.v(r["effect"]), fmt.num(r["z"], 2)]
                for r in ol["rows"]
            ]
            doc.table(
                "Outlying effect sizes", ["Data row", *keys, L, "z"], rows, id_="outlier-table"
            )
        else:
            t = f"Outliers: none of the {ol['k']} effect sizes has {ol['rule']} {cite}."
            if ol.get("rule_name") == "bonferroni" and ol.get("n_above_1_96"):
                t += (
                    f" ({ol['n_above_1_96']} exceed 1.96 in absolute value, where chance "
                    f"alone would give about {fmt.num(0.05 * ol['k'], 0)} of {ol['k']}.)"
                )
            doc.add(_p(t, "outliers"))
    che = numbers.get("che_sweep")
    if che:
        doc.add(_h(3, "Correlated sampling errors (CHE sweep over ρ)", "sens-che"))
        if che.get("available"):
            sig = che["sigma2_columns"]
            rows = []
            small = False
            for r in che["rows"]:
                rr = r.get("robust") or {}
                stt = rr.get("df_status", "undefined") if rr.get("available", True) else None
                small = small or stt == "small"
                row = [
                    fmt.num(r["rho"], 1),
                    s.v(r.get("estimate")),
                    s.ci(r.get("ci_lb_display"), r.get("ci_ub_display")),
                    _pv(r.get("pval")),
                ]
                if stt is None or not rr:
                    row += ["not available", ""]
                elif stt == "undefined":
                    row += ["not defined", "not defined"]
                else:
                    row += [
                        s.ci(rr.get("ci_lb_display"), rr.get("ci_ub_display")),
                        _pv(rr.get("pval")) + (" †" if stt == "small" else ""),
                    ]
                rows.append(row + [fmt.num(r[col], 4) for col in sig])
            note = (
                f"Model refitted with sampling errors correlated ρ within "
                f"{che['rho_cluster']} (correlated and hierarchical effects; "
                f"{c.inner('pustejovsky2022')}); ρ = 0 is the model without correlated "
                "errors."
            )
            if small:
                note += f" † {SMALL_DF_WARNING[0].upper() + SMALL_DF_WARNING[1:]}."
            doc.table(
                f"Sensitivity to the assumed sampling correlation ρ within {che['rho_cluster']}",
                ["ρ", L, f"{lv} CI", "p", f"CR2 {lv} CI", "CR2 p"]
                + [f"σ² {col[len('sigma2_') :]}" for col in sig],
                rows,
                note=note,
                id_="che-table",
            )
        else:
            doc.add(_p(f"The CHE sensitivity analysis is not available: {che.get('reason')}."))


def _bias_blocks(doc: _Doc, numbers: dict, s: _S) -> None:
    c = doc.cites
    b = numbers.get("bias")
    if b is None:
        return
    lv = numbers["settings"]["level_text"]
    L = s.label
    levels = numbers["data"]["levels"]
    doc.add(_h(2, "Publication bias and small-study effects", "bias"))
    if b.get("available") is False:
        doc.add(_p(f"Not available: {b['reason']}."))
        doc.add(_fig("funnel"))
        return
    pred = b.get("predictor") or {}
    plab = "√(1/ñ)" if pred.get("name") == "sqrt_inv_n" else "√vi"
    eg = b.get("egger", {})
    if eg.get("apa"):
        multi = len(levels) >= 2 or bool(_structured_terms(numbers["settings"]["model"]))
        word = "Multilevel Egger" if multi else "Egger"
        t = f"{word} regression test ({c.inner('egger1997')}; slope of {plab}): {eg['apa']}"
        if eg.get("robust_apa"):
            t += f"; {eg['robust_apa']}"
            if (eg.get("robust") or {}).get("df_status") == "small":
                t += f" ({SMALL_DF_WARNING})"
        elif (eg.get("robust") or {}).get("available") is False:
            why = str(eg["robust"].get("reason"))
            if why == str((numbers.get("robust") or {}).get("reason")):
                t += ". The CR2 robust version is not available for this model (see Sensitivity)"
            else:
                t += f". The CR2 robust version is not available: {why}"
        elif eg.get("robust"):
            t += "; the CR2 test is not defined (df below 1)"
        doc.add(_p(t + ".", "egger"))
    elif eg:
        doc.add(_p(f"The Egger test is not available: {eg.get('reason')}."))
    if pred.get("artefact"):
        if pred.get("name") == "sqrt_inv_n":
            doc.add(
                _p(
                    f"For {'standardized mean differences' if s.measure == 'SMD' else 'log odds ratios'} "
                    "the standard error depends on the estimate itself, so an Egger test on "
                    "√vi finds asymmetry where there is none; the predictor here is "
                    f"√(1/ñ) (ñ = {pred.get('ntilde')}), which does not "
                    f"{c.cite('pustejovsky2019')}.",
                    "artefact",
                )
            )
        else:
            doc.add(
                _p(
                    f"Caution: for {'standardized mean differences' if s.measure == 'SMD' else 'log odds ratios'} "
                    "the standard error depends on the estimate, so the Egger test and "
                    "PET-PEESE on √vi are biased towards finding asymmetry "
                    f"{c.cite('pustejovsky2019')}; the sample-size predictor √(1/ñ) could not "
                    f"be used ({pred.get('fallback', 'no sample sizes')}).",
                    "artefact",
                )
            )
    pp = b.get("pet_peese", {})
    if "PET" in pp:
        rows = []
        for name in ("PET", "PEESE"):
            r = pp[name]
            rows.append(
                [
                    name + (" (chosen)" if pp["chosen"] == name else ""),
                    s.v(r["estimate"]),
                    s.ci(r["ci_lb"], r["ci_ub"]),
                    _pv(r["pval"]),
                ]
            )
        doc.table(
            f"PET-PEESE: {L} extrapolated to a study with {plab} = 0",
            ["Model", L, f"{lv} CI", "p"],
            rows,
            id_="petpeese-table",
            note=(
                f"Conditional rule: PEESE when PET's intercept differs from "
                f"{'1' if s.exp else '0'}, else PET ({c.inner('stanley2014')})."
            ),
        )
    _aggregated_blocks(doc, b.get("aggregated") or {}, s, numbers)
    doc.add(_fig("funnel"))


def _agg_units(a: dict) -> str:
    """What the effects were aggregated within: studies, or the clusters of the column a model
    with general structures aggregates in (e.g. 'clusters of lab')."""
    return f"clusters of {a['cluster']}" if a.get("cluster") else "studies"


def _agg_unit(a: dict) -> str:
    return "cluster" if a.get("cluster") else "study"


def _aggregated_blocks(doc: _Doc, a: dict, s: _S, numbers: dict) -> None:
    c = doc.cites
    if not a:
        return
    if not a.get("available"):
        doc.add(
            _p(
                f"Rank test, trim-and-fill and selection model on study-aggregated "
                f"effects: not available ({a.get('reason')}).",
                "aggregated",
            )
        )
        return
    L = s.label

    def disp(dd, key):
        return dd.get(f"{key}_display", dd.get(key))

    n = a.get("n_aggregated")
    ra = a.get("rma_agg") or {}
    head = (
        f"Effects aggregated within {_agg_units(a)} (ρ = {a['rho']:g}, {_rho_from(a)}; "
        f"{n} {_agg_units(a)}): random-effects estimate {L} = {s.v(disp(ra, 'beta'))} "
        f"{s.ci(disp(ra, 'ci_lb'), disp(ra, 'ci_ub'))}."
    )
    doc.add(_p(head, "aggregated"))
    rt = a.get("ranktest")
    if rt and rt.get("available") is False:
        doc.add(
            _p(
                f"The rank correlation test ({c.inner('begg1994')}) could not be computed: "
                f"{rt.get('reason')}.",
                "ranktest",
            )
        )
    elif rt:
        doc.add(
            _p(
                f"Rank correlation test ({c.inner('begg1994')}; ρ = {a['rho']:g}): "
                f"Kendall's τ = {fmt.num(rt.get('tau'), 3, True)}, "
                f"{_ptext(rt.get('pval'))}.",
                "ranktest",
            )
        )
    tf = a.get("trimfill")
    if tf and tf.get("available") is False:
        doc.add(
            _p(
                f"Trim-and-fill ({c.inner('duval2000')}) could not be computed: "
                f"{tf.get('reason')}.",
                "trimfill",
            )
        )
    elif tf:
        k0 = tf.get("k0")
        side = tf.get("side")
        doc.add(
            _p(
                f"Trim-and-fill ({c.inner('duval2000')}; ρ = {a['rho']:g}) imputes "
                f"{k0 if k0 is not None else 'an undefined number of'} studies"
                f"{' on the ' + str(side) + ' side' if side else ''}: the adjusted estimate "
                f"{L} = {s.v(disp(tf, 'beta'))} {s.ci(disp(tf, 'ci_lb'), disp(tf, 'ci_ub'))} "
                f"compares with the unadjusted aggregated estimate {L} = "
                f"{s.v(disp(ra, 'beta'))} {s.ci(disp(ra, 'ci_lb'), disp(ra, 'ci_ub'))}.",
                "trimfill",
            )
        )
    sm = a.get("selmodel")
    if sm:
        steps = [x for x in (sm.get("steps") or []) if x < 1]
        side = sm.get("side", "positive")
        bins = "; ".join(
            f"p {'≤' if i == 0 else '>'} "
            f"{fmt.num(bb['p_to'] if i == 0 else bb['p_from'], 3, True)}"
            f"{'' if i == 0 or bb['p_to'] >= 1 else ' and ≤ ' + fmt.num(bb['p_to'], 3, True)}"
            f": {bb['k']} studies"
            for i, bb in enumerate(sm.get("bins") or [])
        )
        if sm.get("available") is False:
            doc.add(
                _p(
                    f"The three-parameter selection model ({c.inner('vevea1995')}; ρ = "
                    f"{a['rho']:g}; selection assumed to favour significant {side} effects; "
                    f"{bins}) could not be estimated: {sm.get('reason')}.",
                    "selmodel",
                )
            )
            return
        doc.add(
            _p(
                f"Three-parameter selection model ({c.inner('vevea1995')}; ρ = {a['rho']:g}), "
                f"assuming selection favours significant {side} effects "
                f"({'the direction of the pooled estimate' if a.get('selection_side_requested') == 'auto' else 'declared in the analysis file'}; "
                f"one-sided p-values, cut point{'s' if len(steps) > 1 else ''} "
                f"{', '.join(fmt.num(x, 3, True) for x in steps)}; {bins}): adjusted {L} = "
                f"{s.v(disp(sm, 'beta'))} {s.ci(disp(sm, 'ci_lb'), disp(sm, 'ci_ub'))}; the "
                f"likelihood-ratio test of selection gives χ²({sm.get('LRT_df', 1)}) = "
                f"{fmt.num(sm.get('LRT'), 3)}, {_ptext(sm.get('pval'))}."
                + (
                    " With few studies in a p-value interval the selection weights are poorly "
                    "estimated."
                    if any(bb["k"] < 4 for bb in sm.get("bins") or [])
                    else ""
                ),
                "selmodel",
            )
        )


def _power_blocks(doc: _Doc, numbers: dict) -> None:
    """The ``[power]`` section: POMADE's sentence (Vembye et al., 2023), the caveat on power
    at the observed effect, or why it is not available."""
    c = doc.cites
    pw = numbers.get("power")
    if pw is None:
        return
    doc.add(_h(2, "Power of the test of the overall effect", "power"))
    if pw.get("available") is False:
        doc.add(_p(f"The power analysis is not available: {pw.get('reason')}.", "power"))
        return
    doc.add(_p(f"{pw['sentence'].rstrip('.')} {c.cite('vembye2023')}.", "power"))
    note = pw.get("note")
    if note:
        tail = "(Hoenig & Heisey 2001)."
        if note.endswith(tail):
            note = note[: -len(tail)] + c.cite("hoenig2001") + "."
        doc.add(_p(note, "power-note"))


def _studies_table(doc: _Doc, numbers: dict) -> None:
    st = numbers.get("studies")
    if not st or not st.get("rows"):
        return
    doc.add(_h(2, "Included studies", "studies"))
    mods = st.get("moderators") or []
    has_n = any(r.get("n") is not None for r in st["rows"])
    head = [st["study_column"], "Effect sizes"] + (["N"] if has_n else []) + mods
    rows = []
    for r in st["rows"]:
        row = [str(r["study"]), str(r["k"])]
        if has_n:
            row.append("" if r.get("n") is None else fmt.count(r["n"]))
        row += [r["moderators"].get(m) or "" for m in mods]
        rows.append(row)
    doc.table(
        "Included studies",
        head,
        rows,
        align="lrr" + "l" * len(mods) if has_n else "lr" + "l" * len(mods),
        id_="studies-table",
        note=(
            "N = the study's largest sample (participants per effect size). "
            "Several values of a moderator within a study are listed together."
            if has_n
            else "Several values of a moderator within a study are listed together."
        ),
    )


# ----------------------------------------------------------------------------- rendering
def render_context(numbers: dict, blocks: list[dict], figmap: dict) -> dict:
    """What the templates and the Word writer get: the blocks, the figures (name -> files,
    number, caption, PNG bytes), the title and the footer."""
    files = "figures/ as PNG (300 dpi) and PDF"
    return {
        "title": numbers["title"],
        "blocks": blocks,
        "figures": figmap,
        "footer": (
            f"Generated by mlmeta {numbers['software']['mlmeta']} on "
            f"{numbers['created']}. Every number is in results.json; figures in "
            f"{files}."
        ),
        "simulated": numbers.get("simulated", False),
        "numbers": numbers,
    }


def software_versions() -> dict:
    import numpy
    import pandas
    import scipy

    from mlmeta import __version__

    return {
        "mlmeta": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "pandas": pandas.__version__,
    }


def _structured_terms(model: dict) -> list[str]:
    """metafor's random-effects formulas of a model with crossed or '~ inner | outer' terms,
    R matrices or a known V (empty for one nesting '~ 1 | a/b', described by its levels)."""
    from mlmeta.spec import parse_random

    random = model.get("random")
    if random is None:
        return []
    try:
        terms = parse_random(random, model.get("struct"))
    except Exception:  # noqa: BLE001 -- settings were validated when the model was fitted
        return []
    if len(terms) == 1 and terms[0].nested and not model.get("R") and not model.get("V"):
        return []
    return [t.formula for t in terms]
