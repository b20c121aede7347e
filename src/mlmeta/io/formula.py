"""Moderator formulas, written as R users write them, parsed once with formulaic.

``~ phase + year``, ``~ factor(class)``, ``~ 0 + factor(deltype)``, ``~ I(year^2)``,
``~ poly(year, 2)``, ``~ log(n)``. Character columns and ``factor()``/``C()`` terms are
treatment-coded with the first (sorted) level as reference, and columns come in R's
``model.matrix`` order with R's names (``intrcpt``, ``phaselate``, ``factor(class)science``),
so coefficient tables line up with metafor's.

Another reference level: R's ``relevel(deltype, ref = "general")`` (also
``relevel(factor(deltype), "general")``; a number as ``ref`` is the position of the level, as in
R) or formulaic's ``C(deltype, Treatment("general"))`` (also ``Treatment(reference = ...)``; a
number is a level's value). Their columns are named as R's ``model.matrix`` names a factor term:
the term as R deparses it followed by the level, e.g. ``relevel(deltype, ref = "general")covert``
(exactly metafor's name) and ``C(deltype, Treatment("general"))covert``. The reference must be a
category of the column. ``C(x, Treatment)`` is ``C(x)``.

Formulas are data, not code. formulaic evaluates the insides of function calls as Python, so
before anything is evaluated the formula is tokenised and parsed here, and only this grammar
is let through (anything else is a FormulaError naming the offending piece):

- column names: plain identifiers (unicode letters allowed: ``année``) or back-quoted names
  (```année de publication```, keywords such as ```class```). Every column reaches formulaic
  under a generated identifier, so no user-written name is ever looked up as Python. A column
  whose name needs back-quotes (a space, a leading digit, other characters) written without
  them is named in the error, with how to write it;
- numbers: ``0`` and ``1`` as terms (intercept), whole-number exponents of ``^``/``**``
  (interaction powers, ``(a + b)^2``), and any number inside function calls;
- the formula operators ``+ - * / : ^ **`` and parentheses; ``~`` once, at the start;
- the functions of :data:`ALLOWED_FUNCTIONS`: ``factor(col)`` and ``C(col)`` of one column;
  ``relevel(col, ref = "level")`` and ``C(col, Treatment("level"))`` (strings, ``=`` and numbers
  are allowed there and only there: a string holds no code, it is compared with the categories);
  ``poly(expr)`` / ``poly(expr, degree)`` with a whole-number degree 1..10; ``I``, ``log``,
  ``log2``, ``log10``, ``exp``, ``sqrt``, ``abs``, ``scale``, ``center`` of one argument.
  Inside a function only ``+ - * / ^ **``, parentheses, numbers, columns and the math
  functions (log ... abs) may appear; ``^`` means power there, as in R.

Refused, among others: strings and quotes, keyword arguments (``=``), attribute access
(``x.__class__``), dunder names, subscripts (``[ ]``), braces (formulaic's ``{python}``),
``lambda`` (it is neither a column nor an allowed function), argument unpacking (``*x``), calls
of call results (``log(x)(y)``), ``%`` operators, commas outside ``poly()``, unbalanced
parentheses, formulas longer than :data:`MAX_LENGTH` characters or nested deeper than
:data:`MAX_DEPTH`, and formulas whose interaction expansion would exceed :data:`MAX_TERMS`
terms. Integer literals inside functions are evaluated as floats (``I(2^n)`` cannot build a
huge Python integer or wrap around), and integer columns are used as floats except inside
``factor()``/``C()``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from mlmeta._lazy import lazy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy("pandas")

from mlmeta.errors import FormulaError

__all__ = [
    "ALLOWED_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TERMS",
    "ModelFormula",
    "formula_variables",
    "parse_formula",
    "required_variables",
]

#: functions a moderator formula may call
ALLOWED_FUNCTIONS = (
    "factor",
    "C",
    "relevel",
    "I",
    "poly",
    "log",
    "log2",
    "log10",
    "exp",
    "sqrt",
    "abs",
    "scale",
    "center",
)
#: calls whose arguments may hold a string, a number or ``=`` (a reference level)
_REF_CALLS = ("relevel", "Treatment")
#: functions that may appear inside another function call (they map numbers to numbers)
_MATH_FUNCTIONS = ("log", "log2", "log10", "exp", "sqrt", "abs")
#: longest formula accepted (characters)
MAX_LENGTH = 2000
#: deepest nesting of parentheses accepted
MAX_DEPTH = 20
#: most terms the formula may expand to (e.g. a*b*c*d*e*f*g*h*i has 511)
MAX_TERMS = 500
#: largest degree of poly()
MAX_POLY_DEGREE = 10
_MAX_EXPANSION = 20000  # work bound for an interaction power (terms ** exponent)
_MAX_CELLS = 50_000_000  # design-matrix cells (rows x columns) formulaic may be asked to build
_CAP = 10**12

_FLOAT = "mlmf_"  # context function that turns integer literals into floats

_CONTEXT = {
    "log": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    _FLOAT: float,
}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<bq>`[^`]*`)
  | (?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[^\W\d][\w.]*)
  | (?P<str>"[^"\\\n`]*"|'[^'\\\n`]*')
  | (?P<eq>=(?!=))
  | (?P<op>\*\*|[~+\-*/:^(),|])
  | (?P<bad>.)
""",
    re.VERBOSE | re.UNICODE | re.DOTALL,
)

