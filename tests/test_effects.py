"""Tests of mlmeta.effects against metafor 3.8-1.

The reference numbers in tests/fixtures/escalc/*.json come from scripts/make_escalc_reference.R
(R 4.2.2, metafor 3.8-1); R is not needed to run these tests.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmeta.effects import (
    MEASURES,
    convert,
    d_from_logor,
    d_from_r,
    escalc,
    get_measure,
    iarcsin,
    ilogit,
    logor_from_d,
    measure_names,
    r_from_d,
    r_from_f,
    r_from_t,
    register_measure,
    registry,
    rtoz,
    ztor,
    ztor_int,
)
from mlmeta.effects.transforms import exp as t_exp
from mlmeta.errors import DataWarning, InputError

FIXTURES = Path(__file__).parent / "fixtures"
ESCALC = FIXTURES / "escalc"
DATA = FIXTURES / "reference" / "data"

RTOL = 1e-10  # closed forms


def load(name: str) -> dict:
    with open(ESCALC / f"{name}.json") as fh:
        return json.load(fh)


def arr(values) -> np.ndarray:
    """JSON list (null = R's NA) -> float array with NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def escalc_cases() -> list:
    return [
        pytest.param(case, id=f"{name}-{case['name']}")
        for name in ("zcor", "cor", "smd", "or")
        for case in load(name)["cases"]
    ]


# cases where metafor 3.8-1 returns NA and mlmeta deliberately differs (documented in the notes)
RAISES = {("COR", "small_n")}
NA_WITH_WARNING = {("OR", "zero_cells_to_none")}


def run_case(case, **kw):
    return escalc(case["measure"], **case["args"], **case["options"], **kw)


# ------------------------------------------------------------------------------------------------
# fixtures: provenance
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["zcor", "cor", "smd", "or", "conversions", "ztor_int"])
def test_fixture_provenance(name):
    fx = load(name)
    assert fx["metafor"] == "3.8.1"
    assert fx["R"].startswith("R version 4.2.2")
    assert fx["generator"] == "scripts/make_escalc_reference.R"
    assert fx["cases"]


# ------------------------------------------------------------------------------------------------
# escalc against metafor
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", escalc_cases())
def test_escalc_matches_metafor(case):
    key = (case["measure"], case["name"])
    yi, vi = arr(case["yi"]), arr(case["vi"])
    if key in RAISES:
        # metafor: vi = NA for n <= 3 (also for COR); mlmeta refuses with a message
        assert np.isnan(vi).any()
        with pytest.raises(InputError, match="sample size must be greater than 3 for COR"):
            run_case(case)
        return
    if key in NA_WITH_WARNING:
        assert case["metafor_warnings"]
        with pytest.warns(DataWarning, match="infinite or undefined"):
            got = run_case(case)
    else:
        assert not np.isnan(yi).any() and not np.isnan(vi).any()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if case["name"] == "boundary_r":
                warnings.simplefilter("ignore", DataWarning)
            got = run_case(case)
    assert list(got.columns) == ["yi", "vi"]
    assert len(got) == len(yi)
    np.testing.assert_array_equal(np.isnan(got["yi"]), np.isnan(yi))
    np.testing.assert_array_equal(np.isnan(got["vi"]), np.isnan(vi))
    np.testing.assert_allclose(got["yi"], yi, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got["vi"], vi, rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", escalc_cases())
def test_escalc_by_column_name_keeps_index(case):
    key = (case["measure"], case["name"])
    if key in RAISES or key in NA_WITH_WARNING or case["name"] == "boundary_r":
        return
    k = len(case["yi"])
    index = pd.Index([f"s{i}" for i in range(k)], name="study")
    df = pd.DataFrame({f"col_{a}": v for a, v in case["args"].items()}, index=index)
    df["other"] = "x"
    got = escalc(case["measure"], df, **{a: f"col_{a}" for a in case["args"]}, **case["options"])
    assert got.index.equals(index)
    np.testing.assert_allclose(got["yi"], arr(case["yi"]), rtol=RTOL, atol=0)
    np.testing.assert_allclose(got["vi"], arr(case["vi"]), rtol=RTOL, atol=0)


def test_or_zero_cells_rules():
    """to='only0' adds 1/2 only to studies with a zero cell; double-zero studies are kept."""
    case = next(c for c in load("or")["cases"] if c["name"] == "zero_cells")
    got = run_case(case)
    a, b, c, d = (np.array(case["args"][x], float) for x in ("ai", "bi", "ci", "di"))
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (np.where(zero, x + 0.5, x) for x in (a, b, c, d))
    np.testing.assert_allclose(got["yi"], np.log(a * d / (b * c)), rtol=1e-12)
    np.testing.assert_allclose(got["vi"], 1 / a + 1 / b + 1 / c + 1 / d, rtol=1e-12)
    double_zero = (np.array(case["args"]["ai"]) == 0) & (np.array(case["args"]["ci"]) == 0)
    assert double_zero.any() and np.isfinite(got["yi"][double_zero]).all()


def test_smd_uses_exact_correction_and_g_in_variance():
    """metafor: c(m) = Gamma(m/2)/(sqrt(m/2) Gamma((m-1)/2)), vi = 1/n1 + 1/n2 + g^2/(2 N)."""
    m1, s1, n1, m2, s2, n2 = 1.3, 1.1, 5, 0.2, 0.9, 6
    got = escalc("SMD", m1i=m1, sd1i=s1, n1i=n1, m2i=m2, sd2i=s2, n2i=n2)
    m = n1 + n2 - 2
    sp = math.sqrt(((n1 - 1) * s1**2 + (n2 - 1) * s2**2) / m)
    c = math.exp(math.lgamma(m / 2) - math.log(math.sqrt(m / 2)) - math.lgamma((m - 1) / 2))
    g = c * (m1 - m2) / sp
    assert got["yi"].iloc[0] == pytest.approx(g, rel=1e-13)
    assert got["vi"].iloc[0] == pytest.approx(1 / n1 + 1 / n2 + g**2 / (2 * (n1 + n2)), rel=1e-13)
    # the approximation 1 - 3/(4m - 1) is *not* what metafor uses
    assert abs(c - (1 - 3 / (4 * m - 1))) > 1e-5


# ------------------------------------------------------------------------------------------------
# bundled data: yi / vi are metafor's escalc("ZCOR") output
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alliance_like", "crede2010", "crede2010_grade", "molloy2014"])
def test_bundled_zcor_data(name):
    df = pd.read_csv(DATA / f"{name}.csv")
    # crede2010 has missing values, but only in `class`, not in ri / ni / yi / vi
    assert not df[["ri", "ni", "yi", "vi"]].isna().any().any()
    got = escalc("ZCOR", df, ri="ri", ni="ni")
    assert got.index.equals(df.index)
    np.testing.assert_allclose(got["yi"], df["yi"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["vi"], df["vi"], rtol=1e-12, atol=0)


def test_crede2010_missing_values_are_not_in_inputs():
    df = pd.read_csv(DATA / "crede2010.csv")
    assert df["class"].isna().sum() > 0  # the missing values the brief asked about
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DataWarning: nothing is dropped
        got = escalc("ZCOR", df, ri="ri", ni="ni", drop_missing=True)
    assert len(got) == len(df)


# ------------------------------------------------------------------------------------------------
# conversions
# ------------------------------------------------------------------------------------------------

FUNS = {
    "ztor": ztor,
    "rtoz": rtoz,
    "r_from_t": r_from_t,
    "r_from_f": r_from_f,
    "r_from_d": r_from_d,
    "d_from_r": d_from_r,
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["name"]) for c in load("conversions")["cases"]]
)
def test_conversions_match_r(case):
    got = FUNS[case["fun"]](**case["input"])
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, arr(case["expected"]), rtol=RTOL, atol=0)


