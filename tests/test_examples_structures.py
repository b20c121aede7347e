"""The bundled examples of the random-effects structures (mlmeta.examples) are the reference
data: fitted from the package alone, as the README shows, they give metafor's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmeta
from mlmeta.examples import EXAMPLES, load_example

CASES = Path(__file__).parent / "fixtures" / "reference_structures"
PHYLO = ["~ 1 | article", "~ 1 | esid", "~ 1 | species", "~ 1 | phylo"]


def _expect(case: str) -> dict:
    return json.loads((CASES / "cases" / f"{case}.json").read_text())["expect"]


@pytest.mark.parametrize(
    "name,data_file",
    [
        ("berkey1998", "berkey1998.csv"),
        ("ishak2007", "ishak2007.csv"),
        ("lim2014", "lim2014_o_o_adj.csv"),
        ("crossed_lab", "crossed_lab.csv"),
        ("multivar_labs", "multivar_labs.csv"),
    ],
)
def test_bundled_copies_are_the_reference_data(name, data_file):
    ex = load_example(name)
    ref = pd.read_csv(CASES / "data" / data_file)
    pd.testing.assert_frame_equal(ex.data, ref)
    assert ex.simulated == ("SIMULATED" in ex.notice) == EXAMPLES[name][2]


@pytest.mark.parametrize(
    "case,fit",
    [
        (
            "berkey1998_un_t",
            lambda: mlmeta.rma_mv(
                (ex := load_example("berkey1998")).data,
                "yi",
                V=ex.matrices["V"],
                random="~ outcome | trial",
                struct="UN",
                mods="~ 0 + outcome",
                test="t",
                dfs="contain",
            ),
        ),
        (
            "ishak2007_ar_t",
            lambda: mlmeta.rma_mv(
                (ex := load_example("ishak2007")).data,
                "yi",
                V=ex.matrices["V"],
                random="~ time | study",
                struct="AR",
                mods="~ 0 + factor(time)",
                test="t",
                dfs="contain",
            ),
        ),
        (
            "lim2014_phylo_t",
            lambda: mlmeta.rma_mv(
                (ex := load_example("lim2014")).data,
                "yi",
                "vi",
                R={"phylo": ex.matrices["R_phylo"]},
                random=PHYLO,
                test="t",
                dfs="contain",
            ),
        ),
        (
            "crossed_lab_t",
            lambda: mlmeta.rma_mv(
                load_example("crossed_lab").data,
                "yi",
                "vi",
                random=["~ 1 | study/es", "~ 1 | lab"],
                test="t",
                dfs="contain",
            ),
        ),
        (
            "multivar_labs_t",
            lambda: mlmeta.rma_mv(
                load_example("multivar_labs").data,
                "yi",
                "vi",
                random=["~ outcome | study", "~ outcome | lab"],
                struct=["UN", "CS"],
                rho=0.5,
                rho_cluster="study",
                mods="~ 0 + outcome",
                test="t",
                dfs="contain",
            ),
        ),
    ],
)
def test_readme_models_on_bundled_examples_match_metafor(case, fit):
    res, exp = fit(), _expect(case)
    np.testing.assert_allclose(res.core.beta, exp["beta"], rtol=1e-5)
    np.testing.assert_allclose(res.tests.se, exp["se"], rtol=1e-5)
    assert res.fitstats["logLik"] == pytest.approx(exp["logLik"], rel=1e-7)
    for key in ("sigma2", "tau2", "rho", "gamma2", "phi"):
        if exp.get(key) is not None:
            got = getattr(res, key)
            np.testing.assert_allclose(np.asarray(got, dtype=float), exp[key], rtol=1e-5, atol=1e-8)


def test_the_web_page_offers_only_the_nested_examples(tmp_path, monkeypatch):
    from mlmeta.app import ui

    seen = {}

    def spy(examples):
        seen.update(examples)
        return real(examples)

    real = ui.app_ui
    monkeypatch.setattr(ui, "app_ui", spy)
    from mlmeta.app import create_app

    create_app(tmp_path)
    assert "alliance_like" in seen and "assink2016" in seen
    assert not set(seen) & {"berkey1998", "ishak2007", "lim2014", "crossed_lab", "multivar_labs"}


def test_crossed_example_report_runs_and_says_once_why_cr2_is_missing(tmp_path):
    # regressions: the forest figure failed (a study-level forest needs one nesting) and every
    # analysis repeated the same CR2 refusal as a warning; the moderator table kept an empty
    # CR2 column under a text that promised CR2 tests
    import contextlib
    import io

    from mlmeta.cli import main

    toml = Path(__file__).parents[1] / "examples" / "structures" / "crossed_lab.toml"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(toml), "--out", str(tmp_path / "rep"), "--quiet"])
    assert code == 0, err.getvalue()
    assert "could not be drawn" not in err.getvalue()
    assert err.getvalue().count("no single outer factor") == 0
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert md.count("no single outer factor") == 1
    assert (
        "CR2 cluster-robust inference is not available: random=['~ 1 | study/es', "
        "'~ 1 | lab'] has no single outer factor" in md
    )
    assert "| Moderator / level | k | Studies | d | 95% CI | Test | R² |" in md
    assert "model-based (CR2 cluster-robust inference is not available for this model" in md
    assert (tmp_path / "rep" / "figures" / "forest.png").exists()
    res = mlmeta.rma_mv(
        load_example("crossed_lab").data,
        "yi",
        "vi",
        random=["~ 1 | study/es", "~ 1 | lab"],
        test="t",
        dfs="contain",
    )
    assert f"d = {res.core.beta[0]:.3f}" in md


def _run_report(toml: Path, out: Path) -> tuple[int, str]:
    import contextlib
    import io

    from mlmeta.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", str(toml), "--out", str(out), "--quiet"])
    return code, err.getvalue()


def test_report_of_an_inner_outer_model_has_every_parameter_with_its_profile_ci(tmp_path):
    # regression: a model with only '~ inner | outer' terms had no heterogeneity section at
    # all (no tau2, rho, I², profile CIs or LRTs), and its R code crashed the report (vcalc obs)
    ex = load_example("ishak2007")
    ex.data.to_csv(tmp_path / "ishak.csv", index=False)
    ex.matrices["V"].to_csv(tmp_path / "ishak_V.csv", index=False)
    toml = tmp_path / "a.toml"
    toml.write_text(
        'title = "DBS"\n[data]\nfile = "ishak.csv"\nstudy = "study"\n'
        '[effect]\nyi = "yi"\nvi = "vi"\n'
        '[model]\nrandom = "~ time | study"\nstruct = "AR"\nV = "ishak_V.csv"\n'
        'test = "t"\ndfs = "contain"\n'
        "[analyses]\nprofile = true\nlrt = true\n",
        encoding="utf-8",
    )
    code, err = _run_report(toml, tmp_path / "rep")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    res = mlmeta.rma_mv(
        ex.data,
        "yi",
        V=ex.matrices["V"],
        random="~ time | study",
        struct="AR",
        test="t",
        dfs="contain",
    )
    prof = res.profile_ci().table
    t2, rho = prof.loc["tau2"], prof.loc["rho"]
    i2 = res.i2().levels["tau2"]
    assert (
        f"| tau2 | 46 | {t2['estimate']:.4f} [{t2['ci_lb']:.4f}, {t2['ci_ub']:.4f}] | {i2:.1f}% |"
    ) in md
    assert f"| rho | 46 | {rho['estimate']:.3f} [{rho['ci_lb']:.3f}, {rho['ci_ub']:.3f}] |  |" in md
    lrt = res.lrt_drop().table.iloc[0]
    assert f"| ~ time \\| study | {lrt['LRT']:.3f} | 2 | < .001 |" in md
    assert "each random-effects term was tested with a likelihood-ratio test" in md
    assert "V <- matrix(0, nrow(dat), nrow(dat))" in md  # the R code of a known V


@pytest.mark.slow
def test_multivariate_example_report_runs(tmp_path):
    toml = Path(__file__).parents[1] / "examples" / "structures" / "multivar_labs.toml"
    code, err = _run_report(toml, tmp_path / "rep")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    for name in ("tau2[anx]", "tau2[dep]", "tau2[str]", "rho[anx-dep]", "gamma2", "phi"):
        assert f"| {name} | " in md
    assert "| ~ outcome \\| study | " in md and "| ~ outcome \\| lab | " in md
    assert "With CR2 cluster-robust inference (16 clusters by lab" in md
    # the R code's V: each effect size its own observation (without obs vcalc gives a
    # singular V, one observation per study)
    assert "V <- vcalc(vi, cluster = study, obs = seq_len(nrow(dat)), rho = 0.5, data = dat)" in md


def test_forest_of_structured_models_names_the_model_and_its_prediction_interval():
    # regression: a model with only '~ inner | outer' terms was drawn as an "Equal-effects
    # model" without prediction interval (data.random, the nesting, is empty for it)
    from mlmeta.plots.forestplot import _prepare

    kw = dict(
        level="effect",
        transf=None,
        labels=None,
        study_labels=None,
        sort=False,
        digits=2,
        fontsize=8.0,
        show_weights=True,
        refline=0.0,
        xlim=None,
    )
    ex = load_example("ishak2007")
    ar = mlmeta.rma_mv(ex.data, "yi", V=ex.matrices["V"], random="~ time | study", struct="AR")
    s = _prepare(ar, **kw)["summary"]
    pr = ar.predict()
    assert s.name == "Multilevel model"
    assert s.pi == pytest.approx((pr.pi_lb[0], pr.pi_ub[0]), rel=1e-12)
    mv = mlmeta.rma_mv(
        load_example("multivar_labs").data,
        "yi",
        "vi",
        random=["~ outcome | study", "~ outcome | lab"],
        struct=["UN", "CS"],
    )
    s = _prepare(mv, **kw)["summary"]
    assert s.name == "Multilevel model" and s.pi is None  # one PI per outcome, not one
