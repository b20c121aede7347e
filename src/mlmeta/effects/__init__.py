"""Effect sizes and their sampling variances (metafor's ``escalc``), back-transformations and
conversions between effect-size metrics.

* :func:`escalc` (:mod:`.compute`) computes ``yi``/``vi`` for every measure in the registry
  (:mod:`.registry`: names, inputs, variance types, scales, back-transformations), with the
  definitions, argument names and defaults of R's ``metafor::escalc`` (3.8-1). One module per
  family holds the formulas: :mod:`.correlation` (COR, ZCOR, PCOR, ZPCOR, SPCOR),
  :mod:`.continuous` (MD, SMD, SMDH, ROM), :mod:`.prepost` (MC, SMCC, SMCR, SMCRH),
  :mod:`.binary` (OR, RR, RD, PETO), :mod:`.proportion` (PR, PLN, PLO, PAS).
* :mod:`.transforms`: :func:`ztor`, :func:`rtoz`, :func:`ztor_int`, :func:`ilogit`,
  :func:`iarcsin` (the back-transformations measures name).
* :mod:`.conversions`: :func:`r_from_t`, :func:`r_from_f`, :func:`r_from_d`, :func:`d_from_r`,
  :func:`logor_from_d`, :func:`d_from_logor` and :func:`convert` (estimates and variances between
  d, r and log OR; Borenstein et al. 2009, ch. 7).

Names are loaded on first use; :mod:`.registry` needs neither numpy nor scipy, so the command line
can list the measures cheaply.

References
----------
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). *Introduction to
meta-analysis*. Wiley. (Chapters 4-7.)
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software, 36*(3), 1-48. (``escalc`` and ``transf`` help pages of metafor 3.8-1.)
"""

from importlib import import_module

_WHERE = {
    "escalc": ("compute", "escalc"),
    "MEASURES": ("registry", "MEASURES"),
    "Measure": ("registry", "Measure"),
    "get_measure": ("registry", "get"),
    "register_measure": ("registry", "register"),
    "measure_names": ("registry", "names"),
    "ztor": ("transforms", "ztor"),
    "rtoz": ("transforms", "rtoz"),
    "ztor_int": ("transforms", "ztor_int"),
    "ilogit": ("transforms", "ilogit"),
    "iarcsin": ("transforms", "iarcsin"),
    "r_from_t": ("conversions", "r_from_t"),
    "r_from_f": ("conversions", "r_from_f"),
    "r_from_d": ("conversions", "r_from_d"),
    "d_from_r": ("conversions", "d_from_r"),
    "logor_from_d": ("conversions", "logor_from_d"),
    "d_from_logor": ("conversions", "d_from_logor"),
    "convert": ("conversions", "convert"),
}
_MODULES = (
    "arrays",
    "binary",
    "compute",
    "continuous",
    "conversions",
    "correlation",
    "inputs",
    "prepost",
    "proportion",
    "registry",
    "rmath",
    "transforms",
)

__all__ = [
    "MEASURES",
    "Measure",
    "convert",
    "d_from_logor",
    "d_from_r",
    "escalc",
    "get_measure",
    "iarcsin",
    "ilogit",
    "logor_from_d",
    "measure_names",
    "r_from_d",
    "r_from_f",
    "r_from_t",
    "register_measure",
    "rtoz",
    "ztor",
    "ztor_int",
]


def __getattr__(name: str):
    if name in _WHERE:
        mod, attr = _WHERE[name]
        return getattr(import_module(f"mlmeta.effects.{mod}"), attr)
    if name in _MODULES:
        return import_module(f"mlmeta.effects.{name}")
    raise AttributeError(f"module 'mlmeta.effects' has no attribute {name!r}")


def __dir__():
    return sorted(set(_WHERE) | set(_MODULES))
