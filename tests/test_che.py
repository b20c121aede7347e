"""CHE working model (correlated sampling errors within clusters): the dense per-cluster engine.

Reference values against metafor's vcalc + rma.mv are in tests/fixtures/reference_extra (see
test_reference_extra.py); here: the dense engine equals the O(k) nested engine when rho = 0,
its derivatives are exact, and the rho sweep behaves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REF

from mlmeta import rma_mv
from mlmeta.analyses.che import rho_sweep, vcalc
from mlmeta.core.fit import make_problem
from mlmeta.errors import InputError


@pytest.fixture(scope="module")
def alliance():
    return pd.read_csv(REF / "data" / "alliance_like.csv")


@pytest.mark.parametrize("mods", [None, "~ phase", "~ rater"])
def test_rho_zero_equals_nested_model(alliance, mods):
    a = rma_mv(alliance, random="study/es", mods=mods, test="t", dfs="contain")
    b = rma_mv(alliance, random="study/es", mods=mods, test="t", dfs="contain", rho=0.0)
    np.testing.assert_allclose(b.core.sigma2, a.core.sigma2, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(b.core.beta, a.core.beta, rtol=1e-9)
    np.testing.assert_allclose(b.tests.se, a.tests.se, rtol=1e-8)
    assert b.core.ll == pytest.approx(a.core.ll, rel=1e-12)
    assert b.QE == pytest.approx(a.QE, rel=1e-12)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_dense_derivatives_match_finite_differences(alliance, method):
    y = alliance["yi"].to_numpy()
    v = alliance["vi"].to_numpy()
    X = np.column_stack([np.ones(len(y)), (alliance["phase"] == "late").to_numpy(float)])
    _, rc = np.unique(alliance["study"], return_inverse=True)
    pr = make_problem(
        y,
        v,
        X,
        [alliance["study"].to_numpy(), alliance["es"].to_numpy()],
        method,
        rho=0.6,
        rho_codes=rc,
    )
    th = np.array([0.004, 0.003])
    ev = pr(th, 2)
    h = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        gp, gm = pr(th + e, 1), pr(th - e, 1)
        assert ev.grad[j] == pytest.approx((gp.ll - gm.ll) / (2 * h), rel=1e-6)
        np.testing.assert_allclose(ev.hess[:, j], (gp.grad - gm.grad) / (2 * h), rtol=1e-5)


def test_vcalc_blocks(alliance):
    blocks = vcalc(alliance["vi"], alliance["study"], 0.5)
    assert len(blocks) == alliance["study"].nunique()
    rows, V = blocks[0]
    v = alliance["vi"].to_numpy()[rows]
    assert np.allclose(np.diag(V), v)
    if len(rows) > 1:
        assert V[0, 1] == pytest.approx(0.5 * np.sqrt(v[0] * v[1]))
    with pytest.raises(InputError, match="rho must be strictly between -1 and 1"):
        vcalc(alliance["vi"], alliance["study"], 1.0)


def test_rho_sweep_table(alliance):
    res = rma_mv(alliance, random="study/es", test="t", dfs="contain")
    tab = rho_sweep(res, rhos=(0.0, 0.5, 0.9))
    assert list(tab["rho"]) == [0.0, 0.5, 0.9]
    assert tab["beta"].iloc[0] == pytest.approx(res.core.beta[0], rel=1e-9)
    one = rma_mv(alliance, random="study/es", test="t", dfs="contain", rho=0.5)
    assert tab["beta"].iloc[1] == pytest.approx(one.core.beta[0], rel=1e-9)
    assert tab["sigma2_study"].iloc[1] == pytest.approx(one.core.sigma2[0], rel=1e-7, abs=1e-12)
    # more assumed sampling correlation moves variance from the study level to the es level
    assert tab["sigma2_study"].iloc[2] < tab["sigma2_study"].iloc[0]


def test_rho_needs_cluster_without_random_effects(alliance):
    with pytest.raises(InputError, match="rho needs rho_cluster="):
        rma_mv(alliance, random=None, rho=0.5)
    res = rma_mv(alliance, random=None, rho=0.5, rho_cluster="study")
    assert np.isfinite(res.core.beta[0])
