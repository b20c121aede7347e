"""Forest plots that scale: effect level or study level, one figure or a multi-page PDF.

* :func:`forest` -- one Axes: every effect size grouped under its study (``level="effect"``)
  or one row per study (``level="study"``: the study's effects combined, their number shown),
  with the summary diamond and the prediction interval (metafor's ``forest.rma``);
* :func:`forest_pages` -- the same plot cut into pages no taller than 12 inches, written as
  one multi-page PDF (for a forest of hundreds or thousands of effect sizes);
* :func:`auto_level` -- the level a report should show: effect level while it fits on one
  page, else study level.

The parts: :mod:`.rows` (what each row shows), :mod:`.layout` (positions, widths, pages) and
:mod:`.axis` (drawing a page).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlmeta.errors import InputError
from mlmeta.plots.base import effect_label, fmt, pyplot, transform
from mlmeta.plots.forestplot import layout as lay
from mlmeta.plots.forestplot.axis import Summary, draw_page
from mlmeta.plots.forestplot.rows import effect_rows, study_rows

__all__ = ["LEVELS", "auto_level", "forest", "forest_height", "forest_pages"]

LEVELS = ("effect", "study")


def _new_forest_axes(width: float, height: float, cols, title):
    """A figure of ``width`` x ``height`` inches whose Axes sits where the text columns leave
    room (their widths are known in points), without a layout engine: constrained layout
    would measure every one of a long forest's texts again on each draw."""
    plt = pyplot()
    fig = plt.figure(figsize=(width, height))
    left = (cols.label_width + 18.0) / 72.0
    right = (cols.x_e_end + 10.0) / 72.0
    top = 0.12 + (0.3 if title else 0.0)
    bottom = 0.5
    ax = fig.add_axes(
        (
            left / width,
            bottom / height,
            max(width - left - right, 1.0) / width,
            max(height - top - bottom, 0.5) / height,
        )
    )
    fig.mlmeta_fixed_layout = True  # everything is inside the figure: no tight bbox needed
    return ax


def _summary_name(res) -> str:
    rand = res.data.random
    if len(rand) >= 2 or getattr(res, "is_structured", False):
        return "Multilevel model"
    return "Random-effects model" if rand else "Equal-effects model"


def _prepare(
    res, *, level, transf, labels, study_labels, sort, digits, fontsize, show_weights, refline, xlim
):
    if level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    f = transform(res, transf)
    if level == "study":
        if labels is not None:
            raise InputError("labels are effect-size labels; at level='study' use study_labels")
        rows = study_rows(res, f, study_labels=study_labels, sort=sort)
    else:
        rows = effect_rows(res, f, labels=labels, study_labels=study_labels, sort=sort)
    pr = res.predict()
    summary = None
    fitted = None
    if res.intercept_only:
        # one prediction interval: none for an equal-effects model, nor for a structured model
        # with a variance per inner level (one interval per level, see predict)
        has_re = bool(res.data.random) or getattr(res, "is_structured", False)
        pi = (
            (float(f(pr.pi_lb)[0]), float(f(pr.pi_ub)[0]))
            if has_re and np.size(pr.pred) == 1
            else None
        )
        summary = Summary(
            float(f(pr.pred)[0]),
            float(f(pr.ci_lb)[0]),
            float(f(pr.ci_ub)[0]),
            pi,
            _summary_name(res),
        )
    elif level == "effect":
        fitted = (f(pr.ci_lb), f(pr.ci_ub), f(pr.pred))
    est_cols = [
        [fmt(a, digits) for a in rows.est],
        [f"[{fmt(a, digits)}," for a in rows.lb],
        [f"{fmt(a, digits)}]" for a in rows.ub],
    ]
    if summary is not None:
        est_cols[0].append(fmt(summary.est, digits))
        est_cols[1].append(f"[{fmt(summary.lb, digits)},")
        est_cols[2].append(f"{fmt(summary.ub, digits)}]")
    w_strs = [f"{x:.1f}" for x in rows.weight]
    k_strs = None if rows.n_effects is None else [str(int(x)) for x in rows.n_effects]
    pct = res.spec.level_percent
    sym = {"r": "r", "or": "OR"}.get(f.kind or "", "Estimate")
    est_header = f"{sym} [{pct:g}% CI]"
    heads = [h for h in rows.heads if h is not None]
    extra = ["Prediction interval", _summary_name(res)]
    cols = lay.columns(
        rows.label,
        heads,
        est_cols,
        w_strs,
        k_strs,
        est_header,
        float(fontsize),
        show_weights,
        rows.grouped,
        extra,
    )
    null = f.null
    ref = None if refline is None else (null if refline == 0.0 and f.kind == "or" else refline)
    if xlim is None:
        lo = [np.nanmin(rows.lb)]
        hi = [np.nanmax(rows.ub)]
        if summary is not None:
            lo.append(summary.lb)
            hi.append(summary.ub)
            if summary.pi is not None:
                lo.append(summary.pi[0])
                hi.append(summary.pi[1])
        if ref is not None:
            lo.append(ref)
            hi.append(ref)
        a, b = min(lo), max(hi)
        if f.kind == "or":
            xlim = (a / 1.08, b * 1.08)
        else:
            pad = 0.04 * (b - a if b > a else 1.0)
            xlim = (a - pad, b + pad)
    if level == "study":
        label_header = "Study"
    elif rows.grouped:
        label_header = "Study / effect size"
    else:
        label_header = "Study" if res.data.random else "Effect size"
    return {
        "rows": rows,
        "f": f,
        "summary": summary,
        "fitted": fitted,
        "est_cols": est_cols,
        "w_strs": w_strs,
        "k_strs": k_strs,
        "est_header": est_header,
        "cols": cols,
        "ref": ref,
        "xlim": xlim,
        "label_header": label_header,
    }


