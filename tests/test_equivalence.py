"""Equivalences between models that must give the same numbers.

(a) one effect size per study: ``study/es`` is the two-level model with the total variance
    split arbitrarily between the two (non-identified) components;
(b) a component fixed at 0 is the model without that level (fit statistics count only the
    estimated components, as metafor's);
(c) no random effects (equal-effects model) is inverse-variance weighting / weighted least
    squares;
(d) a four-level nesting agrees with a dense-matrix REML/ML fit done here with scipy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from mlmeta import rma_mv

DATA = Path(__file__).parent / "fixtures" / "reference" / "data"
LOG2PI = np.log(2.0 * np.pi)


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"{name}.csv")


def fit(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these fits should warn
        return rma_mv(df, "yi", "vi", **kw)


def close(got, exp, rel, abs_=0.0):
    got = np.atleast_1d(np.asarray(got, dtype=float))
    exp = np.atleast_1d(np.asarray(exp, dtype=float))
    assert got.shape == exp.shape, (got, exp)
    ok = np.abs(got - exp) <= np.maximum(abs_, rel * np.abs(exp))
    assert ok.all(), f"got {got!r}\nexpected {exp!r}"


def one_per_study_sim(seed: int, k: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.1, k)
    x = rng.normal(size=k)
    y = 0.2 + 0.1 * x + rng.normal(scale=np.sqrt(v + 0.05))
    return pd.DataFrame(
        {"study": rng.permutation(k) + 10, "es": np.ones(k, dtype=int), "x": x, "yi": y, "vi": v}
    )


# =========================================================================== (a)
ONE_PER_STUDY = [
    ("molloy2014", "id", None),
    ("molloy2014", "id", "~ meanage"),
    ("molloy2014", "id", "~ controls"),
    ("sim1", "study", None),
    ("sim1", "study", "~ x"),
    ("sim2", "study", "~ x"),
]


def _one_per_study_data(name, idcol):
    if name.startswith("sim"):
        return one_per_study_sim(int(name[3:]))
    d = read(name)
    d["es"] = 1  # the inner id restarts within each study: one effect size per study
    return d


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("name,idcol,mods", ONE_PER_STUDY)
def test_one_effect_per_study_two_levels_equal_one_level(name, idcol, mods, method):
    d = _one_per_study_data(name, idcol)
    one = fit(d, random=idcol, mods=mods, method=method)
    two = fit(d, random=f"{idcol}/es", mods=mods, method=method)
    assert two.n_levels == [len(d), len(d)]
    assert list(two.sigma2.index) == [idcol, f"{idcol}/es"]
    assert np.all(two.sigma2.to_numpy() >= 0)
    # only the total is identified
    close(two.sigma2.sum(), one.sigma2.iloc[0], 1e-6, 1e-10)
    close(two.beta, one.beta, 1e-7, 1e-10)
    close(two.se, one.se, 1e-6)
    close(two.vcov.to_numpy(), one.vcov.to_numpy(), 1e-6, 1e-14)
    close(two.logLik, one.logLik, 1e-10, 1e-10)
    close(two.QE, one.QE, 1e-12)
    # metafor counts one more estimated parameter
    close(two.fitstats["AIC"], one.fitstats["AIC"] + 2.0, 1e-10)
    n = len(d) - (one.p if method == "REML" else 0)
    close(two.fitstats["BIC"], one.fitstats["BIC"] + np.log(n), 1e-10)
    # predictions (the PI uses the total variance)
    p1, p2 = one.predict(), two.predict()
    close(p2.pred, p1.pred, 1e-7, 1e-10)
    close(p2.pi_lb, p1.pi_lb, 1e-6, 1e-9)
    close(p2.pi_ub, p1.pi_ub, 1e-6, 1e-9)


# =========================================================================== (b)
def _with_uid(d, cols, name):
    d = d.copy()
    d[name] = d[cols].astype(str).agg("-".join, axis=1)
    return d


def _sim_three_level(seed=3):
    rng = np.random.default_rng(seed)
    rows = []
    for dist in range(9):
        for sch in range(int(rng.integers(1, 4))):
            for obs in range(int(rng.integers(1, 4))):
                rows.append((dist, sch, obs))
    d = pd.DataFrame(rows, columns=["district", "school", "obs"])
    k = len(d)
    d["vi"] = rng.uniform(0.01, 0.06, k)
    d["x"] = rng.normal(size=k)
    u1 = rng.normal(scale=0.3, size=9)[d["district"]]
    u2 = rng.normal(scale=0.2, size=(9, 4))[d["district"], d["school"]]
    d["yi"] = 0.1 + 0.2 * d["x"] + u1 + u2 + rng.normal(scale=np.sqrt(d["vi"] + 0.02))
    return d


def _compare_models(full, reduced, keep):
    """``full`` has extra components fixed at 0; ``keep`` maps the reduced levels into full."""
    close(full.beta, reduced.beta, 1e-7, 1e-10)
    close(full.se, reduced.se, 1e-6)
    exp = np.zeros(len(full.sigma2))
    exp[keep] = reduced.sigma2.to_numpy()
    close(full.sigma2, exp, 1e-6, 1e-10)
    zero = np.setdiff1d(np.arange(len(exp)), keep)
    assert np.all(full.sigma2.to_numpy()[zero] == 0.0)
    assert list(full.core.fixed) == [i in set(zero) for i in range(len(exp))]
    for key in ("logLik", "deviance", "AIC", "BIC", "AICc"):
        close(full.fitstats[key], reduced.fitstats[key], 1e-9, 1e-9)
    close(full.QE, reduced.QE, 1e-12)
    close(full.QM, reduced.QM, 1e-6, 1e-10)
    close(full.tests.pval, reduced.tests.pval, 1e-5, 1e-12)
    close(full.tests.ci_lb, reduced.tests.ci_lb, 1e-6, 1e-10)


FIXED_ZERO = [
    # (data, full nesting, sigma2, reduced nesting, kept levels, mods)
    ("konstantopoulos2011", "district/school", [None, 0], "district", [0], None),
    ("konstantopoulos2011", "district/school", [0, None], "ds", [1], None),
    ("konstantopoulos2011", "district/school", [0.0, None], "ds", [1], "~ year"),
    ("assink2016", "study/esid", [None, 0], "study", [0], "~ deltype"),
    ("assink2016", "study/esid", [0, None], "se", [1], "~ deltype + year"),
    ("alliance_like", "study/es", [None, 0], "study", [0], "~ phase"),
    ("alliance_like", "study/es", [0, None], "es", [1], "~ rater"),
    ("sim3", "district/school/obs", [None, 0, None], "district/dso", [0, 2], "~ x"),
    ("sim3", "district/school/obs", [0, None, None], "ds/dso", [1, 2], None),
    ("sim3", "district/school/obs", [None, None, 0], "district/ds", [0, 1], "~ x"),
    ("sim3", "district/school/obs", [0, 0, None], "dso", [2], None),
]


def _fixed_zero_data(name):
    if name == "sim3":
        d = _sim_three_level()
        d = _with_uid(d, ["district", "school"], "ds")
        return _with_uid(d, ["district", "school", "obs"], "dso")
    d = read(name)
    if name == "konstantopoulos2011":
        d = _with_uid(d, ["district", "school"], "ds")
    if name == "assink2016":
        d = _with_uid(d, ["study", "esid"], "se")
    return d


@pytest.mark.parametrize("method,test", [("REML", "z"), ("ML", "z"), ("REML", "t")])
@pytest.mark.parametrize(
    "name,full,s2,red,keep,mods",
    FIXED_ZERO,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-{c[5]}" for c in FIXED_ZERO],
)
def test_component_fixed_at_zero_equals_model_without_level(
    name, full, s2, red, keep, mods, method, test
):
    d = _fixed_zero_data(name)
    a = fit(d, random=full, sigma2=s2, mods=mods, method=method, test=test)
    b = fit(d, random=red, mods=mods, method=method, test=test)
    assert a.n_levels[keep[0]] == b.n_levels[0]
    _compare_models(a, b, keep)
    if test == "t":
        close(a.tests.df, b.tests.df, 0)
        close(a.QM_df[1], b.QM_df[1], 0)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_all_components_fixed_at_the_estimates_reproduces_the_fit(method):
    d = read("konstantopoulos2011")
    free = fit(d, random="district/school", mods="~ year", method=method)
    s2 = [float(x) for x in free.sigma2]
    fixed = fit(d, random="district/school", mods="~ year", method=method, sigma2=s2)
    close(fixed.sigma2, free.sigma2, 0)
    close(fixed.beta, free.beta, 1e-12, 1e-14)
    close(fixed.se, free.se, 1e-12)
    close(fixed.logLik, free.logLik, 1e-13)
    # two fewer estimated parameters
    close(fixed.fitstats["AIC"], free.fitstats["AIC"] - 4.0, 1e-12)


# =========================================================================== (c)
def _ee_data(name):
    if name == "sim":
        d = one_per_study_sim(11, k=30)
        d["g"] = np.random.default_rng(5).choice(["a", "b", "c"], len(d))
        return d
    return read(name)


EE = [
    ("molloy2014", None),
    ("molloy2014", "~ meanage"),
    ("molloy2014", "~ controls + meanage"),
    ("konstantopoulos2011", None),
    ("konstantopoulos2011", "~ year"),
    ("assink2016", "~ deltype + year"),
    ("sim", "~ x + g"),
    ("sim", "~ 0 + g"),
]


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("test", ["z", "t"])
@pytest.mark.parametrize("name,mods", EE)
def test_equal_effects_is_weighted_least_squares(name, mods, method, test):
    d = _ee_data(name)
    res = fit(d, random=None, mods=mods, method=method, test=test)
    y, v = d["yi"].to_numpy(float), d["vi"].to_numpy(float)
    w = 1.0 / v
    X = res.data.X
    k, p = X.shape
    assert len(res.sigma2) == 0 and res.n_levels == []
    if mods is None:
        b = np.sum(w * y) / np.sum(w)
        close(res.beta, [b], 1e-12, 1e-15)
        close(res.se, [1.0 / np.sqrt(np.sum(w))], 1e-12)
        XtWX = np.array([[np.sum(w)]])
    else:
        XtWX = X.T @ (X * w[:, None])
        bw = np.linalg.solve(XtWX, X.T @ (w * y))
        close(res.beta, bw, 1e-10, 1e-13)
        close(res.vcov.to_numpy(), np.linalg.inv(XtWX), 1e-10, 1e-16)
        close(res.se, np.sqrt(np.diag(np.linalg.inv(XtWX))), 1e-10)
    b = res.beta.to_numpy()
    r = y - X @ b
    QE = float(np.sum(w * r * r))
    close(res.QE, QE, 1e-10)
    assert res.QE_df == k - p
    close(res.QEp, stats.chi2.sf(QE, k - p), 1e-8, 1e-300)
    # Wald statistics
    se = np.sqrt(np.diag(np.linalg.inv(XtWX)))
    close(res.tests.stat, b / se, 1e-9, 1e-12)
    if test == "z":
        close(res.tests.pval, 2 * stats.norm.sf(np.abs(b / se)), 1e-8, 1e-300)
    else:
        close(res.tests.df, np.full(p, k - p), 0)
        close(res.tests.pval, 2 * stats.t.sf(np.abs(b / se), k - p), 1e-8, 1e-300)
    # log-likelihood of the equal-effects model
    if method == "ML":
        ll = -0.5 * (k * LOG2PI + np.sum(np.log(v)) + QE)
        close(res.fitstats["deviance"], QE, 1e-9)  # deviance relative to the saturated model
    else:
        ll = -0.5 * (
            (k - p) * LOG2PI
            - np.linalg.slogdet(X.T @ X)[1]
            + np.sum(np.log(v))
            + np.linalg.slogdet(XtWX)[1]
            + QE
        )
    close(res.logLik, ll, 1e-11)
    close(res.fitstats["AIC"], -2 * ll + 2 * p, 1e-11)


@pytest.mark.parametrize("mods", [None, "~ year"])
def test_equal_effects_equals_random_level_fixed_at_zero(mods):
    d = read("konstantopoulos2011")
    ee = fit(d, random=None, mods=mods)
    z = fit(d, random="district/school", sigma2=[0, 0], mods=mods)
    close(z.beta, ee.beta, 1e-12, 1e-15)
    close(z.se, ee.se, 1e-12)
    for key in ("logLik", "deviance", "AIC", "BIC", "AICc"):
        close(z.fitstats[key], ee.fitstats[key], 1e-12)
    close(z.sigma2, [0.0, 0.0], 0)


# =========================================================================== (d)
def _sim_four_level(seed, single_inner):
    """district/school/class/obs (obs single rows) or region/district/school/class (all levels
    with several rows), unbalanced, with heterogeneity at every level."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(10):
        for b in range(int(rng.integers(1, 4))):
            for c in range(int(rng.integers(1, 4))):
                for e in range(int(rng.integers(1, 4))):
                    rows.append((a, b, c, e))
    names = (
        ["district", "school", "class", "obs"]
        if single_inner
        else ["region", "district", "school", "class"]
    )
    d = pd.DataFrame(rows, columns=["l1", "l2", "l3", "l4"])
    if not single_inner:
        d["l4"] = d["l4"] // 2  # innermost groups of one or two rows: a grouping level too
    k = len(d)
    d["vi"] = rng.uniform(0.01, 0.05, k)
    d["x"] = rng.normal(size=k)
    y = 0.3 - 0.2 * d["x"].to_numpy() + rng.normal(scale=np.sqrt(d["vi"]))
    sds = [0.3, 0.2, 0.2, 0.15] if single_inner else [0.3, 0.25, 0.2, 0.2]
    cols = ["l1", "l2", "l3", "l4"]
    for j in range(4):
        keys = d[cols[: j + 1]].astype(str).agg("-".join, axis=1)
        _, codes = np.unique(keys, return_inverse=True)
        y = y + rng.normal(scale=sds[j], size=codes.max() + 1)[codes]
    d["yi"] = y
    d = d.rename(columns=dict(zip(["l1", "l2", "l3", "l4"], names)))
    # shuffle rows: the package must not depend on the data being sorted
    return d.sample(frac=1.0, random_state=seed).reset_index(drop=True), names


