"""`mlmeta run` on every bundled example: the report folder is complete, the report's text says
what results.json says, and results.json agrees with metafor (tests/fixtures/reference).

The reports are built once per session (in-process, through the command line's ``main``) and
shared with test_browser.py through :func:`build_report`.
"""

from __future__ import annotations

import io
import json
import math
import re
from contextlib import redirect_stderr, redirect_stdout
from html import escape as html_escape
from pathlib import Path

import pytest
from conftest import REF, compare, load_case, tolerance

from mlmeta.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NAMES = ["alliance_like", "crede2010", "konstantopoulos2011", "assink2016"]
MINUS = "\u2212"
CORE = [
    "k",
    "p",
    "n_levels",
    "sigma2",
    "beta",
    "se",
    "stat",
    "df",
    "pval",
    "ci_lb",
    "ci_ub",
    "QE",
    "QE_df",
    "QEp",
    "QM",
    "QM_df",
    "QMp",
    "logLik",
    "deviance",
    "AIC",
    "BIC",
    "AICc",
    "predict",
    "predict_r",
]

_BUILT: dict[str, Path] = {}
#: the bundled alliance_like.csv tells a story (scripts/make_alliance_like.py); the metafor
#: reference cases were computed on the earlier simulated copy kept in the reference fixtures,
#: so comparisons with them run the same analysis file on that copy
FIXTURE_COPY = {"alliance_ref": ("alliance_like", REF / "data" / "alliance_like.csv")}


def _toml_for(name: str, tmp: Path) -> Path:
    if name not in FIXTURE_COPY:
        return EXAMPLES / f"{name}.toml"
    example, csv = FIXTURE_COPY[name]
    text = (EXAMPLES / f"{example}.toml").read_text(encoding="utf-8")
    text = text.replace(f'example = "{example}"', f"file = {json.dumps(str(csv))}")
    assert f"file = {json.dumps(str(csv))}" in text and "simulated = true" in text
    p = tmp / f"{example}.toml"
    p.write_text(text, encoding="utf-8")
    return p


def build_report(name: str, tmp_path_factory) -> Path:
    """Run ``mlmeta run examples/<name>.toml --out <tmp>`` once per session; the folder.
    ``alliance_ref``: the alliance analysis on the reference fixtures' copy of the data."""
    if name not in _BUILT:
        tmp = tmp_path_factory.mktemp("reports")
        out = tmp / f"{name}-report"
        o, e = io.StringIO(), io.StringIO()
        toml = _toml_for(name, tmp)
        with redirect_stdout(o), redirect_stderr(e):
            code = main(["run", str(toml), "--out", str(out), "--quiet"])
        assert code == 0, e.getvalue()
        assert o.getvalue().strip() == str(out / "report.html")
        _BUILT[name] = out
    return _BUILT[name]


