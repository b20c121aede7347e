"""The ``[power]`` table of an analysis file and the power section of ``mlmeta run``.

The analysis-file keys (accepted with their defaults, refused with one-line messages naming the
key), results.json's "power" block equal to calling :mod:`mlmeta.power` directly with the
overall model's numbers, the sentence in the HTML and Markdown reports, a failure noted
without taking the report down, and exit status 2 for a bad table. The data are the bundled
SIMULATED example ``alliance_like``.
"""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import mlmeta
from mlmeta import power as pw
from mlmeta.cli import main
from mlmeta.io.analysis import AnalysisError, parse_analysis

BASE = {
    "data": {"example": "alliance_like", "study": "study"},
    "effect": {"measure": "ZCOR", "ri": "ri", "ni": "ni"},
}

HEAD = """
[data]
example = "alliance_like"
study = "study"
[effect]
measure = "ZCOR"
ri = "ri"
ni = "ni"
[analyses]
profile = false
lrt = false
robust = false
loo = false
influence = false
bias = false
che_sweep = false
figures = false
"""


def run(tmp: Path, toml: str, name: str = "a") -> tuple[int, str, Path]:
    p = tmp / f"{name}.toml"
    p.write_text(toml, encoding="utf-8")
    out = tmp / f"{name}-report"
    o, e = io.StringIO(), io.StringIO()
    with redirect_stdout(o), redirect_stderr(e):
        code = main(["run", str(p), "--out", str(out), "--quiet"])
    return code, e.getvalue(), out


