"""The correlated and hierarchical effects (CHE) working model and its sensitivity to rho.

CHE (Pustejovsky & Tipton 2022): the multilevel model plus correlated sampling errors within
studies, V_c[i, j] = rho sqrt(v_i v_j), because effect sizes computed on the same participants
are correlated and that correlation is rarely reported. Fit one with
``rma_mv(..., rho=0.6)``; :func:`rho_sweep` refits over a grid of assumed correlations and
tabulates how the estimate, its CI and the variance components move, which is how the
sensitivity to the unknown rho is usually reported. Each refit is linear in k (dense
per-cluster blocks) and warm-started from the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = ["rho_sweep", "vcalc"]

DEFAULT_RHOS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)


def vcalc(vi, cluster, rho: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blocks (rows, V_c) of the sampling covariance with constant within-cluster correlation.

    V_c[i, j] = rho sqrt(v_i v_j) for i != j in the same cluster, V_c[i, i] = v_i — metafor's
    ``vcalc(vi, cluster, obs, rho)`` with distinct ``obs`` and clubSandwich's
    ``impute_covariance_matrix(vi, cluster, r = rho)``. Returned per cluster (sorted ids),
    never as a k x k matrix.
    """
    from mlmeta.core.dense import constant_rho_blocks

    v = np.asarray(vi, dtype=float)
    if not (-1.0 < float(rho) < 1.0):
        raise InputError(f"rho must be strictly between -1 and 1; got {rho!r}")
    _, codes = np.unique(np.asarray(cluster), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
    rows = np.split(order, starts[1:])
    return list(zip(rows, constant_rho_blocks(v, rows, codes, float(rho))))


def rho_sweep(
    res, rhos: Sequence[float] = DEFAULT_RHOS, rho_cluster: str | None = None, progress=None
) -> pd.DataFrame:
    """Refit ``res``'s model under the CHE working model for each rho in ``rhos``.

    Returns one row per rho: rho, beta (first coefficient for moderator models: all in
    columns named by coefficient), se, ci_lb, ci_ub, and sigma2 per level (``sigma2_<level>``).
    """
    rc = rho_cluster or res.rho_cluster or res.spec.cluster
    rows = []
    start = res.core.sigma2
    for i, r in enumerate(rhos):
        f = res.refit(rho=float(r), rho_cluster=rc, start=start)
        start = f.core.sigma2
        row = {"rho": float(r)}
        if f.p == 1:
            row.update(
                beta=float(f.core.beta[0]),
                se=float(f.tests.se[0]),
                ci_lb=float(f.tests.ci_lb[0]),
                ci_ub=float(f.tests.ci_ub[0]),
                pval=float(f.tests.pval[0]),
            )
        else:
            for j, n in enumerate(f.coef_names):
                row[n] = float(f.core.beta[j])
                row[f"se[{n}]"] = float(f.tests.se[j])
        for j, n in enumerate(f.level_names):
            row[f"sigma2_{n}"] = float(f.core.sigma2[j])
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(rhos))
    return pd.DataFrame(rows)
