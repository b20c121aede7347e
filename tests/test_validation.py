"""Input validation through the Python API: every refusal is an InputError/FormulaError with a
pinned one-line message; non-fatal data issues are DataWarnings; formulas are data, not code."""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import mlmeta
from mlmeta.errors import DataWarning, FormulaError, InputError, MlmetaError, MlmetaWarning
from mlmeta.io import read_table
from mlmeta.io.formula import MAX_DEPTH, MAX_LENGTH, parse_formula
from mlmeta.io.prepare import prepare


@pytest.fixture()
def d() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    k = 12
    return pd.DataFrame(
        {
            "study": np.repeat([f"S{i}" for i in range(1, 7)], 2),
            "es": np.arange(1, k + 1),
            "yi": rng.normal(0.3, 0.2, k).round(3),
            "vi": rng.uniform(0.01, 0.05, k).round(4),
            "year": np.arange(2000, 2000 + k),
            "n": np.array([20, 25, 31, 40, 22, 27, 35, 50, 28, 33, 45, 60]),
            "type": list("abc") * 4,
            "x": rng.normal(size=k).round(3),
        }
    )


def fit(df, **kw):
    kw.setdefault("random", "study/es")
    return mlmeta.rma_mv(df, "yi", "vi", **kw)


def quiet_fit(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        return fit(df, **kw)


# ------------------------------------------------------------------------------------------------
# refused data: InputError with the message the command line prints
# ------------------------------------------------------------------------------------------------


def _set(df, col, pos, val):
    df = df.copy()
    if not isinstance(val, (int, float)) or isinstance(val, bool):
        df[col] = df[col].astype(object)
    df.loc[pos, col] = val
    return df


@pytest.mark.parametrize(
    "change,kw,msg",
    [
        (
            lambda d: _set(d, "vi", 6, -0.1),
            {},
            "column 'vi', row 7: sampling variance must be > 0, got -0.1",
        ),
        (
            lambda d: _set(d, "vi", 1, 0.0),
            {},
            "column 'vi', row 2: sampling variance must be > 0, got 0.0",
        ),
        (
            lambda d: _set(d, "yi", 2, "0.3a"),
            {},
            "column 'yi', row 3: value must be numeric, got '0.3a'",
        ),
        (
            lambda d: _set(d, "yi", 2, "0,3"),
            {},
            "column 'yi', row 3: value must be numeric, got '0,3' (a decimal comma?",
        ),
        (
            lambda d: _set(d, "vi", 3, np.inf),
            {},
            "column 'vi', row 4: value must be finite, got inf",
        ),
        (
            lambda d: _set(d, "yi", 8, "-inf"),
            {},
            "column 'yi', row 9: value must be finite, got -inf",
        ),
        (
            lambda d: d.assign(yi=[True, False] * 6),
            {},
            "column 'yi' must be numeric, got true/false values",
        ),
        (
            lambda d: _set(d, "study", 3, None),
            {},
            "random-effect column 'study', row 4: missing id; every effect size needs an id",
        ),
        (
            lambda d: d.assign(yi=np.nan),
            {},
            (
                "no rows left after dropping rows with missing values: all 12 rows have one "
                "(missing yi in 12)"
            ),
        ),
        (
            lambda d: d.iloc[:1],
            {"random": None},
            "1 effect size is too few to estimate 1 coefficient (intrcpt)",
        ),
        (
            lambda d: d.iloc[:3],
            {"mods": "~ year + x"},
            "3 effect sizes are too few to estimate 3 coefficients (intrcpt, year, x)",
        ),
        (lambda d: d.iloc[0:0], {}, "the data has no rows"),
        (
            lambda d: d.assign(z=0.0),
            {"mods": "~ 0 + z"},
            "moderator formula '~ 0 + z': coefficient 'z' is 0 in every row, so it cannot be estimated",
        ),
        (
            lambda d: d.assign(big=d["n"].astype(float) ** 30),
            {"mods": "~ x + big"},
            "coefficient 'big' reaches",
        ),
        (
            lambda d: d,
            {"random": "studdy/es"},
            (
                "random-effect column 'studdy' not found in the data (columns: study, es, yi, vi, year, "
                "n, type, x); did you mean 'study'?"
            ),
        ),
        (lambda d: d, {"random": "study/study"}, "a column appears twice in the nesting"),
        (
            lambda d: d,
            {"random": "x | study"},
            "a random-effects formula starts with '~', e.g. '~ 1 | study/es'",
        ),
        (
            lambda d: d,
            {"level": 150},
            "level must be a percentage between 1 and 100, e.g. 95; got 150",
        ),
        (
            lambda d: d,
            {"level": 0.95},
            "level is a percentage: write 95 for a 95% interval; got 0.95",
        ),
        (lambda d: d, {"method": "FOO"}, "method must be one of REML, ML; got 'FOO'"),
        (
            lambda d: d.set_axis(["study", "es", "yi", "vi", "year", "n", "yi", "x"], axis=1),
            {},
            "column 'yi' appears more than once in the data",
        ),
    ],
)
def test_refused_data(d, change, kw, msg):
    df = change(d)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match=re.escape(msg)):
            fit(df, **kw)
    assert not [w for w in rec if issubclass(w.category, MlmetaWarning)], (
        "a refused input must not warn first"
    )


