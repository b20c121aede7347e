"""Cluster-robust inference (mlmeta.core.robust) against metafor 3.8-1 / clubSandwich 0.5.8.

For every reference case with ``robust_cr2`` / ``robust_cr1`` blocks, the marginal covariance is
rebuilt from the data and metafor's fitted variance components (plain dense numpy), beta is
obtained by GLS, and every reported number is compared with the case's tolerance.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mlmeta.core.robust import cr1, cr2, robust_test

REF = Path(__file__).parent / "fixtures" / "reference"
CASE_FILES = sorted((REF / "cases").glob("*.json"))


def _load(path: Path) -> dict:
    with open(path) as fh:
        return json.load(fh)


ROBUST_CASES = [p for p in CASE_FILES if "robust_cr2" in _load(p)["expect"]]


# ---------------------------------------------------------------------------------------------
# Rebuilding a case: data, design matrix (R treatment coding), V blocks, GLS fit
# ---------------------------------------------------------------------------------------------


def _read_csv(name: str) -> dict[str, list[str]]:
    with open(REF / "data" / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [r[k] for r in rows] for k in rows[0]}


def _is_numeric(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
    except ValueError:
        return False
    return True


def _parse_mods(mods: str | None) -> tuple[bool, list[tuple[str, bool]]]:
    """(intercept?, [(variable, forced factor?)]) for the simple formulas used by the cases."""
    if mods is None:
        return True, []
    rhs = mods.strip()
    assert rhs.startswith("~")
    terms = [t.strip() for t in rhs[1:].split("+")]
    intercept = True
    out = []
    for t in terms:
        if t in ("0", "-1"):
            intercept = False
            continue
        if t == "1":
            continue
        m = re.fullmatch(r"factor\((\w+)\)", t)
        if m:
            out.append((m.group(1), True))
        else:
            assert re.fullmatch(r"\w+", t), t
            out.append((t, False))
    return intercept, out


def _build_case(case: dict):
    data = _read_csv(case["data"])
    intercept, terms = _parse_mods(case["mods"])
    needed = [case["yi"], case["vi"], *case["random"], *[v for v, _ in terms]]
    k_all = len(data[case["yi"]])
    keep = [i for i in range(k_all) if all(data[c][i] != "" for c in needed)]
    col = {c: [data[c][i] for i in keep] for c in needed}
    k = len(keep)
    y = np.array(col[case["yi"]], dtype=float)
    v = np.array(col[case["vi"]], dtype=float)

    cols, names = [], []
    if intercept:
        cols.append(np.ones(k))
        names.append("intrcpt")
    for var, forced in terms:
        vals = col[var]
        label = f"factor({var})" if forced else var
        if not forced and _is_numeric(vals):
            cols.append(np.array(vals, dtype=float))
            names.append(var)
            continue
        levels = sorted(set(vals))
        if _is_numeric(levels):
            levels = sorted(levels, key=float)
        use = levels[1:] if intercept else levels
        for lev in use:
            cols.append(np.array([1.0 if x == lev else 0.0 for x in vals]))
            names.append(f"{label}{lev}")
    X = np.column_stack(cols)
    assert names == case["coef_names"], (names, case["coef_names"])

    # V = diag(v) + sum_l sigma2_l [rows share the level-l combination of random factors]
    sigma2 = case["expect"]["sigma2"]
    rand = case["random"]
    V = np.diag(v)
    for lev, s2 in enumerate(sigma2):
        keys = ["\x1f".join(col[r][i] for r in rand[: lev + 1]) for i in range(k)]
        _, codes = np.unique(keys, return_inverse=True)
        V = V + s2 * (codes[:, None] == codes[None, :])
    _, cluster = np.unique(col[rand[0]], return_inverse=True)
    cluster = cluster.astype(np.int64)

    W = np.linalg.inv(V)
    bread = np.linalg.inv(X.T @ W @ X)
    beta = bread @ X.T @ W @ y
    resid = y - X @ beta
    blocks = [V[np.ix_(cluster == c, cluster == c)] for c in range(cluster.max() + 1)]
    btt = list(range(1, X.shape[1])) if intercept and X.shape[1] > 1 else list(range(X.shape[1]))
    return X, beta, resid, cluster, blocks, bread, btt


def _close(got, exp, rel: float, abs_: float, what: str) -> None:
    if exp is None:
        assert got is None or (np.isscalar(got) and np.isnan(got)), f"{what}: got {got}, exp NA"
        return
    g = np.asarray(got, dtype=float)
    e = np.asarray(exp, dtype=float)
    assert g.shape == e.shape, f"{what}: shape {g.shape} != {e.shape}"
    tol = np.maximum(abs_, rel * np.abs(e))
    bad = ~(np.abs(g - e) <= tol)
    assert not bad.any(), f"{what}: got {g[bad]} expected {e[bad]} (tol {tol[bad]})"


def _compare_block(got: dict, exp: dict, tol: dict, label: str) -> None:
    for key, ev in exp.items():
        assert key in got, f"{label}: missing {key}"
        _close(got[key], ev, tol["rel"], tol["abs"], f"{label}.{key}")


def _tol(case: dict, block: str) -> dict:
    t = case["tolerance"]
    return t.get("by_block", {}).get(block, {"rel": t["rel"], "abs": t["abs"]})


# ---------------------------------------------------------------------------------------------
# Reference cases
# ---------------------------------------------------------------------------------------------


def test_robust_cases_found() -> None:
    assert len(ROBUST_CASES) >= 30


@pytest.mark.parametrize("path", ROBUST_CASES, ids=[p.stem for p in ROBUST_CASES])
def test_cr2_matches_clubsandwich(path: Path) -> None:
    case = _load(path)
    X, beta, resid, cluster, blocks, bread, btt = _build_case(case)
    res = cr2(X, beta, resid, cluster, blocks, bread=bread, btt=btt)
    _compare_block(res, case["expect"]["robust_cr2"], _tol(case, "robust_cr2"), "robust_cr2")


@pytest.mark.parametrize("path", ROBUST_CASES, ids=[p.stem for p in ROBUST_CASES])
def test_cr1_matches_metafor(path: Path) -> None:
    case = _load(path)
    assert "robust_cr1" in case["expect"]
    X, beta, resid, cluster, blocks, bread, btt = _build_case(case)
    res = cr1(X, beta, resid, cluster, blocks, bread=bread, btt=btt)
    _compare_block(res, case["expect"]["robust_cr1"], _tol(case, "robust_cr1"), "robust_cr1")


# ---------------------------------------------------------------------------------------------
# Invariances and API equivalences
# ---------------------------------------------------------------------------------------------

INV_CASES = [
    "assink2016_deltype_t",
    "alliance_like_treatment_t",
    "crede2010_grade_class_t",
    "assink2016_subgroups_t",
    "konstantopoulos2011_t",
]
_KEYS = ["vcov", "se", "stat", "df", "pval", "ci_lb", "ci_ub", "QM", "QM_df", "QMp"]


def _assert_same(a: dict, b: dict) -> None:
    for key in _KEYS:
        np.testing.assert_allclose(
            np.asarray(a[key], float),
            np.asarray(b[key], float),
            rtol=1e-9,
            atol=1e-13,
            err_msg=key,
        )


def _permute(X, beta, resid, cluster, blocks, perm_rows, relabel):
    """Rows reordered by ``perm_rows`` and cluster codes renamed by ``relabel``."""
    Xp, rp, clp = X[perm_rows], resid[perm_rows], relabel[cluster[perm_rows]]
    new_blocks: list[np.ndarray] = [None] * len(blocks)  # type: ignore[list-item]
    for c in range(len(blocks)):
        old_rows = np.flatnonzero(cluster == c)  # original within-cluster order
        new_rows = np.flatnonzero(clp == relabel[c])  # new positions, increasing
        # position within the old cluster of each new row
        pos = np.searchsorted(old_rows, perm_rows[new_rows])
        new_blocks[relabel[c]] = blocks[c][np.ix_(pos, pos)]
    return Xp, beta, rp, clp, new_blocks


@pytest.mark.parametrize("name", INV_CASES)
@pytest.mark.parametrize("kind", ["CR1", "CR2"])
def test_row_and_label_permutation_invariance(name: str, kind: str) -> None:
    case = _load(REF / "cases" / f"{name}.json")
    X, beta, resid, cluster, blocks, bread, btt = _build_case(case)
    ref = robust_test(X, beta, resid, cluster, blocks, bread=bread, btt=btt, type=kind)
    rng = np.random.default_rng(20240601)
    C = len(blocks)
    for _ in range(3):
        # across and within clusters, with renamed clusters
        perm = rng.permutation(len(resid))
        relabel = rng.permutation(C)
        args = _permute(X, beta, resid, cluster, blocks, perm, relabel)
        got = robust_test(*args, bread=bread, btt=btt, type=kind)
        _assert_same(ref, got)
        # within clusters only
        perm = np.arange(len(resid))
        for c in range(C):
            idx = np.flatnonzero(cluster == c)
            perm[idx] = rng.permutation(idx)
        args = _permute(X, beta, resid, cluster, blocks, perm, np.arange(C))
        got = robust_test(*args, bread=bread, btt=btt, type=kind)
        _assert_same(ref, got)


@pytest.mark.parametrize("kind", ["CR1", "CR2"])
def test_callable_blocks_and_default_bread(kind: str) -> None:
    case = _load(REF / "cases" / "assink2016_deltype_t.json")
    X, beta, resid, cluster, blocks, bread, btt = _build_case(case)
    ref = robust_test(X, beta, resid, cluster, blocks, bread=bread, btt=btt, type=kind)
    got = robust_test(X, beta, resid, cluster, lambda c: blocks[c], btt=btt, type=kind)
    _assert_same(ref, got)
    assert got["n_clusters"] == 17 and got["type"] == kind
    np.testing.assert_array_equal(got["btt"], btt)


def test_level_changes_only_intervals() -> None:
    case = _load(REF / "cases" / "assink2016_year_t.json")
    X, beta, resid, cluster, blocks, bread, btt = _build_case(case)
    a = cr2(X, beta, resid, cluster, blocks, bread=bread, btt=btt)
    b = cr2(X, beta, resid, cluster, blocks, bread=bread, btt=btt, level=0.9)
    np.testing.assert_allclose(a["se"], b["se"])
    assert np.all(b["ci_lb"] > a["ci_lb"]) and np.all(b["ci_ub"] < a["ci_ub"])


# ---------------------------------------------------------------------------------------------
# The reduced (p x p) Satterthwaite / HTZ algebra against clubSandwich's literal C x C arrays
# ---------------------------------------------------------------------------------------------


def _literal_cr2(X, beta, resid, cluster, blocks, btt):
    """Straight transcription of clubSandwich's get_GH / get_P_array / HTZ (inverse_var case)."""
    C = len(blocks)
    p = X.shape[1]
    rows = [np.flatnonzero(cluster == c) for c in range(C)]
    Ws = [np.linalg.inv(b) for b in blocks]
    M = np.linalg.inv(sum(X[r].T @ w @ X[r] for r, w in zip(rows, Ws)))
    LM = np.linalg.cholesky(M)
    Gs, Hs, comps = [], [], []
    for r, V, W in zip(rows, blocks, Ws):
        Xc = X[r]
        R = np.linalg.cholesky(V).T  # upper, R'R = V
        G = R @ (np.eye(len(r)) - Xc @ M @ Xc.T @ W) @ V @ R.T
        ev, vec = np.linalg.eigh((G + G.T) / 2)
        f = np.where(ev > 1e-12, np.abs(ev) ** -0.5, 0.0)
        A = R.T @ (vec * f) @ vec.T @ R
        E = Xc.T @ W @ A
        comps.append(E @ resid[r])
        ME = M @ E
        Gs.append(ME @ R.T)
        Hs.append(ME @ Xc @ LM)
    comps = np.array(comps)
    vcov = M @ comps.T @ comps @ M

    def P(Kmat):
        q = Kmat.shape[0]
        G = [Kmat @ g for g in Gs]
        H = np.array([Kmat @ h for h in Hs])  # (C, q, p)
        out = np.empty((q, q, C, C))
        for s in range(q):
            for t in range(q):
                m = -H[:, s, :] @ H[:, t, :].T
                m[np.diag_indices(C)] += [g[s] @ g[t] for g in G]
                out[s, t] = m
        return out

    df = []
    for i in range(p):
        Pi = P(np.eye(p)[[i]])[0, 0]
        df.append(np.trace(Pi) ** 2 / np.sum(Pi**2))
    K = np.eye(p)[btt]
    q = len(btt)
    PK = P(K)
    Omega = np.einsum("stcc->st", PK)
    ev, vec = np.linalg.eigh(Omega)
    Tm = (vec * ev**-0.5) @ vec.T
    B = np.einsum("sa,abcd,bt->stcd", Tm, PK, Tm)
    var = np.empty((q, q))
    for s in range(q):
        for t in range(q):
            var[s, t] = np.sum(B[s, t] * B[t, s]) + np.sum(B[s, s] * B[t, t])
    nu = q * (q + 1) / var.sum()
    bb = beta[btt]
    Q = bb @ np.linalg.solve(vcov[np.ix_(btt, btt)], bb)
    return vcov, np.array(df), (nu - q + 1) / nu * Q / q, nu - q + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reduced_algebra_matches_literal_clubsandwich(seed: int) -> None:
    rng = np.random.default_rng(seed)
    C = 12  # clusters; the design below has 5 columns
    sizes = rng.integers(1, 6, size=C)
    cluster = np.repeat(np.arange(C), sizes)
    perm = rng.permutation(cluster.size)
    cluster = cluster[perm]
    k = cluster.size
    X = np.column_stack([np.ones(k), rng.normal(size=(k, 2)), rng.integers(0, 2, size=(k, 2))])
    blocks = []
    for n in sizes:
        Z = rng.normal(size=(n, n))
        blocks.append(Z @ Z.T / n + np.diag(rng.uniform(0.05, 0.3, size=n)))
    y = rng.normal(size=k)
    rows = [np.flatnonzero(cluster == c) for c in range(C)]
    Ws = [np.linalg.inv(b) for b in blocks]
    M = np.linalg.inv(sum(X[r].T @ w @ X[r] for r, w in zip(rows, Ws)))
    beta = M @ sum(X[r].T @ w @ y[r] for r, w in zip(rows, Ws))
    resid = y - X @ beta
    btt = [1, 2, 3, 4]
    vcov, df, F, df2 = _literal_cr2(X, beta, resid, cluster, blocks, btt)
    got = cr2(X, beta, resid, cluster, blocks, btt=btt)
    np.testing.assert_allclose(got["vcov"], vcov, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(got["df"], df, rtol=1e-9)
    np.testing.assert_allclose(got["QM"], F, rtol=1e-9)
    np.testing.assert_allclose(got["QM_df"][1], df2, rtol=1e-9)
    assert got["QM_df"][0] == 4


def test_input_errors() -> None:
    from mlmeta.errors import InputError

    X = np.ones((4, 1))
    blocks = [np.eye(2), np.eye(2)]
    cl = np.array([0, 0, 1, 1])
    with pytest.raises(InputError):  # C - p must be positive
        cr1(X[:, [0, 0]], [0.0, 0.0], np.zeros(4), cl, blocks)
    with pytest.raises(InputError):  # wrong block shape
        cr2(X, [0.0], np.zeros(4), cl, [np.eye(2), np.eye(3)])
    with pytest.raises(InputError):  # unused code
        cr2(X, [0.0], np.zeros(4), np.array([0, 0, 2, 2]), blocks + [np.eye(1)])
    with pytest.raises(InputError):
        robust_test(X, [0.0], np.zeros(4), cl, blocks, type="CR3")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# General dense blocks: correlated sampling errors (not in the reference set)
# ---------------------------------------------------------------------------------------------

# Produced once with R 4.2.2, metafor 3.8-1, clubSandwich 0.5.8 (R is not needed to run the test):
#   dat <- read.csv("tests/fixtures/reference/data/assink2016.csv")
#   V <- impute_covariance_matrix(dat$vi, cluster = dat$study, r = 0.6, return_list = FALSE)
#   fit <- rma.mv(yi, V, mods = ~ deltype + year, random = ~ 1 | study/esid, data = dat)
#   robust(fit, cluster = study, clubSandwich = TRUE); robust(fit, cluster = study, adjust = TRUE)
CORR_REF = json.loads(
    """{
 "sigma2": [
  0.056150775903838,
  0.130546796670263
 ],
 "beta": [
  -0.2497455301207,
  0.676590119463614,
  0.449506674580569,
  -0.0342042032024254
 ],
 "cr2": {
  "se": [
   0.0983376605541902,
   0.0541217757390182,
   0.0935531310404268,
   0.0230539508772518
  ],
  "stat": [
   -2.53967329213688,
   12.5012549981031,
   4.80482769076243,
   -1.48365906497076
  ],
  "df": [
   3.42001723986443,
   2.33272857539505,
   2.18192609945563,
   7.72631125215322
  ],
  "pval": [
   0.0744791489999769,
   0.00344401167855083,
   0.0341845292460421,
   0.177504588667066
  ],
  "ci_lb": [
   -0.542041331947052,
   0.472827747997707,
   0.0774920040813268,
   -0.0876962915841031
  ],
  "ci_ub": [
   0.0425502717056528,
   0.880352490929522,
   0.821521345079811,
   0.0192878851792524
  ],
  "vcov": [
   [
    0.00967029548327114,
    -0.0012865698378419,
    -0.00371430783615786,
    -0.00131747096012929
   ],
   [
    -0.00128656983784189,
    0.00292916660914458,
    0.00197652063877675,
    -0.000349154847801346
   ],
   [
    -0.00371430783615788,
    0.00197652063877677,
    0.00875218832746727,
    0.000333011441948229
   ],
   [
    -0.00131747096012929,
    -0.000349154847801346,
    0.00033301144194823,
    0.00053148465105074
   ]
  ],
  "QM": 21.7468971449768,
  "QM_df": [
   3,
   1.35926828319679
  ],
  "QMp": 0.0960901242416037
 },
 "cr1": {
  "se": [
   0.0830105451152761,
   0.0372858138627887,
   0.0546053865365768,
   0.0234294075763767
  ],
  "stat": [
   -3.00860004923326,
   18.1460466962973,
   8.23191086248372,
   -1.45988340041993
  ],
  "df": 13,
  "pval": [
   0.0100709472754792,
   1.29138647043101e-10,
   1.63315969493231e-06,
   0.16806295895761
  ],
  "ci_lb": [
   -0.429078909943633,
   0.59603901586374,
   0.331538909032913,
   -0.0848203609699216
  ],
  "ci_ub": [
   -0.0704121502977668,
   0.757141223063489,
   0.567474440128225,
   0.0164119545650708
  ],
  "vcov": [
   [
    0.00689075060033529,
    0.00119171366874047,
    0.000537052850804739,
    -0.00140131884200934
   ],
   [
    0.00119171366874047,
    0.00139023191541053,
    -0.00155390347583961,
    -0.000282255286722692
   ],
   [
    0.000537052850804745,
    -0.00155390347583961,
    0.00298174823880896,
    0.000359343489061655
   ],
   [
    -0.00140131884200934,
    -0.000282255286722693,
    0.000359343489061655,
    0.00054893713937998
   ]
  ],
  "QM": 501.541037760618,
  "QM_df": [
   3,
   13
  ],
  "QMp": 1.10713573304288e-13
 }
}"""
)


def test_correlated_sampling_errors_match_r() -> None:
    d = _read_csv("assink2016.csv")
    y = np.array(d["yi"], dtype=float)
    v = np.array(d["vi"], dtype=float)
    _, cl = np.unique(np.array(d["study"], dtype=int), return_inverse=True)
    esid = np.array(d["esid"])
    k = y.size
    dt = np.array(d["deltype"])
    X = np.column_stack(
        [np.ones(k), dt == "general", dt == "overt", np.array(d["year"], dtype=float)]
    ).astype(float)
    s1, s2 = CORR_REF["sigma2"]
    same = cl[:, None] == cl[None, :]
    sv = np.sqrt(v)
    # impute_covariance_matrix(r = 0.6): (r + (1 - r) I) * sqrt(v_i v_j) within a study
    V = (
        same * (0.6 * np.outer(sv, sv))
        + np.diag(0.4 * v)
        + s1 * same
        + s2 * (same & (esid[:, None] == esid[None, :]))
    )
    W = np.linalg.inv(V)
    bread = np.linalg.inv(X.T @ W @ X)
    beta = bread @ X.T @ W @ y
    _close(beta, CORR_REF["beta"], 1e-5, 1e-7, "beta")
    blocks = [V[np.ix_(cl == c, cl == c)] for c in range(cl.max() + 1)]
    for name, fun in (("cr2", cr2), ("cr1", cr1)):
        res = fun(X, beta, y - X @ beta, cl, blocks, bread=bread, btt=[1, 2, 3])
        exp = dict(CORR_REF[name])
        if name == "cr1":
            exp["df"] = [exp["df"]] * 4
        _compare_block(res, exp, {"rel": 1e-5, "abs": 1e-7}, name)