ZI = load("ztor_int")["cases"][0]


def test_ztor_int_matches_metafor():
    got = ztor_int(ZI["input"]["z"], ZI["input"]["vi_total"])
    np.testing.assert_allclose(got, arr(ZI["expected"]), rtol=1e-12, atol=1e-15)


def test_ztor_int_gauss_hermite_close_to_metafor():
    got = ztor_int(ZI["input"]["z"], ZI["input"]["vi_total"], n_points=200)
    np.testing.assert_allclose(got, arr(ZI["expected"]), rtol=1e-8, atol=1e-12)


def test_ztor_int_scalar_and_limits():
    assert ztor_int(0.4, 0.0) == pytest.approx(math.tanh(0.4), abs=0)
    v = ztor_int(0.4, 0.3)
    assert isinstance(v, float)
    assert 0 < v < math.tanh(0.4)  # shrunk towards 0
    assert ztor_int(-0.4, 0.3) == pytest.approx(-v, rel=1e-14)
    assert math.isnan(ztor_int(float("nan"), 0.3))
    assert math.isnan(ztor_int(0.4, float("nan")))


def test_conversion_return_types():
    assert isinstance(ztor(0.5), float)
    assert ztor(0.5) == math.tanh(0.5)
    s = pd.Series([0.1, -0.2], index=["a", "b"], name="r")
    out = rtoz(s)
    assert isinstance(out, pd.Series) and list(out.index) == ["a", "b"] and out.name == "r"
    assert isinstance(r_from_d([0.2, 0.5]), np.ndarray)
    assert math.isnan(rtoz(float("nan")))
    assert rtoz(1.0) == math.inf and rtoz(-1) == -math.inf
    assert r_from_t(2.0, [10, 20]).shape == (2,)


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------

corr = st.floats(min_value=-0.999, max_value=0.999, allow_nan=False)
sizes = st.integers(min_value=1, max_value=100_000)


@settings(deadline=None)
@given(corr)
def test_ztor_rtoz_round_trip(r):
    assert ztor(rtoz(r)) == pytest.approx(r, rel=1e-12, abs=1e-15)


@given(st.floats(min_value=-3, max_value=3, allow_nan=False))
def test_rtoz_ztor_round_trip(z):
    assert rtoz(ztor(z)) == pytest.approx(z, rel=1e-10, abs=1e-13)


@given(st.floats(min_value=-10, max_value=10, allow_nan=False), sizes, sizes)
def test_r_from_d_round_trip(d, n1, n2):
    r = r_from_d(d, n1, n2)
    assert -1 < r < 1
    assert d_from_r(r, n1, n2) == pytest.approx(d, rel=1e-9, abs=1e-12)
    assert d_from_r(r_from_d(d)) == pytest.approx(d, rel=1e-9, abs=1e-12)


@given(corr, sizes, sizes)
def test_d_from_r_round_trip(r, n1, n2):
    assert r_from_d(d_from_r(r, n1, n2), n1, n2) == pytest.approx(r, rel=1e-10, abs=1e-14)


@given(
    st.floats(min_value=-50, max_value=50, allow_nan=False), st.floats(min_value=0.5, max_value=1e4)
)
def test_r_from_f_is_r_from_t(t, df):
    sign = 1 if t >= 0 else -1
    assert r_from_f(t * t, df, sign) == pytest.approx(r_from_t(t, df), rel=1e-12, abs=1e-15)


@settings(max_examples=50, deadline=None)
@given(st.lists(corr, min_size=1, max_size=20), st.integers(min_value=4, max_value=10_000))
def test_zcor_is_rtoz(rs, n):
    got = escalc("ZCOR", ri=rs, ni=n)
    # metafor's 1/2 log((1 + r)/(1 - r)) is not atanh(r) to the last bit (near 0 it loses
    # relative precision), hence the absolute tolerance
    np.testing.assert_allclose(got["yi"], rtoz(rs), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["vi"], 1 / (n - 3), rtol=0)


# ------------------------------------------------------------------------------------------------
# input handling
# ------------------------------------------------------------------------------------------------


def test_scalar_broadcast_and_series_index():
    ri = pd.Series([0.1, 0.2, 0.3], index=[10, 20, 30])
    got = escalc("ZCOR", ri=ri, ni=50)
    assert list(got.index) == [10, 20, 30]
    np.testing.assert_allclose(got["vi"], 1 / 47)


def test_mapping_data_and_strings_of_numbers():
    got = escalc("ZCOR", {"r": ["0.3", " 0.1 "], "n": [20, 30]}, ri="r", ni="n")
    np.testing.assert_allclose(got["yi"], np.arctanh([0.3, 0.1]), rtol=1e-14)


