"""Power analysis (mlmeta.power): every POMADE reference case through the Python API and the
command line, independent checks of the formulas, property tests and every error message.

Reference values: tests/fixtures/power (R's POMADE 0.2.1.9000; see its README.md). Empirical
cases depend on R's random numbers: they are compared at the case's Monte Carlo tolerance with
the case's own --iterations and --seed.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from mlmeta.cli import main
from mlmeta.errors import InputError
from mlmeta.power import analytic as A
from mlmeta.power import api, mdes, min_studies, power, power_curve, power_section
from mlmeta.power.cli import read_values

matplotlib.use("Agg")

FIX = Path(__file__).parent / "fixtures" / "power"
CASES = json.loads((FIX / "cases.json").read_text())["cases"]
IDS = [c["case"] for c in CASES]


def exact(msg: str) -> str:
    return "^" + re.escape(msg) + "$"


def tol(case, key):
    t = case["tolerance"]
    t = t.get("by_field", {}).get(key, t)
    return float(t.get("rel", 0.0)), float(t.get("abs", 0.0))


def check(case, got: dict):
    for key, exp in case["expect"].items():
        rel, abs_ = tol(case, key)
        assert abs(got[key] - exp) <= max(abs_, rel * abs(exp)), (case["case"], key, got[key], exp)


def cli_value(case, flag):
    args = case["cli"]
    return args[args.index(flag) + 1] if flag in args else None


def api_run(case) -> dict:
    """The case through the Python API, with POMADE's arguments."""
    a = case["args"]
    kw = {
        "tau": a["tau"],
        "omega": a["omega"],
        "rho": a["rho"],
        "model": a["model"],
        "var_df": a["var_df"],
        "alpha": a["alpha"],
    }
    if case["kind"] == "fixed":
        kw.update(sigma2=a["sigma2j"], k=a["kj"], fixed_design=True)
    else:
        kw.update(sigma2=a["sigma2_dist"], k=a["n_ES_dist"])
    if case["kind"] == "empirical":
        kw.update(
            iterations=int(cli_value(case, "--iterations")), seed=int(cli_value(case, "--seed"))
        )
    if "mdes" in case["expect"]:
        return {"mdes": mdes(a["J"], target_power=a["target_power"], **kw).mdes}
    if "studies" in case["expect"]:
        kw.pop("fixed_design", None)
        return {"studies": min_studies(a["mu"], target_power=a["target_power"], **kw).studies}
    r = power(a["J"], a["mu"], **kw)
    return {"power": r.power, "df": r.df, "var_b": r.var_b}


