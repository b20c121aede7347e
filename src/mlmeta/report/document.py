"""The report as a list of blocks (headings, paragraphs, tables, figures), built only from the
numbers of results.json, then rendered to HTML and Markdown by :mod:`mlmeta.report.render`.

Block kinds: ``h`` (level, text, id), ``p`` (text, cls), ``notice`` (text, cls), ``table``
(caption, head, rows, align, note), ``figure`` (name, caption), ``list`` (items), ``code``
(text).
"""

from __future__ import annotations

import platform
from typing import Any

from mlmeta.report import fmt

__all__ = ["build_document", "methods_text", "figure_captions"]

N_LEVEL_WORDS = {1: "two-level", 2: "three-level", 3: "four-level", 4: "five-level"}


def _h(level, text, id_=None):
    return {"t": "h", "level": level, "text": text, "id": id_}


def _p(text, cls=None):
    return {"t": "p", "text": text, "cls": cls}


def _table(caption, head, rows, align=None, note=None, id_=None):
    return {"t": "table", "caption": caption, "head": head, "rows": rows,
            "align": align or ("l" + "r" * (len(head) - 1)), "note": note, "id": id_}


def _fig(name, caption):
    return {"t": "figure", "name": name, "caption": caption}


class _S:
    """Display-scale formatting shortcuts from the numbers' ``overall`` block."""

    def __init__(self, numbers):
        o = numbers["overall"]
        self.label = o["scale"]
        self.transformed = o["transformed"]
        self.bounded = numbers["data"]["measure"] in ("ZCOR", "COR")

    def v(self, x, digits=3):
        return fmt.num(x, digits, self.bounded)

    def ci(self, lb, ub, digits=3):
        return fmt.ci_text(lb, ub, digits, self.bounded)


def figure_captions(numbers: dict) -> dict[str, str]:
    s = _S(numbers)
    scale = "correlations (r)" if s.transformed or s.bounded else "effect sizes"
    caps = {
        "forest": f"Forest plot: each effect size with its {numbers['settings']['level_text']} "
                  f"CI, grouped by study; the diamond is the pooled estimate, the bar below it "
                  f"the prediction interval ({scale}).",
        "funnel": "Contour-enhanced funnel plot: effect sizes against their standard errors; "
                  "shaded regions mark two-sided p < .10, .05, .01.",
        "profile": "Profile likelihood of each variance component; dashed lines are the "
                   "profile-likelihood CI limits.",
        "loo": "Leave-one-study-out estimates with CIs; the band is the CI from all studies.",
    }
    for m in numbers.get("moderators", []):
        if m.get("type") == "categorical":
            caps[f"orchard_{m['name']}"] = (f"Orchard plot of {m['name']}: effect sizes, "
                                            "subgroup estimates with CI (thick) and prediction "
                                            "interval (thin); k (studies) on the right.")
        else:
            caps[f"bubble_{m['name']}"] = (f"Bubble plot of {m['name']}: effect sizes (area ∝ "
                                           "weight), regression line, CI band and prediction "
                                           "band.")
    return caps


