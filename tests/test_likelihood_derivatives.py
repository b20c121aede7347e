"""The O(k) likelihood of mlmeta.core against independent computations.

* gradient and Hessian (exact, forward-mode through the nesting recursion) against central finite
  differences with Richardson extrapolation, REML and ML, one to three levels, group levels with
  several rows and levels of single rows (the diagonal shortcut), with and without moderators, at
  several variance-component vectors including components at 0;
* the log-likelihood, ``C = M'V^{-1}M`` and the derivatives against a dense computation that
  builds ``V`` explicitly (metafor's REML constant ``+1/2 log|X'X|`` included).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmeta.core.fit import make_problem

HERE = Path(__file__).parent
DATA = HERE / "fixtures" / "reference" / "data"
LOG2PI = np.log(2.0 * np.pi)


# --------------------------------------------------------------------------- dense reference
def same_group_matrices(factors, k):
    """Per level l, the k x k 0/1 matrix Z_l Z_l' (same combination of factors[:l+1])."""
    out = []
    key = np.array([""] * k, dtype=object)
    for f in factors:
        key = key + "|" + pd.Series(np.asarray(f)).astype(str).to_numpy(dtype=object)
        out.append((key[:, None] == key[None, :]).astype(float))
    return out


def dense_quantities(y, v, X, factors, theta, reml):
    """ll, gradient, Hessian and M'V^{-1}M from an explicit V (textbook formulas, no recursion)."""
    y = np.asarray(y, float)
    v = np.asarray(v, float)
    X = np.asarray(X, float).reshape(len(y), -1)
    k, p = X.shape
    Zs = same_group_matrices(factors, k)
    V = np.diag(v) + sum((t * Z for t, Z in zip(theta, Zs)), np.zeros((k, k)))
    Vi = np.linalg.inv(V)
    Vi = 0.5 * (Vi + Vi.T)
    _, logdet_v = np.linalg.slogdet(V)
    M = np.column_stack([X, y])
    C = M.T @ Vi @ M
    if p:
        A = X.T @ Vi @ X
        Ai = np.linalg.inv(A)
        beta = Ai @ (X.T @ Vi @ y)
        P = Vi - Vi @ X @ Ai @ X.T @ Vi
        _, logdet_a = np.linalg.slogdet(A)
        _, logdet_xtx = np.linalg.slogdet(X.T @ X)
    else:
        beta = np.zeros(0)
        P = Vi
        logdet_a = logdet_xtx = 0.0
    r = y - X @ beta
    rss = float(r @ Vi @ r)
    if reml:
        ll = -0.5 * ((k - p) * LOG2PI - logdet_xtx + logdet_v + logdet_a + rss)
        T = P  # the trace term of the restricted likelihood uses P
    else:
        ll = -0.5 * (k * LOG2PI + logdet_v + rss)
        T = Vi
    Py = P @ y
    L = len(Zs)
    grad = np.array([-0.5 * (np.sum(T * Z) - Py @ Z @ Py) for Z in Zs])
    hess = np.empty((L, L))
    for i in range(L):
        for j in range(L):
            hess[i, j] = 0.5 * np.sum((T @ Zs[i]) * (T @ Zs[j]).T) - Py @ Zs[i] @ P @ Zs[j] @ Py
    return ll, grad, hess, C


