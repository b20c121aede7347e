"""Drawing one page of a forest plot onto an Axes: intervals and squares, the summary
diamond and prediction interval (or fitted values of a meta-regression), the effect axis, and
the text columns (labels on the left; k, weight and estimate [CI] on the right)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmeta.plots.base import fmt, offset_transform, sizes, style_spines
from mlmeta.plots.forestplot.layout import Columns, Positions

__all__ = ["Summary", "draw_page"]


@dataclass
class Summary:
    """The pooled estimate of an intercept-only model on the axis scale: ``est``, ``lb``,
    ``ub``, the prediction interval ``pi`` ((lb, ub) or None) and the row ``name``."""

    est: float
    lb: float
    ub: float
    pi: tuple[float, float] | None
    name: str


def draw_page(
    ax,
    rows,
    p: Positions,
    cols: Columns,
    *,
    sel: np.ndarray,
    summary: Summary | None,
    fitted=None,
    est_cols,
    w_strs,
    k_strs,
    est_header: str,
    label_header: str,
    show_weights: bool,
    digits: int,
    refline,
    xlim,
    xlabel: str,
    title,
    fs: float,
    log_x: bool,
    continued: bool = False,
    **kwargs,
):
    """Draw the rows ``sel`` (indices into ``rows``) at positions ``p.pos`` into ``ax``."""
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Polygon

    pos = p.pos[sel]
    est, lb, ub = rows.est[sel], rows.lb[sel], rows.ub[sel]
    last = p.last
    tau = summary is not None and summary.pi is not None
    y_sum = last + 1.7  # the diamond (intercept-only models)
    y_pi = y_sum + 1.0  # the prediction interval (models with random effects)
    bottom = (y_pi if tau else y_sum if summary is not None else last) + 0.8
    top = -1.9

    ax.hlines(pos, lb, ub, color="black", lw=0.8, zorder=2, gid="forest-ci")
    sc_kw = {"marker": "s", "color": "black", "linewidths": 0, "zorder": 3}
    sc_kw.update(kwargs)
    ax.scatter(est, pos, s=sizes(rows.weight, 70.0, 4.0)[sel], gid="forest-effects", **sc_kw)
    if refline is not None:
        ax.vlines(
            refline,
            -0.6,
            (y_pi if tau else (y_sum if summary is not None else last)) + 0.6,
            color="0.45",
            lw=0.8,
            ls=(0, (4, 3)),
            zorder=1,
            gid="forest-refline",
        )
    if summary is not None:
        ax.axhline(last + 0.85, color="black", lw=0.6, zorder=1)
        e, l_, u_ = summary.est, summary.lb, summary.ub
        ax.add_patch(
            Polygon(
                [(l_, y_sum), (e, y_sum - 0.42), (u_, y_sum), (e, y_sum + 0.42)],
                closed=True,
                facecolor="black",
                edgecolor="black",
                zorder=3,
                gid="forest-summary",
            )
        )
        if summary.pi is not None:
            pl, pu = summary.pi
            ax.hlines(y_pi, pl, pu, color="black", lw=1.2, zorder=3, gid="forest-pi")
            ax.vlines([pl, pu], y_pi - 0.25, y_pi + 0.25, color="black", lw=1.2, zorder=3)
    elif fitted is not None:
        fl, fu, fp = (np.asarray(a)[sel] for a in fitted)
        polys = [
            [(a, q), (c, q - 0.3), (b, q), (c, q + 0.3)] for a, b, c, q in zip(fl, fu, fp, pos)
        ]
        ax.add_collection(
            PolyCollection(
                polys,
                facecolors="0.78",
                edgecolors="0.55",
                linewidths=0.5,
                zorder=1.5,
                gid="forest-fitted",
            )
        )

    if log_x:
        ax.set_xscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(bottom, top)
    ax.set_yticks([])
    style_spines(ax, keep=("bottom",))
    ax.tick_params(axis="x", labelsize=fs)
    ax.set_xlabel(xlabel, fontsize=fs + 1)
    if title:
        ax.set_title(title, fontsize=fs + 2)

    # text columns
    left = offset_transform(ax, cols.x_lab)
    left_in = offset_transform(ax, cols.x_lab + cols.indent)
    txt = {"fontsize": fs, "va": "center", "clip_on": False}
    for yh, h in p.heads:
        ax.text(0, yh, h, transform=left, ha="left", fontweight="bold", **txt).set_gid(
            "forest-study"
        )
    for yh, h in p.singles:
        ax.text(0, yh, h, transform=left, ha="left", **txt).set_gid("forest-study")
    single_rows = {float(y) for y, _ in p.singles}
    for i, yy in zip(sel, pos):
        if float(yy) in single_rows:
            continue
        ax.text(
            0, yy, rows.label[i], transform=left_in if rows.grouped else left, ha="left", **txt
        ).set_gid("forest-label")
    hdr = {"fontsize": fs, "va": "center", "clip_on": False, "fontweight": "bold"}
    ax.text(
        0,
        -1.2,
        label_header + (" (continued)" if continued else ""),
        transform=left,
        ha="left",
        **hdr,
    )
    if k_strs is not None and cols.x_k is not None:
        tk = offset_transform(ax, cols.x_k)
        ax.text(1, -1.2, "k", transform=tk, ha="right", **hdr)
        for i, yy in zip(sel, pos):
            ax.text(1, yy, k_strs[i], transform=tk, ha="right", **txt).set_gid("forest-k")
    if show_weights:
        tw = offset_transform(ax, cols.x_w)
        ax.text(1, -1.2, "Weight %", transform=tw, ha="right", **hdr)
        for i, yy in zip(sel, pos):
            ax.text(1, yy, w_strs[i], transform=tw, ha="right", **txt).set_gid("forest-weight")
    te = [offset_transform(ax, x) for x in cols.x_e]
    ax.text(1, -1.2, est_header, transform=offset_transform(ax, cols.x_e_end), ha="right", **hdr)
    for i, yy in zip(sel, pos):
        for c in range(3):
            ax.text(1, yy, est_cols[c][i], transform=te[c], ha="right", **txt).set_gid(
                f"forest-estimate-{c}"
            )
    if summary is not None:
        ax.text(0, y_sum, summary.name, transform=left, ha="left", fontweight="bold", **txt)
        n = rows.n
        for c in range(3):
            ax.text(
                1, y_sum, est_cols[c][n], transform=te[c], ha="right", fontweight="bold", **txt
            ).set_gid(f"forest-summary-{c}")
        if summary.pi is not None:
            ax.text(0, y_pi, "Prediction interval", transform=left, ha="left", **txt)
            pl, pu = summary.pi
            ax.text(1, y_pi, f"[{fmt(pl, digits)},", transform=te[1], ha="right", **txt)
            ax.text(1, y_pi, f"{fmt(pu, digits)}]", transform=te[2], ha="right", **txt)
    return ax