def methods_text(numbers: dict) -> str:
    st = numbers["settings"]
    d = numbers["data"]
    o = numbers["overall"]
    model = st["model"]
    levels = d["levels"]
    parts = []
    measure = d["measure"]
    if d.get("escalc"):
        cols = ", ".join(f"{k} = {v}" for k, v in d["escalc"].items())
        if measure == "ZCOR":
            parts.append(f"Correlations were transformed to Fisher's z (yi = atanh(r), "
                         f"vi = 1/(n − 3); escalc ZCOR from columns {cols}).")
        else:
            parts.append(f"Effect sizes were computed with escalc measure {measure} from "
                         f"columns {cols}.")
    else:
        what = "Fisher's z-transformed correlations" if measure == "ZCOR" else \
            ("correlations" if measure == "COR" else "effect sizes")
        parts.append(f"The {what} and their sampling variances were taken from columns "
                     f"{d['yi']} and {d['vi']}.")
    est = ("restricted maximum likelihood (REML)" if model["method"] == "REML"
           else "maximum likelihood (ML)")
    if levels:
        cols = [x.split("/")[-1] for x in levels]
        word = N_LEVEL_WORDS.get(len(levels), f"{len(levels) + 1}-level")
        lv_parts = ["level 1: sampling error"]
        for i, c in enumerate(reversed(cols)):
            outer = list(reversed(cols))[i + 1] if i + 1 < len(cols) else None
            lv_parts.append(f"level {i + 2}: {c}" + (f" within {outer}" if outer else ""))
        parts.append(f"A {word} random-effects model ({'; '.join(lv_parts)}; metafor's "
                     f"random = ~ 1 | {'/'.join(cols)}) was fitted by {est}.")
    else:
        parts.append("An equal-effects model (no random effects) was fitted by weighted least "
                     "squares with weights 1/vi.")
    if model.get("rho") is not None:
        parts.append(f"Sampling errors of effect sizes within the same "
                     f"{model.get('rho_cluster') or levels[0]} were assumed to correlate with "
                     f"ρ = {model['rho']:g} (correlated and hierarchical effects working model; "
                     "Pustejovsky & Tipton, 2022).")
    if model["test"] == "t":
        dfr = ("the containment rule (metafor's dfs = \"contain\": the number of groups of the "
               "lowest level within which the predictor is constant, minus the number of "
               "coefficients)" if model["dfs"] == "contain" else
               "k − p (metafor's dfs = \"residual\")")
        parts.append(f"Coefficients were tested with t tests and {st['level_text']} confidence "
                     f"intervals with degrees of freedom from {dfr}; moderators with omnibus F "
                     "tests.")
    else:
        parts.append(f"Coefficients were tested with Wald z tests and {st['level_text']} "
                     "confidence intervals; moderators with omnibus QM (χ²) tests.")
    if levels:
        parts.append("The prediction interval adds the sum of the variance components to the "
                     "squared SE of the estimate.")
    if o["transformed"]:
        parts.append("Estimates and interval limits were back-transformed to r = tanh(z); the "
                     "SE of r is the delta-method SE (1 − r²)·SE(z); tests use the z scale.")
    if levels:
        an = st["analyses"]
        t = "Heterogeneity is described by multilevel I² (Cheung, 2014)"
        if an.get("profile"):
            t += " with profile-likelihood CIs"
        if an.get("lrt"):
            t += (", and each variance component was tested against 0 with a likelihood-ratio "
                  "test (χ²(1); the boundary-corrected 50:50 mixture p-value is also given)")
        parts.append(t + ".")
    rb = numbers.get("robust") or {}
    if st["analyses"].get("robust") and rb.get("cluster"):
        parts.append(f"Cluster-robust inference used the CR2 estimator with Satterthwaite "
                     f"degrees of freedom and HTZ Wald tests (Pustejovsky & Tipton, 2018), "
                     f"clustering by {rb['cluster']} ({rb['n_clusters']} clusters).")
    if st["model"]["moderators"]:
        parts.append("Each moderator was tested in its own model; subgroup estimates come from "
                     "the cell-means model (~ 0 + factor(moderator)); R² per level is the "
                     "proportional reduction of each variance component against the "
                     "intercept-only model on the same rows"
                     + ("; all moderators were also tested together." if model.get("joint")
                        else "."))
    if st["analyses"].get("bias"):
        parts.append("Small-study effects were assessed with a multilevel Egger test (√vi as "
                     "moderator) and PET-PEESE (Stanley & Doucouliagos, 2014)"
                     + (", and the rank test, trim-and-fill and a three-parameter selection "
                        f"model on effects aggregated within studies (ρ = "
                        f"{st['analyses']['bias_rho']:g})"
                        if (numbers.get("bias") or {}).get("aggregated", {}).get("available")
                        else "") + ".")
    versions = numbers["software"]
    parts.append(f"Analyses were run with mlmeta {versions['mlmeta']} (Python "
                 f"{versions['python']}, NumPy {versions['numpy']}, SciPy {versions['scipy']}, "
                 f"pandas {versions['pandas']}), which reproduces R's metafor rma.mv; the analysis "
                 f"file reproduces every number, and results.json holds them all.")
    return " ".join(parts)


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
        lines.append(f"V <- vcalc({vi}, cluster = {cl}, obs = {levels[-1].split('/')[-1]}, "
                     f"rho = {model['rho']:g}, data = dat)")
        V = "V"
    args = [yi, V]
    if levels:
        args.append(f"random = ~ 1 | {rnd}")
    args += ["data = dat", f'method = "{model["method"]}"', f'test = "{model["test"]}"']
    if model["test"] == "t":
        args.append(f'dfs = "{model["dfs"]}"')
    lines.append(f"res <- rma.mv({', '.join(args)})")
    if d["measure"] == "ZCOR":
        lines.append("predict(res, transf = transf.ztor)")
    return "\n".join(lines)


