"""Plots of power analyses: power curves against the number of studies and the traffic-light plot.

Both draw the tidy table of :func:`mlmeta.power.power_curve` as POMADE's ``plot_MADE`` does for
a ``power_MADE`` result (Vembye, Pustejovsky & Pigott 2023, JEBS,
doi:10.3102/10769986221127379; the plots of the POMADE guide, Vembye, Pustejovsky & Pigott
2024, MetaArXiv doi:10.31222/osf.io/3x2en): one panel per combination of between-study SD tau
(columns) and within-study SD omega (rows), power against J, one line per effect size (or per
rho, or per working model), a dashed line at the target power and the expected range of
studies shaded. The traffic-light plot colours each panel's strip by how plausible that tau
or omega is (expected: green, likely: yellow, unlikely: red), so a reader sees at once which
curves matter. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlmeta.errors import InputError

__all__ = ["TRAFFIC_LIGHT_PALETTES", "power_curve_plot", "traffic_light_plot"]

TRAFFIC_LIGHT_PALETTES = {
    "green-yellow-red": {
        "expected": "mediumaquamarine",
        "likely": "lightgoldenrodyellow",
        "unlikely": "lightcoral",
    },
    "greyscale": {"expected": "white", "likely": "lightgrey", "unlikely": "darkgrey"},
}
ASSUMPTIONS = ("expected", "likely", "unlikely")
HUES = {"mu": "Effect", "rho": "Cor", "label": "Model"}
_STRIP_GREY = "#d9d9d9"


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _assumption(name: str, value: Any) -> str:
    if isinstance(value, str):
        hits = [a for a in ASSUMPTIONS if value.strip() and a.startswith(value.strip().lower())]
        if len(hits) == 1:
            return hits[0]
    raise InputError(
        f"{name}: each assumption must be one of {', '.join(ASSUMPTIONS)}; got {value!r}"
    )


def _strip_colours(name: str, spec, values: list, palette) -> list[str]:
    """Colour of each strip from a sequence (in increasing order of ``values``) or a mapping
    value -> assumption."""
    if spec is None:
        return [_STRIP_GREY] * len(values)
    if isinstance(spec, Mapping):
        missing = [v for v in values if v not in spec]
        if missing:
            raise InputError(
                f"{name} has no assumption for {_fmt(missing[0])}; give one for each "
                f"of {', '.join(_fmt(v) for v in values)}"
            )
        labels = [spec[v] for v in values]
    else:
        labels = [spec] if isinstance(spec, str) else list(spec)
        if len(labels) != len(values):
            raise InputError(
                f"{name} needs one assumption per value ({len(values)}: "
                f"{', '.join(_fmt(v) for v in values)}); got {len(labels)}"
            )
    return [palette[_assumption(name, lab)] for lab in labels]


def _palette(palette) -> dict[str, str]:
    if isinstance(palette, str):
        key = "greyscale" if palette in ("grayscale", "greyscale") else palette
        if key in TRAFFIC_LIGHT_PALETTES:
            return TRAFFIC_LIGHT_PALETTES[key]
        raise InputError(
            f"palette must be one of {', '.join(TRAFFIC_LIGHT_PALETTES)} or a "
            f"mapping of {', '.join(ASSUMPTIONS)} to colours; got {palette!r}"
        )
    out = dict(TRAFFIC_LIGHT_PALETTES["green-yellow-red"])
    for key, colour in dict(palette).items():
        out[_assumption("palette", key)] = colour
    return out


def _single(data, col: str, hue: str):
    vals = sorted(data[col].unique())
    if len(vals) > 1:
        raise InputError(
            f"data has {len(vals)} values of {col!r} "
            f"({', '.join(_fmt(v) for v in vals)}) but lines are drawn by {hue!r}: "
            f"select one, or draw with hue={col!r}"
        )
    return vals[0]


def power_curve_plot(
    data,
    *,
    hue: str = "mu",
    target: float | None = 0.8,
    expected_studies: Sequence[float] | None = None,
    numbers: bool = True,
    caption: bool = True,
    ax=None,
    tau_strips=None,
    omega_strips=None,
    palette="green-yellow-red",
    figsize=None,
    **kwargs,
):
    """Power against the number of studies, one panel per (tau, omega), one line per ``hue``.

    POMADE's ``plot_MADE`` for a ``power_MADE`` result (Vembye, Pustejovsky & Pigott 2023).

    Parameters
    ----------
    data : DataFrame from :func:`mlmeta.power.power_curve` (columns J, mu, tau, omega, rho,
        label, alpha, power).
    hue : ``"mu"`` (effect sizes, default), ``"rho"`` or ``"label"`` (working models, POMADE's
        ``model_comparison``); the other two must have one value in ``data``.
    target : dashed horizontal line at this power (None: none).
    expected_studies : (low, high) range of the number of studies one expects; shaded.
    numbers : number the panels (1), (2), ... as POMADE does.
    caption : a note below the figure with alpha (and the effect when it is not the hue).
    ax : draw into this Axes (the data must then have one tau and one omega); the Axes is
        returned. Without it a new Figure with one panel per (tau, omega) is returned.
    tau_strips, omega_strips, palette : strip colours, see :func:`traffic_light_plot`.
    **kwargs : passed to :meth:`matplotlib.axes.Axes.plot` for every line.

    Returns
    -------
    matplotlib.figure.Figure, or the Axes when ``ax`` is given.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if hue not in HUES:
        raise InputError(f"hue must be one of {', '.join(HUES)}; got {hue!r}")
    need = {"J", "mu", "tau", "omega", "rho", "label", "alpha", "power"}
    if not hasattr(data, "columns") or not need <= set(data.columns):
        raise InputError(
            "data must be the DataFrame of mlmeta.power.power_curve (columns "
            f"{', '.join(sorted(need))})"
        )
    if len(data) == 0:
        raise InputError("data has no rows to plot")
    for col in ("mu", "rho", "label", "alpha"):
        if col != hue:
            _single(data, col, hue)
    taus = sorted(data["tau"].unique())
    omegas = sorted(data["omega"].unique())
    pal = _palette(palette)
    top = _strip_colours("tau_strips", tau_strips, taus, pal)
    right = _strip_colours("omega_strips", omega_strips, omegas, pal)
    hues = sorted(data[hue].unique())
    cmap = plt.get_cmap("viridis")
    colours = {h: cmap(0.85 * i / max(len(hues) - 1, 1)) for i, h in enumerate(hues)}
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    styles = ["-", "--", "-.", ":"]
    label = str(data["label"].iloc[0]) if hue != "label" else None
    if ax is not None:
        if len(taus) > 1 or len(omegas) > 1:
            raise InputError(
                f"ax takes one panel but data has {len(taus)} tau and "
                f"{len(omegas)} omega values; leave ax=None for the grid"
            )
        fig = ax.figure
        axes = [[ax]]
    else:
        w, h = figsize or (1.2 + 3.0 * len(taus), 1.3 + 2.5 * len(omegas))
        fig, grid = plt.subplots(
            len(omegas), len(taus), figsize=(w, h), sharex=True, sharey=True, squeeze=False
        )
        axes = [list(r) for r in grid]
    jmin, jmax = float(data["J"].min()), float(data["J"].max())
    n = 0
    for r, om in enumerate(omegas):
        for c, ta in enumerate(taus):
            a = axes[r][c]
            sub = data[(data["tau"] == ta) & (data["omega"] == om)]
            if expected_studies is not None:
                lo, hi = expected_studies
                a.axvspan(lo, hi, color="0.88", zorder=0, lw=0)
            if target is not None:
                a.axhline(target, ls="--", lw=1.0, color="black", zorder=2)
            for i, hv in enumerate(hues):
                line = sub[sub[hue] == hv].sort_values("J")
                a.plot(
                    line["J"],
                    line["power"],
                    color=colours[hv],
                    marker=markers[i % len(markers)],
                    ms=3.5,
                    ls=styles[i % len(styles)],
                    lw=1.4,
                    label=f"{HUES[hue]} = {_fmt(hv)}",
                    **kwargs,
                )
            a.set_ylim(0, 1.02)
            a.set_xlim(jmin, jmax)
            a.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
            a.grid(True, color="0.92", lw=0.6)
            n += 1
            if numbers:
                a.text(
                    0.97, 0.04, f"({n})", transform=a.transAxes, ha="right", va="bottom", fontsize=8
                )
            if r == 0:
                a.add_patch(
                    Rectangle(
                        (0, 1.0),
                        1,
                        0.12,
                        transform=a.transAxes,
                        clip_on=False,
                        fc=top[c],
                        ec="0.5",
                        lw=0.6,
                    )
                )
                a.text(
                    0.5,
                    1.06,
                    f"Study level SD = {_fmt(ta)}",
                    transform=a.transAxes,
                    ha="center",
                    va="center",
                    fontsize=8.5,
                )
            if c == len(taus) - 1:
                a.add_patch(
                    Rectangle(
                        (1.0, 0),
                        0.09,
                        1,
                        transform=a.transAxes,
                        clip_on=False,
                        fc=right[r],
                        ec="0.5",
                        lw=0.6,
                    )
                )
                a.text(
                    1.045,
                    0.5,
                    f"ES level SD = {_fmt(om)}",
                    transform=a.transAxes,
                    rotation=-90,
                    ha="center",
                    va="center",
                    fontsize=8.5,
                )
    ylab = f"Power ({label})" if label else "Power"
    if ax is not None:
        ax.set_xlabel("Number of studies (J)")
        ax.set_ylabel(ylab)
        ax.legend(fontsize=8, loc="lower right" if not numbers else "center right")
        return ax
    # margins in inches, so that strips, labels, legend and note never overlap
    w_in, h_in = fig.get_size_inches()
    bottom_in = 1.05 + (0.22 if caption else 0.0)
    fig.subplots_adjust(
        left=0.75 / w_in,
        right=1 - 0.5 / w_in,
        top=1 - 0.4 / h_in,
        bottom=bottom_in / h_in,
        wspace=0.08,
        hspace=0.12,
    )
    y_xlabel = (bottom_in - 0.5) / h_in
    fig.text(
        0.5 * (0.75 / w_in + 1 - 0.5 / w_in),
        y_xlabel,
        "Number of studies (J)",
        ha="center",
        va="top",
        fontsize=10,
    )
    fig.text(
        0.12 / w_in,
        0.5 * (1 - 0.4 / h_in + bottom_in / h_in),
        ylab,
        rotation=90,
        ha="left",
        va="center",
        fontsize=10,
    )
    handles, labels = axes[0][0].get_legend_handles_labels()
    if tau_strips is not None or omega_strips is not None:
        used = {lab for lab in ASSUMPTIONS if pal[lab] in set(top) | set(right)}
        for lab in ASSUMPTIONS:
            if lab in used:
                handles.append(Rectangle((0, 0), 1, 1, fc=pal[lab], ec="0.5", lw=0.6))
                labels.append(lab)
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=min(len(handles), 6),
        fontsize=8.5,
        frameon=False,
        bbox_to_anchor=(0.5, y_xlabel - 0.22 / h_in),
    )
    if caption:
        bits = []
        if hue != "mu":
            bits.append(f"effect size of practical concern = {_fmt(float(data['mu'].iloc[0]))}")
        if hue != "rho":
            bits.append(f"rho = {_fmt(float(data['rho'].iloc[0]))}")
        bits.append(f"alpha = {_fmt(float(data['alpha'].iloc[0]))}")
        if expected_studies is not None:
            bits.append("shaded: expected number of studies")
        fig.text(
            0.12 / w_in,
            0.08 / h_in,
            "Note: " + "; ".join(bits) + ".",
            fontsize=8,
            ha="left",
            va="bottom",
        )
    return fig


def traffic_light_plot(
    data, tau_assumptions, omega_assumptions, *, palette="green-yellow-red", **kwargs
):
    """Power curves whose panel strips are coloured by how plausible each tau and omega is.

    POMADE's ``plot_MADE(..., traffic_light_assumptions = ...)``: every strip naming a
    between-study SD (top) or a within-study SD (right) is coloured ``expected`` (green),
    ``likely`` (yellow) or ``unlikely`` (red), so the panels under the most plausible
    assumptions stand out.

    Parameters
    ----------
    data : DataFrame from :func:`mlmeta.power.power_curve`.
    tau_assumptions, omega_assumptions : one of "expected", "likely", "unlikely" (unambiguous
        prefixes allowed) per tau and per omega value, as a sequence in increasing order of the
        values or a mapping value -> assumption.
    palette : ``"green-yellow-red"``, ``"greyscale"`` or a mapping of the three assumptions to
        colours.
    **kwargs : as :func:`power_curve_plot` (hue, target, expected_studies, ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    return power_curve_plot(
        data, tau_strips=tau_assumptions, omega_strips=omega_assumptions, palette=palette, **kwargs
    )