# --------------------------------------------------------------------------- designs
def _design(name, rng):
    """(factors outer to inner, k, structure description) for a named nesting."""
    if name == "1L_groups":  # one level, groups of 1..5 rows
        sizes = rng.integers(1, 6, size=9)
        sizes[0] = 1
        study = np.repeat(np.arange(len(sizes)), sizes)
        return [study]
    if name == "1L_single":  # one level, every group a single row (diagonal level)
        return [np.arange(23)]
    if name == "2L_study_es":  # study groups + single-row inner level
        sizes = rng.integers(1, 6, size=8)
        sizes[1] = 1
        study = np.repeat(np.arange(len(sizes)), sizes)
        es = np.concatenate([np.arange(s) + 1 for s in sizes])  # restarts within each study
        return [study, es]
    if name == "2L_both_groups":  # district / school with schools of several rows
        district, school = [], []
        for d in range(6):
            for s in range(int(rng.integers(1, 4))):
                n = int(rng.integers(1, 4)) if (d, s) != (0, 0) else 2
                district += [d] * n
                school += [s] * n
        return [np.array(district), np.array(school)]
    if name == "2L_all_single":  # one effect per study: both levels diagonal
        return [np.arange(17) + 100, np.ones(17, dtype=int)]
    if name == "3L_single_inner":  # district / school / obs, obs single rows
        district, school = [], []
        for d in range(5):
            for s in range(int(rng.integers(1, 4))):
                n = int(rng.integers(1, 4)) if (d, s) != (0, 0) else 3
                district += [d] * n
                school += [s] * n
        k = len(district)
        return [np.array(district), np.array(school), np.arange(k)]
    if name == "3L_all_groups":  # region / district / school, schools with several rows
        region, district, school = [], [], []
        for g in range(3):
            for d in range(int(rng.integers(1, 4))):
                for s in range(int(rng.integers(1, 3))):
                    n = int(rng.integers(1, 4))
                    region += [g] * n
                    district += [f"d{d}"] * n
                    school += [s] * n
        return [np.array(region), np.array(district), np.array(school)]
    raise KeyError(name)


DESIGNS = [
    "1L_groups",
    "1L_single",
    "2L_study_es",
    "2L_both_groups",
    "2L_all_single",
    "3L_single_inner",
    "3L_all_groups",
]


def make_data(design, moderators, seed=0):
    rng = np.random.default_rng(seed)
    factors = _design(design, rng)
    k = len(factors[0])
    # shuffle the rows so that the package's sorting is exercised
    perm = rng.permutation(k)
    factors = [np.asarray(f)[perm] for f in factors]
    v = rng.uniform(0.005, 0.08, size=k)
    if moderators == "none":
        X = np.ones((k, 1))
    elif moderators == "slope":
        X = np.column_stack([np.ones(k), rng.normal(size=k)])
    elif moderators == "factor":
        g = rng.integers(0, 3, size=k)
        g[:3] = [0, 1, 2]
        X = np.column_stack([np.ones(k), g == 1, g == 2, rng.uniform(0, 10, size=k)]).astype(float)
    else:
        raise KeyError(moderators)
    # outcome with real heterogeneity at every level
    y = X @ rng.normal(size=X.shape[1]) * 0.3 + rng.normal(scale=np.sqrt(v))
    for f in factors:
        _, codes = np.unique(f.astype(str), return_inverse=True)
        y = y + rng.normal(scale=0.2, size=codes.max() + 1)[codes]
    return y, v, X, factors


def thetas(L):
    """Variance-component vectors to test at: interior, large, tiny, one at 0, all at 0."""
    base = np.array([0.04, 0.015, 0.03])[:L]
    out = [base, np.array([0.5, 0.2, 1.0])[:L], np.full(L, 1e-4)]
    for j in range(L):
        t = base.copy()
        t[j] = 0.0
        out.append(t)
    out.append(np.zeros(L))
    return out


def _step(v, theta):
    """Finite-difference step on the scale of the variances involved (and small enough that
    theta - 2h keeps V positive definite when a component is 0)."""
    return 1e-4 * (float(np.min(v)) + float(np.max(theta)))


def _fd_gradient(f, theta, h):
    """Central differences with one Richardson step (error O(h^4))."""
    L = len(theta)
    g = []
    for i in range(L):
        e = np.zeros(L)
        e[i] = 1.0

        def D(hh, e=e):
            return (f(theta + hh * e) - f(theta - hh * e)) / (2.0 * hh)

        g.append((4.0 * D(h / 2.0) - D(h)) / 3.0)
    return np.array(g)