def _dense_fit(d, names, X, reml):
    """REML/ML by scipy L-BFGS-B on an explicit V, then Newton polish with the dense Hessian."""
    y, v = d["yi"].to_numpy(float), d["vi"].to_numpy(float)
    k, p = X.shape
    Zs, key = [], pd.Series([""] * k)
    for n in names:
        key = key + "|" + d[n].astype(str)
        kk = key.to_numpy()
        Zs.append((kk[:, None] == kk[None, :]).astype(float))
    _, ldxtx = np.linalg.slogdet(X.T @ X)

    def parts(th, hess=True):
        V = np.diag(v) + sum(t * Z for t, Z in zip(th, Zs))
        Vi = np.linalg.inv(V)
        ViX = Vi @ X
        A = X.T @ ViX
        Ai = np.linalg.inv(A)
        P = Vi - ViX @ Ai @ ViX.T
        b = Ai @ (ViX.T @ y)
        r = y - X @ b
        ll = -0.5 * (np.linalg.slogdet(V)[1] + r @ (Vi @ r))
        if reml:
            ll += -0.5 * ((k - p) * LOG2PI - ldxtx + np.linalg.slogdet(A)[1])
        else:
            ll += -0.5 * k * LOG2PI
        T = P if reml else Vi
        Py = P @ y
        g = np.array([-0.5 * (np.sum(T * Z) - Py @ (Z @ Py)) for Z in Zs])
        if not hess:
            return ll, g, None, b, Ai
        TZ = [T @ Z for Z in Zs]
        PZPy = [P @ (Z @ Py) for Z in Zs]
        H = np.array(
            [
                [0.5 * np.sum(TZ[i] * TZ[j].T) - (Zs[i] @ Py) @ PZPy[j] for j in range(len(Zs))]
                for i in range(len(Zs))
            ]
        )
        return ll, g, H, b, Ai

    def negll(th):
        ll, g, *_ = parts(th, hess=False)
        return -ll, -g

    start = np.full(len(Zs), max(np.var(y) - np.mean(v), 0.01) / len(Zs))
    r = optimize.minimize(
        negll,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * len(Zs),
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 5000},
    )
    th = r.x
    assert np.all(th > 1e-4), f"dense optimum on the boundary {th}: choose another seed"
    for _ in range(20):  # interior optimum: Newton with the exact dense Hessian
        ll, g, H, b, Ai = parts(th)
        step = np.linalg.solve(H, g)
        th = th - step
        if np.max(np.abs(step) / th) < 1e-13:
            break
    ll, g, H, b, Ai = parts(th)
    assert np.max(np.abs(g * th)) < 1e-8, g
    assert np.all(np.linalg.eigvalsh(H) < 0)
    return th, b, np.sqrt(np.diag(Ai)), ll


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("single_inner", [True, False], ids=["obs-single-rows", "all-groups"])
@pytest.mark.parametrize("mods", [None, "~ x"])
def test_four_level_matches_dense_fit(single_inner, mods, method):
    d, names = _sim_four_level(2 if single_inner else 7, single_inner)
    res = fit(d, random="/".join(names), mods=mods, method=method)
    assert len(res.sigma2) == 4
    assert list(res.sigma2.index) == ["/".join(names[: j + 1]) for j in range(4)]
    n_groups = [d[names[: j + 1]].drop_duplicates().shape[0] for j in range(4)]
    assert res.n_levels == n_groups
    assert (n_groups[3] == len(d)) == single_inner
    th, b, se, ll = _dense_fit(d, names, res.data.X, method == "REML")
    close(res.sigma2, th, 1e-5)
    close(res.beta, b, 1e-5, 1e-8)
    close(res.se, se, 1e-5)
    close(res.logLik, ll, 1e-9)
    assert res.converged