def test_or_n_form_consistent_with_counts():
    a, b, c, d = [3, 0], [7, 10], [5, 2], [5, 8]
    x = escalc("OR", ai=a, bi=b, ci=c, di=d)
    y = escalc("OR", ai=a, n1i=[10, 10], ci=c, n2i=[10, 10])
    z = escalc("OR", ai=a, bi=b, n1i=[10, 10], ci=c, di=d, n2i=[10, 10])
    pd.testing.assert_frame_equal(x, y)
    pd.testing.assert_frame_equal(x, z)


def test_cor_r_of_one_warns():
    with pytest.warns(
        DataWarning,
        match=re.escape("|r| = 1 gives a sampling variance of 0 in row 2 (column 'ri')"),
    ):
        got = escalc("COR", ri=[0.2, 1.0], ni=[10, 10])
    assert got["vi"].iloc[1] == 0


def test_drop_missing():
    df = pd.DataFrame({"ri": [0.1, np.nan, 0.3, None], "ni": [20, 30, None, 40]})
    with pytest.warns(
        DataWarning,
        match=re.escape("escalc('ZCOR'): dropped 3 of 4 rows with missing values (rows 2, 3, 4)"),
    ):
        got = escalc("ZCOR", df, ri="ri", ni="ni", drop_missing=True)
    assert list(got.index) == [0]
    assert got["yi"].iloc[0] == pytest.approx(np.arctanh(0.1), rel=1e-14)


def test_or_missing_bi_filled_from_n1i():
    got = escalc("OR", ai=[2, 3], bi=[8, np.nan], n1i=[10, 10], ci=[4, 4], di=[6, 6])
    ref = escalc("OR", ai=[2, 3], bi=[8, 7], ci=[4, 4], di=[6, 6])
    pd.testing.assert_frame_equal(got, ref)


# ------------------------------------------------------------------------------------------------
# error messages (pinned)
# ------------------------------------------------------------------------------------------------


def raises(msg: str):
    return pytest.raises(InputError, match="^" + re.escape(msg) + "$")


R7 = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0]
ALL_MEASURES = (
    "COR",
    "MC",
    "MD",
    "OR",
    "PAS",
    "PCOR",
    "PETO",
    "PLN",
    "PLO",
    "PR",
    "RD",
    "ROM",
    "RR",
    "SMCC",
    "SMCR",
    "SMCRH",
    "SMD",
    "SMDH",
    "SPCOR",
    "ZCOR",
    "ZPCOR",
)
VALID = ", ".join(map(repr, ALL_MEASURES))
N7 = [50] * 7


@pytest.mark.parametrize(
    "call, msg",
    [
        (
            lambda: escalc("XYZ", ri=[0.1], ni=[10]),
            f"unknown measure 'XYZ'; valid measures are: {VALID}",
        ),
        (
            lambda: escalc("zcor", ri=[0.1], ni=[10]),
            f"unknown measure 'zcor'; valid measures are: {VALID}",
        ),
        (lambda: escalc(3, ri=[0.1], ni=[10]), "measure must be a string, got int"),
        (lambda: escalc("ZCOR", ri=[0.1]), "measure 'ZCOR' requires argument 'ni'"),
        (
            lambda: escalc("SMD", m1i=1, sd1i=1, n1i=5, m2i=0, n2i=5),
            "measure 'SMD' requires argument 'sd2i'",
        ),
        (
            lambda: escalc("OR", ai=[1], ci=[1], di=[3]),
            "measure 'OR' requires argument 'bi' or 'n1i'",
        ),
        (lambda: escalc("OR", bi=[1], ci=[1], di=[3]), "measure 'OR' requires argument 'ai'"),
        (
            lambda: escalc("ZCOR", ri=[0.1], ni=[10], m1i=[1]),
            "argument 'm1i' is not used by measure 'ZCOR' (it uses 'ri', 'ni')",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.1], ni=[10], vtype="UB"),
            "vtype='UB' is not available for ZCOR; use one of 'LS'",
        ),
        (
            lambda: escalc("SMD", m1i=1, sd1i=1, n1i=5, m2i=0, sd2i=1, n2i=5, vtype="HO"),
            "vtype='HO' is not available for SMD; use one of 'LS', 'UB', 'LS2', 'AV'",
        ),
        (
            lambda: escalc("OR", ai=[1], bi=[2], ci=[1], di=[3], to="some"),
            "to='some': must be one of 'all', 'only0', 'if0all', 'none'",
        ),
        (
            lambda: escalc("OR", ai=[1], bi=[2], ci=[1], di=[3], add=-0.5),
            "add=-0.5: must be a finite number >= 0",
        ),
        (
            lambda: escalc("ZCOR", [1, 2], ri="r", ni="n"),
            "data must be a pandas DataFrame or a mapping, got list",
        ),
        (
            lambda: escalc("ZCOR", pd.DataFrame({"r": [0.1], "n": [10]}), ri="r", ni="N"),
            "column 'N' (argument 'ni') not found in the data (columns: r, n)",
        ),
        (
            lambda: escalc("ZCOR", ri="r", ni=[10]),
            "ri='r' names a column, but no data was given; pass data=... or an array",
        ),
        (
            lambda: escalc("ZCOR", pd.DataFrame({"r": [0.1, 0.2]}), ri="r", ni=[10, 20, 30]),
            "column 'ni' has 3 values but the data has 2 rows",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[10, 20, 30]),
            "the inputs have different lengths: 'ri' 2, 'ni' 3",
        ),
        (lambda: escalc("ZCOR", ri=[], ni=[]), "the data has no rows"),
    ],
)
def test_argument_errors(call, msg):
    with raises(msg):
        call()


def zcor_df(**overrides):
    df = pd.DataFrame({"ri": [*R7[:-1], 0.7], "ni": N7})
    for col, (row, value) in overrides.items():
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
    return df


