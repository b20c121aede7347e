"""Guess the roles of a data set's columns for the web page (``mlmeta app``).

The page shows every guess in a select input for the user to confirm or change, so a guess only
has to be a good first choice. Rules, in order:

1. effect sizes: a correlation column (name such as ``r``/``ri``/``cor``, every value within
   [-1, 1]) with a sample-size column (``n``/``ni``, positive) gives measure ZCOR (Fisher z,
   reported as r); else effect sizes and sampling variances (``yi``/``g``/``d`` with
   ``vi``/``var``, variances positive); else the six raw columns of a standardized mean
   difference (``m1i sd1i n1i m2i sd2i n2i``, measure SMD); else the four cells of a 2x2 table
   (``ai bi ci di``, measure OR);
2. study id: a column named like ``study``/``author``/``cluster`` without missing values, whose
   values repeat (several effect sizes per study); a unique one only when none repeats;
3. effect-size id: a column named like ``es``/``esid``/``id`` that varies within studies;
4. moderators: every other column with at least two distinct values, typed *categorical* (text,
   true/false, or whole numbers below 100 in absolute value with at most
   :data:`MAX_INTEGER_LEVELS` distinct values, such as 0/1 codes) or
   *continuous* (other numbers). Text columns can only be categorical.

The name lists follow ``mlmeta init`` (metafor's argument names first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlmeta.io.analysis import COLUMN_NAMES

__all__ = [
    "EFFECT_MODES",
    "MAX_INTEGER_LEVELS",
    "MODE_COLUMNS",
    "ColumnInfo",
    "Guess",
    "column_info",
    "guess_columns",
    "simulated_example",
]

#: numeric columns of whole numbers with at most this many distinct values are guessed categorical
MAX_INTEGER_LEVELS = 6

#: how the effect sizes are given: mode -> its columns (escalc argument names)
MODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "r": ("ri", "ni"),
    "yi": ("yi", "vi"),
    "smd": ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),
    "or": ("ai", "bi", "ci", "di"),
}
EFFECT_MODES = tuple(MODE_COLUMNS)


@dataclass(frozen=True)
class ColumnInfo:
    """What the page shows about a candidate moderator."""

    name: str
    numeric: bool  # numbers (not true/false): can be continuous
    guessed: str  # "categorical" or "continuous"
    levels: tuple[str, ...]  # distinct values as labels (sorted as the model codes them)
    n_missing: int

    @property
    def choices(self) -> tuple[str, ...]:
        return ("categorical", "continuous") if self.numeric else ("categorical",)

    def describe(self) -> str:
        if self.guessed == "categorical":
            text = f"categorical, {len(self.levels)} levels"
        else:
            text = "continuous"
        return text + (f", {self.n_missing} missing" if self.n_missing else "")


@dataclass(frozen=True)
class Guess:
    """Guessed roles; ``None`` where nothing fits."""

    mode: str | None  # one of EFFECT_MODES
    effect: dict[str, str] = field(default_factory=dict)  # escalc name -> column
    study: str | None = None
    es_id: str | None = None
    participants: str | None = None  # data.n
    moderators: tuple[ColumnInfo, ...] = ()  # candidates (not chosen)

    @property
    def measure(self) -> str | None:
        return {"r": "ZCOR", "smd": "SMD", "or": "OR"}.get(self.mode or "")


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def _numeric(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s))


def _values(s: pd.Series) -> np.ndarray:
    return s.dropna().to_numpy(dtype=float)


def _ok(role: str, s: pd.Series) -> bool:
    """Do the values fit the role?"""
    if role in ("study", "es"):
        return bool(s.notna().all())
    if not _numeric(s) or s.notna().sum() == 0:
        return False
    v = _values(s)
    if role == "ri":
        return bool(np.all(np.abs(v) <= 1))
    if role in ("ni", "n1i", "n2i", "vi", "sd1i", "sd2i"):
        return bool(np.all(v > 0))
    if role in ("ai", "bi", "ci", "di"):
        return bool(np.all(v >= 0))
    return True


def _find(df: pd.DataFrame, role: str, taken: set[str]) -> str | None:
    by_norm: dict[str, str] = {}
    for col in df.columns:
        by_norm.setdefault(_norm(col), col)
    for cand in COLUMN_NAMES[role]:
        c = by_norm.get(cand)
        if c is not None and c not in taken and _ok(role, df[c]):
            return c
    return None


def _ids(df: pd.DataFrame, taken: set[str]) -> tuple[str | None, str | None]:
    k = len(df)
    studies = []
    by_norm: dict[str, str] = {}
    for col in df.columns:
        by_norm.setdefault(_norm(col), col)
    for cand in COLUMN_NAMES["study"]:
        c = by_norm.get(cand)
        if c is not None and c not in taken and _ok("study", df[c]) and c not in studies:
            studies.append(c)
    study = next((c for c in studies if df[c].nunique() < k), None)
    if study is None:
        return (studies[0] if studies else None), None
    n_studies = df[study].nunique()
    for cand in COLUMN_NAMES["es"]:
        c = by_norm.get(cand)
        if c is None or c == study or c in taken or not _ok("es", df[c]):
            continue
        if len(df[[study, c]].drop_duplicates()) > n_studies:  # varies within studies
            return study, c
    return study, None


def _level_label(x) -> str:
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    return str(x)


def column_info(df: pd.DataFrame, name: str) -> ColumnInfo:
    """Type and levels of one column as a moderator (see the module docstring)."""
    s = df[name]
    nonmiss = s.dropna()
    numeric = _numeric(s)
    if numeric:
        v = nonmiss.to_numpy(dtype=float)
        uniq = np.unique(v)
        integer = bool(np.all(np.mod(v, 1) == 0))
        # codes such as 0/1 or 1..5, not years or counts
        cat = integer and len(uniq) <= MAX_INTEGER_LEVELS and bool(np.all(np.abs(uniq) < 100))
        # factor() codes numbers as text labels, sorted as text
        levels = tuple(sorted({_level_label(x) for x in uniq}))
    else:
        cat = True
        levels = tuple(sorted({_level_label(x) for x in nonmiss}))
    return ColumnInfo(
        name=name,
        numeric=numeric,
        guessed="categorical" if cat else "continuous",
        levels=levels,
        n_missing=int(s.isna().sum()),
    )


def guess_columns(df: pd.DataFrame) -> Guess:
    """Guess effect-size columns, study and effect-size ids and moderator candidates of ``df``.

    Returns a :class:`Guess`; see the module docstring for the rules.
    """
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    study, es = _ids(df, set())
    taken = {c for c in (study, es) if c}
    mode = None
    effect: dict[str, str] = {}
    for m in ("r", "yi", "smd", "or"):
        found: dict[str, str] = {}
        used = set(taken)
        for role in MODE_COLUMNS[m]:
            c = _find(df, role, used)
            if c is None:
                break
            found[role] = c
            used.add(c)
        else:
            mode, effect = m, found
            break
    taken |= set(effect.values())
    participants = None
    if mode == "r":
        participants = effect["ni"]
    elif mode in ("yi", None):
        participants = _find(df, "ni", taken)
    if participants:
        taken.add(participants)
    # every column naming an effect role of another mode (yi/vi next to ri/ni, ...) is data, not
    # a moderator
    role_names = {
        n for names in COLUMN_NAMES.values() for n in names if n not in COLUMN_NAMES["study"]
    }
    mods = []
    for c in df.columns:
        if c in taken or _norm(c) in role_names or _norm(c) in COLUMN_NAMES["study"]:
            continue
        if df[c].dropna().nunique() < 2:
            continue
        mods.append(column_info(df, c))
    return Guess(
        mode=mode,
        effect=effect,
        study=study,
        es_id=es,
        participants=participants,
        moderators=tuple(mods),
    )


def simulated_example(df: pd.DataFrame) -> str | None:
    """The name of the bundled *simulated* example that ``df`` is a copy of, else None (so the
    page says SIMULATED even when the example's CSV is uploaded as a file)."""
    from mlmeta.app.api import EXAMPLES, load_example

    for name, (_, _, simulated) in EXAMPLES.items():
        if not simulated:
            continue
        ex = load_example(name).data
        if [str(c) for c in df.columns] != [str(c) for c in ex.columns] or df.shape != ex.shape:
            continue
        same = True
        for c in ex.columns:
            a, b = df[c], ex[c]
            if _numeric(a) and _numeric(b):
                if not np.allclose(
                    a.to_numpy(dtype=float),
                    b.to_numpy(dtype=float),
                    rtol=1e-9,
                    atol=0,
                    equal_nan=True,
                ):
                    same = False
                    break
            elif [str(x) for x in a] != [str(x) for x in b]:
                same = False
                break
        if same:
            return name
    return None
