"""Shared pieces of the plots: lazy pyplot, the effect scale, text measurement, styling.

Nothing here draws a figure; every plot module uses these helpers so that scales, labels and
number formats are the same in every figure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from mlmeta.errors import InputError

__all__ = [
    "MINUS",
    "Scale",
    "categories",
    "column",
    "effect_label",
    "fmt",
    "new_axes",
    "offset_transform",
    "p_level",
    "pyplot",
    "quote",
    "sizes",
    "style_spines",
    "text_width",
    "transform",
    "uses_only",
]

MINUS = "\u2212"

#: axis labels of each measure on the model scale (honest names: a log odds ratio is not an OR)
MEASURE_LABELS = {
    "ZCOR": "Fisher's z",
    "COR": "Correlation (r)",
    "SMD": "Standardized mean difference",
    "OR": "Log odds ratio",
}


def pyplot():
    """matplotlib.pyplot, imported on first use (``import mlmeta`` never imports it)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("mlmeta's plots need matplotlib: pip install 'mlmeta[plot]'") from exc
    return plt


def new_axes(ax, figsize):
    """``(ax, False)`` for a given Axes, else the single Axes of a new constrained-layout
    figure of ``figsize`` inches and True."""
    if ax is not None:
        return ax, False
    plt = pyplot()
    fig = plt.figure(figsize=figsize, layout="constrained")
    return fig.add_subplot(), True


class Scale:
    """How effects are drawn: ``f`` maps model-scale values to the axis, ``kind`` is "r"
    (Fisher z shown as r = tanh z), "or" (log OR shown as OR = exp, on a log axis) or None
    (the model scale), ``null`` is the no-effect value on the axis."""

    def __init__(self, f: Callable[[np.ndarray], np.ndarray], kind: str | None):
        self.f = f
        self.kind = kind
        self.null = 1.0 if kind == "or" else 0.0

    def __call__(self, x):
        return self.f(x)


def transform(res, transf) -> Scale:
    """The :class:`Scale` for ``transf``.

    None: r = tanh(z) for ``measure="ZCOR"``, otherwise the model scale (a log odds ratio stays
    a log odds ratio); "ztor"/"tanh": r; "exp": exp (odds ratios, drawn on a log axis);
    "none": the model scale; a callable: applied as it is.
    """
    if transf is None:
        transf = "ztor" if res.measure == "ZCOR" else "none"
    if callable(transf):
        return Scale(lambda x: np.asarray(transf(np.asarray(x, dtype=float)), dtype=float), None)
    t = str(transf).lower() if transf is not False else "none"
    if t in ("none", "identity"):
        return Scale(lambda x: np.asarray(x, dtype=float), None)
    if t in ("ztor", "tanh"):
        return Scale(np.tanh, "r")
    if t == "exp":
        return Scale(np.exp, "or")
    raise InputError(f"transf must be None, 'ztor', 'exp', 'none' or a function; got {transf!r}")


def effect_label(res, sc: Scale | bool, resid: bool = False) -> str:
    """Axis label of the effect: 'Correlation (r)', 'Odds ratio', 'Log odds ratio', ...

    ``sc`` is the :class:`Scale` (or, as before, True for r)."""
    kind = sc.kind if isinstance(sc, Scale) else ("r" if sc else None)
    if kind == "r":
        lab = "Correlation (r)"
    elif kind == "or":
        lab = "Odds ratio"
    elif res.measure in MEASURE_LABELS:
        lab = MEASURE_LABELS[res.measure]
    elif res.measure:
        lab = f"Effect size ({res.measure})"
    else:
        lab = "Effect size"
    if resid:
        lab = "Residual" if lab == "Effect size" else f"Residual ({lab})"
    return lab


def fmt(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals and a true minus sign; 'not defined' values as '–'."""
    if not np.isfinite(x):
        return "\u2013"
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s.replace("-", MINUS)


_RENDERER = None


def text_width(s: str, size: float, weight: str = "normal") -> float:
    """Width of ``s`` in points, measured with an Agg renderer at 72 dpi (any backend)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    global _RENDERER
    if not s:
        return 0.0
    if _RENDERER is None:
        _RENDERER = RendererAgg(10, 10, 72)
    w, _, _ = _RENDERER.get_text_width_height_descent(
        s, FontProperties(size=size, weight=weight), ismath=False
    )
    return float(w)


def offset_transform(ax, dx_pt: float, dy_pt: float = 0.0, ydata: bool = True):
    """x at the axes' left (0) or right (1) edge plus ``dx_pt`` points; y in data coords."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    base = blended_transform_factory(ax.transAxes, ax.transData) if ydata else ax.transAxes
    return base + ScaledTranslation(dx_pt / 72.0, dy_pt / 72.0, ax.figure.dpi_scale_trans)


def sizes(w: np.ndarray, smax: float, smin: float) -> np.ndarray:
    """Marker areas (pt^2) proportional to ``w`` (non-positive weights get the minimum)."""
    w = np.asarray(w, dtype=float)
    top = np.max(w) if np.any(w > 0) else 1.0
    return np.clip(smax * w / top, smin, smax)


def column(res, name: str, what: str) -> pd.Series:
    """Column ``name`` of the model's data (rows used by the fit), or a one-line error."""
    fr = res.data.frame
    if name not in fr.columns or name in ("_yi", "_vi"):
        cols = [c for c in fr.columns if c not in ("_yi", "_vi")]
        raise InputError(
            f"{what} column {name!r} not found in the model's data (columns: "
            f"{', '.join(map(str, cols))})"
        )
    return fr[name].reset_index(drop=True)


def quote(name: str) -> str:
    """A column name as a formula term (backticks when it is not an identifier)."""
    return name if name.isidentifier() else f"`{name}`"


def style_spines(ax, keep=("bottom", "left")):
    """Hide the spines not in ``keep``."""
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(side in keep)


def categories(col: pd.Series) -> list:
    """The categories of a column that occur, in category order or sorted."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return [c for c in col.cat.categories if (col == c).any()]
    return sorted(pd.unique(col.dropna()), key=lambda u: (str(type(u)), u))


def uses_only(res, moderator: str) -> bool:
    """True when the model's formula uses ``moderator`` and nothing else."""
    return tuple(res.data.formula.variables) == (moderator,)


def p_level(a: float) -> str:
    """APA-style p level: .10, .05, .01, .001."""
    s = f"{a:.2f}" if abs(a * 100 - round(a * 100)) < 1e-9 else f"{a:g}"
    return s[1:] if s.startswith("0.") else s