@pytest.mark.parametrize(
    "call, msg",
    [
        # the example of the brief
        (
            lambda: escalc("ZCOR", pd.DataFrame({"ri": R7, "ni": N7}), ri="ri", ni="ni"),
            "column 'ri', row 7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0",
        ),
        # arrays: the argument name stands for the column
        (
            lambda: escalc("ZCOR", ri=R7, ni=N7),
            "column 'ri', row 7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0",
        ),
        # a column given by name is named by its name
        (
            lambda: escalc("ZCOR", pd.DataFrame({"r_xy": R7, "n": N7}), ri="r_xy", ni="n"),
            "column 'r_xy', row 7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0",
        ),
        # a non-default index is named by its label
        (
            lambda: escalc(
                "ZCOR",
                pd.DataFrame({"ri": R7, "ni": N7}, index=[f"S{i}" for i in range(1, 8)]),
                ri="ri",
                ni="ni",
            ),
            "column 'ri', row S7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.2, -1.5], ni=[10, 10]),
            "column 'ri', row 2: correlation must be strictly between -1 and 1 for ZCOR, got -1.5",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.2, 0.5], ni=[10, 3]),
            "column 'ni', row 2: sample size must be greater than 3 for ZCOR (vi = 1/(n - 3)), got 3",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.2, 0.5], ni=[10, -4]),
            (
                "column 'ni', row 2: sample size must be greater than 3 for ZCOR (vi = 1/(n - 3)), "
                "got -4"
            ),
        ),
        (
            lambda: escalc("COR", ri=[0.2, 1.2], ni=[10, 10]),
            "column 'ri', row 2: correlation must be between -1 and 1 for COR, got 1.2",
        ),
        (
            lambda: escalc("COR", ri=[0.2, 0.5], ni=[10, 3]),
            (
                "column 'ni', row 2: sample size must be greater than 3 for COR (metafor 3.8-1 leaves "
                "vi undefined for n <= 3), got 3"
            ),
        ),
        # missing / non-numeric / infinite
        (
            lambda: escalc("ZCOR", zcor_df(ri=(3, np.nan)), ri="ri", ni="ni"),
            "column 'ri', row 4: missing value; remove the row or use drop_missing=True",
        ),
        (
            lambda: escalc("ZCOR", zcor_df(ni=(2, None)), ri="ri", ni="ni"),
            "column 'ni', row 3: missing value; remove the row or use drop_missing=True",
        ),
        (
            lambda: escalc("ZCOR", zcor_df(ri=(4, "")), ri="ri", ni="ni"),
            "column 'ri', row 5: missing value; remove the row or use drop_missing=True",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.1, "NA"], ni=[10, 10]),
            "column 'ri', row 2: missing value; remove the row or use drop_missing=True",
        ),
        (
            lambda: escalc("ZCOR", zcor_df(ri=(1, "abc")), ri="ri", ni="ni"),
            "column 'ri', row 2: value must be numeric, got 'abc'",
        ),
        (
            lambda: escalc("ZCOR", zcor_df(ri=(1, "abc")), ri="ri", ni="ni", drop_missing=True),
            "column 'ri', row 2: value must be numeric, got 'abc'",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[10, True]),
            "column 'ni', row 2: value must be numeric, got True",
        ),
        (
            lambda: escalc("ZCOR", ri=np.array([True, False]), ni=[10, 10]),
            "column 'ri' must be numeric, got true/false values",
        ),
        (
            lambda: escalc(
                "ZCOR", pd.DataFrame({"r": [True, False], "n": [10, 10]}), ri="r", ni="n"
            ),
            "column 'r' must be numeric, got true/false values",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[10, np.inf]),
            "column 'ni', row 2: value must be finite, got inf",
        ),
        (
            lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[[10, 11], [12, 13]]),
            "column 'ni' must be one-dimensional, got shape (2, 2)",
        ),
        # SMD
        (
            lambda: escalc(
                "SMD", m1i=[1, 2], sd1i=[1, -1], n1i=[5, 5], m2i=[0, 0], sd2i=[1, 1], n2i=[5, 5]
            ),
            "column 'sd1i', row 2: standard deviation must be non-negative, got -1.0",
        ),
        (
            lambda: escalc(
                "SMD", m1i=[1, 2], sd1i=[1, 1], n1i=[5, 5], m2i=[0, 0], sd2i=[1, 1], n2i=[5, 0]
            ),
            "column 'n2i', row 2: group size must be positive, got 0",
        ),
        (
            lambda: escalc(
                "SMD", m1i=[1, 2], sd1i=[1, 1], n1i=[5, 2], m2i=[0, 0], sd2i=[1, 1], n2i=[5, 1]
            ),
            (
                "columns 'n1i' and 'n2i', row 2: total sample size n1i + n2i must be greater than 3 for "
                "SMD (the correction factor needs n1i + n2i - 2 > 1), got 3"
            ),
        ),
        (
            lambda: escalc(
                "SMD", m1i=[1, 2], sd1i=[1, 0], n1i=[5, 5], m2i=[0, 0], sd2i=[1, 0], n2i=[5, 5]
            ),
            (
                "columns 'sd1i' and 'sd2i', row 2: the pooled standard deviation is 0, so SMD is "
                "undefined (sd1i = 0.0, sd2i = 0.0)"
            ),
        ),
        (
            lambda: escalc(
                "SMD",
                pd.DataFrame(
                    {"m_t": [1.0], "s_t": [2.0], "n_t": [1], "m_c": [0.0], "s_c": [0.0], "n_c": [9]}
                ),
                m1i="m_t",
                sd1i="s_t",
                n1i="n_t",
                m2i="m_c",
                sd2i="s_c",
                n2i="n_c",
            ),
            (
                "columns 's_t' and 's_c', row 1: the pooled standard deviation is 0, so SMD is "
                "undefined (sd1i = 2.0, sd2i = 0.0)"
            ),
        ),
        # OR
        (
            lambda: escalc("OR", ai=[1, -1], bi=[2, 2], ci=[1, 1], di=[3, 3]),
            "column 'ai', row 2: counts must be non-negative, got -1",
        ),
        (
            lambda: escalc(
                "OR",
                pd.DataFrame({"ev": [1, 12], "n": [10, 10], "c": [2, 2], "m": [10, 10]}),
                ai="ev",
                n1i="n",
                ci="c",
                n2i="m",
            ),
            "column 'ev', row 2: count must not exceed the group size in column 'n' (10), got 12",
        ),
        (
            lambda: escalc("OR", ai=[1, 3], bi=[9, 8], n1i=[10, 10], ci=[1, 1], di=[3, 3]),
            "column 'n1i', row 2: group size must equal ai + bi = 11, got 10",
        ),
        (
            lambda: escalc("OR", ai=[1, 0], n1i=[10, 0], ci=[1, 1], n2i=[3, 3]),
            "column 'n1i', row 2: group size must be positive, got 0",
        ),
        (
            lambda: escalc("OR", ai=[1, 2], bi=[2, 2], ci=[1, 0], di=[3, 0]),
            "columns 'ci' and 'di', row 2: group size ci + di must be positive, got 0",
        ),
    ],
)
def test_value_errors(call, msg):
    with raises(msg):
        call()


