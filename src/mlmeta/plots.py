"""Publication-quality plots of a fitted multilevel model (matplotlib, imported lazily).

``import mlmeta`` does not import matplotlib: every function here imports it when called
(install it with ``pip install mlmeta[plot]``). Each plotting function takes a fitted
:class:`mlmeta.results.MetaResults`, draws into ``ax`` (a new figure is created when ``ax`` is
None) and returns the Axes; extra keyword arguments go to the matplotlib call that draws the
effect sizes (e.g. ``color=``, ``alpha=``).

* :func:`forest` -- effect sizes grouped under their study, the summary diamond and the
  prediction interval (metafor's ``forest.rma``).
* :func:`funnel` -- contour-enhanced funnel plot (metafor's ``funnel.rma``; Peters et al. 2008).
* :func:`orchard` -- orchard plot of a categorical moderator (orchaRd's ``orchard_plot``;
  Nakagawa et al. 2021).
* :func:`bubble` -- bubble plot of a continuous moderator (metafor's ``regplot``).
* :func:`profile_plot` -- profile log-likelihood of the variance components (metafor's
  ``profile.rma.mv``).
* :func:`loo_plot` -- leave-one-cluster-out estimates.
* :func:`save_figure` -- write a figure as PNG and SVG.

Effect sizes of ``measure="ZCOR"`` (Fisher's z) are shown back-transformed to correlations
(r = tanh z) by default; ``transf="none"`` keeps the z scale.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. Journal of
Statistical Software, 36(3), 1-48.
Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R., & Rushton, L. (2008).
Contour-enhanced meta-analysis funnel plots help distinguish publication bias from other causes
of asymmetry. Journal of Clinical Epidemiology, 61(10), 991-996.
Nakagawa, S., Lagisz, M., O'Dea, R. E., Rutkowska, J., Yang, Y., Noble, D. W. A., &
Senior, A. M. (2021). The orchard plot: Cultivating a forest plot for use in ecology,
evolution, and beyond. Research Synthesis Methods, 12(1), 4-12.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from mlmeta.core.dist import chi2_isf, norm_isf

from mlmeta.errors import InputError
from mlmeta.spec import to_fraction

__all__ = ["forest", "funnel", "orchard", "bubble", "profile_plot", "loo_plot", "save_figure"]

_MINUS = "\u2212"


# ---------------------------------------------------------------------------------- helpers
def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("mlmeta's plots need matplotlib: pip install 'mlmeta[plot]'") from exc
    return plt


def _new_axes(ax, figsize):
    """``ax`` itself, or the single Axes of a new constrained-layout figure."""
    if ax is not None:
        return ax, False
    plt = _pyplot()
    fig = plt.figure(figsize=figsize, layout="constrained")
    return fig.add_subplot(), True


def _transform(res, transf) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """(function, back-transformed to r?) for ``transf`` (None: r for ZCOR, else identity)."""
    if transf is None:
        transf = "ztor" if res.measure == "ZCOR" else "none"
    if callable(transf):
        return (lambda x: np.asarray(transf(np.asarray(x, dtype=float)), dtype=float)), False
    if transf is False or str(transf).lower() in ("none", "identity"):
        return (lambda x: np.asarray(x, dtype=float)), False
    if str(transf).lower() in ("ztor", "tanh"):
        return np.tanh, True
    raise InputError(f"transf must be None, 'ztor', 'none' or a function; got {transf!r}")


def _effect_label(res, to_r: bool, resid: bool = False) -> str:
    if to_r:
        lab = "Correlation (r)"
    elif res.measure == "ZCOR":
        lab = "Fisher's z"
    elif res.measure:
        lab = f"Effect size ({res.measure})"
    else:
        lab = "Effect size"
    if resid:
        lab = "Residual" if lab == "Effect size" else f"Residual ({lab})"
    return lab


def _fmt(x: float, digits: int) -> str:
    if not np.isfinite(x):
        return "NA"
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s.replace("-", _MINUS)


def _text_width(s: str, size: float, weight: str = "normal") -> float:
    """Width of ``s`` in points, measured with an Agg renderer at 72 dpi (any backend)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    global _RENDERER
    if not s:
        return 0.0
    if _RENDERER is None:
        _RENDERER = RendererAgg(10, 10, 72)
    w, _, _ = _RENDERER.get_text_width_height_descent(
        s, FontProperties(size=size, weight=weight), ismath=False)
    return float(w)


_RENDERER = None