@pytest.mark.parametrize(
    "change,mods,kept,msg",
    [
        (
            lambda d: d.assign(year=2001),
            "~ year + type",
            ["intrcpt", "typeb", "typec"],
            (
                "moderator formula '~ year + type': redundant predictors dropped from the model, as "
                "metafor does: 'year' (constant, 2001 in every row, so it is the intercept again)"
            ),
        ),
        (
            lambda d: d.assign(y2=2 * d["year"] - 4000),
            "~ year + y2",
            ["intrcpt", "year"],
            (
                "moderator formula '~ year + y2': redundant predictors dropped from the model, as metafor "
                "does: 'y2' (collinear with 'intrcpt', 'year')"
            ),
        ),
        (
            lambda d: d.assign(t2=d["type"].map({"a": "p", "b": "q", "c": "r"})),
            "~ type + t2",
            ["intrcpt", "typeb", "typec"],
            (
                "moderator formula '~ type + t2': redundant predictors dropped from the model, as metafor "
                "does: 't2q' (collinear with 'typeb'); 't2r' (collinear with 'typec')"
            ),
        ),
        (
            lambda d: d.assign(z=0.0),
            "~ year + z",
            ["intrcpt", "year"],
            (
                "moderator formula '~ year + z': redundant predictors dropped from the model, as metafor "
                "does: 'z' (0 in every row)"
            ),
        ),
    ],
)
def test_redundant_moderators_dropped_with_a_warning(d, change, mods, kept, msg):
    """metafor's rma.mv drops redundant predictors ("Redundant predictors dropped from the
    model.") and fits the rest; so does mlmeta, naming each dropped column and why."""
    df = change(d)
    with pytest.warns(DataWarning, match="^" + re.escape(msg) + "$"):
        res = fit(df, mods=mods)
    assert list(res.coef_names) == kept
    ref = quiet_fit(
        df,
        mods="~ "
        + " + ".join(
            {"typeb": "type", "typec": "type", "year": "year"}[c] for c in dict.fromkeys(kept[1:])
        ),
    )
    np.testing.assert_allclose(res.beta.to_numpy(), ref.beta.to_numpy(), rtol=1e-10)


def test_missing_yi_column_did_you_mean(d):
    with pytest.raises(
        InputError,
        match=re.escape(
            "yi column 'Yi' not found in the data "
            "(columns: study, es, yi, vi, year, n, type, "
            "x); did you mean 'yi'?"
        ),
    ):
        mlmeta.rma_mv(d, "Yi", "vi")


