"""The registry of effect-size measures: names, inputs, variance types and scales.

This module is pure Python (no numpy, no scipy), so that the command line and the analysis-file
parser can list the measures and their columns without loading the numerical code. Each
:class:`Measure` names the function that computes ``yi`` and ``vi``
(``"module:function"``, imported on first use); that function's docstring holds the formulas
and references.

Arguments and measure names are metafor's (``escalc``, version 3.8-1):

====================  ==========================================================================
argument              meaning
====================  ==========================================================================
``ai bi ci di``       2x2 table: events / non-events in group 1 (ai, bi) and group 2 (ci, di)
``n1i n2i``           group sizes
``m1i m2i``           means (group 1 / 2; for pre-post designs: time 1 / time 2)
``sd1i sd2i``         standard deviations
``ri``                correlation (raw correlation; pre-post correlation for SMCC/SMCR)
``ni``                sample size
``xi mi``             proportions: number of events / non-events (PR, PLN, PLO, PAS)
``ti``                t statistic (PCOR, ZPCOR, SPCOR; optional for SMD)
``mi``                number of predictors in the regression model (PCOR, ZPCOR, SPCOR)
``r2i``               R^2 of the regression model (SPCOR)
``di``                for SMD only (optional): the uncorrected standardized mean difference
====================  ==========================================================================

A measure can be added at run time with :func:`register`; :func:`mlmeta.escalc` then accepts it.
"""

from __future__ import annotations

import importlib
from itertools import product

TYPE_CHECKING = False  # no typing import at run time: ``mlmeta --help`` imports this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "ALL_ARGS",
    "MEASURES",
    "Measure",
    "forms",
    "get",
    "names",
    "register",
]

Slot = tuple[tuple[str, ...], ...]


