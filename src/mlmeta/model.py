"""The user-facing estimator: ``rma_mv`` (alias ``fit``), metafor's ``rma.mv`` for nested models.

    y_i = x_i' beta + u_(1) + u_(1,2) + ... + e_i,   u_(l) ~ N(0, sigma2_l),  e_i ~ N(0, v_i),

with the random effects nested outer to inner (``random="study/es"``). Estimation by REML
(default) or ML; tests of the coefficients by z or t (df "residual" = k - p, or "contain");
omnibus moderator test QM, residual heterogeneity QE, fit statistics, predictions.
References: Konstantopoulos (2011); Van den Noortgate et al. (2013); Cheung (2014);
Viechtbauer (2010), metafor 3.8-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

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
from mlmeta.errors import InputError
from mlmeta.io.prepare import ModelData, id_codes, level_names, prepare
from mlmeta.results import MetaResults
from mlmeta.spec import DFS, METHODS, TESTS, ModelSpec

__all__ = ["DFS", "METHODS", "TESTS", "fit", "fit_prepared", "fit_spec", "rma_mv"]


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
    struct=None,
    R=None,
    V=None,
) -> MetaResults:
    """Fit a multilevel (nested random-effects) meta-analytic model.

    Parameters
    ----------
    data : DataFrame holding the columns named below (or None when arrays are given).
    yi, vi : column names (or arrays) of the effect sizes and their sampling variances.
    random : random-effects terms as in metafor: ``"study/es"`` or ``"~ 1 | study/es"`` (levels
        nested outer to inner), or None for the equal-effects model (see
        :func:`mlmeta.spec.parse_random`).
    mods : moderator formula in R syntax, e.g. ``"~ phase"`` or ``"~ 0 + factor(type)"``.
    method : "REML" (default) or "ML".
    test : "z" (default) or "t"; dfs : "residual" (k - p) or "contain" (metafor's rule).
    sigma2 : per level, a value to fix the component at (0 allowed) or None to estimate it.
    level : confidence level in percent (e.g. 95; see :func:`mlmeta.spec.to_fraction`).
    measure : the effect-size measure of ``yi`` (e.g. "ZCOR") for back-transformed output.
    rho, rho_cluster : correlated sampling errors, the "correlated and hierarchical effects"
        (CHE) working model: effect sizes in the same ``rho_cluster`` (default: the outer
        random level) have sampling correlation ``rho`` (metafor's ``vcalc(vi, cluster, obs,
        rho)``, clubSandwich's ``impute_covariance_matrix``).
    struct, R, V : variance structure of ``~ inner | outer`` terms, known correlation matrices
        of factors' levels, a known sampling covariance matrix (see the README).

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
    spec = ModelSpec.build(
        yi=yi if isinstance(yi, str) else "yi",
        vi=vi if isinstance(vi, str) else "vi",
        random=random,
        struct=struct,
        mods=mods,
        method=method,
        test=test,
        dfs=dfs,
        level=level,
        rho=rho,
        rho_cluster=rho_cluster,
        sigma2=sigma2,
        measure=measure,
        R=R,
        V=V,
    )
    md = prepare_spec(data, spec, yi=yi, vi=vi)
    return fit_prepared(md, spec)


fit = rma_mv

_SPEC = object()  # prepare_spec: take the column from the specification


def prepare_spec(data, spec: ModelSpec, *, yi=_SPEC, vi=_SPEC) -> ModelData:
    """Validate ``data`` against ``spec`` and return the aligned model arrays.

    Crossed terms, ``~ inner | outer`` terms, ``R`` matrices and a known ``V`` are prepared by
    :func:`mlmeta.io.structures.prepare_structured` (the general engine); one nesting
    ``~ 1 | a/b`` with ``vi`` (and ``rho``) keeps the exact O(k) nested engine.
    """
    if spec.general:
        from mlmeta.io.structures import prepare_structured

        return prepare_structured(
            data, spec, yi=spec.yi if yi is _SPEC else yi, vi=spec.vi if vi is _SPEC else vi
        )
    nesting = spec.nesting
    assert nesting is not None  # spec.general is True otherwise
    md = prepare(
        data, spec.yi if yi is _SPEC else yi, spec.vi if vi is _SPEC else vi, nesting, spec.mods
    )
    if spec.rho_cluster is not None:
        _check_cluster_column(md, spec.rho_cluster, "rho_cluster")
    return md


def _check_cluster_column(md: ModelData, col: str, role: str) -> None:
    if col not in md.frame.columns:
        raise InputError(f"{role} column {col!r} not found in the data")
    if md.frame[col].isna().any():
        raise InputError(f"{role} column {col!r} has missing values")


def fit_spec(data: pd.DataFrame, spec: ModelSpec) -> MetaResults:
    """Fit the model described by ``spec`` to ``data``."""
    return fit_prepared(prepare_spec(data, spec), spec)


def fit_prepared(
    md: ModelData, spec: ModelSpec, *, start=None, problem=None, same_as: MetaResults | None = None
) -> MetaResults:
    """Fit ``spec`` to already prepared data (refits: leave-one-out, profiles, LRTs go through
    :meth:`MetaResults.refit`, which calls this).

    ``same_as``: a fit to the same rows, design and sampling covariance, whose quantities that
    do not depend on the variance components (QE, the containment df) are reused.
    """
    if spec.general:
        from mlmeta.io.structures import StructuredData
        from mlmeta.structures import fit_structured

        if not isinstance(md, StructuredData):
            raise InputError("this model needs data prepared for its random-effects structure")
        return fit_structured(md, spec, start=start, problem=problem)
    k, p = md.X.shape
    if k <= p:
        raise InputError(f"{k} effect sizes are too few for {p} coefficients")
    rho_codes = None
    if spec.rho is not None:
        rho_codes = id_codes(md.frame[spec.rho_cluster].to_numpy())[0]
        sizes = np.bincount(rho_codes)
        nmax = int(sizes.max()) if sizes.size else 1
        if nmax > 1 and spec.rho <= -1.0 / (nmax - 1):
            # a constant correlation among n errors is positive definite only for rho > -1/(n-1)
            who = md.frame[spec.rho_cluster].to_numpy()[
                int(np.flatnonzero(rho_codes == int(np.argmax(sizes)))[0])
            ]
            who = who.item() if isinstance(who, np.generic) else who
            raise InputError(
                f"rho = {spec.rho:g} makes the sampling covariance of "
                f"{spec.rho_cluster} {who!r} ({nmax} effect sizes) not positive "
                f"definite: with {nmax} correlated errors rho must be greater than "
                f"-1/{nmax - 1} = {-1.0 / (nmax - 1):.4g}"
            )
    core = fit_nested(
        md.y,
        md.v,
        md.X,
        md.factors,
        method=spec.method,
        sigma2_fixed=spec.sigma2,
        start=start,
        rho=spec.rho,
        rho_codes=rho_codes,
        problem=problem,
    )
    st = core.problem.st
    test, dfs = spec.test, spec.dfs
    if same_as is not None and (same_as.test, same_as.dfs) == (test, dfs):
        ddf = same_as.tests.df
    elif dfs == "contain" and test == "t":
        inv = np.argsort(st.order)
        codes = [c[inv] for c in st.codes]
        ddf = contain_df(md.X, codes, list(st.n_groups))
    elif test == "t":
        ddf = np.full(p, float(k - p))
    else:
        ddf = None
    ct = coef_tests(core.beta, core.vcov, ddf, spec.level)
    btt = default_btt(md.coef_names, md.formula.has_intercept)
    QM, QM_df, QMp = omnibus_test(core.beta, core.vcov, btt, ddf)
    if same_as is not None:
        QE, QE_df, QEp = same_as.QE, same_as.QE_df, same_as.QEp
    elif spec.rho is None:
        QE, QE_df, QEp = qe_test(md.y, md.v, md.X)
    else:
        QE, QE_df, QEp = qe_test_blocks(md.y, md.X, core.problem)
    n_est = int(np.sum(~core.fixed))
    fs = fit_statistics(core.ll, spec.method, k, p, n_est, md.v)
    return MetaResults(
        data=md,
        core=core,
        spec=spec,
        level_names=level_names(md.random),
        tests=ct,
        btt=btt,
        QM=QM,
        QM_df=QM_df,
        QMp=QMp,
        QE=QE,
        QE_df=QE_df,
        QEp=QEp,
        fitstats=fs,
    )
