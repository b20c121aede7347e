"""The library functions the web page uses, imported in this one place.

The page is a thin shell over the same API as ``mlmeta run``: the analysis file is validated by
:func:`parse_analysis` / :func:`load_analysis`, data files are read by :func:`read_table` (so
errors have the command line's words), and :func:`run_report` writes the report folder whose
``results.json`` and ``figures/`` the page shows through :func:`build_document` (the report's
own blocks).
"""

from __future__ import annotations

from mlmeta.errors import InputError, MlmetaError
from mlmeta.examples import EXAMPLES, load_example
from mlmeta.io import read_table
from mlmeta.io.analysis import (
    EGGER_PREDICTORS,
    ESCALC_COLUMNS,
    ESCALC_NEEDS,
    FOREST_LEVELS,
    FOREST_SORTS,
    INFERENCES,
    MEASURES,
    OUTLIER_RULES,
    SELECTION_SIDES,
    load_analysis,
    parse_analysis,
)

#: the values of the analysis file's choice keys, by control id (the library's own lists)
CHOICES: dict[str, tuple[str, ...]] = {
    "inference": tuple(INFERENCES),
    "selection_side": tuple(SELECTION_SIDES),
    "egger_predictor": tuple(EGGER_PREDICTORS),
    "outlier_rule": tuple(OUTLIER_RULES),
    "forest_level": tuple(FOREST_LEVELS),
    "forest_sort": tuple(FOREST_SORTS),
}

__all__ = [
    "CHOICES",
    "ESCALC_COLUMNS",
    "ESCALC_NEEDS",
    "EXAMPLES",
    "MEASURES",
    "InputError",
    "MlmetaError",
    "build_document",
    "load_analysis",
    "load_example",
    "parse_analysis",
    "read_table",
    "run_report",
]


def run_report(spec, out_dir, *, progress=None, command=None):
    """:func:`mlmeta.report.run_report` (imported when first used: it pulls in matplotlib)."""
    from mlmeta.report import run_report as _run_report

    return _run_report(spec, out_dir, progress=progress, command=command)


def build_document(numbers: dict) -> list[dict]:
    """The report's blocks (headings, paragraphs, tables, figures) built from results.json."""
    from mlmeta.report.document import build_document as _build

    return _build(numbers)
