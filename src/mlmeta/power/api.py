"""Power, minimum detectable effect and number of studies for meta-analysis of dependent effects.

The public functions :func:`power`, :func:`mdes`, :func:`min_studies` and :func:`power_curve`
follow the R package POMADE (``power_MADE``, ``mdes_MADE``, ``min_studies_MADE``), which
implements

    Vembye, M. H., Pustejovsky, J. E., & Pigott, T. D. (2023). Power approximations for overall
    average effects in meta-analysis with dependent effect sizes. *Journal of Educational and
    Behavioral Statistics*, 48(1), 70-102. doi:10.3102/10769986221127379

with its corrigendum for the CE-RVE model (JEBS 2023, doi:10.3102/10769986231172276), building on
Hedges, L. V., & Pigott, T. D. (2001). The power of statistical tests in meta-analysis.
*Psychological Methods*, 6(3), 203-217. doi:10.1037/1082-989X.6.3.203. The formulas are in
:mod:`mlmeta.power.analytic`.

Arguments use POMADE's names: ``J`` studies, effect of practical concern ``mu``, between-study
SD ``tau``, within-study SD ``omega``, sampling correlation ``rho``, sampling variances
``sigma2`` and effect sizes per study ``k`` (each a number, a sequence of values = an empirical
distribution, or a callable ``f(rng, n)`` drawing n values = a stylised distribution),
working ``model`` (CHE, MLMA, CE) and ``var_df`` (model, satt, rve).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlmeta.errors import InputError
from mlmeta.power import analytic as A

__all__ = [
    "API_NAMES",
    "Inputs",
    "MdesResult",
    "PowerResult",
    "StudiesResult",
    "check_inputs",
    "evaluate_mdes",
    "evaluate_min_studies",
    "evaluate_power",
    "mdes",
    "min_studies",
    "power",
    "power_curve",
]

#: how each input is called in error messages raised by the Python functions
API_NAMES: dict[str, str] = {
    "J": "J",
    "mu": "mu",
    "tau": "tau",
    "omega": "omega",
    "rho": "rho",
    "sigma2": "sigma2",
    "k": "k",
    "model": "model",
    "var_df": "var_df",
    "alpha": "alpha",
    "target_power": "target_power",
    "iterations": "iterations",
    "max_studies": "max_studies",
}
VAR_DF_LABELS = {"model": "Model", "satt": "Model+Satt", "rve": "RVE"}
DEFAULT_MAX_STUDIES = 10_000


# ---------------------------------------------------------------------------------------------
# Validation: every rule once; ``names`` says how the caller calls each input
# ---------------------------------------------------------------------------------------------


def _real(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(float(value))
    ):
        raise InputError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def _in_range(name: str, value: Any, rule: str, ok: Callable[[float], bool]) -> float:
    v = _real(name, value)
    if not ok(v):
        raise InputError(f"{name} must be {rule}; got {value!r}")
    return v


def _choice(name: str, value: Any, allowed: Sequence[str], fold=str.upper) -> str:
    if isinstance(value, str):
        for a in allowed:
            if fold(value) == fold(a):
                return a
        if fold is str.lower and value.lower() in ("model+satt", "model + satt"):
            return "satt"
    raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _values(name: str, value: Any, what: str, minimum: float, strict: bool):
    """A number, an array of values (one a study) or a callable; checked against the rule."""
    rule = f"{'>' if strict else '>='} {minimum:g}"
    if callable(value):
        return _checked_sampler(name, value, what, rule, minimum, strict)
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise InputError(
            f"{name} must be a number or a sequence of numbers ({what} {rule}); got {value!r}"
        )
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(
            f"{name} must be a number or a sequence of numbers ({what} {rule}); got {value!r}"
        ) from None
    if arr.size == 0:
        raise InputError(f"{name} is empty: give at least one {what}")
    bad = ~np.isfinite(arr) | ((arr <= minimum) if strict else (arr < minimum))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = "" if arr.size == 1 else f" (value {i + 1} of {arr.size})"
        raise InputError(f"{name}: {what} must be {rule}{where}; got {float(arr[i])!r}")
    return float(arr[0]) if arr.size == 1 else arr


def _checked_sampler(name, f, what, rule, minimum, strict):
    """A stylised distribution ``f(rng, n)`` whose draws are checked like given values."""

    def draw(rng, n):
        arr = np.asarray(f(rng, n), dtype=float).reshape(-1)
        bad = ~np.isfinite(arr) | ((arr <= minimum) if strict else (arr < minimum))
        if arr.size < n or bad.any():
            got = f"{arr.size} values" if arr.size < n else repr(float(arr[np.flatnonzero(bad)[0]]))
            raise InputError(
                f"{name}: the distribution f(rng, n) must return n = {n} values, "
                f"each a {what} {rule}; got {got}"
            )
        return arr[:n]

    return draw


@dataclass(frozen=True)
class Inputs:
    """Validated inputs of a power calculation (see :func:`check_inputs`)."""

    J: int | None
    mu: float | None
    tau: float
    omega: float
    rho: float
    sigma2: Any
    k: Any
    model: str
    var_df: str
    alpha: float
    target_power: float
    iterations: int
    seed: Any
    fixed_design: bool
    max_studies: int = DEFAULT_MAX_STUDIES
    names: Mapping[str, str] = field(default_factory=lambda: dict(API_NAMES), repr=False)

    def design(self) -> A.Design:
        """The design object that draws (or holds) the studies."""
        return A.Design(
            self.sigma2, self.k, fixed=self.fixed_design, iterations=self.iterations, seed=self.seed
        )


def check_inputs(
    *,
    J=None,
    mu=None,
    tau,
    omega,
    rho,
    sigma2,
    k,
    model="CHE",
    var_df="RVE",
    alpha=0.05,
    target_power=0.8,
    iterations=100,
    seed=None,
    fixed_design=False,
    max_studies=DEFAULT_MAX_STUDIES,
    names: Mapping[str, str] = API_NAMES,
) -> Inputs:
    """Check every input and return them normalised, or raise a one-line :class:`InputError`.

    Rules: J >= 2 after rounding down; mu finite; tau, omega >= 0; 0 <= rho <= 1; sampling
    variances > 0 and effect sizes per study >= 1 (finite; k need not be an integer);
    0 < alpha < 1; 0 < target_power < 1; iterations an integer >= 1; model one of CHE, MLMA, CE;
    var_df one of model, satt, rve (case-insensitive; POMADE's ``Model+Satt`` is ``satt``);
    CE only with rve; a fixed design needs one sigma2 and one k per study (or one value for
    all). ``names`` maps each input to the name used in messages (the command line passes its
    flags).
    """
    n = {**API_NAMES, **dict(names)}
    model = _choice(n["model"], model, A.MODELS)
    var_df = _choice(n["var_df"], var_df, A.VAR_DFS, fold=str.lower)
    if model == "CE" and var_df != "rve":
        raise InputError(
            f"{n['model']} CE (correlated effects) is available only with "
            f"{n['var_df']} rve (robust variance estimation); got {var_df!r}"
        )
    tau = _in_range(n["tau"], tau, ">= 0", lambda v: v >= 0)
    omega = _in_range(n["omega"], omega, ">= 0", lambda v: v >= 0)
    rho = _in_range(n["rho"], rho, "between 0 and 1", lambda v: 0 <= v <= 1)
    alpha = _in_range(n["alpha"], alpha, "strictly between 0 and 1", lambda v: 0 < v < 1)
    target_power = _in_range(
        n["target_power"], target_power, "strictly between 0 and 1", lambda v: 0 < v < 1
    )
    if mu is not None:
        mu = _real(n["mu"], mu)
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise InputError(f"{n['iterations']} must be an integer >= 1; got {iterations!r}")
    if (
        isinstance(max_studies, bool)
        or not isinstance(max_studies, (int, np.integer))
        or max_studies < A.HARD_MIN_STUDIES + 1
    ):
        raise InputError(
            f"{n['max_studies']} must be an integer >= {A.HARD_MIN_STUDIES + 1}; "
            f"got {max_studies!r}"
        )
    sigma2 = _values(n["sigma2"], sigma2, "sampling variance", 0.0, strict=True)
    k = _values(n["k"], k, "number of effect sizes per study", 1.0, strict=False)
    if J is not None:
        jv = _real(n["J"], J)
        if math.floor(jv) < 2:
            raise InputError(
                f"{n['J']} (number of studies) must be at least 2 (a non-integer "
                f"is rounded down); got {J!r}"
            )
        J = math.floor(jv)
    if fixed_design:
        for key, v in (("sigma2", sigma2), ("k", k)):
            if callable(v):
                raise InputError(
                    f"{n[key]}: a fixed design needs the values of its studies, "
                    "not a distribution to draw from"
                )
        sizes = {np.size(v) for v in (sigma2, k) if np.size(v) > 1}
        if len(sizes) > 1:
            raise InputError(
                f"{n['sigma2']} and {n['k']} of a fixed design must have one value "
                f"per study; got {np.size(sigma2)} and {np.size(k)} values"
            )
        if J is None and sizes:
            J = sizes.pop()
        elif sizes and J not in sizes:
            raise InputError(
                f"{n['J']} must equal the number of studies of a fixed design "
                f"({sizes.pop()} values given); got {J!r}"
            )
    return Inputs(
        J=J,
        mu=mu,
        tau=tau,
        omega=omega,
        rho=rho,
        sigma2=sigma2,
        k=k,
        model=model,
        var_df=var_df,
        alpha=alpha,
        target_power=target_power,
        iterations=int(iterations),
        seed=seed,
        fixed_design=bool(fixed_design),
        max_studies=int(max_studies),
        names=n,
    )


def _need(inp: Inputs, key: str, what: str) -> None:
    if getattr(inp, key) is None:
        raise InputError(f"{inp.names[key]} ({what}) is required here")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


def _label(model: str, var_df: str) -> str:
    return f"{model}-{VAR_DF_LABELS[var_df]}"


def _design_text(r) -> str:
    if r.design in ("empirical", "stylised"):
        return f"{r.design} distribution, {r.iterations} iterations"
    return f"{r.design} design"


@dataclass(frozen=True)
class PowerResult:
    """Power of the test of the overall average effect (POMADE's ``power_MADE`` row).

    ``power``, ``df`` and ``var_b`` are means over the iterations for a design drawn from
    distributions, with ``mcse`` the Monte Carlo SE of the mean power (None otherwise).
    ``df`` is the unrounded df (POMADE prints CHE-Model+Satt's rounded to one decimal);
    the ``model`` tests report J - 1.
    """

    power: float
    df: float
    var_b: float
    mcse: float | None
    iterations: int
    J: int
    mu: float
    tau: float
    omega: float
    rho: float
    alpha: float
    model: str
    var_df: str
    design: str

    @property
    def label(self) -> str:
        """POMADE's model label, e.g. ``CHE-RVE``."""
        return _label(self.model, self.var_df)

    def to_dict(self) -> dict:
        """All fields as plain Python values, plus ``label``."""
        return {**asdict(self), "label": self.label}

    def __str__(self) -> str:
        mc = "" if self.mcse is None else f" (Monte Carlo SE {self.mcse:.4f})"
        return (
            f"Power of the test of the overall average effect ({self.label}, "
            f"{_design_text(self)})\n"
            f"  J = {self.J} studies, mu = {self.mu:g}, tau = {self.tau:g}, "
            f"omega = {self.omega:g}, rho = {self.rho:g}, alpha = {self.alpha:g}\n"
            f"  power = {self.power:.4f}{mc}\n"
            f"  df = {self.df:.2f}, var_b = {self.var_b:.6g} (SE {math.sqrt(self.var_b):.4g})"
        )


@dataclass(frozen=True)
class MdesResult:
    """Minimum detectable effect size (POMADE's ``mdes_MADE`` row): the smallest mu whose power
    is ``target_power``; ``power`` is the power at ``mdes`` (equal to the target)."""

    mdes: float
    target_power: float
    power: float
    iterations: int
    J: int
    tau: float
    omega: float
    rho: float
    alpha: float
    model: str
    var_df: str
    design: str

    @property
    def label(self) -> str:
        """POMADE's model label, e.g. ``CHE-RVE``."""
        return _label(self.model, self.var_df)

    def to_dict(self) -> dict:
        """All fields as plain Python values, plus ``label``."""
        return {**asdict(self), "label": self.label}

    def __str__(self) -> str:
        return (
            f"Minimum detectable effect size ({self.label}, {_design_text(self)})\n"
            f"  J = {self.J} studies, tau = {self.tau:g}, omega = {self.omega:g}, "
            f"rho = {self.rho:g}, alpha = {self.alpha:g}\n"
            f"  mdes = {self.mdes:.4f} for power {self.target_power:g}"
        )


@dataclass(frozen=True)
class StudiesResult:
    """Number of studies needed (POMADE's ``min_studies_MADE`` row): the smallest J >= 5 whose
    power reaches ``target_power``; ``power`` is the power at ``studies`` and ``power_below``
    the power at ``studies - 1`` (below the target unless ``studies`` is 5)."""

    studies: int
    target_power: float
    power: float
    power_below: float
    iterations: int
    mu: float
    tau: float
    omega: float
    rho: float
    alpha: float
    model: str
    var_df: str
    design: str

    @property
    def label(self) -> str:
        """POMADE's model label, e.g. ``CHE-RVE``."""
        return _label(self.model, self.var_df)

    def to_dict(self) -> dict:
        """All fields as plain Python values, plus ``label``."""
        return {**asdict(self), "label": self.label}

    def __str__(self) -> str:
        floor = " (never fewer than 5)" if self.studies == A.HARD_MIN_STUDIES else ""
        return (
            f"Number of studies needed ({self.label}, {_design_text(self)})\n"
            f"  mu = {self.mu:g}, tau = {self.tau:g}, omega = {self.omega:g}, "
            f"rho = {self.rho:g}, alpha = {self.alpha:g}\n"
            f"  studies = {self.studies}{floor} for power {self.target_power:g} "
            f"(power {self.power:.4f}; {self.power_below:.4f} with one study fewer)"
        )


# ---------------------------------------------------------------------------------------------
# Evaluation on validated inputs
# ---------------------------------------------------------------------------------------------


def _moments(inp: Inputs, design: A.Design, j: int) -> A.Moments:
    s, k = design.arrays(j)
    return A.moments(s, k, inp.tau, inp.omega, inp.rho, inp.model, inp.var_df)


def evaluate_power(inp: Inputs, design: A.Design | None = None) -> PowerResult:
    """:func:`power` on validated :class:`Inputs` (``design`` reuses draws)."""
    _need(inp, "J", "number of studies")
    _need(inp, "mu", "effect size of practical concern")
    assert inp.J is not None and inp.mu is not None
    design = inp.design() if design is None else design
    m = _moments(inp, design, inp.J)
    p = A.design_power(inp.mu, m, inp.alpha)
    n = p.size
    mcse = float(np.std(p, ddof=1) / math.sqrt(n)) if design.sampled and n > 1 else None
    return PowerResult(
        power=float(np.mean(p)),
        df=float(np.mean(m.df_report)),
        var_b=float(np.mean(m.var_b)),
        mcse=mcse,
        iterations=n,
        J=inp.J,
        mu=inp.mu,
        tau=inp.tau,
        omega=inp.omega,
        rho=inp.rho,
        alpha=inp.alpha,
        model=inp.model,
        var_df=inp.var_df,
        design=design.kind,
    )


def evaluate_mdes(inp: Inputs) -> MdesResult:
    """:func:`mdes` on validated :class:`Inputs`."""
    _need(inp, "J", "number of studies")
    assert inp.J is not None
    design = inp.design()
    m = _moments(inp, design, inp.J)
    p0 = float(np.mean(A.design_power(0.0, m, inp.alpha)))
    if p0 >= inp.target_power:
        raise InputError(
            f"{inp.names['target_power']} must exceed the power at effect 0 "
            f"({p0:.4g}); got {inp.target_power!r}"
        )
    start = A.normal_start_mu(
        design, inp.J, inp.tau, inp.omega, inp.rho, inp.alpha, inp.target_power
    )
    mu = A.solve_mdes(m, inp.alpha, inp.target_power, start)
    p = float(np.mean(A.design_power(mu, m, inp.alpha)))
    return MdesResult(
        mdes=mu,
        target_power=inp.target_power,
        power=p,
        iterations=design.iterations,
        J=inp.J,
        tau=inp.tau,
        omega=inp.omega,
        rho=inp.rho,
        alpha=inp.alpha,
        model=inp.model,
        var_df=inp.var_df,
        design=design.kind,
    )


def evaluate_min_studies(inp: Inputs) -> StudiesResult:
    """:func:`min_studies` on validated :class:`Inputs`."""
    _need(inp, "mu", "effect size of practical concern")
    assert inp.mu is not None
    if inp.fixed_design:
        raise InputError(
            "the number of studies cannot be searched for a fixed design (its "
            "studies are given); draw them from distributions instead"
        )
    if inp.mu == 0:
        raise InputError(
            f"{inp.names['mu']} must be non-zero to find the number of studies "
            "(power at effect 0 does not grow with J); got 0"
        )
    mu = inp.mu
    design = inp.design()

    def power_at(j: int) -> float:
        return float(np.mean(A.design_power(mu, _moments(inp, design, j), inp.alpha)))

    start = A.normal_start_j(design, mu, inp.tau, inp.omega, inp.rho, inp.alpha, inp.target_power)
    j, seen = A.solve_min_studies(power_at, inp.target_power, start, inp.max_studies)
    if j is None:
        raise InputError(
            f"power {seen[inp.max_studies]:.4g} with {inp.names['max_studies']} "
            f"= {inp.max_studies} studies is still below the target "
            f"{inp.target_power:g}; the effect {mu:g} is too small to detect"
        )
    below = seen[j - 1] if (j - 1) in seen else power_at(j - 1)
    return StudiesResult(
        studies=j,
        target_power=inp.target_power,
        power=seen[j],
        power_below=below,
        iterations=design.iterations,
        mu=mu,
        tau=inp.tau,
        omega=inp.omega,
        rho=inp.rho,
        alpha=inp.alpha,
        model=inp.model,
        var_df=inp.var_df,
        design=design.kind,
    )


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------


def power(
    J,
    mu,
    tau,
    omega,
    rho,
    sigma2,
    k,
    *,
    model: str = "CHE",
    var_df: str = "RVE",
    alpha: float = 0.05,
    iterations: int = 100,
    seed=None,
    fixed_design: bool = False,
) -> PowerResult:
    """Power of the two-sided test of the overall average effect with dependent effect sizes.

    Vembye, Pustejovsky & Pigott (2023), JEBS, doi:10.3102/10769986221127379 (and its
    corrigendum for CE-RVE); POMADE's ``power_MADE``. With weights w_j of the working model
    (CHE: eq. 6; MLMA: eq. 21 with KL-closest tau~, omega~; CE: corrigendum eq. 17),
    lambda = mu / sqrt(var_b) and power = P(T < -c) + P(T > c), T ~ t(df, lambda),
    c = g t_{1-alpha/2}(df_test) — see :mod:`mlmeta.power.analytic`.

    Parameters
    ----------
    J : number of studies (a non-integer is rounded down); ``None`` with ``fixed_design`` uses
        the number of values given.
    mu : effect size of practical concern (on the scale of the analysis, e.g. Fisher's z).
    tau, omega : between-study and within-study (between-effect) SDs.
    rho : correlation between the sampling errors of effect sizes from the same study.
    sigma2 : sampling variance of each effect size: a number (every study), a sequence (an
        empirical distribution: J values drawn with replacement per iteration) or a callable
        ``f(rng, n)`` returning n draws.
    k : effect sizes per study, the same forms (a non-integer number is used as is, e.g. 5.5
        for an average). Two sequences of the same length are drawn as (sigma2, k) pairs.
    model : working model ``"CHE"``, ``"MLMA"`` or ``"CE"`` (CE only with ``var_df="rve"``).
    var_df : ``"model"`` (model-based variance, critical value of t(J - 1)), ``"satt"``
        (model-based variance, Satterthwaite df) or ``"rve"`` (robust variance, Satterthwaite
        df); case-insensitive.
    alpha : two-sided significance level.
    iterations, seed : Monte Carlo iterations and the seed of :func:`numpy.random.default_rng`
        for designs drawn from distributions (ignored otherwise).
    fixed_design : the values of ``sigma2``/``k`` ARE the J studies, no resampling.

    Returns
    -------
    PowerResult
        ``power``, ``df``, ``var_b`` (means over iterations) and ``mcse``.

    Examples
    --------
    >>> round(power(20, 0.2, 0.2, 0.1, 0.5, 0.04, 4).power, 6)
    0.903907
    """
    inp = check_inputs(
        J=J,
        mu=mu,
        tau=tau,
        omega=omega,
        rho=rho,
        sigma2=sigma2,
        k=k,
        model=model,
        var_df=var_df,
        alpha=alpha,
        iterations=iterations,
        seed=seed,
        fixed_design=fixed_design,
    )
    return evaluate_power(inp)


def mdes(
    J,
    tau,
    omega,
    rho,
    sigma2,
    k,
    *,
    target_power: float = 0.8,
    model: str = "CHE",
    var_df: str = "RVE",
    alpha: float = 0.05,
    iterations: int = 100,
    seed=None,
    fixed_design: bool = False,
) -> MdesResult:
    """Minimum detectable effect size: the mu > 0 at which power equals ``target_power``.

    POMADE's ``mdes_MADE`` (Vembye, Pustejovsky & Pigott 2023, doi:10.3102/10769986221127379):
    the root in mu of power(mu) - target, here found by Brent's method to machine precision
    (POMADE's ``uniroot`` stops at ~1e-4), bracketed from POMADE's normal-approximation start
    (z_{1-alpha/2} - z_{1+alpha/2-target}) / sqrt(mean(w) J). For designs drawn from
    distributions every mu is evaluated on the same draws (common random numbers). The
    target must exceed the power at mu = 0 (alpha for ``satt``/``rve``). Parameters as
    :func:`power`.

    Examples
    --------
    >>> round(mdes(30, 0.05, 0.02, 0.2, 0.04, 6).mdes, 4)
    0.0667
    """
    inp = check_inputs(
        J=J,
        tau=tau,
        omega=omega,
        rho=rho,
        sigma2=sigma2,
        k=k,
        model=model,
        var_df=var_df,
        alpha=alpha,
        target_power=target_power,
        iterations=iterations,
        seed=seed,
        fixed_design=fixed_design,
    )
    return evaluate_mdes(inp)


def min_studies(
    mu,
    tau,
    omega,
    rho,
    sigma2,
    k,
    *,
    target_power: float = 0.8,
    model: str = "CHE",
    var_df: str = "RVE",
    alpha: float = 0.05,
    iterations: int = 100,
    seed=None,
    max_studies: int = DEFAULT_MAX_STUDIES,
) -> StudiesResult:
    """Smallest number of studies J >= 5 whose power reaches ``target_power``.

    POMADE's ``min_studies_MADE`` (Vembye, Pustejovsky & Pigott 2023,
    doi:10.3102/10769986221127379), including its hard lower limit of 5 studies: when 5
    studies already reach the target the answer is 5. The search doubles from POMADE's
    normal-approximation start (z_{1-alpha/2} - z_{1+alpha/2-target})^2 / (mean(w) mu^2) and
    bisects on integers, so power(J - 1) < target <= power(J). For designs drawn from
    distributions the design with J studies is the first J of the same draws (common random
    numbers). Raises :class:`InputError` when ``max_studies`` do not reach the target.
    Parameters as :func:`power`.

    Examples
    --------
    >>> min_studies(0.15, 0.2, 0.1, 0.6, 0.06, 3).studies
    33
    """
    inp = check_inputs(
        mu=mu,
        tau=tau,
        omega=omega,
        rho=rho,
        sigma2=sigma2,
        k=k,
        model=model,
        var_df=var_df,
        alpha=alpha,
        target_power=target_power,
        iterations=iterations,
        seed=seed,
        max_studies=max_studies,
    )
    return evaluate_min_studies(inp)


def _seq(x) -> list:
    if isinstance(x, str) or np.ndim(x) == 0:
        return [x]
    return list(x)


def power_curve(
    J: Sequence[int],
    mu,
    tau,
    omega,
    rho,
    sigma2,
    k,
    *,
    model="CHE",
    var_df="RVE",
    alpha: float = 0.05,
    iterations: int = 100,
    seed=None,
):
    """Power over a grid: a tidy :class:`pandas.DataFrame`, one row per combination.

    ``J`` is a sequence of numbers of studies; ``mu``, ``tau``, ``omega``, ``rho``, ``model``
    and ``var_df`` may each be one value or a sequence (POMADE's ``power_MADE`` with vectors,
    the input of its ``plot_MADE``). For designs drawn from distributions all rows share the
    same draws (the design with J studies is the first J of them), so curves are smooth in J.
    Columns: J, mu, tau, omega, rho, model, var_df, label, alpha, power, df, var_b, mcse,
    iterations, design. Draw them with :func:`mlmeta.power.plots.power_curve_plot`.
    """
    import pandas as pd

    js = _seq(J)
    if not js:
        raise InputError("J must list at least one number of studies; got an empty sequence")
    rows = []
    for mod in _seq(model):
        for vdf in _seq(var_df):
            for t in _seq(tau):
                for o in _seq(omega):
                    for r in _seq(rho):
                        base = check_inputs(
                            J=js[0],
                            mu=_seq(mu)[0],
                            tau=t,
                            omega=o,
                            rho=r,
                            sigma2=sigma2,
                            k=k,
                            model=mod,
                            var_df=vdf,
                            alpha=alpha,
                            iterations=iterations,
                            seed=seed,
                        )
                        design = base.design()
                        for j in js:
                            inp = check_inputs(
                                J=j,
                                mu=0.0,
                                tau=t,
                                omega=o,
                                rho=r,
                                sigma2=sigma2,
                                k=k,
                                model=mod,
                                var_df=vdf,
                                alpha=alpha,
                                iterations=iterations,
                                seed=seed,
                            )
                            m = _moments(inp, design, inp.J)  # type: ignore[arg-type]
                            for mu_v in _seq(mu):
                                mu_f = _real("mu", mu_v)
                                p = A.design_power(mu_f, m, inp.alpha)
                                mc = (
                                    float(np.std(p, ddof=1) / math.sqrt(p.size))
                                    if design.sampled and p.size > 1
                                    else None
                                )
                                rows.append(
                                    {
                                        "J": inp.J,
                                        "mu": mu_f,
                                        "tau": inp.tau,
                                        "omega": inp.omega,
                                        "rho": inp.rho,
                                        "model": inp.model,
                                        "var_df": inp.var_df,
                                        "label": _label(inp.model, inp.var_df),
                                        "alpha": inp.alpha,
                                        "power": float(np.mean(p)),
                                        "df": float(np.mean(m.df_report)),
                                        "var_b": float(np.mean(m.var_b)),
                                        "mcse": mc,
                                        "iterations": p.size,
                                        "design": design.kind,
                                    }
                                )
    return pd.DataFrame(rows)