_HINTS = {
    "=": " (keyword arguments are not supported; e.g. write poly(x, 2))",
    "'": " (strings are not supported; back-quote column names: `my column`)",
    '"': " (strings are not supported; back-quote column names: `my column`)",
    "[": " (subscripts are not supported)",
    "]": " (subscripts are not supported)",
    "{": " (Python code blocks are not supported)",
    "}": " (Python code blocks are not supported)",
    "`": " (a back-quoted name is not closed)",
    "%": " (operators such as %in% are not supported)",
    ".": " ('.' for all columns is not supported; list the moderators)",
}


_BARE = re.compile(r"[^\W\d][\w.]*\Z")  # a name token: no back-quotes needed
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def _must_quote(name: str) -> str:
    """The message for a column name written without the back-quotes it needs."""
    why = (
        "has a space"
        if any(ch.isspace() for ch in name)
        else "starts with a digit"
        if name[0].isdigit()
        else "has a character other than letters, digits, '_' and '.'"
    )
    return f"column {name!r} must be back-quoted in a formula (its name {why}): write `{name}`"


@dataclass(frozen=True)
class ModelFormula:
    """A parsed moderator formula: the user's text, formulaic's spec and R-style column names.

    ``aliases`` holds ``(column, identifier, numeric)``: the identifier under which formulaic
    sees the column, and whether integer values are converted to floats (all uses except
    ``factor()``/``C()``). ``categories`` holds ``(identifier, categories)`` for the columns coded
    with another reference level (``relevel``, ``Treatment``): the categories in coding order,
    reference first. ``keep`` are the positions of the model-matrix columns that the model uses
    (None: all): redundant columns are dropped, as metafor does (see
    :func:`mlmeta.io.prepare.redundant_columns`); ``dropped`` names them.
    """

    text: str
    spec: Any  # formulaic.ModelSpec (None for the intercept-only model)
    columns: tuple[str, ...]
    variables: tuple[str, ...]
    has_intercept: bool
    aliases: tuple[tuple[str, str, bool], ...] = ()
    levels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    categories: tuple[tuple[str, tuple], ...] = ()
    keep: tuple[int, ...] | None = None
    dropped: tuple[str, ...] = ()

    def design(self, data: pd.DataFrame) -> np.ndarray:
        """Model matrix for (new) data, with the encodings learned at fit time."""
        if self.spec is None:  # intercept-only
            return np.ones((len(data), 1))
        for orig, _, _ in self.aliases:
            if orig not in data.columns:
                raise FormulaError(
                    f"moderator formula {_show(self.text)}: column {orig!r} not "
                    "found in the new data"
                )
        for orig, seen in self.levels:
            new = sorted(
                {str(x) for x in pd.Series(np.asarray(data[orig])).dropna().unique()} - set(seen)
            )
            if new:
                raise FormulaError(
                    f"moderator {orig!r}: category {new[0]!r} was not in the data "
                    f"the model was fitted to (categories: {', '.join(seen)})"
                )
        frame = _frame(data, self.aliases, self.categories)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mm = self.spec.get_model_matrix(frame, context=_CONTEXT)
            except Exception as exc:  # noqa: BLE001 -- formulaic raises many types
                raise FormulaError(
                    f"moderator formula {_show(self.text)} could not be evaluated "
                    f"for the new data: {_first_line(exc, self.aliases)}"
                ) from None
        X = np.asarray(mm, dtype=float)
        return X if self.keep is None else X[:, list(self.keep)]


def _frame(data: pd.DataFrame, aliases, categories=()) -> pd.DataFrame:
    cols = {}
    cats = dict(categories)
    for orig, al, numeric in aliases:
        s = data[orig]
        if al in cats:
            # another reference level: the categories in coding order, reference first
            values = (
                s.astype(object).to_numpy()
                if isinstance(s.dtype, pd.CategoricalDtype)
                else s.to_numpy()
            )
            cols[al] = pd.Categorical(values, categories=list(cats[al]))
        elif numeric and (
            pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
        ):
            cols[al] = s.to_numpy(dtype=float, na_value=np.nan)
        else:
            cols[al] = s.to_numpy()
    return pd.DataFrame(cols, index=range(len(data)))


