"""Profile-likelihood CIs, LRTs per term and I^2 of models with general random-effects structures.

Reference values: metafor 3.8-1's confint(fit, sigma2/tau2/rho/gamma2/phi = j) and
anova(full, reduced) per component or term, from scripts/make_reference_structures_profile.R
(tests/fixtures/reference_structures_profile/*.json) for the structures reference cases
(crossed_lab and multivar_labs are SIMULATED data).
"""

from __future__ import annotations

import io
import json
import math
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmeta
from mlmeta.analyses.profile_general import params
from mlmeta.cli import main
from mlmeta.core.dist import chi2_sf
from mlmeta.core.fit_general import fit_general
from mlmeta.errors import InputError, MlmetaWarning
from mlmeta.io.structures import read_R_csv, read_V_csv

CASES_DIR = Path(__file__).parent / "fixtures" / "reference_structures"
DATA = CASES_DIR / "data"
REF = Path(__file__).parent / "fixtures" / "reference_structures_profile"
REF_FILES = sorted(REF.glob("*.json"))
REL_CI = 1e-6  # metafor's bounds come from uniroot(tol = 1e-10) on refits converged to ~1e-12
ABS_CI = 1e-9


def case_kwargs(name: str) -> tuple[pd.DataFrame, dict]:
    """Data and rma_mv arguments of a case (its case file, or the definition the R script wrote
    into the fixture for the cases it defines itself)."""
    path = CASES_DIR / "cases" / f"{name}.json"
    if path.exists():
        c = json.loads(path.read_text())
    else:
        c = json.loads((REF / f"{name}.json").read_text())["definition"]
        if isinstance(c.get("struct"), str):
            c["struct"] = [c["struct"]]
    d = pd.read_csv(DATA / c["data"])
    kw = {
        "yi": c["yi"],
        "vi": c["vi"],
        "random": c["random_terms"],
        "method": c["method"],
        "test": c["test"],
        "dfs": c["dfs"],
        "mods": c["mods"],
    }
    if c.get("struct"):
        kw["struct"] = c["struct"]
    if c.get("R"):
        kw["R"] = {f: read_R_csv(DATA / fn) for f, fn in c["R"].items()}
    if c.get("V"):
        kw["V"] = read_V_csv(DATA / c["V"])
    if c.get("rho"):
        kw["rho"] = c["rho"]["value"]
        kw["rho_cluster"] = c["rho"]["cluster"]
    return d, kw


_FITS: dict = {}


def fitted(name: str):
    """(fit, profile CIs, their warnings, LRT table) of a case, computed once."""
    if name not in _FITS:
        d, kw = case_kwargs(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MlmetaWarning)
            res = mlmeta.rma_mv(d, **kw)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", MlmetaWarning)
            prof = res.profile_ci()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MlmetaWarning)
            lrt = res.lrt_drop()
        _FITS[name] = (res, prof, [str(x.message) for x in w], lrt)
    return _FITS[name]


def _label(r: dict, res) -> str:
    """metafor's row in mlmeta's naming (the nested engine names sigma2 rows by level)."""
    lab = r["component"]
    if lab.startswith("sigma2[") and not getattr(res, "is_structured", False):
        return lab[len("sigma2[") : -1]
    return lab


def test_the_fixture_set_is_complete():
    names = {p.stem for p in REF_FILES}
    assert names >= {
        "crossed_lab_t",
        "crossed_lab_ml_z",
        "berkey1998_un_t",
        "berkey1998_cs_t",
        "ishak2007_ar_t",
        "lim2014_phylo_t",
        "assink2016_che_t",
        "multivar_labs_t",
        "multivar_labs_har_z",
    }


