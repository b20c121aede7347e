"""Whether a fit can be trusted: convergence, boundary and unidentified components, data checks.

Each fit gets a one-line verdict: "the fit looks trustworthy", or the specific warnings:
- the optimiser's record (iterations, largest free gradient entry) and non-convergence;
- variance components estimated at the boundary 0 (reported as 0, as metafor does);
- components the data cannot separate: two nested levels with the same groups (e.g. every study
  contributes one effect size, so study and effect-size variance are confounded);
- a flat or multi-peaked profile likelihood (optional, it needs refits);
- an extreme ratio of largest to smallest sampling variance (> 1e5), which makes weights and
  the likelihood dominated by a few effect sizes;
- few clusters for robust inference (Satterthwaite df < 4), when a robust result is given;
- rows sharing every random-effect id (usually a coding mistake when an effect-size id exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Diagnostics", "diagnose"]

VI_RATIO_LIMIT = 1e5


@dataclass(frozen=True)
class Diagnostics:
    converged: bool
    iterations: int
    grad_norm: float
    optimizer: str
    boundary: tuple[str, ...]
    unidentified: tuple[str, ...]
    vi_ratio: float
    warnings: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trustworthy(self) -> bool:
        return not self.warnings

    @property
    def verdict(self) -> str:
        if not self.warnings:
            return "the fit looks trustworthy"
        return "; ".join(self.warnings)

    def to_dict(self) -> dict:
        return {
            "trustworthy": self.trustworthy,
            "verdict": self.verdict,
            "converged": self.converged,
            "iterations": self.iterations,
            "grad_norm": self.grad_norm,
            "optimizer": self.optimizer,
            "boundary": list(self.boundary),
            "unidentified": list(self.unidentified),
            "vi_ratio": self.vi_ratio,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def diagnose(
    res, *, profile: bool = False, robust=None, profile_skipped: bool = False
) -> Diagnostics:
    """Diagnostics of a fitted model (see the module docstring); ``profile_skipped`` adds a
    note that the profile-shape check was left out (it is optional and needs refits)."""
    opt = res.core.optim
    warns: list[str] = []
    notes: list[str] = []
    if not opt.converged:
        warns.append("the optimiser did not converge")
    names = res.level_names
    s2 = res.core.sigma2
    boundary = tuple(names[i] for i in range(len(s2)) if s2[i] == 0 and not res.core.fixed[i])
    for b in boundary:
        warns.append(f"variance component of {b!r} is estimated at the boundary 0")
    ng = res.n_levels
    unident = []
    for i in range(len(ng) - 1):
        if ng[i] == ng[i + 1] and not (res.core.fixed[i] or res.core.fixed[i + 1]):
            unident.append(names[i + 1])
            warns.append(
                f"levels {names[i]!r} and {names[i + 1]!r} have the same groups (each "
                f"{res.data.random[i]} has one {res.data.random[i + 1]}), so their "
                "variance components are not identified separately"
            )
    v = res.data.v
    ratio = float(np.max(v) / np.min(v))
    if ratio > VI_RATIO_LIMIT:
        warns.append(
            f"sampling variances span a ratio of {ratio:.3g} (largest/smallest): a few "
            "effect sizes dominate the weights"
        )
    if profile and res.data.random:
        from mlmeta.analyses.profile import check_profile_shape

        for j in range(len(s2)):
            if not res.core.fixed[j]:
                msg = check_profile_shape(res, j)
                if msg:
                    warns.append(msg)
    if robust is not None:
        df = np.asarray(robust.coefs["df"], dtype=float)
        if np.any(df < 4):
            bad = [n for n, d in zip(robust.coefs.index, df) if d < 4]
            warns.append(
                f"few clusters for robust inference: Satterthwaite df < 4 for {', '.join(bad)}"
            )
    if res.data.random and len(ng) and ng[-1] < res.k:
        notes.append(
            f"{res.k - ng[-1]} effect sizes share every random-effect id with another "
            f"row (the innermost level {names[-1]!r} has {ng[-1]} groups for {res.k} "
            "rows)"
        )
    if profile_skipped:
        size = (
            f"k = {res.k} effect sizes"
            if res.p <= 1
            else f"k = {res.k} effect sizes and {res.p} coefficients"
        )
        notes.append(
            f"the shape of the profile likelihood was not checked ({size} make its "
            "refits slow; diagnostics(profile=True) checks it, and the "
            "profile-likelihood CIs show it)"
        )
    if res.data.dropped:
        notes.append(f"{len(res.data.dropped)} of {res.data.k_all} rows dropped for missing values")
    return Diagnostics(
        opt.converged,
        opt.iterations,
        opt.grad_norm,
        opt.method,
        boundary,
        tuple(unident),
        ratio,
        tuple(warns),
        tuple(notes),
    )
