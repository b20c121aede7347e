"""Heterogeneity per level: multilevel I^2 and pseudo-R^2 of moderator models.

I^2 follows the multilevel generalisation in the metafor FAQ (Nakagawa & Santos 2012;
Cheung 2014): with W = diag(1/v), P = W - W X (X'WX)^{-1} X'W and the "typical" sampling
variance v~ = (k - p) / tr(P),

    I^2_l = sigma2_l / (sum_m sigma2_m + v~),   I^2_total = sum_l sigma2_l / (sum_m sigma2_m + v~),

and the sampling-error share 1 - I^2_total (the "level 1" row of dmetar's ``var.comp``).
Confidence intervals for every I^2 come from the profile-likelihood limits of the sigma2:
I^2_l is increasing in sigma2_l, so its limits are I^2_l evaluated at the limits of sigma2_l with
the other components at their profiled values (total: the sum's bounds, conservatively from the
per-level limits).

R^2 of a moderator model, two kinds (``r2(res, kind=...)``):

* ``"proportional"`` (the default, and what the report gives): per level the proportional
  reduction of each variance component against the intercept-only model on the same rows,
  (sigma2_null - sigma2) / sigma2_null, reported untruncated (negative values happen and are
  flagged), and the total on the summed components (Raudenbush 2009; López-López et al. 2014).
* ``"marginal"``: Nakagawa & Schielzeth's (2013) marginal and conditional R^2 as orchaRd's
  ``r2_ml`` computes them from one fit: with f = var(X b) (the sample variance of the fitted
  fixed part over the k rows, denominator k - 1),

      R2_marginal    = f / (f + sum_l sigma2_l),
      R2_conditional = (f + sum_l sigma2_l - sigma2_inner) / (f + sum_l sigma2_l),

  sigma2_inner being the component of the level with the most groups (orchaRd's "residual"
  level; the innermost on ties). No null model is fitted.

Models with general random-effects structures (:class:`mlmeta.structures.StructuredResults`:
crossed ``~ 1 | ...`` terms, ``R=`` matrices, ``~ inner | outer`` terms, a known ``V``) use the
same two definitions over all their variance components: every ``sigma2`` and, per
``~ inner | outer`` term, its variance tau2 (gamma2 for the second term). Where a term has one
variance per inner level (DIAG, HCS, HAR, UN), the variance that enters the sums is the mean of
the inner levels' variances (the variance of a random effect of an inner level drawn with equal
probability); the proportional kind also reports each inner level's own reduction
(``tau2[level]``). The marginal kind's "residual" level is the ``~ 1 | ...`` component with the
most levels (for ``["~ 1 | study/es", "~ 1 | lab"]``: ``study/es``); orchaRd's ``r2_ml`` takes
the last ``sigma2`` instead, which for crossed terms need not be the innermost level, and leaves
tau2 and gamma2 out.

References: Nakagawa, S., & Schielzeth, H. (2013). A general and simple method for obtaining R2
from generalized linear mixed-effects models. *Methods in Ecology and Evolution, 4*(2),
133-142. Nakagawa, S., et al. (2023), orchaRd 2.0, *Methods in Ecology and Evolution*.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.errors import FitWarning, InputError

__all__ = [
    "R2_KINDS",
    "I2Result",
    "R2Marginal",
    "R2Result",
    "i2",
    "r2",
    "typical_v",
    "variance_components",
]

#: the kinds of R^2 of :func:`r2`
R2_KINDS = ("proportional", "marginal")


def typical_v(v: np.ndarray, X: np.ndarray, blocks=None) -> float:
    """(k - p) / tr(P) with P = W - WX(X'WX)^{-1}X'W and W = V^{-1}, V the sampling covariance.

    V = diag(v) unless ``blocks`` (pairs of row indices and dense sampling-covariance blocks,
    for correlated sampling errors) are given; then W is block-diagonal, as in the metafor FAQ.
    """
    k, p = X.shape
    if blocks is not None:
        trW = 0.0
        A = np.zeros((p, p))
        B = np.zeros((p, p))
        for rows, R in blocks:
            W = np.linalg.inv(R)
            Xc = X[rows]
            WX = W @ Xc
            trW += float(np.trace(W))
            A += Xc.T @ WX
            B += WX.T @ WX
        tr = trW - float(np.trace(np.linalg.solve(A, B))) if p else trW
        return (k - p) / tr
    w = 1.0 / v
    if p:
        Xw = X * w[:, None]
        A = X.T @ Xw
        B = Xw.T @ Xw
        tr = float(np.sum(w) - np.trace(np.linalg.solve(A, B)))
    else:
        tr = float(np.sum(w))
    return (k - p) / tr


@dataclass(frozen=True)
class I2Result:
    total: float
    levels: pd.Series
    typical_v: float
    ci: pd.DataFrame | None = None

    @property
    def sampling(self) -> float:
        """Share of the total variance due to sampling error (dmetar's level 1), in %."""
        return 100.0 - self.total

    def to_dict(self) -> dict:
        d = {
            "total": self.total,
            "levels": [float(x) for x in self.levels],
            "typical_v": self.typical_v,
            "sampling": self.sampling,
        }
        if self.ci is not None:
            d["ci"] = {c: [float(x) for x in self.ci[c]] for c in self.ci.columns}
        return d

    def to_frame(self) -> pd.DataFrame:
        """dmetar ``var.comp``-style table: % of total variance per level, sampling error first."""
        rows = {"sampling error": self.sampling}
        rows.update({str(k): float(v) for k, v in self.levels.items()})
        return pd.DataFrame({"percent": rows})


def i2(res, ci: bool = False, level: float = 95) -> I2Result:
    """Multilevel I^2 of a fit (percentages); ``ci=True`` adds profile-likelihood limits."""
    if not res.data.random:
        raise InputError("I2 needs random effects; the equal-effects model has none")
    s2 = res.core.sigma2
    tv = typical_v(res.data.v, res.data.X, sampling_blocks(res))
    tot = float(np.sum(s2))
    den = tot + tv
    levels = pd.Series(100.0 * s2 / den, index=list(res.level_names), name="I2")
    cit = None
    if ci:
        prof = res.profile_ci(level=level)
        lo: list[float] = []
        hi: list[float] = []
        for j in range(len(s2)):
            for bound, store in (("ci_lb", lo), ("ci_ub", hi)):
                sj = prof.table[bound].iloc[j]
                others = prof.others[bound][j]
                store.append(100.0 * sj / (sj + float(np.sum(others)) + tv))
        tot_lo = [100.0 * t / (t + tv) for t in [float(np.sum(prof.table["ci_lb"]))]]
        tot_hi = [100.0 * t / (t + tv) for t in [float(np.sum(prof.table["ci_ub"]))]]
        cit = pd.DataFrame(
            {"ci_lb": lo + tot_lo, "ci_ub": hi + tot_hi}, index=list(res.level_names) + ["total"]
        )
    return I2Result(100.0 * tot / den, levels, tv, cit)


@dataclass(frozen=True)
class R2Result:
    levels: pd.Series
    total: float
    sigma2_null: pd.Series
    negative: bool

    def to_dict(self) -> dict:
        return {
            "levels": [float(x) for x in self.levels],
            "total": self.total,
            "sigma2_null": [float(x) for x in self.sigma2_null],
        }


@dataclass(frozen=True)
class R2Marginal:
    """Nakagawa & Schielzeth's marginal and conditional R^2 (orchaRd's ``r2_ml``)."""

    marginal: float
    conditional: float
    var_fixed: float
    sigma2: pd.Series
    residual_level: str

    def to_dict(self) -> dict:
        return {
            "R2_marginal": self.marginal,
            "R2_conditional": self.conditional,
            "var_fixed": self.var_fixed,
            "sigma2": [float(x) for x in self.sigma2],
            "residual_level": self.residual_level,
        }


def r2(res, kind: str = "proportional") -> R2Result | R2Marginal:
    """R^2 of a moderator model (see the module docstring for the two kinds).

    ``kind="proportional"``: per-level and total reduction of the variance components against
    the intercept-only model on the same rows (an R2Result). ``kind="marginal"``: Nakagawa &
    Schielzeth's marginal and conditional R^2 of orchaRd's ``r2_ml`` (an R2Marginal).
    """
    if kind not in R2_KINDS:
        raise InputError(f"kind must be one of {', '.join(R2_KINDS)}; got {kind!r}")
    if not res.data.random and getattr(res, "tau2", None) is None:
        raise InputError("R2 needs random effects; the equal-effects model has none")
    if res.intercept_only:
        raise InputError("R2 needs moderators; this is the intercept-only model")
    if kind == "marginal":
        return _r2_marginal(res)
    null = res.refit(design=(np.ones((res.k, 1)), ["intrcpt"]), mods=None, warm=False)
    names, s1, t1 = variance_components(res)
    _, s0, t0 = variance_components(null)
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.where(s0 > 0, (s0 - s1) / s0, np.nan)
        tot = float((t0 - t1) / t0) if t0 > 0 else float("nan")
    neg = bool(np.any(lv < 0) or tot < 0)
    if neg:
        warnings.warn(
            "a pseudo-R2 is negative: the moderators explain none of that level's "
            "variance (the estimate went up), reported untruncated",
            FitWarning,
            stacklevel=2,
        )
    return R2Result(pd.Series(lv, index=names, name="R2"), tot, pd.Series(s0, index=names), neg)


def variance_components(res) -> tuple[list[str], np.ndarray, float]:
    """Names and values of the variance components a pseudo-R^2 compares, and their total.

    Nested models: the sigma2 of each level, total = their sum. Models with general structures
    (``res.is_structured``): the sigma2 of each ``~ 1 | ...`` term, then per ``~ inner | outer``
    term its variance (``tau2``/``gamma2``, or ``tau2[level]`` per inner level); total = sum of
    the sigma2 + per term the mean of its inner levels' variances (see the module docstring).
    """
    names = list(res.level_names)
    s2 = np.asarray(
        res.sigma2 if getattr(res, "is_structured", False) else res.core.sigma2, dtype=float
    )
    vals = list(s2)
    total = float(np.sum(s2))
    if getattr(res, "is_structured", False):
        for vc in (res.tau2, res.gamma2):
            if vc is None:
                continue
            t = vc.to_numpy(dtype=float)
            if len(t) == 1:
                names.append(str(vc.name))
            else:
                names += [f"{vc.name}[{lv}]" for lv in vc.index]
            vals += list(t)
            total += float(np.mean(t))
    return names, np.asarray(vals, dtype=float), total


def _r2_marginal(res) -> R2Marginal:
    fitted = res.data.X @ res.core.beta
    f = float(np.var(fitted, ddof=1))
    names, comp, vtot = variance_components(res)
    s2 = comp[: len(res.level_names)]
    n = list(res.n_levels)
    if not n:
        raise InputError(
            "the marginal R2 needs a '~ 1 | factor' component for its residual "
            "level (conditional R2); this model has only '~ inner | outer' terms"
        )
    tot = f + vtot
    j = max(i for i in range(len(n)) if n[i] == max(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        marg = f / tot
        cond = (tot - float(s2[j])) / tot
    return R2Marginal(float(marg), float(cond), f, pd.Series(comp, index=names), res.level_names[j])


def sampling_blocks(res):
    """Dense sampling-covariance blocks of a CHE fit (None when sampling errors are
    independent)."""
    if res.rho is None:
        return None
    from mlmeta.analyses.che import vcalc

    return vcalc(res.data.v, res.rho_codes(), res.rho)
