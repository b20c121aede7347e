"""Moderator formulas, written as R users write them, parsed once with formulaic.

``~ phase + year``, ``~ factor(class)``, ``~ 0 + factor(deltype)``, ``~ I(year^2)``,
``~ poly(year, 2)``, ``~ log(n)``. Character columns and ``factor()``/``C()`` terms are
treatment-coded with the first (sorted) level as reference, and columns come in R's
``model.matrix`` order with R's names (``intrcpt``, ``phaselate``, ``factor(class)science``),
so coefficient tables line up with metafor's.

Formulas are data, not code: formulaic evaluates Python expressions, so before anything is
evaluated the formula is tokenised and only column names, numbers, the operators of the formula
grammar and a short list of functions are allowed (see :data:`ALLOWED_FUNCTIONS`). Anything else
(attribute access, dunder names, subscripts, keywords, strings) is refused with a FormulaError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlmeta.errors import FormulaError

__all__ = ["ModelFormula", "parse_formula", "ALLOWED_FUNCTIONS"]

#: functions a moderator formula may call
ALLOWED_FUNCTIONS = ("factor", "C", "I", "poly", "log", "log2", "log10", "exp", "sqrt", "abs",
                     "scale", "center")

_CONTEXT = {"log": np.log, "log2": np.log2, "log10": np.log10, "exp": np.exp,
            "sqrt": np.sqrt, "abs": np.abs}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<bq>`[^`]*`)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[^\W\d][\w.]*)
  | (?P<op>\*\*|[~+\-*/:^(),|])
  | (?P<bad>.)
""", re.VERBOSE | re.UNICODE)


@dataclass(frozen=True)
class ModelFormula:
    """A parsed moderator formula: the user's text, formulaic's spec and R-style column names."""

    text: str
    spec: object  # formulaic.ModelSpec
    columns: tuple[str, ...]
    variables: tuple[str, ...]
    has_intercept: bool
    aliases: tuple[tuple[str, str], ...] = ()

    def design(self, data: pd.DataFrame) -> np.ndarray:
        """Model matrix for (new) data, with the encodings learned at fit time."""
        frame = pd.DataFrame({al: np.asarray(data[orig]) for orig, al in self.aliases},
                             index=range(len(data)))
        mm = self.spec.get_model_matrix(frame, context=_CONTEXT)
        return np.asarray(mm, dtype=float)


def _tokenise(text: str, columns: set[str]) -> tuple[str, set[str], set[str]]:
    """Validate ``text`` and return (formulaic text, variables used, factor()-wrapped names)."""
    out: list[str] = []
    used: set[str] = set()
    aliases: dict[str, str] = {}

    def alias(name: str) -> str:
        # formulaic evaluates Python: give every column a safe identifier (keywords such as
        # 'class', spaces, dots and unicode in names are then harmless)
        if name not in aliases:
            aliases[name] = f"mlmv{len(aliases)}_"
        return aliases[name]

    factored: set[str] = set()
    toks = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]
    toks = [t for t in toks if t[0] != "ws"]
    for i, (kind, tok) in enumerate(toks):
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "bad":
            raise FormulaError(f"moderator formula {text!r}: character {tok!r} is not allowed; "
                               "use column names, numbers, + - * / : ^ ( ) and the functions "
                               f"{', '.join(ALLOWED_FUNCTIONS)}")
        if kind == "bq":
            name = tok[1:-1]
            if name not in columns:
                raise FormulaError(f"moderator formula {text!r}: column {name!r} not found")
            used.add(name)
            out.append(alias(name))
            continue
        if kind == "name":
            if nxt == "(":
                if tok not in ALLOWED_FUNCTIONS:
                    raise FormulaError(
                        f"moderator formula {text!r}: function {tok!r} is not allowed; allowed "
                        f"are {', '.join(ALLOWED_FUNCTIONS)}")
                if tok == "factor":
                    # factor(x) -> C(x); remember x to restore R's names
                    if i + 3 < len(toks) and toks[i + 3][1] == ")":
                        inner = toks[i + 2][1]
                        factored.add(inner[1:-1] if inner.startswith("`") else inner)
                    out.append("C")
                else:
                    out.append(tok)
                continue
            if "__" in tok:
                raise FormulaError(f"moderator formula {text!r}: name {tok!r} is not allowed")
            if tok in columns:
                used.add(tok)
                out.append(alias(tok))
                continue
            if "." in tok and tok.split(".")[0] in columns | set(ALLOWED_FUNCTIONS):
                raise FormulaError(f"moderator formula {text!r}: attribute access {tok!r} is "
                                   "not allowed")
            raise FormulaError(f"moderator formula {text!r}: column {tok!r} not found in the "
                               f"data (columns: {', '.join(sorted(columns))})")
        if kind == "op" and tok == "|":
            raise FormulaError(f"moderator formula {text!r}: '|' is not allowed here; give "
                               "random effects with random=")
        out.append(tok)
    # R's ^ inside I() is a power
    s = " ".join(out)
    s = re.sub(r"(\b(?:%s)) \(" % "|".join(ALLOWED_FUNCTIONS), r"\1(", s)
    s = _power_inside_I(s)
    return s, used, factored, aliases


