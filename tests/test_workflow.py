"""Workflow functions checked against R (scripts/make_workflow_reference.R): HTZ Wald tests of
several coefficients, Egger with CR2, PET-PEESE, the integral back-transform, model comparison
with ML refits; and behaviours: I2 confidence intervals from the profile limits, flat-profile
and boundary flags, fixing components from the command line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import HERE, REF, compare

from mlmeta import rma_mv
from mlmeta.analyses.heterogeneity import i2
from mlmeta.analyses.lrt import anova
from mlmeta.analyses.profile import check_profile_shape
from mlmeta.errors import FitWarning
from mlmeta.pubbias.egger import pet_peese

W = json.loads((HERE / "fixtures" / "workflow" / "workflow.json").read_text())
REL, ABS = 1e-5, 1e-7


@pytest.fixture(scope="module")
def alliance():
    return pd.read_csv(REF / "data" / "alliance_like.csv")


@pytest.fixture(scope="module")
def konst():
    return pd.read_csv(REF / "data" / "konstantopoulos2011.csv")


def fit(d, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rma_mv(d, test=kw.pop("test", "t"), dfs=kw.pop("dfs", "contain"), **kw)


def test_htz_wald_test_of_two_coefficients(alliance):
    res = fit(alliance, random="study/es", mods="~ treatment")
    # one treatment level has few studies: its Satterthwaite df is below 4, which is flagged
    with pytest.warns(FitWarning, match="few clusters for robust inference"):
        rb = res.robust(btt=["treatmentintegrative", "treatmentother"])
    e = W["htz_treatment_2_3"]
    assert not compare(
        [e["Fstat"], e["df_num"], e["df_denom"], e["p_val"]],
        [rb.QM, rb.QM_df[0], rb.QM_df[1], rb.QMp],
        REL,
        ABS,
    )


def test_egger_with_cr2(alliance):
    res = fit(alliance, random="study/es")
    eg = res.egger(robust=True)
    e = W["egger_cr2"]
    assert not compare(e, {"coef": eg.coef, **eg.robust}, REL, ABS)


def test_pet_peese(konst):
    res = fit(konst, random="district/school")
    tab = pet_peese(res)
    for name in ("pet", "peese"):
        got = tab.loc[name.upper()].to_dict()
        assert not compare(W[name], got, REL, ABS), name


def test_integral_back_transform(alliance):
    res = fit(alliance, random="study/es", measure="ZCOR")
    got = res.predict(transf="ztor_int").to_dict()
    e = W["predict_ztor_int"]
    assert not compare(e, got, REL, ABS)
    # the integral back-transform is closer to 0 than tanh of the mean
    assert abs(got["pred"]) < abs(np.tanh(res.core.beta[0]))


def test_anova_refits_by_ml_when_fixed_effects_differ(alliance):
    full = fit(alliance, random="study/es", mods="~ rater")
    red = fit(alliance, random="study/es")
    a = anova(full, red)
    assert a.refitted_ml and "refitted by ML" in a.note
    e = W["anova_rater_ml"]
    got = {
        "LRT": a.LRT,
        "df": a.df,
        "pval": a.pval,
        "AIC": list(a.table["AIC"]),
        "BIC": list(a.table["BIC"]),
        "AICc": list(a.table["AICc"]),
        "logLik": list(a.table["logLik"]),
    }
    assert not compare(e, got, REL, ABS)


def test_anova_same_fixed_effects_keeps_reml(konst):
    full = fit(konst, random="district/school")
    red = fit(konst, random="district/school", sigma2=[None, 0.0])
    a = anova(full, red)
    assert not a.refitted_ml and a.df == 1
    assert a.LRT == pytest.approx(2 * (full.core.ll - red.core.ll), rel=1e-12)
    assert a.LRT == pytest.approx(full.lrt_drop().table["LRT"].iloc[1], rel=1e-9)


def test_i2_confidence_intervals_follow_the_profile_limits(konst):
    res = fit(konst, random="district/school")
    out = i2(res, ci=True)
    prof = res.profile_ci()
    tv = out.typical_v
    for j, name in enumerate(res.level_names):
        lo, hi = out.ci.loc[name, "ci_lb"], out.ci.loc[name, "ci_ub"]
        assert lo < out.levels.iloc[j] < hi
        s_lo = prof.table["ci_lb"].iloc[j]
        other = prof.others["ci_lb"][j].sum()
        assert lo == pytest.approx(100 * s_lo / (s_lo + other + tv), rel=1e-10)
    assert out.ci.loc["total", "ci_lb"] < out.total < out.ci.loc["total", "ci_ub"]


def test_flat_profile_is_flagged_when_levels_are_confounded(alliance):
    one = alliance.groupby("study", as_index=False).first()  # one effect size per study
    res = fit(one, random="study/es")
    d = res.diagnostics(profile=True)
    assert not d.trustworthy
    assert any("not identified separately" in w for w in d.warnings)
    msg = check_profile_shape(res, 1)
    assert msg is not None and "flat" in msg


def test_boundary_estimate_is_exactly_zero_and_reported():
    d = pd.read_csv(REF / "data" / "boundary.csv")
    res = fit(d, random="study/esid")
    assert res.core.sigma2[1] == 0.0
    assert "boundary 0" in res.diagnostics().verdict
    assert "boundary 0" in res.summary()


def test_cli_can_fix_variance_components(konst, capsys):
    from mlmeta.cli import main

    path = str(REF / "data" / "konstantopoulos2011.csv")
    code = main(
        [
            "fit",
            path,
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "district/school",
            "--sigma2",
            "NA,0",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    two = fit(konst, random="district/school", sigma2=[None, 0.0], test="z", dfs="residual")
    assert out["sigma2"][1] == 0.0
    assert out["sigma2"][0] == pytest.approx(two.core.sigma2[0], rel=1e-12)
    code = main(
        ["fit", path, "--yi", "yi", "--vi", "vi", "--random", "district/school", "--sigma2", "NA"]
    )
    assert code == 2
    assert (
        "--sigma2 has 1 value(s) but the model has 2 random-effect levels"
        in capsys.readouterr().err
    )


def test_predict_refuses_an_unseen_category(alliance):
    res = fit(alliance, random="study/es", mods="~ rater")
    got = res.predict(pd.DataFrame({"rater": ["patient", "observer"]}))
    np.testing.assert_allclose(got.pred, [res.core.beta[0] + res.core.beta[1], res.core.beta[0]])
    from mlmeta.errors import FormulaError

    with pytest.raises(
        FormulaError,
        match=r"moderator 'rater': category 'nurse' was not in the "
        r"data the model was fitted to \(categories: "
        r"observer, patient, therapist\)",
    ):
        res.predict(pd.DataFrame({"rater": ["nurse"]}))


@pytest.mark.parametrize("formula", list(W["formulas"]))
def test_formula_features_match_r_model_matrix(alliance, formula):
    res = fit(alliance, random="study/es", mods=formula, test="z", dfs="residual")
    e = W["formulas"][formula]
    assert list(res.coef_names) == e["coef_names"]
    got = {
        "coef_names": e["coef_names"],
        "beta": list(res.core.beta),
        "se": list(res.tests.se),
        "logLik": res.core.ll,
    }
    assert not compare(e, got, REL, ABS)


def test_profile_shape_check_runs_for_small_fits_and_says_when_it_is_skipped():
    rng = np.random.default_rng(7)  # SIMULATED data

    def data(k):
        return pd.DataFrame(
            {
                "study": np.repeat(np.arange(k // 4), 4),
                "es": np.arange(k),
                "yi": rng.normal(0.2, 0.3, k),
                "vi": rng.uniform(0.01, 0.05, k),
            }
        )

    small = fit(data(400), random="study/es")
    assert not any("profile likelihood was not checked" in n for n in small.diagnostics().notes)
    big = fit(data(2400), random="study/es")
    note = [n for n in big.diagnostics().notes if "profile likelihood was not checked" in n]
    assert note == [
        "the shape of the profile likelihood was not checked (k = 2400 effect "
        "sizes make its refits slow; diagnostics(profile=True) checks it, and the "
        "profile-likelihood CIs show it)"
    ]
    assert "not checked" not in " ".join(big.diagnostics(profile=True).notes)
    assert big.diagnostics(profile=True).trustworthy
