"""Every optional block of every reference case (I2, profile CIs, LRTs, CR1/CR2, Egger,
leave-one-out, Cook's distances, standardized residuals) through the Python API.

R2 is special: it divides a difference of two fits' variance components, which magnifies how
precisely metafor's default optimiser converged (its sigma2 are accurate to ~1e-6 relative). It is
checked against metafor refitted with a tight optimiser (scripts/verify_tight_optimum.R), and
the default-optimiser reference values are shown to be a slightly worse optimum.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import HERE, case_data, case_files, compare, load_case, tolerance

from mlmeta import rma_mv
from mlmeta.analyses.blocks import compute_blocks

BLOCKS = [
    "I2",
    "profile_ci",
    "lrt_drop",
    "robust_cr2",
    "robust_cr1",
    "egger",
    "loo_cluster",
    "cooks_cluster",
    "rstandard",
]
PARAMS = []
for path in case_files():
    case = load_case(path)
    for b in BLOCKS:
        if b in case["expect"]:
            PARAMS.append(pytest.param(path, b, id=f"{path.stem}-{b}"))

_FITS = {}


def fitted(path):
    if path not in _FITS:
        case = load_case(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[path] = (
                case,
                rma_mv(
                    case_data(case),
                    case["yi"],
                    case["vi"],
                    random="/".join(case["random"]) or None,
                    mods=case["mods"],
                    method=case["method"],
                    test=case["test"],
                    dfs=case["dfs"],
                ),
            )
    return _FITS[path]


@pytest.mark.parametrize("path,block", PARAMS)
def test_block_matches_metafor(path, block):
    case, res = fitted(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compute_blocks(res, (block,))[block]
    rel, abs_ = tolerance(case, block)
    diffs = compare(case["expect"][block], got, rel, abs_, block)
    assert not diffs, "; ".join(diffs[:5])


TIGHT = json.loads((HERE / "fixtures" / "reference_tight" / "r2_tight.json").read_text())
R2_CASES = [p for p in case_files() if "R2" in load_case(p)["expect"]]


@pytest.mark.parametrize("path", R2_CASES, ids=[p.stem for p in R2_CASES])
def test_r2_matches_metafor_with_tight_optimiser(path):
    case, res = fitted(path)
    tight = TIGHT["cases"][case["case"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = res.r2()
    rel, abs_ = tolerance(case)
    diffs = compare(tight["R2"], r2.to_dict(), rel, abs_, "R2")
    diffs += compare(tight["sigma2_null"], list(r2.sigma2_null), rel, abs_, "sigma2_null")
    assert not diffs, "; ".join(diffs)
    # the default-optimiser reference R2 is exactly its own sigma2 formula ...
    ref = case["expect"]["R2"]
    s0 = np.array(ref["sigma2_null"])
    s1 = np.array(case["expect"]["sigma2"])
    np.testing.assert_allclose((s0 - s1) / s0, ref["levels"], rtol=1e-12)
    # ... and at mlmeta's estimates the restricted likelihood is at least as high as at
    # metafor's default ones (both models), so the difference is metafor's stopping rule
    problem = res.core.problem
    assert problem(res.core.sigma2, 0).ll >= problem(s1, 0).ll - 1e-12
    null_problem = r2_null_problem(res)
    assert null_problem(r2.sigma2_null.to_numpy(), 0).ll >= null_problem(s0, 0).ll - 1e-12


def r2_null_problem(res):
    from mlmeta.core.fit import make_problem

    return make_problem(res.data.y, res.data.v, np.ones((res.k, 1)), res.data.factors, res.method)


def test_r2_negative_is_flagged_not_truncated():
    path = [p for p in R2_CASES if p.stem == "assink2016_deltype_t"][0]
    _, res = fitted(path)
    with pytest.warns(Warning, match="pseudo-R2 is negative"):
        r2 = res.r2()
    assert r2.levels.iloc[0] < 0 and r2.negative


def test_lrt_reports_boundary_mixture_pvalue():
    path = [p for p in case_files() if p.stem == "konstantopoulos2011_t"][0]
    _, res = fitted(path)
    tab = res.lrt_drop().table
    np.testing.assert_allclose(tab["pval_mixture"], tab["pval"] / 2, rtol=1e-12)


def test_i2_konstantopoulos_matches_dmetar_var_comp():
    # dmetar's var.comp on konstantopoulos2011 (district/school): 95.19% total heterogeneity,
    # 63.32% level 3, 31.86% level 2, 4.81% sampling error.
    path = [p for p in case_files() if p.stem == "konstantopoulos2011_t"][0]
    _, res = fitted(path)
    i2 = res.i2()
    assert round(i2.total, 2) == 95.19
    assert [round(x, 2) for x in i2.levels] == [63.32, 31.86]
    assert round(i2.sampling, 2) == 4.81
