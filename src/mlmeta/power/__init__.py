"""Power analysis for meta-analysis of dependent effect sizes (POMADE's approximations).

Vembye, M. H., Pustejovsky, J. E., & Pigott, T. D. (2023). Power approximations for overall
average effects in meta-analysis with dependent effect sizes. *Journal of Educational and
Behavioral Statistics*, 48(1), 70-102. doi:10.3102/10769986221127379 (with its corrigendum for
the CE-RVE model); Hedges, L. V., & Pigott, T. D. (2001), *Psychological Methods*, 6(3),
203-217. Numbers agree with the R package POMADE.

    from mlmeta import power as pw
    pw.power(J=27, mu=-0.12, tau=0.08, omega=0.05, rho=0.6, sigma2=1/127, k=1.8).power
    pw.mdes(J=27, ...).mdes ; pw.min_studies(mu=-0.12, ...).studies
    pw.power_curve(J=range(10, 61, 5), mu=[0.1, 0.2], tau=[0.05, 0.1], omega=0.05, ...)

Entry points are loaded on first use (``mlmeta power --help`` imports no numpy or scipy):
:func:`power`, :func:`mdes`, :func:`min_studies`, :func:`power_curve` and their result classes
(:mod:`mlmeta.power.api`), the formulas (:mod:`mlmeta.power.analytic`), plots
(:mod:`mlmeta.power.plots`), the report section (:mod:`mlmeta.power.report`) and the command
line (:mod:`mlmeta.power.cli`).
"""

from __future__ import annotations

from importlib import import_module

__all__ = [
    "MdesResult",
    "PowerResult",
    "StudiesResult",
    "mdes",
    "min_studies",
    "power",
    "power_curve",
    "power_curve_plot",
    "power_section",
    "traffic_light_plot",
]

_LAZY = {
    "power": "mlmeta.power.api",
    "mdes": "mlmeta.power.api",
    "min_studies": "mlmeta.power.api",
    "power_curve": "mlmeta.power.api",
    "PowerResult": "mlmeta.power.api",
    "MdesResult": "mlmeta.power.api",
    "StudiesResult": "mlmeta.power.api",
    "power_curve_plot": "mlmeta.power.plots",
    "traffic_light_plot": "mlmeta.power.plots",
    "power_section": "mlmeta.power.report",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlmeta.power' has no attribute {name!r}")


def __dir__():
    return sorted(set(__all__) | {"analytic", "api", "plots", "report", "cli"})
