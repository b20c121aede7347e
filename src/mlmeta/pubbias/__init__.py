"""Publication bias and small-study effects.

* :mod:`.egger` — multilevel Egger test (model-based and CR2), PET-PEESE, funnel data;
* :mod:`.aggregated` — tests on study-aggregated effects: rank test, trim-and-fill and the
  three-parameter selection model.
"""

from importlib import import_module

__all__ = ["egger", "pet_peese", "funnel_data", "aggregated_bias"]

_WHERE = {"egger": "egger", "pet_peese": "egger", "funnel_data": "egger",
          "aggregated_bias": "aggregated"}


def __getattr__(name: str):
    mod = import_module(f"mlmeta.pubbias.{_WHERE.get(name, 'aggregated')}")
    try:
        return getattr(mod, name)
    except AttributeError:
        raise AttributeError(f"module 'mlmeta.pubbias' has no attribute {name!r}") from None
