"""A UN correlation matrix estimated on the boundary of the positive semidefinite cone
(singular): mlmeta maximises over the angles of its Cholesky factor (mlmeta.core.corr_angles)
and agrees with metafor (scripts/make_reference_un_boundary.R; SIMULATED data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mlmeta
from mlmeta.core.corr_angles import angles_from_corr, corr_from_angles
from mlmeta.examples import load_example

REF = json.loads(
    (
        Path(__file__).parent
        / "fixtures"
        / "reference_un_boundary"
        / "multivar_labs_without_S37.json"
    ).read_text()
)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_singular_un_estimate_matches_metafor(method):
    # regression: every Newton step from near the boundary left the cone, so the fit failed
    # ("line search found no ascent") where metafor returns a singular G
    d = load_example("multivar_labs").data
    res = mlmeta.rma_mv(
        d[d.study != "S37"],
        "yi",
        "vi",
        random=["~ outcome | study", "~ outcome | lab"],
        struct=["UN", "CS"],
        rho=0.5,
        rho_cluster="study",
        test="t",
        dfs="contain",
        method=method,
    )
    exp = REF[method]
    assert res.fitstats["logLik"] == pytest.approx(exp["logLik"], rel=1e-9)
    np.testing.assert_allclose(res.tau2, exp["tau2"], rtol=1e-5)
    np.testing.assert_allclose(res.rho, exp["rho"], rtol=1e-5)
    np.testing.assert_allclose(res.gamma2, [exp["gamma2"]], rtol=1e-5)
    np.testing.assert_allclose(res.phi, [exp["phi"]], rtol=1e-5)
    np.testing.assert_allclose(res.core.beta, exp["beta"], rtol=1e-6)
    np.testing.assert_allclose(res.tests.se, exp["se"], rtol=1e-5)
    dg = res.diagnostics()
    assert "the correlation matrix of ~ outcome | study is estimated singular" in dg.verdict
    assert dg.converged and "angles" in dg.optimizer


def test_angle_map_round_trips_and_spans_singular_matrices():
    rng = np.random.default_rng(5)
    for m in (2, 3, 4, 6):
        for _ in range(20):
            A = rng.normal(size=(m, m))
            C = A @ A.T
            dd = 1 / np.sqrt(np.diag(C))
            R = C * dd[:, None] * dd[None, :]
            rho = np.array([R[b, a] for a in range(m) for b in range(a + 1, m)])
            np.testing.assert_allclose(
                corr_from_angles(angles_from_corr(rho, m), m), rho, atol=1e-12
            )
        # any angles give a positive semidefinite matrix, singular ones included
        ang = rng.uniform(-4, 4, m * (m - 1) // 2)
        ang[-1] = 0.0  # the last row's diagonal entry is 0: singular
        r = corr_from_angles(ang, m)
        R = np.eye(m)
        for v, (a, b) in zip(r, [(i, j) for i in range(m) for j in range(i + 1, m)]):
            R[a, b] = R[b, a] = v
        ev = np.linalg.eigvalsh(R)
        assert ev[0] > -1e-12 and (m == 1 or ev[0] < 1e-12)
