"""Egger's regression test for independent estimates (metafor's ``regtest`` with ``model="rma"``).

Used on study-aggregated estimates (:func:`~mlmeta.pubbias.aggregation.aggregate`): the
classical small-study test, next to the multilevel one of :mod:`.egger`.

References
----------
Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected
by a simple, graphical test. *BMJ, 315*, 629-634.
Sterne, J. A. C., & Egger, M. (2005). Regression methods to detect publication and other bias in
meta-analysis. In H. R. Rothstein, A. J. Sutton, & M. Borenstein (Eds.), *Publication bias in
meta-analysis* (pp. 99-110). Wiley.
Knapp, G., & Hartung, J. (2003). Improved tests for a random effects meta-regression with a single
covariate. *Statistics in Medicine, 22*, 2693-2710.
Pustejovsky, J. E., & Rodgers, M. A. (2019). Testing for funnel plot asymmetry of standardized
mean differences. *Research Synthesis Methods, 10*, 57-71.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.special import ndtr

from mlmeta.errors import InputError
from mlmeta.pubbias import univariate as uni
from mlmeta.pubbias._checks import as_yv, check_method, z_crit

__all__ = ["PREDICTORS", "regtest"]

#: metafor's predictors: the standard error, the variance, the sample size and its transforms
PREDICTORS = ("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")
_TESTS = ("z", "t", "knha")


def regtest(
    yi,
    vi,
    predictor: str = "sei",
    *,
    ni=None,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    threshold: float = 1e-10,
) -> dict:
    r"""Regression test for funnel-plot asymmetry (Egger et al. 1997), metafor's ``regtest``.

    The random-effects meta-regression (metafor's ``rma(yi, vi, mods = ~ predictor)``)

    .. math:: y_i = \beta_0 + \beta_1 x_i + u_i + e_i, \qquad
              u_i \sim N(0, \tau^2), \ e_i \sim N(0, v_i),

    is fitted with ``method`` (see :func:`~mlmeta.pubbias.univariate.rma_uni`) and
    :math:`H_0: \beta_1 = 0` is tested: :math:`z = \hat\beta_1 / SE(\hat\beta_1)` against
    N(0, 1) (``test="z"``, metafor's default), against :math:`t_{k-2}` (``"t"``), or with the
    Knapp-Hartung variance :math:`s^2 (X'WX)^{-1}`, :math:`s^2 = \sum w_i (y_i - x_i'\hat\beta)^2
    / (k - 2)` and :math:`t_{k-2}` (``"knha"``). The predictor :math:`x_i` is the standard error
    :math:`\sqrt{v_i}` (``"sei"``, the Egger test), :math:`v_i` (``"vi"``), or a function of the
    sample size :math:`n_i` (``"ni"``, ``"ninv"`` = :math:`1/n_i`, ``"sqrtni"``,
    ``"sqrtninv"`` = :math:`1/\sqrt{n_i}`): for standardized mean differences the standard error
    depends on the estimate itself, and :math:`\sqrt{1/\tilde n_i}` with :math:`\tilde n_i =
    n_{1i} n_{2i} / (n_{1i} + n_{2i})` keeps the test's level (Pustejovsky & Rodgers 2019).

    For ``"sei"``, ``"vi"``, ``"ninv"`` and ``"sqrtninv"`` the intercept :math:`\hat\beta_0` is
    the limit estimate (the effect of a study with :math:`x = 0`, i.e. infinite precision:
    PET for ``"sei"``, PEESE for ``"vi"``), reported with its CI.

    Parameters
    ----------
    yi, vi : array_like
        Independent estimates (e.g. aggregated per study) and their sampling variances (> 0).
    predictor : {"sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv"}
    ni : array_like, optional
        Sample sizes (> 0), needed for the sample-size predictors; for two-group designs pass
        the effective :math:`\tilde n_i` (or the total :math:`n_i`, as metafor does).
    method : {"REML", "ML", "DL", "EE", "FE", "CE"}
        Estimator of :math:`\tau^2` (EE/FE/CE: the fixed-effect Egger regression).
    test : {"z", "t", "knha"}
    level : float
        Confidence level (percent) of the limit estimate's CI.
    threshold : float
        Fisher-scoring threshold of the fit (see :func:`~mlmeta.pubbias.univariate.rma_uni`).

    Returns
    -------
    dict
        ``coef`` (:math:`\hat\beta_1`), ``se``, ``zval`` (z or t), ``pval``, ``df`` (None for
        z), ``est``, ``ci_lb``, ``ci_ub`` (the limit estimate, None for ``"ni"``/``"sqrtni"``),
        ``tau2``, ``k``, ``predictor``, ``method``, ``test``.

    Raises
    ------
    InputError
        Unknown predictor or test, ``ni`` missing or not positive, fewer than 3 estimates.
    """
    y, v = as_yv(yi, vi)
    m = check_method(method)
    if predictor not in PREDICTORS:
        raise InputError(
            f"predictor must be one of {', '.join(map(repr, PREDICTORS))}; got {predictor!r}"
        )
    if test not in _TESTS:
        raise InputError(f"test must be one of {', '.join(map(repr, _TESTS))}; got {test!r}")
    k = y.size
    if k < 3:
        raise InputError(f"the regression test needs at least 3 estimates; got {k}")
    if predictor in ("sei", "vi"):
        x = np.sqrt(v) if predictor == "sei" else v
    else:
        if ni is None:
            raise InputError(f"predictor {predictor!r} needs the sample sizes (ni)")
        n = np.asarray(ni, dtype=float).ravel()
        if n.size != k:
            raise InputError(f"ni has {n.size} values but there are {k} estimates")
        bad = ~np.isfinite(n) | (n <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"ni must be finite and > 0; got ni[{i}] = {float(n[i])!r}")
        x = {"ni": n, "ninv": 1 / n, "sqrtni": np.sqrt(n), "sqrtninv": 1 / np.sqrt(n)}[predictor]
    X = np.column_stack([np.ones(k), x])
    if np.linalg.matrix_rank(X) < 2:
        raise InputError(
            f"the predictor {predictor!r} is constant: the model matrix is not of full rank"
        )
    fit = uni.fit_uni(y, v, X, m, threshold, 1000, level)
    beta = np.asarray(fit["beta"], dtype=float)
    vb = np.asarray(fit["vb"], dtype=float)
    df: int | None = None
    if test == "knha":
        w = 1.0 / (v + fit["tau2"])
        s2 = float(np.sum(w * (y - X @ beta) ** 2)) / (k - 2)
        vb = s2 * vb
    se = np.sqrt(np.diag(vb))
    stat = beta / se
    if test == "z":
        pval = 2 * ndtr(-np.abs(stat))
        crit = z_crit(level)
    else:
        df = k - 2
        pval = 2 * stats.t.sf(np.abs(stat), df)
        crit = float(stats.t.ppf(1 - (1 - level / 100) / 2, df))
    limit = predictor in ("sei", "vi", "ninv", "sqrtninv")
    est = float(beta[0]) if limit else None
    return {
        "coef": float(beta[1]),
        "se": float(se[1]),
        "zval": float(stat[1]),
        "pval": float(pval[1]),
        "df": df,
        "est": est,
        "ci_lb": float(beta[0] - crit * se[0]) if limit else None,
        "ci_ub": float(beta[0] + crit * se[0]) if limit else None,
        "tau2": float(fit["tau2"]),
        "k": int(k),
        "predictor": predictor,
        "method": m,
        "test": test,
    }
