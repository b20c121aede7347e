"""Profile (restricted) log-likelihood of each variance component (metafor's
``profile.rma.mv``).

Line styles, used by the report's captions: :data:`STYLES`.
"""

from __future__ import annotations

import numpy as np

from mlmeta.core.dist import chi2_isf
from mlmeta.errors import InputError
from mlmeta.plots.base import pyplot, style_spines
from mlmeta.spec import to_fraction

__all__ = ["STYLES", "profile_plot"]

#: the line style of each element, in words (the report's caption is built from these)
STYLES = {"estimate": "dotted", "ci": "dashed", "cutoff": "dash-dotted"}
_LS = {"dotted": ":", "dashed": "--", "dash-dotted": "-."}


def profile_plot(res, j: int | None = None, ax=None, n: int = 30, *, level: float = 95, **kwargs):
    """Profile (restricted) log-likelihood of a variance component (metafor's ``profile``).

    Draws llp_level(s) = max over the other components of the log-likelihood with sigma2_j = s, on
    a grid of ``n`` values from 0 to about three times max(estimate, upper profile-CI limit)
    (plus the estimate and the CI limits themselves), with the REML/ML estimate marked
    (dotted vertical line and point at the maximum), the profile-likelihood CI limits (dashed
    vertical lines, ``res.profile_ci()``), and the cut-off ll_max - chi2_{1,level}/2 that
    defines them (dash-dotted horizontal line); the styles are :data:`STYLES`. A flat or multi-peaked profile means the component is not
    identified by the data.

    Parameters
    ----------
    res : MetaResults
        A model with random effects.
    j : int, optional
        Index of the component (0 = outer level); None draws one panel per estimated
        component.
    ax : Axes or sequence of Axes, optional
        One Axes (``j`` given), or one per component (``j=None``).
    n : int
        Number of grid points.
    level : float
        Level (%) of the profile CI and the cut-off.
    **kwargs
        Passed to ``Axes.plot`` for the profile curve.

    Returns
    -------
    matplotlib.axes.Axes, or a numpy array of Axes when ``j`` is None.
    """
    from mlmeta.analyses.profile import profile

    if not res.data.random:
        raise InputError("the profile plot needs a model with random effects")
    L = len(res.core.sigma2)
    free = [i for i in range(L) if not res.core.fixed[i]]
    if not free:
        raise InputError("all variance components are fixed; nothing to profile")
    if j is not None:
        j = int(j)
        if not 0 <= j < L:
            raise InputError(f"j must be between 0 and {L - 1}; got {j}")
        if res.core.fixed[j]:
            raise InputError(
                f"variance component {j} ({res.level_names[j]!r}) is fixed; nothing to profile"
            )
        comps = [j]
    else:
        comps = free
    ci = res.profile_ci(level=level, components=comps).table
    if ax is None:
        plt = pyplot()
        _, axs = plt.subplots(
            1, len(comps), figsize=(4.4 * len(comps), 3.6), layout="constrained", squeeze=False
        )
        axes = list(axs[0])
    else:
        axes = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
        if len(axes) != len(comps):
            raise InputError(f"ax must hold {len(comps)} Axes (one per component); got {len(axes)}")
    ll_max = float(res.core.ll)
    cut = ll_max - chi2_isf(1 - to_fraction(level), 1) / 2.0
    ylab = "Restricted log-likelihood" if res.method == "REML" else "Log-likelihood"
    for a, jj in zip(axes, comps):
        est = float(res.core.sigma2[jj])
        lb, ub = float(ci["ci_lb"].iloc[jj]), float(ci["ci_ub"].iloc[jj])
        top = 3.0 * max(est, ub if np.isfinite(ub) else 0.0)
        if top <= 0:
            top = 3.0 * max(float(np.sum(res.core.sigma2)), 0.1 * float(np.mean(res.data.v)))
        pts = [est] + [b for b in (lb, ub) if np.isfinite(b)]
        grid = np.union1d(np.linspace(0.0, top, int(n)), pts)
        pdf = profile(res, jj, grid)
        kw = {"color": "black", "lw": 1.2, "marker": "o", "ms": 2.5}
        kw.update(kwargs)
        a.plot(pdf["sigma2"], pdf["logLik"], gid="profile-curve", **kw)
        a.axhline(
            cut,
            color="#C03030",
            lw=0.9,
            ls=_LS[STYLES["cutoff"]],
            gid="profile-cutoff",
            label="cut-off",
        )
        a.axvline(est, color="0.3", lw=0.9, ls=_LS[STYLES["estimate"]], gid="profile-estimate")
        a.plot(
            [est],
            [ll_max],
            marker="o",
            ms=6,
            color="#C03030",
            ls="",
            zorder=4,
            label=f"estimate {est:.3g}",
        )
        for b in (lb, ub):
            if np.isfinite(b):
                a.axvline(b, color="#C03030", lw=0.9, ls=_LS[STYLES["ci"]], gid="profile-ci")
        ub_s = f"{ub:.3g}" if np.isfinite(ub) else "\u221e"
        a.plot(
            [],
            [],
            color="#C03030",
            lw=0.9,
            ls=_LS[STYLES["ci"]],
            label=f"{level:g}% CI [{lb:.3g}, {ub_s}]",
        )
        name = res.level_names[jj]
        a.set_xlabel(rf"$\sigma^2_{{{jj + 1}}}$ ({name})")
        a.set_ylabel(ylab)
        a.set_title(f"Profile of {name}", fontsize=10)
        a.set_xlim(0.0, float(np.max(grid)))
        lo = float(np.min(pdf["logLik"]))
        span = ll_max - min(lo, cut)
        a.set_ylim(min(lo, cut) - 0.05 * span, ll_max + 0.12 * span)
        style_spines(a)
        a.legend(
            fontsize=7.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2
        )
    if j is not None:
        return axes[0]
    return np.array(axes, dtype=object)