def _show(text: str) -> str:
    """The formula for a message (long ones shortened)."""
    return repr(text if len(text) <= 80 else text[:60] + " ... " + text[-15:])


def _first_line(exc: Exception, aliases=()) -> str:
    msg = re.sub(r"\x1b\[[0-9;]*m|[⧛⧚]", "", str(exc)).strip()
    msg = msg.splitlines()[0] if msg else type(exc).__name__
    return _unalias(msg, aliases)


def _unalias(s: str, aliases) -> str:
    for orig, al, _ in sorted(aliases, key=lambda a: -len(a[1])):
        s = s.replace(al, orig)
    return re.sub(_FLOAT + r"\((\d+)\)", r"\1", s)


# ------------------------------------------------------------------------------------------------
# tokenising and parsing
# ------------------------------------------------------------------------------------------------


@dataclass
class _Node:
    text: str  # formulaic text
    terms: int  # upper bound of the number of terms
    cols: int  # upper bound of the number of design columns
    intercept_only: bool = False  # a bare number (0 / 1)


def _sat(x: int) -> int:
    return min(int(x), _CAP)


class _Parser:
    """Recursive descent over the tokens of ``~ ...``; builds formulaic's text and bounds."""

    def __init__(
        self, text: str, columns: Sequence[str], levels: Callable[[str, bool], int] | None = None
    ):
        self.text = text
        self.columns = [str(c) for c in columns]
        self.colset = set(self.columns)
        self.levels = levels
        self.used: set[str] = set()
        self.factored: set[str] = set()
        self.aliases: dict[tuple[str, bool], str] = {}
        # another reference level: (column, kind, reference) -> (identifier, R name of the term,
        # reference value, whether the reference is a position)
        self.relevels: dict[tuple, tuple[str, str, object, bool]] = {}
        self.toks = self._tokens(text)
        self.i = 0

    # ---------------------------------------------------------------- helpers
    def fail(self, msg: str, hint: bool = True) -> NoReturn:
        """Refuse the formula; a column whose name is not a plain identifier, written without
        back-quotes, is the likelier cause of any parse error, so it is named instead."""
        name = self.unquoted_column() if hint else None
        if name is not None:
            msg = _must_quote(name)
        raise FormulaError(f"moderator formula {_show(self.text)}: {msg}")

    def unquoted_column(self) -> str | None:
        """The longest column whose name needs back-quotes (a space, a leading digit, other
        characters) and that the formula writes without them, or None."""
        outside = re.sub(r"`[^`]*`", lambda m: " " * len(m.group()), self.text)
        for c in sorted(self.columns, key=len, reverse=True):
            if (
                not c
                or c != c.strip()
                or "`" in c
                or _BARE.match(c)
                or _NUMBER.match(c)
                or len(c) > len(outside)
            ):
                continue  # plain names; numbers are caught where a number is read
            if re.search(rf"(?<![\w.`]){re.escape(c)}(?![\w.`])", outside):
                return c
        return None

    def _tokens(self, text):
        if len(text) > MAX_LENGTH:
            self.fail(f"is too long ({len(text)} characters; at most {MAX_LENGTH})", hint=False)
        toks = []
        stack = []
        calls: list[str | None] = []  # the function whose argument list each '(' opens
        for m in _TOKEN.finditer(text):
            kind, tok, pos = m.lastgroup, m.group(), m.start()
            if kind == "ws":
                continue
            if kind in ("str", "eq") and not (calls and calls[-1] in _REF_CALLS):
                # a string or '=' anywhere but in a reference level is a bad character
                kind, tok = "bad", tok[0]
            if kind == "bad":
                self.fail(
                    f"character {tok!r} at position {pos + 1} is not allowed"
                    f"{_HINTS.get(tok, '')}; use column names, numbers, + - * / : ^ ( ) "
                    f"and the functions {', '.join(ALLOWED_FUNCTIONS)}"
                )
            if kind == "num" and len(tok) > 30:
                self.fail(f"number {tok[:20]}... at position {pos + 1} is too long")
            if tok == "(":
                stack.append(pos)
                calls.append(toks[-1][1] if toks and toks[-1][0] == "name" else None)
                if len(stack) > MAX_DEPTH:
                    self.fail(f"parentheses are nested too deeply (more than {MAX_DEPTH} levels)")
            elif tok == ")":
                if not stack:
                    self.fail(
                        f"unbalanced parentheses: ')' at position {pos + 1} has no matching '('"
                    )
                stack.pop()
                calls.pop()
            toks.append((kind, tok, pos))
        if stack:
            self.fail(f"unbalanced parentheses: '(' at position {stack[-1] + 1} is never closed")
        return toks

    def peek(self, off: int = 0):
        j = self.i + off
        return self.toks[j] if j < len(self.toks) else (None, "", len(self.text))

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def where(self, t) -> str:
        return "at the end" if t[0] is None else f"at position {t[2] + 1}"

    def expect(self, tok: str, context: str):
        t = self.peek()
        if t[1] != tok:
            got = "the end of the formula" if t[0] is None else repr(t[1])
            self.fail(f"expected {tok!r} {context}, got {got} {self.where(t)}")
        self.take()

    def alias(self, name: str, numeric: bool) -> str:
        key = (name, numeric)
        if key not in self.aliases:
            self.aliases[key] = f"mlmv{len(self.aliases)}_"
        self.used.add(name)
        return self.aliases[key]

    def n_levels(self, name: str, factor: bool = True) -> int:
        """Upper bound of the design columns of ``name`` (its levels if categorical)."""
        return max(1, int(self.levels(name, factor))) if self.levels else 1

    def column(self, t) -> str:
        """The column a NAME/BQ token refers to (validated)."""
        kind, tok, _ = t
        if kind == "bq":
            name = tok[1:-1]
            if name not in self.colset:
                self.not_found(name)
            return name
        if "__" in tok:
            self.fail(f"name {tok!r} is not allowed")
        if tok in self.colset:
            return tok
        if "." in tok and tok.split(".")[0] in self.colset | set(ALLOWED_FUNCTIONS):
            self.fail(f"attribute access {tok!r} is not allowed")
        self.not_found(tok)

    def not_found(self, name: str) -> NoReturn:
        near = get_close_matches(name, self.columns, n=1, cutoff=0.6)
        if not near:
            near = [c for c in self.columns if c.lower() == name.lower()][:1]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        from mlmeta.io.read import lookalike_hint

        hint = lookalike_hint(name, self.columns) or hint
        if " " in name and not hint:
            hint = "; back-quote names with spaces: `my column`"
        shown = ", ".join(self.columns[:30]) + (", ..." if len(self.columns) > 30 else "")
        self.fail(f"column {name!r} not found in the data (columns: {shown}){hint}")

    # ---------------------------------------------------------------- formula level
    def parse(self) -> _Node:
        self.expect("~", "at the start")
        if self.peek()[0] is None:
            self.fail("no terms after '~'; write '~ 1' for the intercept-only model")
        node = self.f_sum()
        t = self.peek()
        if t[0] is not None:
            if t[1] == "~":
                self.fail("write it as '~ terms' with one '~'")
            if t[1] == "|":
                self.fail("'|' is not allowed here; give random effects with random=")
            if t[1] == ",":
                self.fail(f"',' {self.where(t)} is only allowed between the arguments of poly()")
            if t[1] == ")":
                self.fail(f"unbalanced parentheses: ')' {self.where(t)} has no matching '('")
            self.fail(f"missing operator before {t[1]!r} {self.where(t)}")
        if node.terms > MAX_TERMS:
            self.fail(f"expands to more than {MAX_TERMS} terms; simplify the interactions")
        return node

    def f_sum(self) -> _Node:
        left = self.f_prod()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            right = self.f_prod()
            if op == "+":
                left = _Node(
                    f"{left.text} + {right.text}",
                    _sat(left.terms + right.terms),
                    _sat(left.cols + right.cols),
                )
            else:
                left = _Node(f"{left.text} - {right.text}", left.terms, left.cols)
        return left

    def f_prod(self) -> _Node:
        left = self.f_inter()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            right = self.f_inter()
            self.no_number(left, op)
            self.no_number(right, op)
            t = _sat(left.terms + right.terms + left.terms * right.terms)
            c = _sat(left.cols + right.cols + left.cols * right.cols)
            left = _Node(f"{left.text} {op} {right.text}", t, c)
            if t > MAX_TERMS:
                self.fail(f"expands to more than {MAX_TERMS} terms; simplify the interactions")
        return left

    def f_inter(self) -> _Node:
        left = self.f_pow()
        while self.peek()[1] == ":":
            self.take()
            right = self.f_pow()
            self.no_number(left, ":")
            self.no_number(right, ":")
            left = _Node(
                f"{left.text}:{right.text}",
                _sat(left.terms * right.terms),
                _sat(left.cols * right.cols),
            )
        return left

    def f_pow(self) -> _Node:
        base = self.f_unary()
        if self.peek()[1] in ("^", "**"):
            op = self.take()
            t = self.take()
            if t[0] != "num" or not t[1].isdigit() or int(t[1]) < 1:
                self.fail(
                    f"the exponent of {op[1]!r} {self.where(op)} must be a whole number "
                    ">= 1, as in (a + b)^2; for powers of a variable write I(x^2)"
                )
            self.no_number(base, op[1])
            n = min(int(t[1]), max(base.terms, 1))
            if n * math.log(max(base.terms, 1)) > math.log(_MAX_EXPANSION):
                self.fail(
                    f"the interaction power {op[1]}{t[1]} {self.where(op)} expands too "
                    f"many terms; simplify the interactions"
                )
            terms = sum(math.comb(base.terms, j) for j in range(1, n + 1))
            cols = (
                _CAP if n * math.log(base.cols + 1) > math.log(_CAP) else (base.cols + 1) ** n - 1
            )
            if self.peek()[1] in ("^", "**"):
                self.fail(f"chained exponents {self.where(self.peek())} are not allowed")
            return _Node(f"{base.text} ** {n}", _sat(terms), cols)
        return base

    def no_number(self, node: _Node, op: str):
        if node.intercept_only:
            self.fail(
                f"a number cannot be an operand of {op!r}; numbers are only allowed "
                "as 0 / 1 (intercept) or inside functions, e.g. I(2 * x)"
            )

    def f_unary(self) -> _Node:
        if self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = self.f_unary()
            return _Node(f"{op} {node.text}", node.terms, node.cols, node.intercept_only)
        return self.f_atom()

    def f_atom(self) -> _Node:
        t = self.peek()
        kind, tok, _ = t
        if kind == "num":
            self.take()
            if tok not in ("0", "1") and tok in self.colset:
                self.fail(_must_quote(tok), hint=False)
            if tok not in ("0", "1"):
                self.fail(
                    f"number {tok} {self.where(t)} is not a term; numbers are only "
                    "allowed as 0 / 1 (intercept), as exponents, or inside functions, "
                    "e.g. I(2 * x)"
                )
            return _Node(tok, 0, 1, intercept_only=True)
        if kind == "name" and self.peek(1)[1] == "(":
            return self.call(top=True)
        if kind in ("name", "bq"):
            self.take()
            name = self.column(t)
            return _Node(self.alias(name, True), 1, self.n_levels(name, factor=False))
        if tok == "(":
            self.take()
            inner = self.f_sum()
            self.expect(")", "to close '('")
            return _Node(f"({inner.text})", inner.terms, inner.cols, inner.intercept_only)
        self.unexpected(t, "a term")

    def unexpected(self, t, what: str) -> NoReturn:
        if t[0] is None:
            self.fail(f"expected {what} at the end of the formula")
        if t[1] == ",":
            self.fail(f"',' {self.where(t)} is only allowed between the arguments of poly()")
        if t[1] == "|":
            self.fail("'|' is not allowed here; give random effects with random=")
        if t[1] == "~":
            self.fail("write it as '~ terms' with one '~'")
        if t[1] in ("*", "**") and what.startswith("an argument"):
            self.fail(f"argument unpacking {t[1]!r} {self.where(t)} is not allowed")
        self.fail(f"expected {what} {self.where(t)}, got {t[1]!r}")

    # ---------------------------------------------------------------- function calls
    def call(self, top: bool) -> _Node:
        ft = self.take()
        fn = ft[1]
        if fn not in ALLOWED_FUNCTIONS:
            near = [f for f in ALLOWED_FUNCTIONS if f.lower() == fn.lower()]
            hint = f"; did you mean {near[0]!r}?" if near else ""
            self.fail(
                f"function {fn!r} is not allowed; allowed are {', '.join(ALLOWED_FUNCTIONS)}{hint}"
            )
        if not top and fn not in _MATH_FUNCTIONS:
            self.fail(f"{fn}() {self.where(ft)} cannot be used inside another function")
        self.take()  # '('
        if fn == "relevel":
            return self.relevel()
        if fn in ("factor", "C"):
            t = self.take()
            nxt = (")", ",") if fn == "C" else (")",)
            if t[0] not in ("name", "bq") or self.peek()[1] not in nxt:
                if fn == "C":
                    self.fail(
                        "C() takes a column name and optionally Treatment(reference "
                        'level), e.g. C(type) or C(type, Treatment("b"))'
                    )
                self.fail(f"{fn}() takes one column name, e.g. {fn}(type)")
            name = self.column(t)
            if self.peek()[1] == ",":
                self.take()
                return self.treatment(name)
            self.take()
            self.factored.add(name)
            return _Node(f"C({self.alias(name, False)})", 1, self.n_levels(name))
        arg = self.py_sum(fn)
        degree = None
        if self.peek()[1] == ",":
            if fn != "poly":
                self.fail(f"{fn}() takes one argument")
            self.take()
            d = self.take()
            if d[0] != "num" or not d[1].isdigit() or not 1 <= int(d[1]) <= MAX_POLY_DEGREE:
                self.fail(
                    f"the degree of poly() must be a whole number from 1 to "
                    f"{MAX_POLY_DEGREE}, got {d[1] or 'nothing'!s}"
                )
            degree = int(d[1])
            if self.peek()[1] == ",":
                self.fail("poly() takes a variable and a degree, e.g. poly(year, 2)")
        t = self.peek()
        if t[1] != ")":
            self.unexpected(t, f"')' to close {fn}(")
        self.take()
        if self.peek()[1] == "(":
            self.fail(f"calling the result of {fn}() is not allowed")
        inner = arg if degree is None else f"{arg}, {degree}"
        return _Node(f"{fn}({inner})", 1, degree or 1)

    def reference(self, fn: str) -> tuple[str, object]:
        """A reference level: a string or a number; returns (R's text of it, the value)."""
        t = self.take()
        sign = ""
        if t[1] == "-" and self.peek()[0] == "num":
            sign, t = "-", self.take()
        if t[0] == "str" and not sign:
            v = t[1][1:-1]
            return '"' + v + '"', v
        if t[0] == "num":
            x = float(sign + t[1])
            return (f"{int(x)}" if x.is_integer() and abs(x) < 1e15 else repr(x)), x
        got = "the end of the formula" if t[0] is None else repr(t[1])
        self.fail(
            f"{fn}() takes the reference level as a string or a number, e.g. "
            f'{"relevel(type, ref = " if fn == "relevel" else "Treatment("}"b"), got {got} '
            f"{self.where(t)}"
        )

    def keyword(self, names: tuple[str, ...]) -> bool:
        """Consume ``name =`` if the next tokens are one of ``names`` followed by '='."""
        if self.peek()[0] == "name" and self.peek(1)[0] == "eq":
            if self.peek()[1] not in names:
                self.fail(
                    f"unknown argument {self.peek()[1]!r} {self.where(self.peek())}; "
                    f'write {names[0]} = "level"'
                )
            self.take()
            self.take()
            return True
        return False

    def close(self, fn: str):
        t = self.peek()
        if t[1] != ")":
            self.unexpected(t, f"')' to close {fn}(")
        self.take()
        if self.peek()[1] == "(":
            self.fail(f"calling the result of {fn}() is not allowed")

    def releveled(self, name: str, kind: str, ref, by_position: bool, rname: str) -> _Node:
        key = (name, kind, repr(ref))
        if key not in self.relevels:
            self.relevels[key] = (f"mlmr{len(self.relevels)}_", rname, ref, by_position)
        self.used.add(name)
        self.factored.add(name)
        return _Node(f"C({self.relevels[key][0]})", 1, self.n_levels(name))

    def relevel(self) -> _Node:
        """R's ``relevel(col, ref = "b")`` / ``relevel(factor(col), "b")``."""
        usage = 'relevel() takes a column and a reference level, e.g. relevel(type, ref = "b")'
        t = self.take()
        wrapped = False
        if t[0] == "name" and t[1] == "factor" and self.peek()[1] == "(":
            self.take()
            t = self.take()
            if t[0] not in ("name", "bq") or self.peek()[1] != ")":
                self.fail(usage)
            self.take()
            wrapped = True
        elif t[0] not in ("name", "bq"):
            self.fail(usage)
        name = self.column(t)
        if self.peek()[1] != ",":
            self.fail(usage)
        self.take()
        kw = self.keyword(("ref",))
        rtext, ref = self.reference("relevel")
        self.close("relevel")
        arg = f"factor({name})" if wrapped else name
        rname = f"relevel({arg}, {'ref = ' if kw else ''}{rtext})"
        return self.releveled(name, "relevel", ref, isinstance(ref, float), rname)

    def treatment(self, name: str) -> _Node:
        """formulaic's ``C(col, Treatment)`` / ``C(col, Treatment("b"))``."""
        t = self.take()
        if t[0] != "name" or t[1] != "Treatment":
            got = "the end of the formula" if t[0] is None else repr(t[1])
            self.fail(
                f'the contrast of C() must be Treatment or Treatment("level"), got {got} '
                f"{self.where(t)}"
            )
        if self.peek()[1] != "(":  # C(col, Treatment): the default reference
            self.close("C")
            self.factored.add(name)
            return _Node(f"C({self.alias(name, False)})", 1, self.n_levels(name))
        self.take()
        kw = self.keyword(("reference",))
        rtext, ref = self.reference("Treatment")
        self.close("Treatment")
        self.close("C")
        rname = f"C({name}, Treatment({'reference = ' if kw else ''}{rtext}))"
        return self.releveled(name, "Treatment", ref, False, rname)

    # ---------------------------------------------------------------- inside calls (Python)
    def py_sum(self, fn: str) -> str:
        out = self.py_prod(fn)
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            out += f" {op} {self.py_prod(fn)}"
        return out

    def py_prod(self, fn: str) -> str:
        out = self.py_unary(fn)
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            out += f" {op} {self.py_unary(fn)}"
        return out

    def py_unary(self, fn: str) -> str:
        if self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            return f"{op}{self.py_unary(fn)}"
        return self.py_power(fn)

    def py_power(self, fn: str) -> str:
        base = self.py_atom(fn)
        if self.peek()[1] in ("^", "**"):
            self.take()
            return f"{base} ** {self.py_unary(fn)}"
        return base

    def py_atom(self, fn: str) -> str:
        t = self.peek()
        kind, tok, _ = t
        if kind == "num":
            self.take()
            return f"{_FLOAT}({tok})" if tok.isdigit() else tok
        if kind == "name" and self.peek(1)[1] == "(":
            return self.call(top=False).text
        if kind in ("name", "bq"):
            self.take()
            return self.alias(self.column(t), True)
        if tok == "(":
            self.take()
            inner = self.py_sum(fn)
            t2 = self.peek()
            if t2[1] != ")":
                self.unexpected(t2, f"')' inside {fn}()")
            self.take()
            return f"({inner})"
        if tok == ":":
            self.fail(f"':' {self.where(t)} is not allowed inside {fn}()")
        self.unexpected(t, f"an argument of {fn}()")