def test_index_labels_name_rows(d):
    df = _set(d, "vi", 6, -0.1).set_index(pd.Index([f"r{i}" for i in range(12)]))
    with pytest.raises(InputError, match=re.escape("column 'vi', row r6: sampling variance")):
        fit(df)


def test_robust_with_fewer_clusters_than_coefficients(d):
    df = d.iloc[:7].assign(study=["S1", "S1", "S2", "S2", "S3", "S3", "S3"])
    res = quiet_fit(df, random="study", mods="~ year + x + n")
    with pytest.raises(
        InputError,
        match=re.escape(
            "robust inference needs more clusters than coefficients: 3 clusters for 4 coefficients"
        ),
    ):
        res.robust()


# ------------------------------------------------------------------------------------------------
# non-fatal issues: DataWarning, counted
# ------------------------------------------------------------------------------------------------


def test_dropped_rows_are_counted_and_announced(d):
    df = _set(_set(d, "yi", 2, np.nan), "x", 7, np.nan)
    with pytest.warns(
        DataWarning,
        match=re.escape("2 of 12 rows dropped for missing values: row 3 (yi), row 8 (x)"),
    ):
        res = fit(df, mods="~ x")
    assert res.data.dropped == ("row 3", "row 8")
    assert res.to_dict()["rows_dropped"] == 2 and res.to_dict()["k_all"] == 12
    assert res.k == 10


def test_unused_categorical_level_is_left_out(d):
    df = d.assign(type=pd.Categorical(d["type"], categories=["a", "b", "c", "z"]))
    with pytest.warns(
        DataWarning,
        match=re.escape("moderator 'type': level 'z' has no rows, so it gets no coefficient"),
    ):
        res = fit(df, mods="~ type")
    assert res.coef_names == ("intrcpt", "typeb", "typec")


def test_level_only_in_dropped_rows(d):
    df = d.copy()
    df.loc[[2, 5, 8, 11], "yi"] = np.nan  # every 'c'
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fit(df, mods="~ factor(type)")
    msgs = [str(w.message) for w in rec if w.category is DataWarning]
    assert msgs[0].startswith("4 of 12 rows dropped for missing values: row 3 (yi), row 6 (yi)")
    assert msgs[1] == (
        "moderator 'type': level 'c' has no rows (its rows were dropped for "
        "missing values), so it gets no coefficient"
    )
    assert res.coef_names == ("intrcpt", "factor(type)b")


def test_rows_sharing_every_id(d):
    big = pd.concat(
        [d, d.assign(study=d["study"] + "b"), d.assign(study=d["study"] + "c")], ignore_index=True
    )
    big["es"] = np.arange(1, 37)
    big.loc[[3, 9, 10], "es"] = [3, 9, 9]  # S2: 3, 3; S5: 9, 9; S6: 9, 12
    with pytest.warns(
        DataWarning,
        match=re.escape(
            "2 rows share every random-effect id (study/es) with an earlier row: row 4 repeats "
            "row 3 (study='S2', es=3); row 10 repeats row 9 (study='S5', es=9); metafor accepts "
            "this, but a repeated 'es' id is usually a coding mistake"
        ),
    ) as rec:
        res = fit(big)
    assert res.k == 36
    # row 11 (S6, es 9) does not repeat row 9 (S5, es 9): ids are nested
    assert len([w for w in rec if "share" in str(w.message)]) == 1


def test_grouping_inner_level_is_not_flagged(d):
    # several rows per inner group on purpose (district/school-like): a valid model
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        res = fit(d.assign(es=[1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]))
    assert list(res.n_levels) == [6, 6]