def _fd_hessian_from_ll(f, theta, h):
    """Second central differences of the function itself (no use of the analytic gradient)."""
    L = len(theta)
    H = np.empty((L, L))
    for i in range(L):
        for j in range(L):
            ei = np.zeros(L)
            ei[i] = 1.0
            ej = np.zeros(L)
            ej[j] = 1.0

            def D(hh, ei=ei, ej=ej):
                return (
                    f(theta + hh * ei + hh * ej)
                    - f(theta + hh * ei - hh * ej)
                    - f(theta - hh * ei + hh * ej)
                    + f(theta - hh * ei - hh * ej)
                ) / (4 * hh * hh)

            H[i, j] = (4.0 * D(h / 2.0) - D(h)) / 3.0
    return H


def _assert_close(got, exp, rel, what):
    """Elementwise |got - exp| <= rel * (|exp| + 1e-3 max|exp|): relative, with a floor for ~0."""
    got = np.asarray(got, float)
    exp = np.asarray(exp, float)
    scale = np.max(np.abs(exp)) if exp.size else 0.0
    tol = rel * (np.abs(exp) + 1e-3 * scale)
    bad = np.abs(got - exp) > tol
    assert not bad.any(), (
        f"{what}: max rel err "
        f"{np.max(np.abs(got - exp) / np.maximum(np.abs(exp), 1e-300)):.3g}\n"
        f"got {got!r}\nexp {exp!r}"
    )


def _seed(*parts):
    return zlib.crc32("/".join(parts).encode()) % 10_000


CASES = [(d, m) for d in DESIGNS for m in ("none", "slope", "factor")]


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("design,mods", CASES, ids=[f"{d}-{m}" for d, m in CASES])
def test_gradient_and_hessian_match_finite_differences(design, mods, method):
    y, v, X, factors = make_data(design, mods, seed=_seed(design, mods))
    pr = make_problem(y, v, X, factors, method)
    L = len(factors)
    assert pr.st.n_levels == L
    f = lambda t: pr(t, order=0).ll  # noqa: E731
    g = lambda t: pr(t, order=1).grad  # noqa: E731
    checked = 0
    for theta in thetas(L):
        h = _step(v, theta)
        ev = pr(theta, order=2)
        assert np.isfinite(ev.ll)
        assert ev.grad.shape == (L,) and ev.hess.shape == (L, L)
        np.testing.assert_allclose(ev.hess, ev.hess.T, rtol=0, atol=1e-12 * np.abs(ev.hess).max())
        fd_g = _fd_gradient(f, theta, h)
        _assert_close(ev.grad, fd_g, 1e-6, f"gradient at {theta}")
        # Hessian as the derivative of the analytic gradient ...
        fd_h = np.column_stack([_fd_gradient(lambda t, j=j: g(t)[j], theta, h) for j in range(L)])
        _assert_close(ev.hess, 0.5 * (fd_h + fd_h.T), 1e-6, f"Hessian (d grad) at {theta}")
        # ... and as second differences of the log-likelihood alone
        fd_h2 = _fd_hessian_from_ll(f, theta, 50 * h)
        _assert_close(ev.hess, fd_h2, 1e-5, f"Hessian (d2 ll) at {theta}")
        checked += 1
    assert checked == len(thetas(L))


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("design,mods", CASES, ids=[f"{d}-{m}" for d, m in CASES])
def test_likelihood_matches_dense_computation(design, mods, method):
    y, v, X, factors = make_data(design, mods, seed=1 + _seed(design, mods))
    pr = make_problem(y, v, X, factors, method)
    for theta in thetas(len(factors)):
        ll, grad, hess, C = dense_quantities(y, v, X, factors, theta, method == "REML")
        ev = pr(theta, order=2)
        assert abs(ev.ll - ll) <= 1e-10 * max(1.0, abs(ll)), (theta, ev.ll, ll)
        _assert_close(ev.C, C, 1e-10, f"C at {theta}")
        _assert_close(ev.grad, grad, 1e-9, f"gradient vs dense at {theta}")
        _assert_close(ev.hess, hess, 1e-9, f"Hessian vs dense at {theta}")
        # lower orders give the same numbers
        ev0, ev1 = pr(theta, order=0), pr(theta, order=1)
        assert ev0.ll == pytest.approx(ev.ll, rel=1e-14, abs=1e-14)
        assert ev1.ll == pytest.approx(ev.ll, rel=1e-14, abs=1e-14)
        np.testing.assert_allclose(ev1.grad, ev.grad, rtol=1e-13, atol=1e-13 * np.abs(grad).max())