def _normalise(text) -> str:
    if text is None:
        return "~ 1"
    if not isinstance(text, str):
        raise FormulaError(
            f"moderator formula must be a string such as '~ year', got {type(text).__name__}"
        )
    t = text.strip()
    if t in ("", "~1", "~ 1", "1"):
        return "~ 1"
    if not t.startswith("~"):
        t = "~ " + t
    return t


def _parse(text: str, columns, levels=None) -> tuple[_Parser, _Node]:
    p = _Parser(text, columns, levels)
    node = p.parse()
    return p, node


def _r_name(name: str, factored: set[str], aliases, terms=None) -> str:
    """R's ``model.matrix`` name of a formulaic column; ``terms`` maps the identifiers of
    re-referenced columns to R's text of their term (``relevel(x, ref = "b")``)."""
    if name == "Intercept":
        return "intrcpt"
    parts = []
    for piece in name.split(":"):
        piece = re.sub(r"\[T\.(.*)\]$", r"\1", piece)
        piece = re.sub(r"\[(.*)\]$", r"\1", piece)
        term = next((t for al, t in (terms or {}).items() if piece.startswith(f"C({al})")), None)
        if term is not None:
            al = piece[2 : piece.index(")")]
            parts.append(term + piece[len(al) + 3 :])
            continue
        piece = _unalias(piece, aliases)
        for f in factored:
            if piece.startswith(f"C({f})"):
                piece = f"factor({f}){piece[len(f) + 3 :]}"
                break
        piece = piece.replace(" ** ", "^").replace("**", "^")
        parts.append(piece)
    return ":".join(parts)


