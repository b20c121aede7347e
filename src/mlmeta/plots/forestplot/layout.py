"""Where the rows of a forest plot go: vertical positions, the text columns' widths, the
figure size and the split into pages.

Rows are 1 unit apart, the top row at 0 and positions increasing downwards; a group heading
takes a row, and a gap of 0.4 separates a group of several rows from the next. A figure is
``ROW_INCHES`` per unit plus a fixed margin; :func:`paginate` cuts the groups into pages whose
figure is at most ``max_height`` inches tall (12 in by default, the tallest page a journal or a
printer takes), never inside a group unless the group alone is taller than a page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlmeta.plots.base import text_width

__all__ = [
    "MARGIN_INCHES",
    "MAX_PAGE_INCHES",
    "ROW_INCHES",
    "Columns",
    "Positions",
    "columns",
    "height_inches",
    "paginate",
    "positions",
    "rows_per_page",
    "units",
    "width_inches",
]

ROW_INCHES = 0.15
MARGIN_INCHES = 0.8
MAX_PAGE_INCHES = 12.0
GAP = 0.4
SUMMARY_ROWS = 2.7  # diamond and prediction interval below the last row
HEADER_ROWS = 1.9  # the column headers above the first row


@dataclass
class Positions:
    pos: np.ndarray  # y of each row (index as ForestRows), NaN for rows not on this page
    heads: list[tuple[float, str]]  # (y, text) of the group headings
    singles: list[tuple[float, str]]  # (y, text) of one-row groups labelled with the study
    last: float  # y of the last row


def positions(n: int, groups, heads, single) -> Positions:
    """Positions of the rows of ``groups`` (see the module docstring)."""
    pos = np.full(n, np.nan)
    head_rows: list[tuple[float, str]] = []
    singles: list[tuple[float, str]] = []
    yy = 0.0
    prev_multi = False
    for gi, (g, h, one) in enumerate(zip(groups, heads, single)):
        if h is not None and one:
            if gi > 0 and prev_multi:
                yy += GAP
            pos[g[0]] = yy
            singles.append((yy, h))
            yy += 1.0
            prev_multi = False
            continue
        if h is not None:
            if gi > 0:
                yy += GAP
            head_rows.append((yy, h))
            yy += 1.0
        for i in g:
            pos[i] = yy
            yy += 1.0
        prev_multi = h is not None
    return Positions(pos, head_rows, singles, yy - 1.0)


def units(n: int, groups, heads, single) -> float:
    """Height in row units of these groups of rows 0..n-1 (headings and gaps included)."""
    return positions(n, groups, heads, single).last + 1.0


def height_inches(n_units: float, summary: bool) -> float:
    """Figure height for ``n_units`` rows (plus headers and, with ``summary``, the diamond
    and prediction interval)."""
    return ROW_INCHES * (n_units + HEADER_ROWS + (SUMMARY_ROWS if summary else 0.8)) + MARGIN_INCHES


def rows_per_page(max_height: float = MAX_PAGE_INCHES, summary: bool = True) -> int:
    """How many row units fit on a page of ``max_height`` inches with the summary rows."""
    return max(5, int((max_height - MARGIN_INCHES) / ROW_INCHES - HEADER_ROWS - SUMMARY_ROWS))


def paginate(groups, heads, single, max_units: int) -> list[tuple[list, list, list]]:
    """Split the groups into pages of at most ``max_units`` row units; a group that is
    taller than a page is cut into pieces whose heading says '(continued)'."""
    pages: list[tuple[list, list, list]] = []
    cur: tuple[list, list, list] = ([], [], [])
    used = 0.0
    for g, h, one in zip(groups, heads, single):
        need = len(g) + (0 if (h is None or one) else 1) + (GAP if cur[0] else 0.0)
        if cur[0] and used + need > max_units:
            pages.append(cur)
            cur, used = ([], [], []), 0.0
            need -= GAP
        if need <= max_units:
            cur[0].append(g)
            cur[1].append(h)
            cur[2].append(one)
            used += need
            continue
        # a group taller than a page: cut it
        step = max_units - (0 if h is None else 1)
        for s in range(0, len(g), step):
            piece = g[s : s + step]
            hh = h if (h is None or s == 0) else f"{h} (continued)"
            if cur[0]:
                pages.append(cur)
            cur, used = ([piece], [hh], [False]), float(len(piece) + (h is not None))
    if cur[0]:
        pages.append(cur)
    return pages


@dataclass
class Columns:
    """Horizontal geometry in points: ``x_lab`` (label column, left of the axes), ``indent``,
    ``x_w`` (right edge of the weight column, right of the axes), ``x_k`` (right edge of the
    'k' column at the study level), ``x_e`` (right edges of estimate, lower, upper),
    ``x_e_end`` (right end of the table), ``label_width``."""

    x_lab: float
    indent: float
    x_w: float
    x_k: float | None
    x_e: list[float]
    x_e_end: float
    label_width: float


def columns(
    labels,
    heads,
    est_cols,
    w_strs,
    k_strs,
    est_header,
    fs: float,
    show_weights: bool,
    grouped: bool,
    extra_labels=(),
) -> Columns:
    """Widths of the text columns from the strings they will hold."""
    indent = 10.0 if grouped else 0.0
    wl = max(
        [text_width(s, fs) + indent for s in labels]
        + [text_width(h, fs, "bold") for h in heads]
        + [text_width(s, fs, "bold") for s in extra_labels]
        + [10.0]
    )
    x_lab = -(wl + 12.0)
    cw = [max(text_width(s, fs, "bold") for s in col) for col in est_cols]
    x = 12.0
    x_k = None
    if k_strs is not None:
        x += max(text_width("k", fs, "bold"), max(text_width(s, fs) for s in k_strs))
        x_k = x
        x += 12.0
    x_w = x + max(text_width("Weight %", fs, "bold"), max(text_width(s, fs) for s in w_strs))
    x0 = (x_w + 14.0) if show_weights else (x_k + 14.0 if x_k else 10.0)
    x_e = [x0 + cw[0], x0 + cw[0] + 5.0 + cw[1], x0 + cw[0] + 5.0 + cw[1] + 4.0 + cw[2]]
    x_e_end = max(x_e[2], x0 + text_width(est_header, fs, "bold"))
    return Columns(x_lab, indent, x_w, x_k, x_e, x_e_end, wl)


def width_inches(cols: Columns) -> float:
    """Figure width: the label column, the axes (3.8 in) and the table on the right."""
    return (cols.label_width + 12 + cols.x_e_end) / 72.0 + 3.8
