"""Wald tests of sets and linear combinations of coefficients against metafor 3.8-1's
``anova(fit, btt=)``/``anova(fit, X=)`` and clubSandwich 0.5.8's ``Wald_test`` (HTZ) and
``linear_contrast`` (CR2, Satterthwaite), values from scripts/make_reference_workflow2.R."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlmeta
from mlmeta.analyses.wald import resolve_btt, wald
from mlmeta.errors import InputError, MlmetaWarning

HERE = Path(__file__).parent
DATA = HERE / "fixtures" / "reference" / "data"
W = json.loads((HERE / "fixtures" / "workflow2" / "wald.json").read_text())
RANDOM = {
    "assink2016.csv": "study/esid",
    "konstantopoulos2011.csv": "district/school",
    "alliance_like.csv": "study/es",
}  # alliance_like: SIMULATED data
REL = 1e-5


def close(got, want, rel=REL, abs_=1e-9):
    got = np.asarray(got, dtype=float).ravel()
    want = np.asarray(want, dtype=float).ravel()
    assert got.shape == want.shape, (got, want)
    ok = np.abs(got - want) <= np.maximum(abs_, rel * np.abs(want))
    assert np.all(ok), (got, want)


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        for name, cs in W["cases"].items():
            d = pd.read_csv(DATA / cs["data"])
            out[name] = mlmeta.rma_mv(
                d,
                "yi",
                "vi",
                random=RANDOM[cs["data"]],
                mods=cs["mods"],
                test=cs["test"],
                dfs=cs["dfs"],
            )
    return out


def _btt(b):
    return [int(x) - 1 for x in np.atleast_1d(b)]  # metafor counts from 1


CASES = list(W["cases"])


@pytest.mark.parametrize("name", CASES)
def test_fit_matches(fits, name):
    res, e = fits[name], W["cases"][name]["fit"]
    assert list(res.coef_names) == list(np.atleast_1d(e["coef_names"]))
    close(res.core.beta, e["beta"])
    close(res.core.vcov, e["vcov"], abs_=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_btt_matches_metafor_anova(fits, name):
    res = fits[name]
    for b in W["cases"][name]["btt"]:
        t = res.wald(btt=_btt(b["btt"]))
        assert list(t.btt) == _btt(b["btt_used"])
        close(t.QM, b["QM"])
        close(t.QMp, b["QMp"], abs_=1e-12)
        assert t.QM_df[0] == b["QM_df"][0]
        if res.test == "t":
            assert t.QM_df[1] == pytest.approx(b["QM_df"][1])
        else:
            assert t.QM_df[1] is None


@pytest.mark.parametrize("name", CASES)
def test_pattern_matches_metafor_grep(fits, name):
    res = fits[name]
    for b in W["cases"][name]["pattern"]:
        t = mlmeta.anova(res, btt=b["pattern"])
        assert list(t.btt) == _btt(b["btt_used"])
        close(t.QM, b["QM"])
        close(t.QMp, b["QMp"], abs_=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_linear_combinations_match_metafor_anova_X(fits, name):
    res = fits[name]
    for x in W["cases"][name]["X"]:
        # a row of p - 1 values gets the intercept's 1 in front, in metafor and in wald()
        t = res.wald(X=x["X"])
        tab = t.table
        close(tab["estimate"], x["estimate"])
        close(tab["se"], x["se"])
        close(tab["stat"], x["stat"])
        close(tab["pval"], x["pval"], abs_=1e-12)
        if res.test == "t":
            close(tab["df"].astype(float), x["df"])
        if x["QM"] is None:
            assert np.isnan(t.QM) and np.isnan(t.QMp)
        else:
            close(t.QM, x["QM"])
            close(t.QMp, x["QMp"], abs_=1e-12)
            if res.test == "t":
                assert t.QM_df == (len(tab), pytest.approx(x["QM_df"][1]))


CR2 = [n for n in CASES if "cr2" in W["cases"][n]]


@pytest.mark.parametrize("name", CR2)
def test_cr2_btt_matches_clubsandwich_htz(fits, name):
    res = fits[name]
    for b in W["cases"][name]["cr2"]["btt"]:
        t = res.wald(btt=_btt(b["btt"]), vcov="CR2")
        close(t.QM, b["QM"])
        close(t.QM_df[1], b["QM_df"][1])
        close(t.QMp, b["QMp"], abs_=1e-12)
        # metafor's anova() on robust(fit, clubSandwich = TRUE) is the same test
        close(t.QM, b["metafor"]["QM"])
        # and the robust() path with btt agrees
        rob = res.robust(btt=_btt(b["btt"]))
        close(rob.QM, b["QM"])


@pytest.mark.parametrize("name", CR2)
def test_cr2_linear_combinations_match_clubsandwich(fits, name):
    res = fits[name]
    for x in W["cases"][name]["cr2"]["X"]:
        t = res.wald(X=x["X"], vcov="CR2")
        tab = t.table
        close(tab["estimate"], x["estimate"])
        close(tab["se"], x["se"])
        close(tab["df"], x["df"])
        close(tab["pval"], x["pval"], abs_=1e-12)
        close(tab["ci_lb"], x["ci_lb"])
        close(tab["ci_ub"], x["ci_ub"])
        close(tab["se"], x["metafor"]["se"])
        if x["QM"] is None:  # linearly dependent rows: no omnibus test (metafor's NA)
            assert np.isnan(t.QM) and np.isnan(t.QMp) and t.QM_df[1] is None
            continue
        close(t.QM, x["QM"])
        close(t.QM_df[1], x["QM_df"][1])
        close(t.QMp, x["QMp"], abs_=1e-12)
        close(t.QM, x["metafor"]["QM"])


def test_default_is_the_models_omnibus_test(fits):
    for res in fits.values():
        t = res.wald()
        close(t.QM, res.QM, rel=1e-12)
        close(t.QMp, res.QMp, rel=1e-10, abs_=1e-15)


def test_one_row_is_the_coefficient_test(fits):
    res = fits["alliance_phase_x_treatment_t"]
    for j in range(res.p):
        row = np.eye(res.p)[j]
        t = res.wald(X=row)
        close(t.table["stat"], res.tests.stat[j], rel=1e-12)
        close(t.table["pval"], res.tests.pval[j], rel=1e-10)
        close(t.table["ci_lb"], res.tests.ci_lb[j], rel=1e-12)
        r = res.wald(X=row, vcov="CR2")
        rob = res.robust()
        close(r.table["se"], rob.coefs["se"].iloc[j], rel=1e-8)
        close(r.table["df"], rob.coefs["df"].iloc[j], rel=1e-8)


def test_linear_combination_of_a_set_equals_the_set_test(fits):
    """Testing L b = 0 for rows spanning the same space as e_S gives the same QM."""
    res = fits["alliance_phase_x_treatment_z"]
    L = np.eye(res.p)[[5, 6, 7]]
    A = np.array([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0], [3.0, 0.0, 1.0]])
    for vcov in ("model", "CR2"):
        a = res.wald(btt=[5, 6, 7], vcov=vcov)
        b = res.wald(X=A @ L, vcov=vcov)
        close(b.QM, a.QM, rel=1e-8)
        close(b.QMp, a.QMp, rel=1e-7)
        if vcov == "CR2":
            close(b.QM_df[1], a.QM_df[1], rel=1e-8)


@settings(max_examples=25, deadline=None, database=None, derandomize=True)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=8, max_size=8), st.floats(0.1, 10))
def test_scaling_a_hypothesis_changes_nothing(fits, row, c):
    res = fits["alliance_phase_x_treatment_z"]
    row = np.asarray(row)
    if np.linalg.norm(row) < 1e-3:
        return
    a, b = res.wald(X=row), res.wald(X=c * row)
    close(b.table["stat"], a.table["stat"], rel=1e-9)
    close(b.QM, a.QM, rel=1e-9)


def test_rhs_shifts_the_hypothesis(fits):
    res = fits["konst_year_t_residual"]
    t = res.wald(X=[1, 1990], rhs=0.1)
    est = np.array([1, 1990]) @ res.core.beta - 0.1
    close(t.table["estimate"], est, rel=1e-12)
    assert t.table["hypothesis"].iloc[0] == "intrcpt + 1990*year = 0.1"


def test_hypothesis_text(fits):
    res = fits["assink_year_x_deltype_t"]
    t = res.wald(X=[[0, 0, 1, -1, 0], [0, 1, 0, 0, 1], [1, 2.5, 0, 0, 0]])
    assert list(t.table["hypothesis"]) == [
        "deltypegeneral - deltypeovert = 0",
        "year + year:deltypegeneral = 0",
        "intrcpt + 2.5*year = 0",
    ]
    text = str(t)
    assert "Hypotheses:" in text and "F(df1 = 3, df2 = 12)" in text
    d = t.to_dict()
    assert d["QM_df"] == [3, 12.0] and len(d["estimate"]) == 3


def test_resolve_btt():
    names = ["intrcpt", "year", "deltypegeneral", "deltypeovert", "year:deltypegeneral"]
    assert list(resolve_btt(names, "deltype")) == [2, 3, 4]
    assert list(resolve_btt(names, "^year$")) == [1]
    assert list(resolve_btt(names, ["year", 0])) == [0, 1]
    assert list(resolve_btt(names, 3)) == [3]


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"btt": "nothing"}, "btt: the pattern 'nothing' matches no coefficient"),
        ({"btt": ["nope"]}, "btt: 'nope' is not a coefficient"),
        ({"btt": [9]}, "btt: position 9 is out of range 0..4 (positions count from 0)"),
        ({"btt": [1.5]}, "btt: give coefficient names or 0-based positions; got 1.5"),
        ({"btt": "("}, "btt: '(' is not a valid pattern"),
        ({"btt": [1], "X": [1, 0, 0, 0, 0]}, "give either btt= (a set of coefficients) or X="),
        ({"X": [1, 0, 0]}, "X has 3 columns but the model has 5 coefficients"),
        ({"X": [[np.nan, 0, 0, 0, 0]]}, "X must hold finite numbers"),
        ({"X": [1, 0, 0, 0, 0], "rhs": [0, 1]}, "rhs has 2 values but 1 hypotheses are tested"),
        ({"X": [1, 0, 0, 0, 0], "vcov": "HC3"}, "vcov must be one of model, CR2; got 'HC3'"),
        ({"X": [1, 0, 0, 0, 0], "vcov": "CR2", "rhs": 1}, "rhs is not available with vcov='CR2'"),
        ({"X": [1, 0, 0, 0, 0], "cluster": "study"}, "cluster= applies to vcov='CR2'"),
    ],
)
def test_refusals(fits, kw, msg):
    with pytest.raises(InputError, match=re.escape(msg)):
        wald(fits["assink_year_x_deltype_t"], **kw)


def test_anova_of_two_models_refuses_btt(fits):
    res = fits["konst_year_t_residual"]
    with pytest.raises(InputError, match=re.escape("btt= and X= test the coefficients of one")):
        mlmeta.anova(res, res, btt=[1])
