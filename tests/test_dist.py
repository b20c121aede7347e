"""The distribution functions of mlmeta.core.dist against scipy.special (which large arrays
use directly): the small-input path must give the same numbers. Where the two disagree, mpmath
at 40 digits decides: mlmeta must then be the accurate one (scipy's cephes routines lose digits
deep in the tails, e.g. fdtrc near 1e-271)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from mlmeta.core import dist

DF = st.one_of(
    st.floats(0.05, 5.0),
    st.floats(5.0, 300.0),
    st.floats(300.0, 1e5),
    st.integers(1, 1000).map(float),
)
X = st.floats(-60.0, 60.0)
Q = st.one_of(st.floats(1e-100, 1e-10), st.floats(1e-10, 0.999999), st.floats(0.5, 1 - 1e-12))


def close(got, want, rtol, atol=1e-300):
    assert np.isfinite(got) == np.isfinite(want), (got, want)
    if np.isfinite(want):
        assert got == pytest.approx(want, rel=rtol, abs=atol), (got, want)


@settings(max_examples=300, deadline=None)
@given(x=X, df=DF)
def test_t_sf(x, df):
    # near 0.5 scipy itself is accurate to ~1e-10 absolute only (Cauchy: 0.5 - atan(x)/pi)
    close(dist.t_sf(x, df), special.stdtr(df, -x), 1e-10, 1e-9 if abs(x) < 1e-6 else 1e-300)


@settings(max_examples=300, deadline=None)
@given(q=Q, df=st.one_of(st.floats(1.0, 5.0), st.floats(5.0, 300.0), st.floats(300.0, 1e5)))
def test_t_isf(q, df):
    close(dist.t_isf(q, df), -special.stdtrit(df, q), 1e-10, 1e-12)


@settings(max_examples=300, deadline=None)
@given(x=st.floats(0.0, 2000.0), df=DF)
def test_chi2_sf(x, df):
    close(dist.chi2_sf(x, df), special.chdtrc(df, x), 1e-10)


@settings(max_examples=200, deadline=None)
@given(q=Q, df=st.floats(0.2, 2000.0))
def test_chi2_isf(q, df):
    # near q = 1 the lower tail 1 - q is known only to ~1e-16 absolute (q's own rounding):
    # the quantile is then determined to ~1e-16 / (1 - q) relative, by any method
    rtol = max(1e-10, 4e-16 / (1.0 - q) / df) if q > 0.5 else 1e-10
    close(dist.chi2_isf(q, df), special.chdtri(df, q), rtol)


def f_sf_exact(x, d1, d2):
    """P(F > x) = I_z(d2/2, d1/2), z = d2 / (d2 + d1 x), at 40 significant digits."""
    with mpmath.workdps(40):
        z = mpmath.mpf(d2) / (mpmath.mpf(d2) + mpmath.mpf(d1) * mpmath.mpf(x))
        return float(mpmath.betainc(mpmath.mpf(d2) / 2, mpmath.mpf(d1) / 2, 0, z, regularized=True))


@settings(max_examples=300, deadline=None)
@given(x=st.floats(0.0, 500.0), d1=DF, d2=DF)
def test_f_sf(x, d1, d2):
    got, want = dist.f_sf(x, d1, d2), special.fdtrc(d1, d2, x)
    if not (np.isfinite(want) and got == pytest.approx(want, rel=1e-9, abs=1e-300)):
        want = f_sf_exact(x, d1, d2)
    close(got, want, 1e-9)


def test_f_sf_deep_tail_is_exact_where_scipy_is_not():
    # regression: CI drew x = 142, F(72, 458); scipy.special.fdtrc gives 6.777186548961e-271,
    # mpmath 6.7771865391637965e-271: the continued fraction must keep its ~1e-14 accuracy
    got = dist.f_sf(142.0, 72.0, 458.0)
    assert got == pytest.approx(6.7771865391637965e-271, rel=1e-12)
    assert got == pytest.approx(f_sf_exact(142.0, 72.0, 458.0), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(x=st.floats(-37.0, 37.0), q=Q)
def test_normal(x, q):
    # erfc(x / sqrt 2): the rounding of the argument costs ~2 x^2 ulp far in the tail
    close(dist.norm_sf(x), special.ndtr(-x), 1e-13 * max(1.0, x * x))
    close(dist.norm_isf(q), -special.ndtri(q), 1e-12)


def test_edges_and_shapes():
    assert np.isnan(dist.t_sf(1.0, -1.0)) and np.isnan(dist.t_isf(1.5, 3.0))
    assert dist.t_isf(0.0, 3.0) == np.inf and dist.chi2_sf(0.0, 2.0) == 1.0
    assert dist.t_sf(np.inf, 4.0) == 0.0 and dist.t_sf(2.0, np.inf) == pytest.approx(
        special.ndtr(-2.0), rel=1e-14
    )
    out = dist.t_isf(np.array([0.025, 0.005]), np.array([[10.0], [20.0]]))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, -special.stdtrit([[10.0], [20.0]], [0.025, 0.005]), rtol=1e-12)
    big = np.linspace(-5, 5, dist.SMALL + 1)
    np.testing.assert_array_equal(dist.t_sf(big, 7.0), special.stdtr(7.0, -big))
    assert isinstance(dist.t_sf(1.0, 3.0), np.floating)
