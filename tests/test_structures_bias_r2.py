"""R², the multilevel Egger test and the aggregated publication-bias analyses of models with
general random-effects structures, against metafor 3.8-1 and clubSandwich 0.5.8
(tests/fixtures/reference_structures_r2/, written by scripts/make_reference_structures_r2.R).

Tolerances: estimates, SEs, test statistics and p-values rel 1e-5 (abs 1e-7), as the structures
reference cases. A pseudo-R² divides the difference of two fits' variance components, which
magnifies the optimisers' last digits, so the variance components of both fits are compared at
rel 1e-5 and the R² themselves (proportions) at abs 1e-5: |dR²| <= (1 - R²)(rel. error of the
full fit's + of the null fit's component), and metafor's nlminb reports false convergence on
some of these fits (the script then uses bobyqa, whose components agree with mlmeta's to ~1e-6
relative, e.g. lim2014: R² of phylo differs by 1e-6). The aggregated analyses follow
tests/test_pubbias.py: the tightly converged metafor fits, rel 1e-5.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import compare
from test_structures_api import case_args

from mlmeta.cli import _fit_from_args, build_parser
from mlmeta.errors import InputError

HERE = Path(__file__).resolve().parent
CASES = HERE / "fixtures" / "reference_structures" / "cases"
R2DIR = HERE / "fixtures" / "reference_structures_r2"
NAMES = sorted(p.stem for p in R2DIR.glob("*.json"))
REL, ABS = 1e-5, 1e-7
R2_ABS = 1e-5
_FITS: dict = {}


def fitted(name: str):
    if name not in _FITS:
        case = json.loads((CASES / f"{name}.json").read_text())
        ref = json.loads((R2DIR / f"{name}.json").read_text())
        args = build_parser().parse_args(case_args(case)[:-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = (case, ref, _fit_from_args(args))
    return _FITS[name]


def check(exp, got, what, rel=REL, abs_=ABS):
    diffs = compare(exp, got, rel, abs_, what)
    assert not diffs, "; ".join(diffs)


def test_the_fixture_set_covers_crossed_phylo_and_inner_outer_terms():
    assert NAMES == [
        "berkey1998_un_t",
        "crossed_lab_mods_t",
        "lim2014_phylo_env_z",
        "multivar_labs_t",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_proportional_r2_matches_metafor(name):
    _, ref, res = fitted(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = res.r2()
        null = res.refit(design=(np.ones((res.k, 1)), ["intrcpt"]), mods=None, warm=False)
    for comp in ("sigma2", "tau2", "gamma2"):
        for fit, key in ((res, "fit"), (null, "null")):
            got = getattr(fit, comp)
            exp = ref[key][comp]
            assert (got is None or len(got) == 0) == (exp is None), (key, comp)
            if exp is not None:
                check(exp, [float(x) for x in got], f"{key}.{comp}")
    d = r2.to_dict()
    check(ref["r2"]["sigma2_null"], d["sigma2_null"], "sigma2_null")
    check(ref["r2"]["levels"], d["levels"], "levels", rel=0, abs_=R2_ABS)
    check(ref["r2"]["total"], d["total"], "total", rel=0, abs_=R2_ABS)
    assert len(r2.levels) == len(ref["r2"]["levels"])


def test_r2_of_a_tau2_per_inner_level_sums_their_mean():
    _, ref, res = fitted("berkey1998_un_t")
    r2 = res.r2()
    assert list(r2.levels.index) == ["tau2[AL]", "tau2[PD]"]
    t1, t0 = res.tau2.to_numpy(), r2.sigma2_null.to_numpy()
    assert r2.total == pytest.approx((t0.mean() - t1.mean()) / t0.mean(), rel=1e-12)
    assert r2.total == pytest.approx(ref["r2"]["total"], abs=R2_ABS)


@pytest.mark.parametrize(
    "name",
    [n for n in NAMES if json.loads((R2DIR / f"{n}.json").read_text())["r2_marginal"] is not None],
)
def test_marginal_r2_matches_the_definition_computed_in_r(name):
    _, ref, res = fitted(name)
    m = res.r2(kind="marginal")
    exp = ref["r2_marginal"]
    check(exp["var_fixed"], m.var_fixed, "var_fixed")
    check(exp["R2_marginal"], m.marginal, "R2_marginal")
    check(exp["R2_conditional"], m.conditional, "R2_conditional")
    check(exp["sigma2"], [float(x) for x in m.sigma2], "sigma2")
    assert m.residual_level == exp["residual_level"]
    if res.tau2 is None:  # without tau2 the marginal R2 is orchaRd's r2_ml exactly
        check(exp["orchard"]["R2_marginal"], m.marginal, "orchard R2_marginal")


def test_marginal_r2_of_crossed_terms_takes_the_observation_level_as_residual():
    _, ref, res = fitted("crossed_lab_mods_t")
    m = res.r2(kind="marginal")
    assert m.residual_level == "study/es"
    # orchaRd's r2_ml takes the last sigma2 (lab here), which gives a different conditional R2
    assert abs(m.conditional - ref["r2_marginal"]["orchard"]["R2_conditional"]) > 0.05


@pytest.mark.parametrize("name", ["berkey1998_un_t", "multivar_labs_t"])
def test_marginal_r2_without_a_sigma2_is_refused(name):
    _, ref, res = fitted(name)
    assert ref["r2_marginal"] is None
    with pytest.raises(InputError, match="residual level"):
        res.r2(kind="marginal")


@pytest.mark.parametrize("name", NAMES)
def test_egger_matches_metafor_and_clubsandwich(name):
    case, ref, res = fitted(name)
    exp = ref["egger"]
    robust = "robust" in exp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eg = res.egger(robust=robust)
    d = eg.to_dict()
    for key in ("coef", "se", "stat", "pval"):
        check(exp[key], d[key], key)
    assert d["df"] == exp["df"]
    if robust:
        for key in ("se", "stat", "df", "pval"):
            check(exp["robust"][key], d["robust"][key], f"robust.{key}")
    assert eg.predictor == "sei"
    # "se" and "sei" name the same predictor
    assert res.egger(predictor="se").coef == eg.coef


def test_robust_egger_of_crossed_terms_needs_a_containing_cluster():
    _, _, res = fitted("crossed_lab_mods_t")
    with pytest.raises(InputError, match="no single outer factor"):
        res.egger(robust=True)
    with pytest.raises(InputError, match="cuts through"):
        res.egger(robust=True, cluster="study")


@pytest.mark.parametrize("name", NAMES)
def test_aggregated_bias_matches_metafor(name):
    _, ref, res = fitted(name)
    exp = ref["aggregated"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = res.aggregated_bias(rho=exp["rho"], cluster=exp["cluster"])
    agg = got["aggregate"]
    assert [str(x) for x in agg["cluster"]] == [str(x) for x in exp["aggregate"]["cluster"]]
    check(exp["aggregate"]["yi"], agg["yi"].tolist(), "agg.yi", rel=1e-9)
    check(exp["aggregate"]["vi"], agg["vi"].tolist(), "agg.vi", rel=1e-9)
    for block in ("rma_agg", "ranktest", "trimfill", "selmodel", "regtest"):
        for key, val in exp[block].items():
            g = got[block][key]
            if isinstance(val, str):
                assert g == val, (block, key)
                continue
            g = [float(x) for x in g] if isinstance(g, (list, np.ndarray)) else g
            check(val, g, f"{block}.{key}")


def test_aggregated_bias_of_crossed_terms_needs_a_cluster():
    _, _, res = fitted("crossed_lab_mods_t")
    with pytest.raises(InputError, match="give cluster="):
        res.aggregated_bias()
    # with a default cluster, cluster= is optional and the same
    _, _, ml = fitted("multivar_labs_t")
    assert ml.default_cluster() == "lab"
    a = ml.aggregated_bias(rho=0.5)
    b = ml.aggregated_bias(rho=0.5, cluster="lab")
    assert a["regtest"]["coef"] == b["regtest"]["coef"]


# --------------------------------------------------------------------------------------------
# the report of a crossed model
# --------------------------------------------------------------------------------------------
CROSSED_TOML = """title = "Crossed labs"