def _offset_transform(ax, dx_pt: float, dy_pt: float = 0.0, ydata: bool = True):
    """x at the axes' left (0) or right (1) edge plus ``dx_pt`` points; y in data coords."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    base = blended_transform_factory(ax.transAxes, ax.transData) if ydata else ax.transAxes
    return base + ScaledTranslation(dx_pt / 72.0, dy_pt / 72.0, ax.figure.dpi_scale_trans)


def _sizes(w: np.ndarray, smax: float, smin: float) -> np.ndarray:
    """Marker areas (pt^2) proportional to ``w`` (non-positive weights get the minimum)."""
    w = np.asarray(w, dtype=float)
    top = np.max(w) if np.any(w > 0) else 1.0
    return np.clip(smax * w / top, smin, smax)


def _column(res, name: str, what: str) -> pd.Series:
    fr = res.data.frame
    if name not in fr.columns or name in ("_yi", "_vi"):
        cols = [c for c in fr.columns if c not in ("_yi", "_vi")]
        raise InputError(f"{what} column {name!r} not found in the model's data (columns: "
                         f"{', '.join(map(str, cols))})")
    return fr[name].reset_index(drop=True)


def _quote(name: str) -> str:
    return name if name.isidentifier() else f"`{name}`"


def _refit(res, mods: str):
    return res.refit(mods=mods)


def _style_spines(ax, keep=("bottom", "left")):
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(side in keep)


# ---------------------------------------------------------------------------------- forest
def forest(res, ax=None, *, transf=None, labels=None, study_labels=None, sort=False,
           show_weights: bool = True, refline: float | None = 0.0, xlim=None,
           xlabel: str | None = None, title: str | None = None, digits: int = 2,
           fontsize: float = 8.0, **kwargs):
    """Forest plot: every effect size with its CI, grouped under its study, and the summary.

    Draws, from top to bottom, one row per effect size -- a square at the observed effect with
    area proportional to its weight and a line for its confidence interval
    ``yi -+ z_(1-alpha/2) sqrt(vi)`` -- grouped under a bold heading row for each study (the
    outer random-effects level; each effect size is indented below its study), then the
    summary diamond (pooled estimate and its CI from ``res.predict()``) and the prediction
    interval as a capped bar below it. Text columns on the right give each row's weight
    ("Weight %") and estimate [CI]. Layout follows metafor's ``forest.rma`` (Viechtbauer 2010).

    The weights are ``res.weights()``: the row sums of W = V^{-1} of the fitted marginal
    covariance, normalised to 100 %. For the intercept-only model they reproduce the pooled
    estimate exactly, beta = sum_i w_i y_i / 100 (they can be negative in rare cases; such
    rows get the smallest square).

    Models:

    * equal-effects model (no random effects): one row per effect size, no grouping, no
      prediction interval (it equals the CI);
    * two-level model (``random="study"`` or ``"id"``): grouped by study when a study has
      several effect sizes, otherwise one row per study;
    * three- and more-level models: grouped by the outer level (``random="study/es"``).
    * moderator models: there is no single summary, so no diamond and no prediction interval
      are drawn; instead each row shows its fitted value x_i'b with its CI as a small grey
      diamond (as metafor's ``forest.rma`` does for meta-regressions).

    Parameters
    ----------
    res : MetaResults
        Fitted model (``mlmeta.rma_mv``).
    ax : matplotlib Axes, optional
        Axes to draw into; by default a new figure sized to the number of rows. The label and
        text columns are drawn outside the Axes, so leave room when you pass your own.
    transf : None, "ztor", "none" or callable
        Transformation of effects and intervals; None back-transforms Fisher's z to r when
        ``res.measure == "ZCOR"`` and leaves other measures as they are.
    labels : str or sequence, optional
        Labels of the effect-size rows: a column of the data or one label per effect size
        (default: the inner random-effects id, e.g. "es 3").
    study_labels : str or mapping, optional
        Study headings: a column of the data (first value per study) or a mapping from the
        outer id to a label (default: "<column> <id>", e.g. "study 12").
    sort : bool or {"effect", "weight"}
        False keeps the data order; True or "effect" sorts effect sizes within studies and the
        studies by their weighted mean effect; "weight" sorts by weight, largest first.
    show_weights : bool
        Show the "Weight %" column.
    refline : float or None
        Position of the dashed reference line (on the transformed scale), None for none.
    xlim : (float, float), optional
        Limits of the effect axis (default: all intervals).
    xlabel, title : str, optional
    digits : int
        Decimals of the text columns.
    fontsize : float
        Font size of the text columns and labels (points).
    **kwargs
        Passed to ``Axes.scatter`` for the effect-size squares (e.g. ``color``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Polygon

    f, to_r = _transform(res, transf)
    y, v, k = res.data.y, res.data.v, res.k
    zc = norm_isf((1 - res.level) / 2)
    se = np.sqrt(v)
    est, lb, ub = f(y), f(y - zc * se), f(y + zc * se)
    w = res.weights()
    rand = res.data.random
    frame = res.data.frame.reset_index(drop=True)
    grouped = bool(rand) and len(pd.unique(res.data.factors[0])) < k

    # ---- row labels
    if labels is None:
        if grouped and len(rand) >= 2:
            eff_lab = [f"{rand[-1]} {x}" for x in frame[rand[-1]]]
        elif grouped:
            eff_lab = None  # numbered within the study below
        elif rand:
            eff_lab = [f"{rand[0]} {x}" for x in frame[rand[0]]]
        else:
            eff_lab = [f"Effect size {i + 1}" for i in range(k)]
    elif isinstance(labels, str):
        eff_lab = [str(x) for x in _column(res, labels, "labels")]
    else:
        eff_lab = [str(x) for x in labels]
        if len(eff_lab) != k:
            raise InputError(f"labels has {len(eff_lab)} entries but the model has {k} effect "
                             "sizes")

    # ---- groups and order
    if grouped:
        gid_vals = res.data.factors[0]
        codes, uniq = pd.factorize(pd.Series(gid_vals), sort=False)
        groups = [np.flatnonzero(codes == c) for c in range(len(uniq))]
        if eff_lab is None:
            eff_lab = [""] * k
            for g in groups:
                for n, i in enumerate(g):
                    eff_lab[i] = f"effect size {n + 1}"
        if study_labels is None:
            heads = [f"{rand[0]} {u}" for u in uniq]
        elif isinstance(study_labels, str):
            col = _column(res, study_labels, "study_labels")
            heads = [str(col.iloc[g[0]]) for g in groups]
        elif isinstance(study_labels, Mapping):
            heads = [str(study_labels.get(u, study_labels.get(str(u), f"{rand[0]} {u}")))
                     for u in uniq]
        else:
            raise InputError("study_labels must be a column name or a mapping from the study "
                             f"id to its label; got {type(study_labels).__name__}")
    else:
        groups = [np.arange(k)]
        heads = [None]

    if sort not in (False, None, True, "effect", "weight"):
        raise InputError(f"sort must be False, True, 'effect' or 'weight'; got {sort!r}")
    if sort:
        key = (lambda idx: y[idx]) if sort in (True, "effect") else (lambda idx: -w[idx])
        groups = [g[np.argsort(key(g), kind="stable")] for g in groups]
        if grouped:
            def gkey(g):
                if sort == "weight":
                    return -np.sum(w[g])
                ww = np.clip(w[g], 1e-12, None)
                return float(np.sum(ww * y[g]) / np.sum(ww))
            o = np.argsort([gkey(g) for g in groups], kind="stable")
            groups = [groups[i] for i in o]
            heads = [heads[i] for i in o]

    # ---- row positions (top row at 0, increasing downwards)
    pos = np.empty(k)
    head_rows: list[tuple[float, str]] = []
    yy = 0.0
    for gi, (g, h) in enumerate(zip(groups, heads)):
        if h is not None:
            if gi > 0:
                yy += 0.4
            head_rows.append((yy, h))
            yy += 1.0
        for i in g:
            pos[i] = yy
            yy += 1.0
    last_effect = yy - 1.0
    summary = res.intercept_only
    tau = bool(rand)
    pr = res.predict()
    if summary:
        y_sum = last_effect + 1.7
        y_pi = y_sum + 1.0 if tau else None
        bottom = (y_pi if tau else y_sum) + 0.8
    else:
        y_sum = y_pi = None
        bottom = last_effect + 0.8
    top = -1.9  # room for the column headers at y = -1.2

    # ---- geometry of the text columns (points)
    fs = float(fontsize)
    indent = 10.0 if grouped else 0.0
    wl = max([_text_width(s, fs) + indent for s in eff_lab] +
             [_text_width(h, fs, "bold") for _, h in head_rows] +
             [_text_width("Prediction interval", fs), _text_width("Multilevel model", fs, "bold")])
    x_lab = -(wl + 12.0)
    w_strs = [f"{x:.1f}" for x in w]
    est_cols = [[_fmt(a, digits) for a in est], [f"[{_fmt(a, digits)}," for a in lb],
                [f"{_fmt(a, digits)}]" for a in ub]]
    if summary:
        s_est = [f(pr.pred)[0], f(pr.ci_lb)[0], f(pr.ci_ub)[0]]
        est_cols[0].append(_fmt(s_est[0], digits))
        est_cols[1].append(f"[{_fmt(s_est[1], digits)},")
        est_cols[2].append(f"{_fmt(s_est[2], digits)}]")
    cw = [max(_text_width(s, fs, "bold") for s in col) for col in est_cols]
    x_w = 12.0 + max(_text_width("Weight %", fs, "bold"), max(_text_width(s, fs) for s in w_strs))
    x0 = (x_w + 14.0) if show_weights else 10.0
    x_e = [x0 + cw[0], x0 + cw[0] + 5.0 + cw[1], x0 + cw[0] + 5.0 + cw[1] + 4.0 + cw[2]]
    pct = res.spec.level_percent
    lab_r = f"r [{pct:g}% CI]" if to_r else f"Estimate [{pct:g}% CI]"
    x_e_end = max(x_e[2], x0 + _text_width(lab_r, fs, "bold"))  # the header may be wider

    n_rows = bottom - top
    ax, _ = _new_axes(ax, ((wl + 12 + x_e_end) / 72.0 + 3.8, 0.19 * n_rows + 0.9))

    # ---- intervals and squares
    ax.hlines(pos, lb, ub, color="black", lw=0.8, zorder=2, gid="forest-ci")
    sc_kw = {"marker": "s", "color": "black", "linewidths": 0, "zorder": 3}
    sc_kw.update(kwargs)
    ax.scatter(est, pos, s=_sizes(w, 70.0, 4.0), gid="forest-effects", **sc_kw)
    if refline is not None:
        ax.vlines(refline, -0.6, (y_pi if summary and tau else (y_sum or last_effect)) + 0.6,
                  color="0.45", lw=0.8, ls=(0, (4, 3)), zorder=1, gid="forest-refline")
    if summary:
        ax.axhline(last_effect + 0.85, color="black", lw=0.6, zorder=1)

    if summary:
        e, l_, u_ = s_est
        ax.add_patch(Polygon([(l_, y_sum), (e, y_sum - 0.42), (u_, y_sum), (e, y_sum + 0.42)],
                             closed=True, facecolor="black", edgecolor="black", zorder=3,
                             gid="forest-summary"))
        if tau:
            pl, pu = f(pr.pi_lb)[0], f(pr.pi_ub)[0]
            ax.hlines(y_pi, pl, pu, color="black", lw=1.2, zorder=3, gid="forest-pi")
            ax.vlines([pl, pu], y_pi - 0.25, y_pi + 0.25, color="black", lw=1.2, zorder=3)
    else:
        fl, fu, fp = f(pr.ci_lb), f(pr.ci_ub), f(pr.pred)
        polys = [[(a, p), (c, p - 0.3), (b, p), (c, p + 0.3)]
                 for a, b, c, p in zip(fl, fu, fp, pos)]
        ax.add_collection(PolyCollection(polys, facecolors="0.78", edgecolors="0.55",
                                         linewidths=0.5, zorder=1.5, gid="forest-fitted"))

    # ---- axes
    lo = [np.min(lb)]
    hi = [np.max(ub)]
    if summary:
        lo.append(s_est[1])
        hi.append(s_est[2])
        if tau:
            lo.append(f(pr.pi_lb)[0])
            hi.append(f(pr.pi_ub)[0])
    if refline is not None:
        lo.append(refline)
        hi.append(refline)
    if xlim is None:
        a, b = min(lo), max(hi)
        pad = 0.04 * (b - a if b > a else 1.0)
        xlim = (a - pad, b + pad)
    ax.set_xlim(*xlim)
    ax.set_ylim(bottom, top)
    ax.set_yticks([])
    _style_spines(ax, keep=("bottom",))
    ax.tick_params(axis="x", labelsize=fs)
    ax.set_xlabel(xlabel if xlabel is not None else _effect_label(res, to_r), fontsize=fs + 1)
    if title:
        ax.set_title(title, fontsize=fs + 2)

    # ---- text columns
    left = _offset_transform(ax, x_lab)
    left_in = _offset_transform(ax, x_lab + indent)
    txt = {"fontsize": fs, "va": "center", "clip_on": False}
    for yh, h in head_rows:
        t = ax.text(0, yh, h, transform=left, ha="left", fontweight="bold", **txt)
        t.set_gid("forest-study")
    for i in range(k):
        ax.text(0, pos[i], eff_lab[i], transform=left_in, ha="left", **txt).set_gid(
            "forest-label")
    hdr = {"fontsize": fs, "va": "center", "clip_on": False, "fontweight": "bold"}
    ax.text(0, -1.2, "Study / effect size" if grouped else ("Study" if rand else "Effect size"),
            transform=left, ha="left", **hdr)
    if show_weights:
        tw = _offset_transform(ax, x_w)
        ax.text(1, -1.2, "Weight %", transform=tw, ha="right", **hdr)
        for i in range(k):
            ax.text(1, pos[i], w_strs[i], transform=tw, ha="right", **txt).set_gid(
                "forest-weight")
    te = [_offset_transform(ax, x) for x in x_e]
    ax.text(1, -1.2, lab_r, transform=_offset_transform(ax, x_e_end), ha="right", **hdr)
    for i in range(k):
        for c in range(3):
            ax.text(1, pos[i], est_cols[c][i], transform=te[c], ha="right", **txt).set_gid(
                f"forest-estimate-{c}")
    if summary:
        name = ("Multilevel model" if len(rand) >= 2 else "RE model" if rand else "EE model")
        ax.text(0, y_sum, name, transform=left, ha="left", fontweight="bold", **txt)
        for c in range(3):
            ax.text(1, y_sum, est_cols[c][k], transform=te[c], ha="right", fontweight="bold",
                    **txt).set_gid(f"forest-summary-{c}")
        if tau:
            ax.text(0, y_pi, "Prediction interval", transform=left, ha="left", **txt)
            pl, pu = f(pr.pi_lb)[0], f(pr.pi_ub)[0]
            ax.text(1, y_pi, f"[{_fmt(pl, digits)},", transform=te[1], ha="right", **txt)
            ax.text(1, y_pi, f"{_fmt(pu, digits)}]", transform=te[2], ha="right", **txt)
    return ax


# ---------------------------------------------------------------------------------- funnel
def funnel(res, ax=None, *, contours=(0.10, 0.05, 0.01), level: float = 95,
           shades=None, legend: bool = True, xlabel: str | None = None,
           title: str | None = None, **kwargs):
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
        raise InputError(f"shades needs one colour per contour ({len(alphas)}); got "
                         f"{len(shades)}")

    ax, _ = _new_axes(ax, (6.4, 4.6))
    extent = max(np.max(np.abs(x - center)), crit * ymax) * 1.08
    lo = min(center - extent, np.min(x) - 0.05 * extent,
             -(zs[-1] * ymax * 1.05) if zs else np.inf)
    hi = max(center + extent, np.max(x) + 0.05 * extent, (zs[-1] * ymax * 1.05) if zs else -np.inf)
    sgrid = np.array([0.0, ymax])
    handles = []
    if zs:
        # outermost region (p <= smallest alpha) is the axes background, then inner bands
        ax.fill_between([lo, hi], 0, ymax, color=shades[-1], lw=0, zorder=0,
                        gid="funnel-contour")
        for i in range(len(zs) - 1, -1, -1):
            inner = "white" if i == 0 else shades[i - 1]
            ax.fill_betweenx(sgrid, -zs[i] * sgrid, zs[i] * sgrid, color=inner, lw=0,
                             zorder=0, gid="funnel-contour")
        labs = [f"p > {_p(alphas[0])}"]
        labs += [f"{_p(alphas[i + 1])} < p \u2264 {_p(alphas[i])}" for i in range(len(zs) - 1)]
        labs.append(f"p \u2264 {_p(alphas[-1])}")
        cols = ["white"] + shades
        handles = [Patch(facecolor=c, edgecolor="0.4", lw=0.5, label=lab)
                   for c, lab in zip(cols, labs)]
    ax.plot([center - crit * ymax, center, center + crit * ymax], [ymax, 0, ymax],
            color="0.15", lw=0.9, ls=(0, (4, 3)), zorder=2, gid="funnel-pseudo-ci")
    ax.axvline(center, color="0.15", lw=1.0, zorder=2, gid="funnel-estimate")
    sc = {"s": 22, "color": "black", "edgecolors": "white", "linewidths": 0.5, "zorder": 3}
    sc.update(kwargs)
    ax.scatter(x, sei, gid="funnel-points", **sc)
    ax.set_xlim(lo, hi)
    ax.set_ylim(ymax, 0.0)
    ax.set_ylabel("Standard error")
    ax.set_xlabel(xlabel if xlabel is not None else
                  _effect_label(res, False, resid=not res.intercept_only))
    _style_spines(ax)
    if title:
        ax.set_title(title)
    if legend and handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                  fontsize=8, title="Two-sided p", title_fontsize=8, alignment="left")
    return ax


def _p(a: float) -> str:
    """APA-style p level: .10, .05, .01, .001."""
    s = f"{a:.2f}" if abs(a * 100 - round(a * 100)) < 1e-9 else f"{a:g}"
    return s[1:] if s.startswith("0.") else s


# ---------------------------------------------------------------------------------- orchard
def _categories(col: pd.Series) -> list:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [c for c in col.cat.categories if (col == c).any()]
    return sorted(pd.unique(col.dropna()), key=lambda u: (str(type(u)), u))


def _uses_only(res, moderator: str) -> bool:
    return tuple(res.data.formula.variables) == (moderator,)


def orchard(res, moderator: str, ax=None, *, transf=None, jitter: float = 0.3, seed: int = 1,
            pi: bool = True, legend: bool = True, refline: float | None = 0.0,
            xlabel: str | None = None, title: str | None = None, **kwargs):
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
    col = _column(res, moderator, "moderator")
    if col.isna().any():
        raise InputError(f"moderator {moderator!r} has missing values among the model's rows")
    levels = _categories(col)
    if len(levels) > 30:
        raise InputError(f"moderator {moderator!r} has {len(levels)} distinct values; the "
                         "orchard plot is for categorical moderators (use bubble())")
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    fit = None
    if _uses_only(res, moderator) and (not numeric or any(
            n.startswith(f"factor({moderator})") for n in res.coef_names)):
        fit = res
    if fit is None:
        q = _quote(moderator)
        fit = _refit(res, f"~ factor({q})" if numeric else f"~ {q}")
    nd = pd.DataFrame({moderator: pd.Series(levels, dtype=col.dtype)})
    pr = fit.predict(newmods=nd)
    f, to_r = _transform(res, transf)

    y = f(res.data.y)
    prec = 1.0 / np.sqrt(res.data.v)
    sizes = _sizes(prec, 90.0, 6.0)
    rng = np.random.default_rng(seed)
    vals = col.to_numpy()
    outer = res.data.factors[0] if res.data.random else None

    m = len(levels)
    ax, _ = _new_axes(ax, (6.8, 1.0 + 0.85 * m))
    cmap = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
            "#999999"]
    sc_kw = {"alpha": 0.45, "edgecolors": "black", "linewidths": 0.3, "zorder": 2}
    sc_kw.update(kwargs)
    for i, lev in enumerate(levels):
        rows = np.flatnonzero(vals == lev)
        yj = i + rng.uniform(-jitter, jitter, len(rows))
        kw_i = dict(sc_kw)
        if "c" not in kw_i:
            kw_i.setdefault("color", cmap[i % len(cmap)])
        ax.scatter(y[rows], yj, s=sizes[rows], gid=f"orchard-points-{i}", **kw_i)
    pos = np.arange(m)
    est, cl, cu = f(pr.pred), f(pr.ci_lb), f(pr.ci_ub)
    if pi:
        ax.hlines(pos, f(pr.pi_lb), f(pr.pi_ub), color="black", lw=1.2, zorder=3,
                  gid="orchard-pi")
    ax.hlines(pos, cl, cu, color="black", lw=4.5, zorder=4, gid="orchard-ci")
    ax.scatter(est, pos, s=110, marker="o", facecolors=[cmap[i % len(cmap)] for i in range(m)],
               edgecolors="black", linewidths=1.2, zorder=5, gid="orchard-estimates")
    if refline is not None:
        ax.axvline(refline, color="0.4", lw=0.8, ls=(0, (4, 3)), zorder=1)
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory
    trans = blended_transform_factory(ax.transAxes, ax.transData)
    for i, lev in enumerate(levels):
        rows = vals == lev
        lab = f"k = {int(rows.sum())}"
        if outer is not None:
            lab += f" ({len(pd.unique(outer[rows]))})"
        ax.text(1.02, i, lab, transform=trans, ha="left", va="center", fontsize=8,
                fontstyle="italic", clip_on=False, gid="orchard-k")
    if outer is not None:
        ax.text(1.02, -0.5, f"k ({res.data.random[0]})",
                transform=trans + ScaledTranslation(0, 4 / 72, ax.figure.dpi_scale_trans),
                ha="left", va="bottom", fontsize=8, fontweight="bold", clip_on=False)
    ax.set_yticks(pos, [str(lev) for lev in levels])
    ax.set_ylim(m - 0.5, -0.5)
    ax.set_ylabel(moderator)
    ax.set_xlabel(xlabel if xlabel is not None else _effect_label(res, to_r))
    _style_spines(ax)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title, pad=24 if legend else 6)
    if legend:
        from matplotlib.lines import Line2D
        qs = np.quantile(prec, [0.0, 0.5, 1.0])
        # legend markers with the plot's areas (markersize is a diameter in points)
        handles = [Line2D([], [], ls="", marker="o", color="0.5", alpha=0.6,
                          markeredgecolor="k", markeredgewidth=0.3,
                          markersize=float(np.sqrt(np.clip(90.0 * q / prec.max(), 6.0, 90.0))),
                          label=f"{q:.3g}") for q in qs]
        handles.insert(0, Line2D([], [], ls="", label="Precision (1/SE):"))
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4,
                  frameon=False, fontsize=8, handletextpad=0.2, columnspacing=1.2,
                  borderaxespad=0.2)
    return ax


