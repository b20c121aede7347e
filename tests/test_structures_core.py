"""The general random-effects engine (mlmeta.core.general / fit_general) against metafor.

Every public structures case (crossed factors, ``~ inner | outer`` with UN/CS/HCS/DIAG/AR, known
V, R= phylogenetic correlation, CHE rho, two structured terms) is rebuilt from its data files
at the array level and every number of ``expect`` is compared at the case's tolerance. Then
equivalence tests tie the engine to the nested engine and to itself (layers, R = I, V = diag),
and the likelihood, gradient and Hessian are checked against a brute-force dense computation.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmeta.core.covstruct import STRUCTS, CovStruct
from mlmeta.core.fit import fit_nested
from mlmeta.core.fit_general import auto_fixed, contain_groupings, fit_general
from mlmeta.core.general import (
    FactorTerm,
    GeneralProblem,
    factor_term,
    inner_outer_term,
    nested_terms,
)
from mlmeta.core.inference import coef_tests, contain_df, fit_statistics, omnibus_test
from mlmeta.core.likelihood import LOG2PI
from mlmeta.core.sampling import SamplingCov
from mlmeta.errors import FitWarning, InputError

HERE = Path(__file__).parent / "fixtures" / "reference_structures"
CASES = sorted((HERE / "cases").glob("*.json"))
NESTED_DATA = Path(__file__).parent / "fixtures" / "reference" / "data"


# --------------------------------------------------------------------------------------------
# building the arrays of a case
# --------------------------------------------------------------------------------------------
def _dummies(col: pd.Series, drop_first: bool) -> tuple[np.ndarray, list[str]]:
    lv = sorted(col.unique().tolist())
    if drop_first:
        lv = lv[1:]
    return np.column_stack([(col == v).to_numpy(float) for v in lv]), [str(v) for v in lv]


def design(mods: str | None, d: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """R's model.matrix for the few formulas of the cases (checked against coef_names)."""
    k = len(d)
    if not mods:
        return np.ones((k, 1)), ["intrcpt"]
    terms = [t.strip() for t in mods.replace("~", "").split("+")]
    intercept = "0" not in terms
    cols, names = ([np.ones(k)], ["intrcpt"]) if intercept else ([], [])
    have_factor = False
    for t in terms:
        if t in ("0", "1"):
            continue
        if ":" in t:
            f, x = t.split(":")
            D, lv = _dummies(d[f], drop_first=False)
            cols += list((D * d[x].to_numpy(float)[:, None]).T)
            names += [f"{f}{v}:{x}" for v in lv]
            continue
        label = t
        if t.startswith("factor("):
            t = t[7:-1]
            col = d[t]
        else:
            col = d[t]
            if pd.api.types.is_numeric_dtype(col):
                cols.append(col.to_numpy(float))
                names.append(t)
                continue
        D, lv = _dummies(col, drop_first=intercept or have_factor)
        have_factor = True
        cols += list(D.T)
        names += [f"{label}{v}" for v in lv]
    return np.column_stack(cols), names


def build(case: dict):
    d = pd.read_csv(HERE / "data" / case["data"])
    k = len(d)
    y = d[case["yi"]].to_numpy(float)
    vi = d[case["vi"]].to_numpy(float)
    X, names = design(case["mods"], d)
    assert names == case["coef_names"]
    if case.get("V"):
        L = pd.read_csv(HERE / "data" / case["V"])
        S = SamplingCov.from_long(L["row"] - 1, L["col"] - 1, L["value"], k)
    elif case.get("rho"):
        S = SamplingCov.from_rho(vi, d[case["rho"]["cluster"]], case["rho"]["value"])
    else:
        S = SamplingCov.from_vi(vi)
    terms: list = []
    structs = list(case.get("struct") or [])
    R = case.get("R") or {}
    for f in case["random_terms"]:
        lhs, rhs = (s.strip() for s in f.lstrip("~").split("|"))
        if lhs == "1":
            parts = rhs.split("/")
            if len(parts) > 1:
                terms += nested_terms(
                    [d[x] for x in parts], ["/".join(parts[: i + 1]) for i in range(len(parts))]
                )
            elif rhs in R:
                Rm = pd.read_csv(HERE / "data" / R[rhs], index_col=0)
                assert list(Rm.index) == list(Rm.columns)
                terms.append(
                    factor_term(
                        d[rhs].astype(str), R=Rm.to_numpy(), R_names=list(Rm.columns), name=rhs
                    )
                )
            else:
                terms.append(factor_term(d[rhs], name=rhs))
        else:
            terms.append(inner_outer_term(d[lhs], d[rhs], structs.pop(0), name=f))
    return y, X, S, terms