# Where mlmeta differs from metafor, and why. metafor evaluates the profile of a UN correlation
# at rho = 1 with the other correlations free, accepting an indefinite G (multivar_labs_t at
# rho[anx-dep] = 1: rho[anx-str] = 0.586, rho[dep-str] = 0.369, logLik 8.259 > the cut-off 8.027,
# so its upper bound is 1). mlmeta keeps every UN G positive semidefinite (a covariance matrix):
# at rho = 1 that leaves only rho[anx-str] = rho[dep-str], where the refit fails, and the end of
# the searched interval moves a tenth of the way towards the estimate, as metafor moves it when
# its refit fails (eptries): the bound is 1 - (1 - rho) / 10 with the mark ">".
KNOWN = {("multivar_labs_t", "rho[anx-dep]", "ci_ub")}


@pytest.mark.parametrize("path", REF_FILES, ids=[p.stem for p in REF_FILES])
def test_profile_ci_matches_metafor(path):
    ref = json.loads(path.read_text())
    res, prof, warns, _ = fitted(ref["case"])
    assert abs(res.core.ll - ref["logLik"]) < 1e-8 * max(1.0, abs(ref["logLik"]))
    tab = prof.table
    want = [_label(r, res) for r in ref["profile_ci"]]
    assert [str(x) for x in tab.index] == want  # every estimated parameter, metafor's order
    for r in ref["profile_ci"]:
        row = tab.loc[_label(r, res)]
        assert row["estimate"] == pytest.approx(r["estimate"], rel=1e-5, abs=1e-8), r
        for b in ("ci_lb", "ci_ub"):
            if (ref["case"], r["component"], b) in KNOWN:
                assert r[b] == 1.0 and r["ub_sign"] == ""
                assert row[b] == pytest.approx(1 - (1 - r["estimate"]) / 10, rel=1e-6)
                assert row["ub_sign"] == ">"
                continue
            if r[b] is None:  # metafor could not obtain it: mlmeta says so too
                assert math.isnan(row[b])
                side = "lower" if b == "ci_lb" else "upper"
                assert any(f"{r['component']}: cannot obtain {side} bound" in w for w in warns)
            else:
                assert row[b] == pytest.approx(r[b], rel=REL_CI, abs=ABS_CI), (r, b, row[b])
        if "lb_sign" in tab.columns:
            assert row["lb_sign"] == r["lb_sign"], r
            if (ref["case"], r["component"], "ci_ub") not in KNOWN:
                assert row["ub_sign"] == r["ub_sign"], r


@pytest.mark.parametrize("path", REF_FILES, ids=[p.stem for p in REF_FILES])
def test_lrt_per_term_matches_metafor(path):
    ref = json.loads(path.read_text())
    res, _, _, lrt = fitted(ref["case"])
    t = lrt.table
    assert len(t) == len(ref["lrt"])
    for (_, row), r in zip(t.iterrows(), ref["lrt"]):
        if r["kind"] == "sigma2":
            assert r["dropped"] == f"sigma2[{row['level']}]"
        else:
            assert row["dropped"].replace(" ", "") == r["dropped"].replace(" ", "")
            assert row["kind"] == "inner_outer"
        assert row.get("kind", "sigma2") == r["kind"]
        assert row["df"] == r["df"]
        assert row["LRT"] == pytest.approx(r["LRT"], rel=1e-6, abs=1e-8)
        assert row["pval"] == pytest.approx(r["pval"], rel=1e-5, abs=1e-300)
        for key in ("logLik_reduced", "AIC_reduced", "BIC_reduced"):
            assert row[key] == pytest.approx(r[key], rel=1e-8, abs=1e-8), (r, key)
        # the 50:50 mixture only where one variance is tested at its boundary
        if r["df"] == 1:
            assert row["pval_mixture"] == pytest.approx(0.5 * r["pval"], rel=1e-5)
        else:
            assert math.isnan(row["pval_mixture"])