# ---------------------------------------------------------------------------------- bubble
def bubble(res, moderator: str, ax=None, *, transf=None, pi: bool = True, n_grid: int = 101,
           xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
           **kwargs):
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
    col = _column(res, moderator, "moderator")
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise InputError(f"moderator {moderator!r} is not numeric; use orchard() for a "
                         "categorical moderator")
    xv = col.to_numpy(dtype=float)
    if np.isnan(xv).any():
        raise InputError(f"moderator {moderator!r} has missing values among the model's rows")
    grid = np.linspace(np.min(xv), np.max(xv), int(n_grid))
    nd = pd.DataFrame({moderator: grid})
    fit = None
    if _uses_only(res, moderator) and len(res.coef_names) == 2:
        try:
            pr = res.predict(newmods=nd)
            fit = res
        except Exception:  # e.g. factor(moderator): refit as a linear term
            fit = None
    if fit is None:
        fit = _refit(res, f"~ {_quote(moderator)}")
        pr = fit.predict(newmods=nd)
    f, to_r = _transform(res, transf)
    ax, _ = _new_axes(ax, (6.0, 4.4))
    w = fit.weights()
    sc = {"facecolors": "none", "edgecolors": "0.25", "linewidths": 0.8, "zorder": 3}
    kwargs = dict(kwargs)
    if "color" in kwargs and "facecolors" not in kwargs:  # open circles: colour the edge
        kwargs["edgecolors"] = kwargs.pop("color")
    sc.update(kwargs)
    ax.scatter(xv, f(fit.data.y), s=_sizes(w, 160.0, 8.0), gid="bubble-points", **sc)
    ax.fill_between(grid, f(pr.ci_lb), f(pr.ci_ub), color="0.75", alpha=0.6, lw=0, zorder=1,
                    gid="bubble-ci")
    if pi:
        ax.plot(grid, f(pr.pi_lb), color="0.3", lw=0.9, ls=":", zorder=2, gid="bubble-pi")
        ax.plot(grid, f(pr.pi_ub), color="0.3", lw=0.9, ls=":", zorder=2)
    ax.plot(grid, f(pr.pred), color="black", lw=1.6, zorder=2, gid="bubble-line")
    ax.set_xlabel(xlabel if xlabel is not None else moderator)
    ax.set_ylabel(ylabel if ylabel is not None else _effect_label(res, to_r))
    _style_spines(ax)
    if title:
        ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------- profile