def build_document(numbers: dict) -> list[dict[str, Any]]:
    s = _S(numbers)
    st = numbers["settings"]
    d = numbers["data"]
    o = numbers["overall"]
    lv = st["level_text"]
    L = s.label
    blocks: list[dict] = []
    blocks.append(_h(1, numbers["title"], "title"))
    if numbers["simulated"]:
        blocks.append({"t": "notice", "cls": "simulated", "id": "simulated",
                       "text": "SIMULATED DATA: these are simulated effect sizes, not results of "
                               "real studies. Do not cite the numbers below as findings."})
    if numbers.get("notice"):
        blocks.append({"t": "notice", "cls": "info", "text": numbers["notice"], "id": None})
    # --- header facts
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
    blocks.append(_p(" · ".join(facts), "facts"))

    # --- overall
    blocks.append(_h(2, "Overall effect", "overall"))
    blocks.append(_p(o["apa"], "apa"))
    where = f"from {fmt.count(d['n_studies'])} studies " if d.get("n_studies") else ""
    blocks.append(_p(
        f"Pooled {'correlation' if s.bounded else 'effect'} of {fmt.count(d['k'])} effect "
        f"sizes {where}({'back-transformed from Fisher z; ' if o['transformed'] else ''}"
        f"{o['stat_name']} test"
        f"{' with ' + fmt.df_text(o['df']) + ' df' if o['df'] is not None else ''})."
        + (f" {o['pi_text']}: the range expected to contain the true effect in a new study "
           "(prediction interval)." if d["levels"] else "")))
    if numbers.get("robust") and numbers["robust"].get("apa"):
        rb = numbers["robust"]
        blocks.append(_p(f"With CR2 cluster-robust inference ({rb['n_clusters']} clusters by "
                         f"{rb['cluster']}): {rb['apa']}."))
    blocks.append(_p(f"Fit diagnostics: {numbers['diagnostics']['verdict']}.", "diagnostics"))
    blocks.append(_fig("forest", None))

    # --- heterogeneity
    het = numbers.get("heterogeneity")
    if het and het.get("levels"):
        blocks.append(_h(2, "Heterogeneity", "heterogeneity"))
        rows = [["Sampling error (level 1)", fmt.count(d["k"]), "", fmt.pct(het["I2_sampling"]),
                 "", "", ""]]
        any_ci = any("sigma2_ci" in x for x in het["levels"])
        for x in reversed(het["levels"]):
            s2 = fmt.num(x["sigma2"], 4)
            if "sigma2_ci" in x:
                s2 += " " + fmt.ci_text(*x["sigma2_ci"], digits=4)
            i2 = fmt.pct(x["I2"])
            if "I2_ci" in x:
                i2 += " " + fmt.ci_text(*x["I2_ci"], digits=1)
            lr = x.get("lrt")
            rows.append([f"{x['level']}", fmt.count(x["n_groups"]), s2, i2,
                         fmt.num(lr["LRT"], 3) if lr else "",
                         fmt.pval(lr["pval"]).replace("= ", "") if lr else "",
                         fmt.pval(lr["pval_mixture"]).replace("= ", "") if lr else ""])
        tot = fmt.pct(het["I2_total"])
        if het.get("I2_total_ci"):
            tot += " " + fmt.ci_text(*het["I2_total_ci"], digits=1)
        rows.append(["Total (all random effects)", "", fmt.num(sum(x["sigma2"] for x in
                                                                  het["levels"]), 4),
                     tot, "", "", ""])
        blocks.append(_table(
            f"Variance components (model scale: {'Fisher z' if o['transformed'] else L}), I² "
            f"per level{' with ' + lv + ' profile-likelihood CIs' if any_ci else ''}, and "
            "likelihood-ratio tests of each level against 0",
            ["Level", "Groups", "σ²" + (" [CI]" if any_ci else ""), "I²" +
             (" [CI]" if any_ci else ""), "LRT χ²(1)", "p", "p (mixture)"], rows,
            id_="heterogeneity-table",
            note="I² = share of the total variance (random effects + typical sampling "
                 "variance); p (mixture) = boundary-corrected p of the 50:50 χ²(0)/χ²(1) "
                 "mixture; the total CI is conservative (sum of the per-level limits)."))
        blocks.append(_p(f"Residual heterogeneity: {het['QE_text']}."))
        blocks.append(_fig("profile", None))

    # --- moderators
    mods = numbers.get("moderators") or []
    if mods:
        blocks.append(_h(2, "Moderators", "moderators"))
        blocks.append(_p("Each moderator in its own model. Subgroup estimates "
                         f"({L} with {lv} CI) from the cell-means model; omnibus test of "
                         "differences from the model with intercept; the same with CR2 "
                         "cluster-robust inference."))
        for m in mods:
            blocks += _moderator_blocks(m, s, numbers)
        j = numbers.get("joint")
        if j and j.get("coefficients"):
            blocks += _joint_blocks(j, numbers)

    # --- sensitivity
    sens = numbers.get("sensitivity") or {}
    blocks.append(_h(2, "Sensitivity", "sensitivity"))
    rb = numbers.get("robust")
    if rb:
        blocks.append(_h(3, "Cluster-robust inference (CR2)", "sens-robust"))
    if rb and rb.get("apa"):
        blocks.append(_p(f"CR2 cluster-robust: {rb['apa']} ({rb['n_clusters']} clusters, "
                         f"Satterthwaite df)."))
    elif rb:
        blocks.append(_p(f"CR2 cluster-robust inference not available: {rb.get('reason')}."))
    loo = sens.get("loo")
    if loo and loo.get("rows"):
        blocks.append(_h(3, f"Leave one {loo['cluster']} out", "sens-loo"))
        if "min" in loo:
            blocks.append(_p(
                f"Leave-one-study-out: leaving out one {loo['cluster']} at a time, {L} ranged "
                f"from {s.v(loo['min'])} (without {loo['cluster']} {loo['min_left_out']}) to "
                f"{s.v(loo['max'])} (without {loo['cluster']} {loo['max_left_out']}); "
                f"{loo['n_significant']} of {loo['n'] - loo['failed']} estimates differ from 0 "
                f"at p < {fmt.num(1 - st['level'] / 100, 2, True)}"
                + (f"; {loo['sign_changes']} change sign" if loo['sign_changes'] else "")
                + (f"; {loo['failed']} refits failed" if loo['failed'] else "") + ".",
                "loo"))
        blocks.append(_fig("loo", None))
        rows = [[str(r["left_out"]), s.v(r["estimate"]), s.ci(r["ci_lb"], r["ci_ub"]),
                 fmt.pval(r["pval"]).replace("= ", "")] for r in loo["rows"]
                if r["estimate"] is not None]
        blocks.append(_table(f"Leave-one-{loo['cluster']}-out estimates",
                             [f"{loo['cluster']} left out", L, f"{lv} CI", "p"], rows,
                             id_="loo-table"))
    ck = sens.get("cooks")
    if ck or sens.get("outliers"):
        blocks.append(_h(3, "Influential studies and outliers", "sens-influence"))
    if ck:
        if ck["influential"]:
            vals = {r["cluster"]: r["value"] for r in ck["rows"]}
            txt = ", ".join(f"{x} (D = {fmt.num(vals[x], 3)})" for x in ck["influential"])
            blocks.append(_p(f"Influential studies (Cook's distance above {ck['rule']}, "
                             f"{fmt.num(ck['cutoff'], 3)}): {txt}.", "cooks"))
        else:
            cut = f", {fmt.num(ck['cutoff'], 3)}" if ck["cutoff"] is not None else ""
            blocks.append(_p(f"Influential studies (Cook's distance above {ck['rule']}{cut}): "
                             "none.", "cooks"))
    ol = sens.get("outliers")
    if ol:
        if ol["rows"]:
            blocks.append(_p(f"Outliers: {ol['n']} of {ol['k']} effect sizes have standardized "
                             f"residuals |z| > 1.96.", "outliers"))
            keys = [k for k in ol["rows"][0] if k not in ("row", "z", "yi", "effect")]
            rows = [[str(r["row"])] + [str(r[k]) for k in keys] + [s.v(r["effect"]),
                                                                  fmt.num(r["z"], 2)]
                    for r in ol["rows"]]
            blocks.append(_table("Effect sizes with |z| > 1.96", ["Data row"] + keys +
                                 [L, "z"], rows, id_="outlier-table"))
        else:
            blocks.append(_p(f"Outliers: none of the {ol['k']} effect sizes has a standardized "
                             "residual |z| > 1.96.", "outliers"))
    che = numbers.get("che_sweep")
    if che:
        blocks.append(_h(3, "Correlated sampling errors (CHE sweep over ρ)", "sens-che"))
        if che.get("available"):
            sig = che["sigma2_columns"]
            rows = []
            for r in che["rows"]:
                rows.append([fmt.num(r["rho"], 1), s.v(r.get("estimate")),
                             s.ci(r.get("ci_lb_display"), r.get("ci_ub_display")),
                             fmt.pval(r.get("pval")).replace("= ", "")]
                            + [fmt.num(r[c], 4) for c in sig])
            blocks.append(_table(
                f"Sensitivity to the assumed sampling correlation ρ within "
                f"{che['rho_cluster']} (CHE working model)",
                ["ρ", L, f"{lv} CI", "p"] + [f"σ² {c[len('sigma2_'):]}" for c in sig], rows,
                id_="che-table"))
        else:
            blocks.append(_p(f"CHE sensitivity analysis not available: {che.get('reason')}."))

    # --- publication bias
    b = numbers.get("bias")
    if b is not None:
        blocks.append(_h(2, "Publication bias and small-study effects", "bias"))
        if b.get("available") is False:
            blocks.append(_p(f"Not available: {b['reason']}."))
        else:
            eg = b.get("egger", {})
            if eg.get("apa"):
                t = f"Multilevel Egger test (slope of √vi): {eg['apa']}"
                if eg.get("robust_apa"):
                    t += f"; {eg['robust_apa']}"
                blocks.append(_p(t + ".", "egger"))
            elif eg:
                blocks.append(_p(f"Egger test not available: {eg.get('reason')}."))
            pp = b.get("pet_peese", {})
            if "PET" in pp:
                rows = []
                for name in ("PET", "PEESE"):
                    r = pp[name]
                    rows.append([name + (" (chosen)" if pp["chosen"] == name else ""),
                                 s.v(r["estimate"]), s.ci(r["ci_lb"], r["ci_ub"]),
                                 fmt.pval(r["pval"]).replace("= ", "")])
                blocks.append(_table(
                    f"PET-PEESE: {L} extrapolated to a study with SE = 0",
                    ["Model", L, f"{lv} CI", "p"], rows, id_="petpeese-table",
                    note="Conditional rule: PEESE when PET's intercept differs from 0, else "
                         "PET (Stanley & Doucouliagos, 2014)."))
            blocks += _aggregated_blocks(b.get("aggregated") or {}, s)
        blocks.append(_fig("funnel", None))

    # --- warnings
    ws = numbers.get("warnings") or []
    dg = numbers["diagnostics"]
    notes = list(dg.get("notes") or [])
    if ws or notes:
        blocks.append(_h(2, "Notes and warnings", "warnings"))
        where: dict[str, list[str]] = {}
        for w in ws:
            secs = where.setdefault(w["message"], [])
            if w["section"] not in secs:
                secs.append(w["section"])
        items = [f"{m} ({', '.join(secs)})" for m, secs in where.items()] + notes
        blocks.append({"t": "list", "items": items})

    # --- methods
    blocks.append(_h(2, "Methods", "methods"))
    blocks.append(_p(numbers["methods"], "methods"))
    blocks.append(_p("The same model in R (metafor):"))
    blocks.append({"t": "code", "text": r_code(numbers)})
    if numbers.get("command"):
        blocks.append(_p(f"Reproduce this report: {numbers['command']}"))
    return blocks