def test_non_numeric_from_csv():
    text = "ri,ni\n0.1,20\nabc,30\n0.3,40\n"
    df = pd.read_csv(io.StringIO(text))
    with raises("column 'ri', row 2: value must be numeric, got 'abc'"):
        escalc("ZCOR", df, ri="ri", ni="ni")
    text = "ri,ni\n0.1,20\n,30\n0.3,40\n"
    df = pd.read_csv(io.StringIO(text))
    with raises("column 'ri', row 2: missing value; remove the row or use drop_missing=True"):
        escalc("ZCOR", df, ri="ri", ni="ni")


def test_or_to_none_with_zero_cell_warns():
    with pytest.warns(
        DataWarning, match=re.escape("escalc('OR'): yi/vi are infinite or undefined for row 2")
    ):
        got = escalc("OR", ai=[2, 0], bi=[8, 10], ci=[4, 4], di=[6, 6], to="none")
    assert np.isfinite(got["yi"].iloc[0]) and np.isnan(got["yi"].iloc[1])
    assert np.isnan(got["vi"].iloc[1])


@pytest.mark.parametrize(
    "call, msg",
    [
        (
            lambda: rtoz([0.2, 1.5]),
            "argument 'r', element 2: correlation must be between -1 and 1, got 1.5",
        ),
        (lambda: rtoz(-1.01), "argument 'r': correlation must be between -1 and 1, got -1.01"),
        (lambda: ztor("abc"), "argument 'z': value must be numeric, got 'abc'"),
        (
            lambda: ztor([0.1, None, "x"]),
            ("argument 'z', element 3: value must be numeric, got 'x'"),
        ),
        (lambda: r_from_t(2.0, 0), "argument 'df': degrees of freedom must be positive, got 0.0"),
        (lambda: r_from_t(np.inf, 10), "argument 't': t statistic must be finite, got inf"),
        (
            lambda: r_from_f(-1.0, 10),
            ("argument 'F': F statistic must be finite and >= 0, got -1.0"),
        ),
        (lambda: r_from_f(4.0, 10, sign=0), "argument 'sign': sign must be +1 or -1, got 0.0"),
        (
            lambda: r_from_d(0.5, n1=10),
            "give both n1 and n2, or neither (equal group sizes, a = 4)",
        ),
        (
            lambda: r_from_d(0.5, 10, 0),
            ("argument 'n2': group size must be positive and finite, got 0.0"),
        ),
        (
            lambda: d_from_r([0.5, -2.0]),
            ("argument 'r', element 2: correlation must be between -1 and 1, got -2.0"),
        ),
        (
            lambda: ztor_int(0.5, -0.1),
            ("argument 'vi_total': variance must be finite and >= 0, got -0.1"),
        ),
        (lambda: ztor_int(0.5, 0.1, n_points=1), "n_points=1: must be None or an integer >= 2"),
        (
            lambda: ztor_int(0.5, 0.1, n_points=10.5),
            ("n_points=10.5: must be None or an integer >= 2"),
        ),
        (lambda: r_from_t([1, 2, 3], [1, 2]), None),
    ],
)
def test_conversion_errors(call, msg):
    if msg is None:
        with pytest.raises(InputError, match="arguments cannot be broadcast together"):
            call()
        return
    with raises(msg):
        call()


def test_measures_constant():
    assert MEASURES == ALL_MEASURES


# ------------------------------------------------------------------------------------------------
# the registry: every measure against metafor 3.8-1
# ------------------------------------------------------------------------------------------------


FAMILY_FIXTURES = ("partial", "continuous", "prepost", "binary", "proportion")
ALL_ESCALC_FIXTURES = ("zcor", "cor", "smd", "or", *FAMILY_FIXTURES)


def family_cases() -> list:
    return [
        pytest.param(case, id=f"{case['measure']}-{case['name']}")
        for name in FAMILY_FIXTURES
        for case in load(name)["cases"]
    ]


@pytest.mark.parametrize("name", [*FAMILY_FIXTURES, "convert", "backtransforms"])
def test_new_fixture_provenance(name):
    fx = load(name)
    assert fx["metafor"] == "3.8.1" and fx["R"].startswith("R version 4.2.2")
    assert fx["generator"] == "scripts/make_escalc_reference.R" and fx["cases"]


@pytest.mark.parametrize("case", family_cases())
def test_every_measure_matches_metafor(case):
    """yi and vi to 1e-10 (relative) for every case; NA exactly where metafor has NA."""
    yi, vi = arr(case["yi"]), arr(case["vi"])
    undefined = np.isnan(yi) | np.isnan(vi)
    if undefined.any():
        # metafor's NA: infinite values (warned by metafor too), drop00, a negative vi
        with pytest.warns(DataWarning, match="infinite or undefined|drop00=True|negative"):
            got = run_case(case)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = run_case(case)
    assert list(got.columns) == ["yi", "vi"] and len(got) == len(yi)
    np.testing.assert_array_equal(np.isnan(got["yi"]), np.isnan(yi))
    np.testing.assert_array_equal(np.isnan(got["vi"]), np.isnan(vi))
    np.testing.assert_allclose(got["yi"], yi, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got["vi"], vi, rtol=RTOL, atol=0)


def test_case_grid_is_complete():
    """Every registered measure and every one of its vtypes has a metafor case; every measure
    with a continuity correction has zero-cell cases, every 2x2 measure a drop00 case."""
    seen = {
        (c["measure"], c["options"].get("vtype", "LS"))
        for name in ALL_ESCALC_FIXTURES
        for c in load(name)["cases"]
    }
    expected = {(m, v) for m in MEASURES for v in get_measure(m).vtypes}
    assert expected <= seen, sorted(expected - seen)
    cases = [c for name in ALL_ESCALC_FIXTURES for c in load(name)["cases"]]
    for m in MEASURES:
        if get_measure(m).zero_cells:
            mine = [c for c in cases if c["measure"] == m]
            assert any("zero" in c["name"] for c in mine), m
            assert {"all", "if0all"} <= {c["options"].get("to") for c in mine}, m
        if get_measure(m).family == "binary":
            assert any(c["options"].get("drop00") for c in cases if c["measure"] == m), m


