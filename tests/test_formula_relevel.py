"""Formula features against R: reference levels (R's ``relevel``, formulaic's
``C(x, Treatment(...))``), R's order of text levels, and redundant columns dropped as metafor's
``rma.mv`` drops them (values from scripts/make_reference_workflow2.R, metafor 3.8-1 with a
tight optimiser)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmeta
from mlmeta.errors import DataWarning, FormulaError, MlmetaWarning
from mlmeta.io.formula import collation_key, r_levels
from mlmeta.io.prepare import redundant_columns

HERE = Path(__file__).parent
DATA = HERE / "fixtures" / "reference" / "data"
F = json.loads((HERE / "fixtures" / "workflow2" / "formula.json").read_text())
RANDOM = {
    "assink2016.csv": "study/esid",
    "konstantopoulos2011.csv": "district/school",
    "alliance_like.csv": "study/es",
}  # alliance_like: SIMULATED data
REL = 1e-5


def close(got, want, rel=REL, abs_=1e-8):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.abs(got - want) <= np.maximum(abs_, rel * np.abs(want))), (got, want)


@pytest.fixture(scope="module")
def data():
    return {name: pd.read_csv(DATA / name) for name in RANDOM}


@pytest.mark.parametrize("name", list(F["cases"]))
def test_formula_case_matches_metafor(data, name):
    cs = F["cases"][name]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = mlmeta.rma_mv(
            data[cs["data"]],
            "yi",
            "vi",
            random=RANDOM[cs["data"]],
            mods=cs["mods"],
            test=cs["test"],
            dfs=cs["dfs"],
        )
    e = cs["expect"]
    assert list(res.coef_names) == e["coef_names"]
    assert list(res.data.formula.dropped) == [str(c) for c in np.atleast_1d(cs["dropped"])]
    # R's model.matrix columns, in R's order, are the kept ones and the dropped ones
    full = [str(c) for c in np.atleast_1d(cs["all_columns"])]
    assert [c for c in full if c not in res.data.formula.dropped] == e["coef_names"]
    dropped_warnings = [
        str(w.message)
        for w in rec
        if issubclass(w.category, DataWarning) and "redundant predictors dropped" in str(w.message)
    ]
    assert len(dropped_warnings) == (1 if cs["warnings"] else 0)
    if cs["warnings"]:
        assert list(np.atleast_1d(cs["warnings"])) == [
            "Redundant predictors dropped from the model."
        ]
        for col in np.atleast_1d(cs["dropped"]):
            assert repr(str(col)) in dropped_warnings[0]
    close(res.core.beta, e["beta"])
    close(res.tests.se, e["se"])
    close(res.tests.stat, e["stat"])
    close(res.tests.pval, e["pval"], abs_=1e-10)
    close(res.core.sigma2, e["sigma2"])
    close(res.logLik, e["logLik"])
    close(res.QM, e["QM"])
    close(res.QMp, e["QMp"], abs_=1e-10)
    if cs["test"] == "t":
        close(res.tests.df, e["df"])
        assert res.QM_df[1] == pytest.approx(e["QM_df"][1])
    close(res.core.vcov, e["vcov"], abs_=1e-10)


def test_treatment_contrast_is_relevel(data):
    """``C(x, Treatment("b"))`` is R's ``relevel(x, ref = "b")`` under the name of its own term."""
    d = data["assink2016.csv"]
    e = F["cases"]["assink_relevel"]["expect"]
    for mods, term in [
        ('~ C(deltype, Treatment("general"))', 'C(deltype, Treatment("general"))'),
        (
            "~ C(deltype, Treatment(reference = 'general'))",
            'C(deltype, Treatment(reference = "general"))',
        ),
        ('~ relevel(deltype, "general")', 'relevel(deltype, "general")'),
        ("~ relevel(deltype, 2)", "relevel(deltype, 2)"),
    ]:
        res = mlmeta.rma_mv(d, "yi", "vi", random="study/esid", mods=mods)
        assert res.coef_names == ("intrcpt", f"{term}covert", f"{term}overt")
        close(res.core.beta, e["beta"])
        close(res.tests.se, e["se"])


def test_treatment_without_reference_is_the_default_coding(data):
    d = data["assink2016.csv"]
    a = mlmeta.rma_mv(d, "yi", "vi", random="study/esid", mods="~ C(deltype, Treatment)")
    b = mlmeta.rma_mv(d, "yi", "vi", random="study/esid", mods="~ factor(deltype)")
    assert (
        a.coef_names
        == b.coef_names
        == ("intrcpt", "factor(deltype)general", "factor(deltype)overt")
    )
    np.testing.assert_allclose(a.core.beta, b.core.beta, rtol=1e-12)


def test_numeric_reference_level_of_treatment_is_a_value():
    d = pd.DataFrame(
        {
            "study": np.repeat(np.arange(8), 2),
            "es": np.arange(16),
            "yi": np.linspace(-0.3, 0.5, 16),
            "vi": np.full(16, 0.02),
            "dose": [10, 20, 40] * 5 + [20],
        }
    )
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ C(dose, Treatment(40))")
    assert res.coef_names == ("intrcpt", "C(dose, Treatment(40))10", "C(dose, Treatment(40))20")
    # relevel's number is the position of the level (as in R): level 3 is 40
    rel = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ relevel(factor(dose), 3)")
    np.testing.assert_allclose(rel.core.beta, res.core.beta, rtol=1e-12)


