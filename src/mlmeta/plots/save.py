"""Saving figures: PNG (raster, for screens and the HTML report) and PDF (vector, for
journals), or any format matplotlib writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlmeta.errors import InputError

__all__ = ["save_figure"]


def save_figure(
    fig, path_stem, formats: Sequence[str] = ("png", "pdf"), *, dpi: int = 300, **savefig_kw
) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.png`` and ``<path_stem>.pdf`` (or other ``formats``).

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
        raise InputError(f"save_figure needs a matplotlib Figure or Axes; got {type(fig).__name__}")
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
