"""The report's sentences are true, sourced and complete (a user copies them into a paper).

Each test pins one rule of :mod:`mlmeta.report.document`: the selection model's side, odds
ratios back-transformed, undefined tests in words, the small-df warning next to the test,
captions that match the figures, the primary inference named, the reference list complete,
the plain-language summary, the methods, numbered tables, the Word document and the
templates. The data sets built here are SIMULATED (small, seeded) unless they are bundled
published examples.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmeta.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MINUS = "\u2212"
BANNED = re.compile(r"(?<![A-Za-z])(NA|NaN|nan|inf|Inf|None)(?![A-Za-z])")


def run_report(tmp: Path, toml: str, name: str = "a") -> tuple[Path, dict]:
    """Write ``toml`` to tmp/<name>.toml, run it, return (report folder, numbers)."""
    p = tmp / f"{name}.toml"
    p.write_text(toml, encoding="utf-8")
    out = tmp / f"{name}-report"
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e):
        code = main(["run", str(p), "--out", str(out), "--quiet"])
    assert code == 0, e.getvalue()
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def example(name: str, tmp_path_factory) -> tuple[Path, dict]:
    from test_report import build_report

    out = build_report(name, tmp_path_factory)
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def docx_text(path: Path) -> str:
    import docx

    d = docx.Document(str(path))
    parts = [p.text for p in d.paragraphs]
    for t in d.tables:
        for row in t.rows:
            parts += [c.text for c in row.cells]
    return "\n".join(parts)


def all_text(out: Path) -> str:
    return "\n".join(
        [(out / "report.md").read_text(encoding="utf-8"), docx_text(out / "report.docx")]
    )


NO_EXTRAS = """
[analyses]
profile = false
lrt = false
loo = false
influence = false
che_sweep = false
figures = false
"""


# ---------------------------------------------------------------- data (SIMULATED)
def or_data(seed: int = 3) -> pd.DataFrame:
    """SIMULATED 2x2 tables: 12 studies, 1-3 effect sizes, true log OR about 0.4."""
    rng = np.random.default_rng(seed)
    rows = []
    es = 0
    for s in range(1, 13):
        u = rng.normal(0, 0.2)
        for _ in range(rng.integers(1, 4)):
            es += 1
            n1, n2 = rng.integers(40, 200, 2)
            p2 = 0.3
            lo = math.log(p2 / (1 - p2)) + 0.4 + u + rng.normal(0, 0.1)
            p1 = 1 / (1 + math.exp(-lo))
            a, c = rng.binomial(n1, p1), rng.binomial(n2, p2)
            rows.append(
                {
                    "study": s,
                    "es": es,
                    "ai": a,
                    "bi": n1 - a,
                    "ci": c,
                    "di": n2 - c,
                    "n1": n1,
                    "n2": n2,
                    "dose": ["low", "high"][s % 2],
                }
            )
    return pd.DataFrame(rows)


def smd_data(seed: int = 5) -> pd.DataFrame:
    """SIMULATED group means: 14 studies, 1-3 outcomes, true d about 0.3."""
    rng = np.random.default_rng(seed)
    rows = []
    es = 0
    for s in range(1, 15):
        u = rng.normal(0, 0.15)
        n1, n2 = (int(x) for x in rng.integers(15, 120, 2))
        for _ in range(rng.integers(1, 4)):
            es += 1
            d = 0.3 + u + rng.normal(0, 0.1)
            m1 = rng.normal(d, 1 / math.sqrt(n1))
            m2 = rng.normal(0, 1 / math.sqrt(n2))
            rows.append(
                {
                    "study": s,
                    "es": es,
                    "m1": m1,
                    "sd1": rng.uniform(0.8, 1.2),
                    "n1": n1,
                    "m2": m2,
                    "sd2": rng.uniform(0.8, 1.2),
                    "n2": n2,
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- selection model side
def test_selection_model_takes_the_side_of_the_data(tmp_path_factory):
    """The alliance example's pooled effect is negative: selection is assumed to favour
    significant negative effects (before: always positive, giving a spurious adjustment)."""
    out, numbers = example("alliance_like", tmp_path_factory)
    a = numbers["bias"]["aggregated"]
    sm = a["selmodel"]
    assert numbers["overall"]["model_scale"]["estimate"] < 0
    assert sm["alternative"] == "less" and sm["side"] == "negative"
    assert sum(b["k"] for b in sm["bins"]) == a["n_aggregated"]
    assert [(b["p_from"], b["p_to"]) for b in sm["bins"]] == [(0.0, 0.025), (0.025, 1.0)]
    md = (out / "report.md").read_text(encoding="utf-8")
    para = next(line for line in md.splitlines() if line.startswith("Three-parameter"))
    assert "favours significant negative effects" in para
    assert "the direction of the pooled estimate" in para
    assert f"p ≤ .025: {sm['bins'][0]['k']} studies" in para
    assert f"p > .025: {sm['bins'][1]['k']} studies" in para


def test_selection_side_and_cut_points_from_the_analysis_file(tmp_path):
    d = smd_data()
    d.to_csv(tmp_path / "d.csv", index=False)
    toml = f"""title = "t"