def _moderator_blocks(m: dict, s: _S, numbers: dict) -> list[dict]:
    lv = numbers["settings"]["level_text"]
    L = s.label
    out = [_h(3, f"{m['name']} ({m['type']})", f"mod-{m['name']}")]
    if m.get("available") is False:
        out.append(_p(f"Not available: {m['reason']}."))
        return out
    facts = [f"k = {m['k']}"]
    if m.get("n_studies") is not None:
        facts.append(f"{m['n_studies']} studies")
    if m.get("rows_dropped"):
        facts.append(f"{m['rows_dropped']} rows with missing {m['name']} dropped")
    txt = f"Omnibus test: {m['omnibus']['apa']}" + _robust_and_r2_text(m)
    out.append(_p(f"{txt} ({', '.join(facts)}).", "omnibus"))
    if m["type"] == "categorical":
        has_rob = any("robust" in c for c in m["categories"])
        rows = []
        for c in m["categories"]:
            row = [c["level"], str(c["k"]), "" if c["n_studies"] is None else str(c["n_studies"]),
                   s.v(c["estimate"]), s.ci(c["ci_lb"], c["ci_ub"]),
                   fmt.pval(c["pval"]).replace("= ", "")]
            if has_rob:
                rr = c.get("robust", {})
                row += [s.ci(rr.get("ci_lb"), rr.get("ci_ub")),
                        fmt.df_text(rr.get("df")),
                        fmt.pval(rr.get("pval")).replace("= ", "")]
            rows.append(row)
        head = [m["name"], "k", "Studies", L, f"{lv} CI", "p"]
        if has_rob:
            head += [f"CR2 {lv} CI", "CR2 df", "CR2 p"]
        out.append(_table(f"{m['name']}: subgroup estimates", head, rows,
                          id_=f"mod-table-{m['name']}"))
        out.append(_fig(f"orchard_{m['name']}", None))
    else:
        out.append(_p(f"Slope of {m['name']} ({'Fisher z' if s.transformed else L} per unit): "
                      f"{m['apa']}.", "slope"))
        out.append(_coef_table(m["coefficients"], f"{m['name']}: meta-regression "
                               f"coefficients", lv, f"mod-table-{m['name']}",
                               numbers["overall"]["stat_name"]))
        out.append(_fig(f"bubble_{m['name']}", None))
    return out