def test_prediction_with_a_new_reference_level(data):
    d = data["assink2016.csv"]
    res = mlmeta.rma_mv(
        d, "yi", "vi", random="study/esid", mods='~ relevel(deltype, ref = "general") + year'
    )
    new = pd.DataFrame({"deltype": ["covert", "general", "overt"], "year": [0.0, 1.0, 2.0]})
    X = res.data.formula.design(new)
    np.testing.assert_array_equal(X, [[1, 1, 0, 0], [1, 0, 0, 1], [1, 0, 1, 2]])
    pred = res.predict(new).pred
    np.testing.assert_allclose(pred, X @ res.core.beta)


def test_prediction_uses_the_kept_columns_only(data):
    """The columns dropped at fit time are dropped from new data's design as well."""
    d = data["assink2016.csv"]
    with pytest.warns(DataWarning):
        res = mlmeta.rma_mv(d, "yi", "vi", random="study/esid", mods="~ year * deltype")
    new = pd.DataFrame({"deltype": ["covert", "general", "overt"], "year": [2.5, 1.0, -6.5]})
    X = res.data.formula.design(new)
    assert X.shape == (3, 5)
    np.testing.assert_array_equal(X[2], [1, -6.5, 0, 1, 0])
    np.testing.assert_allclose(res.predict(new).pred, X @ res.core.beta)


@pytest.mark.parametrize(
    "mods,msg",
    [
        (
            '~ relevel(deltype, ref = "none")',
            (
                "the reference level 'none' of relevel(deltype, ref = \"none\") is not a category of the "
                "column (categories: covert, general, overt)"
            ),
        ),
        (
            "~ relevel(deltype, 4)",
            (
                "relevel(deltype, 4) asks for level number 4, but the column has 3 categories "
                "(covert, general, overt)"
            ),
        ),
        (
            '~ C(deltype, Treatment("x"))',
            "the reference level 'x' of C(deltype, Treatment(\"x\")) is not a category of the column",
        ),
        (
            '~ relevel(deltype, level = "general")',
            "unknown argument 'level' at position 20; write ref = \"level\"",
        ),
        (
            "~ relevel(deltype)",
            'relevel() takes a column and a reference level, e.g. relevel(type, ref = "b")',
        ),
        (
            "~ relevel(deltype, ref = year)",
            (
                'relevel() takes the reference level as a string or a number, e.g. relevel(type, ref = "b"), '
                "got 'year' at position 26"
            ),
        ),
        (
            "~ C(deltype, Sum)",
            "the contrast of C() must be Treatment or Treatment(\"level\"), got 'Sum' at position 14",
        ),
        ('~ C(deltype, Sum("general"))', "character '\"' at position 18 is not allowed"),
        ('~ log(relevel(deltype, "a"))', "relevel() at position 7 cannot be used inside another"),
        (
            '~ I("general")',
            "character '\"' at position 5 is not allowed (strings are not supported",
        ),
        (
            '~ year + "general"',
            "character '\"' at position 10 is not allowed (strings are not supported",
        ),
        ('~ relevel(deltype, ref == "b")', "character '=' at position 24 is not allowed"),
    ],
)
def test_reference_level_refusals(data, mods, msg):
    with pytest.raises(FormulaError, match=re.escape(msg)):
        mlmeta.rma_mv(data["assink2016.csv"], "yi", "vi", random="study/esid", mods=mods)


def test_text_levels_in_r_order():
    """R's factor() sorts text by the locale's collation (ICU), not by code point."""
    words = [
        "WAI",
        "other",
        "HAq",
        "CALPAS",
        "a",
        "A",
        "b",
        "B",
        "_x",
        "x y",
        "x-y",
        "xy",
        "10",
        "9",
        "é",
        "e",
        "f",
    ]
    # R 4.2: sort(c(...)) in a C.UTF-8 session with ICU
    r_sorted = [
        "_x",
        "10",
        "9",
        "a",
        "A",
        "b",
        "B",
        "CALPAS",
        "e",
        "é",
        "f",
        "HAq",
        "other",
        "WAI",
        "x y",
        "x-y",
        "xy",
    ]
    assert sorted(words, key=collation_key) == r_sorted
    assert r_levels(pd.Series(words)) == tuple(r_sorted)
    assert r_levels(pd.Series([3, 1, 2, 1])) == (1, 2, 3)
    cat = pd.Series(pd.Categorical(["b", "a"], categories=["b", "a"]))
    assert r_levels(cat) == ("b", "a")


def test_redundant_columns_follow_lm():
    rng = np.random.default_rng(1)
    x = rng.normal(size=20)
    X = np.column_stack([np.ones(20), x, 2 * x + 1, np.zeros(20), x**2])
    assert redundant_columns(X) == [2, 3]
    # a column that differs from a combination by far less than lm's tolerance is aliased, one
    # that differs by more is kept
    tiny = np.column_stack([np.ones(20), x, x + 1e-10 * rng.normal(size=20)])
    assert redundant_columns(tiny) == [2]
    small = np.column_stack([np.ones(20), x, x + 1e-4 * rng.normal(size=20)])
    assert redundant_columns(small) == []


def test_all_columns_redundant_is_refused(data):
    d = data["konstantopoulos2011.csv"].assign(z=0.0)
    with pytest.raises(
        mlmeta.InputError,
        match=re.escape(
            "moderator formula '~ 0 + z': coefficient 'z' is 0 in every row, so it cannot be "
            "estimated"
        ),
    ):
        mlmeta.rma_mv(d, "yi", "vi", random="district/school", mods="~ 0 + z")


def test_refit_keeps_the_dropped_columns_out(data):
    d = data["assink2016.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        res = mlmeta.rma_mv(d, "yi", "vi", random="study/esid", mods="~ year * deltype")
        ml = res.refit(method="ML")
    assert ml.coef_names == res.coef_names
