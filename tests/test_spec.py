"""The model specification: one place for the level, rho, random terms and the default cluster,
and one refit path (``res.refit``) that keeps every setting, rho and fixed sigma2 included."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import mlmeta
from mlmeta.errors import FormulaError, InputError
from mlmeta.spec import ModelSpec, RandomTerm, check_rho, parse_random, to_fraction, to_percent


def exact(msg: str) -> str:
    return "^" + re.escape(msg) + "$"


# ---------------------------------------------------------------- level: one rule
@pytest.mark.parametrize("given,frac", [(95, 0.95), (90.0, 0.9), ("99", 0.99), (1.5, 0.015)])
def test_level_percent_to_fraction(given, frac):
    assert to_fraction(given) == pytest.approx(frac, rel=0, abs=1e-15)


@pytest.mark.parametrize(
    "bad,msg",
    [
        (0.95, "level is a percentage: write 95 for a 95% interval; got 0.95"),
        (1, "level is a percentage: write 100 for a 100% interval; got 1"),
        (100, "level must be a percentage between 1 and 100, e.g. 95; got 100"),
        (-5, "level must be a percentage between 1 and 100, e.g. 95; got -5"),
        (float("nan"), "level must be a percentage between 1 and 100, e.g. 95; got nan"),
        (True, "level must be a number (a percentage such as 95); got True"),
        ("x", "level must be a number (a percentage such as 95); got 'x'"),
    ],
)
def test_level_refused(bad, msg):
    with pytest.raises(InputError, match=exact(msg)):
        to_fraction(bad)


@given(st.floats(min_value=1.01, max_value=99.99))
def test_level_round_trip(pct):
    assert to_percent(to_fraction(pct)) == pytest.approx(pct, rel=1e-9)


def test_level_is_the_same_rule_in_api_cli_and_analysis_file(tmp_path, capsys):
    d = mlmeta.load_example("konstantopoulos2011").data
    with pytest.raises(InputError, match="level is a percentage"):
        mlmeta.rma_mv(d, "yi", "vi", random="district/school", level=0.95)
    from mlmeta.cli import main

    p = tmp_path / "d.csv"
    d.to_csv(p, index=False)
    assert main(["fit", str(p), "--yi", "yi", "--vi", "vi", "--level", "0.95"]) == 2
    assert "level is a percentage: write 95 for a 95% interval; got 0.95" in capsys.readouterr().err
    from mlmeta.io.analysis import AnalysisError, parse_analysis

    raw = {
        "data": {"file": str(p)},
        "effect": {"yi": "yi", "vi": "vi"},
        "model": {"random": "district/school", "level": 0.95},
    }
    with pytest.raises(AnalysisError, match="'model.level' is a percentage"):
        parse_analysis(raw, tmp_path / "a.toml")


def test_level_inside_is_a_fraction_and_printed_as_percent():
    d = mlmeta.load_example("konstantopoulos2011").data
    res = mlmeta.rma_mv(d, "yi", "vi", random="district/school", level=90)
    assert res.level == pytest.approx(0.9) and res.spec.level_percent == 90
    wide = mlmeta.rma_mv(d, "yi", "vi", random="district/school")
    assert (res.coefs["ci_ub"] - res.coefs["ci_lb"]).iloc[0] < (
        wide.coefs["ci_ub"] - wide.coefs["ci_lb"]
    ).iloc[0]
    assert "0.9%" not in res.summary() and "0.95%" not in wide.summary()


# ---------------------------------------------------------------- rho: one rule
@pytest.mark.parametrize("bad", [1, -1, 1.5, float("nan"), float("inf")])
def test_rho_outside_open_interval_refused(bad):
    with pytest.raises(InputError, match="rho must lie strictly between -1 and 1"):
        check_rho(bad)


def test_rho_nonnegative_working_model():
    with pytest.raises(
        InputError, match=exact("rho must be >= 0 for this working model; got -0.2")
    ):
        check_rho(-0.2, nonnegative=True)
    assert check_rho(0) == 0.0 and check_rho(None) is None


# ---------------------------------------------------------------- random terms
def test_parse_random_forms():
    assert parse_random("study/es") == (RandomTerm(("study", "es")),)
    assert parse_random("~ 1 | study/es") == parse_random("study/es")
    assert parse_random(["study/es"]) == parse_random("study/es")
    assert parse_random(None) == () == parse_random("none") == parse_random([])
    crossed = parse_random(["~ 1 | study/es", "~ 1 | lab"])
    assert [t.formula for t in crossed] == ["~ 1 | study/es", "~ 1 | lab"]
    un = parse_random("~ outcome | trial", struct="UN")
    assert un == (RandomTerm(("trial",), "outcome", "UN"),)
    assert parse_random("~ outcome | trial")[0].struct == "CS"  # metafor's default
    two = parse_random(["~ outcome | study", "~ outcome | lab"], struct=["un", "cs"])
    assert [t.struct for t in two] == ["UN", "CS"]


def test_list_of_plain_names_is_ambiguous():
    msg = (
        "random=['study', 'deltype'] is ambiguous: write random='study/deltype' for levels "
        "nested outer to inner, or random=['~ 1 | study', '~ 1 | deltype'] for crossed terms"
    )
    with pytest.raises(InputError, match=exact(msg)):
        parse_random(["study", "deltype"])
    d = mlmeta.load_example("assink2016").data
    with pytest.raises(InputError, match=exact(msg)):
        mlmeta.rma_mv(d, "yi", "vi", random=["study", "deltype"])


@pytest.mark.parametrize(
    "random,struct,msg",
    [
        (
            "~ outcome | trial",
            ["UN", "CS"],
            (
                "struct has 2 entries but the model has 1 '~ inner | outer' terms (give one per term, in "
                "order)"
            ),
        ),
        (
            "study/es",
            "UN",
            "struct='UN' applies to '~ inner | outer' terms, and the model has none",
        ),
        (
            "~ outcome | trial",
            "XYZ",
            "struct must be one of CS, HCS, UN, AR, HAR, ID, DIAG; got 'XYZ'",
        ),
        (
            "~ a + b | trial",
            None,
            (
                "random='~ a + b | trial': the left side of '|' must be 1 or one "
                "column name (e.g. '~ outcome | trial'); got 'a + b'"
            ),
        ),
        (
            "~ outcome | a/b",
            None,
            (
                "random='~ outcome | a/b': a '~ outcome | outer' term takes a "
                "single outer factor (nesting with '/' is for '~ 1 | a/b' terms)"
            ),
        ),
        (["~ 1 | lab", "~ 1 | lab"], None, "random: the term '~ 1 | lab' appears twice"),
    ],
)
def test_random_terms_refused(random, struct, msg):
    with pytest.raises(InputError, match=exact(msg)):
        parse_random(random, struct)


def test_spec_build_and_replace():
    spec = ModelSpec.build(random="study/es", rho=0.6, level=90, method="ml", test="T")
    assert (spec.method, spec.test, spec.level, spec.rho_cluster) == ("ML", "t", 0.9, "study")
    assert spec.cluster == "study" and spec.nesting == ("study", "es")
    assert spec.replace(rho=None).rho_cluster is None
    assert spec.replace(method="reml").method == "REML"
    with pytest.raises(InputError, match=exact("unknown model setting(s): colour")):
        spec.replace(colour="red")
    with pytest.raises(InputError, match=exact("rho_cluster= was given without rho=")):
        ModelSpec.build(random="study/es", rho_cluster="study")
    with pytest.raises(FormulaError, match="moderator formula must be a string"):
        ModelSpec.build(mods=3)  # type: ignore[arg-type]
    assert ModelSpec.build(mods="~ 1").mods is None
    with pytest.raises(InputError, match=exact("sigma2[2] must be a finite value >= 0; got -1")):
        ModelSpec.build(random="study/es", sigma2=[None, -1])


# ---------------------------------------------------------------- refit keeps the settings
@pytest.fixture(scope="module")
def che_fixed():
    """A CHE fit (rho = 0.6) with the effect-level component fixed: every refit must keep both."""
    d = mlmeta.load_example("alliance_like").data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlmeta.rma_mv(
            d,
            "yi",
            "vi",
            random="study/es",
            rho=0.6,
            sigma2=[None, 0.002],
            test="t",
            dfs="contain",
            measure="ZCOR",
            level=90,
        )
    return d, res


def _direct(d, **kw):
    base = {
        "random": "study/es",
        "rho": 0.6,
        "sigma2": [None, 0.002],
        "test": "t",
        "dfs": "contain",
        "measure": "ZCOR",
        "level": 90,
    }
    base.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlmeta.rma_mv(d, "yi", "vi", **base)


def test_refit_keeps_rho_and_fixed_sigma2(che_fixed):
    d, res = che_fixed
    r = res.refit(mods="~ phase")
    direct = _direct(d, mods="~ phase")
    assert r.rho == 0.6 and r.core.sigma2[1] == 0.002 and r.core.fixed[1]
    assert r.level == 0.9
    np.testing.assert_allclose(r.core.beta, direct.core.beta, rtol=1e-8)
    np.testing.assert_allclose(r.core.sigma2, direct.core.sigma2, rtol=1e-7)


def test_orchard_estimates_equal_the_moderator_table(che_fixed):
    """The orchard figure refits ~ phase; its drawn estimates are the table's subgroup estimates
    of the same model (rho = 0.6 and sigma2[2] = 0.002 kept)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, res = che_fixed
    ax = mlmeta.plots.orchard(res, "phase", transf="none")
    pts = next(c for c in ax.collections if c.get_gid() == "orchard-estimates")
    drawn = np.asarray(pts.get_offsets())[:, 0]
    plt.close(ax.figure)
    table = _direct(d, mods="~ 0 + phase")
    np.testing.assert_allclose(drawn, table.core.beta, rtol=1e-7)
    wrong = _direct(d, mods="~ 0 + phase", rho=None, sigma2=None)
    assert not np.allclose(drawn, wrong.core.beta, rtol=1e-4)