[data]
file = {csv}
study = "study"

[effect]
yi = "yi"
vi = "vi"

[model]
random = ["~ 1 | study/es", "~ 1 | lab"]
method = "REML"
test = "t"
moderators = ["dose"]

[analyses]
profile = false
lrt = false
robust = true
loo = false
influence = false
bias = true
che_sweep = false
figures = false
"""


CROSSED_CSV = HERE / "fixtures" / "reference_structures" / "data" / "crossed_lab.csv"


def run_report(tmp_path, text: str):
    """``mlmeta run`` on an analysis file; its folder and results.json."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from mlmeta.cli import main

    toml = tmp_path / "analysis.toml"
    toml.write_text(text, encoding="utf-8")
    out = tmp_path / "report"
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["run", str(toml), "--out", str(out), "--quiet"]) == 0, err.getvalue()
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_report_of_a_crossed_model_shows_r2_egger_and_aggregated_analyses(tmp_path):
    import pandas as pd

    from mlmeta import rma_mv

    out, got = run_report(tmp_path, CROSSED_TOML.format(csv=json.dumps(str(CROSSED_CSV))))
    d = pd.read_csv(CROSSED_CSV)
    random = ["~ 1 | study/es", "~ 1 | lab"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = rma_mv(d, "yi", "vi", random=random, mods="~ dose").r2()
        res = rma_mv(d, "yi", "vi", random=random, test="t")
        eg = res.egger()
        agg = res.aggregated_bias(rho=0.0, cluster="study")
    # R2 of the moderator: every level, with study/es not applicable (dose is a study-level
    # moderator) and the crossed lab level applicable
    mr2 = got["moderators"][0]["R2"]
    assert list(mr2["levels"]) == ["study", "study/es", "lab"]
    check(list(r2.levels), list(mr2["levels"].values()), "R2 levels", rel=1e-6, abs_=1e-8)
    check(r2.total, mr2["total"], "R2 total", rel=1e-6, abs_=1e-8)
    assert mr2["applicable"] == {"study": True, "study/es": False, "lab": True}
    # Egger: the model-based test; CR2 explained as unavailable (no cluster contains labs)
    e = got["bias"]["egger"]
    check(eg.coef, e["coef"], "egger coef")
    check(eg.pval, e["pval"], "egger pval")
    assert e["df"] == eg.df == 59
    assert e["robust"]["available"] is False and "no single outer factor" in e["robust"]["reason"]
    # aggregated within studies (data.study), rho = 0 as the model
    a = got["bias"]["aggregated"]
    assert a["available"] is True and a["n_aggregated"] == 24
    check(agg["rma_agg"]["beta"], a["rma_agg"]["beta"], "rma_agg beta")
    check(agg["trimfill"]["beta"], a["trimfill"]["beta"], "trimfill beta")
    check(agg["ranktest"]["pval"], a["ranktest"]["pval"], "ranktest pval")
    check(agg["selmodel"]["LRT"], a["selmodel"]["LRT"], "selmodel LRT")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "R² per level: study: no variance explained; study/es not applicable" in md
    assert "lab 0.1%" in md
    assert "Multilevel Egger regression test" in md and "b = 0.190, SE = 0.824" in md
    assert "Effects aggregated within studies" in md and "24 studies" in md
    assert "not available yet" not in md


def test_report_aggregates_within_the_declared_cluster(tmp_path):
    import pandas as pd

    from mlmeta import rma_mv

    text = CROSSED_TOML.format(csv=json.dumps(str(CROSSED_CSV))).replace(
        'moderators = ["dose"]', 'moderators = ["dose"]\ncluster = "lab"'
    )
    out, got = run_report(tmp_path, text)
    a = got["bias"]["aggregated"]
    assert a["cluster"] == "lab" and a["n_aggregated"] == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rma_mv(pd.read_csv(CROSSED_CSV), "yi", "vi", random=["~ 1 | study/es", "~ 1 | lab"])
        # (every lab aggregate is significant, so aggregated_bias's selection model is refused;
        # the report gives the other analyses)
        with pytest.raises(InputError, match="intervals do not contain any observed p-values"):
            res.aggregated_bias(rho=0.0, cluster="lab")
    from mlmeta import pubbias

    codes, _ = res.cluster_codes("lab")
    ag = pubbias.aggregate(res.data.y, res.data.v, codes, 0.0)
    fit = pubbias.rma_uni(ag["yi"].to_numpy(), ag["vi"].to_numpy(), "REML")
    check(fit["beta"], a["rma_agg"]["beta"], "rma_agg beta")
    check(fit["tau2"], a["rma_agg"]["tau2"], "rma_agg tau2")
    assert a["selmodel"]["available"] is False
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Effects aggregated within clusters of lab" in md and "8 clusters of lab" in md
    assert "on the 8 cluster estimates" in md