def _power_inside_I(s: str) -> str:
    res = []
    depth_I: list[int] = []
    depth = 0
    i = 0
    while i < len(s):
        ch = s[i]
        if s.startswith("I (", i) or s.startswith("I(", i):
            j = s.index("(", i)
            res.append(s[i:j + 1])
            depth += 1
            depth_I.append(depth)
            i = j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth_I and depth_I[-1] == depth:
                depth_I.pop()
            depth -= 1
        elif ch == "^" and depth_I:
            res.append("**")
            i += 1
            continue
        res.append(ch)
        i += 1
    return "".join(res)


def _r_name(name: str, factored: set[str], aliases: dict[str, str]) -> str:
    if name == "Intercept":
        return "intrcpt"
    for orig, al in aliases.items():
        name = name.replace(al, orig)
    parts = []
    for piece in name.split(":"):
        piece = re.sub(r"\[T\.(.*)\]$", r"\1", piece)
        piece = re.sub(r"\[(.*)\]$", r"\1", piece)
        m = re.match(r"^C\(([^()]*)\)(.*)$", piece)
        if m and m.group(1) in factored:
            piece = f"factor({m.group(1)}){m.group(2)}"
        piece = piece.replace(" ** ", "^").replace("**", "^")
        parts.append(piece)
    return ":".join(parts)


def parse_formula(text: str | None, data: pd.DataFrame) -> tuple[np.ndarray, ModelFormula]:
    """Parse ``text`` (R-style, leading ``~`` optional) against ``data``; return (X, formula).

    ``None`` or ``"~ 1"`` gives the intercept-only model. ``data`` must already be free of
    missing values in the variables the formula uses.
    """
    import formulaic

    if text is None or str(text).strip() in ("", "~1", "~ 1", "1"):
        text = "~ 1"
    text = str(text).strip()
    if not text.startswith("~"):
        text = "~ " + text
    if text.count("~") != 1:
        raise FormulaError(f"moderator formula {text!r}: write it as '~ terms' with one '~'")
    cols = {str(c) for c in data.columns}
    ftext, used, factored, aliases = _tokenise(text, cols)
    frame = pd.DataFrame({al: data[orig].to_numpy() for orig, al in aliases.items()},
                         index=range(len(data)))
    try:
        mm = formulaic.model_matrix(ftext, frame, context=_CONTEXT, na_action="raise")
    except Exception as exc:  # formulaic raises many types; report one line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormulaError(f"moderator formula {text!r} could not be evaluated: {msg}") from None
    names = tuple(_r_name(str(c), factored, aliases) for c in mm.columns)
    X = np.asarray(mm, dtype=float)
    if X.ndim != 2 or X.shape[0] != len(data):
        raise FormulaError(f"moderator formula {text!r} did not give one row per effect size")
    if not np.all(np.isfinite(X)):
        bad = int(np.argwhere(~np.isfinite(X))[0][0])
        raise FormulaError(f"moderator formula {text!r} gives a non-finite value in row "
                           f"{bad + 1} (e.g. log of a value <= 0)")
    has_int = "intrcpt" in names
    return X, ModelFormula(text, mm.model_spec, names, tuple(sorted(used)), has_int,
                           tuple(aliases.items()))


def required_variables(text: str | None, columns: list[str]) -> list[str]:
    """The data columns a formula uses (validated), for missing-value handling before parsing."""
    if text is None:
        return []
    t = str(text).strip()
    if not t.startswith("~"):
        t = "~ " + t
    _, used, _, _ = _tokenise(t, {str(c) for c in columns})
    return sorted(used)