@pytest.fixture(scope="module", params=NAMES)
def report(request, tmp_path_factory):
    out = build_report(request.param, tmp_path_factory)
    return request.param, out, json.loads((out / "results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def alliance(tmp_path_factory):
    out = build_report("alliance_like", tmp_path_factory)
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def alliance_ref(tmp_path_factory):
    """The alliance analysis on the data the metafor reference cases were computed on."""
    out = build_report("alliance_ref", tmp_path_factory)
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def _report(name, tmp_path_factory):
    out = build_report(name, tmp_path_factory)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def _check(case_name: str, block: str | None, expected, got):
    case = load_case(REF / "cases" / f"{case_name}.json")
    rel, abs_ = tolerance(case, block)
    diffs = compare(expected, got, rel, abs_, block or "")
    assert not diffs, "\n".join(diffs[:20])


def _expect(case_name: str) -> dict:
    return load_case(REF / "cases" / f"{case_name}.json")["expect"]


def _r3(x: float, bounded: bool = True) -> str:
    """What the APA sentence must show for x: 3 decimals, "−", no leading zero."""
    s = f"{x:.3f}"
    if float(s) == 0:
        s = s.lstrip("-")
    if bounded:
        s = s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s
    return s.replace("-", MINUS)


# ---------------------------------------------------------------- the folder
def test_report_folder_is_complete(report):
    _name, out, numbers = report
    for f in ("report.html", "report.md", "report.docx", "results.json"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    figs = numbers["figures"]
    assert figs and all(f["number"] for f in figs)
    names = {f["name"] for f in figs}
    assert {"forest", "funnel", "profile", "loo"} <= names
    for m in numbers["moderators"]:
        assert (
            f"orchard_{m['name']}" if m["type"] == "categorical" else f"bubble_{m['name']}"
        ) in names
    from PIL import Image

    for f in figs:
        png, pdf = out / f["png"], out / f["pdf"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pdf.read_bytes()[:5] == b"%PDF-"
        with Image.open(png) as im:  # 300 dpi, no page taller than 12 inches
            assert im.info["dpi"] == pytest.approx((300, 300), abs=0.5)
            assert im.size[1] <= 12 * 300 + 60
    extra = [Path(x).name for f in figs for x in f.get("extra") or []]
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        [Path(f["png"]).name for f in figs] + [Path(f["pdf"]).name for f in figs] + extra
    )
    assert (out / "report.html").stat().st_size <= 5 * 1024 * 1024
    # no leftovers of the atomic write next to the report
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_html_is_self_contained(report):
    _name, out, numbers = report
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    assert refs and all(r.startswith("data:") for r in refs), [
        r[:40] for r in refs if not r.startswith("data:")
    ]
    assert not re.search(r"url\(|@import|https?://", html.split("<body>")[0])
    assert html.count('<img src="data:image/png;base64,') == len(numbers["figures"])


def test_report_text_matches_results_json(report):
    _name, out, numbers = report
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    o = numbers["overall"]
    assert f"**{o['apa']}**" in md
    assert f'<p class="apa" id="apa-overall">{html_escape(o["apa"])}</p>' in html
    d = o["display"]
    bounded = numbers["data"]["measure"] in ("ZCOR", "COR")
    lab = numbers["settings"]["effect"]["label"]
    sent = (
        f"{lab} = {_r3(d['estimate'], bounded)}, SE = {_r3(d['se'], bounded)}, 95% CI "
        f"[{_r3(d['ci_lb'], bounded)}, {_r3(d['ci_ub'], bounded)}], "
    )
    assert o["apa"].startswith(sent)
    stat = f"{o['stat_name']}({o['df']:.0f})" if o["df"] is not None else o["stat_name"]
    assert f"{stat} = {_r3(o['stat'], False)}, p " in o["apa"]
    p = o["pval"]
    assert o["apa"].endswith("p < .001" if p < 0.001 else f"p = {_r3(p)}")
    assert f"95% PI [{_r3(d['pi_lb'], bounded)}, {_r3(d['pi_ub'], bounded)}]" in md
    # counts in the header
    dd = numbers["data"]
    assert f"{dd['n_studies']} studies, {dd['k']} effect sizes" in md
    # the methods paragraph names the software and version
    assert f"mlmeta {numbers['generator']['version']}" in numbers["methods"]
    assert numbers["methods"] in md
    import mlmeta

    assert numbers["generator"]["version"] == mlmeta.__version__
    # the diagnostics line
    assert f"Fit diagnostics: {numbers['diagnostics']['verdict']}." in md
    # every moderator has its omnibus test in the text
    for m in numbers["moderators"]:
        assert m["omnibus"]["apa"] in md
        if m.get("robust_omnibus", {}).get("apa"):
            assert f"CR2: {m['robust_omnibus']['apa']}" in md


def test_simulated_header(report):
    name, out, numbers = report
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    from mlmeta.examples import EXAMPLES

    sim = EXAMPLES[name][2]
    assert numbers["simulated"] is sim
    assert ('id="simulated"' in html) is sim
    assert ("**SIMULATED DATA:" in md) is sim
    if sim:  # the notice comes right after the title
        assert md.splitlines()[2].startswith("> **SIMULATED DATA:")


# ---------------------------------------------------------------- against metafor
def test_apa_sentence_equals_metafor_rounded(alliance_ref):
    _out, numbers = alliance_ref
    e = _expect("alliance_like_t")
    pr = e["predict_r"]
    se_r = (1 - math.tanh(e["beta"][0]) ** 2) * e["se"][0]
    expected = (
        f"r = {_r3(pr['pred'])}, SE = {_r3(se_r)}, 95% CI [{_r3(pr['ci_lb'])}, "
        f"{_r3(pr['ci_ub'])}], t({e['df'][0]}) = {_r3(e['stat'][0], False)}, p < .001"
    )
    assert (
        expected == "r = \u2212.123, SE = .020, 95% CI [\u2212.164, \u2212.082], "
        "t(26) = \u22126.127, p < .001"
    )
    assert numbers["overall"]["apa"] == expected
    assert f"95% PI [{_r3(pr['pi_lb'])}, {_r3(pr['pi_ub'])}]" in numbers["overall"]["pi_text"]
    # the tanh-transformed numbers themselves, at full precision
    d = numbers["overall"]["display"]
    _check(
        "alliance_like_t",
        None,
        {k: pr[k] for k in ("ci_lb", "ci_ub", "pi_lb", "pi_ub")},
        {k: d[k] for k in ("ci_lb", "ci_ub", "pi_lb", "pi_ub")},
    )
    _check("alliance_like_t", None, pr["pred"], d["estimate"])
    assert d["se"] == pytest.approx(se_r, rel=1e-5)


@pytest.mark.parametrize(
    "name,case",
    [
        ("alliance_ref", "alliance_like_t"),
        ("crede2010", "crede2010_all_t"),
        ("konstantopoulos2011", "konstantopoulos2011_t"),
        ("assink2016", "assink2016_t"),
    ],
)
def test_overall_model_matches_metafor(name, case, tmp_path_factory):
    numbers = _report(name, tmp_path_factory)
    e = _expect(case)
    got = numbers["overall"]["model"]
    _check(case, None, {k: e[k] for k in CORE if k in e}, got)
    het = numbers["heterogeneity"]
    _check(case, "sigma2", e["sigma2"], [x["sigma2"] for x in het["levels"]])
    if "I2" in e:
        _check(case, "I2", e["I2"]["total"], het["I2_total"])
        _check(case, "I2", e["I2"]["levels"], [x["I2"] for x in het["levels"]])
    _check(
        case,
        "profile_ci",
        [[x["ci_lb"], x["ci_ub"]] for x in e["profile_ci"]],
        [x["sigma2_ci"] for x in het["levels"]],
    )
    _check(
        case,
        "lrt_drop",
        [[x["LRT"], x["pval"]] for x in e["lrt_drop"]],
        [[x["lrt"]["LRT"], x["lrt"]["pval"]] for x in het["levels"]],
    )
    rb = numbers["robust"]["block"]
    _check(
        case,
        "robust_cr2",
        {
            k: e["robust_cr2"][k]
            for k in ("se", "stat", "df", "pval", "ci_lb", "ci_ub", "QM", "QMp")
        },
        rb,
    )
    eg = numbers["bias"]["egger"]
    _check(case, "egger", e["egger"], eg)
    z = numbers["sensitivity"]["outliers"]["z"]
    _check(case, "rstandard", e["rstandard"]["z"], z)
    ol = numbers["sensitivity"]["outliers"]
    from scipy.stats import norm

    assert ol["critical"] == pytest.approx(norm.isf(0.05 / (2 * len(z))))  # Bonferroni
    assert ol["n"] == sum(abs(x) > ol["critical"] for x in e["rstandard"]["z"])
    if "loo_cluster" in e:
        rows = numbers["sensitivity"]["loo"]["rows"]
        _check(
            case,
            "loo_cluster",
            [[x["left_out"], x["beta"], x["se"]] for x in e["loo_cluster"]],
            [[r["left_out"], r["model_scale"]["estimate"], r["model_scale"]["se"]] for r in rows],
        )
    if "cooks_cluster" in e:
        ck = numbers["sensitivity"]["cooks"]["rows"]
        _check(
            case,
            "cooks_cluster",
            [[x["cluster"], x["value"]] for x in e["cooks_cluster"]],
            [[r["cluster"], r["value"]] for r in ck],
        )


def test_loo_and_cooks_equal_the_library(tmp_path_factory):
    """The report's single pass of refits gives what loo_cluster()/cooks_cluster() give."""
    import warnings

    from mlmeta.examples import load_example
    from mlmeta.model import rma_mv

    numbers = _report("assink2016", tmp_path_factory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rma_mv(
            load_example("assink2016").data,
            "yi",
            "vi",
            random="study/esid",
            test="t",
            dfs="contain",
        )
        loo = res.loo_cluster()
        ck = res.cooks_cluster()
    rows = numbers["sensitivity"]["loo"]["rows"]
    assert [r["model_scale"]["estimate"] for r in rows] == pytest.approx(
        loo["beta"].tolist(), rel=1e-9
    )
    got = numbers["sensitivity"]["cooks"]
    assert [r["value"] for r in got["rows"]] == pytest.approx(ck["value"].tolist(), rel=1e-9)
    # influential: D above the median of chi2 with p df (Viechtbauer & Cheung, 2010)
    assert got["cutoff"] == pytest.approx(0.454936423119572)
    assert [r["influential"] for r in got["rows"]] == (ck["value"] > got["cutoff"]).tolist()


@pytest.mark.parametrize(
    "name,mod,case",
    [
        ("alliance_ref", "phase", "alliance_like_phase_t"),
        ("alliance_ref", "rater", "alliance_like_rater_t"),
        ("alliance_ref", "treatment", "alliance_like_treatment_t"),
        ("assink2016", "deltype", "assink2016_deltype_t"),
        ("assink2016", "year", "assink2016_year_t"),
    ],
)
def test_moderator_models_match_metafor(name, mod, case, tmp_path_factory):
    numbers = _report(name, tmp_path_factory)
    m = next(x for x in numbers["moderators"] if x["name"] == mod)
    e = _expect(case)
    core = [k for k in CORE if k in e and k not in ("predict", "predict_r")]
    _check(case, None, {k: e[k] for k in core}, m["model"])
    # omnibus F with its df, the CR2 HTZ test and R2 per level
    _check(
        case,
        None,
        [e["QM"], e["QM_df"][0], e["QM_df"][1], e["QMp"]],
        [m["omnibus"]["stat"], m["omnibus"]["df1"], m["omnibus"]["df2"], m["omnibus"]["pval"]],
    )
    rc = e["robust_cr2"]
    ro = m["robust_omnibus"]
    _check(
        case,
        "robust_cr2",
        [rc["QM"], rc["QM_df"][1], rc["QMp"]],
        [ro["stat"], ro["df2"], ro["pval"]],
    )
    # R2 against metafor refitted with a tight optimiser (see test_reference_blocks.py)
    tight = json.loads((REF.parent / "reference_tight" / "r2_tight.json").read_text())
    t = tight["cases"][case]["R2"]
    _check(
        case, "R2", [t["levels"], t["total"]], [list(m["R2"]["levels"].values()), m["R2"]["total"]]
    )
    if m["type"] == "continuous":
        c = m["coefficients"][-1]
        _check(
            case,
            None,
            [e["beta"][-1], e["se"][-1], e["ci_lb"][-1], e["ci_ub"][-1]],
            [c["estimate"], c["se"], c["ci_lb"], c["ci_ub"]],
        )
        _check(
            case,
            "robust_cr2",
            [rc["ci_lb"][-1], rc["ci_ub"][-1], rc["pval"][-1]],
            [c["robust"]["ci_lb"], c["robust"]["ci_ub"], c["robust"]["pval"]],
        )


def test_subgroup_estimates_match_metafor_cell_means(tmp_path_factory):
    numbers = _report("assink2016", tmp_path_factory)
    m = next(x for x in numbers["moderators"] if x["name"] == "deltype")
    e = _expect("assink2016_subgroups_t")
    cats = m["categories"]
    assert [c["level"] for c in cats] == ["covert", "general", "overt"]
    _check(
        "assink2016_subgroups_t",
        None,
        [e["beta"], e["ci_lb"], e["ci_ub"], e["pval"]],
        [
            [c["estimate"] for c in cats],
            [c["ci_lb"] for c in cats],
            [c["ci_ub"] for c in cats],
            [c["pval"] for c in cats],
        ],
    )
    rc = e["robust_cr2"]
    _check(
        "assink2016_subgroups_t",
        "robust_cr2",
        [rc["ci_lb"], rc["ci_ub"], rc["df"]],
        [
            [c["robust"]["ci_lb"] for c in cats],
            [c["robust"]["ci_ub"] for c in cats],
            [c["robust"]["df"] for c in cats],
        ],
    )
    # counts per category from the data
    from mlmeta.examples import load_example

    d = load_example("assink2016").data
    for c in cats:
        sub = d[d["deltype"] == c["level"]]
        assert (c["k"], c["n_studies"]) == (len(sub), sub["study"].nunique())


def test_alliance_subgroups_on_r_scale(alliance):
    """Subgroup r = tanh of the cell-means estimates; the table shows them to 3 decimals."""
    out, numbers = alliance
    md = (out / "report.md").read_text(encoding="utf-8")
    m = next(x for x in numbers["moderators"] if x["name"] == "phase")
    for c in m["categories"]:
        z = c["model_scale"]
        assert c["estimate"] == pytest.approx(math.tanh(z["estimate"]), rel=1e-12)
        assert c["ci_lb"] == pytest.approx(math.tanh(z["ci_lb"]), rel=1e-12)
        row = (
            f"| {c['level']} | {c['k']} | {c['n_studies']} | {_r3(c['estimate'])} | "
            f"[{_r3(c['ci_lb'])}, {_r3(c['ci_ub'])}] |"
        )
        assert row in md


def test_crede_missing_class_rows_reported(tmp_path_factory):
    numbers = _report("crede2010", tmp_path_factory)
    m = next(x for x in numbers["moderators"] if x["name"] == "class")
    assert m["k"] == 67 and m["rows_dropped"] == 30
    out = build_report("crede2010", tmp_path_factory)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "30 rows with missing class dropped" in md
    assert numbers["data"]["k"] == 97 and numbers["data"]["rows_dropped"] == []
    assert numbers["data"]["participants"]["sum"] == pytest.approx(
        __import__("mlmeta.examples", fromlist=["x"]).load_example("crede2010").data["ni"].sum()
    )


def test_che_sweep_rows(alliance):
    _, numbers = alliance
    che = numbers["che_sweep"]
    assert che["available"] and [r["rho"] for r in che["rows"]] == [0, 0.2, 0.4, 0.6, 0.8, 0.9]
    # rho = 0 is the plain multilevel model
    r0 = che["rows"][0]
    assert r0["beta"] == pytest.approx(numbers["overall"]["model"]["beta"][0], rel=1e-6)


def test_results_json_is_strict_json(report):
    _, out, _ = report
    text = (out / "results.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)


def test_aggregated_bias_passed_through(alliance):
    """The rank test, trim-and-fill and selection model come straight from aggregated_bias."""
    pub = pytest.importorskip("mlmeta.pubbias")
    import warnings

    from mlmeta.examples import load_example
    from mlmeta.model import rma_mv

    _, numbers = alliance
    a = numbers["bias"]["aggregated"]
    # the model has no rho (independent sampling errors), so neither has the aggregation
    assert a["available"] and a["rho"] == 0 and a["n_aggregated"] == 27
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rma_mv(
            load_example("alliance_like").data,
            "yi",
            "vi",
            random="study/es",
            test="t",
            dfs="contain",
            measure="ZCOR",
        )
        ab = pub.aggregated_bias(res, rho=0.0, alternative="auto")
    assert a["ranktest"]["tau"] == pytest.approx(ab["ranktest"]["tau"], rel=1e-9)
    assert a["trimfill"]["k0"] == ab["trimfill"]["k0"]
    assert a["trimfill"]["beta_display"] == pytest.approx(math.tanh(ab["trimfill"]["beta"]))
    assert a["selmodel"]["beta_display"] == pytest.approx(math.tanh(ab["selmodel"]["beta"]))
    out, _ = alliance
    md = (out / "report.md").read_text(encoding="utf-8")
    assert f"adjusted r = {_r3(math.tanh(ab['selmodel']['beta']))}" in md