# --------------------------------------------------------------------------------------------
# I^2
# --------------------------------------------------------------------------------------------
def _typical_v(res) -> float:
    """(k - p) / tr(P), P = W - W X (X'W X)^-1 X'W, W = S^-1 dense."""
    pr = res.core.problem
    k = res.k
    S = np.zeros((k, k))
    for b in pr.batches:
        for rows, Sb in zip(b.rows, b.S):
            S[np.ix_(rows, rows)] = Sb
    W = np.linalg.inv(S)
    X = res.data.X
    P = W - W @ X @ np.linalg.solve(X.T @ W @ X, X.T @ W)
    return (k - X.shape[1]) / np.trace(P)


def test_i2_per_inner_level_follows_its_definition():
    res = fitted("berkey1998_un_t")[0]
    r = res.i2()
    tv = _typical_v(res)
    t2 = res.tau2.to_numpy()  # AL, PD; 5 trials with both outcomes: mean r = mean(tau2)
    assert r.typical_v == pytest.approx(tv, rel=1e-12)
    np.testing.assert_allclose(r.levels.to_numpy(), 100 * t2 / (t2 + tv), rtol=1e-12)
    assert r.total == pytest.approx(100 * t2.mean() / (t2.mean() + tv), rel=1e-12)
    assert list(r.levels.index) == ["tau2[AL]", "tau2[PD]"]
    assert r.to_dict()["names"] == ["tau2[AL]", "tau2[PD]"]
    assert r.levels.iloc[0] == pytest.approx(93.07407596, abs=1e-6)


def test_i2_of_single_variance_terms_is_the_faq_formula():
    res = fitted("multivar_labs_t")[0]  # UN tau2 per outcome + CS gamma2 (one)
    r = res.i2()
    tv = _typical_v(res)
    t2, g2 = res.tau2.to_numpy(), float(res.gamma2.iloc[0])
    out = res.data.frame["outcome"].to_numpy()
    lv = ["anx", "dep", "str"]
    rr = np.array([t2[lv.index(o)] for o in out]) + g2
    D = rr.mean() + tv
    assert r.levels["gamma2"] == pytest.approx(100 * g2 / D, rel=1e-12)
    for a, name in enumerate(lv):
        Da = rr[out == name].mean() + tv
        assert r.levels[f"tau2[{name}]"] == pytest.approx(100 * t2[a] / Da, rel=1e-12)
    assert r.total == pytest.approx(100 * rr.mean() / D, rel=1e-12)
    cs = fitted("berkey1998_cs_t")[0]
    tv = _typical_v(cs)
    t2 = float(cs.tau2.iloc[0])
    r = cs.i2()
    assert r.levels["tau2"] == pytest.approx(100 * t2 / (t2 + tv), rel=1e-12)
    assert r.total == pytest.approx(r.levels["tau2"], rel=1e-12)


def test_i2_with_ci_is_refused_in_one_line():
    res = fitted("berkey1998_cs_t")[0]
    with pytest.raises(InputError, match=r"^profile-likelihood CIs of I2 is not available yet"):
        res.i2(ci=True)


# --------------------------------------------------------------------------------------------
# the mechanics
# --------------------------------------------------------------------------------------------
def test_the_profile_at_a_bound_drops_by_the_chi2_quantile():
    res, prof, _, _ = fitted("berkey1998_un_t")
    ps = params(res)
    cut = res.core.ll - 0.5 * 3.841458820694124
    md = res.data
    for p in ps:
        for b in ("ci_lb", "ci_ub"):
            x = prof.table.loc[p.label, b]
            if prof.table.loc[p.label, "lb_sign" if b == "ci_lb" else "ub_sign"] or x in (
                -1.0,
                1.0,
                0.0,
            ):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MlmetaWarning)
                # warm from the estimates, as the profile is traced (cold starts can stop at a
                # lower local maximum of the UN likelihood)
                fit = fit_general(
                    md.y,
                    md.X,
                    md.S,
                    list(md.terms),
                    method="REML",
                    problem=res.core.problem,
                    hold={p.index: p.internal(x)},
                    start=res.core.theta,
                )
            assert fit.ll == pytest.approx(cut, abs=1e-9), (p.label, b)


