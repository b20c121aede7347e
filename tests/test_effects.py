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
    d_from_r,
    escalc,
    r_from_d,
    r_from_f,
    r_from_t,
    rtoz,
    ztor,
    ztor_int,
)
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


@given(st.floats(min_value=-50, max_value=50, allow_nan=False),
       st.floats(min_value=0.5, max_value=1e4))
def test_r_from_f_is_r_from_t(t, df):
    sign = 1 if t >= 0 else -1
    assert r_from_f(t * t, df, sign) == pytest.approx(r_from_t(t, df), rel=1e-12, abs=1e-15)


@settings(max_examples=50)
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
    with pytest.warns(DataWarning, match=re.escape("|r| = 1 gives a sampling variance of 0 in "
                                                   "row 2 (column 'ri')")):
        got = escalc("COR", ri=[0.2, 1.0], ni=[10, 10])
    assert got["vi"].iloc[1] == 0


def test_drop_missing():
    df = pd.DataFrame({"ri": [0.1, np.nan, 0.3, None], "ni": [20, 30, None, 40]})
    with pytest.warns(DataWarning, match=re.escape(
            "escalc('ZCOR'): dropped 3 of 4 rows with missing values (rows 2, 3, 4)")):
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
ALL_MEASURES = ("COR", "MC", "MD", "OR", "PAS", "PCOR", "PETO", "PLN", "PLO", "PR", "RD", "ROM",
                "RR", "SMCC", "SMCR", "SMCRH", "SMD", "SMDH", "SPCOR", "ZCOR", "ZPCOR")