def test_rows_sharing_ids_counts_only_within_nesting(d):
    # the same es id in different studies is not a repeat
    df = d.assign(es=[1, 2] * 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        fit(df)


def test_single_random_level_repeated_ids_are_not_flagged(d):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        fit(d, random="study")


def test_single_study_is_fitted_with_a_warning(d):
    df = d.iloc[:6].assign(study="S1")
    with pytest.warns(
        DataWarning,
        match=re.escape(
            "random-effect level 'study' has a single group ('S1'), so its variance component "
            "is not identified"
        ),
    ):
        res = fit(df)
    assert res.k == 6 and res.n_levels[0] == 1


def test_moderator_with_a_typo_is_refused(d):
    df = _set(d, "year", 4, "2004a")
    with pytest.raises(
        InputError,
        match=re.escape(
            "moderator 'year', row 5: value '2004a' is not a number, but most values of 'year' "
            "are, so 'year' would be treated as categorical"
        ),
    ):
        fit(df, mods="~ year")
    res = quiet_fit(df, mods="~ factor(type) + x")  # not used: no complaint
    assert res.k == 12


def test_numbers_stored_as_text_are_noted(d):
    df = d.assign(year=["2001", "2002", "2003"] * 4)
    with pytest.warns(
        DataWarning,
        match=re.escape(
            "moderator 'year' holds numbers stored as text; it is treated as categorical (3 "
            "levels); convert it to numbers for a continuous moderator, or write factor(year) "
            "to keep it categorical"
        ),
    ):
        res = fit(df, mods="~ year")
    assert res.coef_names == ("intrcpt", "year2002", "year2003")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        fit(df, mods="~ factor(year)")


def test_prepare_warns_once_for_clean_data(d):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MlmetaWarning)
        md = prepare(d, "yi", "vi", "study/es", "~ year + factor(type)")
    assert md.dropped == () and md.coef_names == (
        "intrcpt",
        "year",
        "factor(type)b",
        "factor(type)c",
    )


# ------------------------------------------------------------------------------------------------
# formulas are data, not code
# ------------------------------------------------------------------------------------------------


INJECTIONS = [
    '~ __import__("os").system("touch {p}")',
    "~ __import__(os)",
    "~ x.__class__",
    "~ x.__class__.__bases__",
    "~ __builtins__",
    "~ I(__import__)",
    "~ {{__import__('os').system('touch {p}')}}",
    "~ I(open)",
    "~ eval(x)",
    "~ exec(x)",
    "~ getattr(x, y)",
    "~ I(lambda: x)",
    "~ I([x for x in x])",
    "~ log(x, x)",
    "~ log(*x)",
    "~ log(**x)",
    "~ C(type, x)",
    "~ x + `__import__`",
    "~ \uff45\uff56\uff41\uff4c(x)",  # fullwidth 'eval': Python would NFKC-normalise it
    "~ I(__\uff49\uff4d\uff50\uff4f\uff52\uff54__)",
]


@pytest.mark.parametrize("formula", INJECTIONS)
def test_injection_is_refused_without_side_effects(d, tmp_path, formula):
    target = tmp_path / "pwned"
    text = formula.format(p=target)
    before = d.copy()
    with pytest.raises(FormulaError):
        fit(d, mods=text)
    assert not target.exists()
    pd.testing.assert_frame_equal(d, before)  # e.g. log(x, out) must not write into x