def results(case: dict) -> dict:
    """Every key of ``expect`` from a fit of the general engine."""
    y, X, S, terms = build(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = fit_general(y, X, S, terms, method=case["method"])
    k, p = X.shape
    est = fit.estimates()
    out: dict = {"k": k, "p": p, "sigma2": [e.sigma2 for e in est if e.kind == "sigma2"]}
    io = [e for e in est if e.kind == "inner_outer"]
    for e, (vn, rn) in zip(io, [("tau2", "rho"), ("gamma2", "phi")]):
        out[vn] = list(e.tau2)
        if e.struct not in ("ID", "DIAG"):
            out[rn] = list(e.rho)
    if not io:
        out["n_levels"] = [e.n_levels[0] for e in est]
    df = None
    if case["test"] == "t":
        codes, ng = contain_groupings(terms)
        df = contain_df(X, codes, ng) if case["dfs"] == "contain" else np.full(p, k - p, float)
    ct = coef_tests(fit.beta, fit.vcov, df)
    out.update(
        beta=fit.beta,
        se=ct.se,
        stat=ct.stat,
        df=None if df is None else list(df),
        pval=ct.pval,
        ci_lb=ct.ci_lb,
        ci_ub=ct.ci_ub,
        vcov=fit.vcov,
    )
    btt = np.arange(1, p) if p > 1 and case["coef_names"][0] == "intrcpt" else np.arange(p)
    QM, QMdf, QMp = omnibus_test(fit.beta, fit.vcov, btt, df)
    out.update(QM=QM, QM_df=list(QMdf), QMp=QMp)
    qe, logdet_s = fit.problem.sampling_qe()
    from mlmeta.core.dist import chi2_sf

    out.update(QE=qe, QE_df=k - p, QEp=float(chi2_sf(qe, k - p)))
    out.update(fit_statistics(fit.ll, fit.method, k, p, fit.n_estimated, None, logdet_s))
    return out


def _close(got, exp, rel, abs_, path):
    if exp is None:
        assert got is None or (isinstance(got, float) and np.isnan(got)), path
        return
    if isinstance(exp, list):
        got = list(np.asarray(got, dtype=object).tolist()) if not isinstance(got, list) else got
        assert len(got) == len(exp), f"{path}: {got} vs {exp}"
        for i, (g, e) in enumerate(zip(got, exp)):
            _close(g, e, rel, abs_, f"{path}[{i}]")
        return
    g = float(got)
    assert abs(g - exp) <= max(abs_, rel * abs(exp)), f"{path}: {g!r} != {exp!r}"


@pytest.fixture(scope="module")
def fitted():
    cache: dict = {}

    def get(path: Path):
        if path not in cache:
            case = json.loads(path.read_text())
            cache[path] = (case, results(case))
        return cache[path]

    return get


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_number_matches_metafor(path, fitted):
    case, got = fitted(path)
    tol = case["tolerance"]
    checked = 0
    for key, exp in case["expect"].items():
        if key in ("notes", "metafor"):
            continue
        assert key in got, f"{key} not computed"
        g = got[key]
        if isinstance(g, np.ndarray):
            g = g.tolist()
        _close(g, exp, tol["rel"], tol["abs"], key)
        checked += 1
    assert checked >= 20


def test_the_fixture_set_is_complete():
    names = {p.stem for p in CASES}
    for prefix in (
        "crossed_lab_",
        "berkey1998_",
        "ishak2007_",
        "lim2014_",
        "assink2016_che_",
        "multivar_labs_",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    assert len(names) == 16


# --------------------------------------------------------------------------------------------
# equivalences
# --------------------------------------------------------------------------------------------
def _fit(y, X, S, terms, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fit_general(y, X, S, terms, **kw)


def _assert_same(a_sigma, a_beta, a_vcov, a_ll, b_sigma, b_beta, b_vcov, b_ll, tol=1e-8):
    np.testing.assert_allclose(a_sigma, b_sigma, rtol=tol, atol=1e-12)
    np.testing.assert_allclose(a_beta, b_beta, rtol=tol, atol=1e-12)
    np.testing.assert_allclose(a_vcov, b_vcov, rtol=tol, atol=1e-14)
    assert abs(a_ll - b_ll) <= tol * max(1.0, abs(b_ll))


@pytest.fixture(scope="module")
def assink():
    d = pd.read_csv(NESTED_DATA / "assink2016.csv")
    X, _ = design("~ deltype", d)
    return d, X


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_pure_nesting_equals_the_nested_engine(assink, method):
    d, X = assink
    y, v = d["yi"].to_numpy(), d["vi"].to_numpy()
    nested = fit_nested(y, v, X, [d["study"].to_numpy(), d["esid"].to_numpy()], method=method)
    g = _fit(y, X, SamplingCov.from_vi(v), nested_terms([d["study"], d["esid"]]), method=method)
    _assert_same(g.sigma2, g.beta, g.vcov, g.ll, nested.sigma2, nested.beta, nested.vcov, nested.ll)


def test_che_rho_equals_the_nested_engine(assink):
    d, X = assink
    y, v = d["yi"].to_numpy(), d["vi"].to_numpy()
    nested = fit_nested(
        y,
        v,
        X,
        [d["study"].to_numpy(), d["esid"].to_numpy()],
        rho=0.6,
        rho_codes=d["study"].to_numpy(),
    )
    S = SamplingCov.from_rho(v, d["study"], 0.6)
    g = _fit(y, X, S, nested_terms([d["study"], d["esid"]]))
    _assert_same(g.sigma2, g.beta, g.vcov, g.ll, nested.sigma2, nested.beta, nested.vcov, nested.ll)


@pytest.fixture(scope="module")
def crossed():
    case = json.loads((HERE / "cases" / "crossed_lab_mods_t.json").read_text())
    y, X, S, terms = build(case)
    d = pd.read_csv(HERE / "data" / case["data"])
    return d, y, X, S, terms


def test_crossed_with_lab_fixed_at_zero_equals_the_nested_fit(crossed):
    d, y, X, S, terms = crossed
    g = _fit(y, X, S, terms, sigma2=[None, None, 0.0])
    nested = fit_nested(y, S.diag, X, [d["study"].to_numpy(), d["es"].to_numpy()])
    assert g.sigma2[2] == 0.0
    assert g.n_estimated == 2
    _assert_same(
        g.sigma2[:2], g.beta, g.vcov, g.ll, nested.sigma2, nested.beta, nested.vcov, nested.ll
    )


def test_identity_R_equals_the_plain_factor(crossed):
    d, y, X, S, terms = crossed
    labs = sorted(d["lab"].unique())
    lab_R = factor_term(d["lab"], R=np.eye(len(labs)), R_names=labs, name="lab")
    a = _fit(y, X, S, terms)
    b = _fit(y, X, S, terms[:2] + [lab_R])
    assert a.problem.wood_terms == b.problem.wood_terms == [2]
    _assert_same(a.sigma2, a.beta, a.vcov, a.ll, b.sigma2, b.beta, b.vcov, b.ll)


def test_the_layers_agree_whatever_terms_are_blocks(crossed):
    """Every term in the Woodbury layer, or all in blocks (one block of 61 rows): same fit."""
    _, y, X, S, terms = crossed
    ref = _fit(y, X, S, terms)
    for bt in ([], [0, 1, 2], [1]):
        pr = GeneralProblem(y, X, S, terms, reml=True, block_terms=bt)
        g = _fit(y, X, S, terms, problem=pr)
        _assert_same(
            g.sigma2, g.beta, g.vcov, g.ll, ref.sigma2, ref.beta, ref.vcov, ref.ll, tol=1e-7
        )


def test_diagonal_V_equals_vi(crossed):
    _, y, X, S, terms = crossed
    a = _fit(y, X, S, terms)
    b = _fit(y, X, SamplingCov.from_matrix(np.diag(S.diag)), terms)
    import scipy.sparse as sp

    c = _fit(y, X, SamplingCov.from_matrix(sp.diags(S.diag)), terms)
    for o in (b, c):
        _assert_same(a.sigma2, a.beta, a.vcov, a.ll, o.sigma2, o.beta, o.vcov, o.ll, tol=1e-12)


def test_un_with_one_outcome_equals_the_one_level_model():
    d = pd.read_csv(HERE / "data" / "berkey1998.csv")
    d = d[d["outcome"] == "PD"].reset_index(drop=True)
    y, v = d["yi"].to_numpy(), d["vi"].to_numpy()
    X = np.ones((len(d), 1))
    S = SamplingCov.from_vi(v)
    a = _fit(y, X, S, [inner_outer_term(d["outcome"], d["trial"], "UN")])
    b = _fit(y, X, S, [factor_term(d["trial"])])
    tau2 = a.estimates()[0].tau2
    assert a.n_estimated == 1  # the dummy rho of a one-level UN is fixed
    _assert_same(tau2, a.beta, a.vcov, a.ll, b.sigma2, b.beta, b.vcov, b.ll)


def test_cs_and_hcs_agree_when_variances_are_equal():
    """HCS with its variances fixed equal is CS (same tau2, same rho, same likelihood)."""
    case = json.loads((HERE / "cases" / "berkey1998_cs_t.json").read_text())
    y, X, S, terms = build(case)
    cs = _fit(y, X, S, terms)
    t2 = cs.estimates()[0].tau2[0]
    d = pd.read_csv(HERE / "data" / "berkey1998.csv")
    hcs = _fit(y, X, S, [inner_outer_term(d["outcome"], d["trial"], "HCS")], tau2=t2)
    assert abs(hcs.estimates()[0].rho[0] - cs.estimates()[0].rho[0]) < 1e-8
    assert abs(hcs.ll - cs.ll) < 1e-10


# --------------------------------------------------------------------------------------------
# likelihood, gradient and Hessian against a dense brute-force computation
# --------------------------------------------------------------------------------------------
def dense_loglik(pr: GeneralProblem, theta: np.ndarray) -> float:
    S = pr.S
    k = pr.k
    V = np.diag(S.diag)
    V[S.rows, S.cols] = S.vals
    for t, (G, _, _) in zip(pr.terms, pr.term_matrices(theta, 0)):
        if isinstance(t, FactorTerm):
            Z = np.eye(t.n_levels)[t.codes]
            R = t.R if t.R is not None else np.eye(t.n_levels)
            V = V + G[0, 0] * Z @ R @ Z.T
        else:
            V = V + G[np.ix_(t.inner, t.inner)] * (t.outer[:, None] == t.outer[None, :])
    X, y = pr.M[:, :-1], pr.M[:, -1]
    Vi = np.linalg.inv(V)
    A = X.T @ Vi @ X
    r = y - X @ np.linalg.solve(A, X.T @ Vi @ y)
    p = X.shape[1]
    if pr.reml:
        return -0.5 * (
            (k - p) * LOG2PI
            - pr.logdet_xtx
            + np.linalg.slogdet(V)[1]
            + np.linalg.slogdet(A)[1]
            + r @ Vi @ r
        )
    return -0.5 * (k * LOG2PI + np.linalg.slogdet(V)[1] + r @ Vi @ r)


@pytest.fixture(scope="module")
def toy():
    """Simulated: 9 studies, 5 labs (correlated by an AR-like R), 3 outcomes, rho = 0.4."""
    rng = np.random.default_rng(20240)
    k = 42
    study = rng.integers(0, 9, k)
    lab = rng.integers(0, 5, k)
    out = rng.integers(0, 3, k)
    v = rng.uniform(0.01, 0.05, k)
    y = rng.normal(size=k)
    X = np.column_stack([np.ones(k), rng.normal(size=k)])
    S = SamplingCov.from_rho(v, study, 0.4)
    R = 0.6 ** np.abs(np.subtract.outer(np.arange(5), np.arange(5)))
    return study, lab, out, y, X, S, R


def _theta_for(pr: GeneralProblem, rng) -> np.ndarray:
    th = np.empty(pr.n_params)
    for i, p in enumerate(pr.params):
        th[i] = {
            "var": rng.uniform(0.02, 0.2),
            "sd": rng.uniform(0.15, 0.45),
            "cor": rng.uniform(-0.3, 0.6),
        }[p.kind]
    return th


@pytest.mark.parametrize("struct", STRUCTS)
@pytest.mark.parametrize("layout", ["blocks", "woodbury"])
def test_derivatives_are_exact(toy, struct, layout):
    study, lab, out, y, X, S, R = toy
    terms = [
        factor_term(study, name="study"),
        factor_term(lab, R=R, R_names=list(range(5))),
        inner_outer_term(out, study if layout == "blocks" else lab, struct),
        inner_outer_term(out, lab, "CS"),
    ]
    pr = GeneralProblem(y, X, S, terms, reml=True)
    if layout == "blocks":
        assert 2 in pr.block_terms
    else:
        assert 2 in pr.wood_terms
    th = _theta_for(pr, np.random.default_rng(5))
    ev = pr(th, 2)
    assert abs(ev.ll - dense_loglik(pr, th)) < 1e-9 * abs(ev.ll)
    h = 1e-6
    E = np.eye(len(th))
    g = np.array([(pr(th + h * e, 0).ll - pr(th - h * e, 0).ll) / (2 * h) for e in E])
    np.testing.assert_allclose(ev.grad, g, rtol=1e-6, atol=1e-5)
    H = np.array([(pr(th + h * e, 1).grad - pr(th - h * e, 1).grad) / (2 * h) for e in E])
    np.testing.assert_allclose(ev.hess, 0.5 * (H + H.T), rtol=1e-5, atol=1e-6 * np.max(np.abs(H)))


def test_ml_likelihood_matches_the_dense_computation(toy):
    study, lab, out, y, X, S, _ = toy
    terms = [factor_term(study), inner_outer_term(out, lab, "HAR")]
    pr = GeneralProblem(y, X, S, terms, reml=False)
    th = _theta_for(pr, np.random.default_rng(7))
    assert abs(pr(th, 0).ll - dense_loglik(pr, th)) < 1e-9 * abs(pr(th, 0).ll)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_row_order_does_not_matter(toy, seed):
    study, lab, out, y, X, S, R = toy
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    terms = [
        factor_term(study),
        factor_term(lab, R=R, R_names=list(range(5))),
        inner_outer_term(out, study, "UN"),
    ]
    pr = GeneralProblem(y, X, S, terms, reml=True)
    S2 = SamplingCov.from_rho(S.diag[perm], study[perm], 0.4)
    terms2 = [
        factor_term(study[perm]),
        factor_term(lab[perm], R=R, R_names=list(range(5))),
        inner_outer_term(out[perm], study[perm], "UN"),
    ]
    pr2 = GeneralProblem(y[perm], X[perm], S2, terms2, reml=True)
    th = _theta_for(pr, rng)
    a, b = pr(th, 1), pr2(th, 1)
    assert abs(a.ll - b.ll) < 1e-9 * abs(a.ll)
    np.testing.assert_allclose(a.grad, b.grad, rtol=1e-7, atol=1e-8)


# --------------------------------------------------------------------------------------------
# boundary, fixed and automatically fixed components
# --------------------------------------------------------------------------------------------
def test_a_crossed_variance_on_the_boundary_is_exactly_zero():
    """Simulated: no lab effect and strongly negative within-lab dependence -> sigma2_lab = 0."""
    rng = np.random.default_rng(3)
    study = np.repeat(np.arange(30), 3)
    lab = np.tile(np.arange(3), 30)
    v = np.full(90, 0.02)
    y = 0.2 + rng.normal(0, 0.2, 30)[study] + rng.normal(0, np.sqrt(v))
    y -= (np.bincount(lab, y) / np.bincount(lab))[lab] - y.mean()  # remove lab means
    fit = _fit(y, np.ones((90, 1)), SamplingCov.from_vi(v), [factor_term(study), factor_term(lab)])
    assert fit.sigma2[1] == 0.0
    assert fit.optim.evaluation.grad[1] <= 0.0  # the likelihood falls into the box
    assert fit.sigma2[0] > 0.0


def test_components_the_data_cannot_identify_are_fixed():
    outer = np.array([0, 0, 1, 1, 2, 2])
    inner = np.array([0, 1, 1, 2, 0, 1])  # levels 0 and 2 never meet
    t = inner_outer_term(inner, outer, "UN")
    fixed = np.zeros(t.n_params, dtype=bool)
    vals = np.zeros(t.n_params)
    notes = auto_fixed([t], fixed, vals)
    # parameters: s0, s1, s2, rho01, rho02, rho12
    assert fixed.tolist() == [False, False, False, False, True, False]
    assert "never occur in the same outer group" in notes[0]
    one = factor_term(np.zeros(6))
    f1 = np.zeros(1, dtype=bool)
    assert auto_fixed([one], f1, np.zeros(1)) and f1[0]
    cs = inner_outer_term(inner, np.arange(6), "CS")  # one row per outer group
    f2 = np.zeros(2, dtype=bool)
    auto_fixed([cs], f2, np.zeros(2))
    assert f2.tolist() == [False, True]


def test_fixed_tau2_and_rho_are_held(toy):
    study, _, out, y, X, S, _ = toy
    terms = [inner_outer_term(out, study, "HCS")]
    fit = _fit(y, X, S, terms, tau2=[0.05, None, 0.02], rho=0.3)
    e = fit.estimates()[0]
    assert e.tau2[0] == pytest.approx(0.05, rel=1e-15)
    assert e.tau2[2] == pytest.approx(0.02, rel=1e-15)
    assert e.rho[0] == 0.3
    assert fit.n_estimated == 1


# --------------------------------------------------------------------------------------------
# covariance structures
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("struct", STRUCTS)
def test_structure_matrices(struct):
    cs = CovStruct(struct, 4)
    th = cs.internal(
        [0.1, 0.2, 0.3, 0.4] if cs.n_var == 4 else 0.2,
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0] if struct == "UN" else 0.5,
    )
    G = cs.matrix(th)
    tau2, rho = cs.report(th)
    np.testing.assert_allclose(np.diag(G), tau2 if cs.n_var == 4 else np.full(4, tau2[0]))
    if struct == "AR":
        assert G[0, 3] == pytest.approx(0.2 * 0.5**3)
    if struct == "HAR":
        assert G[1, 3] == pytest.approx(np.sqrt(0.2 * 0.4) * 0.25)
    if struct == "UN":
        assert G[0, 2] == pytest.approx(np.sqrt(0.1 * 0.3) * 0.4)  # ab, ac, bc order
        assert rho.tolist() == [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    if struct in ("ID", "DIAG"):
        assert cs.n_cor == 0 and not np.any(G - np.diag(np.diag(G)))


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------
def test_sampling_covariance_errors():
    with pytest.raises(InputError, match=r"^V must be a square matrix; got shape \(2, 3\)$"):
        SamplingCov.from_matrix(np.ones((2, 3)))
    A = np.array([[1.0, 0.2], [0.3, 1.0]])
    with pytest.raises(
        InputError,
        match=r"^V must be symmetric: entry \(row 2, col 1\) is 0\.3 "
        r"but \(row 1, col 2\) is 0\.2$",
    ):
        SamplingCov.from_matrix(A)
    with pytest.raises(
        InputError,
        match=r"^V: the sampling variance of row 2 \(diagonal entry\) "
        r"is missing; every row needs one > 0$",
    ):
        SamplingCov.from_long([0, 1], [0, 0], [1.0, 0.2], 2)
    with pytest.raises(InputError, match=r"^V: entry \(row 2, col 1\) is given more than once$"):
        SamplingCov.from_long([0, 1, 1, 1], [0, 0, 0, 1], [1.0, 0.2, 0.2, 1.0], 2)
    with pytest.raises(InputError, match=r"^V: row index 3 is outside the data rows 1\.\.2$"):
        SamplingCov.from_long([0, 2], [0, 0], [1.0, 0.2], 2)
    with pytest.raises(
        InputError,
        match=r"^V: the sampling variance of row 1 must be > 0; "
        r"got -1\.0$",
    ):
        SamplingCov.from_long([0, 1], [0, 1], [-1.0, 1.0], 2)
    with pytest.raises(InputError, match=r"^rho must be strictly between -1 and 1; got 1\.0$"):
        SamplingCov.from_rho([1.0, 1.0], [1, 1], 1.0)
    S = SamplingCov.from_long([0, 1, 1], [0, 0, 1], [1.0, 2.0, 1.0], 2)  # not PD
    with pytest.raises(
        InputError,
        match=r"^V is not positive definite: the block of rows 1\.\.2 "
        r"fails \(check the covariance of rows 1, 2\)$",
    ):
        GeneralProblem([0.0, 1.0], np.ones((2, 1)), S, [], reml=True)


def test_upper_triangle_and_both_triangles_are_accepted():
    a = SamplingCov.from_long([0, 0, 1], [0, 1, 1], [1.0, 0.3, 2.0], 2)
    b = SamplingCov.from_long([0, 1, 0, 1], [0, 0, 1, 1], [1.0, 0.3, 0.3, 2.0], 2)
    for s in (a, b):
        assert s.block(np.array([0, 1])).tolist() == [[1.0, 0.3], [0.3, 2.0]]


def test_R_matrix_errors_and_matching():
    lab = np.array(["b", "a", "b"])
    R = np.array([[1.0, 0.5], [0.5, 1.0]])
    t = factor_term(lab, R=4 * R, R_names=["a", "b"])  # scaled to a correlation matrix
    np.testing.assert_allclose(t.R, R)
    t2 = factor_term(
        lab, R=np.array([[1, 0.2, 0.5], [0.2, 1, 0], [0.5, 0, 1.0]]), R_names=["b", "c", "a"]
    )
    assert t2.R[0, 1] == 0.5  # levels a, b matched by name, extra level c dropped
    with pytest.raises(
        InputError,
        match=r"^R for lab has no row/column for level 'b' \(1 "
        r"level\(s\) of the data missing\)$",
    ):
        factor_term(lab, R=np.eye(2), R_names=["a", "z"], name="lab")
    with pytest.raises(
        InputError,
        match=r"^R for lab must be symmetric: entry \(a, b\) differs "
        r"from \(b, a\)$",
    ):
        factor_term(lab, R=np.array([[1, 0.1], [0.2, 1.0]]), R_names=["a", "b"], name="lab")
    with pytest.raises(
        InputError, match=r"^R for lab must be a square matrix; got shape \(2, 3\)$"
    ):
        factor_term(lab, R=np.ones((2, 3)), name="lab")
    with pytest.raises(InputError, match=r"^R for lab: level 'a' appears twice$"):
        factor_term(lab, R=np.eye(2), R_names=["a", "a"], name="lab")


def test_fixed_value_errors(toy):
    study, _, out, y, X, S, _ = toy
    terms = [factor_term(study), inner_outer_term(out, study, "CS")]
    with pytest.raises(InputError, match=r"^sigma2 has 2 entries but the model has 1$"):
        fit_general(y, X, S, terms, sigma2=[0.1, 0.2])
    with pytest.raises(InputError, match=r"^rho must be between -1 and 1; got 2\.0$"):
        fit_general(y, X, S, terms, rho=2.0)
    with pytest.raises(InputError, match=r"^tau2 values must be finite and >= 0; got -1\.0$"):
        fit_general(y, X, S, terms, tau2=-1.0)
    with pytest.raises(
        InputError,
        match=r"^gamma2/phi were given but the model has no second "
        r"'~ inner \| outer' term$",
    ):
        fit_general(y, X, S, terms, gamma2=0.1)
    with pytest.raises(InputError, match=r"^method must be one of REML, ML; got 'EE'$"):
        fit_general(y, X, S, terms, method="EE")
