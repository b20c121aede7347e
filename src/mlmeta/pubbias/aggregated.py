"""Publication-bias checks of a multilevel model on per-cluster aggregated estimates.

The classical small-study / publication-bias methods assume independent estimates. With several
effect sizes per study a common strategy (e.g. Assink & Wibbelink 2016; Iovoli et al. 2024;
metafor's ``aggregate.escalc``) is to

1. aggregate the estimates of each cluster (study) into one, assuming a constant sampling
   correlation ``rho`` within a cluster (:func:`~mlmeta.pubbias.aggregation.aggregate`),
2. fit the two-level random-effects model to the aggregated estimates
   (:func:`~mlmeta.pubbias.univariate.rma_uni`), and
3. run the independent-effects methods on them: Begg & Mazumdar's rank correlation test
   (:func:`~mlmeta.pubbias.rank.ranktest`), Duval & Tweedie's trim-and-fill
   (:func:`~mlmeta.pubbias.trim_fill.trimfill`) and the Vevea & Hedges step-function selection
   model (:func:`~mlmeta.pubbias.selection.selmodel_stepfun`), and Egger's regression test
   (:func:`~mlmeta.pubbias.regression.regtest`: metafor's ``regtest`` of that model).

:func:`aggregated_bias` does all of them for a fitted multilevel model. Every function
reproduces what R's metafor 3.8-1 computes (``aggregate.escalc``, ``rma``, ``ranktest``,
``trimfill.rma.uni``, ``selmodel.rma.uni`` with ``type = "stepfun"``); the differences are in
the optimisers' stopping rules, which here are tight by default (see ``threshold``) so that the
numbers are the actual (restricted) maximum-likelihood estimates.

References
----------
Assink, M., & Wibbelink, C. J. M. (2016). Fitting three-level meta-analytic models in R: A
step-by-step tutorial. *The Quantitative Methods for Psychology, 12*, 154-174.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlmeta.pubbias.aggregation import aggregate
from mlmeta.pubbias.rank import ranktest
from mlmeta.pubbias.regression import regtest
from mlmeta.pubbias.selection import selmodel_stepfun
from mlmeta.pubbias.trim_fill import trimfill
from mlmeta.pubbias.univariate import rma_uni

__all__ = ["aggregated_bias"]


def aggregated_bias(
    res,
    rho: float = 0.5,
    *,
    steps: Sequence[float] = (0.025, 1.0),
    alternative: str = "greater",
    level: float = 95,
    threshold: float = 1e-10,
    cluster: str | None = None,
) -> dict:
    r"""Publication-bias checks of a multilevel model on per-cluster aggregated estimates.

    The estimates of ``res`` (``res.data.y``, ``res.data.v``) are aggregated within the
    clusters of its outer random level with within-cluster sampling correlation ``rho``
    (:func:`aggregate`); the two-level random-effects model is fitted to the aggregates by REML
    (:func:`rma_uni`), and on them are run: the rank correlation test (:func:`ranktest`),
    trim-and-fill (:func:`trimfill`, L0, REML) and the step-function selection model
    (:func:`selmodel_stepfun`, refitted by ML as metafor's ``selmodel(rma(yi, vi, data=agg),
    type = "stepfun", steps = steps)`` does), and Egger's regression test (:func:`regtest`:
    the REML random-effects model of the aggregates with their standard error as moderator,
    z test of its coefficient; metafor's ``regtest(rma(yi, vi, data = agg))``). Moderators of
    ``res`` are ignored: the methods concern the overall effect.

    The clusters are ``res.cluster_codes(cluster)``: by default the outer random level of a
    nested model, or for a model with general structures
    (:class:`mlmeta.structures.StructuredResults`) its default cluster (the outer factor that
    contains every random effect; crossed terms have none, so ``cluster=`` names the column,
    e.g. the study). The aggregation uses only ``y``, ``v`` (the diagonal of a known ``V``) and
    ``rho``, as metafor's ``aggregate(dat, cluster = ..., rho = rho)``.

    Parameters
    ----------
    res : mlmeta.results.MetaResults
        A fitted model with at least one random level (its outer level defines the clusters).
    rho : float
        Assumed within-cluster sampling correlation (results are usually reported for a few
        values, e.g. 0.5 and 0.8).
    steps : sequence of float
        Cut-points of the selection model's step function.
    alternative : {"greater", "less", "two.sided", "auto"}
        Side of the one-sided p-values of the selection model: "greater" (metafor's default)
        assumes selection favours significant positive effects, "less" negative ones; "auto"
        takes the side of the pooled estimate of the aggregated effects ("less" when it is
        negative), i.e. selection favouring the direction the data show.
    level : float
        Confidence level in percent.
    threshold : float
        Fisher-scoring threshold of the model fits (see :func:`rma_uni`).
    cluster : str, optional
        Column of the clusters to aggregate within (default: see above).

    Returns
    -------
    dict
        ``aggregate`` (DataFrame: cluster, yi, vi), ``rma_agg`` (beta, se, zval, pval, ci_lb,
        ci_ub, tau2, ...), ``ranktest``, ``trimfill``, ``selmodel`` (the dicts of the
        functions above; ``selmodel["alternative"]`` is the side used), ``regtest`` (coef and
        se of the standard error, zval, pval, and the limit estimate est with ci_lb, ci_ub),
        and ``rho``.
    """
    codes, labels = res.cluster_codes(cluster)
    # codes are 0..C-1 in the order of the sorted labels, so the aggregated rows line up
    agg = aggregate(res.data.y, res.data.v, codes, rho)
    agg["cluster"] = labels
    y, v = agg["yi"].to_numpy(), agg["vi"].to_numpy()
    fit = rma_uni(y, v, "REML", level=level, threshold=threshold)
    alt = str(alternative).lower()
    if alt == "auto":
        alt = "less" if fit["beta"] < 0 else "greater"
    return {
        "rho": float(rho),
        "aggregate": agg,
        "rma_agg": fit,
        "ranktest": ranktest(y, v),
        "trimfill": trimfill(y, v, method="REML", level=level, threshold=threshold),
        "selmodel": selmodel_stepfun(
            y, v, steps, method="REML", alternative=alt, level=level, threshold=threshold
        ),
        "regtest": regtest(y, v, "sei", method="REML", level=level, threshold=threshold),
    }
