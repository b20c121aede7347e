"""Analytic power of the test of the overall average effect in a meta-analysis of dependent effects.

The approximations of Vembye, Pustejovsky & Pigott (2023), *Journal of Educational and Behavioral
Statistics* 48(1), 70-102, doi:10.3102/10769986221127379, with the corrigendum for the CE-RVE
model (Vembye, Pustejovsky & Pigott 2023, JEBS, doi:10.3102/10769986231172276); they extend the
independent-effects approximation of Hedges & Pigott (2001), *Psychological Methods* 6(3),
203-217. The numbers are those of the R package POMADE (Vembye & Pustejovsky), whose internal
engine this module re-implements from the published formulas.

A *design* is J studies, study j with k_j effect sizes of sampling variance sigma2_j each; the
true model has between-study SD tau, within-study SD omega and correlation rho between the
sampling errors of one study. Three working models estimate the overall average mu:

- **CHE** (correlated and hierarchical effects, working rho = true rho), weights
  w_j = k_j / (k_j tau^2 + k_j rho sigma2_j + omega^2 + (1 - rho) sigma2_j) (eq. 6) and
  var_b = 1 / sum w_j (eq. 8);
- **MLMA** (multilevel meta-analysis, working rho = 0) with the tau~, omega~ that minimise the
  Kullback-Leibler divergence from the true model (supplement), weights
  w~_j = k_j / (k_j tau~^2 + omega~^2 + sigma2_j) (eq. 21) and the true sampling variance
  S~ = sum w~_j^2 (tau^2 + rho sigma2_j + (omega^2 + (1 - rho) sigma2_j) / k_j) / W~^2 (eq. 22);
- **CE** (correlated effects, RVE only), tau_e^2 = tau^2 + omega^2 (1 - sum 1/(k_j sigma2_j^2)
  / a^2) / (1 - sum 1/sigma2_j^2 / a^2) with a = sum 1/sigma2_j (corrigendum eq. 17),
  w_j = 1 / (sigma2_j + tau_e^2) and var_b as S~ with these weights.

and three ways to test it: ``model`` (model-based variance, critical value of t(J - 1), the
distribution's df from the Satterthwaite approximation eq. 12), ``satt`` (model-based variance,
Satterthwaite df eq. 12 throughout) and ``rve`` (robust variance, df eq. 16). Power is
``P(T < -c) + P(T > c)`` with T noncentral t(df, lambda), lambda = mu / sqrt(var_b) and
c = g t_{1 - alpha/2}(df_test); g = 1 except MLMA-model/satt, g = 1 / sqrt(W~ S~) (eq. 23).

Everything here is vectorised over designs: ``sigma2`` and ``k`` are (n, J) arrays, one row a
design (one row for a balanced or fixed design, one row per iteration for designs drawn from
empirical distributions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

__all__ = [
    "HARD_MIN_STUDIES",
    "MODELS",
    "VAR_DFS",
    "Design",
    "Moments",
    "che_satt_df",
    "design_power",
    "mlma_working_variances",
    "moments",
    "power_t",
    "satt_df",
    "solve_mdes",
    "solve_min_studies",
]

MODELS = ("CHE", "MLMA", "CE")
VAR_DFS = ("model", "satt", "rve")
#: POMADE never reports fewer studies than this (``min_studies_MADE``'s ``hard_limit``).
HARD_MIN_STUDIES = 5


@dataclass(frozen=True)
class Moments:
    """What the power of a design needs besides mu and alpha; arrays with one entry per design.

    Attributes
    ----------
    var_b : sampling variance of the overall average effect estimate (POMADE's ``var_b``).
    df : degrees of freedom of the noncentral t distribution of the test statistic.
    df_test : degrees of freedom of the critical value.
    g : scale of the critical value (1 except MLMA-model and MLMA-satt).
    df_report : the df POMADE reports (J - 1 for the ``model`` tests, else ``df``).
    """

    var_b: np.ndarray
    df: np.ndarray
    df_test: np.ndarray
    g: np.ndarray
    df_report: np.ndarray


def satt_df(w: np.ndarray) -> np.ndarray:
    """Satterthwaite df of the robust (CR2-type) variance under working weights (eq. 16).

    ``1 / [sum w^2/(W - w)^2 - 2/W sum w^3/(W - w)^2 + (sum w^2/(W - w))^2 / W^2]`` with
    W = sum w, over the last axis of ``w`` (one row per design).
    """
    w = np.asarray(w, dtype=float)
    big_w = w.sum(axis=-1, keepdims=True)
    rest = big_w - w
    w2 = w * w
    inv = (
        (w2 / rest**2).sum(axis=-1)
        - 2.0 / big_w[..., 0] * (w2 * w / rest**2).sum(axis=-1)
        + (w2 / rest).sum(axis=-1) ** 2 / big_w[..., 0] ** 2
    )
    return 1.0 / inv


def che_satt_df(w: np.ndarray, k: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Satterthwaite df of the model-based variance of the CHE (or MLMA) estimator (eq. 12).

    ``(s t - u^2) / (s y^2 + t x^2 - 2 u x y)`` with x = sum w^2 / W, y = sum w^2/k / W,
    s = x^2 + W x - 2 sum w^3 / W,
    t = y^2 + sum w^2/k^2 + sum (k - 1)/e^2 - 2 sum w^3/k^2 / W,
    u = x y + W y - 2 sum w^3/k / W, where e_j is the working within-study variance
    (omega^2 + (1 - rho) sigma2_j for CHE, omega~^2 + sigma2_j for MLMA). When e_j = 0 for a
    study with k_j > 1 (omega = 0 and rho = 1) t is infinite and the df is its limit s / x^2;
    when every k_j = 1 (where POMADE returns NaN) the two variance components are one and the
    df is the same limit.
    """
    big_w = w.sum(axis=-1)
    w2, w3 = w * w, w * w * w
    x = w2.sum(axis=-1) / big_w
    y = (w2 / k).sum(axis=-1) / big_w
    s = x * x + big_w * x - 2.0 * w3.sum(axis=-1) / big_w
    with np.errstate(divide="ignore", invalid="ignore"):
        extra = np.where(k > 1, (k - 1.0) / within**2, 0.0)
    t = (
        y * y
        + (w2 / k**2).sum(axis=-1)
        + extra.sum(axis=-1)
        - 2.0 * (w3 / k**2).sum(axis=-1) / big_w
    )
    u = x * y + big_w * y - 2.0 * (w3 / k).sum(axis=-1) / big_w
    # one effect size in every study: tau^2 and omega^2 are not separately identified and
    # eq. 12 is 0/0 (and cancels catastrophically for k_j within 1e-9 of 1); its limit, which
    # is continuous in k, is the one-component df s / x^2 (as for infinite t)
    finite = np.isfinite(t) & ~np.all(k - 1.0 <= 1e-9, axis=-1)
    tt = np.where(finite, t, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (s * tt - u * u) / (s * y * y + tt * x * x - 2.0 * u * x * y)
    return np.where(finite, df, s / (x * x))


# ---------------------------------------------------------------------------------------------
# MLMA: working variance components closest (Kullback-Leibler) to the true model
# ---------------------------------------------------------------------------------------------


def _kl_value(
    ab: np.ndarray, true_v: np.ndarray, true_o: np.ndarray, k: np.ndarray, sigma2: np.ndarray
) -> np.ndarray:
    """KL divergence of the MLMA working model from the true model, one value per row
    (see :func:`_kl_derivatives`)."""
    return _kl_derivatives(ab, true_v, true_o, k, sigma2, order=0)[0]


def _kl_derivatives(
    ab: np.ndarray,
    true_v: np.ndarray,
    true_o: np.ndarray,
    k: np.ndarray,
    sigma2: np.ndarray,
    order: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KL divergence of the MLMA working model (tau~^2 = a, omega~^2 = b, working rho = 0) from
    the true model, up to a constant, with its gradient and Hessian in (a, b); one row a design.

    f = sum (k-1) O_j / E_j + sum w_j V_j - sum w_j^2 V_j / W + sum (k-1) log E_j + sum log D_j
        + log W,
    E_j = b + sigma2_j, D_j = k_j a + E_j, w_j = k_j / D_j, W = sum w_j, and for the true model
    O_j = omega^2 + (1 - rho) sigma2_j, V_j = tau^2 + rho sigma2_j + O_j / k_j (POMADE's
    ``CHE_KL`` with phi = rho, written in the variances rather than the SDs).
    """
    a, b = ab[:, 0:1], ab[:, 1:2]
    e = b + sigma2
    d = k * a + e
    w = k / d
    big_w = w.sum(axis=1)
    p = (w * w * true_v).sum(axis=1)
    f = (
        ((k - 1.0) * true_o / e).sum(axis=1)
        + (w * true_v).sum(axis=1)
        - p / big_w
        + ((k - 1.0) * np.log(e)).sum(axis=1)
        + np.log(d).sum(axis=1)
        + np.log(big_w)
    )
    if order == 0:
        return f, f, f
    cs = (np.ones_like(k), 1.0 / k)  # dw/da = -w^2, dw/db = -w^2 / k
    dw = [-(w * w) * c for c in cs]
    dbig = [x.sum(axis=1) for x in dw]
    dp = [(2.0 * w * x * true_v).sum(axis=1) for x in dw]
    grad = np.empty((ab.shape[0], 2))
    db_log = [(k / d).sum(axis=1), ((k - 1.0) / e).sum(axis=1) + (1.0 / d).sum(axis=1)]
    for i in range(2):
        grad[:, i] = (
            (dw[i] * true_v).sum(axis=1)
            - (dp[i] / big_w - p * dbig[i] / big_w**2)
            + db_log[i]
            + dbig[i] / big_w
        )
    grad[:, 1] -= ((k - 1.0) * true_o / e**2).sum(axis=1)
    hess = np.empty((ab.shape[0], 2, 2))
    dd_log = {
        (0, 0): -(k * k / d**2).sum(axis=1),
        (0, 1): -(k / d**2).sum(axis=1),
        (1, 1): -((k - 1.0) / e**2).sum(axis=1) - (1.0 / d**2).sum(axis=1),
    }
    for i in range(2):
        for j in range(i, 2):
            w_ij = 2.0 * w**3 * cs[i] * cs[j]
            big_ij = w_ij.sum(axis=1)
            p_ij = (2.0 * (dw[i] * dw[j] + w * w_ij) * true_v).sum(axis=1)
            a3 = (
                p_ij / big_w
                - dp[i] * dbig[j] / big_w**2
                - dp[j] * dbig[i] / big_w**2
                - p * big_ij / big_w**2
                + 2.0 * p * dbig[i] * dbig[j] / big_w**3
            )
            h = (
                (w_ij * true_v).sum(axis=1)
                - a3
                + dd_log[(i, j)]
                + big_ij / big_w
                - dbig[i] * dbig[j] / big_w**2
            )
            if (i, j) == (1, 1):
                h = h + (2.0 * (k - 1.0) * true_o / e**3).sum(axis=1)
            hess[:, i, j] = h
            hess[:, j, i] = h
    return f, grad, hess


def _newton_step(x: np.ndarray, g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Projected Newton direction per row for min f(a, b) subject to a, b >= 0.

    A variable at its bound whose gradient pushes outwards is held. The Hessian of the free
    variables is made positive definite by taking the absolute values of its eigenvalues
    (floored at 1e-10 of the largest), so that an indefinite or nearly singular Hessian (the
    two variances are nearly unidentified when k_j is close to 1) still gives a descent
    direction that follows the valley.
    """
    free = ~((x <= 0.0) & (g > 0.0))
    tiny = np.finfo(float).tiny
    step = np.zeros_like(x)
    both = free[:, 0] & free[:, 1]
    if both.any():
        lam, vec = np.linalg.eigh(h[both])
        mag = np.abs(lam)
        mag = np.maximum(mag, 1e-10 * mag.max(axis=1, keepdims=True) + tiny)
        vg = np.einsum("nij,ni->nj", vec, g[both])
        step[both] = -np.einsum("nij,nj->ni", vec, vg / mag)
    for i in range(2):
        one = free[:, i] & ~both
        step[one, i] = -g[one, i] / np.maximum(np.abs(h[one, i, i]), tiny)
    return step


def mlma_working_variances(
    tau: float, omega: float, rho: float, sigma2: np.ndarray, k: np.ndarray, max_iter: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """tau~^2 and omega~^2 of the MLMA working model, one pair per design (row).

    Minimises the Kullback-Leibler divergence of the MLMA working model (working rho = 0) from
    the true CHE model (tau, omega, rho) over tau~^2, omega~^2 >= 0 (Vembye, Pustejovsky &
    Pigott 2023, supplementary material; POMADE's ``find_tau_omega``), starting where POMADE
    starts (tau + 0.001, omega + 0.001). POMADE uses ``optim(method = "L-BFGS-B")`` with a
    numerical gradient; here a projected Newton method with the exact gradient and Hessian runs
    to machine precision, vectorised over designs.
    """
    n = sigma2.shape[0]
    true_o = omega**2 + (1.0 - rho) * sigma2
    true_v = tau**2 + rho * sigma2 + true_o / k
    x = np.tile([(tau + 0.001) ** 2, (omega + 0.001) ** 2], (n, 1))
    active_rows = np.ones(n, dtype=bool)
    scale = np.maximum(np.mean(sigma2, axis=1), 1e-300)[:, None]
    for _ in range(max_iter):
        rows = np.flatnonzero(active_rows)
        if rows.size == 0:
            break
        xs = x[rows]
        args = (true_v[rows], true_o[rows], k[rows], sigma2[rows])
        f, g, h = _kl_derivatives(xs, *args)
        step = _newton_step(xs, g, h)
        # backtracking line search on the projected path (Armijo)
        t = np.ones(rows.size)
        accepted = np.zeros(rows.size, dtype=bool)
        x_new = xs.copy()
        f_new = f.copy()
        for _ls in range(60):
            todo = ~accepted
            if not todo.any():
                break
            cand = np.maximum(xs[todo] + t[todo, None] * step[todo], 0.0)
            fc = _kl_value(cand, *(z[todo] for z in args))
            dec = (g[todo] * (cand - xs[todo])).sum(axis=1)
            ok = np.isfinite(fc) & (
                fc <= f[todo] + 1e-4 * np.minimum(dec, 0.0) + 1e-13 * np.abs(f[todo])
            )
            idx = np.flatnonzero(todo)
            x_new[idx[ok]] = cand[ok]
            f_new[idx[ok]] = fc[ok]
            accepted[idx[ok]] = True
            t[idx[~ok]] *= 0.5
        moved = np.abs(x_new - xs).max(axis=1)
        x[rows] = x_new
        # converged: the step no longer moves x, or the Newton decrement -g.step (twice the
        # predicted decrease) is at the rounding level of f
        decrement = -(g * step).sum(axis=1)
        done = (
            (moved <= 1e-15 * np.maximum(np.abs(xs).max(axis=1), scale[rows, 0]))
            | ~accepted
            | ((t == 1.0) & (decrement <= 1e-15 * (1.0 + np.abs(f))))
        )
        active_rows[rows[done]] = False
    return x[:, 0], x[:, 1]


# ---------------------------------------------------------------------------------------------
# The engine: moments of one working model per design
# ---------------------------------------------------------------------------------------------


def moments(
    sigma2: np.ndarray, k: np.ndarray, tau: float, omega: float, rho: float, model: str, var_df: str
) -> Moments:
    """var_b and the df's of the test under a working model, one entry per design (row).

    ``sigma2`` and ``k`` are (n, J) arrays; ``model`` one of CHE, MLMA, CE; ``var_df`` one of
    model, satt, rve (CE only with rve). Formulas: module docstring (POMADE's
    ``power_MADE_single``).
    """
    n, j = sigma2.shape
    ones = np.ones(n)
    if model == "CHE":
        within = omega**2 + (1.0 - rho) * sigma2
        w = k / (k * tau**2 + k * rho * sigma2 + within)
        var_b = 1.0 / w.sum(axis=1)
        if var_df == "rve":
            df = satt_df(w)
            return Moments(var_b, df, df, ones, df)
        df = che_satt_df(w, k, within)
        if var_df == "satt":
            return Moments(var_b, df, df, ones, df)
        return Moments(var_b, df, ones * (j - 1), ones, ones * (j - 1))
    if model == "MLMA":
        a, b = mlma_working_variances(tau, omega, rho, sigma2, k)
        w = k / (k * a[:, None] + b[:, None] + sigma2)
        big_w = w.sum(axis=1)
        true = tau**2 + rho * sigma2 + (omega**2 + (1.0 - rho) * sigma2) / k
        s_t = (w * w * true).sum(axis=1) / big_w**2
        if var_df == "rve":
            df = satt_df(w)
            return Moments(s_t, df, df, ones, df)
        df = che_satt_df(w, k, b[:, None] + sigma2)
        g = 1.0 / np.sqrt(big_w * s_t)
        if var_df == "satt":
            return Moments(s_t, df, df, g, df)
        return Moments(s_t, df, ones * (j - 1), g, ones * (j - 1))
    if model == "CE":
        if var_df != "rve":
            raise ValueError("the CE working model is available only with var_df = 'rve'")
        inv = 1.0 / sigma2
        a = inv.sum(axis=1, keepdims=True)
        tau2_e = tau**2 + omega**2 * (1.0 - (inv * inv / k).sum(axis=1, keepdims=True) / a**2) / (
            1.0 - (inv * inv).sum(axis=1, keepdims=True) / a**2
        )
        w = 1.0 / (sigma2 + tau2_e)
        big_w = w.sum(axis=1)
        true = tau**2 + rho * sigma2 + (omega**2 + (1.0 - rho) * sigma2) / k
        s_dd = (w * w * true).sum(axis=1) / big_w**2
        df = satt_df(w)
        return Moments(s_dd, df, df, ones, df)
    raise ValueError(f"unknown working model {model!r}")


def power_t(lam, df, alpha: float, df_test=None, g=1.0) -> np.ndarray:
    """Power of the two-sided level-alpha t test: ``P(T < -c) + P(T > c)``.

    T ~ noncentral t(df, lambda), c = g t_{1 - alpha/2}(df_test) (POMADE's ``power_t``). The
    lower-tail term is computed as P(T' > c) with T' ~ t(df, -|lambda|), which is the same
    number and which scipy evaluates where ``nct.cdf`` returns NaN; a term that underflows is 0.
    Power is symmetric in lambda.
    """
    lam = np.abs(np.asarray(lam, dtype=float))
    df = np.asarray(df, dtype=float)
    dft = df if df_test is None else np.asarray(df_test, dtype=float)
    crit = np.asarray(g, dtype=float) * stats.t.ppf(1.0 - alpha / 2.0, dft)
    upper = stats.nct.sf(crit, df, lam)
    lower = stats.nct.sf(crit, df, -lam)
    lower = np.where(np.isnan(lower), 0.0, lower)
    return np.asarray(upper + lower)


def design_power(mu: float, m: Moments, alpha: float) -> np.ndarray:
    """Power of every design (row) for an overall average effect ``mu``."""
    return power_t(mu / np.sqrt(m.var_b), m.df, alpha, m.df_test, m.g)


# ---------------------------------------------------------------------------------------------
# Designs: balanced, fixed (the rows are the studies), drawn from empirical or stylised
# distributions
# ---------------------------------------------------------------------------------------------

Sampler = Callable[[np.random.Generator, int], np.ndarray]


class Design:
    """Where the J studies' (sigma2_j, k_j) come from.

    ``kind`` is ``balanced`` (one value each), ``fixed`` (arrays of length J, the studies
    themselves), or, for a value of each that is an array of several values (an empirical
    distribution) or a callable ``f(rng, n)`` returning n draws (a stylised distribution),
    ``empirical`` (``stylised`` when a callable is involved): every iteration draws J studies with replacement from the arrays; two arrays
    of the same length are drawn by rows, i.e. as (sigma2_j, k_j) pairs (POMADE's
    ``empirical_combi``). Draws are made once and kept, and the design with J studies is the
    first J columns of the design with more: every mu and every J is evaluated on the same
    draws (common random numbers, as POMADE does for mdes and studies by resetting its seed).
    """

    CHUNK = 64

    def __init__(self, sigma2, k, *, fixed: bool = False, iterations: int = 100, seed=None):
        self.sigma2 = sigma2
        self.k = k
        self.fixed = fixed
        s_many = callable(sigma2) or np.size(sigma2) > 1
        k_many = callable(k) or np.size(k) > 1
        if fixed:
            self.kind = "fixed"
        elif not s_many and not k_many:
            self.kind = "balanced"
        elif callable(sigma2) or callable(k):
            self.kind = "stylised"
        else:
            self.kind = "empirical"
        self.paired = (
            self.kind == "empirical" and s_many and k_many and np.size(sigma2) == np.size(k)
        )
        self.iterations = 1 if self.kind in ("balanced", "fixed") else int(iterations)
        self._rng = np.random.default_rng(seed)
        self._s = np.empty((self.iterations, 0))
        self._k = np.empty((self.iterations, 0))

    @property
    def sampled(self) -> bool:
        """True when the design is drawn at random (Monte Carlo over iterations)."""
        return self.kind in ("empirical", "stylised")

    def _draw(self, dist, n: int) -> np.ndarray:
        if callable(dist):
            return np.vstack(
                [
                    np.asarray(dist(self._rng, n), dtype=float).reshape(-1)[:n]
                    for _ in range(self.iterations)
                ]
            )
        v = np.asarray(dist, dtype=float).reshape(-1)
        if v.size == 1:
            return np.full((self.iterations, n), v[0])
        return v[self._rng.integers(0, v.size, size=(self.iterations, n))]

    def _extend(self, j: int) -> None:
        # whole blocks of CHUNK columns, so that the draws depend on the seed only, not on the
        # order in which numbers of studies are asked for
        while self._s.shape[1] < j:
            if self.paired:
                s = np.asarray(self.sigma2, dtype=float).reshape(-1)
                kk = np.asarray(self.k, dtype=float).reshape(-1)
                idx = self._rng.integers(0, s.size, size=(self.iterations, self.CHUNK))
                new_s, new_k = s[idx], kk[idx]
            else:
                new_s = self._draw(self.sigma2, self.CHUNK)
                new_k = self._draw(self.k, self.CHUNK)
            self._s = np.hstack([self._s, new_s])
            self._k = np.hstack([self._k, new_k])

    def arrays(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(sigma2, k) as (iterations, J) arrays for J studies."""
        if self.kind == "balanced":
            s0 = float(np.asarray(self.sigma2, dtype=float).reshape(-1)[0])
            k0 = float(np.asarray(self.k, dtype=float).reshape(-1)[0])
            return np.full((1, j), s0), np.full((1, j), k0)
        if self.kind == "fixed":
            s = np.broadcast_to(np.asarray(self.sigma2, dtype=float).reshape(-1), (j,))
            kk = np.broadcast_to(np.asarray(self.k, dtype=float).reshape(-1), (j,))
            return s[None, :].copy(), kk[None, :].copy()
        if self._s.shape[1] < j:
            self._extend(j)
        return self._s[:, :j], self._k[:, :j]


# ---------------------------------------------------------------------------------------------
# Searches: minimum detectable effect and minimum number of studies
# ---------------------------------------------------------------------------------------------


def _mean_w(design: Design, tau, omega, rho) -> float:
    """Mean CHE weight over the distribution of studies (POMADE's ``wbar``), for start values
    only (a stylised distribution is sampled with its own generator, leaving the design's
    draws untouched)."""
    rng = np.random.default_rng(0)

    def values(dist) -> np.ndarray:
        if callable(dist):
            return np.asarray(dist(rng, 1000), dtype=float).reshape(-1)
        return np.asarray(dist, dtype=float).reshape(-1)

    s, kk = values(design.sigma2), values(design.k)
    if s.size != kk.size and s.size > 1 and kk.size > 1:
        s, kk = np.meshgrid(s, kk)
    w = kk / (kk * tau**2 + kk * rho * s + omega**2 + (1.0 - rho) * s)
    return float(np.mean(w))


def solve_mdes(m: Moments, alpha: float, target: float, start: float) -> float:
    """Smallest mu >= 0 whose mean power over the designs ``m`` equals ``target`` (brentq).

    ``start`` is a first guess (POMADE's normal-approximation lower bound); the bracket is
    found by halving and doubling it. The mean power must be below ``target`` at mu = 0.
    """

    def f(mu: float) -> float:
        return float(np.mean(design_power(mu, m, alpha))) - target

    lo = max(start, 1e-8)
    hi = lo
    while f(lo) >= 0.0:
        hi = lo
        lo /= 2.0
        if lo < 1e-300:  # pragma: no cover - guarded by the caller's check at mu = 0
            return 0.0
    if hi == lo:
        hi = 2.0 * lo
        while f(hi) < 0.0:
            lo, hi = hi, 2.0 * hi
    return float(optimize.brentq(f, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500))


def solve_min_studies(
    power_at: Callable[[int], float], target: float, start: int, max_studies: int
) -> tuple[int | None, dict[int, float]]:
    """Smallest integer J >= 5 with ``power_at(J) >= target`` (POMADE's hard limit of 5).

    Doubles from ``start`` until the target is reached, then bisects between the last J below
    the target and the first at or above it, so that power(J - 1) < target <= power(J) (power
    increases in J). Returns (J or None when ``max_studies`` does not reach it, the evaluated
    powers).
    """
    seen: dict[int, float] = {}

    def p(j: int) -> float:
        if j not in seen:
            seen[j] = power_at(j)
        return seen[j]

    lo = HARD_MIN_STUDIES
    if p(lo) >= target:
        return lo, seen
    hi = max(int(start), lo + 1)
    hi = min(hi, max_studies)
    while p(hi) < target:
        if hi >= max_studies:
            return None, seen
        lo = hi
        hi = min(2 * hi, max_studies)
    # p(lo) < target <= p(hi)
    if hi > lo + 1 and p(hi - 1) < target:
        lo = hi - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if p(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi, seen


def normal_start_mu(design: Design, j: int, tau, omega, rho, alpha, target) -> float:
    """POMADE's lower bound of the mdes search: (z_{1-alpha/2} - z_{1+alpha/2-target}) /
    sqrt(wbar J)."""
    wbar = _mean_w(design, tau, omega, rho)
    z = stats.norm.ppf(1.0 - alpha / 2.0) - stats.norm.ppf(
        min(1.0 + alpha / 2.0 - target, 1.0 - 1e-12)
    )
    return float(max(z, 0.1) / np.sqrt(wbar * j))


def normal_start_j(design: Design, mu, tau, omega, rho, alpha, target) -> int:
    """POMADE's start of the studies search: (z_{1-alpha/2} - z_{1+alpha/2-target})^2 /
    (wbar mu^2), at least 5."""
    wbar = _mean_w(design, tau, omega, rho)
    z = stats.norm.ppf(1.0 - alpha / 2.0) - stats.norm.ppf(
        min(1.0 + alpha / 2.0 - target, 1.0 - 1e-12)
    )
    j = z * z / (wbar * mu * mu)
    if not np.isfinite(j):
        return HARD_MIN_STUDIES
    return int(max(np.floor(min(j, 1e9)), HARD_MIN_STUDIES))
