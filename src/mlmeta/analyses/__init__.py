"""Analyses of a fitted model: each takes a results object, refits through ``res.refit`` when
it needs another model, and returns a new object or a dict.

:mod:`.heterogeneity` (I², R²), :mod:`.lrt` (likelihood-ratio tests, anova), :mod:`.profile`
(profile-likelihood CIs), :mod:`.influence` (residuals, leave-one-out, Cook's distances),
:mod:`.robust` (cluster-robust inference), :mod:`.che` (correlated sampling errors, ρ sweep),
:mod:`.diagnostics` (is the fit trustworthy), :mod:`.cwb` (cluster wild bootstrap),
:mod:`.wald` (Wald tests of sets and linear combinations of coefficients, model-based and CR2),
:mod:`.ranef` (BLUPs of the random effects),
:mod:`.blocks` (the optional JSON blocks of ``mlmeta fit --with``).
"""

from importlib import import_module

#: the optional blocks of ``mlmeta fit --json --with`` (computed by :mod:`.blocks`); here, so
#: that the command line can list them without importing numpy
BLOCKS = (
    "I2",
    "R2",
    "profile_ci",
    "lrt_drop",
    "robust_cr2",
    "robust_cr1",
    "egger",
    "loo_cluster",
    "cooks_cluster",
    "rstandard",
    "R2_marginal",
    "hatvalues",
    "ranef",
    "rstudent",
    "dfbetas",
)

_MODULES = {
    "heterogeneity",
    "lrt",
    "profile",
    "influence",
    "robust",
    "che",
    "diagnostics",
    "cwb",
    "blocks",
    "wald",
    "ranef",
}


def __getattr__(name: str):
    if name in _MODULES:
        return import_module(f"mlmeta.analyses.{name}")
    raise AttributeError(f"module 'mlmeta.analyses' has no attribute {name!r}")