def forest_height(res, level: str = "effect") -> tuple[float, int]:
    """(height in inches of the one-figure forest plot at ``level``, number of rows)."""
    f = transform(res, "none")
    rows = study_rows(res, f) if level == "study" else effect_rows(res, f)
    n_units = lay.units(rows.n, rows.groups, rows.heads, rows.single)
    return lay.height_inches(n_units, res.intercept_only), rows.n


def auto_level(res, max_height: float = lay.MAX_PAGE_INCHES) -> str:
    """ "effect" when the effect-level forest fits on one page of ``max_height`` inches, else
    "study" (models without a study level, or with a structure other than one nesting, are
    always drawn at the effect level)."""
    if not res.data.random or getattr(res, "is_structured", False):
        return "effect"
    f = transform(res, "none")
    rows = effect_rows(res, f)
    n_units = lay.units(rows.n, rows.groups, rows.heads, rows.single)
    return "effect" if lay.height_inches(n_units, res.intercept_only) <= max_height else "study"


def forest(
    res,
    ax=None,
    *,
    level: str = "effect",
    transf=None,
    labels=None,
    study_labels=None,
    sort=False,
    show_weights: bool = True,
    refline: float | None = 0.0,
    xlim=None,
    xlabel: str | None = None,
    title: str | None = None,
    digits: int = 2,
    fontsize: float = 8.0,
    max_height: float | None = None,
    **kwargs,
):
    """Forest plot: every effect size (or every study) with its CI, and the summary.

    At ``level="effect"`` draws, from top to bottom, one row per effect size -- a square at
    the observed effect with area proportional to its weight and a line for its confidence
    interval ``yi -+ z_(1-alpha/2) sqrt(vi)`` -- grouped under a bold heading row for each
    study with several effect sizes (the outer random-effects level; the effects are indented
    below it; a study with one effect size is one row labelled with the study), then the
    summary diamond (pooled estimate and its CI from ``res.predict()``) and the prediction
    interval as a capped bar below it. Text columns on the right give each row's weight
    ("Weight %") and estimate [CI]. Layout follows metafor's ``forest.rma`` (Viechtbauer 2010).

    At ``level="study"`` each row is a study: its effect sizes combined by GLS with the
    fitted within-study covariance (see :mod:`mlmeta.plots.forestplot.rows`), the number of
    effect sizes in a "k" column and the study's total weight. Use it, or
    :func:`forest_pages`, when there are too many effect sizes for one page
    (:func:`auto_level`).

    The weights are ``res.weights()``: the row sums of W = V^{-1} of the fitted marginal
    covariance, normalised to 100 %. For the intercept-only model they reproduce the pooled
    estimate exactly, beta = sum_i w_i y_i / 100.

    Models: equal-effects (no grouping, no prediction interval); two-level; three- and
    more-level (grouped by the outer level); moderator models (no diamond: each effect-size
    row shows its fitted value x_i'b with its CI as a small grey diamond, as metafor does).

    Parameters
    ----------
    res : MetaResults
    ax : matplotlib Axes, optional
        Axes to draw into; by default a new figure sized to the number of rows. The label and
        text columns are drawn outside the Axes, so leave room when you pass your own.
    level : {"effect", "study"}
    transf : None, "ztor", "exp", "none" or callable
        None back-transforms Fisher's z to r for ``measure="ZCOR"`` and leaves other
        measures on their model scale (log odds ratios are labelled as such); "exp" draws odds
        ratios on a log axis.
    labels : str or sequence, optional
        Effect-size labels: a column or one label per effect size (default: the inner id).
    study_labels : str or mapping, optional
        Study labels: a column (first value per study) or a mapping from the outer id.
    sort : bool or {"effect", "weight"}
        False keeps the data order; True or "effect" sorts rows within studies and the studies
        by their weighted mean effect; "weight" sorts by weight, largest first.
    show_weights : bool
    refline : float or None
        Dashed reference line (0 means "no effect": drawn at OR = 1 with ``transf="exp"``).
    xlim : (float, float), optional
    xlabel, title : str, optional
    digits : int
    fontsize : float
    max_height : float, optional
        Inches: when the whole plot would be taller, only the rows of the first page of
        :func:`forest_pages` are drawn (with the summary); the figure's ``mlmeta_rows``
        attribute is then (rows shown, rows in all).
    **kwargs
        Passed to ``Axes.scatter`` for the squares (e.g. ``color``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    d = _prepare(
        res,
        level=level,
        transf=transf,
        labels=labels,
        study_labels=study_labels,
        sort=sort,
        digits=digits,
        fontsize=fontsize,
        show_weights=show_weights,
        refline=refline,
        xlim=xlim,
    )
    rows = d["rows"]
    groups, heads, single = rows.groups, rows.heads, rows.single
    p = lay.positions(rows.n, groups, heads, single)
    h = lay.height_inches(p.last + 1.0, d["summary"] is not None)
    shown = None
    if max_height is not None and h > max_height:
        groups, heads, single = lay.paginate(
            groups, heads, single, lay.rows_per_page(max_height, d["summary"] is not None)
        )[0]
        p = lay.positions(rows.n, groups, heads, single)
        h = lay.height_inches(p.last + 1.0, d["summary"] is not None)
        shown = int(sum(len(g) for g in groups))
    if ax is None:
        ax = _new_forest_axes(lay.width_inches(d["cols"]), h, d["cols"], title)
    if shown is not None:
        ax.figure.mlmeta_rows = (shown, rows.n)
    sel = np.concatenate(groups) if groups else np.arange(0)
    return draw_page(
        ax,
        rows,
        p,
        d["cols"],
        sel=sel,
        summary=d["summary"],
        fitted=d["fitted"],
        est_cols=d["est_cols"],
        w_strs=d["w_strs"],
        k_strs=d["k_strs"],
        est_header=d["est_header"],
        label_header=d["label_header"],
        show_weights=show_weights,
        digits=digits,
        refline=d["ref"],
        xlim=d["xlim"],
        xlabel=xlabel if xlabel is not None else effect_label(res, d["f"]),
        title=title,
        fs=float(fontsize),
        log_x=d["f"].kind == "or",
        **kwargs,
    )


def forest_pages(
    res,
    path,
    *,
    level: str = "effect",
    max_height: float = lay.MAX_PAGE_INCHES,
    transf=None,
    labels=None,
    study_labels=None,
    sort=False,
    show_weights: bool = True,
    refline: float | None = 0.0,
    xlabel=None,
    title=None,
    digits: int = 2,
    fontsize: float = 8.0,
    metadata=None,
    **kwargs,
) -> int:
    """Write the forest plot as a multi-page PDF, no page taller than ``max_height`` inches.

    The rows are cut between studies (a study longer than a page continues on the next,
    its heading marked "(continued)"); every page has the column headers and the same effect
    axis, and the last page the summary diamond and prediction interval. Other arguments as
    :func:`forest`.

    Returns
    -------
    int
        The number of pages written to ``path``.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    d = _prepare(
        res,
        level=level,
        transf=transf,
        labels=labels,
        study_labels=study_labels,
        sort=sort,
        digits=digits,
        fontsize=fontsize,
        show_weights=show_weights,
        refline=refline,
        xlim=None,
    )
    rows = d["rows"]
    if max_height < 3:
        raise InputError(f"max_height must be at least 3 inches; got {max_height!r}")
    pages = lay.paginate(
        rows.groups,
        rows.heads,
        rows.single,
        lay.rows_per_page(max_height, d["summary"] is not None),
    )
    plt = pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width = lay.width_inches(d["cols"])
    md = {"Creator": "mlmeta", "CreationDate": None}
    md.update(metadata or {})
    with PdfPages(path, metadata=md) as pdf:
        for n, (groups, heads, single) in enumerate(pages):
            last_page = n == len(pages) - 1
            summ = d["summary"] if last_page else None
            p = lay.positions(rows.n, groups, heads, single)
            t = title
            if len(pages) > 1:
                t = f"{title + ' ' if title else ''}(page {n + 1} of {len(pages)})"
            ax = _new_forest_axes(
                width, lay.height_inches(p.last + 1.0, summ is not None), d["cols"], t
            )
            fig = ax.figure
            sel = np.concatenate(groups)
            draw_page(
                ax,
                rows,
                p,
                d["cols"],
                sel=sel,
                summary=summ,
                fitted=d["fitted"],
                est_cols=d["est_cols"],
                w_strs=d["w_strs"],
                k_strs=d["k_strs"],
                est_header=d["est_header"],
                label_header=d["label_header"],
                show_weights=show_weights,
                digits=digits,
                refline=d["ref"],
                xlim=d["xlim"],
                xlabel=xlabel if xlabel is not None else effect_label(res, d["f"]),
                title=t,
                fs=float(fontsize),
                log_x=d["f"].kind == "or",
                continued=n > 0,
                **kwargs,
            )
            pdf.savefig(fig)
            plt.close(fig)
    return len(pages)