simulated = true
[data]
file = "d.csv"
[effect]
measure = "SMD"
m1i = "m1"
sd1i = "sd1"
n1i = "n1"
m2i = "m2"
sd2i = "sd2"
n2i = "n2"
[model]
random = "study/es"
{NO_EXTRAS}selection_side = "negative"
selection_steps = [0.05, 0.025]
"""
    out, numbers = run_report(tmp_path, toml)
    a = numbers["bias"]["aggregated"]
    sm = a["selmodel"]
    # the declared side and cut points are used; with no significant negative effect the
    # model cannot be estimated: the report says so, with the counts, and keeps the rest
    assert sm["alternative"] == "less" and sm["steps"] == [0.025, 0.05, 1.0]
    assert [b["k"] for b in sm["bins"]] == [0, 0, a["n_aggregated"]]
    assert sm["available"] is False and a["trimfill"]["k0"] is not None
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "cut points .025, .050" in md and "as declared in the analysis file" in md
    para = next(x for x in md.split("\n\n") if x.startswith("The three-parameter selection"))
    assert "favour significant negative effects" in para and "could not be estimated" in para
    assert f"p > .050: {a['n_aggregated']} studies" in para
    # the SMD's Egger test uses the sample-size predictor, with the reason
    eg = numbers["bias"]["egger"]
    assert eg["predictor"] == "sqrt_inv_n"
    assert numbers["bias"]["predictor"]["ntilde"] == "n1·n2/(n1 + n2)"
    assert "√(1/ñ)" in md and "(Pustejovsky & Rodgers, 2019)" in md
    # its slope is the coefficient of sqrt(1/n~) in the refitted model
    import mlmeta
    from mlmeta.effects import escalc

    es = escalc("SMD", d, m1i="m1", sd1i="sd1", n1i="n1", m2i="m2", sd2i="sd2", n2i="n2")
    d2 = d.assign(
        yi=es["yi"].to_numpy(), vi=es["vi"].to_numpy(), w=np.sqrt((d.n1 + d.n2) / (d.n1 * d.n2))
    )
    r = mlmeta.rma_mv(d2, "yi", "vi", random="study/es", mods="~ w", test="t", dfs="contain")
    assert eg["coef"] == pytest.approx(float(r.core.beta[1]), rel=1e-6)


# ---------------------------------------------------------------- odds ratios
def test_odds_ratios_are_labelled_and_back_transformed(tmp_path):
    or_data().to_csv(tmp_path / "d.csv", index=False)
    toml = f"""title = "Odds ratios"
