"""mlmeta: multilevel (three-level and deeper) mixed-effects meta-analysis.

The main entry points are loaded on first use, so ``import mlmeta`` stays fast::

    import mlmeta
    res = mlmeta.rma_mv(df, "yi", "vi", random="study/es", test="t", dfs="contain")
    print(res)

``rma_mv``/``fit`` (the estimator), ``escalc`` (effect sizes), ``load_example`` (bundled data),
``anova`` (model comparison), ``rho_sweep`` (CHE sensitivity); subpackages ``analyses``
(heterogeneity, lrt, profile, influence, robust, che, diagnostics), ``pubbias``, ``effects``,
``plots``, ``io``, ``power``, ``sim``.
"""

from __future__ import annotations

from importlib import import_module

from mlmeta._version import __version__
from mlmeta.errors import (
    ConvergenceError,
    DataWarning,
    FitWarning,
    FormulaError,
    InputError,
    MlmetaError,
    MlmetaWarning,
)

_LAZY = {
    "rma_mv": ("mlmeta.model", "rma_mv"),
    "fit": ("mlmeta.model", "fit"),
    "escalc": ("mlmeta.effects", "escalc"),
    "load_example": ("mlmeta.examples", "load_example"),
    "anova": ("mlmeta.analyses.lrt", "anova"),
    "rho_sweep": ("mlmeta.analyses.che", "rho_sweep"),
    "MetaResults": ("mlmeta.results", "MetaResults"),
}
_SUBMODULES = {
    "plots",
    "effects",
    "pubbias",
    "analyses",
    "io",
    "spec",
    "model",
    "results",
    "examples",
    "power",
    "sim",
    "report",
}

__all__ = [
    "__version__",
    "MlmetaError",
    "InputError",
    "FormulaError",
    "ConvergenceError",
    "MlmetaWarning",
    "DataWarning",
    "FitWarning",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        return getattr(import_module(mod), attr)
    if name in _SUBMODULES:
        return import_module(f"mlmeta.{name}")
    raise AttributeError(f"module 'mlmeta' has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | _SUBMODULES)