def test_the_rho_bound_at_the_edge_is_reported_as_such():
    res, prof, _, _ = fitted("berkey1998_un_t")
    row = prof.table.loc["rho[AL-PD]"]
    assert row["ci_ub"] == 1.0 and row["ub_sign"] == ""  # the profile stays above the cut-off
    d = prof.to_list()
    assert d[2]["component"] == "rho[AL-PD]" and d[2]["ci_ub"] == 1.0


def test_components_selects_rows_by_position_or_label():
    res = fitted("berkey1998_cs_t")[0]
    full = fitted("berkey1998_cs_t")[1].table
    one = res.profile_ci(components=["rho"]).table
    assert math.isnan(one.loc["tau2", "ci_lb"])
    assert one.loc["rho", "ci_lb"] == pytest.approx(full.loc["rho", "ci_lb"], rel=1e-10)
    with pytest.raises(InputError, match=r"^no parameter 'phi'; the model has tau2, rho$"):
        res.profile_ci(components=["phi"])


def test_hold_errors_are_one_line():
    res = fitted("berkey1998_cs_t")[0]
    md = res.data
    with pytest.raises(InputError, match=r"^hold: no parameter 5 \(the model has 2\)$"):
        fit_general(md.y, md.X, md.S, list(md.terms), problem=res.core.problem, hold={5: 0.1})
    with pytest.raises(InputError, match=r"^hold: 1\.5 is outside \[-1\.0, 1\.0\]"):
        fit_general(md.y, md.X, md.S, list(md.terms), problem=res.core.problem, hold={1: 1.5})