def _coef_table(coefs, caption, lv, id_, stat="t"):
    has_rob = any("robust" in c for c in coefs)
    rows = []
    for c in coefs:
        dg = fmt.coef_digits(c["se"])
        row = [c["name"], fmt.num(c["estimate"], dg), fmt.num(c["se"], dg),
               fmt.ci_text(c["ci_lb"], c["ci_ub"], dg), fmt.num(c["stat"], 3),
               fmt.df_text(c["df"]) if c["df"] is not None else "",
               fmt.pval(c["pval"]).replace("= ", "")]
        if has_rob:
            rr = c["robust"]
            row += [fmt.ci_text(rr["ci_lb"], rr["ci_ub"], dg), fmt.df_text(rr["df"]),
                    fmt.pval(rr["pval"]).replace("= ", "")]
        rows.append(row)
    head = ["Term", "b", "SE", f"{lv} CI", stat, "df", "p"]
    if has_rob:
        head += [f"CR2 {lv} CI", "CR2 df", "CR2 p"]
    return _table(caption, head, rows, id_=id_)


def _robust_and_r2_text(m: dict) -> str:
    """'; CR2: F(...)' and '. R² per level: ...; total ...' for a moderator model's entry."""
    txt = ""
    rob = m.get("robust_omnibus")
    if rob and rob.get("apa"):
        txt += f"; CR2: {rob['apa']}"
    r2 = m.get("R2")
    if r2 and r2.get("levels"):
        parts = [f"{k} {fmt.pct(100 * v) if v is not None else 'NA'}"
                 for k, v in r2["levels"].items()]
        txt += (f". R² per level: {', '.join(parts)}; total "
                f"{fmt.pct(100 * r2['total']) if r2['total'] is not None else 'NA'}")
    return txt


