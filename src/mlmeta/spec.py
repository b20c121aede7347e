"""The model specification: one immutable object, built and validated once, at the boundary.

A :class:`ModelSpec` says *what* model to fit — which columns hold the effect sizes and their
sampling variances, the random-effects terms, the moderator formula, the estimation method,
the test and its degrees of freedom, the confidence level, the working correlation of the
sampling errors (ρ and its cluster), fixed variance components and the effect-size measure.
The API (:func:`mlmeta.rma_mv`), the command line and analysis files all build one through
:meth:`ModelSpec.build`; a fitted result keeps it (``res.spec``) and every refit — profile
likelihood, LRTs, leave-one-out, Cook's distances, the R² null model, the ρ sweep,
publication-bias models, figures — changes it through :meth:`ModelSpec.replace`, so no
analysis can drop a setting.

The few rules that used to be repeated live here, once each:

* :func:`to_fraction` — the confidence level is a percentage at the boundary (``95``) and a
  fraction inside (``0.95``); a value of 1 or less is refused (``0.95`` would be ambiguous).
* :func:`check_rho` — a sampling correlation lies in (−1, 1).
* :func:`parse_random` — metafor's random-effects formulas (``"~ 1 | study/es"``, crossed terms
  as a list, ``"~ outcome | trial"`` with a ``struct``) into :class:`RandomTerm` objects.
* :attr:`ModelSpec.cluster` — the default cluster (the outer factor of the first term) for ρ,
  robust variance estimation and leave-one-out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mlmeta.errors import FormulaError, InputError

__all__ = [
    "DFS",
    "METHODS",
    "STRUCTS",
    "TESTS",
    "ModelSpec",
    "RandomTerm",
    "check_rho",
    "choice",
    "parse_random",
    "to_fraction",
    "to_percent",
]

METHODS = ("REML", "ML")
TESTS = ("z", "t")
DFS = ("residual", "contain")
#: variance structures of an ``~ inner | outer`` term (metafor's ``struct``)
STRUCTS = ("CS", "HCS", "UN", "AR", "HAR", "ID", "DIAG")

_NAME = r"[^\s|~/+*()]+"


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` matched case-insensitively against ``allowed``; else a one-line InputError."""
    for a in allowed:
        if str(value).strip().lower() == a.lower():
            return a
    raise InputError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def to_fraction(level: Any, name: str = "level") -> float:
    """Confidence level given in percent (e.g. ``95``) as a fraction (``0.95``).

    The one conversion used everywhere: a level is a percentage strictly between 1 and 100 at
    every boundary (API, command line, analysis file); a value of 1 or less is refused, since
    ``0.95`` could mean 95 % or 0.95 %.
    """
    if isinstance(level, bool):
        raise InputError(f"{name} must be a number (a percentage such as 95); got {level!r}")
    try:
        lv = float(level)
    except (TypeError, ValueError):
        raise InputError(
            f"{name} must be a number (a percentage such as 95); got {level!r}"
        ) from None
    if not math.isfinite(lv):
        raise InputError(f"{name} must be a percentage between 1 and 100, e.g. 95; got {level!r}")
    if 0 < lv <= 1:
        raise InputError(
            f"{name} is a percentage: write {lv * 100:g} for a {lv * 100:g}% "
            f"interval; got {level!r}"
        )
    if not (1 < lv < 100):
        raise InputError(f"{name} must be a percentage between 1 and 100, e.g. 95; got {level!r}")
    return lv / 100.0


def to_percent(fraction: float) -> float:
    """The inverse of :func:`to_fraction`, for display (``0.95`` -> ``95.0``)."""
    return round(float(fraction) * 100.0, 10)


