"""The user-facing estimator: ``rma_mv`` (alias ``fit``), metafor's ``rma.mv`` for nested models.

    y_i = x_i' beta + u_(1) + u_(1,2) + ... + e_i,   u_(l) ~ N(0, sigma2_l),  e_i ~ N(0, v_i),

with the random effects nested outer to inner (``random="study/es"``). Estimation by REML
(default) or ML; tests of the coefficients by z or t (df "residual" = k - p, or "contain");
omnibus moderator test QM, residual heterogeneity QE, fit statistics, predictions.
References: Konstantopoulos (2011); Van den Noortgate et al. (2013); Cheung (2014);
Viechtbauer (2010), metafor 3.8-1.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mlmeta.core.fit import fit_nested
from mlmeta.core.inference import (
    coef_tests,
    contain_df,
    default_btt,
    fit_statistics,
    omnibus_test,
    qe_test,
    qe_test_blocks,
)
from mlmeta.data import ModelData, level_names, prepare
from mlmeta.errors import InputError
from mlmeta.results import MetaResults

__all__ = ["rma_mv", "fit", "fit_prepared", "refit", "TESTS", "DFS", "METHODS"]

TESTS = ("z", "t")
DFS = ("residual", "contain")
METHODS = ("REML", "ML")


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    for a in allowed:
        if str(value).lower() == a.lower():
            return a
    raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def rma_mv(
    data: pd.DataFrame | None = None,
    yi="yi",
    vi="vi",
    random=None,
    mods: str | None = None,
    *,
    method: str = "REML",
    test: str = "z",
    dfs: str = "residual",
    sigma2: Sequence[float | None] | None = None,
    level: float = 95,
    measure: str | None = None,
    rho: float | None = None,
    rho_cluster: str | None = None,
) -> MetaResults:
    """Fit a multilevel (nested random-effects) meta-analytic model.

    Parameters
    ----------
    data : DataFrame holding the columns named below (or None when arrays are given).
    yi, vi : column names (or arrays) of the effect sizes and their sampling variances.
    random : nesting outer to inner, ``"study/es"`` (metafor's ``~ 1 | study/es``), a list of
        columns, or None for the equal-effects model.
    mods : moderator formula in R syntax, e.g. ``"~ phase"`` or ``"~ 0 + factor(type)"``.
    method : "REML" (default) or "ML".
    test : "z" (default) or "t"; dfs : "residual" (k - p) or "contain" (metafor's rule).
    sigma2 : per level, a value to fix the component at (0 allowed) or None to estimate it.
    level : confidence level in percent (a value below 1 is read as a proportion, as metafor).
    measure : the effect-size measure of ``yi`` (e.g. "ZCOR") for back-transformed output.
    rho, rho_cluster : correlated sampling errors, the "correlated and hierarchical effects"
        (CHE) working model: effect sizes in the same ``rho_cluster`` (default: the outer
        random level) have sampling correlation ``rho`` (metafor's ``vcalc(vi, cluster, obs,
        rho)``, clubSandwich's ``impute_covariance_matrix``).

    Returns
    -------
    MetaResults

    Examples
    --------
    >>> import mlmeta, pandas as pd
    >>> d = pd.read_csv("konstantopoulos2011.csv")            # doctest: +SKIP
    >>> res = mlmeta.rma_mv(d, "yi", "vi", random="district/school")   # doctest: +SKIP
    >>> round(res.beta.iloc[0], 4), res.sigma2.round(4).tolist()       # doctest: +SKIP
    (0.1847, [0.0651, 0.0327])
    """
    method = _choice("method", method, METHODS)
    test = _choice("test", test, TESTS)
    dfs = _choice("dfs", dfs, DFS)
    level = _level(level)
    md = prepare(data, yi, vi, random, mods)
    if rho is not None:
        rho_cluster = _rho_cluster(md, rho_cluster)
    return fit_prepared(md, method=method, test=test, dfs=dfs, sigma2=sigma2,
                        level=float(level), measure=measure, rho=rho, rho_cluster=rho_cluster)


def _level(level) -> float:
    """Confidence level in percent; like metafor, a value below 1 is read as a proportion."""
    try:
        lv = float(level)
    except (TypeError, ValueError):
        raise InputError(f"level must be a number (e.g. 95); got {level!r}") from None
    if 0 < lv < 1:
        lv *= 100.0
    if not (1 < lv < 100):
        raise InputError(f"level must be a percentage between 0 and 100 (or a proportion "
                         f"below 1); got {level!r}")
    return lv


def _rho_cluster(md: ModelData, rho_cluster: str | None) -> str:
    if rho_cluster is None:
        if not md.random:
            raise InputError("rho needs rho_cluster= (the column whose rows share correlated "
                             "sampling errors) when the model has no random effects")
        return md.random[0]
    if rho_cluster not in md.frame.columns:
        raise InputError(f"rho_cluster column {rho_cluster!r} not found in the data")
    if md.frame[rho_cluster].isna().any():
        raise InputError(f"rho_cluster column {rho_cluster!r} has missing values")
    return rho_cluster


fit = rma_mv


def fit_prepared(md: ModelData, *, method: str = "REML", test: str = "z",
                 dfs: str = "residual", sigma2=None, level: float = 95,
                 measure: str | None = None, start=None, rho: float | None = None,
                 rho_cluster: str | None = None) -> MetaResults:
    """Fit a model to already prepared data (used by refits: leave-one-out, profiles, LRTs)."""
    k, p = md.X.shape
    if k <= p:
        raise InputError(f"{k} effect sizes are too few for {p} coefficients")
    rho_codes = None
    if rho is not None:
        _, rho_codes = np.unique(md.frame[rho_cluster].astype(str).to_numpy(),
                                 return_inverse=True)
    core = fit_nested(md.y, md.v, md.X, md.factors, method=method, sigma2_fixed=sigma2,
                      start=start, rho=rho, rho_codes=rho_codes)
    st = core.problem.st
    if dfs == "contain" and test == "t":
        inv = np.argsort(st.order)
        codes = [c[inv] for c in st.codes]
        ddf = contain_df(md.X, codes, list(st.n_groups))
    elif test == "t":
        ddf = np.full(p, float(k - p))
    else:
        ddf = None
    ct = coef_tests(core.beta, core.vcov, ddf, level / 100.0)
    btt = default_btt(md.coef_names, md.formula.has_intercept)
    QM, QM_df, QMp = omnibus_test(core.beta, core.vcov, btt, ddf)
    if rho is None:
        QE, QE_df, QEp = qe_test(md.y, md.v, md.X)
    else:
        QE, QE_df, QEp = qe_test_blocks(md.y, md.X, core.problem)
    n_est = int(np.sum(~core.fixed))
    fs = fit_statistics(core.ll, method, k, p, n_est, md.v)
    return MetaResults(
        data=md,
        core=core,
        method=method,
        test=test,
        dfs=dfs,
        level=level,
        measure=measure,
        level_names=level_names(md.random),
        tests=ct,
        btt=btt,
        QM=QM, QM_df=QM_df, QMp=QMp,
        QE=QE, QE_df=QE_df, QEp=QEp,
        fitstats=fs,
        rho=rho,
        rho_cluster=rho_cluster,
    )


def refit(res: MetaResults, md: ModelData | None = None, *, sigma2=None, start=None,
          method: str | None = None, warm: bool = True) -> MetaResults:
    """Refit ``res``'s model, optionally to other rows/design, fixed components or method.

    Warm-started from ``res``'s variance components unless ``warm=False``; components fixed
    in ``res`` stay fixed unless ``sigma2`` says otherwise.
    """
    if sigma2 is None:
        sigma2 = [float(s) if f else None for s, f in zip(res.core.sigma2, res.core.fixed)]
    if start is None and warm:
        start = res.core.sigma2
    return fit_prepared(res.data if md is None else md, method=method or res.method,
                        test=res.test, dfs=res.dfs, sigma2=sigma2, level=res.level,
                        measure=res.measure, start=start, rho=res.rho,
                        rho_cluster=res.rho_cluster)