def numbers(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def direct_fit(rho: float | None = None):
    """The overall model fitted with the public API, independently of the report."""
    ex = mlmeta.load_example("alliance_like")
    es = mlmeta.escalc("ZCOR", ex.data, ri="ri", ni="ni")
    d = ex.data.assign(yi=es["yi"].to_numpy(), vi=es["vi"].to_numpy())
    kw = {} if rho is None else {"rho": rho, "rho_cluster": "study"}
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", test="t", dfs="contain", **kw)
    return res, d


# ---------------------------------------------------------------- analysis-file keys
def test_power_table_absent_means_no_power_section():
    spec = parse_analysis(dict(BASE))
    assert spec.power is None
    assert spec.to_dict()["power"] is None


def test_power_table_defaults_filled_and_kept_in_to_dict():
    spec = parse_analysis({**BASE, "power": {}})
    assert spec.power == {
        "target": 0.8,
        "effect": "observed",
        "model": "CHE",
        "df": "rve",
        "rho": None,
        "tau": "observed",
        "omega": "observed",
        "alpha": 0.05,
        "iterations": 1000,
        "seed": 1,
    }
    assert spec.to_dict()["power"] == spec.power


def test_power_table_all_keys_accepted_and_normalised():
    spec = parse_analysis(
        {
            **BASE,
            "power": {
                "target": 0.9,
                "effect": -0.1,
                "model": "mlma",
                "df": "SATT",
                "rho": 0.5,
                "tau": 0.1,
                "omega": "Observed",
                "alpha": 0.01,
                "iterations": 50,
                "seed": 7,
            },
        }
    )
    assert spec.power == {
        "target": 0.9,
        "effect": -0.1,
        "model": "MLMA",
        "df": "satt",
        "rho": 0.5,
        "tau": 0.1,
        "omega": "observed",
        "alpha": 0.01,
        "iterations": 50,
        "seed": 7,
    }
    assert isinstance(spec.power["effect"], float)


@pytest.mark.parametrize(
    "table, message",
    [
        ({"power": 3}, r"'power' must be a table \(\[power\]\), got an integer"),
        ({"power": {"targte": 0.8}}, r"unknown key 'power.targte'; did you mean 'target'\?"),
        ({"power": {"studies": 10}}, r"unknown key 'power.studies'; allowed: target, effect"),
        ({"power": {"target": "high"}}, r"'power.target' must be a number, got a string"),
        ({"power": {"target": 1.0}}, r"'power.target' must be strictly between 0 and 1; got 1.0"),
        ({"power": {"alpha": 0}}, r"'power.alpha' must be strictly between 0 and 1; got 0"),
        (
            {"power": {"effect": "large"}},
            r"'power.effect' must be a number or \"observed\"; "
            r"got 'large'",
        ),
        (
            {"power": {"effect": [0.1]}},
            r"'power.effect' must be a number or \"observed\", got a "
            r"list",
        ),
        ({"power": {"tau": -0.1}}, r"'power.tau' must be >= 0 or \"observed\"; got -0.1"),
        ({"power": {"omega": "fit"}}, r"'power.omega' must be a number or \"observed\"; got 'fit'"),
        ({"power": {"rho": 1.5}}, r"'power.rho' must be between 0 and 1; got 1.5"),
        ({"power": {"model": "RE"}}, r"'power.model' must be one of CHE, MLMA, CE; got 'RE'"),
        ({"power": {"df": "kr"}}, r"'power.df' must be one of model, satt, rve; got 'kr'"),
        (
            {"power": {"model": "CE", "df": "model"}},
            r"'power.model' CE \(correlated effects\) needs power.df = \"rve\"; got 'model'",
        ),
        ({"power": {"iterations": 0}}, r"'power.iterations' must be an integer >= 1; got 0"),
        ({"power": {"iterations": 10.5}}, r"'power.iterations' must be an integer, got a number"),
        ({"power": {"seed": True}}, r"'power.seed' must be an integer, got a boolean"),
    ],
)
def test_power_table_refused_with_one_line(table, message):
    with pytest.raises(AnalysisError, match=message) as ei:
        parse_analysis({**BASE, **table}, name="a.toml")
    assert "\n" not in str(ei.value)
    assert str(ei.value).startswith("a.toml: ")


# ---------------------------------------------------------------- the report
@pytest.fixture(scope="module")
def observed_run(tmp_path_factory):
    """Three-level model, power at the observed estimate, rho from the table."""
    tmp = tmp_path_factory.mktemp("power_observed")
    code, err, out = run(tmp, HEAD + '[model]\nrandom = "study/es"\n[power]\nrho = 0.6\n')
    assert code == 0, err
    return out, numbers(out)


@pytest.fixture(scope="module")
def given_run(tmp_path_factory):
    """CHE model (rho 0.4): a given effect and tau, MLMA with Satterthwaite df, rho taken from
    the fit."""
    tmp = tmp_path_factory.mktemp("power_given")
    toml = (
        HEAD + '[model]\nrandom = "study/es"\nrho = 0.4\n[power]\neffect = 0.1\n'
        'tau = 0.1\nmodel = "MLMA"\ndf = "satt"\ntarget = 0.9\nalpha = 0.01\n'
    )
    code, err, out = run(tmp, toml)
    assert code == 0, err
    return out, numbers(out)


def test_power_block_equals_mlmeta_power_at_observed_effect(observed_run):
    _, num = observed_run
    p = num["power"]
    res, d = direct_fit()
    s2 = res.core.sigma2
    j = d["study"].nunique()
    mu, tau, omega = float(res.core.beta[0]), math.sqrt(s2[0]), math.sqrt(s2[1])
    vi, k = float(np.mean(d["vi"])), len(d) / j
    assert p["available"] is True
    assert (p["studies"], p["effect_source"], p["label"]) == (27, "observed", "CHE-RVE")
    assert p["effect"] == pytest.approx(mu, rel=1e-6)
    assert p["tau"] == pytest.approx(tau, rel=1e-5)
    assert p["omega"] == pytest.approx(omega, rel=1e-5)
    assert p["mean_vi"] == pytest.approx(vi, rel=1e-12)
    assert p["es_per_study"] == pytest.approx(48 / 27, rel=1e-12)
    assert p["rho"] == 0.6
    args = dict(tau=tau, omega=omega, rho=0.6, sigma2=vi, k=k, model="CHE", var_df="rve")
    assert p["power"] == pytest.approx(pw.power(j, mu, **args).power, rel=1e-6)
    assert p["mdes"] == pytest.approx(pw.mdes(j, **args).mdes, rel=1e-6)
    assert p["studies_needed"] == pw.min_studies(mu, **args).studies
    assert p["mdes_display"] == pytest.approx(-math.tanh(p["mdes"]), rel=1e-12)
    assert p["note"] and "Hoenig & Heisey" in p["note"]
    assert num["settings"]["power"] == {**parse_analysis({**BASE, "power": {}}).power, "rho": 0.6}


def test_power_block_equals_mlmeta_power_with_given_inputs(given_run):
    _, num = given_run
    p = num["power"]
    res, d = direct_fit(rho=0.4)
    s2 = res.core.sigma2
    j = d["study"].nunique()
    omega, vi, k = math.sqrt(s2[1]), float(np.mean(d["vi"])), len(d) / j
    assert (p["effect"], p["effect_source"], p["tau"], p["rho"]) == (0.1, "given", 0.1, 0.4)
    assert p["omega"] == pytest.approx(omega, rel=1e-5)
    assert (p["label"], p["model"], p["var_df"], p["target"], p["alpha"], p["note"]) == (
        "MLMA-Model+Satt",
        "MLMA",
        "satt",
        0.9,
        0.01,
        None,
    )
    args = dict(
        tau=0.1, omega=omega, rho=0.4, sigma2=vi, k=k, model="MLMA", var_df="satt", alpha=0.01
    )
    assert p["power"] == pytest.approx(pw.power(j, 0.1, **args).power, rel=1e-6)
    assert p["mdes"] == pytest.approx(pw.mdes(j, target_power=0.9, **args).mdes, rel=1e-6)
    assert p["studies_needed"] == pw.min_studies(0.1, target_power=0.9, **args).studies
    assert p["effect_display"] == pytest.approx(math.tanh(0.1), rel=1e-12)


@pytest.mark.parametrize("fixture", ["observed_run", "given_run"])
def test_html_markdown_and_word_show_the_sentence(fixture, request):
    out, num = request.getfixturevalue(fixture)
    sentence = num["power"]["sentence"]
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Power of the test of the overall effect" in md
    assert sentence.rstrip(".") + " (Vembye et al., 2023)." in md
    assert sentence.rstrip(".") in html
    for text in (md, html):
        assert (
            "Vembye, M. H., Pustejovsky, J. E., &amp; Pigott, T. D. (2023)" in text
            or "Vembye, M. H., Pustejovsky, J. E., & Pigott, T. D. (2023)" in text
        )
    import docx

    word = "\n".join(par.text for par in docx.Document(str(out / "report.docx")).paragraphs)
    assert sentence.rstrip(".") + " (Vembye et al., 2023)." in word
    if num["power"]["note"]:
        assert "(Hoenig & Heisey, 2001)" in md
        assert "Hoenig, J. M., & Heisey, D. M. (2001)" in md
    else:
        assert "Hoenig" not in md


def test_observed_sentence_numbers(observed_run):
    _, num = observed_run
    p = num["power"]
    assert p["sentence"].startswith(
        "With J = 27 studies and on average 1.8 effect sizes per "
        "study (every study with the mean sampling variance), the "
        "power of the CHE-RVE test (α = .05, τ = "
    )
    assert f"80 % power needs at least {p['studies_needed']} studies." in p["sentence"]


def test_no_power_table_no_power_section(observed_run, tmp_path):
    code, err, out = run(tmp_path, HEAD + '[model]\nrandom = "study"\n')
    assert code == 0, err
    num = numbers(out)
    assert num["power"] is None
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Power of the test" not in md and "Vembye" not in md


def test_power_failure_is_noted_not_fatal(monkeypatch, tmp_path):
    import mlmeta.power.report as pr

    def boom(spec, fit):
        raise FloatingPointError("overflow in the power search")

    monkeypatch.setattr(pr, "power_section", boom)
    code, err, out = run(tmp_path, HEAD + '[model]\nrandom = "study/es"\n[power]\n')
    assert code == 0, err
    num = numbers(out)
    assert num["power"] == {
        "available": False,
        "reason": "FloatingPointError: overflow in the power search",
    }
    assert {
        "section": "power",
        "category": "NotAvailable",
        "message": "power analysis: FloatingPointError: overflow in the power search",
    } in num["warnings"]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert (
        "The power analysis is not available: FloatingPointError: overflow in the power search."
    ) in md


def test_model_without_study_outer_level_noted(tmp_path):
    code, err, out = run(tmp_path, HEAD + '[model]\nrandom = "es"\n[power]\n')
    assert code == 0, err
    p = numbers(out)["power"]
    assert p["available"] is False
    assert "outer level is the study column 'study'" in p["reason"]


@pytest.mark.parametrize(
    "table, message",
    [
        (
            '[power]\nmodel = "CE"\ndf = "satt"\n',
            "'power.model' CE (correlated effects) needs power.df = \"rve\"; got 'satt'",
        ),
        ("[power]\ntarget = 80\n", "'power.target' must be strictly between 0 and 1; got 80"),
        ("[power]\nn = 20\n", "unknown key 'power.n'"),
    ],
)
def test_bad_power_table_exit_2_one_line(table, message, tmp_path):
    code, err, out = run(tmp_path, HEAD + '[model]\nrandom = "study/es"\n' + table)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mlmeta: error: ")
    assert message in lines[0]
    assert "Traceback" not in err
    assert not (out / "results.json").exists()
