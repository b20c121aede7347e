"""Extra metafor/clubSandwich reference cases (scripts/make_reference_extra.R): the CHE working
model (vcalc + rma.mv, CR2, I2 with W = V^{-1}, a rho sweep) and hard cases for reliability
(near-zero sigma2, vi over 8 orders of magnitude, one dominant study, a study with 500 effect
sizes, 100,000 single-effect studies). Aggregated publication-bias cases: test_pubbias.py."""

from __future__ import annotations

import warnings

import pytest
from conftest import CORE_KEYS, REF_EXTRA, case_data, case_files, compare, load_case, tolerance

from mlmeta import rma_mv
from mlmeta.analyses.che import rho_sweep

CASES = case_files(REF_EXTRA)


def fit_case(case):
    V = case.get("V") or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rma_mv(
            case_data(case, REF_EXTRA),
            case["yi"],
            case["vi"],
            random="/".join(case["random"]) or None,
            mods=case["mods"],
            method=case["method"],
            test=case["test"],
            dfs=case["dfs"],
            rho=V.get("rho"),
            rho_cluster=V.get("cluster"),
            measure=_measure(case),
        )


def _measure(case):
    esc = case.get("escalc") or (case.get("preprocess") or {}).get("escalc") or {}
    return esc.get("measure")


def test_extra_grid_is_complete():
    names = {p.stem for p in CASES}
    assert {
        "che_alliance_like_t",
        "che_alliance_like_phase_t",
        "che_assink2016_t",
        "che_konstantopoulos2011_t",
        "hard_big_cluster",
        "hard_dominant_study",
        "hard_many_studies",
        "hard_near_zero_sigma2",
        "hard_vi_range",
        "agg_alliance_like_z",
        "agg_assink2016_z",
        "agg_konstantopoulos2011_z",
    } <= names


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_extra_case_matches_metafor(path):
    case = load_case(path)
    res = fit_case(case)
    assert res.converged
    blocks = tuple(b for b in ("I2", "robust_cr2") if b in case["expect"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = res.to_dict(blocks)
    diffs = []
    for key in CORE_KEYS + list(blocks):
        if key in case["expect"]:
            rel, abs_ = tolerance(case, key)
            compare(case["expect"][key], got.get(key), rel, abs_, key, diffs)
    assert not diffs, "; ".join(diffs[:5])


def test_rho_sweep_matches_metafor():
    case = load_case(REF_EXTRA / "cases" / "che_alliance_like_t.json")
    exp = case["expect"]["rho_sweep"]
    res = rma_mv(
        case_data(case, REF_EXTRA),
        case["yi"],
        case["vi"],
        random="/".join(case["random"]) or None,
        test=case["test"],
        dfs=case["dfs"],
    )
    tab = rho_sweep(res, rhos=[e["rho"] for e in exp])
    rel, abs_ = tolerance(case)
    s2cols = [f"sigma2_{n}" for n in res.level_names]
    for e, (_, row) in zip(exp, tab.iterrows()):
        got = {
            "rho": row["rho"],
            "beta": [row["beta"]],
            "se": [row["se"]],
            "ci_lb": [row["ci_lb"]],
            "ci_ub": [row["ci_ub"]],
            "sigma2": [row[c] for c in s2cols],
        }
        diffs = compare(e, got, rel, abs_, f"rho={e['rho']}")
        assert not diffs, "; ".join(diffs)