simulated = true
[data]
file = "d.csv"
[effect]
measure = "OR"
ai = "ai"
bi = "bi"
ci = "ci"
di = "di"
[model]
random = "study/es"
moderators = ["dose"]
{NO_EXTRAS}"""
    out, numbers = run_report(tmp_path, toml)
    o = numbers["overall"]
    z = o["model_scale"]
    d = o["display"]
    assert o["scale"] == "OR"
    assert d["estimate"] == pytest.approx(math.exp(z["estimate"]))
    assert (d["ci_lb"], d["ci_ub"]) == pytest.approx((math.exp(z["ci_lb"]), math.exp(z["ci_ub"])))
    assert o["apa"].startswith(
        f"OR = {d['estimate']:.2f}, 95% CI [{d['ci_lb']:.2f}, {d['ci_ub']:.2f}], t("
    )
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Effect size (OR)" not in md and "log odds ratio" in md
    cats = numbers["moderators"][0]["categories"]
    assert cats[0]["estimate"] == pytest.approx(math.exp(cats[0]["model_scale"]["estimate"]))
    # the figures label the scale honestly: log odds ratio, or odds ratio on a log axis
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mlmeta
    from mlmeta import plots
    from mlmeta.effects import escalc

    dd = or_data()
    es = escalc("OR", dd, ai="ai", bi="bi", ci="ci", di="di")
    r = mlmeta.rma_mv(
        dd.assign(yi=es["yi"].to_numpy(), vi=es["vi"].to_numpy()),
        "yi",
        "vi",
        random="study/es",
        measure="OR",
    )
    assert plots.forest(r).get_xlabel() == "Log odds ratio"
    ax = plots.forest(r, transf="exp")
    assert ax.get_xlabel() == "Odds ratio" and ax.get_xscale() == "log"
    assert plots.funnel(r).get_xlabel() == "Log odds ratio"
    plt.close("all")


# ---------------------------------------------------------------- undefined tests, small df
def test_undefined_cluster_robust_test_is_said_in_words(tmp_path):
    """5 studies and a 4-level study-level moderator: the CR2 test has no valid df."""
    rng = np.random.default_rng(11)
    rows = []
    for s in range(1, 6):
        for j in range(2):
            rows.append(
                {
                    "study": s,
                    "es": 2 * s + j - 2,
                    "yi": rng.normal(0.3, 0.2),
                    "vi": rng.uniform(0.01, 0.05),
                    "type": "abcd"[min(s - 1, 3)],
                }
            )
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    toml = f"""title = "Few studies"
simulated = true
[data]
file = "d.csv"
[effect]
yi = "yi"
vi = "vi"
[model]
random = "study/es"
moderators = ["type"]
{NO_EXTRAS}"""
    out, numbers = run_report(tmp_path, toml)
    m = numbers["moderators"][0]
    ro = m["robust_omnibus"]
    assert ro["df_status"] == "undefined" and ro["apa"] is None
    text = all_text(out)
    assert not BANNED.search(text), BANNED.search(text).group(0)
    md = (out / "report.md").read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("Omnibus test:"))
    assert "the CR2 test is not defined" in line and "Tipton & Pustejovsky, 2015" in line
    # R2 at the effect-size level: a study-level moderator cannot explain it
    assert "es not applicable" in line
    assert m["R2"]["applicable"] == {"study": True, "study/es": False}


def test_small_df_warning_in_the_same_paragraph(tmp_path_factory):
    """Assink & Wibbelink (2016): pubstatus has CR2 df 1.35; deltype's are below 1."""
    out, numbers = example("assink2016", tmp_path_factory)
    md = (out / "report.md").read_text(encoding="utf-8")
    by = {m["name"]: m for m in numbers["moderators"]}
    assert by["pubstatus"]["robust_omnibus"]["df_status"] == "small"
    assert by["deltype"]["robust_omnibus"]["df_status"] == "undefined"
    paras = md.split("\n\n")
    p = next(x for x in paras if x.startswith("Omnibus test: F(1, 15)"))
    assert "CR2: F(1, 1.35)" in p and "unreliable" in p and "Tipton & Pustejovsky, 2015" in p
    p = next(x for x in paras if x.startswith("Omnibus test: F(2, 97)"))
    assert "the CR2 test is not defined" in p and "0.80" in p and "F(2, 0.8" not in p
    # tables: the dagger and its note in the same table
    tab = next(x for x in paras if x.startswith("| pubstatus | k |"))
    note = paras[paras.index(tab) + 1]
    assert "†" in tab and note.startswith("*Note.*") and "unreliable" in note
    assert not BANNED.search(all_text(out))


# ---------------------------------------------------------------- captions and wording
def test_profile_caption_matches_the_line_styles(tmp_path_factory):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mlmeta
    from mlmeta import plots
    from mlmeta.plots.profileplot import STYLES

    _, numbers = example("alliance_like", tmp_path_factory)
    cap = next(f["caption"] for f in numbers["figures"] if f["name"] == "profile")
    assert f"the {STYLES['estimate']} vertical line marks the estimate" in cap
    assert f"the {STYLES['ci']} vertical lines the 95% profile-likelihood CI limits" in cap
    d = mlmeta.load_example("konstantopoulos2011").data
    r = mlmeta.rma_mv(d, "yi", "vi", random="district/school")
    ax = plots.profile_plot(r, j=0, n=6)
    words = {":": "dotted", "--": "dashed", "-.": "dash-dotted"}
    est = next(a for a in ax.get_lines() if a.get_gid() == "profile-estimate")
    ci = next(a for a in ax.get_lines() if a.get_gid() == "profile-ci")
    cut = next(a for a in ax.get_lines() if a.get_gid() == "profile-cutoff")
    assert words[est.get_linestyle()] == STYLES["estimate"] == "dotted"
    assert words[ci.get_linestyle()] == STYLES["ci"] == "dashed"
    assert words[cut.get_linestyle()] == STYLES["cutoff"]
    plt.close("all")