def test_registry_entries_are_complete():
    assert measure_names() == MEASURES == ALL_MEASURES
    for name in MEASURES:
        m = get_measure(name)
        assert m.name == name and m.vtypes[0] == "LS" and m.scale and m.references
        doc = m.doc
        assert doc.startswith(f"{name}:") and ("math::" in doc or ":math:" in doc), name
        assert m.transf in ("none", "ztor", "exp", "ilogit", "iarcsin")
        assert (m.transf == "none") == (m.transf_scale == ""), name
        forms = registry.forms(name)
        assert forms and all(set(f) <= set(m.args) for f in forms)
        # every form computes (checked on valid inputs below)


VALID = {
    "ri": 0.3,
    "ni": 40,
    "m1i": 10.0,
    "sd1i": 2.0,
    "n1i": 20,
    "m2i": 9.0,
    "sd2i": 2.5,
    "n2i": 25,
    "ai": 5,
    "bi": 15,
    "ci": 8,
    "di": 17,
    "xi": 7,
    "mi": 33,
    "ti": 2.2,
    "r2i": 0.4,
}
VALID_BY_MEASURE = {
    "PCOR": {"mi": 3},
    "ZPCOR": {"mi": 3},
    "SPCOR": {"mi": 3},
    "SMD": {"di": 0.4},
    "OR": {"n1i": 20, "n2i": 25},
    "RR": {"n1i": 20, "n2i": 25},
    "RD": {"n1i": 20, "n2i": 25},
    "PETO": {"n1i": 20, "n2i": 25},
    "PR": {"ni": 40},
    "PLN": {"ni": 40},
    "PLO": {"ni": 40},
    "PAS": {"ni": 40},
}


@pytest.mark.parametrize("name", ALL_MEASURES)
def test_every_form_of_every_measure_computes(name):
    """Each complete set of columns (registry.forms) gives finite yi and positive vi."""
    values = {**VALID, **VALID_BY_MEASURE.get(name, {})}
    results = []
    for form in registry.forms(name):
        got = escalc(name, **{a: [values[a]] for a in form})
        assert np.isfinite(got["yi"]).all() and (got["vi"] > 0).all(), (name, form)
        results.append(got)
    if name in ("OR", "RR", "RD", "PETO", "PR", "PLN", "PLO", "PAS"):
        for other in results[1:]:  # counts vs sizes: the same table
            pd.testing.assert_frame_equal(other, results[0])


@pytest.mark.parametrize(
    "name, back, x, expected",
    [
        ("ZCOR", "correlation", 0.5, math.tanh(0.5)),
        ("OR", "odds ratio", math.log(2.5), 2.5),
        ("RR", "risk ratio", -0.5, math.exp(-0.5)),
        ("ROM", "ratio of means", 0.2, math.exp(0.2)),
        ("PLO", "proportion", 0.0, 0.5),
        ("PAS", "proportion", math.asin(math.sqrt(0.3)), 0.3),
        ("PLN", "proportion", math.log(0.2), 0.2),
        ("SMD", "", 0.7, 0.7),
    ],
)
def test_back_transformation_and_scale_label(name, back, x, expected):
    m = get_measure(name)
    assert m.transf_scale == back
    assert m.back_transform(x) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c["name"]) for c in load("backtransforms")["cases"]]
)
def test_backtransforms_match_metafor(case):
    fun = {"exp": t_exp, "ilogit": ilogit, "iarcsin": iarcsin, "ztor": ztor}[case["fun"]]
    got = fun(case["input"]["x"])
    np.testing.assert_allclose(got, arr(case["expected"]), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in load("convert")["cases"]])