VALID = ", ".join(map(repr, ALL_MEASURES))
N7 = [50] * 7


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: escalc("XYZ", ri=[0.1], ni=[10]),
         f"unknown measure 'XYZ'; valid measures are: {VALID}"),
        (lambda: escalc("zcor", ri=[0.1], ni=[10]),
         f"unknown measure 'zcor'; valid measures are: {VALID}"),
        (lambda: escalc(3, ri=[0.1], ni=[10]), "measure must be a string, got int"),
        (lambda: escalc("ZCOR", ri=[0.1]), "measure 'ZCOR' requires argument 'ni'"),
        (lambda: escalc("SMD", m1i=1, sd1i=1, n1i=5, m2i=0, n2i=5),
         "measure 'SMD' requires argument 'sd2i'"),
        (lambda: escalc("OR", ai=[1], ci=[1], di=[3]),
         "measure 'OR' requires argument 'bi' or 'n1i'"),
        (lambda: escalc("OR", bi=[1], ci=[1], di=[3]), "measure 'OR' requires argument 'ai'"),
        (lambda: escalc("ZCOR", ri=[0.1], ni=[10], m1i=[1]),
         "argument 'm1i' is not used by measure 'ZCOR' (it uses 'ri', 'ni')"),
        (lambda: escalc("ZCOR", ri=[0.1], ni=[10], vtype="UB"),
         "vtype='UB' is not available for ZCOR; use one of 'LS'"),
        (lambda: escalc("SMD", m1i=1, sd1i=1, n1i=5, m2i=0, sd2i=1, n2i=5, vtype="HO"),
         "vtype='HO' is not available for SMD; use one of 'LS', 'UB', 'LS2', 'AV'"),
        (lambda: escalc("OR", ai=[1], bi=[2], ci=[1], di=[3], to="some"),
         "to='some': must be one of 'all', 'only0', 'if0all', 'none'"),
        (lambda: escalc("OR", ai=[1], bi=[2], ci=[1], di=[3], add=-0.5),
         "add=-0.5: must be a finite number >= 0"),
        (lambda: escalc("ZCOR", [1, 2], ri="r", ni="n"),
         "data must be a pandas DataFrame or a mapping, got list"),
        (lambda: escalc("ZCOR", pd.DataFrame({"r": [0.1], "n": [10]}), ri="r", ni="N"),
         "column 'N' (argument 'ni') not found in the data (columns: r, n)"),
        (lambda: escalc("ZCOR", ri="r", ni=[10]),
         "ri='r' names a column, but no data was given; pass data=... or an array"),
        (lambda: escalc("ZCOR", pd.DataFrame({"r": [0.1, 0.2]}), ri="r", ni=[10, 20, 30]),
         "column 'ni' has 3 values but the data has 2 rows"),
        (lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[10, 20, 30]),
         "the inputs have different lengths: 'ri' 2, 'ni' 3"),
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
        (lambda: escalc("ZCOR", pd.DataFrame({"ri": R7, "ni": N7}), ri="ri", ni="ni"),
         "column 'ri', row 7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0"),
        # arrays: the argument name stands for the column
        (lambda: escalc("ZCOR", ri=R7, ni=N7),
         "column 'ri', row 7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0"),
        # a column given by name is named by its name
        (lambda: escalc("ZCOR", pd.DataFrame({"r_xy": R7, "n": N7}), ri="r_xy", ni="n"),
         "column 'r_xy', row 7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0"),
        # a non-default index is named by its label
        (lambda: escalc("ZCOR", pd.DataFrame({"ri": R7, "ni": N7},
                                             index=[f"S{i}" for i in range(1, 8)]),
                        ri="ri", ni="ni"),
         "column 'ri', row S7: correlation must be strictly between -1 and 1 for ZCOR, got 1.0"),
        (lambda: escalc("ZCOR", ri=[0.2, -1.5], ni=[10, 10]),
         "column 'ri', row 2: correlation must be strictly between -1 and 1 for ZCOR, got -1.5"),
        (lambda: escalc("ZCOR", ri=[0.2, 0.5], ni=[10, 3]),
         "column 'ni', row 2: sample size must be greater than 3 for ZCOR (vi = 1/(n - 3)), got 3"),
        (lambda: escalc("ZCOR", ri=[0.2, 0.5], ni=[10, -4]),
         ("column 'ni', row 2: sample size must be greater than 3 for ZCOR (vi = 1/(n - 3)), "
         "got -4")),
        (lambda: escalc("COR", ri=[0.2, 1.2], ni=[10, 10]),
         "column 'ri', row 2: correlation must be between -1 and 1 for COR, got 1.2"),
        (lambda: escalc("COR", ri=[0.2, 0.5], ni=[10, 3]),
         ("column 'ni', row 2: sample size must be greater than 3 for COR (metafor 3.8-1 leaves "
         "vi undefined for n <= 3), got 3")),
        # missing / non-numeric / infinite
        (lambda: escalc("ZCOR", zcor_df(ri=(3, np.nan)), ri="ri", ni="ni"),
         "column 'ri', row 4: missing value; remove the row or use drop_missing=True"),
        (lambda: escalc("ZCOR", zcor_df(ni=(2, None)), ri="ri", ni="ni"),
         "column 'ni', row 3: missing value; remove the row or use drop_missing=True"),
        (lambda: escalc("ZCOR", zcor_df(ri=(4, "")), ri="ri", ni="ni"),
         "column 'ri', row 5: missing value; remove the row or use drop_missing=True"),
        (lambda: escalc("ZCOR", ri=[0.1, "NA"], ni=[10, 10]),
         "column 'ri', row 2: missing value; remove the row or use drop_missing=True"),
        (lambda: escalc("ZCOR", zcor_df(ri=(1, "abc")), ri="ri", ni="ni"),
         "column 'ri', row 2: value must be numeric, got 'abc'"),
        (lambda: escalc("ZCOR", zcor_df(ri=(1, "abc")), ri="ri", ni="ni", drop_missing=True),
         "column 'ri', row 2: value must be numeric, got 'abc'"),
        (lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[10, True]),
         "column 'ni', row 2: value must be numeric, got True"),
        (lambda: escalc("ZCOR", ri=np.array([True, False]), ni=[10, 10]),
         "column 'ri' must be numeric, got true/false values"),
        (lambda: escalc("ZCOR", pd.DataFrame({"r": [True, False], "n": [10, 10]}), ri="r",
                        ni="n"),
         "column 'r' must be numeric, got true/false values"),
        (lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[10, np.inf]),
         "column 'ni', row 2: value must be finite, got inf"),
        (lambda: escalc("ZCOR", ri=[0.1, 0.2], ni=[[10, 11], [12, 13]]),
         "column 'ni' must be one-dimensional, got shape (2, 2)"),
        # SMD
        (lambda: escalc("SMD", m1i=[1, 2], sd1i=[1, -1], n1i=[5, 5], m2i=[0, 0], sd2i=[1, 1],
                        n2i=[5, 5]),
         "column 'sd1i', row 2: standard deviation must be non-negative, got -1.0"),
        (lambda: escalc("SMD", m1i=[1, 2], sd1i=[1, 1], n1i=[5, 5], m2i=[0, 0], sd2i=[1, 1],
                        n2i=[5, 0]),
         "column 'n2i', row 2: group size must be positive, got 0"),
        (lambda: escalc("SMD", m1i=[1, 2], sd1i=[1, 1], n1i=[5, 2], m2i=[0, 0], sd2i=[1, 1],
                        n2i=[5, 1]),
         ("columns 'n1i' and 'n2i', row 2: total sample size n1i + n2i must be greater than 3 for "
         "SMD (the correction factor needs n1i + n2i - 2 > 1), got 3")),
        (lambda: escalc("SMD", m1i=[1, 2], sd1i=[1, 0], n1i=[5, 5], m2i=[0, 0], sd2i=[1, 0],
                        n2i=[5, 5]),
         ("columns 'sd1i' and 'sd2i', row 2: the pooled standard deviation is 0, so SMD is "
         "undefined (sd1i = 0.0, sd2i = 0.0)")),
        (lambda: escalc("SMD", pd.DataFrame({"m_t": [1.0], "s_t": [2.0], "n_t": [1],
                                             "m_c": [0.0], "s_c": [0.0], "n_c": [9]}),
                        m1i="m_t", sd1i="s_t", n1i="n_t", m2i="m_c", sd2i="s_c", n2i="n_c"),
         ("columns 's_t' and 's_c', row 1: the pooled standard deviation is 0, so SMD is "
         "undefined (sd1i = 2.0, sd2i = 0.0)")),
        # OR
        (lambda: escalc("OR", ai=[1, -1], bi=[2, 2], ci=[1, 1], di=[3, 3]),
         "column 'ai', row 2: counts must be non-negative, got -1"),
        (lambda: escalc("OR", pd.DataFrame({"ev": [1, 12], "n": [10, 10], "c": [2, 2],
                                            "m": [10, 10]}),
                        ai="ev", n1i="n", ci="c", n2i="m"),
         "column 'ev', row 2: count must not exceed the group size in column 'n' (10), got 12"),
        (lambda: escalc("OR", ai=[1, 3], bi=[9, 8], n1i=[10, 10], ci=[1, 1], di=[3, 3]),
         "column 'n1i', row 2: group size must equal ai + bi = 11, got 10"),
        (lambda: escalc("OR", ai=[1, 0], n1i=[10, 0], ci=[1, 1], n2i=[3, 3]),
         "column 'n1i', row 2: group size must be positive, got 0"),
        (lambda: escalc("OR", ai=[1, 2], bi=[2, 2], ci=[1, 0], di=[3, 0]),
         "columns 'ci' and 'di', row 2: group size ci + di must be positive, got 0"),
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
    with pytest.warns(DataWarning, match=re.escape(
            "escalc('OR'): yi/vi are infinite or undefined for row 2")):
        got = escalc("OR", ai=[2, 0], bi=[8, 10], ci=[4, 4], di=[6, 6], to="none")
    assert np.isfinite(got["yi"].iloc[0]) and np.isnan(got["yi"].iloc[1])
    assert np.isnan(got["vi"].iloc[1])


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: rtoz([0.2, 1.5]),
         "argument 'r', element 2: correlation must be between -1 and 1, got 1.5"),
        (lambda: rtoz(-1.01), "argument 'r': correlation must be between -1 and 1, got -1.01"),
        (lambda: ztor("abc"), "argument 'z': value must be numeric, got 'abc'"),
        (lambda: ztor([0.1, None, "x"]), ("argument 'z', element 3: value must be numeric, "
                                         "got 'x'")),
        (lambda: r_from_t(2.0, 0), "argument 'df': degrees of freedom must be positive, got 0.0"),
        (lambda: r_from_t(np.inf, 10), "argument 't': t statistic must be finite, got inf"),
        (lambda: r_from_f(-1.0, 10), ("argument 'F': F statistic must be finite and >= 0, "
                                     "got -1.0")),
        (lambda: r_from_f(4.0, 10, sign=0), "argument 'sign': sign must be +1 or -1, got 0.0"),
        (lambda: r_from_d(0.5, n1=10),
         "give both n1 and n2, or neither (equal group sizes, a = 4)"),
        (lambda: r_from_d(0.5, 10, 0), ("argument 'n2': group size must be positive and finite, "
                                       "got 0.0")),
        (lambda: d_from_r([0.5, -2.0]), ("argument 'r', element 2: correlation must be between "
                                        "-1 and 1, got -2.0")),
        (lambda: ztor_int(0.5, -0.1), ("argument 'vi_total': variance must be finite and >= 0, "
                                      "got -0.1")),
        (lambda: ztor_int(0.5, 0.1, n_points=1), "n_points=1: must be None or an integer >= 2"),
        (lambda: ztor_int(0.5, 0.1, n_points=10.5), ("n_points=10.5: must be None or an integer "
                                                    ">= 2")),
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