def test_joint_model_names_its_reference_categories(tmp_path_factory):
    out, _ = example("assink2016", tmp_path_factory)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "reference categories: deltype = covert, pubstatus = 0" in md
    assert "categories against the first as reference" not in md


def test_two_level_fits_are_not_called_multilevel(tmp_path):
    toml = """title = "Two levels"
[data]
example = "molloy2014"
study = "id"
[effect]
measure = "ZCOR"
ri = "ri"
ni = "ni"
[model]
random = "id"
[analyses]
loo = false
che_sweep = false
"""
    out, _ = run_report(tmp_path, toml)
    text = all_text(out)
    assert "multilevel" not in text.lower()
    assert "A two-level random-effects model" in text
    import matplotlib

    matplotlib.use("Agg")
    import mlmeta
    from mlmeta import plots

    r = mlmeta.rma_mv(
        mlmeta.load_example("molloy2014").data, "yi", "vi", random="id", measure="ZCOR"
    )
    ax = plots.forest(r)
    assert "Random-effects model" in [t.get_text() for t in ax.texts]


def test_trim_and_fill_shows_the_estimate_it_adjusts(tmp_path_factory):
    out, numbers = example("alliance_like", tmp_path_factory)
    a = numbers["bias"]["aggregated"]
    md = (out / "report.md").read_text(encoding="utf-8")
    para = next(x for x in md.split("\n\n") if x.startswith("Trim-and-fill"))
    ra = a["rma_agg"]
    r3 = f"{ra['beta_display']:.3f}".replace("-0.", MINUS + ".")
    assert f"unadjusted aggregated estimate r = {r3}" in para
    assert f"ρ = {a['rho']:g}" in para


def test_bias_rho_defaults_to_the_models_rho(tmp_path):
    toml = f"""title = "CHE"
simulated = true
[data]
example = "alliance_like"
[effect]
measure = "ZCOR"
ri = "ri"
ni = "ni"
[model]
random = "study/es"
rho = 0.6
{NO_EXTRAS}"""
    out, numbers = run_report(tmp_path, toml)
    a = numbers["bias"]["aggregated"]
    assert a["rho"] == 0.6 and a["rho_from"] == "model"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "ρ = 0.6, the model's ρ" in md
    for start in ("Rank correlation test", "Trim-and-fill", "Three-parameter"):
        para = next(x for x in md.split("\n\n") if x.startswith(start))
        assert "ρ = 0.6" in para


def test_outlier_and_cooks_rules_are_stated_and_cited(tmp_path_factory):
    out, numbers = example("assink2016", tmp_path_factory)
    from scipy.stats import chi2, norm

    ol = numbers["sensitivity"]["outliers"]
    assert ol["rule_name"] == "bonferroni"
    assert ol["critical"] == pytest.approx(norm.isf(0.05 / 200))
    ck = numbers["sensitivity"]["cooks"]
    assert ck["cutoff"] == pytest.approx(chi2.ppf(0.5, 1))
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Bonferroni critical value for 100 effect sizes" in md
    assert "the median of the χ² distribution with 1 df" in md
    assert md.count("Viechtbauer & Cheung, 2010") >= 2


# ---------------------------------------------------------------- document-level rules
def _numbers(tmp_path_factory, name="alliance_like"):
    return example(name, tmp_path_factory)[1]


def _text(blocks) -> str:
    out = []
    for b in blocks:
        if b["t"] in ("p", "h", "notice", "code"):
            out.append(b["text"])
        elif b["t"] == "table":
            out.append(b["caption"])
            out += [" | ".join(r) for r in b["rows"]]
            if b.get("note"):
                out.append(b["note"])
        elif b["t"] == "list":
            out += b["items"]
    return "\n".join(out)