def test_convert_matches_borenstein_in_r(case):
    inp = case["input"]
    got = convert(
        inp["yi"], inp["vi"], case["from"], case["to"], n1=inp.get("n1"), n2=inp.get("n2")
    )
    np.testing.assert_allclose(got["yi"], arr(case["expected_yi"]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["vi"], arr(case["expected_vi"]), rtol=1e-12, atol=0)


@settings(deadline=None)
@given(
    st.floats(min_value=-5, max_value=5, allow_nan=False),
    st.floats(min_value=1e-4, max_value=2),
    sizes,
    sizes,
)
def test_convert_round_trips(d, v, n1, n2):
    for mid in ("r", "logOR"):
        there = convert([d], [v], "d", mid, n1=[n1], n2=[n2])
        back = convert(there["yi"].to_numpy(), there["vi"].to_numpy(), mid, "d", n1=[n1], n2=[n2])
        assert back["yi"].iloc[0] == pytest.approx(d, rel=1e-9, abs=1e-12)
        assert back["vi"].iloc[0] == pytest.approx(v, rel=1e-8)
    assert logor_from_d(d) == pytest.approx(d * math.pi / math.sqrt(3), rel=1e-15)
    assert d_from_logor(logor_from_d(d)) == pytest.approx(d, rel=1e-14, abs=1e-15)


# ------------------------------------------------------------------------------------------------
# properties of the measures
# ------------------------------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=300)


@settings(max_examples=60, deadline=None)
@given(counts, counts, counts, counts, st.sampled_from(["OR", "RR", "RD", "PETO"]))
def test_swapping_groups_flips_the_sign(a, b, c, d, measure):
    """Group 1 <-> group 2 negates yi and keeps vi (the continuity correction is symmetric)."""
    if a + b == 0 or c + d == 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        x = escalc(measure, ai=[a], bi=[b], ci=[c], di=[d])
        y = escalc(measure, ai=[c], bi=[d], ci=[a], di=[b])
    np.testing.assert_allclose(y["yi"], -x["yi"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y["vi"], x["vi"], rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(counts, counts, counts, counts)
def test_or_of_events_is_minus_or_of_non_events(a, b, c, d):
    """log OR of 'event' = -log OR of 'no event' (swap a<->b, c<->d)."""
    if a + b == 0 or c + d == 0:
        return
    x = escalc("OR", ai=[a], bi=[b], ci=[c], di=[d])
    y = escalc("OR", ai=[b], bi=[a], ci=[d], di=[c])
    np.testing.assert_allclose(y["yi"], -x["yi"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y["vi"], x["vi"], rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.integers(0, 200))
def test_proportion_scales_agree(x, m):
    """PLO, PLN and PAS back-transformed give PR's proportion (same continuity correction)."""
    if x + m == 0:
        return
    p = escalc("PR", xi=[x], mi=[m])["yi"].iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        for name in ("PLO", "PLN", "PAS"):
            y = escalc(name, xi=[x], mi=[m], add=0.5)["yi"].iloc[0]
            assert get_measure(name).back_transform(y) == pytest.approx(p, rel=1e-12, abs=1e-15)


@settings(max_examples=30, deadline=None)
@given(
    st.floats(-50, 50),
    st.floats(0.1, 20),
    st.integers(2, 500),
    st.floats(-50, 50),
    st.floats(0.1, 20),
    st.integers(2, 500),
    st.floats(0.01, 100),
)
def test_two_group_measures_under_swap_and_scale(m1, s1, n1, m2, s2, n2, c):
    """Swapping groups negates MD, SMD, SMDH; rescaling the outcome by c scales MD (vi by c^2)
    and leaves SMD, SMDH unchanged."""
    args = {"m1i": [m1], "sd1i": [s1], "n1i": [n1], "m2i": [m2], "sd2i": [s2], "n2i": [n2]}
    swap = {"m1i": [m2], "sd1i": [s2], "n1i": [n2], "m2i": [m1], "sd2i": [s1], "n2i": [n1]}
    scaled = {k: [v[0] * c] if k[:2] in ("m1", "m2", "sd") else v for k, v in args.items()}
    for name in ("MD", "SMD", "SMDH"):
        x, y, z = escalc(name, **args), escalc(name, **swap), escalc(name, **scaled)
        np.testing.assert_allclose(y["yi"], -x["yi"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y["vi"], x["vi"], rtol=1e-12)
        f = c if name == "MD" else 1.0
        np.testing.assert_allclose(z["yi"], f * x["yi"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(z["vi"], f * f * x["vi"], rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.floats(-0.99, 0.99), st.integers(4, 5000), st.floats(0.5, 10), st.floats(-5, 5))
def test_smd_from_t_and_from_means_agree(r, n, sd, diff):
    """SMD from the two-sample t statistic equals SMD from the means (equal SDs)."""
    n1, n2 = n, n + 3
    t = diff / (sd * math.sqrt(1 / n1 + 1 / n2))
    a = escalc("SMD", m1i=[diff], sd1i=[sd], n1i=[n1], m2i=[0.0], sd2i=[sd], n2i=[n2])
    b = escalc("SMD", ti=[t], n1i=[n1], n2i=[n2])
    pd.testing.assert_frame_equal(a, b, rtol=1e-10, atol=1e-13)


def test_pcor_and_zpcor_are_fisher_pair():
    a = escalc("PCOR", ti=[2.5, -1.0], ni=[50, 80], mi=[3, 5])
    b = escalc("ZPCOR", ti=[2.5, -1.0], ni=[50, 80], mi=[3, 5])
    np.testing.assert_allclose(b["yi"], np.arctanh(a["yi"]), rtol=1e-13)
    np.testing.assert_allclose(b["vi"], [1 / 46, 1 / 74], rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# options, zero cells and errors of the new measures
# ------------------------------------------------------------------------------------------------


def test_drop00_sets_double_zero_tables_to_nan_with_warning():
    with pytest.warns(
        DataWarning,
        match=re.escape(
            "escalc('RR'): drop00=True: yi and vi set to NaN for rows 2, 3 (no events, or only "
            "events, in both groups)"
        ),
    ):
        got = escalc("RR", ai=[2, 0, 5], bi=[8, 10, 0], ci=[3, 0, 7], di=[7, 12, 0], drop00=True)
    assert np.isfinite(got["yi"].iloc[0]) and got[["yi", "vi"]].iloc[1:].isna().all().all()


def test_pas_adds_nothing_by_default():
    got = escalc("PAS", xi=[0, 10], ni=[10, 10])
    np.testing.assert_allclose(got["yi"], [0.0, math.pi / 2], rtol=1e-15)
    assert escalc("PR", xi=[0], ni=[10])["yi"].iloc[0] == pytest.approx(0.5 / 11, rel=1e-15)


def test_user_registered_measure():
    def log_mean(x):
        """LMEAN: log mean of a single group (test measure)."""
        return np.log(x["m1i"]), x["sd1i"] ** 2 / (x["ni"] * x["m1i"] ** 2)

    m = registry.Measure(
        "LMEAN_TEST",
        "continuous",
        "log mean",
        ("m1i", "sd1i", "ni"),
        ((("m1i",),), (("sd1i",),), (("ni",),)),
        log_mean,
        scale="log mean",
        transf="exp",
        transf_scale="mean",
    )
    register_measure(m)
    try:
        got = escalc("LMEAN_TEST", m1i=[2.0], sd1i=[1.0], ni=[16])
        assert got["yi"].iloc[0] == pytest.approx(math.log(2)) and got["vi"].iloc[0] == 1 / 64
        with pytest.raises(ValueError, match="already registered"):
            register_measure(m)
        with pytest.raises(ValueError, match="unknown argument"):
            register_measure(registry.Measure("BAD", "x", "x", ("zz",), (), log_mean))
    finally:
        registry._REGISTRY.pop("LMEAN_TEST")
    with pytest.raises(AttributeError, match="immutable"):
        get_measure("SMD").scale = "x"


@pytest.mark.parametrize(
    "call, msg",
    [
        (
            lambda: escalc("SMD", n1i=[10], n2i=[12]),
            "measure 'SMD' requires arguments 'm1i', 'sd1i', 'm2i', 'sd2i' (or 'di' or 'ti')",
        ),
        (lambda: escalc("PR", mi=[3]), "measure 'PR' requires argument 'xi'"),
        (lambda: escalc("PLO", xi=[3]), "measure 'PLO' requires argument 'mi' or 'ni'"),
        (
            lambda: escalc("OR", ai=[1], bi=[2], ci=[1], di=[3], vtype="AV"),
            "vtype='AV' is not available for OR; use one of 'LS'",
        ),
        (
            lambda: escalc("RD", ai=[1], bi=[2], ci=[1], di=[3], drop00="yes"),
            "drop00='yes': must be True or False",
        ),
        (
            lambda: escalc("PCOR", ti=[2.0], ni=[10], mi=[-1]),
            "column 'mi', row 1: number of predictors must be non-negative for PCOR, got -1",
        ),
        (
            lambda: escalc("PCOR", ti=[2.0, 1.0], ni=[10, 5], mi=[2, 4]),
            (
                "columns 'ni' and 'mi', row 2: residual degrees of freedom ni - mi - 1 must be "
                "positive for PCOR, got 0"
            ),
        ),
        (
            lambda: escalc("SPCOR", ti=[2.0], ni=[30], mi=[2], r2i=[1.2]),
            "column 'r2i', row 1: R^2 must be between 0 and 1, got 1.2",
        ),
        (
            lambda: escalc(
                "ROM",
                m1i=[2.0, -1.0],
                sd1i=[1, 1],
                n1i=[10, 10],
                m2i=[3.0, 2.0],
                sd2i=[1, 1],
                n2i=[10, 10],
            ),
            (
                "columns 'm1i' and 'm2i', row 2: ROM needs two non-zero means of the same sign "
                "(log of m1i/m2i) (m1i = -1.0, m2i = 2.0)"
            ),
        ),
        (
            lambda: escalc("SMDH", m1i=[2.0], sd1i=[1], n1i=[1], m2i=[3.0], sd2i=[1], n2i=[10]),
            "column 'n1i', row 1: group size must be greater than 1 for SMDH, got 1",
        ),
        (
            lambda: escalc("MD", m1i=[2.0], sd1i=[-1], n1i=[5], m2i=[3.0], sd2i=[1], n2i=[10]),
            "column 'sd1i', row 1: standard deviation must be non-negative, got -1.0",
        ),
        (
            lambda: escalc("SMCC", m1i=[5], sd1i=[2], m2i=[4], sd2i=[2], ni=[2], ri=[0.5]),
            (
                "column 'ni', row 1: sample size must be greater than 2 for SMCC (the correction "
                "factor needs ni - 1 > 1), got 2"
            ),
        ),
        (
            lambda: escalc("SMCC", m1i=[5], sd1i=[2], m2i=[4], sd2i=[2], ni=[20], ri=[1.0]),
            (
                "columns 'sd1i', 'sd2i' and 'ri', row 1: the SD of the change scores, sqrt(sd1i^2 + "
                "sd2i^2 - 2 ri sd1i sd2i), must be positive for SMCC (sd1i = 2.0, sd2i = 2.0, "
                "ri = 1.0)"
            ),
        ),
        (
            lambda: escalc("SMCR", m1i=[5], sd1i=[0], m2i=[4], ni=[20], ri=[0.5]),
            (
                "column 'sd1i', row 1: standard deviation must be positive for SMCR (it standardizes "
                "by sd1i), got 0.0"
            ),
        ),
        (
            lambda: escalc("MC", m1i=[5], sd1i=[2], m2i=[4], sd2i=[2], ni=[20], ri=[1.5]),
            "column 'ri', row 1: correlation must be between -1 and 1 for MC, got 1.5",
        ),
        (
            lambda: escalc("PR", xi=[3, 12], ni=[10, 10]),
            "column 'xi', row 2: count must not exceed the sample size in column 'ni' (10), got 12",
        ),
        (
            lambda: escalc("PR", xi=[3, -2], mi=[10, 10]),
            "column 'xi', row 2: counts must be non-negative, got -2",
        ),
        (
            lambda: escalc("PLO", xi=[3, 2], mi=[7, 8], ni=[10, 11]),
            "column 'ni', row 2: sample size must equal xi + mi = 10, got 11",
        ),
        (
            lambda: escalc("PAS", xi=[0], mi=[0]),
            "columns 'xi' and 'mi', row 1: sample size xi + mi must be positive, got 0",
        ),
        (
            lambda: escalc("RR", ai=[3, 12], n1i=[10, 10], ci=[1, 1], n2i=[5, 5]),
            "column 'ai', row 2: count must not exceed the group size in column 'n1i' (10), got 12",
        ),
    ],
)
def test_new_measure_errors(call, msg):
    with raises(msg):
        call()


def test_smd_rows_from_d_t_or_means_and_missing():
    """A row may use di, ti or the means; a row with none of them is missing."""
    with pytest.raises(
        InputError,
        match=re.escape(
            "column 'm1i', row 2: missing value; remove the row or use drop_missing=True"
        ),
    ):
        escalc(
            "SMD",
            m1i=[1.0, None],
            sd1i=[1, None],
            m2i=[0.0, None],
            sd2i=[1, None],
            di=[None, None],
            n1i=[10, 10],
            n2i=[10, 10],
        )
    got = escalc(
        "SMD",
        m1i=[1.0, None],
        sd1i=[1, None],
        m2i=[0.0, None],
        sd2i=[1, None],
        di=[None, 1.0],
        n1i=[10, 10],
        n2i=[10, 10],
    )
    assert got["yi"].iloc[0] == got["yi"].iloc[1]


# ------------------------------------------------------------------------------------------------
# the command line and analysis files take every registered measure
# ------------------------------------------------------------------------------------------------

BCG = pd.DataFrame(
    {  # metafor's dat.bcg (Colditz et al. 1994), the 2x2 counts
        "tpos": [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27],
        "tneg": [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886],
        "cpos": [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29],
        "cneg": [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825],
    }
)


def test_cli_and_analysis_files_list_every_measure():
    from mlmeta import cli
    from mlmeta.io import analysis

    assert cli.MEASURES == analysis.MEASURES == MEASURES
    assert set(cli.ESCALC_ARGS) == set(analysis.ESCALC_COLUMNS) == set(registry.ALL_ARGS)
    for m in MEASURES:
        assert analysis.ESCALC_NEEDS[m] == registry.forms(m)


def test_cli_fits_a_risk_ratio(tmp_path, capsys):
    """mlmeta fit --measure RR: metafor's rma(escalc("RR", dat.bcg)) estimate -0.7145."""
    from mlmeta import cli

    path = tmp_path / "bcg.csv"
    BCG.assign(trial=range(1, 14)).to_csv(path, index=False)
    code = cli.main(
        [
            "fit",
            str(path),
            "--measure",
            "rr",
            "--ai",
            "tpos",
            "--bi",
            "tneg",
            "--ci",
            "cpos",
            "--di",
            "cneg",
            "--random",
            "trial",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^ -0\.7145\s+0\.1798\s+-3\.9744", out, re.MULTILINE), out
