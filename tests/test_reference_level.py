"""``model.reference``: the reference level of a categorical moderator, from the analysis file
through the report (R's ``relevel(phase, ref = "late")``). The data are the bundled SIMULATED
example ``alliance_like``."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from mlmeta.cli import main
from mlmeta.io.analysis import AnalysisError, load_data, parse_analysis

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "simulated": True,
    "data": {"example": "alliance_like", "study": "study"},
    "effect": {"measure": "ZCOR", "ri": "ri", "ni": "ni"},
    "model": {"random": "study/es", "moderators": ["phase", "rater", "ni"]},
}


def _raw(reference=None, **data):
    raw = copy.deepcopy(BASE)
    raw["data"].update(data)
    if reference is not None:
        raw["model"]["reference"] = reference
    return raw


# ---------------------------------------------------------------- the key accepted/refused
@pytest.mark.parametrize(
    "ref, expect",
    [
        ({"phase": "late"}, {"phase": "late"}),
        ({"phase": "early", "rater": "therapist"}, {"phase": "early", "rater": "therapist"}),
        ({}, {}),
    ],
)
def test_reference_is_accepted_and_kept(ref, expect):
    spec = parse_analysis(_raw(ref), None, "a.toml")
    assert spec.reference == expect
    assert spec.to_dict()["model"]["reference"] == (expect or None)
    load_data(spec)  # the levels exist in the data


def test_a_number_is_a_category_label():
    spec = parse_analysis(_raw({"ni": 138}, categorical=["ni"]), None, "a.toml")
    assert spec.reference == {"ni": "138"}
    load_data(spec)


@pytest.mark.parametrize(
    "ref, message",
    [
        (
            {"foo": "x"},
            "a.toml: 'model.reference.foo': 'foo' is not a moderator "
            "(model.moderators: phase, rater, ni)",
        ),
        (
            {"phase": ["late"]},
            "a.toml: 'model.reference.phase' must be a level (a string or a "
            "number), got a list (['late'])",
        ),
        (
            {"phase": True},
            "a.toml: 'model.reference.phase' must be a level (a string or a number), "
            "got a boolean (True)",
        ),
        ({"phase": " "}, "a.toml: 'model.reference.phase' must name a level; got ' '"),
        (
            "late",
            "a.toml: 'model.reference' must be a table of levels (e.g. {phase = \"late\"}), "
            "got a string ('late')",
        ),
    ],
)
def test_reference_refused_when_parsed(ref, message):
    with pytest.raises(AnalysisError) as exc:
        parse_analysis(_raw(ref), None, "a.toml")
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "ref, message",
    [
        (
            {"phase": "middle"},
            "'model.reference.phase': level 'middle' not found in column 'phase' "
            "(levels: 'early', 'late')",
        ),
        (
            {"ni": 138},
            "'model.reference.ni': 'ni' is not a categorical moderator (a numeric column; "
            "list it in data.categorical to treat it as categories)",
        ),
    ],
)
def test_reference_refused_with_the_data(ref, message):
    spec = parse_analysis(_raw(ref), None, "a.toml")  # only the data can tell
    with pytest.raises(AnalysisError) as exc:
        load_data(spec)
    assert str(exc.value) == message


def test_cli_says_it_in_one_line(tmp_path, capsys):
    f = tmp_path / "a.toml"
    f.write_text(
        '[data]\nexample = "alliance_like"\n[effect]\nmeasure = "ZCOR"\nri = "ri"\n'
        'ni = "ni"\n[model]\nrandom = "study/es"\nmoderators = ["phase"]\n'
        'reference = { rater = "patient" }\n',
        encoding="utf-8",
    )
    assert main(["run", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mlmeta: error: {f}: 'model.reference.rater': 'rater' is not a moderator "
        "(model.moderators: phase)"
    )


# ---------------------------------------------------------------- a run, both references
_FAST = """simulated = true
[data]
example = "alliance_like"
study = "study"
[effect]
measure = "ZCOR"
ri = "ri"
ni = "ni"
[model]
random = "study/es"
moderators = ["phase", "rater"]
{reference}
[analyses]
profile = false
lrt = false
robust = true
loo = false
influence = false
bias = false
che_sweep = false
figures = false
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """results.json and report.md of the default run and of reference = {phase = "late"}."""
    out = {}
    for name, ref in (("default", ""), ("late", 'reference = { phase = "late" }')):
        d = tmp_path_factory.mktemp(name)
        f = d / "a.toml"
        f.write_text(_FAST.format(reference=ref), encoding="utf-8")
        assert main(["run", str(f), "--out", str(d / "out"), "--quiet"]) == 0
        out[name] = (
            json.loads((d / "out" / "results.json").read_text(encoding="utf-8")),
            (d / "out" / "report.md").read_text(encoding="utf-8"),
        )
    return out