def test_disagreeing_inferences_are_said_in_the_main_text(tmp_path_factory):
    import copy

    from mlmeta.report.document import build_document

    n = copy.deepcopy(_numbers(tmp_path_factory))
    assert not n["inference"]["differ"]
    assert "disagree" not in _text(build_document(n))
    n["inference"].update(differ=True, cr2_significant=False)
    blocks = build_document(n)
    i_over = next(i for i, b in enumerate(blocks) if b.get("id") == "overall")
    i_next = next(i for i, b in enumerate(blocks) if b["t"] == "h" and i > i_over)
    main = blocks[i_over:i_next]
    p = next(b for b in main if b.get("cls") == "disagree")
    assert (
        "significant at α = .05 with the model-based test but not significant with "
        "the CR2" in p["text"]
    )
    assert "The primary inference is the model-based test" in p["text"]


def test_primary_inference_cr2_when_declared(tmp_path):
    toml = f"""title = "CR2 first"
simulated = true
[data]
example = "alliance_like"
[effect]
measure = "ZCOR"
ri = "ri"
ni = "ni"
[model]
random = "study/es"
inference = "CR2"
{NO_EXTRAS}"""
    out, numbers = run_report(tmp_path, toml)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"**{numbers['robust']['apa']}**" in md
    assert "primary inference: CR2 cluster-robust t test" in md
    assert "The primary inference is cluster-robust (CR2, declared in the analysis file)" in md


def test_boundary_sentence_when_ci_includes_zero_but_lrt_rejects(tmp_path_factory):
    import copy

    from mlmeta.report.document import build_document

    n = copy.deepcopy(_numbers(tmp_path_factory))
    lev = n["heterogeneity"]["levels"][0]
    assert "boundary" not in [b.get("cls") for b in build_document(n)]
    lev["sigma2_ci"][0] = 0.0
    lev["lrt"].update(LRT=3.2, pval=0.074, pval_mixture=0.037)
    p = next(b for b in build_document(n) if b.get("cls") == "boundary")
    assert p["text"].startswith(
        f"For {lev['level']}, the 95% profile-likelihood CI of σ² "
        "includes 0 although the likelihood-ratio test rejects"
    )
    assert "(3.84)" in p["text"] and "(Self & Liang, 1987)" in p["text"]


def test_r2_wording(tmp_path_factory):
    from mlmeta.report.document import _r2_text
    from mlmeta.report.refs import Citations

    r2 = {
        "levels": {"study": -0.21, "study/es": 0.35},
        "total": -0.02,
        "applicable": {"study": True, "study/es": True},
    }
    t = _r2_text(r2, Citations())
    assert (
        t == "R² per level: study: no variance explained; study/es 35.0%; total no "
        "variance explained"
    )
    assert MINUS not in t and "-" not in t.replace("study/es", "")
    r2["levels"]["study"] = None
    assert "study not defined" in _r2_text(r2, Citations())


def test_i2_ci_method_is_said(tmp_path_factory):
    out, _ = example("alliance_like", tmp_path_factory)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "The CI of I² is I² evaluated at the σ² profile-likelihood limits" in md


def test_reference_list_is_exactly_what_the_text_cites(report_any):
    from mlmeta.report.refs import REFERENCES

    out, _ = report_any
    md = (out / "report.md").read_text(encoding="utf-8")
    body, refs = md.split("## References", 1)
    listed = re.findall(r"^\d+\. (.+)$", refs.split("\n---")[0], flags=re.MULTILINE)
    assert listed and listed == sorted(listed, key=str.lower)
    keys_listed = {k for k, v in REFERENCES.items() if v[2] in listed}
    assert len(keys_listed) == len(listed)
    for k, (who, year, _) in REFERENCES.items():
        cited = f"{who}, {year}" in body or f"{who} ({year})" in body
        assert cited == (k in keys_listed), k
    for must in (
        "viechtbauer2010",
        "tipton2015",
        "egger1997",
        "duval2000",
        "vevea1995",
        "self1987",
        "viechtbauer_cheung2010",
        "higgins2009",
        "cheung2014",
    ):
        assert must in keys_listed, must


@pytest.fixture(scope="module", params=["alliance_like", "assink2016"])
def report_any(request, tmp_path_factory):
    return example(request.param, tmp_path_factory)