def test_lrt_and_profile_keep_rho(che_fixed):
    d, res = che_fixed
    lrt = res.lrt_drop().table
    assert list(lrt["dropped"]) == ["study"]  # the fixed component is not tested
    red = _direct(d, sigma2=[0.0, 0.002])
    assert lrt["logLik_reduced"].iloc[0] == pytest.approx(red.core.ll, rel=1e-10)
    prof = res.profile_ci(level=95).table
    assert np.isnan(prof["ci_lb"].iloc[1])  # fixed: no interval
    lb = prof["ci_lb"].iloc[0]
    if lb > 0:
        at = _direct(d, sigma2=[lb, 0.002])
        from mlmeta.core.dist import chi2_isf

        assert res.core.ll - at.core.ll == pytest.approx(chi2_isf(0.05, 1) / 2, abs=1e-6)


def test_loo_r2_egger_and_sweep_keep_rho(che_fixed):
    d, res = che_fixed
    loo = res.loo_cluster()
    first = loo["left_out"].iloc[0]
    direct = _direct(d[d["study"] != first].reset_index(drop=True))
    assert loo["beta"].iloc[0] == pytest.approx(direct.core.beta[0], rel=1e-7)
    mod = res.refit(mods="~ phase")
    null = _direct(d)
    r2 = mod.r2()
    assert r2.sigma2_null.iloc[0] == pytest.approx(null.core.sigma2[0], rel=1e-6)
    eg = res.egger()
    dd = d.assign(sei=np.sqrt(d["vi"]))
    direct_eg = _direct(dd, mods="~ sei")
    assert eg.coef == pytest.approx(direct_eg.core.beta[1], rel=1e-7)
    sweep = mlmeta.rho_sweep(res, rhos=[0.6])
    assert sweep["beta"].iloc[0] == pytest.approx(res.core.beta[0], rel=1e-8)
    assert sweep["sigma2_study/es"].iloc[0] == 0.002


def test_refit_to_rows_and_method(che_fixed):
    d, res = che_fixed
    keep = (d["study"] != d["study"].iloc[0]).to_numpy()
    sub = res.refit(rows=keep)
    assert sub.k == keep.sum() and sub.rho == 0.6
    ml = res.refit(method="ML", warm=False)
    assert ml.method == "ML" and ml.core.fixed[1] and ml.core.sigma2[1] == 0.002
    assert ml.core.ll == pytest.approx(_direct(d, method="ML").core.ll, rel=1e-10)


def test_results_keep_their_spec(che_fixed):
    _, res = che_fixed
    s = res.spec
    assert (s.rho, s.rho_cluster, s.sigma2, s.level, s.measure) == (
        0.6,
        "study",
        (None, 0.002),
        0.9,
        "ZCOR",
    )
    assert pd.Series(s.to_dict())["level"] == 90
