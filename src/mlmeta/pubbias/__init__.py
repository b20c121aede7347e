"""Publication bias and small-study effects.

Modules, one method each:

* :mod:`.egger` — multilevel Egger test (model-based and CR2), PET-PEESE, funnel data;
* :mod:`.aggregation` — study-aggregated effects under a working within-study correlation rho;
* :mod:`.univariate` — the two-level random-effects model fitted to them (``rma_uni``);
* :mod:`.rank` — Begg & Mazumdar's rank correlation test (``ranktest``);
* :mod:`.trim_fill` — Duval & Tweedie's trim-and-fill (``trimfill``);
* :mod:`.selection` — step-function selection models (``selmodel_stepfun``, 3PSM);
* :mod:`.regression` — Egger's regression test on independent (aggregated) estimates
  (``regtest``, metafor's ``regtest``), also with sample-size predictors;
* :mod:`.aggregated` — ``aggregated_bias``: all of the above on a fitted multilevel model.

Every public function is available as ``mlmeta.pubbias.<name>`` (loaded on first use). The
name ``egger`` is the module :mod:`mlmeta.pubbias.egger`; its test is
``mlmeta.pubbias.egger.egger``.
"""

from importlib import import_module

_WHERE = {
    "EggerResult": "egger",
    "aggregate": "aggregation",
    "aggregated_bias": "aggregated",
    "effective_n": "egger",
    "funnel_data": "egger",
    "pet_peese": "egger",
    "ranktest": "rank",
    "regtest": "regression",
    "rma_uni": "univariate",
    "selmodel_stepfun": "selection",
    "trimfill": "trim_fill",
}
_MODULES = (
    "aggregated",
    "aggregation",
    "egger",
    "rank",
    "regression",
    "selection",
    "trim_fill",
    "univariate",
)

__all__ = [
    "EggerResult",
    "aggregate",
    "aggregated_bias",
    "effective_n",
    "egger",
    "funnel_data",
    "pet_peese",
    "ranktest",
    "regtest",
    "rma_uni",
    "selmodel_stepfun",
    "trimfill",
]


def __getattr__(name: str):
    if name in _MODULES:
        return import_module(f"mlmeta.pubbias.{name}")
    if name in _WHERE:
        return getattr(import_module(f"mlmeta.pubbias.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mlmeta.pubbias' has no attribute {name!r}")


def __dir__():
    return sorted(set(_WHERE) | set(_MODULES))
