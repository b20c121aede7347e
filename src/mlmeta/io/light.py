"""The quick path of ``mlmeta fit``: a small, plain CSV read and prepared without pandas.

Importing pandas costs ~0.25 s, several times the whole fit of a few thousand effect sizes.
For the common command (``mlmeta fit DATA --yi yi --vi vi --random study/es`` or with
``--measure`` and its columns, no moderators, nested random effects) the CLI first tries this
path: the file is read with the standard library's ``csv`` module and the model arrays are
built with numpy, then fitted and printed by the same code as always
(:func:`mlmeta.model.fit_prepared`, :func:`mlmeta.printing.format_summary`).

The quick path never decides anything on its own. It takes a file only when the careful path
(:func:`mlmeta.io.read.read_table` and :func:`mlmeta.io.prepare.prepare`) would read it to the
same numbers without a single message: UTF-8 text below :data:`MAX_BYTES`, no quotes, a
header with distinct non-empty names, every row as long as the header, no empty or missing
cells, numbers written plainly (no leading zeros, no decimal commas, no ``inf``/``nan``), ids
that are not missing-value words or booleans, no repeated ids, more than one outer group,
sampling variances in range. Anything else returns ``None`` and the careful path runs (and
gives its warnings or its one-line error). The CLI also falls back when the quick fit raises
or warns. ``tests/test_light.py`` checks that both paths print the same text.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, cast

import numpy as np

from mlmeta.io.read import check_regular_file

__all__ = ["MAX_BYTES", "quick_model_data", "read_plain_csv"]

#: files up to this size may take the quick path (pandas' C reader is faster above it)
MAX_BYTES = 4 << 20

# a plain decimal number, as pandas' C parser reads it to the same double
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,14})")  # |value| < 1e15: exact in int64 and float
_ANY_INTEGER = re.compile(r"-?[1-9]\d*")
# what pandas may read as a number: digits with signs, points and exponents, or infinity
_ODD_NUMBER = re.compile(r"[-+.\deE]*\d[-+.\deE]*|[-+]?(?i:inf|infinity)")
# pandas' default missing-value words and booleans (read as NaN / bool, never as text ids)
_SPECIAL = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
        "True",
        "False",
        "TRUE",
        "FALSE",
        "true",
        "false",
    }
)
_SUFFIXES = (".csv", ".txt", ".tsv", ".tab", "")


def read_plain_csv(path, needed: list[str]) -> dict[str, list[str]] | None:
    """The cells of the ``needed`` columns of a plain CSV (see the module docstring), or None
    when the careful reader must decide. Raises nothing that the careful path would not."""
    from mlmeta.io.read import delimiter_of, header_names

    p = Path(path)
    if p.suffix.lower() not in _SUFFIXES:
        return None
    st = check_regular_file(path)
    if st.st_size > MAX_BYTES or st.st_size == 0:
        return None
    raw = p.read_bytes()
    if (
        raw.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf"))
        or b"\x00" in raw
        or b'"' in raw
        or b"\r" in raw
    ):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    sep = delimiter_of(text, p.suffix.lower())
    rows = csv.reader(io.StringIO(text), delimiter=sep, quoting=csv.QUOTE_NONE, strict=True)
    header: list[str] | None = None
    cells: dict[str, list[str]] = {}
    pos: list[int] = []
    for row in rows:
        if not row:
            return None  # a blank line: pandas skips it; the careful path counts rows
        if header is None:
            if any(not c.strip() or c != c.strip() for c in row):
                return None
            header = header_names(row, str(path))
            if len(header) < 2 or any(n not in header for n in needed):
                return None
            pos = [header.index(n) for n in needed]
            cells = {n: [] for n in needed}
            continue
        if len(row) != len(header):
            return None
        for c in row:
            if c in _SPECIAL or c != c.strip() or (sep != "," and "," in c):
                return None
            if c[0] == "0" and len(c) > 1 and c[1].isdigit():
                return None  # leading zeros: read as text ids by the careful path, with a note
            if _ODD_NUMBER.fullmatch(c) and not _NUMBER.fullmatch(c):
                return None  # a number pandas reads that is not written plainly ("+1", "1.")
        for n, i in zip(needed, pos):
            cells[n].append(row[i])
    if header is None or not cells or not cells[needed[0]]:
        return None
    return cells


def numbers(cells: list[str]) -> np.ndarray | None:
    """Float values of plainly written numbers (None if any cell is not one)."""
    if not all(_NUMBER.fullmatch(c) for c in cells):
        return None
    return np.array([float(c) for c in cells])


def ids(cells: list[str]) -> np.ndarray | None:
    """An id column as pandas reads it: int64 when every cell is an integer, float64 when every
    cell is a number, else text (an object array of str, as prepare codes text ids). None for
    integers of 16 digits or more (pandas keeps them exact in int64 or uint64; as floats
    distinct ids could merge): the careful path reads those."""
    if all(_INTEGER.fullmatch(c) for c in cells):
        return np.array([int(c) for c in cells], dtype=np.int64)
    if all(_ANY_INTEGER.fullmatch(c) for c in cells):
        return None
    if all(_NUMBER.fullmatch(c) for c in cells):
        return np.array([float(c) for c in cells])
    return np.array(cells, dtype=object)


def quick_model_data(
    y: np.ndarray, v: np.ndarray, levels: tuple[str, ...], factors: list[np.ndarray]
) -> Any:
    """ModelData for an intercept-only nested model from clean arrays, or None when
    :func:`mlmeta.io.prepare.prepare` would warn or refuse (values out of range, one outer
    group, rows repeating every id)."""
    from mlmeta.io.formula import ModelFormula
    from mlmeta.io.prepare import V_RANGE, Y_MAX, ModelData

    k = len(y)
    if k < 2 or not (np.all(np.isfinite(y)) and np.all(np.isfinite(v))):
        return None
    if np.any(v < V_RANGE[0]) or np.any(v > V_RANGE[1]) or np.any(np.abs(y) > Y_MAX):
        return None
    if levels:
        if len(set(factors[0].tolist())) < 2:
            return None
        if len(levels) >= 2 and len(set(zip(*(f.tolist() for f in factors)))) < k:
            return None
    formula = ModelFormula("~ 1", None, ("intrcpt",), (), True, ())
    # no pandas frame: the quick path ends with the printout, and anything that asks for the
    # frame fails over to the careful path (see mlmeta.cli)
    return ModelData(
        y=y,
        v=v,
        X=np.ones((k, 1)),
        coef_names=("intrcpt",),
        formula=formula,
        random=levels,
        factors=tuple(factors),
        frame=cast(Any, None),
        k_all=k,
        dropped=(),
    )