def _joint_blocks(j: dict, numbers: dict) -> list[dict]:
    lv = numbers["settings"]["level_text"]
    out = [_h(3, "All moderators together", "mod-joint")]
    txt = (f"Model {j['formula']} (k = {j['k']}): omnibus test {j['omnibus']['apa']}"
           + _robust_and_r2_text(j))
    out.append(_p(txt + ".", "omnibus"))
    scale = "Fisher z" if numbers["overall"]["transformed"] else numbers["overall"]["scale"]
    out.append(_coef_table(j["coefficients"], f"Joint model coefficients ({scale} scale; "
                           "categories against the first as reference)", lv, "mod-table-joint",
                           numbers["overall"]["stat_name"]))
    return out


def _aggregated_blocks(a: dict, s: _S) -> list[dict]:
    out = []
    if not a:
        return out
    if not a.get("available"):
        out.append(_p(f"Rank test, trim-and-fill and selection model on study-aggregated "
                      f"effects: not available ({a.get('reason')}).", "aggregated"))
        return out
    n = a.get("n_aggregated")
    head = (f"On effects aggregated within studies ({n} studies, ρ = {a['rho']:g}): "
            if n else f"On effects aggregated within studies (ρ = {a['rho']:g}): ")
    parts = []
    rt = a.get("ranktest")
    if rt:
        parts.append(f"rank correlation test Kendall's τ = {fmt.num(rt.get('tau'), 3, True)}, "
                     f"{fmt.p_text(rt.get('pval'))}")
    def disp(d, key):
        return d.get(f"{key}_display", d.get(key))

    tf = a.get("trimfill")
    if tf:
        k0 = tf.get("k0")
        side = tf.get("side")
        parts.append(f"trim-and-fill imputes {k0 if k0 is not None else 'NA'} studies"
                     f"{' on the ' + str(side) + ' side' if side else ''}, adjusted "
                     f"{s.label} = {s.v(disp(tf, 'beta'))} "
                     f"{s.ci(disp(tf, 'ci_lb'), disp(tf, 'ci_ub'))}")
    sm = a.get("selmodel")
    if sm:
        parts.append(f"three-parameter selection model: adjusted {s.label} = "
                     f"{s.v(disp(sm, 'beta'))} {s.ci(disp(sm, 'ci_lb'), disp(sm, 'ci_ub'))}, "
                     f"selection LRT = {fmt.num(sm.get('LRT'), 3)}, {fmt.p_text(sm.get('pval'))}")
    out.append(_p(head + "; ".join(parts) + ".", "aggregated"))
    return out


def software_versions() -> dict:
    import numpy
    import pandas
    import scipy

    from mlmeta import __version__
    return {"mlmeta": __version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "pandas": pandas.__version__}