@pytest.mark.parametrize(
    "formula,msg",
    [
        ('~ I("a")', "character '\"' at position 5 is not allowed (strings are not supported"),
        ("~ I('a')", 'character "\'" at position 5 is not allowed (strings are not supported'),
        (
            "~ poly(year, degree=2)",
            (
                "character '=' at position 20 is not allowed (keyword arguments "
                "are not supported; e.g. write poly(x, 2))"
            ),
        ),
        ("~ I(lambda: year)", "column 'lambda' not found in the data"),
        ("~ year[0]", "character '[' at position 7 is not allowed (subscripts are not supported)"),
        ("~ {year}", "character '{' at position 3 is not allowed (Python code blocks"),
        ("~ year %in% type", "character '%' at position 8 is not allowed"),
        ("~ .", "character '.' at position 3 is not allowed ('.' for all columns is not supported"),
        ("~ year.real", "attribute access 'year.real' is not allowed"),
        ("~ type.__class__", "name 'type.__class__' is not allowed"),
        ("~ __builtins__", "name '__builtins__' is not allowed"),
        ("~ log(year)(x)", "calling the result of log() is not allowed"),
        ("~ log(*year)", "argument unpacking '*' at position 7 is not allowed"),
        ("~ log(**year)", "argument unpacking '**' at position 7 is not allowed"),
        ("~ log(year, x)", "log() takes one argument"),
        ("~ I(year, x)", "I() takes one argument"),
        ("~ factor(year + 1)", "factor() takes one column name, e.g. factor(type)"),
        (
            "~ C(type, x)",
            (
                "the contrast of C() must be Treatment or Treatment(\"level\"), got 'x' "
                "at position 11"
            ),
        ),
        ("~ C(year + 1)", "C() takes a column name and optionally Treatment(reference level)"),
        ("~ log(poly(year, 2))", "poly() at position 7 cannot be used inside another function"),
        ("~ log(scale(year))", "scale() at position 7 cannot be used inside another function"),
        ("~ poly(year, 11)", "the degree of poly() must be a whole number from 1 to 10, got 11"),
        ("~ poly(year, 2.0)", "the degree of poly() must be a whole number from 1 to 10, got 2.0"),
        ("~ poly(year, 10**9)", "expected ')' to close poly( at position 16, got '**'"),
        ("~ (year + x)^1.5", "the exponent of '^' at position 13 must be a whole number >= 1"),
        ("~ (year + x)^x", "the exponent of '^' at position 13 must be a whole number >= 1"),
        ("~ (year + x)^(9*9)", "the exponent of '^' at position 13 must be a whole number >= 1"),
        ("~ (year + x)^2^3", "chained exponents at position 15 are not allowed"),
        ("~ I(year // 2)", "expected an argument of I() at position 11, got '/'"),
        ("~ I(year:x)", "expected ')' to close I( at position 9, got ':'"),
        ("~ a, b", "column 'a' not found"),
        ("~ year, x", "',' at position 7 is only allowed between the arguments of poly()"),
        (
            "~ foo(year)",
            (
                "function 'foo' is not allowed; allowed are factor, C, relevel, I, poly, log, log2, "
                "log10, exp, sqrt, abs, scale, center"
            ),
        ),
        (
            "~ Log(year)",
            (
                "function 'Log' is not allowed; allowed are factor, C, relevel, I, poly, log, log2, "
                "log10, exp, sqrt, abs, scale, center; did you mean 'log'?"
            ),
        ),
        ("~ (year + type", "unbalanced parentheses: '(' at position 3 is never closed"),
        ("~ year + type)", "unbalanced parentheses: ')' at position 14 has no matching '('"),
        ("~ log(year", "unbalanced parentheses: '(' at position 6 is never closed"),
        ("~ year | study", "'|' is not allowed here; give random effects with random="),
        ("~ year ~ x", "write it as '~ terms' with one '~'"),
        ("~", "no terms after '~'; write '~ 1' for the intercept-only model"),
        ("~ year +", "expected a term at the end of the formula"),
        ("~ year x", "missing operator before 'x' at position 8"),
        ("~ ()", "expected a term at position 4, got ')'"),
        ("~ log()", "expected an argument of log() at position 7, got ')'"),
        ("~ 2", "number 2 at position 3 is not a term"),
        ("~ 2*year", "number 2 at position 3 is not a term"),
        ("~ 0", "leaves no coefficient to estimate"),
        ("~ 0 + year - year", "leaves no coefficient to estimate"),
        ("~ I(year * 1" + "0" * 40 + ")", "at position 12 is too long"),
        ("~ " + "+".join(["year"] * 500), f"is too long (2501 characters; at most {MAX_LENGTH})"),
        (
            "~ " + "(" * (MAX_DEPTH + 1) + "year" + ")" * (MAX_DEPTH + 1),
            f"parentheses are nested too deeply (more than {MAX_DEPTH} levels)",
        ),
        ("~ I(" * 25 + "year" + ")" * 25, "parentheses are nested too deeply"),
        (
            "~ yaer",
            (
                "column 'yaer' not found in the data (columns: study, es, yi, vi, year, n, type, "
                "x); did you mean 'year'?"
            ),
        ),
        ("~ `nope`", "column 'nope' not found in the data"),
        ("~ TYPE", "did you mean 'type'?"),
        (
            "~ sqrt(-year)",
            (
                "coefficient 'sqrt(-year)' is nan in row 1 (e.g. log or sqrt of a value "
                "<= 0, or an overflow)"
            ),
        ),
        ("~ exp(year)", "coefficient 'exp(year)' is inf in row 1"),
        (
            "~ I(9^9^9^9)",
            (
                "could not be evaluated: Unable to evaluate factor `I(9 ** 9 ** 9 ** 9)`. "
                "[OverflowError"
            ),
        ),
        ("~ I(year ** 10 ** 10 ** 10)", "could not be evaluated"),
    ],
)
def test_formula_refusals(d, formula, msg):
    with pytest.raises(FormulaError, match=re.escape(msg)):
        fit(d, mods=formula)


