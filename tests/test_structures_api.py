"""Random-effects structures through the public API, the command line and analysis files.

The numbers themselves are tested at the core level (test_structures_core.py); here every
structures reference case runs through ``mlmeta fit --json`` (the same flags as the shared
check_cases.py), and the API's forms of random/struct/R/V, predictions, robust inference,
refits, printing and the one-line errors are pinned.
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mlmeta
from mlmeta.cli import main
from mlmeta.errors import FitWarning, InputError, MlmetaWarning
from mlmeta.io.analysis import parse_analysis
from mlmeta.io.structures import r_sorted_levels, read_R_csv, read_V_csv
from mlmeta.model import fit_spec

HERE = Path(__file__).parent / "fixtures" / "reference_structures"
DATA = HERE / "data"
CASES = sorted((HERE / "cases").glob("*.json"))
STRUCT_KEYS = ("tau2", "rho", "gamma2", "phi")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MlmetaWarning)
        yield


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def cli_error(args: list[str]) -> str:
    code, _out, err = run_cli(args)
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlmeta: error: "), err
    return lines[0][len("mlmeta: error: ") :]


def case_args(case: dict) -> list[str]:
    """The flags of the shared check_cases.py for a structures case."""
    args = ["fit", str(DATA / case["data"]), "--yi", case["yi"], "--vi", case["vi"]]
    for term in case["random_terms"] or ["none"]:
        args += ["--random", term]
    if case.get("struct"):
        args += ["--struct", ",".join(case["struct"])]
    for fac, fname in (case.get("R") or {}).items():
        args += ["--R", f"{fac}={DATA / fname}"]
    if case.get("V"):
        args += ["--V", str(DATA / case["V"])]
    if case.get("rho"):
        args += ["--rho", str(case["rho"]["value"]), "--rho-cluster", case["rho"]["cluster"]]
    if case.get("mods"):
        args += ["--mods", case["mods"]]
    return args + [
        "--method",
        case["method"],
        "--test",
        case["test"],
        "--dfs",
        case["dfs"],
        "--json",
    ]


def _close(got, exp, rel, abs_, path):
    if exp is None:
        assert got is None, path
        return
    if isinstance(exp, list):
        assert isinstance(got, list) and len(got) == len(exp), f"{path}: {got} vs {exp}"
        for i, (g, e) in enumerate(zip(got, exp)):
            _close(g, e, rel, abs_, f"{path}[{i}]")
        return
    assert abs(float(got) - exp) <= max(abs_, rel * abs(exp)), f"{path}: {got} != {exp}"


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem.startswith("lim2014") else p for p in CASES],
    ids=[p.stem for p in CASES],
)
def test_command_line_matches_metafor(path):
    case = json.loads(path.read_text())
    code, out, err = run_cli(case_args(case))
    assert code == 0, err
    got = json.loads(out)
    tol = case["tolerance"]
    for key, exp in case["expect"].items():
        if key in ("notes", "metafor"):
            continue
        _close(got.get(key), exp, tol["rel"], tol["abs"], key)
    # metafor reports n_levels only when every term is a '~ 1 | ...' term
    assert ("n_levels" in got) == ("n_levels" in case["expect"])
    for key in STRUCT_KEYS:
        assert (key in got) == (key in case["expect"]), key


# --------------------------------------------------------------------------------------------
# the API
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crossed() -> pd.DataFrame:
    return pd.read_csv(DATA / "crossed_lab.csv")  # SIMULATED data


@pytest.fixture(scope="module")
def berkey() -> pd.DataFrame:
    return pd.read_csv(DATA / "berkey1998.csv")


@pytest.fixture(scope="module")
def berkey_V() -> pd.DataFrame:
    return read_V_csv(DATA / "berkey1998_V.csv")


@pytest.fixture(scope="module")
def crossed_fit(crossed):
    return mlmeta.rma_mv(
        crossed, "yi", "vi", random=["~ 1 | study/es", "~ 1 | lab"], test="t", dfs="contain"
    )


def test_nested_spellings_still_use_the_nested_engine(crossed):
    a = mlmeta.rma_mv(crossed, "yi", "vi", random="study/es")
    b = mlmeta.rma_mv(crossed, "yi", "vi", random="~ 1 | study/es")
    c = mlmeta.rma_mv(crossed, "yi", "vi", random=["~ 1 | study/es"])
    assert type(a).__name__ == type(b).__name__ == type(c).__name__ == "MetaResults"
    assert a.sigma2.tolist() == b.sigma2.tolist() == c.sigma2.tolist()


def test_a_list_of_plain_names_is_refused_showing_both_spellings(crossed):
    with pytest.raises(
        InputError,
        match=r"random=\['study', 'lab'\] is ambiguous: write "
        r"random='study/lab' .* random=\['~ 1 \| study', "
        r"'~ 1 \| lab'\] for crossed terms",
    ):
        mlmeta.rma_mv(crossed, "yi", "vi", random=["study", "lab"])


def test_crossed_results(crossed_fit):
    r = crossed_fit
    assert r.sigma2.index.tolist() == ["study", "study/es", "lab"]
    assert r.n_levels == [24, 61, 8]
    assert r.tau2 is None and r.rho is None
    vc = r.variance_components
    assert vc.index.tolist() == ["sigma2[study]", "sigma2[study/es]", "sigma2[lab]"]
    d = r.to_dict()
    assert d["random"] == ["~ 1 | study/es", "~ 1 | lab"] and d["struct"] is None
    # the pooled weights reproduce the estimate (V^{-1} 1 / 1'V^{-1}1)
    w = r.weights() / 100
    assert abs(float(w @ r.data.y) - r.beta.iloc[0]) < 1e-12
    text = str(r)
    assert "sigma^2.3" in text and "lab" in text and "nlvls" in text


def test_robust_needs_a_cluster_containing_every_random_effect(crossed_fit):
    with pytest.raises(
        InputError,
        match=r"^random=\['~ 1 \| study/es', '~ 1 \| lab'\] has no "
        r"single outer factor that contains every random "
        r"effect \(the terms cross each other\); give cluster= "
        r"a column within which every random effect and "
        r"correlated sampling error lies$",
    ):
        crossed_fit.robust()
    with pytest.raises(
        InputError,
        match=r"^CR2 needs every random effect and correlated "
        r"sampling error inside one cluster, and cluster "
        r"'study' cuts through those of random=\['~ 1 \| "
        r"study/es', '~ 1 \| lab'\]; use type='CR1'",
    ):
        crossed_fit.robust(cluster="study")
    codes, _ = crossed_fit.cluster_codes("study")
    with pytest.raises(
        InputError,
        match=r"^the cluster variable cuts through random effects or "
        r"correlated sampling errors of random=",
    ):
        crossed_fit.marginal_blocks(codes)
    # CR1 (metafor's robust) with the full working weights W = V^-1
    rob = crossed_fit.robust(cluster="study", type="CR1")
    assert rob.n_clusters == 24 and rob.coefs["df"].iloc[0] == 23
    X, e = crossed_fit.data.X, crossed_fit.data.y - crossed_fit.data.X @ crossed_fit.core.beta
    WX = crossed_fit.core.problem.marginal_inverse_apply(crossed_fit.core.theta, X[:, 0])
    u = np.bincount(codes, weights=WX * e)
    M = crossed_fit.core.vcov[0, 0]
    assert abs(rob.vcov.iloc[0, 0] - 24 / 23 * M * (u @ u) * M) < 1e-15


def test_full_weight_cr1_equals_the_blockwise_cr1_when_nested(berkey, berkey_V):
    res = mlmeta.rma_mv(
        berkey, "yi", V=berkey_V, random="~ outcome | trial", struct="UN", mods="~ 0 + outcome"
    )
    a = res.robust(type="CR1")
    codes, labels = res.cluster_codes("trial")
    b = res._robust_cr1_full("trial", codes, len(labels))
    np.testing.assert_allclose(b.vcov.to_numpy(), a.vcov.to_numpy(), rtol=1e-10)
    assert abs(a.QM - b.QM) < 1e-10 * a.QM and abs(a.QMp - b.QMp) < 1e-12


def test_un_model_with_V_in_every_form(berkey, berkey_V):
    kw = {"random": "~ outcome | trial", "struct": "UN", "mods": "~ 0 + outcome"}
    a = mlmeta.rma_mv(berkey, "yi", V=berkey_V, **kw)
    dense = np.zeros((10, 10))
    r, c = berkey_V["row"].to_numpy() - 1, berkey_V["col"].to_numpy() - 1
    dense[r, c] = dense[c, r] = berkey_V["value"].to_numpy()
    for V in (dense, sp.csr_matrix(dense), str(DATA / "berkey1998_V.csv")):
        b = mlmeta.rma_mv(berkey, "yi", V=V, **kw)
        np.testing.assert_allclose(b.tau2.to_numpy(), a.tau2.to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(b.rho.to_numpy(), a.rho.to_numpy(), rtol=1e-12)
    assert a.tau2.index.tolist() == ["AL", "PD"]
    assert a.rho.index.tolist() == ["AL-PD"]
    text = a.summary()
    for s in (
        "outer factor: trial   (nlvls = 5)",
        "inner factor: outcome (nlvls = 2)",
        "tau^2.1",
        "rho.AL",
        "k.lvl",
    ):
        assert s in text


def test_rows_with_missing_values_are_dropped_from_V(berkey, berkey_V):
    d = berkey.copy()
    d.loc[3, "yi"] = np.nan  # trial 2, outcome AL
    kw = {"random": "~ outcome | trial", "struct": "UN"}
    with pytest.warns(mlmeta.DataWarning, match="1 of 10 rows dropped"):
        a = mlmeta.rma_mv(d, "yi", V=berkey_V, **kw)
    keep = np.arange(10) != 3
    dense = np.zeros((10, 10))
    r, c = berkey_V["row"].to_numpy() - 1, berkey_V["col"].to_numpy() - 1
    dense[r, c] = dense[c, r] = berkey_V["value"].to_numpy()
    b = mlmeta.rma_mv(berkey[keep].reset_index(drop=True), "yi", V=dense[np.ix_(keep, keep)], **kw)
    assert a.k == 9
    np.testing.assert_allclose(a.tau2.to_numpy(), b.tau2.to_numpy(), rtol=1e-10)
    assert abs(a.logLik - b.logLik) < 1e-10


def test_predictions_follow_metafor(berkey, berkey_V):
    res = mlmeta.rma_mv(berkey, "yi", V=berkey_V, random="~ outcome | trial", struct="UN")
    pr = res.predict()
    # intercept-only with one tau2 per outcome: one prediction per inner level
    assert pr.tau2_level == ("AL", "PD")
    tau2 = res.tau2.to_numpy()
    crit = 1.959963984540054
    for i in range(2):
        half = pr.pi_ub[i] - pr.pred[i]
        assert abs(half - crit * np.sqrt(pr.se[i] ** 2 + tau2[i])) < 1e-12
    # new moderator values need tau2_levels for the prediction interval
    nolev = res.predict(np.array([[1.0]]))
    assert np.isnan(nolev.pi_lb[0])
    lev = res.predict(np.array([[1.0]]), tau2_levels="PD")
    assert abs(lev.pi_ub[0] - pr.pi_ub[1]) < 1e-12
    assert abs(res.predict(np.array([[1.0]]), tau2_levels=2).pi_ub[0] - pr.pi_ub[1]) < 1e-12
    with pytest.raises(
        InputError,
        match=r"^tau2_levels: 'XX' is not a level of 'outcome' "
        r"\(AL, PD\)$",
    ):
        res.predict(np.array([[1.0]]), tau2_levels="XX")
    cs = mlmeta.rma_mv(berkey, "yi", V=berkey_V, random="~ outcome | trial", struct="CS")
    p1 = cs.predict()
    assert len(p1.pred) == 1 and p1.tau2_level == ()
    assert abs(p1.pi_ub[0] - p1.pred[0] - crit * np.sqrt(p1.se[0] ** 2 + cs.tau2.iloc[0])) < 1e-12


def test_robust_by_outer_factor_and_marginal_blocks(berkey, berkey_V):
    res = mlmeta.rma_mv(
        berkey, "yi", V=berkey_V, random="~ outcome | trial", struct="UN", mods="~ 0 + outcome"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        rob = res.robust()
    assert rob.cluster == "trial" and rob.n_clusters == 5
    # the blocks are those of the dense marginal covariance
    codes, _ = res.cluster_codes("trial")
    T = np.array(
        [
            [res.tau2.iloc[0], res.rho.iloc[0] * np.sqrt(res.tau2.prod())],
            [res.rho.iloc[0] * np.sqrt(res.tau2.prod()), res.tau2.iloc[1]],
        ]
    )
    dense = np.zeros((10, 10))
    r, c = berkey_V["row"].to_numpy() - 1, berkey_V["col"].to_numpy() - 1
    dense[r, c] = dense[c, r] = berkey_V["value"].to_numpy()
    inner = (berkey["outcome"] == "PD").to_numpy().astype(int)
    full = dense + T[np.ix_(inner, inner)] * (codes[:, None] == codes[None, :])
    for rows, Vc in res.marginal_blocks(codes):
        np.testing.assert_allclose(Vc, full[np.ix_(rows, rows)], rtol=1e-14)


def test_default_cluster_is_the_factor_containing_the_others():
    d = pd.read_csv(DATA / "multivar_labs.csv")  # SIMULATED data: studies nested in labs
    res = mlmeta.rma_mv(
        d,
        "yi",
        "vi",
        random=["~ outcome | study", "~ outcome | lab"],
        struct=["UN", "CS"],
        rho=0.5,
        rho_cluster="study",
        mods="~ 0 + outcome",
    )
    assert res.default_cluster() == "lab"
    rob = res.robust(type="CR1")
    assert rob.n_clusters == 16
    assert res.gamma2.index.tolist() == ["gamma2"] and res.phi.index.tolist() == ["phi"]
    assert res.rho.index.tolist() == ["anx-dep", "anx-str", "dep-str"]


def test_refit_to_a_subset_equals_a_fit_to_that_subset(berkey, berkey_V):
    kw = {"random": "~ outcome | trial", "struct": "HCS"}
    res = mlmeta.rma_mv(berkey, "yi", V=berkey_V, **kw)
    keep = (berkey["trial"] != 3).to_numpy()
    a = res.refit(rows=keep)
    dense = np.zeros((10, 10))
    r, c = berkey_V["row"].to_numpy() - 1, berkey_V["col"].to_numpy() - 1
    dense[r, c] = dense[c, r] = berkey_V["value"].to_numpy()
    b = mlmeta.rma_mv(berkey[keep].reset_index(drop=True), "yi", V=dense[np.ix_(keep, keep)], **kw)
    np.testing.assert_allclose(a.tau2.to_numpy(), b.tau2.to_numpy(), rtol=1e-8)
    assert abs(a.logLik - b.logLik) < 1e-9
    ml = res.refit(method="ML")
    assert ml.method == "ML" and ml.logLik > res.logLik


def test_R_given_as_a_dataframe_is_matched_by_level_name():
    d = pd.read_csv(DATA / "lim2014_o_o_adj.csv")
    R = read_R_csv(DATA / "lim2014_o_o_adj_R_phylo.csv")
    shuffled = R.iloc[::-1, ::-1]
    kw = {"random": ["~ 1 | species", "~ 1 | phylo"]}
    a = mlmeta.rma_mv(d.iloc[:60], "yi", "vi", R={"phylo": R}, **kw)
    b = mlmeta.rma_mv(d.iloc[:60], "yi", "vi", R={"phylo": shuffled}, **kw)
    np.testing.assert_allclose(a.sigma2.to_numpy(), b.sigma2.to_numpy(), rtol=1e-10)
    assert "R" in a.summary() and "yes" in a.summary()
    with pytest.raises(
        InputError,
        match=r"^R names 'species2', which is not a "
        r"'~ 1 \| species2' term of random$",
    ):
        mlmeta.rma_mv(d.iloc[:60], "yi", "vi", R={"species2": R}, **kw)
    with pytest.raises(
        InputError,
        match=r"^R for 'phylo' must be a DataFrame whose index and "
        r"columns are the level names \(or a CSV file\); got "
        r"ndarray$",
    ):
        mlmeta.rma_mv(d.iloc[:60], "yi", "vi", R={"phylo": R.to_numpy()}, **kw)


def test_not_yet_available_analyses_say_so(crossed_fit, berkey, berkey_V):
    # profile CIs, LRTs per term and I2 with inner|outer terms: test_structures_profile.py
    # R2 needs moderators (test_structures_bias_r2.py has R2, Egger and aggregated analyses)
    with pytest.raises(InputError, match="^R2 needs moderators"):
        crossed_fit.r2()
    with pytest.raises(InputError, match=r"^profile-likelihood CIs of I2 is not available yet"):
        crossed_fit.i2(ci=True)
    d = crossed_fit.to_dict(("R2", "robust_cr2"))
    assert d["R2"] is None and d["robust_cr2"] is None
    assert set(d["block_notes"]) == {"R2", "robust_cr2"}


def test_lrt_of_crossed_components(crossed_fit, crossed, berkey, berkey_V):
    from mlmeta.core.fit import fit_nested

    t = crossed_fit.lrt_drop().table
    assert t["level"].tolist() == ["study", "study/es", "lab"]
    nested = fit_nested(
        crossed["yi"].to_numpy(),
        crossed["vi"].to_numpy(),
        np.ones((len(crossed), 1)),
        [crossed["study"].to_numpy(), crossed["es"].to_numpy()],
    )
    assert abs(t["logLik_reduced"].iloc[2] - nested.ll) < 1e-8
    assert abs(t["LRT"].iloc[2] - 2 * (crossed_fit.core.ll - nested.ll)) < 1e-8
    un = mlmeta.rma_mv(berkey, "yi", V=berkey_V, random="~ outcome | trial", struct="UN")
    (row,) = un.lrt_drop().table.to_dict(orient="records")  # the term against V only
    assert row["kind"] == "inner_outer" and row["df"] == 3


def test_i2_of_crossed_components_follows_the_metafor_faq(crossed_fit):
    r = crossed_fit.i2()
    X, v = crossed_fit.data.X, crossed_fit.data.v
    W = np.diag(1 / v)
    P = W - W @ X @ np.linalg.solve(X.T @ W @ X, X.T @ W)
    tv = (len(v) - X.shape[1]) / np.trace(P)
    s2 = crossed_fit.sigma2.to_numpy()
    np.testing.assert_allclose(r.levels.to_numpy(), 100 * s2 / (s2.sum() + tv), rtol=1e-12)
    assert abs(r.typical_v - tv) < 1e-14


def test_inner_levels_sort_as_R_factor():
    assert r_sorted_levels(pd.Series(["b", "B", "a", "C"])) == ["a", "b", "B", "C"]
    assert r_sorted_levels(pd.Series([10, 2, 1])) == [1, 2, 10]


# --------------------------------------------------------------------------------------------
# command line errors
# --------------------------------------------------------------------------------------------
@pytest.fixture()
def small(tmp_path):
    """Two trials of dat.berkey1998 (4 rows) and a V file writer."""
    d = pd.read_csv(DATA / "berkey1998.csv").iloc[:4]
    p = tmp_path / "b.csv"
    d.to_csv(p, index=False)

    def v_file(text: str) -> str:
        f = tmp_path / "V.csv"
        f.write_text("row,col,value\n" + text)
        return str(f)

    return str(p), v_file


BASE_V = "1,1,0.0075\n2,1,0.003\n2,2,0.0077\n3,3,0.0057\n4,3,0.0009\n4,4,0.0008\n"


def test_cli_V_is_validated(small):
    data, v_file = small
    args = ["fit", data, "--yi", "yi", "--random", "~ outcome | trial", "--V"]
    assert run_cli(args + [v_file(BASE_V), "--json"])[0] == 0
    assert cli_error(args + [v_file(BASE_V + "1,2,0.004\n")]) == (
        "V must be symmetric: entry (row 2, col 1) is 0.003 but (row 1, col 2) is 0.004"
    )
    assert cli_error(args + [v_file(BASE_V.replace("2,1,0.003", "2,1,0.3"))]) == (
        "V is not positive definite: the block of rows 1..2 fails (check the covariance of "
        "rows 1, 2)"
    )
    assert cli_error(args + [v_file(BASE_V.replace("4,4,0.0008\n", ""))]) == (
        "V: the sampling variance of row 4 (diagonal entry) is missing; every row needs one > 0"
    )
    assert cli_error(args + [v_file(BASE_V + "5,1,0.1\n")]) == (
        "V: row index 5 is outside the data rows 1..4"
    )
    assert cli_error(args + [v_file(BASE_V + "2,1,0.003\n")]) == (
        "V: entry (row 2, col 1) is given more than once"
    )
    assert cli_error(args + [v_file(BASE_V.replace("3,3,0.0057", "3,3,-1"))]) == (
        "V: the sampling variance of row 3 must be > 0; got -1.0"
    )
    assert cli_error(args + [v_file("1,1,x\n")]).endswith("line 2: value must be a number; got 'x'")
    assert cli_error(args + [v_file("2.5,1,1\n")]).endswith(
        "line 2: row must be a whole row number; got 2.5"
    )
    assert cli_error(args + ["missing.csv"]) == "V file 'missing.csv' not found"


def test_cli_other_structure_errors(small, tmp_path):
    data, _ = small
    base = ["fit", data, "--yi", "yi", "--vi", "vi"]
    assert cli_error(base + ["--random", "trial", "--R", "trial"]) == (
        "--R expects FACTOR=PATH (e.g. --R phylo=tree_cor.csv); got 'trial'"
    )
    assert cli_error(base + ["--random", "none", "--random", "trial"]) == (
        "--random none cannot be combined with other --random terms"
    )
    assert cli_error(base + ["--random", "~ outcome | trial", "--struct", "XX"]) == (
        "struct must be one of CS, HCS, UN, AR, HAR, ID, DIAG; got 'XX'"
    )
    bad = tmp_path / "R.csv"
    bad.write_text(",a,b\na,1,0.5\n")
    assert cli_error(base + ["--random", "trial", "--R", f"trial={bad}"]).endswith(
        "must be square (level names in the header row and the first column); got 1 rows and "
        "2 columns"
    )
    assert cli_error(
        base
        + ["--random", "~ outcome | trial", "--rho", "0.5", "--V", str(DATA / "berkey1998_V.csv")]
    ) == (
        "give either V (a known sampling covariance) or rho (a constant sampling "
        "correlation), not both"
    )


def test_cli_struct_without_inner_outer_term(small):
    data, _ = small
    msg = cli_error(
        ["fit", data, "--yi", "yi", "--vi", "vi", "--random", "trial", "--struct", "UN"]
    )
    assert msg == "struct=['UN'] applies to '~ inner | outer' terms, and the model has none"


def test_cli_summary_prints_the_structure_tables():
    code, out, _ = run_cli(
        [
            "fit",
            str(DATA / "multivar_labs.csv"),
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "~ outcome | study",
            "--random",
            "~ outcome | lab",
            "--struct",
            "UN,CS",
            "--rho",
            "0.5",
            "--rho-cluster",
            "study",
            "--mods",
            "~ 0 + outcome",
        ]
    )
    assert code == 0
    for s in (
        "outer factor: study   (nlvls = 43)",
        "outer factor: lab     (nlvls = 16)",
        "gamma^2",
        "phi",
        "rho.anx",
        "tau^2.3",
    ):
        assert s in out


# --------------------------------------------------------------------------------------------
# analysis files
# --------------------------------------------------------------------------------------------
def test_analysis_file_model_section(tmp_path):
    (tmp_path / "V.csv").write_text((DATA / "berkey1998_V.csv").read_text())
    (tmp_path / "d.csv").write_text((DATA / "berkey1998.csv").read_text())
    raw = {
        "data": {"file": "d.csv"},
        "effect": {"yi": "yi", "vi": "vi"},
        "model": {"random": ["~ outcome | trial"], "struct": "UN", "V": "V.csv", "test": "z"},
    }
    spec = parse_analysis(raw, source=tmp_path / "a.toml")
    assert spec.random_levels == ("trial", "outcome")
    ms = spec.model_spec("yi", "vi", "~ 0 + outcome")
    res = fit_spec(pd.read_csv(tmp_path / "d.csv"), ms)
    case = json.loads((HERE / "cases" / "berkey1998_hcs_z.json").read_text())
    np.testing.assert_allclose(res.tau2.to_numpy(), case["expect"]["tau2"], rtol=1e-5)
    d = spec.to_dict()["model"]
    assert d["random"] == ["~ outcome | trial"] and d["struct"] == ["UN"]
    bad = dict(raw, model={**raw["model"], "V": "nope.csv"})
    with pytest.raises(mlmeta.MlmetaError, match=r"'model\.V': file 'nope\.csv' not found"):
        parse_analysis(bad, source=tmp_path / "a.toml")
    bad = dict(raw, model={**raw["model"], "R": {"phylo": "nope.csv"}})
    with pytest.raises(
        mlmeta.MlmetaError,
        match=r"'model\.R\.phylo': file 'nope\.csv' not "
        r"found",
    ):
        parse_analysis(bad, source=tmp_path / "a.toml")
    bad = dict(raw, model={**raw["model"], "rho": 0.5})
    with pytest.raises(
        mlmeta.MlmetaError,
        match=r"give either 'model\.V' .* or 'model\.rho', "
        r"not both",
    ):
        parse_analysis(bad, source=tmp_path / "a.toml")
