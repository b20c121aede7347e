"""The power section of an analysis report: numbers and one sentence from a fitted model.

An analysis file may carry a table such as::

    [power]
    target = 0.8          # power to aim for (default 0.8)
    effect = "observed"   # or a number on the analysis scale (e.g. Fisher's z for ZCOR)
    model = "CHE"         # working model: CHE, MLMA or CE (default CHE)
    df = "rve"            # model, satt or rve (default rve; CE needs rve)
    rho = 0.6             # sampling correlation (default: the fit's rho, else 0.6)
    tau = "observed"      # between-study SD (default: the fit's); omega likewise
    alpha = 0.05
    iterations = 1000     # draws for the studies search over the observed studies
    seed = 1

:func:`power_section` turns it and a few numbers of the fitted model into the power of the
test of the overall average effect (Vembye, Pustejovsky & Pigott 2023, JEBS,
doi:10.3102/10769986221127379, as R's POMADE), the minimum detectable effect and the number of
studies needed, with one sentence for the report. When the fit's studies are given one by one
(``vi_per_study``, ``k_per_study``) they are the design: power and mdes for exactly these
studies (a fixed design), and the number of studies by drawing studies like them (pairs with
replacement, seeded); otherwise every study has the mean sampling variance and the mean number
of effect sizes (a balanced design).

Power at the *observed* effect restates the test that was run (its p-value) rather than adding
information (Hoenig & Heisey 2001, *The American Statistician* 55(1), 19-24); the section says
so, and an effect of practical concern given as a number is the better input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlmeta.errors import InputError

__all__ = ["SPEC_KEYS", "power_section"]

#: keys of the ``[power]`` table and their defaults ("observed": taken from the fit)
SPEC_KEYS: dict[str, Any] = {
    "target": 0.8,
    "effect": "observed",
    "model": "CHE",
    "df": "rve",
    "rho": None,
    "tau": "observed",
    "omega": "observed",
    "alpha": 0.05,
    "iterations": 1000,
    "seed": 1,
}
DEFAULT_RHO = 0.6
_MINUS = "\u2212"


def _apa(x: float, digits: int = 2, bounded: bool = False) -> str:
    """APA number: typographic minus; no leading zero for values bounded by 1 (r)."""
    s = f"{abs(x):.{digits}f}"
    if bounded and s.startswith("0"):
        s = s[1:]
    return (_MINUS if x < 0 and float(s) != 0 else "") + s


def _pct(p: float) -> str:
    return f"{100 * p:g} %"


def _fit_value(fit: Mapping[str, Any], key: str, what: str) -> float:
    v = fit.get(key)
    if (
        v is None
        or isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(float(v))
    ):
        raise InputError(f"power section: the fit gives no usable {what} ({key!r}); got {v!r}")
    return float(v)


def _spec_number(
    spec: Mapping[str, Any], key: str, fit: Mapping[str, Any], fit_key: str, what: str
) -> tuple[float, str]:
    v = spec.get(key, SPEC_KEYS[key])
    if isinstance(v, str):
        if v.strip().lower() != "observed":
            raise InputError(f'[power] {key} must be a number or "observed"; got {v!r}')
        return _fit_value(fit, fit_key, what), "observed"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f'[power] {key} must be a number or "observed"; got {v!r}')
    return float(v), "given"


def power_section(spec: Mapping[str, Any] | None, fit: Mapping[str, Any]) -> dict:
    """Power, mdes and studies needed for the report, with one sentence.

    Parameters
    ----------
    spec : the analysis file's ``[power]`` table (keys :data:`SPEC_KEYS`; None = defaults).
    fit : numbers of the fitted model: ``studies`` (J), ``estimate`` (overall average, analysis
        scale), ``tau`` and ``omega`` (SDs of the study and effect-size levels), ``mean_vi``
        (mean sampling variance) and ``es_per_study`` (mean effect sizes per study; or ``k``,
        the number of effect sizes); optional ``vi_per_study`` and ``k_per_study`` (one value
        per study: mean sampling variance, number of effect sizes), ``rho`` (the CHE fit's)
        and ``measure`` (``"ZCOR"``/``"COR"`` report the effect as r).

    Returns
    -------
    dict
        ``studies``, ``effect`` (analysis scale), ``effect_display``, ``effect_label``,
        ``effect_source``, ``tau``, ``omega``, ``rho``, ``alpha``, ``model``, ``var_df``,
        ``label`` (e.g. CHE-RVE), ``design``, ``mean_vi``, ``es_per_study``, ``power``, ``df``,
        ``var_b``, ``target``, ``mdes``, ``mdes_display``, ``studies_needed``,
        ``power_at_studies_needed``, ``sentence`` and ``note`` (None unless the effect is the
        observed one).

    Examples
    --------
    ``power_section({"effect": -0.1}, fit)["sentence"]`` for a CHE fit of 27 studies reads
    "With J = 27 studies and on average 1.8 effect sizes per study, the power of the CHE-RVE
    test (α = .05, τ = 0.077, ω = 0.051, ρ = 0.6) to detect r = −.10 is 0.99; 80 % power
    needs at least 12 studies. The smallest effect detectable with 80 % power in these 27
    studies is r = −.06."
    """
    from mlmeta.power import api

    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise InputError(f"[power]: unknown key {unknown[0]!r}; allowed: {', '.join(SPEC_KEYS)}")
    j = int(_fit_value(fit, "studies", "number of studies"))
    mu, source = _spec_number(spec, "effect", fit, "estimate", "overall estimate")
    tau, _ = _spec_number(spec, "tau", fit, "tau", "between-study SD")
    omega, _ = _spec_number(spec, "omega", fit, "omega", "within-study SD")
    rho = spec.get("rho")
    if rho is None:
        rho = fit.get("rho") if fit.get("rho") is not None else DEFAULT_RHO
    per_vi, per_k = fit.get("vi_per_study"), fit.get("k_per_study")
    if per_vi is not None and per_k is not None:
        sigma2: Any = list(per_vi)
        k: Any = list(per_k)
        if len(sigma2) != j or len(k) != j:
            raise InputError(
                f"power section: vi_per_study and k_per_study need one value per "
                f"study ({j}); got {len(sigma2)} and {len(k)}"
            )
        mean_vi = sum(sigma2) / j
        es_per_study = sum(k) / j
        fixed = True
    else:
        mean_vi = _fit_value(fit, "mean_vi", "mean sampling variance")
        if fit.get("es_per_study") is not None:
            es_per_study = _fit_value(fit, "es_per_study", "effect sizes per study")
        else:
            es_per_study = _fit_value(fit, "k", "number of effect sizes") / j
        sigma2, k = mean_vi, es_per_study
        fixed = False
    common = {
        "tau": tau,
        "omega": omega,
        "rho": rho,
        "model": spec.get("model", "CHE"),
        "var_df": spec.get("df", "rve"),
        "alpha": spec.get("alpha", 0.05),
        "target_power": spec.get("target", 0.8),
    }
    names = {
        "J": "studies",
        "mu": "[power] effect",
        "tau": "[power] tau",
        "omega": "[power] omega",
        "rho": "[power] rho",
        "model": "[power] model",
        "var_df": "[power] df",
        "alpha": "[power] alpha",
        "target_power": "[power] target",
        "iterations": "[power] iterations",
        "sigma2": "mean_vi",
        "k": "es_per_study",
    }
    its = spec.get("iterations", SPEC_KEYS["iterations"])
    seed = spec.get("seed", SPEC_KEYS["seed"])
    pw_in = api.check_inputs(
        J=j,
        mu=mu,
        sigma2=sigma2,
        k=k,
        fixed_design=fixed,
        names=names,
        iterations=its,
        seed=seed,
        **common,
    )
    res = api.evaluate_power(pw_in)
    md = api.evaluate_mdes(pw_in)
    # studies needed: draw studies like the observed ones (pairs), or the balanced design
    st_in = api.check_inputs(
        mu=mu, sigma2=sigma2, k=k, names=names, iterations=its, seed=seed, **common
    )
    needed: int | None
    try:
        st = api.evaluate_min_studies(st_in)
        needed, p_needed = st.studies, st.power
    except InputError:  # mu = 0, or beyond the search limit
        needed, p_needed = None, None
    measure = str(fit.get("measure") or "").upper()
    as_r = measure in ("ZCOR", "COR")
    if measure == "ZCOR":
        shown, shown_mdes = math.tanh(mu), math.tanh(md.mdes) * (1 if mu >= 0 else -1)
    else:
        shown, shown_mdes = mu, md.mdes * (1 if mu >= 0 else -1)
    sym = "r" if as_r else "an effect of"
    eff_txt = f"{sym} = {_apa(shown, 2, as_r)}" if as_r else f"{sym} {_apa(shown, 2)}"
    mdes_txt = f"r = {_apa(shown_mdes, 2, True)}" if as_r else _apa(shown_mdes, 2)
    target = pw_in.target_power
    design_txt = "" if fixed else " (every study with the mean sampling variance)"
    power_txt = "above 0.99" if res.power >= 0.995 else f"{res.power:.2f}"
    sentence = (
        f"With J = {j} studies and on average {es_per_study:.1f} effect sizes per study"
        f"{design_txt}, the power of the {res.label} test (\u03b1 = "
        f"{_apa(pw_in.alpha, 2, True)}, \u03c4 = {tau:.3f}, \u03c9 = {omega:.3f}, "
        f"\u03c1 = {pw_in.rho:g}) to detect {eff_txt} is {power_txt}; "
    )
    if needed is None:
        sentence += f"no number of studies reaches {_pct(target)} power for this effect."
    else:
        verb = "needs" if needed <= j else "would need"
        sentence += f"{_pct(target)} power {verb} at least {needed} studies."
    sentence += (
        f" The smallest effect detectable with {_pct(target)} power in these "
        f"{j} studies is {mdes_txt}."
    )
    note = None
    if source == "observed":
        note = (
            "Power at the observed estimate restates the test that was run (its p-value) "
            "rather than adding evidence; an effect of practical concern chosen in advance "
            "is the better input (Hoenig & Heisey 2001)."
        )
    return {
        "studies": j,
        "effect": mu,
        "effect_display": shown,
        "effect_label": "r" if as_r else "effect",
        "effect_source": source,
        "tau": tau,
        "omega": omega,
        "rho": pw_in.rho,
        "alpha": pw_in.alpha,
        "model": pw_in.model,
        "var_df": pw_in.var_df,
        "label": res.label,
        "design": res.design,
        "mean_vi": mean_vi,
        "es_per_study": es_per_study,
        "power": res.power,
        "df": res.df,
        "var_b": res.var_b,
        "target": target,
        "mdes": md.mdes,
        "mdes_display": shown_mdes,
        "studies_needed": needed,
        "power_at_studies_needed": p_needed,
        "iterations": st_in.iterations,
        "sentence": sentence,
        "note": note,
    }