def test_long_formula_is_shortened_in_the_message(d):
    text = "~ " + " + ".join(["year"] * 600)
    with pytest.raises(FormulaError) as ei:
        fit(d, mods=text)
    assert len(str(ei.value)) < 200


def test_interaction_power_is_fast(d):
    t0 = time.perf_counter()
    _, f = parse_formula("~ (year + x + type)^100", d)  # the exponent is capped at 3 terms
    assert f.columns[:4] == ("intrcpt", "year", "x", "typeb") and len(f.columns) == 12
    with pytest.raises(MlmetaError, match="too few to estimate"):
        quiet_fit(d, mods="~ (year + x + n + vi)^4")
    assert time.perf_counter() - t0 < 2


def test_interaction_expansion_is_bounded():
    cols = list("abcdefghijkl")
    df = pd.DataFrame({c: np.random.default_rng(1).normal(size=50) for c in cols})
    t0 = time.perf_counter()
    with pytest.raises(FormulaError, match=re.escape("expands to more than 500 terms")):
        parse_formula("~ " + "*".join(cols), df)
    with pytest.raises(FormulaError, match=re.escape("expands too many terms")):
        parse_formula("~ (a + b + c + d + e + f + g + h)^8", df)
    assert time.perf_counter() - t0 < 2


def test_integer_arithmetic_is_float(d):
    # integer literals and integer columns are floats: no huge Python ints, no wrap-around
    X, f = parse_formula("~ I(2^n) + I(n^3)", d)
    assert f.columns == ("intrcpt", "I(2^n)", "I(n^3)")
    np.testing.assert_allclose(X[:, 1], 2.0 ** d["n"].to_numpy(float))
    np.testing.assert_allclose(X[:, 2], d["n"].to_numpy(float) ** 3)
    X, _ = parse_formula("~ I(n^n)", d.iloc[:1])
    assert X[0, 1] == pytest.approx(20.0**20)
    X, f = parse_formula("~ log(n^2)", d)  # '^' is a power inside any function, as in R
    np.testing.assert_allclose(X[:, 1], np.log(d["n"].to_numpy(float) ** 2))


def test_factor_of_integer_column_keeps_r_names(d):
    _, f = parse_formula("~ factor(n) + n", d.iloc[:4])
    assert f.columns == ("intrcpt", "factor(n)25", "factor(n)31", "factor(n)40", "n")


def test_unicode_and_backquoted_names_work(d):
    df = d.rename(columns={"year": "année de publication", "x": "über", "study": "étude"})
    res = quiet_fit(df, random="étude/es", mods="~ `année de publication` + über + `type`")
    assert res.coef_names == ("intrcpt", "année de publication", "über", "typeb", "typec")
    df = d.rename(columns={"x": "class", "n": "lambda"})
    res = quiet_fit(df, mods="~ `class` + lambda")
    assert res.coef_names == ("intrcpt", "class", "lambda")