def test_reml_constant_is_metafor_half_log_det_xtx():
    """REML ll - (ML-type terms) carries +1/2 log|X'X|: rescaling a moderator changes ll by it."""
    y, v, X, factors = make_data("2L_study_es", "slope", seed=7)
    theta = np.array([0.03, 0.01])
    X2 = X.copy()
    X2[:, 1] *= 10.0  # same column space: beta-hat, V, residuals unchanged
    a = make_problem(y, v, X, factors, "REML")(theta, order=0).ll
    b = make_problem(y, v, X2, factors, "REML")(theta, order=0).ll
    # log|X'X| grows by 2 log 10 and log|X'V^-1X| by 2 log 10: they cancel exactly in metafor's
    # restricted likelihood
    assert b == pytest.approx(a, rel=1e-12)
    ll_dense = dense_quantities(y, v, X2, factors, theta, True)[0]
    assert b == pytest.approx(ll_dense, rel=1e-11)


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize(
    "fname,random,mods",
    [
        ("konstantopoulos2011.csv", ["district", "school"], []),
        ("assink2016.csv", ["study", "esid"], ["deltype", "year"]),
        ("alliance_like.csv", ["study", "es"], ["phase", "rater"]),
        ("molloy2014.csv", ["id"], []),
    ],
)
def test_reference_data_derivatives_and_dense(fname, random, mods, method):
    d = pd.read_csv(DATA / fname)
    k = len(d)
    cols = [np.ones(k)]
    for m in mods:
        if not pd.api.types.is_numeric_dtype(d[m]):
            for lev in sorted(d[m].unique())[1:]:
                cols.append((d[m] == lev).to_numpy(float))
        else:
            cols.append(d[m].to_numpy(float))
    X = np.column_stack(cols)
    y, v = d["yi"].to_numpy(float), d["vi"].to_numpy(float)
    factors = [d[c].to_numpy() for c in random]
    pr = make_problem(y, v, X, factors, method)
    f = lambda t: pr(t, order=0).ll  # noqa: E731
    for theta in thetas(len(random)):
        h = _step(v, theta)
        ev = pr(theta)
        ll, grad, hess, C = dense_quantities(y, v, X, factors, theta, method == "REML")
        assert abs(ev.ll - ll) <= 1e-10 * max(1.0, abs(ll)), (theta, ev.ll, ll)
        _assert_close(ev.grad, _fd_gradient(f, theta, h), 1e-6, f"gradient at {theta}")
        _assert_close(ev.grad, grad, 1e-9, f"gradient vs dense at {theta}")
        _assert_close(ev.hess, hess, 1e-9, f"Hessian vs dense at {theta}")


def test_wide_designs_need_no_groups_by_m_by_m_array():
    # regression: the derivatives summed b_g b_g' through a G x m x m array (640 MB for 500
    # studies and 400 coefficients); one evaluation must stay far below that
    import tracemalloc

    rng = np.random.default_rng(3)  # SIMULATED
    k, G, p = 1500, 400, 250
    study = np.sort(rng.integers(0, G, k))
    X = np.column_stack([np.ones(k), rng.normal(size=(k, p - 1))])
    y, v = rng.normal(size=k), rng.uniform(0.01, 0.1, k)
    pr = make_problem(y, v, X, [study, np.arange(k)], "REML")
    theta = np.array([0.05, 0.02])
    ev = pr(theta, order=2)  # warm-up (imports, caches)
    tracemalloc.start()
    ev = pr(theta, order=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    bb_bytes = G * (p + 1) ** 2 * 8  # what the G x m x m array alone would take (~200 MB)
    assert peak < bb_bytes / 4, peak
    ll, grad, hess, _ = dense_quantities(y, v, X, [study, np.arange(k)], theta, True)
    assert ev.ll == pytest.approx(ll, rel=1e-10)
    np.testing.assert_allclose(ev.grad, grad, rtol=1e-8)
    np.testing.assert_allclose(ev.hess, hess, rtol=1e-8)
