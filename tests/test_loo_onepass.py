"""Leave-one-cluster-out in one pass (mlmeta.core.loo): the per-cluster terms are exact, and the
one-pass estimates equal exact refits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlmeta
from mlmeta.analyses import influence
from mlmeta.core.fit import fit_nested
from mlmeta.core.inference import contain_df, contain_df_leave_out
from mlmeta.core.likelihood import evaluate_terms
from mlmeta.core.loo import cluster_terms, leave_one_cluster_out


def _sim(J: int, seed: int, three_levels: bool = True):
    rng = np.random.default_rng(seed)
    m = rng.integers(1, 6, J)
    study = np.repeat(np.arange(J), m)
    k = len(study)
    es = np.concatenate([np.arange(n) for n in m])
    vi = 1.0 / (rng.integers(20, 300, k) - 3.0)
    u = rng.normal(0, np.sqrt(0.05), J)[study]
    yi = (
        0.3
        + u
        + rng.normal(0, np.sqrt(0.02 if three_levels else 0), k)
        + rng.normal(0, np.sqrt(vi))
    )
    x = rng.normal(size=k)
    xs = rng.normal(size=J)[study]
    return pd.DataFrame({"study": study, "es": es, "yi": yi, "vi": vi, "x": x, "xs": xs})


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), s1=st.floats(0.0, 0.3), s2=st.floats(0.0, 0.3))
def test_cluster_terms_sum_to_the_full_terms(seed, s1, s2):
    d = _sim(15, seed)
    X = np.column_stack([np.ones(len(d)), d["x"]])
    # four levels deep with a diagonal innermost level
    d["g"] = d["es"] // 2
    fit = fit_nested(d["yi"], d["vi"], X, [d["study"], d["g"], d["es"]], method="REML")
    pr = fit.problem
    theta = np.array([s1, s2, 0.01])
    G = pr.st.n_groups[0]
    per = cluster_terms(np.tile(theta, (G, 1)), pr.st, pr.v, pr.M)
    full = evaluate_terms(theta, pr.st, pr.v, pr.M)
    for a, b in zip(per, full):
        np.testing.assert_allclose(np.sum(a, axis=0), b, rtol=1e-9, atol=1e-8)


def test_cluster_terms_are_each_clusters_own_terms():
    d = _sim(12, 3)
    fit = fit_nested(d["yi"], d["vi"], np.ones((len(d), 1)), [d["study"], d["es"]])
    pr = fit.problem
    rng = np.random.default_rng(0)
    theta_c = rng.uniform(0.001, 0.2, (12, 2))
    per = cluster_terms(theta_c, pr.st, pr.v, pr.M)
    top = pr.st.codes[0]
    for c in (0, 5, 11):
        rows = top == c
        sub = fit_nested(
            d["yi"].to_numpy()[pr.st.order][rows],
            pr.v[rows],
            np.ones((rows.sum(), 1)),
            [d["study"].to_numpy()[pr.st.order][rows], d["es"].to_numpy()[pr.st.order][rows]],
        ).problem
        own = evaluate_terms(theta_c[c], sub.st, sub.v, sub.M)
        for a, b in zip(per, own):
            np.testing.assert_allclose(a[c], b, rtol=1e-9, atol=1e-10)


@pytest.fixture(scope="module")
def big():
    d = _sim(2500, 11)
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ x + xs", test="t", dfs="contain")
    return d, res


def test_one_pass_equals_exact_refits(big):
    d, res = big
    pr = res.core.problem
    loo = leave_one_cluster_out(pr.st, pr.v, pr.M, res.core.sigma2, res.core.fixed, reml=True)
    assert loo.done.mean() > 0.8  # most clusters need no refit at J = 2,500
    done = np.flatnonzero(loo.done)
    for c in done[[0, len(done) // 2, -1]]:
        r = res.refit(rows=(d["study"] != c).to_numpy())
        np.testing.assert_allclose(loo.sigma2[c], r.core.sigma2, rtol=1e-7)
        np.testing.assert_allclose(loo.beta[c], r.core.beta, rtol=1e-8)
        np.testing.assert_allclose(loo.vcov[c], r.core.vcov, rtol=1e-7)
        assert loo.ll[c] == pytest.approx(r.core.ll, rel=1e-10)


def test_loo_table_one_pass_equals_exact(big, monkeypatch):
    d, res = big
    pr = res.core.problem
    done = np.flatnonzero(
        leave_one_cluster_out(pr.st, pr.v, pr.M, res.core.sigma2, res.core.fixed, reml=True).done
    )
    pick = done[[0, len(done) // 2, -1]]
    refs = {c: res.refit(rows=(d["study"] != c).to_numpy()) for c in pick}

    def no_refit(self, **kw):  # the clusters left to exact refits are not under test here
        raise mlmeta.InputError("skipped")

    monkeypatch.setattr(type(res), "refit", no_refit)
    fast, fast_cooks = influence.cluster_refits(res)
    assert sum(np.all(np.isfinite(b)) for b in fast["beta"]) == len(done)
    for c in pick:
        r = refs[c]
        row = fast.iloc[c]
        assert row["left_out"] == c
        np.testing.assert_allclose(row["beta"], r.core.beta, rtol=1e-7)
        np.testing.assert_allclose(row["se"], r.tests.se, rtol=1e-7)
        np.testing.assert_allclose(row["pval"], r.tests.pval, rtol=1e-6)
        np.testing.assert_allclose(row["ci_lb"], r.tests.ci_lb, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(row["sigma2"], r.core.sigma2, rtol=1e-7)
        assert row["I2"] == pytest.approx(r.i2().total, rel=1e-7)
        dd = res.core.beta - r.core.beta
        cook = float(dd @ np.linalg.inv(res.core.vcov) @ dd)
        assert fast_cooks["value"].iloc[c] == pytest.approx(cook, rel=1e-4)


def test_contain_df_leave_out_matches_refits():
    d = _sim(30, 5)
    d["only_in_3"] = np.where(d["study"] == 3, d["x"], 0.0)  # varies within study 3 only
    X = np.column_stack([np.ones(len(d)), d["x"], d["xs"], d["only_in_3"]])
    res = mlmeta.rma_mv(
        d.assign(z=d["only_in_3"]),
        "yi",
        "vi",
        random="study/es",
        mods="~ x + xs + z",
        test="t",
        dfs="contain",
    )
    codes = res.level_codes()
    got = contain_df_leave_out(X, codes, res.n_levels, codes[0])
    for c in range(30):
        keep = codes[0] != c
        sub_codes = [np.unique(cc[keep], return_inverse=True)[1] for cc in codes]
        want = contain_df(X[keep], sub_codes, [int(s.max()) + 1 for s in sub_codes])
        np.testing.assert_array_equal(got[c], want)


def test_few_clusters_or_rho_use_exact_refits(monkeypatch):
    d = _sim(40, 2)
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es")
    assert influence.one_pass_refits(res, None) is None  # fewer than ONE_PASS_MIN_CLUSTERS
    d = _sim(150, 2)
    che = mlmeta.rma_mv(d, "yi", "vi", random="study/es", rho=0.5)
    assert influence.one_pass_refits(che, None) is None
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es")
    assert influence.one_pass_refits(res, "es") is None
    assert len(influence.one_pass_refits(res, None)) > 0