def parse_formula(
    text: str | None, data: pd.DataFrame, rows: Any = None
) -> tuple[np.ndarray, ModelFormula]:
    """Parse ``text`` (R-style, leading ``~`` optional) against ``data``; return (X, formula).

    ``None`` or ``"~ 1"`` gives the intercept-only model. ``data`` must already be free of
    missing values in the variables the formula uses. ``rows`` names the rows of ``data`` in
    messages (default ``row 1``, ``row 2``, ...).
    """
    text = _normalise(text)
    if text == "~ 1":
        # the intercept-only model needs no formula machinery (and no formulaic import)
        return np.ones((len(data), 1)), ModelFormula(text, None, ("intrcpt",), (), True, ())

    import formulaic

    def levels(name: str, factor: bool) -> int:
        s = data[name]
        if factor or not (
            pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)
        ):
            return int(s.nunique(dropna=True))
        return 1

    p, node = _parse(text, list(data.columns), levels)
    aliases = tuple((orig, al, numeric) for (orig, numeric), al in p.aliases.items())
    aliases += tuple((orig, al, False) for (orig, _, _), (al, _, _, _) in p.relevels.items())
    categories = tuple(
        (al, _categories(data[orig], ref, by_pos, term, text))
        for (orig, _, _), (al, term, ref, by_pos) in p.relevels.items()
    )
    # text columns are coded with their categories in R's order (see r_levels)
    categories += tuple(
        (al, r_levels(data[orig]))
        for orig, al, _ in aliases
        if al not in dict(categories) and _is_text(data[orig])
    )
    terms = {al: term for (al, term, _, _) in p.relevels.values()}
    k = len(data)
    cols = node.cols + 1
    if cols * k > _MAX_CELLS and cols > min(k, 1000):
        raise FormulaError(
            f"moderator formula {_show(text)} would give up to {cols} coefficients "
            f"for {k} rows; too many to estimate"
        )
    ftext = "~ " + node.text
    frame = _frame(data, aliases, categories)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mm = formulaic.model_matrix(ftext, frame, context=_CONTEXT, na_action="ignore")
        except RecursionError:
            raise FormulaError(f"moderator formula {_show(text)} is nested too deeply") from None
        except Exception as exc:  # noqa: BLE001 -- formulaic raises many types; one line
            raise FormulaError(
                f"moderator formula {_show(text)} could not be evaluated: "
                f"{_first_line(exc, aliases)}"
            ) from None
    names = tuple(_r_name(str(c), p.factored, aliases, terms) for c in mm.columns)
    X = np.asarray(mm, dtype=float)
    if X.ndim != 2 or X.shape[0] != k:
        raise FormulaError(f"moderator formula {_show(text)} did not give one row per effect size")
    if X.shape[1] == 0:
        raise FormulaError(
            f"moderator formula {_show(text)} leaves no coefficient to estimate; "
            "remove the '0' / '- 1' or add moderators"
        )
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        where = rows[i] if rows is not None else f"row {i + 1}"
        raise FormulaError(
            f"moderator formula {_show(text)}: coefficient {names[j]!r} is "
            f"{float(X[i, j])!r} in {where} (e.g. log or sqrt of a value <= 0, or an "
            "overflow)"
        )
    has_int = "intrcpt" in names
    # the categories seen at fit time: a prediction for an unseen category is refused rather
    # than silently treated as the reference level
    seen = []
    for orig, _, numeric in aliases:
        col = data[orig]
        if not numeric or not (
            pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)
        ):
            seen.append((orig, tuple(sorted({str(x) for x in col.dropna().unique()}))))
    return X, ModelFormula(
        text, mm.model_spec, names, tuple(sorted(p.used)), has_int, aliases, tuple(seen), categories
    )