def test_plain_language_summary(tmp_path_factory):
    out, numbers = example("alliance_like", tmp_path_factory)
    md = (out / "report.md").read_text(encoding="utf-8")
    summ = md.split("## Summary for practitioners", 1)[1].split("\n## ", 1)[0]
    d = numbers["overall"]["display"]
    r3 = f"{d['estimate']:.3f}".replace("-0.", MINUS + ".")
    assert f"the average association was small and negative (r = {r3}" in summ
    assert "by the benchmarks of Cohen (1988): .10 small, .30 medium, .50 large" in summ
    by = {c["level"]: c for c in numbers["moderators"][0]["categories"]}
    assert "The association was stronger when phase was early" in summ
    assert abs(by["early"]["estimate"]) > abs(by["late"]["estimate"])
    assert "did not differ significantly by treatment" in summ
    assert "this does not show that it is the same across treatment categories" in summ
    assert "In a new study like these, the true effect is expected to lie between" in summ
    assert "simulated" in summ.lower()
    for bad in ("no difference", "no effect of", "causes", "leads to", "because of", "proves"):
        assert bad not in summ.lower(), bad


def test_methods_name_every_analysis_and_setting(tmp_path_factory):
    _out, numbers = example("alliance_like", tmp_path_factory)
    m = numbers["methods"]
    for phrase in (
        "Leave-one-out",
        "Cook's distances",
        "Bonferroni",
        "ρ = 0, 0.2, 0.4, 0.6, 0.8, 0.9",
        "each with model-based and CR2 inference",
        "one-sided p-value cut point .025",
        "selection favours significant negative effects",
        "The primary inference is model-based",
        "profile-likelihood CIs",
        "50:50 mixture",
    ):
        assert phrase in m, phrase


def test_tables_and_figures_are_numbered(tmp_path_factory):
    out, numbers = example("alliance_like", tmp_path_factory)
    md = (out / "report.md").read_text(encoding="utf-8")
    nums = [int(x) for x in re.findall(r"^\*\*Table (\d+)\*\*$", md, flags=re.MULTILINE)]
    assert nums == list(range(1, len(nums) + 1)) and len(nums) >= 8
    assert "*Moderator analyses*" in md and "*Included studies*" in md
    figs = [int(x) for x in re.findall(r"^\*Figure (\d+)\.\*", md, flags=re.MULTILINE)]
    assert figs == list(range(1, len(figs) + 1)) == [f["number"] for f in numbers["figures"]]
    # the included-studies table: one row per study with its effect sizes, N and moderators
    st = numbers["studies"]
    assert len(st["rows"]) == numbers["data"]["n_studies"]
    assert sum(r["k"] for r in st["rows"]) == numbers["data"]["k"]
    tab = md.split("*Included studies*", 1)[1]
    assert "| study | Effect sizes | N | phase | rater | measure | treatment |" in tab


def test_word_document_has_the_same_text_tables_and_figures(tmp_path_factory):
    import docx

    out, numbers = example("alliance_like", tmp_path_factory)
    d = docx.Document(str(out / "report.docx"))
    md = (out / "report.md").read_text(encoding="utf-8")
    n_tables = len(re.findall(r"^\*\*Table \d+\*\*$", md, flags=re.MULTILINE))
    assert len(d.tables) == n_tables
    assert len(d.inline_shapes) == len(numbers["figures"])
    text = docx_text(out / "report.docx")
    assert numbers["overall"]["apa"] in text
    assert "Summary for practitioners" in text and "References" in text
    assert "Viechtbauer, W. (2010). Conducting meta-analyses in R" in text
    assert [p.style.name for p in d.paragraphs if p.text.startswith("Viechtbauer, W. (2010)")] == [
        "List Number"
    ]
    assert d.tables[0].rows[0].cells[0].text == "Level"
    with zipfile.ZipFile(out / "report.docx") as z:
        assert sum(n.startswith("word/media/") for n in z.namelist()) == len(numbers["figures"])


