"""Orchard plot of a categorical moderator (orchaRd's ``orchard_plot``; Nakagawa et al.
2021).

Nakagawa, S., Lagisz, M., O'Dea, R. E., Rutkowska, J., Yang, Y., Noble, D. W. A., &
Senior, A. M. (2021). The orchard plot: Cultivating a forest plot for use in ecology,
evolution, and beyond. Research Synthesis Methods, 12(1), 4-12.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmeta.errors import InputError
from mlmeta.plots.base import (
    categories,
    column,
    effect_label,
    new_axes,
    quote,
    sizes,
    style_spines,
    transform,
    uses_only,
)

__all__ = ["orchard"]


def orchard(
    res,
    moderator: str,
    ax=None,
    *,
    transf=None,
    jitter: float = 0.3,
    seed: int = 1,
    pi: bool = True,
    legend: bool = True,
    refline: float | None = 0.0,
    xlabel: str | None = None,
    title: str | None = None,
    **kwargs,
):
    """Orchard plot of a categorical moderator (Nakagawa et al. 2021, orchaRd's ``orchard_plot``).

    Draws one row per category of ``moderator``: the effect sizes of that category as
    jittered points ("fruit") with area proportional to their precision 1/sqrt(vi), the
    category's model-based estimate (large circle) with its confidence interval (thick bar,
    "trunk") and prediction interval (thin line, "twig"), and on the right the number of effect
    sizes k and, in parentheses, of studies (outer random level) per category.

    The estimates come from ``res.predict(newmods=...)`` when ``res`` is the model
    ``mods="~ moderator"`` (or ``"~ 0 + moderator"``, ``factor(moderator)``); otherwise the model
    is refitted with ``mods="~ moderator"`` (``factor()`` for a numeric column) on the same
    rows with the same random effects, method, test and dfs.

    Parameters
    ----------
    res : MetaResults
    moderator : str
        Categorical column of the model's data.
    ax : matplotlib Axes, optional
    transf : None, "ztor", "none" or callable
        As in :func:`forest` (None: r for ZCOR).
    jitter : float
        Half-width of the vertical jitter of the points (rows are 1 apart).
    seed : int
        Seed of the jitter (the plot is reproducible).
    pi : bool
        Draw the prediction intervals.
    legend : bool
        Add a legend of the point sizes (precision).
    refline : float or None
        Dashed vertical reference line.
    xlabel, title : str, optional
    **kwargs
        Passed to ``Axes.scatter`` for the effect-size points (e.g. ``alpha``, ``color``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    col = column(res, moderator, "moderator")
    if col.isna().any():
        raise InputError(f"moderator {moderator!r} has missing values among the model's rows")
    levels = categories(col)
    if len(levels) > 30:
        raise InputError(
            f"moderator {moderator!r} has {len(levels)} distinct values; the "
            "orchard plot is for categorical moderators (use bubble())"
        )
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    fit = None
    if uses_only(res, moderator) and (
        not numeric or any(n.startswith(f"factor({moderator})") for n in res.coef_names)
    ):
        fit = res
    if fit is None:
        q = quote(moderator)
        fit = res.refit(mods=f"~ factor({q})" if numeric else f"~ {q}")
    nd = pd.DataFrame({moderator: pd.Series(levels, dtype=col.dtype)})
    pr = fit.predict(newmods=nd)
    f = transform(res, transf)

    y = f(res.data.y)
    prec = 1.0 / np.sqrt(res.data.v)
    areas = sizes(prec, 90.0, 6.0)
    rng = np.random.default_rng(seed)
    vals = col.to_numpy()
    outer = res.data.factors[0] if res.data.random else None

    m = len(levels)
    ax, _ = new_axes(ax, (6.8, 1.0 + 0.85 * m))
    cmap = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]
    sc_kw = {"alpha": 0.45, "edgecolors": "black", "linewidths": 0.3, "zorder": 2}
    sc_kw.update(kwargs)
    for i, lev in enumerate(levels):
        rows = np.flatnonzero(vals == lev)
        yj = i + rng.uniform(-jitter, jitter, len(rows))
        kw_i = dict(sc_kw)
        if "c" not in kw_i:
            kw_i.setdefault("color", cmap[i % len(cmap)])
        ax.scatter(y[rows], yj, s=areas[rows], gid=f"orchard-points-{i}", **kw_i)
    pos = np.arange(m)
    est, cl, cu = f(pr.pred), f(pr.ci_lb), f(pr.ci_ub)
    if pi:
        ax.hlines(pos, f(pr.pi_lb), f(pr.pi_ub), color="black", lw=1.2, zorder=3, gid="orchard-pi")
    ax.hlines(pos, cl, cu, color="black", lw=4.5, zorder=4, gid="orchard-ci")
    ax.scatter(
        est,
        pos,
        s=110,
        marker="o",
        facecolors=[cmap[i % len(cmap)] for i in range(m)],
        edgecolors="black",
        linewidths=1.2,
        zorder=5,
        gid="orchard-estimates",
    )
    if refline is not None:
        ax.axvline(refline, color="0.4", lw=0.8, ls=(0, (4, 3)), zorder=1)
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    trans = blended_transform_factory(ax.transAxes, ax.transData)
    for i, lev in enumerate(levels):
        rows = vals == lev
        lab = f"k = {int(rows.sum())}"
        if outer is not None:
            lab += f" ({len(pd.unique(outer[rows]))})"
        ax.text(
            1.02,
            i,
            lab,
            transform=trans,
            ha="left",
            va="center",
            fontsize=8,
            fontstyle="italic",
            clip_on=False,
            gid="orchard-k",
        )
    if outer is not None:
        ax.text(
            1.02,
            -0.5,
            f"k ({res.data.random[0]})",
            transform=trans + ScaledTranslation(0, 4 / 72, ax.figure.dpi_scale_trans),
            ha="left",
            va="bottom",
            fontsize=8,
            fontweight="bold",
            clip_on=False,
        )
    ax.set_yticks(pos, [str(lev) for lev in levels])
    ax.set_ylim(m - 0.5, -0.5)
    ax.set_ylabel(moderator)
    ax.set_xlabel(xlabel if xlabel is not None else effect_label(res, f))
    style_spines(ax)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title, pad=24 if legend else 6)
    if legend:
        from matplotlib.lines import Line2D

        qs = np.quantile(prec, [0.0, 0.5, 1.0])
        # legend markers with the plot's areas (markersize is a diameter in points)
        handles = [
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                color="0.5",
                alpha=0.6,
                markeredgecolor="k",
                markeredgewidth=0.3,
                markersize=float(np.sqrt(np.clip(90.0 * q / prec.max(), 6.0, 90.0))),
                label=f"{q:.3g}",
            )
            for q in qs
        ]
        handles.insert(0, Line2D([], [], ls="", label="Precision (1/SE):"))
        ax.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
            ncol=4,
            frameon=False,
            fontsize=8,
            handletextpad=0.2,
            columnspacing=1.2,
            borderaxespad=0.2,
        )
    return ax