def profile_plot(res, j: int | None = None, ax=None, n: int = 30, *, level: float = 95,
                 **kwargs):
    """Profile (restricted) log-likelihood of a variance component (metafor's ``profile``).

    Draws ll_p(s) = max over the other components of the log-likelihood with sigma2_j = s, on
    a grid of ``n`` values from 0 to about three times max(estimate, upper profile-CI limit)
    (plus the estimate and the CI limits themselves), with the REML/ML estimate marked
    (dotted line and point at the maximum), the profile-likelihood CI limits (dashed lines,
    ``res.profile_ci()``), and the cut-off ll_max - chi2_{1,level}/2 that defines them
    (horizontal dashed line). A flat or multi-peaked profile means the component is not
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
            raise InputError(f"variance component {j} ({res.level_names[j]!r}) is fixed; "
                             "nothing to profile")
        comps = [j]
    else:
        comps = free
    ci = res.profile_ci(level=level, components=comps).table
    if ax is None:
        plt = _pyplot()
        fig, axs = plt.subplots(1, len(comps), figsize=(4.4 * len(comps), 3.6),
                                layout="constrained", squeeze=False)
        axes = list(axs[0])
    else:
        axes = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
        if len(axes) != len(comps):
            raise InputError(f"ax must hold {len(comps)} Axes (one per component); got "
                             f"{len(axes)}")
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
        a.axhline(cut, color="#C03030", lw=0.9, ls=(0, (4, 3)), gid="profile-cutoff",
                  label="cut-off")
        a.axvline(est, color="0.3", lw=0.9, ls=":", gid="profile-estimate")
        a.plot([est], [ll_max], marker="o", ms=6, color="#C03030", ls="", zorder=4,
               label=f"estimate {est:.3g}")
        for b in (lb, ub):
            if np.isfinite(b):
                a.axvline(b, color="#C03030", lw=0.8, ls=(0, (2, 2)), gid="profile-ci")
        ub_s = f"{ub:.3g}" if np.isfinite(ub) else "\u221e"
        a.plot([], [], color="#C03030", lw=0.8, ls=(0, (2, 2)),
               label=f"{level:g}% CI [{lb:.3g}, {ub_s}]")
        name = res.level_names[jj]
        a.set_xlabel(rf"$\sigma^2_{{{jj + 1}}}$ ({name})")
        a.set_ylabel(ylab)
        a.set_title(f"Profile of {name}", fontsize=10)
        a.set_xlim(0.0, float(np.max(grid)))
        lo = float(np.min(pdf["logLik"]))
        span = ll_max - min(lo, cut)
        a.set_ylim(min(lo, cut) - 0.05 * span, ll_max + 0.12 * span)
        _style_spines(a)
        a.legend(fontsize=7.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                 ncol=2)
    if j is not None:
        return axes[0]
    return np.array(axes, dtype=object)


# ---------------------------------------------------------------------------------- leave-one-out
def loo_plot(res, ax=None, *, cluster: str | None = None, coef=0, transf=None,
             xlabel: str | None = None, title: str | None = None, **kwargs):
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
    **kwargs
        Passed to ``Axes.scatter`` for the points.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(coef, str):
        if coef not in res.coef_names:
            raise InputError(f"coef {coef!r} is not a coefficient of the model "
                             f"({', '.join(res.coef_names)})")
        jc = res.coef_names.index(coef)
    else:
        jc = int(coef)
        if not 0 <= jc < res.p:
            raise InputError(f"coef must be between 0 and {res.p - 1}; got {coef}")
    if res.intercept_only or res.coef_names[jc] == "intrcpt":
        f, to_r = _transform(res, transf)
    else:
        f, to_r = _transform(res, "none" if transf is None else transf)
    cname = cluster or (res.data.random[0] if res.data.random else "cluster")
    loo = res.loo_cluster(cluster)
    pick = (lambda x: float(x)) if res.p == 1 else (lambda x: float(np.asarray(x)[jc]))
    df = pd.DataFrame({"left_out": loo["left_out"],
                       "beta": [pick(x) for x in loo["beta"]],
                       "ci_lb": [pick(x) for x in loo["ci_lb"]],
                       "ci_ub": [pick(x) for x in loo["ci_ub"]]})
    full = f(np.array([res.core.beta[jc], res.tests.ci_lb[jc], res.tests.ci_ub[jc]]))
    n = len(df)
    ax, _ = _new_axes(ax, (6.2, 1.3 + 0.2 * n))
    pos = np.arange(n)
    b, l_, u_ = f(df["beta"].to_numpy()), f(df["ci_lb"].to_numpy()), f(df["ci_ub"].to_numpy())
    out = (b < full[1]) | (b > full[2])
    ax.axvspan(full[1], full[2], color="0.88", lw=0, zorder=0, gid="loo-full-ci")
    ax.axvline(full[0], color="0.2", lw=1.0, ls=(0, (4, 3)), zorder=1, gid="loo-full",
               label=f"all data: {_fmt(full[0], 3)} [{_fmt(full[1], 3)}, {_fmt(full[2], 3)}]")
    ax.hlines(pos, l_, u_, color=np.where(out, "#C03030", "black"), lw=0.9, zorder=2,
              gid="loo-ci")
    sc = {"s": 22, "marker": "o", "zorder": 3, "edgecolors": "none"}
    sc.update(kwargs)
    if "c" not in sc and "color" not in sc:
        sc["c"] = np.where(out, "#C03030", "black")
    ax.scatter(b, pos, gid="loo-points", **sc)
    ax.set_yticks(pos, [str(x) for x in df["left_out"]], fontsize=8 if n <= 40 else 6)
    ax.set_ylim(n - 0.4, -0.6)
    ax.set_ylabel(f"{cname} left out")
    lab = _effect_label(res, to_r)
    if res.coef_names[jc] != "intrcpt":
        lab = f"Coefficient {res.coef_names[jc]}"
    ax.set_xlabel(xlabel if xlabel is not None else lab)
    _style_spines(ax)
    ax.tick_params(axis="y", length=0)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    if title:
        ax.set_title(title, pad=22)
    return ax


# ---------------------------------------------------------------------------------- saving
def save_figure(fig, path_stem, formats: Sequence[str] = ("png", "svg"), *, dpi: int = 300,
                **savefig_kw) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.png`` and ``<path_stem>.svg`` (or other ``formats``).

    Parameters
    ----------
    fig : matplotlib Figure, Axes or array of Axes
        What to save (an Axes stands for its figure).
    path_stem : str or Path
        Output path without extension (an extension among ``formats`` is dropped); parent
        directories are created.
    formats : sequence of str
        File formats understood by ``Figure.savefig``.
    dpi : int
        Resolution of raster formats.
    **savefig_kw
        Passed to ``Figure.savefig`` (default ``bbox_inches="tight"``).

    Returns
    -------
    list of Path
        The files written.
    """
    if isinstance(fig, np.ndarray):
        fig = fig.ravel()[0]
    if not hasattr(fig, "savefig") and hasattr(fig, "figure"):
        fig = fig.figure
    if not hasattr(fig, "savefig"):
        raise InputError(f"save_figure needs a matplotlib Figure or Axes; got "
                         f"{type(fig).__name__}")
    stem = Path(path_stem)
    fmts = [str(x).lower().lstrip(".") for x in formats]
    if not fmts:
        raise InputError("formats is empty")
    if stem.suffix.lower().lstrip(".") in fmts:
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    kw = {"bbox_inches": "tight", "pad_inches": 0.05}
    kw.update(savefig_kw)
    out = []
    for fmt in fmts:
        p = stem.parent / f"{stem.name}.{fmt}"
        fig.savefig(p, format=fmt, dpi=dpi, **kw)
        out.append(p)
    return out
