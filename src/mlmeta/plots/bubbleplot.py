"""Bubble plot of a continuous moderator (metafor's ``regplot``; Viechtbauer 2010)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmeta.errors import InputError, MlmetaError
from mlmeta.plots.base import (
    column,
    effect_label,
    new_axes,
    quote,
    sizes,
    style_spines,
    transform,
    uses_only,
)

__all__ = ["bubble"]


def bubble(
    res,
    moderator: str,
    ax=None,
    *,
    transf=None,
    pi: bool = True,
    n_grid: int = 101,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    **kwargs,
):
    """Bubble plot of a continuous moderator (metafor's ``regplot``).

    Draws the effect sizes against ``moderator`` as open circles with area proportional to
    their weight (``weights()`` of the meta-regression: row sums of V^{-1}, in %), the fitted
    regression line b0 + b1 x with its confidence band (shaded) and, when ``pi``, the
    prediction band (dotted lines), computed with ``predict(newmods=...)`` on a grid of
    ``n_grid`` moderator values.

    When ``res`` is not the model ``mods="~ moderator"`` (another or no moderator, or more
    moderators), the meta-regression on ``moderator`` alone is refitted on the same rows with
    the same random effects, method, test and dfs.

    Parameters
    ----------
    res : MetaResults
    moderator : str
        Numeric column of the model's data.
    ax : matplotlib Axes, optional
    transf : None, "ztor", "none" or callable
        As in :func:`forest` (None: r for ZCOR).
    pi : bool
        Draw the prediction band.
    n_grid : int
        Number of grid points of the line and bands.
    xlabel, ylabel, title : str, optional
    **kwargs
        Passed to ``Axes.scatter`` for the points.

    Returns
    -------
    matplotlib.axes.Axes
    """
    col = column(res, moderator, "moderator")
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise InputError(
            f"moderator {moderator!r} is not numeric; use orchard() for a categorical moderator"
        )
    xv = col.to_numpy(dtype=float)
    if np.isnan(xv).any():
        raise InputError(f"moderator {moderator!r} has missing values among the model's rows")
    grid = np.linspace(np.min(xv), np.max(xv), int(n_grid))
    nd = pd.DataFrame({moderator: grid})
    fit = None
    if uses_only(res, moderator) and len(res.coef_names) == 2:
        try:
            pr = res.predict(newmods=nd)
            fit = res
        except (MlmetaError, ValueError, KeyError):  # e.g. factor(): refit as a linear term
            fit = None
    if fit is None:
        fit = res.refit(mods=f"~ {quote(moderator)}")
        pr = fit.predict(newmods=nd)
    f = transform(res, transf)
    ax, _ = new_axes(ax, (6.0, 4.4))
    w = fit.weights()
    sc = {"facecolors": "none", "edgecolors": "0.25", "linewidths": 0.8, "zorder": 3}
    kwargs = dict(kwargs)
    if "color" in kwargs and "facecolors" not in kwargs:  # open circles: colour the edge
        kwargs["edgecolors"] = kwargs.pop("color")
    sc.update(kwargs)
    ax.scatter(xv, f(fit.data.y), s=sizes(w, 160.0, 8.0), gid="bubble-points", **sc)
    ax.fill_between(
        grid, f(pr.ci_lb), f(pr.ci_ub), color="0.75", alpha=0.6, lw=0, zorder=1, gid="bubble-ci"
    )
    if pi:
        ax.plot(grid, f(pr.pi_lb), color="0.3", lw=0.9, ls=":", zorder=2, gid="bubble-pi")
        ax.plot(grid, f(pr.pi_ub), color="0.3", lw=0.9, ls=":", zorder=2)
    ax.plot(grid, f(pr.pred), color="black", lw=1.6, zorder=2, gid="bubble-line")
    ax.set_xlabel(xlabel if xlabel is not None else moderator)
    ax.set_ylabel(ylabel if ylabel is not None else effect_label(res, f))
    style_spines(ax)
    if title:
        ax.set_title(title)
    return ax