def check_rho(rho: Any, name: str = "rho", *, nonnegative: bool = False) -> float | None:
    """A working sampling correlation: None, or a number in (−1, 1) (in [0, 1) if
    ``nonnegative``, as a working model whose correlation must be non-negative needs)."""
    if rho is None:
        return None
    if isinstance(rho, bool):
        raise InputError(f"{name} must be a number between -1 and 1; got {rho!r}")
    try:
        r = float(rho)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number between -1 and 1; got {rho!r}") from None
    if not math.isfinite(r) or not (-1.0 < r < 1.0):
        raise InputError(
            f"{name} must lie strictly between -1 and 1 (a correlation of ±1 makes "
            f"the sampling covariance singular); got {rho!r}"
        )
    if nonnegative and r < 0:
        raise InputError(f"{name} must be >= 0 for this working model; got {rho!r}")
    return r


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term in metafor's notation.

    ``~ 1 | a/b/c``: ``inner`` is None and ``outer`` the nesting, outer to inner (one variance
    component per level). ``~ inner | outer``: ``inner`` a factor (e.g. outcome, time) whose
    levels are correlated within each level of the single factor ``outer`` by ``struct``.
    """

    outer: tuple[str, ...]
    inner: str | None = None
    struct: str | None = None

    @property
    def nested(self) -> bool:
        return self.inner is None

    @property
    def formula(self) -> str:
        """The term as metafor writes it."""
        return f"~ {self.inner or 1} | {'/'.join(self.outer)}"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.outer + ((self.inner,) if self.inner else ())


def _split_names(text: str, original: Any) -> tuple[str, ...]:
    # `my study` as in a moderator formula, where such a name must be back-quoted
    parts = tuple(re.sub(r"^`(.*)`$", r"\1", x.strip()) for x in text.split("/"))
    if any(not x for x in parts):
        raise InputError(f"random={original!r}: empty level name; write e.g. 'study/es'")
    if len(set(parts)) != len(parts):
        raise InputError(f"random={original!r}: a column appears twice in the nesting")
    return parts


def _parse_term(text: str, original: Any) -> RandomTerm:
    s = text.strip()
    if "|" not in s:
        return RandomTerm(_split_names(s.lstrip("~").strip(), original))
    lhs, rhs = s.split("|", 1)
    lhs = lhs.strip()
    if not lhs.startswith("~"):
        raise InputError(
            f"random={original!r}: a random-effects formula starts with '~', e.g. '~ 1 | study/es'"
        )
    inner = lhs[1:].strip()
    outer = _split_names(rhs.strip(), original)
    if inner in ("1", ""):
        return RandomTerm(outer)
    quoted = re.fullmatch(r"`([^`]+)`", inner)
    if quoted:
        inner = quoted.group(1)
    elif not re.fullmatch(_NAME, inner):
        raise InputError(
            f"random={original!r}: the left side of '|' must be 1 or one column "
            f"name (e.g. '~ outcome | trial'); got {inner!r}"
        )
    if len(outer) != 1:
        raise InputError(
            f"random={original!r}: a '~ {inner} | outer' term takes a single outer "
            "factor (nesting with '/' is for '~ 1 | a/b' terms)"
        )
    if inner == outer[0]:
        raise InputError(f"random={original!r}: the inner and outer factor are the same column")
    return RandomTerm(outer, inner)


def parse_random(random: Any, struct: Any = None) -> tuple[RandomTerm, ...]:
    """Random-effects terms from the forms metafor users write.

    * ``None``, ``"none"``, ``[]`` — no random effects (the equal-effects model);
    * ``"study/es"`` or ``"~ 1 | study/es"`` — one nested term (three-level model);
    * ``["~ 1 | study/es", "~ 1 | lab"]`` — several terms, crossed with each other;
    * ``"~ outcome | trial"`` with ``struct="UN"`` — correlated levels within a cluster
      (``struct`` is one name or one per ``inner | outer`` term, in order; default "CS" as in
      metafor).

    A list of several plain names (``["study", "es"]``) is refused: in mlmeta's earlier API it
    meant nesting and in metafor's list syntax it means crossed terms, so the message shows both
    spellings.
    """
    if random is None:
        terms: list[RandomTerm] = []
    elif isinstance(random, RandomTerm):
        terms = [random]
    elif isinstance(random, str):
        s = random.strip()
        terms = [] if s.lower() in ("", "none") else [_parse_term(s, random)]
    elif isinstance(random, Sequence):
        items = list(random)
        if any(not isinstance(x, (str, RandomTerm)) for x in items):
            raise InputError(f"random={random!r}: give strings such as '~ 1 | study/es'")
        plain = [x for x in items if isinstance(x, str) and "|" not in x and "/" not in x]
        if len(items) > 1 and len(plain) == len(items):
            names = [x.strip() for x in items]
            raise InputError(
                f"random={random!r} is ambiguous: write random='{'/'.join(names)}' for levels "
                f"nested outer to inner, or random={[f'~ 1 | {n}' for n in names]!r} for "
                "crossed terms"
            )
        terms = [
            x if isinstance(x, RandomTerm) else _parse_term(x, random)
            for x in items
            if not (isinstance(x, str) and x.strip().lower() in ("", "none"))
        ]
    else:
        raise InputError(
            f"random must be a string such as 'study/es' or a list of formulas; "
            f"got {type(random).__name__}"
        )
    n_struct = sum(1 for t in terms if not t.nested)
    if struct is None:
        structs = ["CS"] * n_struct
    else:
        structs = [struct] if isinstance(struct, str) else list(struct)
        if len(structs) == 1 and n_struct > 1:
            structs = structs * n_struct
        if n_struct == 0:
            raise InputError(
                f"struct={struct!r} applies to '~ inner | outer' terms, and the model has none"
            )
        if len(structs) != n_struct:
            raise InputError(
                f"struct has {len(structs)} entries but the model has {n_struct} "
                "'~ inner | outer' terms (give one per term, in order)"
            )
        structs = [choice("struct", s, STRUCTS) for s in structs]
    it = iter(structs)
    out = tuple(t if t.nested else replace(t, struct=t.struct or next(it)) for t in terms)
    seen: set[str] = set()
    for t in out:
        if t.nested:
            key = "/".join(t.outer)
            if key in seen:
                raise InputError(f"random: the term '{t.formula}' appears twice")
            seen.add(key)
    return out


@dataclass(frozen=True)
class ModelSpec:
    """What model to fit (see the module docstring); build it with :meth:`build`.

    Attributes
    ----------
    yi, vi : names of the effect-size and sampling-variance columns.
    random : the random-effects terms (empty: the equal-effects model).
    mods : moderator formula in R syntax, or None (intercept only).
    method : "REML" or "ML".  test : "z" or "t".  dfs : "residual" or "contain".
    level : confidence level as a fraction (0.95).
    rho, rho_cluster : constant sampling correlation within clusters (the CHE working model,
        metafor's ``vcalc(vi, cluster, obs, rho)``); the cluster column is always resolved.
    sigma2 : per variance component, a value to fix it at or None to estimate it (None: all
        estimated).
    measure : the effect-size measure of yi (e.g. "ZCOR"), for back-transformed output.
    R : known correlation matrices of factors' levels, ``{factor: matrix}`` (or None).
    V : a known sampling covariance matrix (or None), used instead of ``vi`` on the diagonal.
    """

    yi: str = "yi"
    vi: str = "vi"
    random: tuple[RandomTerm, ...] = ()
    mods: str | None = None
    method: str = "REML"
    test: str = "z"
    dfs: str = "residual"
    level: float = 0.95
    rho: float | None = None
    rho_cluster: str | None = None
    sigma2: tuple[float | None, ...] | None = None
    measure: str | None = None
    R: Mapping[str, Any] | None = field(default=None, compare=False)
    V: Any = field(default=None, compare=False)

    @classmethod
    def build(
        cls,
        *,
        yi: str = "yi",
        vi: str = "vi",
        random: Any = None,
        struct: Any = None,
        mods: str | None = None,
        method: str = "REML",
        test: str = "z",
        dfs: str = "residual",
        level: Any = 95,
        rho: Any = None,
        rho_cluster: str | None = None,
        sigma2: Sequence[float | None] | None = None,
        measure: str | None = None,
        R: Mapping[str, Any] | None = None,
        V: Any = None,
    ) -> ModelSpec:
        """Validate user-level arguments (level in percent) and return the specification."""
        terms = parse_random(random, struct)
        if mods is not None and not isinstance(mods, str):
            raise FormulaError(
                f"moderator formula must be a string such as '~ year', got {type(mods).__name__}"
            )
        mods = (
            None
            if mods is None
            or not str(mods).strip()
            or str(mods).strip().lower() in ("~1", "~ 1", "none")
            else str(mods)
        )
        rho_v = check_rho(rho)
        if rho_v is not None and rho_cluster is None:
            if not terms:
                raise InputError(
                    "rho needs rho_cluster= (the column whose rows share "
                    "correlated sampling errors) when the model has no random "
                    "effects"
                )
            rho_cluster = terms[0].outer[0]
        if rho_v is None and rho_cluster is not None:
            raise InputError("rho_cluster= was given without rho=")
        spec = cls(
            yi=yi,
            vi=vi,
            random=terms,
            mods=mods,
            method=choice("method", method, METHODS),
            test=choice("test", test, TESTS),
            dfs=choice("dfs", dfs, DFS),
            level=to_fraction(level),
            rho=rho_v,
            rho_cluster=rho_cluster,
            sigma2=_sigma2(sigma2),
            measure=None if measure is None else str(measure).upper(),
            R=R,
            V=V,
        )
        return spec

    def replace(self, **changes: Any) -> ModelSpec:
        """A new specification with ``changes`` (field names; ``level`` as a fraction)."""
        bad = set(changes) - {f.name for f in fields(self)}
        if bad:
            raise InputError(f"unknown model setting(s): {', '.join(sorted(bad))}")
        if "rho" in changes:
            changes["rho"] = check_rho(changes["rho"])
            if changes["rho"] is not None and changes.get("rho_cluster", self.rho_cluster) is None:
                changes["rho_cluster"] = self.cluster
            if changes["rho"] is None:
                changes.setdefault("rho_cluster", None)
        if "random" in changes:
            changes["random"] = parse_random(changes["random"])
        if "sigma2" in changes:
            changes["sigma2"] = _sigma2(changes["sigma2"])
        for name, allowed in (("method", METHODS), ("test", TESTS), ("dfs", DFS)):
            if name in changes:
                changes[name] = choice(name, changes[name], allowed)
        if "level" in changes and not (0 < float(changes["level"]) < 1):
            raise InputError(
                f"level must be a fraction inside the model specification; got {changes['level']!r}"
            )
        return replace(self, **changes)

    # ------------------------------------------------------------------ derived
    @property
    def nesting(self) -> tuple[str, ...] | None:
        """The nesting outer to inner when the model is one ``~ 1 | a/b`` term (``()`` for no
        random effects), else None (crossed or structured terms)."""
        if not self.random:
            return ()
        if len(self.random) == 1 and self.random[0].nested:
            return self.random[0].outer
        return None

    @property
    def general(self) -> bool:
        """True when the model needs the general engine: crossed or ``~ inner | outer`` terms,
        ``R`` matrices or a known ``V`` (else one ``~ 1 | a/b`` term with vi and rho)."""
        return self.nesting is None or self.V is not None or bool(self.R)

    @property
    def cluster(self) -> str | None:
        """The default cluster: the outer factor of the first random term (None without)."""
        return self.random[0].outer[0] if self.random else None

    @property
    def columns(self) -> tuple[str, ...]:
        """Data columns named by the random terms (formula variables are found by the parser)."""
        out: list[str] = []
        for t in self.random:
            out += [c for c in t.columns if c not in out]
        if self.rho_cluster and self.rho_cluster not in out:
            out.append(self.rho_cluster)
        return tuple(out)

    @property
    def random_formulas(self) -> list[str]:
        return [t.formula for t in self.random]

    @property
    def level_percent(self) -> float:
        return to_percent(self.level)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for results.json and analysis files)."""
        return {
            "yi": self.yi,
            "vi": self.vi,
            "random": self.random_formulas,
            "struct": [t.struct for t in self.random if not t.nested] or None,
            "mods": self.mods,
            "method": self.method,
            "test": self.test,
            "dfs": self.dfs,
            "level": self.level_percent,
            "rho": self.rho,
            "rho_cluster": self.rho_cluster,
            "sigma2": None if self.sigma2 is None else list(self.sigma2),
            "measure": self.measure,
        }


def _sigma2(sigma2: Sequence[float | None] | None) -> tuple[float | None, ...] | None:
    if sigma2 is None:
        return None
    if isinstance(sigma2, (str, bytes)) or not isinstance(sigma2, Sequence):
        raise InputError(
            f"sigma2 must be a list with one value (or None) per variance component; got {sigma2!r}"
        )
    out: list[float | None] = []
    for i, s in enumerate(sigma2):
        if s is None or (isinstance(s, float) and math.isnan(s)):
            out.append(None)
            continue
        try:
            x = float(s)
        except (TypeError, ValueError):
            raise InputError(f"sigma2[{i + 1}] must be a number >= 0 or None; got {s!r}") from None
        if not math.isfinite(x) or x < 0:
            raise InputError(f"sigma2[{i + 1}] must be a finite value >= 0; got {s!r}")
        out.append(x)
    return tuple(out)