def _phase(results):
    return next(m for m in results["moderators"] if m["name"] == "phase")


@pytest.mark.slow
def test_reference_flips_the_contrast_and_keeps_the_test(runs):
    (d, _), (r, _) = runs["default"], runs["late"]
    pd_, pr = _phase(d), _phase(r)
    assert pd_["formula"] == "~ phase"
    assert pr["formula"] == '~ relevel(phase, ref = "late")'
    assert pd_["model"]["coef_names"] == ["intrcpt", "phaselate"]
    assert pr["model"]["coef_names"] == ["intrcpt", 'relevel(phase, ref = "late")early']
    # early - late is minus (late - early); the intercept is the other category's mean
    b_d, b_r = pd_["model"]["beta"], pr["model"]["beta"]
    assert b_r[1] == pytest.approx(-b_d[1], rel=1e-6)
    assert b_r[1] == pytest.approx(-0.123034, abs=5e-6)
    assert b_r[0] == pytest.approx(b_d[0] + b_d[1], rel=1e-6)
    for k in ("se", "pval"):
        assert pr["model"][k][1] == pytest.approx(pd_["model"][k][1], rel=1e-5)
    assert pr["model"]["stat"][1] == pytest.approx(-pd_["model"]["stat"][1], rel=1e-5)
    # the same omnibus test (QM/F and p), model-based and CR2
    assert pr["model"]["QM"] == pytest.approx(pd_["model"]["QM"], rel=1e-6)
    assert pr["model"]["QM"] == pytest.approx(35.8137, rel=1e-5)
    assert pr["model"]["QMp"] == pytest.approx(pd_["model"]["QMp"], rel=1e-5)
    assert pr["robust_omnibus"]["pval"] == pytest.approx(pd_["robust_omnibus"]["pval"], rel=1e-5)
    # the contrasts are named as the default coding names them
    assert [c["name"] for c in pd_["contrasts"]] == ["phaselate"]
    assert [c["name"] for c in pr["contrasts"]] == ["phaseearly"]
    assert pr["contrasts"][0]["estimate"] == pytest.approx(
        -pd_["contrasts"][0]["estimate"], rel=1e-6
    )
    # the reference category first; the subgroup estimates themselves do not change
    assert (pd_["reference"], pr["reference"]) == ("early", "late")
    assert (pd_["reference_declared"], pr["reference_declared"]) == (False, True)
    assert [c["level"] for c in pd_["categories"]] == ["early", "late"]
    assert [c["level"] for c in pr["categories"]] == ["late", "early"]
    by = {c["level"]: c["estimate"] for c in pd_["categories"]}
    assert all(math.isclose(c["estimate"], by[c["level"]], rel_tol=1e-6) for c in pr["categories"])


@pytest.mark.slow
def test_results_and_report_record_the_reference(runs):
    (d, md_d), (r, md_r) = runs["default"], runs["late"]
    assert d["settings"]["model"]["reference"] is None
    assert r["settings"]["model"]["reference"] == {"phase": "late"}
    assert r["joint"]["formula"] == '~ relevel(phase, ref = "late") + rater'
    names = [c["name"] for c in r["joint"]["coefficients"]]
    assert "phaseearly" in names and not any("relevel" in n for n in names)
    assert "reference categories: phase = late, rater = observer" in md_r
    assert "reference categories: phase = early, rater = observer" in md_d
    assert "| phaseearly |" in md_r and 'relevel(phase, ref = "late")early' not in md_r


def test_readme_documents_the_key():
    text = (ROOT / "examples" / "README.md").read_text(encoding="utf-8")
    assert 'reference = { phase = "late" }' in text or 'reference = {phase = "late"}' in text
    assert "relevel" in text