class Measure:
    """One effect-size measure: what it needs, how it is computed and how it is reported.

    Attributes
    ----------
    name : str
        metafor's name of the measure (``"SMD"``, ``"ZCOR"``, ...).
    family : str
        ``"correlation"``, ``"continuous"`` (two groups), ``"prepost"``, ``"binary"`` (2x2
        tables) or ``"proportion"``.
    title : str
        One-line description.
    args : tuple of str
        Every argument the measure accepts, in metafor's order.
    slots : tuple
        What a row needs: each slot is a tuple of alternatives, each alternative a tuple of
        arguments that together fill the slot (e.g. ``(("bi",), ("n1i",))``: bi, or n1i from
        which bi = n1i - ai). A row can use different alternatives of a slot.
    compute : str or callable
        ``"module:function"`` (or the function) computing ``(yi, vi)`` from a
        :class:`mlmeta.effects.inputs.Inputs`; its docstring gives the formulas.
    vtypes : tuple of str
        Sampling-variance types (metafor's ``vtype``); ``"LS"`` is the default of every measure.
    scale : str
        Label of the scale of ``yi`` (e.g. ``"log odds ratio"``).
    transf : str
        Name of the back-transformation (see :data:`mlmeta.effects.transforms.TRANSFORMS`):
        ``"none"``, ``"ztor"``, ``"exp"``, ``"ilogit"``, ``"iarcsin"``.
    transf_scale : str
        Label of the back-transformed scale (e.g. ``"odds ratio"``).
    zero_cells : bool
        Whether ``add``/``to`` (continuity correction of zero cells) apply; ``drop00`` applies
        to the 2x2-table measures.
    default_add : float
        ``add`` when it is not given (metafor: 1/2; 0 for PAS).
    two_group : bool
        Whether the measure compares two independent groups (sizes ``n1i``, ``n2i``), so that
        the effective sample size is ``n1 n2 / (n1 + n2)``.
    references : tuple of str
        Short references (author, year) for the formulas.
    """

    _FIELDS = (
        "name",
        "family",
        "title",
        "args",
        "slots",
        "compute",
        "vtypes",
        "scale",
        "transf",
        "transf_scale",
        "zero_cells",
        "default_add",
        "two_group",
        "references",
    )
    __slots__ = _FIELDS
    name: str
    family: str
    title: str
    args: tuple[str, ...]
    slots: tuple[Slot, ...]
    compute: str | Callable[..., Any]
    vtypes: tuple[str, ...]
    scale: str
    transf: str
    transf_scale: str
    zero_cells: bool
    default_add: float
    two_group: bool
    references: tuple[str, ...]

    # a plain class rather than a dataclass: importing dataclasses (and inspect) would slow
    # down ``mlmeta --help``, which lists the measures
    def __init__(
        self,
        name: str,
        family: str,
        title: str,
        args: tuple[str, ...],
        slots: tuple[Slot, ...],
        compute: str | Callable[..., Any],
        vtypes: tuple[str, ...] = ("LS",),
        scale: str = "",
        transf: str = "none",
        transf_scale: str = "",
        zero_cells: bool = False,
        default_add: float = 0.5,
        two_group: bool = False,
        references: tuple[str, ...] = (),
    ) -> None:
        values = (
            name,
            family,
            title,
            tuple(args),
            tuple(slots),
            compute,
            tuple(vtypes),
            scale,
            transf,
            transf_scale,
            bool(zero_cells),
            float(default_add),
            bool(two_group),
            tuple(references),
        )
        for attr, value in zip(self._FIELDS, values, strict=True):
            object.__setattr__(self, attr, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Measure is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        return (
            f"Measure({self.name!r}, {self.family!r}, args={self.args!r}, "
            f"vtypes={self.vtypes!r}, scale={self.scale!r}, transf={self.transf!r})"
        )

    @property
    def function(self) -> Callable[..., Any]:
        """The function computing ``(yi, vi)`` (imported on first use)."""
        if callable(self.compute):
            return self.compute
        mod, _, attr = self.compute.partition(":")
        return getattr(importlib.import_module(mod), attr)

    @property
    def doc(self) -> str:
        """Formulas and references: the docstring of :attr:`function`."""
        return self.function.__doc__ or ""

    def back_transform(self, x: Any, **kwargs: Any) -> Any:
        """``x`` (on the scale of yi) on the reported scale: :attr:`transf` applied."""
        from mlmeta.effects.transforms import TRANSFORMS

        return TRANSFORMS[self.transf](x, **kwargs)


_REGISTRY: dict[str, Measure] = {}

#: every argument name escalc knows, in metafor's order
ALL_ARGS: tuple[str, ...] = (
    "ai",
    "bi",
    "ci",
    "di",
    "n1i",
    "n2i",
    "m1i",
    "m2i",
    "sd1i",
    "sd2i",
    "xi",
    "mi",
    "ri",
    "ti",
    "r2i",
    "ni",
)


def register(measure: Measure, *, replace: bool = False) -> Measure:
    """Add ``measure`` to the registry (``replace=True`` to overwrite a measure of that name).

    Raises
    ------
    ValueError
        If the name is taken (and not ``replace``), or the measure uses an argument that
        :func:`mlmeta.escalc` does not have, or a slot argument is not in ``args``.
    """
    if measure.name in _REGISTRY and not replace:
        raise ValueError(f"measure {measure.name!r} is already registered")
    unknown = [a for a in measure.args if a not in ALL_ARGS]
    if unknown:
        raise ValueError(
            f"measure {measure.name!r}: unknown argument(s) {unknown}; escalc "
            f"knows {', '.join(ALL_ARGS)}"
        )
    for slot in measure.slots:
        for alt in slot:
            for a in alt:
                if a not in measure.args:
                    raise ValueError(
                        f"measure {measure.name!r}: slot argument {a!r} is not in args"
                    )
    if "LS" not in measure.vtypes:
        raise ValueError(f"measure {measure.name!r}: vtypes must include 'LS' (the default)")
    _REGISTRY[measure.name] = measure
    return measure


def get(name: str) -> Measure:
    """The registered measure called ``name`` (KeyError if there is none)."""
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    """Names of all registered measures, sorted."""
    return tuple(sorted(_REGISTRY))


def forms(name: str) -> tuple[tuple[str, ...], ...]:
    """Complete sets of arguments that define measure ``name`` (one alternative per slot).

    Arguments in metafor's order, the main form first: ``forms("OR")`` gives
    ``("ai", "bi", "ci", "di")``, ``("ai", "bi", "ci", "n2i")``, ``("ai", "ci", "di", "n1i")``,
    ``("ai", "ci", "n1i", "n2i")``.
    """
    m = _REGISTRY[name]
    out = []
    for combo in product(*m.slots):
        args: list[str] = []
        for alt in combo:
            args += [a for a in alt if a not in args]
        out.append(tuple(sorted(args, key=m.args.index)))
    return tuple(out)


# ------------------------------------------------------------------------------ built-in
_TWO_GROUP_MEANS = ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")
_MEANS_SLOTS: tuple[Slot, ...] = tuple(((a,),) for a in _TWO_GROUP_MEANS)
_TABLE = ("ai", "bi", "ci", "di", "n1i", "n2i")
_TABLE_SLOTS: tuple[Slot, ...] = ((("ai",),), (("ci",),), (("bi",), ("n1i",)), (("di",), ("n2i",)))
_PREPOST = ("m1i", "sd1i", "m2i", "sd2i", "ni", "ri")
_PROP = ("xi", "mi", "ni")
_PROP_SLOTS: tuple[Slot, ...] = ((("xi",),), (("mi",), ("ni",)))
_C = "mlmeta.effects.correlation:"
_G = "mlmeta.effects.continuous:"
_P = "mlmeta.effects.prepost:"
_B = "mlmeta.effects.binary:"
_Q = "mlmeta.effects.proportion:"
_METAFOR = "Viechtbauer 2010 (metafor's escalc)"

_BUILTIN = (
    # correlations
    Measure(
        "COR",
        "correlation",
        "raw (Pearson product-moment) correlation",
        ("ri", "ni"),
        ((("ri",),), (("ni",),)),
        _C + "cor",
        ("LS", "AV"),
        "correlation",
        references=("Olkin & Pratt 1958", _METAFOR),
    ),
    Measure(
        "ZCOR",
        "correlation",
        "Fisher's r-to-z transformed correlation",
        ("ri", "ni"),
        ((("ri",),), (("ni",),)),
        _C + "zcor",
        ("LS",),
        "Fisher's z",
        "ztor",
        "correlation",
        references=("Fisher 1921", _METAFOR),
    ),
    Measure(
        "PCOR",
        "correlation",
        "partial correlation (from the t test of a regression coefficient)",
        ("ti", "ni", "mi"),
        ((("ti",),), (("ni",),), (("mi",),)),
        _C + "pcor",
        ("LS", "AV"),
        "partial correlation",
        references=("Olkin & Finn 1995", "Aloe & Thompson 2013", _METAFOR),
    ),
    Measure(
        "ZPCOR",
        "correlation",
        "Fisher's r-to-z transformed partial correlation",
        ("ti", "ni", "mi"),
        ((("ti",),), (("ni",),), (("mi",),)),
        _C + "zpcor",
        ("LS",),
        "Fisher's z (partial correlation)",
        "ztor",
        "partial correlation",
        references=("Olkin & Finn 1995", _METAFOR),
    ),
    Measure(
        "SPCOR",
        "correlation",
        "semi-partial correlation",
        ("ti", "ni", "mi", "r2i"),
        ((("ti",),), (("ni",),), (("mi",),), (("r2i",),)),
        _C + "spcor",
        ("LS", "AV"),
        "semi-partial correlation",
        references=("Aloe & Becker 2012", _METAFOR),
    ),
    # two independent groups, continuous outcome
    Measure(
        "MD",
        "continuous",
        "raw mean difference",
        _TWO_GROUP_MEANS,
        _MEANS_SLOTS,
        _G + "md",
        ("LS", "UB", "HO"),
        "mean difference",
        two_group=True,
        references=("Borenstein et al. 2009, ch. 4", _METAFOR),
    ),
    Measure(
        "SMD",
        "continuous",
        "standardized mean difference (Hedges' g, exact bias correction)",
        (*_TWO_GROUP_MEANS, "di", "ti"),
        ((("n1i",),), (("n2i",),), (("m1i", "sd1i", "m2i", "sd2i"), ("di",), ("ti",))),
        _G + "smd",
        ("LS", "UB", "LS2", "AV"),
        "standardized mean difference",
        two_group=True,
        references=(
            "Hedges 1981",
            "Hedges & Olkin 1985",
            "Borenstein et al. 2009, ch. 4",
            _METAFOR,
        ),
    ),
    Measure(
        "SMDH",
        "continuous",
        "standardized mean difference with heteroscedastic population variances",
        _TWO_GROUP_MEANS,
        _MEANS_SLOTS,
        _G + "smdh",
        ("LS", "LS2"),
        "standardized mean difference",
        two_group=True,
        references=("Bonett 2008", "Bonett 2009", _METAFOR),
    ),
    Measure(
        "ROM",
        "continuous",
        "log transformed ratio of means (response ratio)",
        _TWO_GROUP_MEANS,
        _MEANS_SLOTS,
        _G + "rom",
        ("LS", "HO", "AV", "AVHO"),
        "log ratio of means",
        "exp",
        "ratio of means",
        two_group=True,
        references=("Hedges, Gurevitch & Curtis 1999", "Lajeunesse 2011", _METAFOR),
    ),
    # pre-post (single group measured twice)
    Measure(
        "MC",
        "prepost",
        "raw mean change",
        _PREPOST,
        tuple(((a,),) for a in _PREPOST),
        _P + "mc",
        ("LS",),
        "mean change",
        references=("Becker 1988", _METAFOR),
    ),
    Measure(
        "SMCC",
        "prepost",
        "standardized mean change with change-score standardization",
        _PREPOST,
        tuple(((a,),) for a in _PREPOST),
        _P + "smcc",
        ("LS", "LS2"),
        "standardized mean change",
        references=("Gibbons, Hedeker & Davis 1993", "Becker 1988", "Morris 2000", _METAFOR),
    ),
    Measure(
        "SMCR",
        "prepost",
        "standardized mean change with raw-score standardization",
        ("m1i", "sd1i", "m2i", "ni", "ri"),
        tuple(((a,),) for a in ("m1i", "sd1i", "m2i", "ni", "ri")),
        _P + "smcr",
        ("LS", "LS2"),
        "standardized mean change",
        references=("Becker 1988", "Morris 2000", _METAFOR),
    ),
    Measure(
        "SMCRH",
        "prepost",
        "standardized mean change with raw-score standardization and heteroscedastic variances",
        _PREPOST,
        tuple(((a,),) for a in _PREPOST),
        _P + "smcrh",
        ("LS",),
        "standardized mean change",
        references=("Bonett 2008", _METAFOR),
    ),
    # 2x2 tables
    Measure(
        "OR",
        "binary",
        "log odds ratio",
        _TABLE,
        _TABLE_SLOTS,
        _B + "odds_ratio",
        ("LS",),
        "log odds ratio",
        "exp",
        "odds ratio",
        zero_cells=True,
        two_group=True,
        references=("Woolf 1955", "Borenstein et al. 2009, ch. 5", _METAFOR),
    ),
    Measure(
        "RR",
        "binary",
        "log risk ratio",
        _TABLE,
        _TABLE_SLOTS,
        _B + "risk_ratio",
        ("LS",),
        "log risk ratio",
        "exp",
        "risk ratio",
        zero_cells=True,
        two_group=True,
        references=("Borenstein et al. 2009, ch. 5", _METAFOR),
    ),
    Measure(
        "RD",
        "binary",
        "risk difference",
        _TABLE,
        _TABLE_SLOTS,
        _B + "risk_difference",
        ("LS", "UB", "AV"),
        "risk difference",
        zero_cells=True,
        two_group=True,
        references=("Borenstein et al. 2009, ch. 5", _METAFOR),
    ),
    Measure(
        "PETO",
        "binary",
        "log odds ratio estimated with Peto's method",
        _TABLE,
        _TABLE_SLOTS,
        _B + "peto",
        ("LS",),
        "log odds ratio",
        "exp",
        "odds ratio",
        zero_cells=True,
        two_group=True,
        references=("Yusuf et al. 1985", _METAFOR),
    ),
    # single proportions
    Measure(
        "PR",
        "proportion",
        "raw proportion",
        _PROP,
        _PROP_SLOTS,
        _Q + "pr",
        ("LS", "UB", "AV"),
        "proportion",
        zero_cells=True,
        references=("Borenstein et al. 2009", _METAFOR),
    ),
    Measure(
        "PLN",
        "proportion",
        "log transformed proportion",
        _PROP,
        _PROP_SLOTS,
        _Q + "pln",
        ("LS", "AV"),
        "log proportion",
        "exp",
        "proportion",
        zero_cells=True,
        references=(_METAFOR,),
    ),
    Measure(
        "PLO",
        "proportion",
        "logit transformed proportion (log odds)",
        _PROP,
        _PROP_SLOTS,
        _Q + "plo",
        ("LS", "AV"),
        "log odds",
        "ilogit",
        "proportion",
        zero_cells=True,
        references=("Lipsey & Wilson 2001", _METAFOR),
    ),
    Measure(
        "PAS",
        "proportion",
        "arcsine square root transformed proportion",
        _PROP,
        _PROP_SLOTS,
        _Q + "pas",
        ("LS",),
        "arcsine square root proportion",
        "iarcsin",
        "proportion",
        zero_cells=True,
        default_add=0.0,
        references=("Freeman & Tukey 1950", _METAFOR),
    ),
)
for _m in _BUILTIN:
    register(_m)

#: names of the built-in measures, sorted (``names()`` also lists measures registered later)
MEASURES: tuple[str, ...] = names()