def _categories(col: pd.Series, ref, by_position: bool, term: str, text: str) -> tuple:
    """The categories of ``col`` in coding order with ``ref`` first (R's ``relevel``): the
    categories of a pandas Categorical in their order, else the sorted distinct values. A number
    is the position of the level for ``relevel`` (as in R) and a level's value for
    ``Treatment``."""
    cats = list(r_levels(col))
    shown = ", ".join(str(c) for c in cats[:20]) + (", ..." if len(cats) > 20 else "")
    if by_position:
        pos = float(ref)
        if not pos.is_integer() or not 1 <= pos <= len(cats):
            raise FormulaError(
                f"moderator formula {_show(text)}: {term} asks for level number "
                f"{ref:g}, but the column has {len(cats)} categories ({shown})"
            )
        j = int(pos) - 1
    else:
        hits = [
            i
            for i, c in enumerate(cats)
            if str(c) == str(ref) or (isinstance(ref, float) and _is_number(c) and float(c) == ref)
        ]
        if not hits:
            want = repr(ref) if isinstance(ref, str) else f"{ref:g}"
            raise FormulaError(
                f"moderator formula {_show(text)}: the reference level {want} of "
                f"{term} is not a category of the column (categories: {shown})"
            )
        j = hits[0]
    return (cats[j], *cats[:j], *cats[j + 1 :])


