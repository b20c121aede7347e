"""Leave-one-cluster-out plot: the estimate refitted without each cluster in turn."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlmeta.errors import InputError
from mlmeta.plots.base import effect_label, fmt, new_axes, style_spines, transform

__all__ = ["loo_plot"]


def loo_plot(
    res,
    ax=None,
    *,
    cluster: str | None = None,
    coef=0,
    transf=None,
    xlabel: str | None = None,
    title: str | None = None,
    loo=None,
    max_rows: int | None = None,
    **kwargs,
):
    """Leave-one-cluster-out plot: the estimate refitted without each cluster in turn.

    Draws one row per left-out cluster (default: the outer random level) with the refitted
    estimate (point) and its confidence interval (line), the full-model estimate as a
    vertical reference line and its CI as a shaded band. Points whose estimate lies outside
    the full-model CI are drawn in red. The refits re-estimate the variance components (as
    ``res.loo_cluster()``); the CIs use the refit's own test and df (t with "contain" df
    recomputed on the remaining rows when ``test="t"``).

    Parameters
    ----------
    res : MetaResults
    ax : matplotlib Axes, optional
    cluster : str, optional
        Cluster column (default: the outer random level; required for equal-effects models).
    coef : int or str
        Coefficient shown (index or name; default the first, the intercept).
    transf : None, "ztor", "none" or callable
        As in :func:`forest`; for ZCOR the intercept of the intercept-only model is shown as r.
    xlabel, title : str, optional
    loo : pandas.DataFrame, optional
        The refits as ``res.loo_cluster(cluster)`` returns them (computed when not given).
    max_rows : int, optional
        Show at most this many clusters: those whose omission moves the estimate most (in
        their data order); the figure's ``mlmeta_rows`` attribute is then (shown, all).
    **kwargs
        Passed to ``Axes.scatter`` for the points.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(coef, str):
        if coef not in res.coef_names:
            raise InputError(
                f"coef {coef!r} is not a coefficient of the model ({', '.join(res.coef_names)})"
            )
        jc = res.coef_names.index(coef)
    else:
        jc = int(coef)
        if not 0 <= jc < res.p:
            raise InputError(f"coef must be between 0 and {res.p - 1}; got {coef}")
    if res.intercept_only or res.coef_names[jc] == "intrcpt":
        f = transform(res, transf)
    else:
        f = transform(res, "none" if transf is None else transf)
    cname = cluster or (res.data.random[0] if res.data.random else "cluster")
    if loo is None:
        loo = res.loo_cluster(cluster)
    pick = (lambda x: float(x)) if res.p == 1 else (lambda x: float(np.asarray(x)[jc]))
    df = pd.DataFrame(
        {
            "left_out": loo["left_out"],
            "beta": [pick(x) for x in loo["beta"]],
            "ci_lb": [pick(x) for x in loo["ci_lb"]],
            "ci_ub": [pick(x) for x in loo["ci_ub"]],
        }
    )
    full = f(np.array([res.core.beta[jc], res.tests.ci_lb[jc], res.tests.ci_ub[jc]]))
    total = len(df)
    if max_rows is not None and total > max_rows:
        move = np.abs(df["beta"].to_numpy() - res.core.beta[jc])
        move = np.where(np.isfinite(move), move, np.inf)
        keep = np.sort(np.argsort(-move, kind="stable")[: int(max_rows)])
        df = df.iloc[keep].reset_index(drop=True)
    n = len(df)
    ax, _ = new_axes(ax, (6.2, 1.3 + 0.2 * n))
    if n < total:
        ax.figure.mlmeta_rows = (n, total)
    pos = np.arange(n)
    b, l_, u_ = f(df["beta"].to_numpy()), f(df["ci_lb"].to_numpy()), f(df["ci_ub"].to_numpy())
    out = (b < full[1]) | (b > full[2])
    ax.axvspan(full[1], full[2], color="0.88", lw=0, zorder=0, gid="loo-full-ci")
    ax.axvline(
        full[0],
        color="0.2",
        lw=1.0,
        ls=(0, (4, 3)),
        zorder=1,
        gid="loo-full",
        label=f"all data: {fmt(full[0], 3)} [{fmt(full[1], 3)}, {fmt(full[2], 3)}]",
    )
    ax.hlines(pos, l_, u_, color=np.where(out, "#C03030", "black"), lw=0.9, zorder=2, gid="loo-ci")
    sc = {"s": 22, "marker": "o", "zorder": 3, "edgecolors": "none"}
    sc.update(kwargs)
    if "c" not in sc and "color" not in sc:
        sc["c"] = np.where(out, "#C03030", "black")
    ax.scatter(b, pos, gid="loo-points", **sc)
    ax.set_yticks(pos, [str(x) for x in df["left_out"]], fontsize=8 if n <= 40 else 6)
    ax.set_ylim(n - 0.4, -0.6)
    ax.set_ylabel(f"{cname} left out")
    lab = effect_label(res, f)
    if res.coef_names[jc] != "intrcpt":
        lab = f"Coefficient {res.coef_names[jc]}"
    ax.set_xlabel(xlabel if xlabel is not None else lab)
    style_spines(ax)
    ax.tick_params(axis="y", length=0)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    if title:
        ax.set_title(title, pad=22)
    return ax