def test_lrt_of_a_term_equals_the_fit_without_it():
    res = fitted("multivar_labs_t")[0]
    d, kw = case_kwargs("multivar_labs_t")
    kw.update(random=["~ outcome | lab"], struct=["CS"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        red = mlmeta.rma_mv(d, **kw)
    row = res.lrt_drop().table.iloc[0]
    assert row["logLik_reduced"] == pytest.approx(red.core.ll, abs=1e-9)
    assert row["df"] == 6  # three tau2 and three rho of the UN term
    assert row["pval"] == pytest.approx(float(chi2_sf(row["LRT"], 6)), rel=1e-12)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------
def test_cli_blocks_carry_the_new_rows():
    ref = json.loads((REF / "berkey1998_cs_t.json").read_text())
    args = [
        "fit",
        str(DATA / "berkey1998.csv"),
        "--yi",
        "yi",
        "--vi",
        "vi",
        "--random",
        "~ outcome | trial",
        "--struct",
        "CS",
        "--V",
        str(DATA / "berkey1998_V.csv"),
        "--mods",
        "~ 0 + outcome",
        "--test",
        "t",
        "--dfs",
        "contain",
        "--json",
        "--with",
        "profile_ci,lrt_drop,I2",
    ]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    assert code == 0, err.getvalue()
    d = json.loads(out.getvalue())
    assert "block_notes" not in d or not d["block_notes"]
    rows = d["profile_ci"]
    assert [r["component"] for r in rows] == ["tau2", "rho"]
    for got, r in zip(rows, ref["profile_ci"]):
        assert got["ci_lb"] == pytest.approx(r["ci_lb"], rel=REL_CI, abs=ABS_CI)
        assert got["ci_ub"] == pytest.approx(r["ci_ub"], rel=REL_CI, abs=ABS_CI)
    (lr,) = d["lrt_drop"]
    assert lr["df"] == 2 and lr["pval_mixture"] is None
    assert lr["LRT"] == pytest.approx(ref["lrt"][0]["LRT"], rel=1e-6)
    assert d["I2"]["names"] == ["tau2"] and len(d["I2"]["levels"]) == 1


def test_a_fixed_component_gets_no_interval_and_stays_fixed_in_the_refits():
    d, kw = case_kwargs("multivar_labs_har_z")
    kw["sigma2"] = [0.02]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        res = mlmeta.rma_mv(d, **kw)
        tab = res.profile_ci(components=["sigma2[study]", "rho"]).table
        lrt = res.lrt_drop().table
    assert tab.loc["sigma2[study]", "estimate"] == 0.02
    assert math.isnan(tab.loc["sigma2[study]", "ci_lb"])
    assert np.all(np.isnan(tab.loc[["tau2[anx]", "tau2[dep]", "tau2[str]"], "ci_lb"]))
    # the rho profile re-optimises the tau2 with sigma2 held at 0.02: the bound is where the
    # refit with both held drops by the chi2 quantile
    md = res.data
    x = tab.loc["rho", "ci_ub"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        fit = fit_general(
            md.y,
            md.X,
            md.S,
            list(md.terms),
            problem=res.core.problem,
            hold={0: 0.02, 4: float(x)},
            start=res.core.theta,
        )
    assert fit.ll == pytest.approx(res.core.ll - 0.5 * 3.841458820694124, abs=1e-9)
    assert 0.7 < x < 1
    # no LRT of a fixed component; the HAR term against the model without it
    assert lrt["kind"].tolist() == ["inner_outer"] and lrt["df"].iloc[0] == 4


# --------------------------------------------------------------------------------------------
# lower local maxima of the profile
# --------------------------------------------------------------------------------------------
def test_a_refit_started_at_the_end_of_the_interval_can_stay_on_a_lower_maximum():
    # multivar_labs_har_z at rho = 0.96: the refit started from the refit at rho = 1 (the end of
    # the searched interval) stays at a maximum ~12 below the one reached from the estimates,
    # which is why the profile is never traced warm from the end
    res = fitted("multivar_labs_har_z")[0]
    md = res.data
    p = next(q for q in params(res) if q.label == "rho")

    def refit(x, start):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MlmetaWarning)
            return fit_general(
                md.y,
                md.X,
                md.S,
                list(md.terms),
                method=res.core.method,
                problem=res.core.problem,
                hold={p.index: x},
                start=start,
            )

    end = refit(1.0, res.core.theta)
    assert end.ll == pytest.approx(-15.41675488, abs=1e-6)
    assert refit(0.96, end.theta).ll == pytest.approx(-15.41511105, abs=1e-6)
    assert refit(0.96, res.core.theta).ll == pytest.approx(-3.48380673, abs=1e-6)


def test_a_bound_traced_on_a_lower_maximum_is_caught_and_traced_again(monkeypatch):
    # every warm start forced to the refit at the end of the interval (the lower maximum above):
    # the refit from the estimates at the bound found finds a higher maximum, and the side is
    # traced again from both starts at every point -- the bounds stay metafor's
    from mlmeta.analyses import profile_general as pg

    res = fitted("multivar_labs_har_z")[0]
    ref = {
        r["component"]: r
        for r in json.loads((REF / "multivar_labs_har_z.json").read_text())["profile_ci"]
    }
    monkeypatch.setattr(
        pg._Trace, "_inside", lambda self, x: next(iter(self.theta.values()), res.core.theta)
    )
    checks: list[bool] = []
    verified = pg._Trace.verified

    def record(self, x):
        checks.append(verified(self, x))
        return checks[-1]

    monkeypatch.setattr(pg._Trace, "verified", record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        tab = res.profile_ci(components=["rho"]).table
    assert checks == [True, False]  # the upper bound was caught
    for b in ("ci_lb", "ci_ub"):
        assert tab.loc["rho", b] == pytest.approx(ref["rho"][b], rel=REL_CI, abs=ABS_CI)
    # without the check the upper bound would be the estimate (the lower maximum stays below
    # the cut-off all the way back)
    monkeypatch.setattr(pg._Trace, "verified", lambda self, x: True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        bad = res.profile_ci(components=["rho"]).table
    assert bad.loc["rho", "ci_ub"] < 0.8
