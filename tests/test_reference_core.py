"""Every core number of every reference case (metafor 3.8-1) through the Python API."""

from __future__ import annotations

import warnings

import pytest
from conftest import CORE_KEYS, case_data, case_files, compare, load_case, tolerance

from mlmeta import rma_mv

CASES = case_files()


def fit_case(case, df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rma_mv(
            df,
            case["yi"],
            case["vi"],
            random="/".join(case["random"]) or None,
            mods=case["mods"],
            method=case["method"],
            test=case["test"],
            dfs=case["dfs"],
            measure=(case.get("escalc") or {}).get("measure"),
        )


def test_reference_grid_is_complete():
    assert len(CASES) == 33
    names = {p.stem for p in CASES}
    assert {"alliance_like_t", "konstantopoulos2011_ml_z", "boundary_t", "molloy2014_ee_z"} <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_core_keys_match_metafor(path):
    case = load_case(path)
    res = fit_case(case, case_data(case))
    got = res.to_dict()
    assert list(res.coef_names) == case["coef_names"]
    rel, abs_ = tolerance(case)
    diffs = []
    for key in CORE_KEYS:
        if key in case["expect"]:
            compare(case["expect"][key], got.get(key), rel, abs_, key, diffs)
    assert not diffs, "; ".join(diffs[:5])
