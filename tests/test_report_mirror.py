"""Mirror property: replacing every effect size yi by -yi flips the sign of every estimate
in results.json (overall, moderators, CR2, leave-one-out, CHE sweep, Egger, PET-PEESE,
trim-and-fill, selection model, ...), swaps the limits of every interval and leaves every
p-value, standard error, variance component and test statistic of a two-sided test as it was.

The walk covers every number of results.json: each key is classified as flipping, swapping
with its partner, or invariant, and a number under an unknown key fails the test, so a new
estimate cannot be added to the report without saying how it behaves. The data are SIMULATED
(seeded) or the bundled examples.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmeta.io.analysis import parse_analysis
from mlmeta.report.compute import compute

#: keys whose numbers change sign
FLIP = {
    "estimate",
    "beta",
    "coef",
    "tval",
    "zval",
    "tau",
    "slope",
    "yi",
    "effect",
    "z",
    "resid",
    "pred",
    "beta_display",
    "yi_filled",
    "min_display",
    "max_display",
    "b",
}
#: pairs of keys that trade places
SWAP = {
    "ci_lb": "ci_ub",
    "pi_lb": "pi_ub",
    "ci_lb_display": "ci_ub_display",
    "min": "max",
    "min_left_out": "max_left_out",
}
SWAP.update({v: k for k, v in list(SWAP.items())})
#: keys whose numbers stay (p-values, SEs, variances, counts, two-sided statistics, ...)
SAME = {
    "pval",
    "se",
    "sigma2",
    "sigma2_null",
    "I2",
    "I2_ci",
    "I2_total",
    "I2_total_ci",
    "I2_sampling",
    "typical_v",
    "sigma2_ci",
    "QE",
    "QE_df",
    "QEp",
    "QM",
    "QM_df",
    "QMp",
    "df",
    "df1",
    "df2",
    "k",
    "p",
    "n",
    "n_levels",
    "n_groups",
    "logLik",
    "deviance",
    "AIC",
    "BIC",
    "AICc",
    "LRT",
    "LRT_df",
    "pval_mixture",
    "logLik_reduced",
    "vi",
    "vi_filled",
    "tau2",
    "se_tau2",
    "tau2_ci_lb",
    "tau2_ci_ub",
    "delta",
    "se_delta",
    "delta_ci_lb",
    "delta_ci_ub",
    "ll",
    "ll0",
    "LRT_tau2",
    "pval_tau2",
    "steps",
    "ptable",
    "k0",
    "se_k0",
    "value",
    "cutoff",
    "critical",
    "alpha",
    "rho",
    "rhos",
    "n_clusters",
    "n_studies",
    "n_aggregated",
    "rows_dropped",
    "k_all",
    "failed",
    "n_significant",
    "sign_changes",
    "stat_F",
    "levels",
    "total",
    "pval_beta",
    "p_from",
    "p_to",
    "n_above_1_96",
    "row",
    "group",
    "rows",
    "sum",
    "sum_of_study_max",
    "missing",
    "count",
    "slope_pval",
    "se_model_scale",
    "iterations",
    "gradient",
    "max_abs_gradient",
    "min_eigen",
    "condition",
    "sigma2_reduced",
    "fill",
    "exact",
    "level",
    "estimator",
    "converged",
    "es",
    "study",
    "cluster",
    "left_out",
    "chosen",
    "n_rows",
    "k_effects",
}
SKIP = {
    "timings",
    "settings",
    "software",
    "generator",
    "created",
    "command",
    "methods",
    "warnings",
    "other_warnings",
    "data",
    "title",
    "notice",
    "simulated",
    "figures",
    "studies",
    "apa",
    "robust_apa",
    "text",
    "QE_text",
    "pi_text",
    "reason",
    "rule",
    "why_undefined",
    "diagnostics",
    "model",
    "block",
}
WORDS = {
    "left": "right",
    "right": "left",
    "less": "greater",
    "greater": "less",
    "positive": "negative",
    "negative": "positive",
}


def _is_stat_of_f(d: dict) -> bool:
    return d.get("stat_name") in ("F", "QM")


def compare(a, b, path="", problems=None, key=None, parent=None, default=None):
    """Walk ``a`` (original) and ``b`` (mirrored); collect what breaks the mirror rule.

    ``default``: the rule of the enclosing key for numbers under keys of their own (a dict
    of per-level values such as R2 "levels" keyed by level name)."""
    problems = [] if problems is None else problems
    if isinstance(a, dict):
        for k in a:
            if k in SKIP:
                continue
            if k == "stat":
                rule = "same" if _is_stat_of_f(a) else "flip"
                _leaf(a[k], b.get(k), f"{path}.{k}", rule, problems)
            elif k in SWAP:
                _leaf(a[k], b.get(SWAP[k]), f"{path}.{k}", "swap", problems)
            elif isinstance(a[k], (dict, list)) and k not in FLIP | SAME:
                compare(a[k], b.get(k), f"{path}.{k}", problems, k, a)
            elif k in FLIP:
                _leaf(a[k], b.get(k), f"{path}.{k}", "flip", problems)
            elif k in SAME or k.startswith("sigma2_"):  # sigma2_<level> of the CHE sweep
                _leaf(a[k], b.get(k), f"{path}.{k}", "same", problems)
            elif isinstance(a[k], str):
                want = WORDS.get(a[k], a[k])
                if k in ("side", "alternative") and b.get(k) != want:
                    problems.append(f"{path}.{k}: {a[k]!r} -> {b.get(k)!r}")
            elif isinstance(a[k], (int, float)) and not isinstance(a[k], bool):
                if default is not None:
                    _leaf(a[k], b.get(k), f"{path}.{k}", default, problems)
                else:
                    problems.append(f"{path}.{k}: unclassified number")
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            problems.append(f"{path}: length differs")
            return problems
        for i, (x, y) in enumerate(zip(a, b)):
            compare(x, y, f"{path}[{i}]", problems, key, parent)
    return problems


def _leaf(x, y, path, rule, problems):
    if isinstance(x, list):
        if not isinstance(y, list) or len(x) != len(y):
            problems.append(f"{path}: shape")
            return
        for i, (u, v) in enumerate(zip(x, y)):
            _leaf(u, v, f"{path}[{i}]", rule, problems)
        return
    if isinstance(x, dict):
        compare(x, y if isinstance(y, dict) else {}, path, problems, default=rule)
        return
    if x is None or isinstance(x, (str, bool)):
        if x != y and not isinstance(x, str):
            problems.append(f"{path}: {x!r} vs {y!r}")
        return
    want = -x if rule in ("flip", "swap") and not path.endswith(("_left_out",)) else x
    if path.endswith("_left_out"):
        want = x
    if y is None or not math.isclose(float(want), float(y), rel_tol=2e-4, abs_tol=2e-6):
        problems.append(f"{path}: want {want!r}, got {y!r} ({rule})")


TOML = """title = "mirror"
simulated = true
[data]
file = "{csv}"
study = "study"
[effect]
yi = "yi"
vi = "vi"
measure = "{measure}"
[model]
random = "study/es"
moderators = [{mods}]
joint = {joint}
[analyses]
profile = {profile}
che_sweep = true
figures = false
che_rhos = [0, 0.5]
"""


def _numbers(tmp_path, df, name, measure="ZCOR", mods=("phase",), profile=True):
    csv = tmp_path / f"{name}.csv"
    df.to_csv(csv, index=False)
    text = TOML.format(
        csv=csv.as_posix(),
        measure=measure,
        mods=", ".join(f'"{m}"' for m in mods),
        joint="true" if len(mods) > 1 else "false",
        profile="true" if profile else "false",
    )
    import tomllib

    spec = parse_analysis(tomllib.loads(text), source=tmp_path / f"{name}.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute(spec).numbers


def _mirror(tmp_path, df, **kw):
    a = _numbers(tmp_path, df, "orig", **kw)
    b = _numbers(tmp_path, df.assign(yi=-df["yi"]), "mirror", **kw)
    return a, b


@pytest.mark.slow
def test_every_estimate_of_the_alliance_report_flips(tmp_path):
    """The bundled (SIMULATED) alliance example, with every analysis of the report."""
    import mlmeta

    d = mlmeta.load_example("alliance_like").data
    a, b = _mirror(
        tmp_path, d[["study", "es", "yi", "vi", "phase", "rater"]], mods=("phase", "rater")
    )
    problems = compare(a, b)
    assert not problems, "\n".join(problems[:30])
    # the sides used by the bias methods follow the data
    sa, sb = a["bias"]["aggregated"]["selmodel"], b["bias"]["aggregated"]["selmodel"]
    assert {sa["alternative"], sb["alternative"]} == {"less", "greater"}
    assert sa["bins"] == sb["bins"]
    assert (
        a["bias"]["aggregated"]["trimfill"]["side"] != b["bias"]["aggregated"]["trimfill"]["side"]
    )
    # and the walk did visit the estimates of every section
    for sec in ("overall", "moderators", "joint", "robust", "sensitivity", "bias", "che_sweep"):
        assert a[sec], sec


@st.composite
def datasets(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n_st = draw(st.integers(6, 12))
    rng = np.random.default_rng(seed)
    rows = []
    es = 0
    mu = draw(st.sampled_from([-0.3, 0.2, 0.5]))
    for s in range(n_st):
        u = rng.normal(0, 0.15)
        for _ in range(int(rng.integers(1, 4))):
            es += 1
            v = float(rng.uniform(0.005, 0.05))
            ph = "early" if rng.random() < 0.5 else "late"
            rows.append(
                {
                    "study": s + 1,
                    "es": es,
                    "vi": v,
                    "phase": ph,
                    "yi": mu
                    + 0.1 * (ph == "late")
                    + u
                    + rng.normal(0, 0.08)
                    + rng.normal(0, math.sqrt(v)),
                }
            )
    df = pd.DataFrame(rows)
    if df["phase"].nunique() < 2:
        df.loc[0, "phase"] = "late" if df.loc[0, "phase"] == "early" else "early"
    return df


@pytest.mark.slow
@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(df=datasets())
def test_mirror_property_on_simulated_data(tmp_path, df):
    """SIMULATED data sets (standardized mean differences): the whole report mirrors."""
    a, b = _mirror(tmp_path, df, measure="SMD", profile=False)
    problems = compare(a, b)
    assert not problems, "\n".join(problems[:30])