def test_templates_can_be_overridden(tmp_path):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "report.html.j2").write_text(
        '{% extends "mlmeta/report.html.j2" %}{% block css %}body { color: #123456; }'
        "{% endblock %}",
        encoding="utf-8",
    )
    (tdir / "report.md.j2").write_text(
        "JOURNAL {{ title }}\n{% for b in blocks if b.t == 'table' %}{{ b.caption }}\n{% endfor %}",
        encoding="utf-8",
    )
    toml = f"""title = "Journal style"
[data]
example = "konstantopoulos2011"
[effect]
yi = "yi"
vi = "vi"
[model]
random = "district/school"
[report]
templates = "tpl"
{NO_EXTRAS}"""
    out, numbers = run_report(tmp_path, toml)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "body { color: #123456; }" in html and numbers["overall"]["apa"] in html
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("JOURNAL Journal style\nTable 1. Variance components")


@pytest.mark.parametrize(
    "key,value,msg",
    [
        (
            "model.inference",
            '"robust"',
            ("'model.inference' must be one of model, CR2; got 'robust'"),
        ),
        (
            "analyses.selection_side",
            '"up"',
            ("'analyses.selection_side' must be one of auto, positive, negative; got 'up'"),
        ),
        (
            "analyses.selection_steps",
            "[0.5, 1.0]",
            (
                "'analyses.selection_steps' must be distinct "
                "one-sided p-values between 0 and 1 (exclusive); "
                "got [0.5, 1.0]"
            ),
        ),
        (
            "analyses.egger_predictor",
            '"n"',
            ("'analyses.egger_predictor' must be one of auto, se, sqrt_inv_n; got 'n'"),
        ),
        (
            "analyses.outlier_rule",
            '"3sd"',
            ("'analyses.outlier_rule' must be one of bonferroni, z1.96; got '3sd'"),
        ),
        (
            "report.forest_level",
            '"page"',
            ("'report.forest_level' must be one of auto, effect, study; got 'page'"),
        ),
        (
            "report.forest_sort",
            '"size"',
            ("'report.forest_sort' must be one of data, effect, weight; got 'size'"),
        ),
        ("report.templates", '"nowhere"', "'report.templates' 'nowhere' is not a folder"),
    ],
)
def test_analysis_file_keys_are_validated(tmp_path, key, value, msg):
    table, name = key.split(".")
    toml = (
        f'[data]\nexample = "konstantopoulos2011"\n[effect]\nyi = "yi"\nvi = "vi"\n'
        f"[{table}]\n{name} = {value}\n"
    )
    p = tmp_path / "a.toml"
    p.write_text(toml, encoding="utf-8")
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e):
        code = main(["run", str(p), "--out", str(tmp_path / "o")])
    assert code == 2
    lines = e.getvalue().splitlines()
    assert len(lines) == 1 and msg in lines[0], lines


@pytest.mark.slow
def test_report_of_1501_effect_sizes_stays_small(tmp_path):
    """SIMULATED: 1,501 effect sizes in 300 studies. The report's forest is at the study
    level (first page in the report, every study and every effect size in multi-page PDFs),
    no figure is taller than 12 inches and the HTML stays under 5 MB."""
    from PIL import Image

    rng = np.random.default_rng(7)
    sizes = 1 + rng.multinomial(1501 - 300, np.full(300, 1 / 300))
    study = np.repeat(np.arange(1, 301), sizes)
    k = len(study)
    vi = rng.uniform(0.005, 0.05, k)
    pd.DataFrame(
        {
            "study": study,
            "es": np.arange(1, k + 1),
            "vi": vi,
            "yi": 0.2
            + rng.normal(0, 0.1, 300)[study - 1]
            + rng.normal(0, 0.05, k)
            + rng.normal(0, np.sqrt(vi)),
        }
    ).to_csv(tmp_path / "big.csv", index=False)
    toml = """title = "Big"
simulated = true
[data]
file = "big.csv"
[effect]
yi = "yi"
vi = "vi"
[model]
random = "study/es"
[analyses]
profile = false
lrt = false
influence = false
bias = false
che_sweep = false
"""
    out, numbers = run_report(tmp_path, toml)
    assert (out / "report.html").stat().st_size <= 5 * 1024 * 1024
    fo = numbers["forest"]
    assert fo["level"] == "study" and fo["truncated"] and fo["total"] == 300
    assert (out / "figures" / "forest_effects.pdf").is_file() and fo["effects_pages"] >= 15
    assert numbers["loo_figure"] == {"truncated": True, "shown": 50, "total": 300}
    for f in numbers["figures"]:
        with Image.open(out / f["png"]) as im:
            assert im.size[1] <= 12 * 300 + 60, f["name"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Shown: the first" in md and "figures/forest_studies.pdf" in md