def _is_text(col: pd.Series) -> bool:
    return not (
        isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(col.dtype)
        or pd.api.types.is_numeric_dtype(col.dtype)
    )


def collation_key(s: str) -> tuple:
    """Sort key approximating the order in which R's ``sort()``/``factor()`` put text (the ICU /
    locale collation of R on Linux, macOS and Windows): punctuation and spaces before digits
    before letters; letters compared case- and accent-blind first, then by accent, then lower
    case before upper case (``a A b B``, ``e é f``, ``HAq other WAI``, ``x y x-y xy``)."""
    import unicodedata

    prim, sec, ter = [], [], []
    for ch in str(s):
        d = unicodedata.normalize("NFD", ch)
        base = d[0]
        cls = 2 if base.isalpha() else 1 if base.isdigit() else 0
        prim.append((cls, base.casefold()))
        sec.append(d[1:])
        ter.append(int(base.isupper()))
    return prim, sec, ter, str(s)


def r_levels(col: pd.Series) -> tuple:
    """The categories of ``col`` in R's ``factor()`` order: a pandas Categorical's own order,
    numbers ascending, text by :func:`collation_key`."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return tuple(col.cat.categories)
    vals = list(pd.unique(col.dropna()))
    if all(_is_number(v) for v in vals):
        return tuple(sorted(vals))
    return tuple(sorted(vals, key=collation_key))


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def formula_variables(text: str | None, columns: Sequence) -> tuple[list[str], list[str]]:
    """(columns the formula uses, columns it uses inside factor()/C()), validated."""
    t = _normalise(text)
    if t == "~ 1":
        return [], []
    p, _ = _parse(t, [str(c) for c in columns])
    return sorted(p.used), sorted(p.factored)


def required_variables(text: str | None, columns: list[str]) -> list[str]:
    """The data columns a formula uses (validated), for missing-value handling before parsing."""
    return formula_variables(text, columns)[0]
