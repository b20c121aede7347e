"""Data-generating model of simulation studies: three-level meta-analytic data.

The model is the correlated-and-hierarchical-effects model of Vembye, Pustejovsky & Pigott
(2023; POMADE), with optional moderators. Study ``j = 1..J`` reports ``k_j`` effect sizes::

    y_ij = mu + beta_study * x_j + beta_es * x_ij + u_j + v_ij + e_ij,
    u_j ~ N(0, tau^2),   v_ij ~ N(0, omega^2),
    (e_1j, ..., e_kj) ~ N(0, sigma2_j [(1 - rho) I + rho 1 1']),

independent across studies: every effect of a study has the same sampling variance
``sigma2_j`` and two effects of a study have sampling correlation ``rho``. The covariates are
``x_j ~ N(0, 1)`` (study level) and ``x_ij ~ N(0, 1)`` (effect level), so ``mu`` is the mean
effect at ``x = 0`` and the intercept of a meta-regression on them.

References: Vembye, M. H., Pustejovsky, J. E., & Pigott, T. D. (2023). Power approximations for
overall average effects in meta-analysis with dependent effect sizes. *Journal of Educational and
Behavioral Statistics, 48*(1), 70-102; Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis
with robust variance estimation: expanding the range of working models. *Prevention Science, 23*,
425-438.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = ["K_DISTS", "MEASURES", "generate_three_level"]

K_DISTS = ("constant", "poisson", "empirical")
MEASURES = ("ZCOR", "SMD")


def _num(
    cond: Mapping,
    key: str,
    default: float | None,
    lo: float | None = None,
    hi: float | None = None,
    hi_open: bool = False,
) -> float:
    val = cond.get(key, default)
    if val is None:
        raise InputError(f"condition: {key!r} is required")
    try:
        x = float(val)
    except (TypeError, ValueError):
        raise InputError(f"condition: {key!r} must be a number; got {val!r}") from None
    if (
        not math.isfinite(x)
        or (lo is not None and x < lo)
        or (hi is not None and (x >= hi if hi_open else x > hi))
    ):
        rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise InputError(f"condition: {key!r} must lie in {rng}; got {val!r}")
    return x


def _values(cond: Mapping, key: str, lo: float, strict: bool) -> np.ndarray:
    """A scalar or list parameter as a non-empty float array with every value > lo (>= lo)."""
    val = cond[key]
    arr = np.atleast_1d(np.asarray(val, dtype=float)) if not isinstance(val, str) else None
    if (
        arr is None
        or arr.ndim != 1
        or arr.size == 0
        or not np.all(np.isfinite(arr))
        or (np.any(arr <= lo) if strict else np.any(arr < lo))
    ):
        rule = f"> {lo:g}" if strict else f">= {lo:g}"
        raise InputError(
            f"condition: {key!r} must be a number or a list of numbers {rule}; got {val!r}"
        )
    return arr


def _is_list(x: Any) -> bool:
    return isinstance(x, (Sequence, np.ndarray)) and not isinstance(x, str)


def generate_three_level(condition: Mapping[str, Any], rng: np.random.Generator) -> pd.DataFrame:
    """Simulate one three-level meta-analytic data set (model in the module docstring).

    Parameters
    ----------
    condition : mapping
        ``J`` (studies, >= 2, required); ``mu`` (default 0); ``tau``, ``omega`` (SDs between
        and within studies, default 0); ``rho`` (sampling correlation within a study, in
        [0, 1), default 0);

        effects per study: ``k`` a number or a list, with ``k_dist`` = ``"constant"`` (the
        default for a number: every study has ``k`` effects), ``"poisson"`` (``k_j = 1 +
        Poisson(k - 1)``, mean ``k``) or ``"empirical"`` (the default for a list: ``k_j``
        drawn with replacement from the list);

        sampling variances, one of: ``sigma2`` (a number, or a list drawn from with
        replacement), or ``n`` (sample size per study, a number or a list drawn from) with
        ``measure`` = ``"SMD"`` (default; ``sigma2_j = 4 / n_j``, two groups of ``n_j / 2``,
        the large-sample variance of d near 0) or ``"ZCOR"`` (Fisher's z,
        ``sigma2_j = 1 / (n_j - 3)``). When ``k`` and ``sigma2`` (or ``n``) are lists of the
        same length their entries are drawn as pairs (a study's k with its variance), as
        POMADE does with an empirical pilot.

        moderators (optional): ``beta_study`` and/or ``beta_es``; when present (not None) the
        covariate ``x_study`` (one N(0, 1) value per study) and/or ``x_es`` (one per effect)
        is added to the data with that coefficient.
    rng : numpy.random.Generator

    Returns
    -------
    DataFrame
        **Simulated** data, one row per effect size: ``study`` (1..J), ``es`` (1..k_j within
        each study), ``yi``, ``vi`` (= sigma2_j), and ``x_study`` / ``x_es`` when asked for.

    Notes
    -----
    The draws, in order: k_j (and the sampling variances), u_j, x_j, then per effect v_ij, the
    shared and the individual parts of e_ij, x_ij.

    Examples
    --------
    >>> import numpy as np
    >>> from mlmeta.sim import generate_three_level
    >>> d = generate_three_level({"J": 3, "mu": 0.2, "tau": 0.1, "omega": 0.05, "rho": 0.6,
    ...                           "k": 2, "sigma2": 0.04}, np.random.default_rng(1))
    >>> d.shape
    (6, 4)
    """
    if not isinstance(condition, Mapping):
        raise InputError(f"condition must be a dict of parameters; got {type(condition).__name__}")
    Jf = _num(condition, "J", None, lo=2)
    if Jf != int(Jf):
        raise InputError(
            f"condition: 'J' must be a whole number of studies; got {condition['J']!r}"
        )
    J = int(Jf)
    mu = _num(condition, "mu", 0.0)
    tau = _num(condition, "tau", 0.0, lo=0)
    omega = _num(condition, "omega", 0.0, lo=0)
    rho = _num(condition, "rho", 0.0, lo=0, hi=1, hi_open=True)

    # ---- effects per study
    if "k" not in condition:
        raise InputError("condition: 'k' (effect sizes per study: a number or a list) is required")
    k_raw = condition["k"]
    k_arr = _values(condition, "k", 1.0, strict=False)
    dist = condition.get("k_dist", "empirical" if _is_list(k_raw) else "constant")
    dist = str(dist).lower()
    if dist not in K_DISTS:
        raise InputError(
            f"condition: 'k_dist' must be one of {', '.join(K_DISTS)}; got "
            f"{condition.get('k_dist')!r}"
        )
    if dist in ("constant", "poisson") and k_arr.size != 1:
        raise InputError(
            f"condition: k_dist={dist!r} takes one number 'k'; got a list of {k_arr.size}"
        )
    if dist != "poisson" and np.any(k_arr != np.round(k_arr)):
        raise InputError(f"condition: 'k' must be whole numbers for k_dist={dist!r}; got {k_raw!r}")

    # ---- sampling variances
    has_s, has_n = "sigma2" in condition, "n" in condition
    if has_s == has_n:
        raise InputError(
            "condition: give exactly one of 'sigma2' (sampling variances) or 'n' (sample sizes)"
        )
    if has_s:
        s_arr = _values(condition, "sigma2", 0.0, strict=True)
    else:
        measure = str(condition.get("measure", "SMD")).upper()
        if measure not in MEASURES:
            raise InputError(
                f"condition: 'measure' must be one of {', '.join(MEASURES)}; got "
                f"{condition.get('measure')!r}"
            )
        n_arr = _values(condition, "n", 3.0 if measure == "ZCOR" else 0.0, strict=True)
        s_arr = 1.0 / (n_arr - 3.0) if measure == "ZCOR" else 4.0 / n_arr

    paired = dist == "empirical" and k_arr.size > 1 and s_arr.size == k_arr.size
    if paired:
        idx = rng.integers(0, k_arr.size, size=J)
        k = k_arr[idx].astype(np.int64)
        s2 = s_arr[idx]
    else:
        if dist == "constant":
            k = np.full(J, int(k_arr[0]), dtype=np.int64)
        elif dist == "poisson":
            k = 1 + rng.poisson(k_arr[0] - 1.0, size=J).astype(np.int64)
        else:
            k = k_arr[rng.integers(0, k_arr.size, size=J)].astype(np.int64)
        s2 = np.full(J, s_arr[0]) if s_arr.size == 1 else s_arr[rng.integers(0, s_arr.size, size=J)]

    b_study = condition.get("beta_study")
    b_es = condition.get("beta_es")
    u = rng.normal(0.0, 1.0, J) * tau
    x_study = rng.normal(0.0, 1.0, J) if b_study is not None else None

    n = int(k.sum())
    study = np.repeat(np.arange(1, J + 1), k)
    j = study - 1
    es = np.arange(n) - np.repeat(np.cumsum(k) - k, k) + 1
    v = rng.normal(0.0, 1.0, n) * omega
    shared = rng.normal(0.0, 1.0, J)
    own = rng.normal(0.0, 1.0, n)
    e = np.sqrt(s2[j]) * (math.sqrt(rho) * shared[j] + math.sqrt(1.0 - rho) * own)
    yi = mu + u[j] + v + e
    out: dict[str, np.ndarray] = {"study": study, "es": es}
    if x_study is not None:
        yi = yi + _num(condition, "beta_study", 0.0) * x_study[j]
    if b_es is not None:
        x_es = rng.normal(0.0, 1.0, n)
        yi = yi + _num(condition, "beta_es", 0.0) * x_es
    out["yi"] = yi
    out["vi"] = s2[j]
    if x_study is not None:
        out["x_study"] = x_study[j]
    if b_es is not None:
        out["x_es"] = x_es
    return pd.DataFrame(out)
