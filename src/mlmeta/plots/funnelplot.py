"""Contour-enhanced funnel plot (metafor's ``funnel.rma``; Peters et al. 2008).

Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R., & Rushton, L. (2008).
Contour-enhanced meta-analysis funnel plots help distinguish publication bias from other causes
of asymmetry. Journal of Clinical Epidemiology, 61(10), 991-996.
"""

from __future__ import annotations

import numpy as np

from mlmeta.core.dist import norm_isf
from mlmeta.errors import InputError
from mlmeta.plots.base import effect_label, new_axes, p_level, style_spines
from mlmeta.spec import to_fraction

__all__ = ["funnel"]


def funnel(
    res,
    ax=None,
    *,
    contours=(0.10, 0.05, 0.01),
    level: float = 95,
    shades=None,
    legend: bool = True,
    xlabel: str | None = None,
    title: str | None = None,
    **kwargs,
):
    """Contour-enhanced funnel plot: effect sizes against their standard errors.

    Draws each effect size (intercept-only model) or marginal residual y_i - x_i'b (moderator
    models) against its standard error sqrt(vi) on an inverted y-axis (SE = 0 at the top, the
    largest SE at the bottom), on the scale of ``yi`` (Fisher's z for ZCOR). The background is
    shaded by the two-sided p-value of a z-test of each point against 0 for the ``contours``
    levels (white: p > .10, then darker grey for .05 < p <= .10, .01 < p <= .05 and p <= .01;
    Peters et al. 2008). A vertical line marks the pooled estimate (0 for residuals) and dashed
    lines the pseudo-confidence region estimate -+ z sqrt(vi) (metafor's ``funnel.rma``).

    With dependent effect sizes the SEs ignore the multilevel structure, so asymmetry is only
    a descriptive signal; test it with :func:`mlmeta.pubbias.egger.egger` (robust=True).

    Parameters
    ----------
    res : MetaResults
    ax : matplotlib Axes, optional
    contours : sequence of float
        Significance levels of the contours (empty or None: a plain funnel plot).
    level : float
        Level (%) of the pseudo-confidence region.
    shades : sequence of colours, optional
        Fill colours from the innermost shaded band outwards (one per contour).
    legend : bool
        Add a legend of the shaded p-value regions.
    xlabel, title : str, optional
    **kwargs
        Passed to ``Axes.scatter`` for the points.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.patches import Patch

    from mlmeta.pubbias.egger import funnel_data

    fd = funnel_data(res)
    x = fd["yi"].to_numpy(dtype=float)
    sei = fd["sei"].to_numpy(dtype=float)
    center = float(res.core.beta[0]) if res.intercept_only else 0.0
    ymax = float(np.max(sei)) * 1.05
    crit = norm_isf((1 - to_fraction(level)) / 2)
    alphas = sorted({float(a) for a in (contours or ())}, reverse=True)
    if any(not 0 < a < 1 for a in alphas):
        raise InputError(f"contours must be significance levels between 0 and 1; got {contours!r}")
    zs = [norm_isf(a / 2) for a in alphas]
    if shades is None:
        shades = [str(g) for g in np.linspace(0.9, 0.66, len(alphas))] if alphas else []
    shades = list(shades)
    if len(shades) != len(alphas):
        raise InputError(f"shades needs one colour per contour ({len(alphas)}); got {len(shades)}")

    ax, _ = new_axes(ax, (6.4, 4.6))
    extent = max(np.max(np.abs(x - center)), crit * ymax) * 1.08
    lo = min(center - extent, np.min(x) - 0.05 * extent, -(zs[-1] * ymax * 1.05) if zs else np.inf)
    hi = max(center + extent, np.max(x) + 0.05 * extent, (zs[-1] * ymax * 1.05) if zs else -np.inf)
    sgrid = np.array([0.0, ymax])
    handles = []
    if zs:
        # outermost region (p <= smallest alpha) is the axes background, then inner bands
        ax.fill_between([lo, hi], 0, ymax, color=shades[-1], lw=0, zorder=0, gid="funnel-contour")
        for i in range(len(zs) - 1, -1, -1):
            inner = "white" if i == 0 else shades[i - 1]
            ax.fill_betweenx(
                sgrid,
                -zs[i] * sgrid,
                zs[i] * sgrid,
                color=inner,
                lw=0,
                zorder=0,
                gid="funnel-contour",
            )
        labs = [f"p > {p_level(alphas[0])}"]
        labs += [
            f"{p_level(alphas[i + 1])} < p \u2264 {p_level(alphas[i])}" for i in range(len(zs) - 1)
        ]
        labs.append(f"p \u2264 {p_level(alphas[-1])}")
        cols = ["white"] + shades
        handles = [
            Patch(facecolor=c, edgecolor="0.4", lw=0.5, label=lab) for c, lab in zip(cols, labs)
        ]
    ax.plot(
        [center - crit * ymax, center, center + crit * ymax],
        [ymax, 0, ymax],
        color="0.15",
        lw=0.9,
        ls=(0, (4, 3)),
        zorder=2,
        gid="funnel-pseudo-ci",
    )
    ax.axvline(center, color="0.15", lw=1.0, zorder=2, gid="funnel-estimate")
    sc = {"s": 22, "color": "black", "edgecolors": "white", "linewidths": 0.5, "zorder": 3}
    sc.update(kwargs)
    ax.scatter(x, sei, gid="funnel-points", **sc)
    ax.set_xlim(lo, hi)
    ax.set_ylim(ymax, 0.0)
    ax.set_ylabel("Standard error")
    ax.set_xlabel(
        xlabel if xlabel is not None else effect_label(res, False, resid=not res.intercept_only)
    )
    style_spines(ax)
    if title:
        ax.set_title(title)
    if legend and handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            fontsize=8,
            title="Two-sided p",
            title_fontsize=8,
            alignment="left",
        )
    return ax