def run_cli(args, capsys):
    code = main(["power", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_case_api(case):
    check(case, api_run(case))


CLI_SUBSET = [
    "bal_power_che_rve_J20",
    "bal_power_mlma_model_J10",
    "bal_power_che_satt_J80",
    "bal_mdes_che_rve_J30_doc",
    "bal_studies_ce_rve_doc_p70",
    "bal_studies_che_rve",
    "fix_power_che_satt_J20",
    "fix_power_mlma_rve_J10",
    "fix_power_ce_rve_J40_a01",
    "fix_mdes_che_rve_J20",
    "emp_power_che_rve_J40_pilot",
    "emp_power_che_rve_J20_paired",
]


@pytest.mark.parametrize("name", CLI_SUBSET)
def test_reference_case_cli(name, capsys):
    case = next(c for c in CASES if c["case"] == name)
    args = [a.replace("{dir}", str(FIX)) for a in case["cli"]]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    got = json.loads(out)
    check(case, got)
    assert got["target"] in ("power", "mdes", "studies")


def test_every_case_kind_is_covered():
    kinds = {(c["kind"], next(iter(c["expect"]))) for c in CASES}
    assert {
        ("balanced", "power"),
        ("balanced", "mdes"),
        ("balanced", "studies"),
        ("fixed", "power"),
        ("fixed", "mdes"),
        ("empirical", "power"),
    } <= kinds
    assert set(CLI_SUBSET) <= set(IDS)


def test_precise_roots_in_the_notes():
    """mdes is the precise root, not POMADE's uniroot value: the notes give it."""
    for name, root in (
        ("bal_mdes_che_rve_J30_doc", 0.0667340718616),
        ("bal_mdes_mlma_satt_J20", 0.231940450057),
    ):
        case = next(c for c in CASES if c["case"] == name)
        assert str(root) in " ".join(case["notes"])
        assert api_run(case)["mdes"] == pytest.approx(root, rel=2e-5 if "mlma" in name else 1e-9)


def test_unrounded_satt_df_in_the_notes():
    case = next(c for c in CASES if c["case"] == "fix_power_che_satt_J20")
    assert api_run(case)["df"] == pytest.approx(17.3536171796, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Independent checks of the formulas
# ---------------------------------------------------------------------------------------------


def test_balanced_che_closed_form():
    j, tau, omega, rho, s2, k = 25, 0.15, 0.08, 0.6, 0.03, 3.5
    var_b = (tau**2 + rho * s2 + (omega**2 + (1 - rho) * s2) / k) / j
    lam = 0.12 / math.sqrt(var_b)
    crit = stats.t.ppf(0.975, j - 1)
    exp = stats.nct.sf(crit, j - 1, lam) + stats.nct.cdf(-crit, j - 1, lam)
    r = power(j, 0.12, tau, omega, rho, s2, k)
    assert r.var_b == pytest.approx(var_b, rel=1e-13)
    assert r.df == pytest.approx(j - 1, rel=1e-12)
    assert r.power == pytest.approx(exp, rel=1e-12)
    assert r.mcse is None and r.iterations == 1 and r.design == "balanced"


def test_satt_df_of_equal_weights_is_j_minus_1():
    for j in (2, 3, 10, 57):
        assert A.satt_df(np.full((1, j), 3.7))[0] == pytest.approx(j - 1, rel=1e-12)


def test_power_at_zero_effect_is_alpha_for_satt_and_rve():
    s2 = [0.01, 0.05, 0.02, 0.08, 0.03, 0.04]
    k = [1, 4, 2, 6, 3, 2]
    for model, vdf in (("CHE", "rve"), ("CHE", "satt"), ("MLMA", "rve"), ("CE", "rve")):
        r = power(
            6, 0.0, 0.1, 0.05, 0.5, s2, k, model=model, var_df=vdf, alpha=0.1, fixed_design=True
        )
        assert r.power == pytest.approx(0.1, abs=1e-12)


def test_power_is_symmetric_in_the_effect():
    a = power(12, 0.3, 0.1, 0.1, 0.4, 0.05, 2, model="MLMA", var_df="model")
    b = power(12, -0.3, 0.1, 0.1, 0.4, 0.05, 2, model="MLMA", var_df="model")
    assert a.power == b.power


def test_lower_tail_never_nan():
    # scipy's nct.cdf(-2, 29, 10) is nan; the lower tail is ~0 and power finite
    p = A.power_t(np.array([10.0, 30.0, 0.0]), np.array([29.0, 29.0, 29.0]), 0.05)
    assert np.isfinite(p).all()
    assert p[0] == pytest.approx(stats.nct.sf(stats.t.ppf(0.975, 29), 29, 10.0), rel=1e-14)
    assert p[1] == pytest.approx(1.0, abs=1e-15)
    assert p[2] == pytest.approx(0.05, abs=1e-14)


def test_che_satt_df_limit_when_within_variance_vanishes():
    # omega = 0 and rho = 1: the (k - 1)/e^2 term is infinite; the df is its limit s / x^2
    r1 = power(
        10, 0.2, 0.1, 0.0, 1.0, [0.02, 0.04] * 5, [3, 2] * 5, var_df="satt", fixed_design=True
    )
    r2 = power(
        10, 0.2, 0.1, 0.0, 1 - 1e-9, [0.02, 0.04] * 5, [3, 2] * 5, var_df="satt", fixed_design=True
    )
    assert math.isfinite(r1.df) and r1.df == pytest.approx(r2.df, rel=1e-6)
    assert r1.power == pytest.approx(r2.power, rel=1e-6)


def _kl_inputs(seed):
    rng = np.random.default_rng(seed)
    j = int(rng.integers(3, 15))
    s2 = rng.uniform(0.01, 0.1, (1, j))
    k = rng.integers(1, 8, (1, j)).astype(float)
    tau, omega, rho = rng.uniform(0, 0.3), rng.uniform(0, 0.3), rng.uniform(0, 1)
    true_o = omega**2 + (1 - rho) * s2
    true_v = tau**2 + rho * s2 + true_o / k
    return tau, omega, rho, s2, k, true_v, true_o


@pytest.mark.parametrize("seed", range(6))
def test_kl_gradient_and_hessian_by_finite_differences(seed):
    _tau, _omega, _rho, s2, k, tv, to = _kl_inputs(seed)
    x = np.array([[0.02 + 0.01 * seed, 0.03]])
    _, g, h = A._kl_derivatives(x, tv, to, k, s2)
    eps = 1e-7
    for i in range(2):
        e = eps * np.eye(2)[i]
        gn = (A._kl_value(x + e, tv, to, k, s2) - A._kl_value(x - e, tv, to, k, s2)) / (2 * eps)
        assert gn[0] == pytest.approx(g[0, i], rel=1e-6)
        hn = (
            A._kl_derivatives(x + e, tv, to, k, s2)[1] - A._kl_derivatives(x - e, tv, to, k, s2)[1]
        ) / (2 * eps)
        assert hn[0] == pytest.approx(h[0, i], rel=1e-5, abs=1e-6 * np.abs(h[0]).max())


@pytest.mark.parametrize("seed", range(6))
def test_mlma_working_variances_minimise_the_kl_divergence(seed):
    tau, omega, rho, s2, k, tv, to = _kl_inputs(seed)
    a, b = A.mlma_working_variances(tau, omega, rho, s2, k)
    best = A._kl_value(np.array([[a[0], b[0]]]), tv, to, k, s2)[0]
    for start in ([tau**2 + 1e-3, omega**2 + 1e-3], [0.05, 0.05], [1e-4, 0.2]):
        r = optimize.minimize(
            lambda x: A._kl_value(x[None, :], tv, to, k, s2)[0],
            start,
            method="L-BFGS-B",
            bounds=[(0, None)] * 2,
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
        )
        assert best <= r.fun + 1e-10


def test_mlma_recovers_the_truth_when_rho_is_zero():
    """With rho = 0 the MLMA working model is the true model: tau~ = tau, omega~ = omega and
    MLMA coincides with CHE."""
    s2 = np.array([[0.02, 0.05, 0.03, 0.08, 0.01, 0.04]])
    k = np.array([[2.0, 5, 1, 3, 4, 2]])
    a, b = A.mlma_working_variances(0.15, 0.1, 0.0, s2, k)
    assert a[0] == pytest.approx(0.15**2, rel=1e-9) and b[0] == pytest.approx(0.1**2, rel=1e-9)
    for vdf in ("model", "satt", "rve"):
        m = power(6, 0.2, 0.15, 0.1, 0.0, s2[0], k[0], model="MLMA", var_df=vdf, fixed_design=True)
        c = power(6, 0.2, 0.15, 0.1, 0.0, s2[0], k[0], model="CHE", var_df=vdf, fixed_design=True)
        assert m.power == pytest.approx(c.power, rel=1e-8)
        assert m.var_b == pytest.approx(c.var_b, rel=1e-8)


def test_ce_equals_che_with_one_effect_per_study():
    s2 = [0.02, 0.05, 0.03, 0.08, 0.01, 0.04, 0.06]
    ce = power(7, 0.2, 0.1, 0.12, 0.5, s2, 1, model="CE", fixed_design=True)
    che = power(7, 0.2, 0.1, 0.12, 0.5, s2, 1, model="CHE", fixed_design=True)
    assert ce.power == pytest.approx(che.power, rel=1e-12)
    assert ce.df == pytest.approx(che.df, rel=1e-12)
    assert ce.var_b == pytest.approx(che.var_b, rel=1e-12)


def test_non_integer_j_is_floored_and_k_used_as_is():
    assert (
        power(20.9, 0.2, 0.1, 0.1, 0.5, 0.04, 4).power
        == power(20, 0.2, 0.1, 0.1, 0.5, 0.04, 4).power
    )
    assert (
        power(20, 0.2, 0.1, 0.1, 0.5, 0.04, 4.5).var_b
        != power(20, 0.2, 0.1, 0.1, 0.5, 0.04, 4).var_b
    )


def test_fixed_design_mixes_a_number_and_a_list():
    r = power(None, 0.2, 0.1, 0.1, 0.5, [0.02, 0.05, 0.03], 3, fixed_design=True)
    assert r.J == 3 and r.design == "fixed"
    same = power(3, 0.2, 0.1, 0.1, 0.5, [0.02, 0.05, 0.03], [3, 3, 3], fixed_design=True)
    assert r.power == same.power


# ---------------------------------------------------------------------------------------------
# Designs drawn from distributions
# ---------------------------------------------------------------------------------------------

PILOT_S2 = [0.08, 0.02, 0.11, 0.05, 0.03, 0.2, 0.04, 0.06]
PILOT_K = [1, 6, 2, 3, 9, 1, 4, 2]


def test_empirical_is_reproducible_and_reports_mcse():
    a = power(20, 0.15, 0.1, 0.1, 0.6, PILOT_S2, PILOT_K, iterations=300, seed=7)
    b = power(20, 0.15, 0.1, 0.1, 0.6, PILOT_S2, PILOT_K, iterations=300, seed=7)
    c = power(20, 0.15, 0.1, 0.1, 0.6, PILOT_S2, PILOT_K, iterations=300, seed=8)
    assert a == b and a.power != c.power
    assert a.design == "empirical" and a.iterations == 300
    assert 0 < a.mcse < 0.02
    assert abs(a.power - c.power) < 6 * a.mcse


def test_pairs_are_drawn_together_when_lengths_match():
    d = A.Design(PILOT_S2, PILOT_K, iterations=50, seed=1)
    s, k = d.arrays(30)
    pairs = set(zip(PILOT_S2, PILOT_K))
    assert d.paired and all((x, int(y)) in pairs for x, y in zip(s.ravel(), k.ravel()))
    d2 = A.Design(PILOT_S2, PILOT_K[:-1], iterations=50, seed=1)
    s2_, k2 = d2.arrays(30)
    assert not d2.paired
    assert len(set(zip(s2_.ravel(), k2.ravel()))) > len(pairs)


def test_designs_with_more_studies_extend_those_with_fewer():
    d = A.Design(PILOT_S2, PILOT_K, iterations=20, seed=3)
    s10, _ = d.arrays(10)
    s10 = s10.copy()
    s200, _ = d.arrays(200)
    fresh, _ = A.Design(PILOT_S2, PILOT_K, iterations=20, seed=3).arrays(200)
    assert np.array_equal(s200[:, :10], s10) and np.array_equal(s200, fresh)


def test_min_studies_agrees_with_power_on_the_same_draws():
    kw = {"iterations": 200, "seed": 11}
    st_ = min_studies(0.2, 0.15, 0.1, 0.6, PILOT_S2, PILOT_K, **kw)
    at = power(st_.studies, 0.2, 0.15, 0.1, 0.6, PILOT_S2, PILOT_K, **kw)
    below = power(st_.studies - 1, 0.2, 0.15, 0.1, 0.6, PILOT_S2, PILOT_K, **kw)
    assert at.power == pytest.approx(st_.power, rel=1e-14) and at.power >= 0.8 > below.power
    assert below.power == pytest.approx(st_.power_below, rel=1e-14)


def test_empirical_mdes_uses_common_random_numbers():
    kw = {"iterations": 200, "seed": 5}
    m = mdes(25, 0.1, 0.1, 0.6, PILOT_S2, PILOT_K, model="MLMA", var_df="rve", **kw)
    p = power(25, m.mdes, 0.1, 0.1, 0.6, PILOT_S2, PILOT_K, model="MLMA", var_df="rve", **kw)
    assert p.power == pytest.approx(0.8, abs=1e-10)


def test_stylised_distributions():
    def s2(rng, n):
        return rng.gamma(5, 1 / 100, n)

    def k(rng, n):
        return 1 + rng.poisson(3, n)

    r = power(30, 0.15, 0.1, 0.05, 0.6, s2, k, iterations=200, seed=2)
    assert r.design == "stylised" and r.iterations == 200 and 0.5 < r.power < 1


def test_power_curve_is_tidy_and_matches_power():
    df = power_curve(
        [10, 20, 30], [0.1, 0.2], [0.05, 0.1], 0.05, 0.6, PILOT_S2, PILOT_K, iterations=100, seed=4
    )
    assert len(df) == 3 * 2 * 2
    assert list(df.columns[:8]) == ["J", "mu", "tau", "omega", "rho", "model", "var_df", "label"]
    row = df[(df.J == 20) & (df.mu == 0.2) & (df.tau == 0.1)].iloc[0]
    direct = power(20, 0.2, 0.1, 0.05, 0.6, PILOT_S2, PILOT_K, iterations=100, seed=4)
    assert row.power == pytest.approx(direct.power, rel=1e-14)
    assert row.mcse == pytest.approx(direct.mcse, rel=1e-12)
    for _, g in df.groupby(["mu", "tau"]):
        assert np.all(np.diff(g.sort_values("J").power.to_numpy()) > 0)
    models = power_curve([10, 20], 0.2, 0.1, 0.05, 0.6, 0.04, 3, model=["CHE", "MLMA", "CE"])
    assert set(models.label) == {"CHE-RVE", "MLMA-RVE", "CE-RVE"}


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------

MODEL_DF = [
    ("CHE", "model"),
    ("CHE", "satt"),
    ("CHE", "rve"),
    ("MLMA", "model"),
    ("MLMA", "satt"),
    ("MLMA", "rve"),
    ("CE", "rve"),
]
params = st.fixed_dictionaries(
    {
        "tau": st.floats(0.0, 0.4),
        "omega": st.floats(0.0, 0.4),
        "rho": st.floats(0.0, 0.95),
        "sigma2": st.floats(0.002, 0.2),
        "k": st.floats(1.0, 12.0),
        "md": st.sampled_from(MODEL_DF),
        "alpha": st.sampled_from([0.01, 0.05, 0.1]),
    }
)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _p(p, j, mu, **over):
    q = {**p, **over}
    model, vdf = q["md"]
    return power(
        j,
        mu,
        q["tau"],
        q["omega"],
        q["rho"],
        q["sigma2"],
        q["k"],
        model=model,
        var_df=vdf,
        alpha=q["alpha"],
    ).power


@FAST
@given(params, st.integers(5, 60), st.floats(0.0, 0.5), st.floats(0.001, 0.3))
def test_power_increases_with_the_effect(p, j, mu, d):
    assert _p(p, j, mu) <= _p(p, j, mu + d) + 1e-12


@FAST
@given(params, st.integers(5, 60), st.floats(0.01, 0.5), st.integers(1, 20))
def test_power_increases_with_the_number_of_studies(p, j, mu, d):
    assert _p(p, j, mu) <= _p(p, j + d, mu) + 1e-12


@FAST
@given(params, st.integers(5, 60), st.floats(0.01, 0.5), st.floats(0.001, 0.3))
def test_power_decreases_with_tau(p, j, mu, d):
    assert _p(p, j, mu, tau=p["tau"] + d) <= _p(p, j, mu) + 1e-12


@FAST
@given(params, st.integers(3, 60), st.floats(0.55, 0.95))
def test_mdes_inverts_power(p, j, target):
    model, vdf = p["md"]
    m = mdes(
        j,
        p["tau"],
        p["omega"],
        p["rho"],
        p["sigma2"],
        p["k"],
        target_power=target,
        model=model,
        var_df=vdf,
        alpha=p["alpha"],
    )
    assert m.mdes > 0 and _p(p, j, m.mdes) == pytest.approx(target, abs=1e-9)
    assert m.power == pytest.approx(target, abs=1e-9)


@FAST
@given(params, st.floats(0.05, 0.6), st.floats(0.5, 0.95))
def test_min_studies_is_minimal(p, mu, target):
    model, vdf = p["md"]
    try:
        s = min_studies(
            mu,
            p["tau"],
            p["omega"],
            p["rho"],
            p["sigma2"],
            p["k"],
            target_power=target,
            model=model,
            var_df=vdf,
            alpha=p["alpha"],
        )
    except InputError as exc:  # beyond 10,000 studies: then 10,000 really are not enough
        assert "still below the target" in str(exc)
        assert _p(p, 10_000, mu) < target
        return
    assert s.studies >= 5 and _p(p, s.studies, mu) >= target
    assert s.studies == 5 or _p(p, s.studies - 1, mu) < target


def test_min_studies_never_below_five():
    s = min_studies(0.3, 0.05, 0.01, 0.2, 0.02, 5.5, target_power=0.7, model="CE")
    assert s.studies == 5 and power(3, 0.3, 0.05, 0.01, 0.2, 0.02, 5.5, model="CE").power > 0.7


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

BASE = ["--tau", "0.2", "--omega", "0.1", "--rho", "0.5", "--sigma2", "0.04", "--es-per-study", "4"]


def test_cli_text_output(capsys):
    code, out, _ = run_cli(["--studies", "20", "--effect", "0.2", *BASE], capsys)
    assert code == 0
    assert "power = 0.9039" in out and "CHE-RVE, balanced design" in out
    assert "Figures 2A-B" in out  # the balanced-design note
    code, out, _ = run_cli(["--studies", "30", *BASE, "--target", "mdes"], capsys)
    assert code == 0 and "mdes = " in out
    code, out, _ = run_cli(["--effect", "0.15", *BASE, "--target", "studies"], capsys)
    assert code == 0 and "studies = " in out and "one study fewer" in out


def test_cli_json_keys(capsys):
    code, out, _ = run_cli(["--studies", "20", "--effect", "0.2", *BASE, "--json"], capsys)
    got = json.loads(out)
    assert code == 0 and {"power", "df", "var_b", "mcse", "iterations", "label"} <= set(got)
    assert got["mcse"] is None and got["label"] == "CHE-RVE"
    s2 = str(FIX / "data" / "emp_power_che_rve_J20_paired_sigma2.csv")
    k = str(FIX / "data" / "emp_power_che_rve_J20_paired_k.csv")
    args = [
        "--studies",
        "20",
        "--effect",
        "0.1",
        "--tau",
        "0.05",
        "--omega",
        "0.15",
        "--rho",
        "0.6",
        "--sigma2",
        s2,
        "--es-per-study",
        k,
        "--iterations",
        "50",
        "--seed",
        "3",
    ]
    code, out, _ = run_cli([*args, "--json"], capsys)
    got = json.loads(out)
    assert got["design"] == "empirical" and got["seed"] == 3 and got["mcse"] > 0
    code, out, _ = run_cli(args, capsys)
    assert "seed 3" in out


def test_cli_fixed_design_takes_j_from_the_file(capsys):
    s2 = str(FIX / "data" / "fix_power_che_model_J20_sigma2.csv")
    k = str(FIX / "data" / "fix_power_che_model_J20_k.csv")
    code, out, _ = run_cli(
        [
            "--effect",
            "0.1",
            "--tau",
            "0.05",
            "--omega",
            "0.2",
            "--rho",
            "0.8",
            "--sigma2",
            s2,
            "--es-per-study",
            k,
            "--df",
            "model",
            "--fixed-design",
            "--json",
        ],
        capsys,
    )
    got = json.loads(out)
    assert code == 0 and got["J"] == 20
    assert got["power"] == pytest.approx(0.474866322585673, rel=1e-6)


def test_help_does_not_import_scipy():
    code = (
        "import sys; from mlmeta.cli import build_parser; p = build_parser(); "
        "print(sorted(m for m in ('numpy', 'scipy', 'pandas', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_read_values_accepts_a_header_or_none(tmp_path):
    f = tmp_path / "v.csv"
    f.write_text("0.1\n\n0.2\n")
    assert read_values("--sigma2", str(f), "sampling variance", 0.0, True) == [0.1, 0.2]
    f.write_text("\ufeffsigma2\n0.1\n0.3\n")
    assert read_values("--sigma2", str(f), "sampling variance", 0.0, True) == [0.1, 0.3]
    assert read_values("--sigma2", "0.5", "sampling variance", 0.0, True) == 0.5


def cli_error(args, capsys) -> str:
    code, out, err = run_cli(args, capsys)
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1, (code, out, err)
    assert lines[0].startswith("mlmeta: error: ")
    return lines[0][len("mlmeta: error: ") :]


def _csv(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_cli_file_errors(tmp_path, capsys):
    def err(flag_value, flag="--sigma2"):
        base = {"--sigma2": "0.04", "--es-per-study": "4"}
        base[flag] = flag_value
        return cli_error(
            [
                "--studies",
                "10",
                "--effect",
                "0.2",
                "--tau",
                "0.1",
                "--omega",
                "0.1",
                "--rho",
                "0.5",
                "--sigma2",
                base["--sigma2"],
                "--es-per-study",
                base["--es-per-study"],
            ],
            capsys,
        )

    missing = str(tmp_path / "nope.csv")
    assert err(missing) == f"--sigma2: {missing!r} is neither a number nor an existing file"
    p = _csv(tmp_path, "neg.csv", "sigma2\n0.1\n-0.2\n")
    assert err(p) == f"--sigma2 file {p!r}, line 3: sampling variance must be > 0; got '-0.2'"
    p = _csv(tmp_path, "zero.csv", "0.1\n0\n")
    assert err(p) == f"--sigma2 file {p!r}, line 2: sampling variance must be > 0; got '0'"
    p = _csv(tmp_path, "text.csv", "sigma2\n0.1\nabc\n")
    assert err(p) == f"--sigma2 file {p!r}, line 3: sampling variance must be a number; got 'abc'"
    p = _csv(tmp_path, "two.csv", "sigma2,k\n0.1,2\n")
    assert err(p) == f"--sigma2 file {p!r}, line 1: expected one column, got 2 ('sigma2,k')"
    p = _csv(tmp_path, "empty.csv", "sigma2\n\n")
    assert err(p) == f"--sigma2 file {p!r} has no values"
    p = _csv(tmp_path, "k.csv", "k\n2\n0.5\n")
    assert err(p, "--es-per-study") == (
        f"--es-per-study file {p!r}, line 3: number of effect sizes must be >= 1; got '0.5'"
    )
    p = _csv(tmp_path, "nan.csv", "k\nnan\n")
    assert err(p, "--es-per-study") == (
        f"--es-per-study file {p!r}, line 2: number of effect sizes must be >= 1; got 'nan'"
    )
    b = tmp_path / "latin1.csv"
    b.write_bytes(b"\xe9\xff\n")
    assert err(str(b)) == f"--sigma2 file {str(b)!r} is not a UTF-8 text (CSV) file"


def test_cli_unreadable_file(tmp_path, capsys, monkeypatch):
    p = _csv(tmp_path, "ok.csv", "0.1\n")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(InputError, match=exact(f"--sigma2: cannot read {p!r} (Permission denied)")):
        read_values("--sigma2", p, "sampling variance", 0.0, True)


CLI_ERRORS = [
    (["--effect", "0.2", *BASE], "--studies (number of studies) is required with --target power"),
    (
        ["--studies", "20", *BASE],
        "--effect (effect size of practical concern) is required with --target power",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--target", "studies"],
        "--studies cannot be given with --target studies (it is what is searched for); got '20'",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--target", "mdes"],
        "--effect cannot be given with --target mdes (it is what is searched for); got '0.2'",
    ),
    (
        ["--effect", "0.2", *BASE, "--target", "studies", "--fixed-design"],
        (
            "--fixed-design cannot be used with --target studies: the studies of a fixed design are "
            "given, not searched for"
        ),
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--seed", "-1"],
        "--seed must be an integer >= 0; got '-1'",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--seed", "x"],
        "--seed must be an integer >= 0; got 'x'",
    ),
    (["--studies", "twenty", "--effect", "0.2", *BASE], "--studies must be a number; got 'twenty'"),
    (
        ["--studies", "1", "--effect", "0.2", *BASE],
        "--studies (number of studies) must be at least 2 (a non-integer is rounded down); got 1.0",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--iterations", "0"],
        "--iterations must be an integer >= 1; got 0",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--iterations", "1.5"],
        "--iterations must be an integer >= 1; got '1.5'",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--model", "XYZ"],
        "--model must be one of CHE, MLMA, CE; got 'XYZ'",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--df", "wald"],
        "--df must be one of model, satt, rve; got 'wald'",
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--model", "CE", "--df", "satt"],
        (
            "--model CE (correlated effects) is available only with --df rve (robust variance "
            "estimation); got 'satt'"
        ),
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE, "--alpha", "1.5"],
        "--alpha must be strictly between 0 and 1; got 1.5",
    ),
    (
        ["--studies", "20", *BASE, "--target", "mdes", "--power", "0.04"],
        "--power must exceed the power at effect 0 (0.05); got 0.04",
    ),
    (
        ["--effect", "0", *BASE, "--target", "studies"],
        (
            "--effect must be non-zero to find the number of studies (power at effect 0 does not "
            "grow with J); got 0"
        ),
    ),
    (
        ["--effect", "0.001", *BASE, "--target", "studies", "--max-studies", "100"],
        (
            "power 0.05017 with --max-studies = 100 studies is still below the target 0.8; the effect "
            "0.001 is too small to detect"
        ),
    ),
    (
        ["--studies", "20", "--effect", "0.2", *BASE[:-2], "--es-per-study", "-1"],
        "--es-per-study: number of effect sizes per study must be >= 1; got -1.0",
    ),
]


@pytest.mark.parametrize(("args", "msg"), CLI_ERRORS, ids=[m[:40] for _, m in CLI_ERRORS])
def test_cli_error_messages(args, msg, capsys):
    assert cli_error(args, capsys) == msg


def test_cli_missing_required_flag(capsys):
    msg = cli_error(["--studies", "20", "--effect", "0.2"], capsys)
    assert msg.endswith(
        "the following arguments are required: --tau, --omega, --rho, --sigma2, --es-per-study"
    )


# ---------------------------------------------------------------------------------------------
# Error messages of the Python functions
# ---------------------------------------------------------------------------------------------

OK = {"tau": 0.1, "omega": 0.1, "rho": 0.5, "sigma2": 0.04, "k": 3}

API_ERRORS = [
    (lambda: power(20, "big", **OK), "mu must be a finite number; got 'big'"),
    (lambda: power(20, 0.2, **{**OK, "tau": -0.1}), "tau must be >= 0; got -0.1"),
    (
        lambda: power(20, 0.2, **{**OK, "omega": float("inf")}),
        "omega must be a finite number; got inf",
    ),
    (lambda: power(20, 0.2, **{**OK, "rho": 1.2}), "rho must be between 0 and 1; got 1.2"),
    (lambda: power(20, 0.2, **OK, var_df=3), "var_df must be one of model, satt, rve; got 3"),
    (
        lambda: power(20, 0.2, **{**OK, "sigma2": "0.04"}),
        "sigma2 must be a number or a sequence of numbers (sampling variance > 0); got '0.04'",
    ),
    (
        lambda: power(20, 0.2, **{**OK, "sigma2": [0.1, [1, 2]]}),
        (
            "sigma2 must be a number or a sequence of numbers (sampling variance > 0); "
            "got [0.1, [1, 2]]"
        ),
    ),
    (
        lambda: power(20, 0.2, **{**OK, "k": []}),
        "k is empty: give at least one number of effect sizes per study",
    ),
    (
        lambda: power(20, 0.2, **{**OK, "sigma2": [0.1, -0.1]}),
        "sigma2: sampling variance must be > 0 (value 2 of 2); got -0.1",
    ),
    (lambda: power(20, 0.2, **OK, iterations=True), "iterations must be an integer >= 1; got True"),
    (lambda: min_studies(0.2, **OK, max_studies=5), "max_studies must be an integer >= 6; got 5"),
    (
        lambda: power(20, 0.2, **{**OK, "sigma2": lambda rng, n: np.ones(n)}, fixed_design=True),
        "sigma2: a fixed design needs the values of its studies, not a distribution to draw from",
    ),
    (
        lambda: power(None, 0.2, **{**OK, "sigma2": [0.1, 0.2], "k": [1, 2, 3]}, fixed_design=True),
        "sigma2 and k of a fixed design must have one value per study; got 2 and 3 values",
    ),
    (
        lambda: power(4, 0.2, **{**OK, "sigma2": [0.1, 0.2, 0.3]}, fixed_design=True),
        "J must equal the number of studies of a fixed design (3 values given); got 4",
    ),
    (lambda: power(None, 0.2, **OK), "J (number of studies) is required here"),
    (
        lambda: api.evaluate_power(api.check_inputs(J=10, **OK)),
        "mu (effect size of practical concern) is required here",
    ),
    (
        lambda: api.evaluate_min_studies(api.check_inputs(mu=0.2, fixed_design=True, **OK)),
        (
            "the number of studies cannot be searched for a fixed design (its studies are given); "
            "draw them from distributions instead"
        ),
    ),
    (
        lambda: power_curve([], 0.2, **OK),
        "J must list at least one number of studies; got an empty sequence",
    ),
    (
        lambda: power(20, 0.2, **{**OK, "sigma2": lambda rng, n: np.ones(3)}, iterations=2),
        (
            "sigma2: the distribution f(rng, n) must return n = 64 values, each a sampling variance "
            "> 0; got 3 values"
        ),
    ),
    (
        lambda: power(20, 0.2, **{**OK, "k": lambda rng, n: np.zeros(n)}, iterations=2),
        (
            "k: the distribution f(rng, n) must return n = 64 values, each a number of effect sizes "
            "per study >= 1; got 0.0"
        ),
    ),
]


@pytest.mark.parametrize(("call", "msg"), API_ERRORS, ids=[m[:40] for _, m in API_ERRORS])
def test_api_error_messages(call, msg):
    with pytest.raises(InputError, match=exact(msg)):
        call()


def test_model_names_are_case_insensitive():
    a = power(20, 0.2, **OK, model="mlma", var_df="Model+Satt")
    assert a.label == "MLMA-Model+Satt" and a.var_df == "satt"


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curves():
    return power_curve(
        range(10, 41, 10),
        [0.1, 0.2],
        [0.05, 0.1, 0.2],
        [0.05, 0.1],
        0.6,
        PILOT_S2,
        PILOT_K,
        iterations=50,
        seed=1,
    )


def test_power_curve_plot_grid(curves, tmp_path):
    import matplotlib.pyplot as plt

    from mlmeta.power.plots import power_curve_plot

    fig = power_curve_plot(curves, target=0.8, expected_studies=(20, 30))
    axes = fig.axes
    assert len(axes) == 6
    assert len(axes[0].get_lines()) == 3  # two effects and the target line
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert "Study level SD = 0.05" in texts and "ES level SD = 0.1" in texts and "(6)" in texts
    fig.savefig(tmp_path / "curve.png", dpi=50)
    assert (tmp_path / "curve.png").stat().st_size > 5_000
    plt.close(fig)
    fig, ax = plt.subplots()
    one = curves[(curves.tau == 0.1) & (curves.omega == 0.05)]
    assert power_curve_plot(one, ax=ax, hue="mu") is ax
    plt.close(fig)


def test_traffic_light_plot_colours_the_strips(curves):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from mlmeta.power.plots import TRAFFIC_LIGHT_PALETTES, traffic_light_plot

    fig = traffic_light_plot(
        curves, ["likely", "exp", "unlikely"], {0.05: "expected", 0.1: "unlikely"}
    )
    pal = TRAFFIC_LIGHT_PALETTES["green-yellow-red"]
    top = [p.get_facecolor() for p in fig.axes[1].patches if p.get_y() == 1.0]
    assert top == [to_rgba(pal["expected"])]
    right = [p.get_facecolor() for p in fig.axes[5].patches if p.get_x() == 1.0]
    assert right == [to_rgba(pal["unlikely"])]
    plt.close(fig)
    fig = traffic_light_plot(curves, ["e", "l", "u"], ["e", "e"], palette="grayscale")
    plt.close(fig)


PLOT_ERRORS = [
    ({"hue": "tau"}, "hue must be one of mu, rho, label; got 'tau'"),
    (
        {"tau_strips": ["expected", "often", "likely"]},
        "tau_strips: each assumption must be one of expected, likely, unlikely; got 'often'",
    ),
    (
        {"tau_strips": ["expected"]},
        "tau_strips needs one assumption per value (3: 0.05, 0.1, 0.2); got 1",
    ),
    (
        {"omega_strips": {0.05: "expected"}},
        "omega_strips has no assumption for 0.1; give one for each of 0.05, 0.1",
    ),
    (
        {"palette": "rainbow"},
        (
            "palette must be one of green-yellow-red, greyscale or a mapping "
            "of expected, likely, unlikely to colours; got 'rainbow'"
        ),
    ),
    (
        {"hue": "rho"},
        (
            "data has 2 values of 'mu' (0.1, 0.2) but lines are drawn by 'rho': "
            "select one, or draw with hue='mu'"
        ),
    ),
]


@pytest.mark.parametrize(("kw", "msg"), PLOT_ERRORS, ids=[m[:40] for _, m in PLOT_ERRORS])
def test_plot_error_messages(curves, kw, msg):
    from mlmeta.power.plots import power_curve_plot

    with pytest.raises(InputError, match=exact(msg)):
        power_curve_plot(curves, **kw)


def test_plot_data_errors(curves):
    import matplotlib.pyplot as plt

    from mlmeta.power.plots import power_curve_plot

    with pytest.raises(
        InputError,
        match=exact(
            "data must be the DataFrame of mlmeta.power.power_curve (columns J, alpha, label, "
            "mu, omega, power, rho, tau)"
        ),
    ):
        power_curve_plot({"J": [1]})
    with pytest.raises(InputError, match=exact("data has no rows to plot")):
        power_curve_plot(curves.iloc[:0])
    fig, ax = plt.subplots()
    with pytest.raises(
        InputError,
        match=exact(
            "ax takes one panel but data has 3 tau and 2 omega values; leave ax=None for the grid"
        ),
    ):
        power_curve_plot(curves, ax=ax)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Report section
# ---------------------------------------------------------------------------------------------

FIT = {
    "studies": 27,
    "estimate": -0.1236,
    "tau": 0.0768,
    "omega": 0.0507,
    "mean_vi": 0.00642,
    "k": 48,
    "measure": "ZCOR",
}


def test_power_section_balanced_numbers_and_sentence():
    out = power_section({"effect": -0.1, "target": 0.8}, FIT)
    direct = power(27, -0.1, 0.0768, 0.0507, 0.6, 0.00642, 48 / 27)
    assert out["power"] == pytest.approx(direct.power, rel=1e-14)
    assert out["design"] == "balanced" and out["label"] == "CHE-RVE"
    st_ = min_studies(-0.1, 0.0768, 0.0507, 0.6, 0.00642, 48 / 27)
    assert out["studies_needed"] == st_.studies
    md = mdes(27, 0.0768, 0.0507, 0.6, 0.00642, 48 / 27)
    assert out["mdes"] == pytest.approx(md.mdes, rel=1e-14)
    assert out["effect_display"] == pytest.approx(math.tanh(-0.1), rel=1e-14)
    s = out["sentence"]
    assert s.startswith("With J = 27 studies and on average 1.8 effect sizes per study")
    assert "to detect r = \u2212.10 is 0.99" in s
    assert f"80 % power needs at least {st_.studies} studies" in s
    assert out["note"] is None


def test_power_section_observed_effect_and_fixed_design():
    fit = dict(
        FIT, vi_per_study=[0.004] * 20 + [0.012] * 7, k_per_study=[2] * 21 + [1] * 6, rho=0.8
    )
    out = power_section(None, fit)
    assert out["effect"] == -0.1236 and out["effect_source"] == "observed"
    assert out["design"] == "fixed" and out["rho"] == 0.8
    direct = power(
        27, -0.1236, 0.0768, 0.0507, 0.8, fit["vi_per_study"], fit["k_per_study"], fixed_design=True
    )
    assert out["power"] == pytest.approx(direct.power, rel=1e-14)
    assert out["note"].startswith("Power at the observed estimate restates the test")
    smd = power_section(
        {"effect": 0.3, "model": "MLMA", "df": "satt", "target": 0.9},
        dict(FIT, measure="SMD", estimate=0.3),
    )
    assert "to detect an effect of 0.30" in smd["sentence"] and smd["label"] == "MLMA-Model+Satt"
    assert "90 % power" in smd["sentence"]


def test_power_section_needs_more_studies_than_observed():
    out = power_section({"effect": 0.02}, dict(FIT, measure=None))
    assert out["studies_needed"] > 27 and "would need at least" in out["sentence"]


REPORT_ERRORS = [
    (
        ({"efect": 0.1}, FIT),
        (
            "[power]: unknown key 'efect'; allowed: target, effect, model, df, "
            "rho, tau, omega, alpha, iterations, seed"
        ),
    ),
    (({"effect": "large"}, FIT), "[power] effect must be a number or \"observed\"; got 'large'"),
    (({"tau": [0.1]}, FIT), '[power] tau must be a number or "observed"; got [0.1]'),
    (
        ({}, dict(FIT, estimate=None)),
        "power section: the fit gives no usable overall estimate ('estimate'); got None",
    ),
    (
        ({"effect": 0.1}, dict(FIT, vi_per_study=[0.01] * 3, k_per_study=[1] * 3)),
        "power section: vi_per_study and k_per_study need one value per study (27); got 3 and 3",
    ),
    (
        ({"model": "CE", "df": "model"}, FIT),
        (
            "[power] model CE (correlated effects) is available only with [power] df rve (robust "
            "variance estimation); got 'model'"
        ),
    ),
]


@pytest.mark.parametrize(("args", "msg"), REPORT_ERRORS, ids=[m[:40] for _, m in REPORT_ERRORS])
def test_power_section_errors(args, msg):
    with pytest.raises(InputError, match=exact(msg)):
        power_section(*args)


def test_one_effect_per_study_gives_a_finite_satt_df():
    """k_j = 1 everywhere: eq. 12 is 0/0 (POMADE: NaN); the df is the one-component limit, which
    the design approaches as k_j -> 1."""
    s2 = [0.02, 0.05, 0.03, 0.08, 0.01]
    for model in ("CHE", "MLMA"):
        one = power(5, 0.3, 0.1, 0.1, 0.5, s2, 1, model=model, var_df="satt", fixed_design=True)
        near = power(
            5, 0.3, 0.1, 0.1, 0.5, s2, 1 + 1e-7, model=model, var_df="satt", fixed_design=True
        )
        assert math.isfinite(one.power) and one.df == pytest.approx(near.df, rel=1e-5)
    bal = power(8, 0.3, 0.1, 0.0, 0.0, 0.1, 1, var_df="satt")
    assert bal.df == pytest.approx(7, rel=1e-12)