def test_predict_with_new_data_uses_the_same_encoding(d):
    res = quiet_fit(d, mods="~ n + factor(type)")
    new = pd.DataFrame({"n": [30, 40], "type": ["b", "c"]})
    p = res.predict(new)
    b = res.core.beta
    np.testing.assert_allclose(p.pred, [b[0] + 30 * b[1] + b[2], b[0] + 40 * b[1] + b[3]])
    with pytest.raises(FormulaError, match=re.escape("column 'type' not found in the new data")):
        res.predict(pd.DataFrame({"n": [30]}))


# ------------------------------------------------------------------------------------------------
# reading files
# ------------------------------------------------------------------------------------------------


def test_read_table_decimal_comma(tmp_path):
    p = tmp_path / "dc.csv"
    p.write_text(
        "study;yi;vi;note\nA;0,35;0,02;x, y\nB;-1,5;0,04;z\nC;2;0,03;w\n", encoding="utf-8"
    )
    with pytest.warns(
        DataWarning,
        match=re.escape("read ',' as the decimal mark in columns 'yi', 'vi' (e.g. '0,35' as 0.35)"),
    ):
        df = read_table(p)
    assert df["yi"].tolist() == [0.35, -1.5, 2.0]
    assert df["note"].tolist() == ["x, y", "z", "w"]  # text stays text


def test_read_table_mixed_decimal_marks_are_not_guessed(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("study;yi;vi\nA;0,35;0.02\nB;0.5;0.04\n", encoding="utf-8")
    df = read_table(p)
    with pytest.raises(
        InputError,
        match=re.escape("column 'yi', row 1: value must be numeric, got '0,35' (a decimal comma?"),
    ):
        mlmeta.rma_mv(df, "yi", "vi")


def test_read_table_delimiter_is_the_most_frequent(tmp_path):
    p = tmp_path / "semi.csv"
    p.write_text("study;yi;vi;note, with comma\nA;0.1;0.02;x\nB;0.2;0.03;y\n")
    df = read_table(p)
    assert list(df.columns) == ["study", "yi", "vi", "note, with comma"]


@pytest.mark.parametrize(
    "content,msg",
    [
        (b"", "is empty"),
        (b"\xef\xbb\xbf", "is empty"),
        (b"a,b\n", "has a header but no data rows"),
        (b"a,b,a\n1,2,3\n", "column 'a' appears more than once in the header (columns 1 and 3)"),
        (b"a,b, a\n1,2,3\n", "column 'a' appears more than once in the header (columns 1 and 3)"),
        (b"a,b\n1,\xe9\n", "is not UTF-8 text (line 2: byte 0xe9, '\xe9' in Latin-1)"),
        (b"PAR1xxxx", "is a Parquet file, not CSV text; give it the .parquet extension"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 50, "is an Excel 97-2003 workbook (.xls)"),
        (b"a,b\n1,2,3,4\n", "line 2 has 4 fields but the header has 2"),
        (b"a,b\n1,2\n\n3,4,5\n", "line 4 has 3 fields but the header has 2"),
        (b'a,b\n"1\n2",2\n3,4,5\n', "line 4 has 3 fields but the header has 2"),
    ],
)
def test_read_table_refusals(tmp_path, content, msg):
    p = tmp_path / "f.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(msg)):
        read_table(p)


def test_read_table_trailing_delimiters_and_short_rows(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,c\n1,2,3,,\n4,5\n,,\n")
    df = read_table(p)
    assert df.shape == (2, 3) and df["c"].isna().tolist() == [False, True]


def test_read_table_text_named_parquet(tmp_path):
    p = tmp_path / "f.parquet"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=re.escape("has the .parquet extension but is text")):
        read_table(p)
