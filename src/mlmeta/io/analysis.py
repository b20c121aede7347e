"""Analysis files: a whole meta-analysis described in a small TOML file.

``mlmeta run analysis.toml`` reads the file with :mod:`tomllib`, checks every key and type
(an unknown key or a wrong type is an error that names the key), and hands an
:class:`AnalysisSpec` to :mod:`mlmeta.report`. ``mlmeta init DATA.csv`` writes a commented
template guessed from the data file's columns (:func:`init_template`).

Schema (every key optional unless marked *required*)::

    title = "..."                # report title (default: the example's title or the file name)
    simulated = false            # true: the report header says the data are SIMULATED
    notice = "..."               # a sentence shown under the title (e.g. the data's source)

    [data]                       # *required*: exactly one of file / example
    file = "effects.csv"         # CSV/TSV/Excel/Parquet, relative to this TOML file
    example = "alliance_like"    # or a bundled example (mlmeta.examples.EXAMPLES)
    study = "study"              # column identifying studies (default: outer level of random)
    n = "ni"                     # participants per effect size (default: effect.ni)
    categorical = ["pubstatus"]  # numeric columns to treat as categories

    [effect]                     # *required*: yi + vi, or measure + its escalc columns
    yi = "yi"                    # effect sizes ...
    vi = "vi"                    # ... and their sampling variances
    measure = "ZCOR"             # any escalc measure (ZCOR, COR, SMD, OR, RR, PLO, ...). With
    ri = "ri"                    #   its columns (ri ni | m1i sd1i n1i m2i sd2i n2i | ai bi ci di ...)
                                 #   yi/vi are computed;
    ni = "ni"                    #   with yi/vi it names their scale (ZCOR: reported as r)
    label = "g"                  # the effect's symbol in the report (default r, g, log OR, ES)

    [model]
    random = "study/es"          # nesting outer/inner ("none": equal-effects model), or a
                                 #   list of terms: ["~ 1 | study/es", "~ 1 | lab"] (crossed),
                                 #   ["~ outcome | trial"] (correlated outcomes within trials)
    struct = "UN"                # structure of each '~ inner | outer' term (CS, HCS, UN, AR,
                                 #   HAR, ID, DIAG; a list for two terms); default CS
    R = {phylo = "phylo_cor.csv"}  # known correlation matrix of a factor's levels (CSV: header
                                 #   row and first column hold the level names)
    V = "V.csv"                  # known sampling covariance (CSV row,col,value; 1-based data
                                 #   rows, lower triangle with the diagonal); replaces vi
    method = "REML"              # REML or ML
    test = "t"                   # t or z
    dfs = "contain"              # contain or residual (t tests only)
    level = 95                   # confidence level, percent
    cluster = "study"            # cluster of the CR2 robust inference (default: outer level)
    rho = 0.6                    # CHE working model: sampling correlation within rho_cluster
    rho_cluster = "study"        #   (default: outer level); omit rho for the plain model
    moderators = ["phase"]       # each tested alone (subgroups, omnibus F, R2, CR2) ...
    reference = {phase = "late"} # reference level of a categorical moderator (default: the
                                 #   first in sorted order), as R's relevel(phase, ref = "late")
    joint = true                 # ... and all together in one model
    inference = "model"          # primary inference: "model" (model-based t/z tests) or "CR2"

    [analyses]                   # true/false switches (defaults in ANALYSES_DEFAULTS)
    profile = true               # profile-likelihood CIs of variance components and I2
    lrt = true                   # likelihood-ratio test of each level
    robust = true                # CR2 cluster-robust inference
    loo = true                   # leave-one-study-out
    influence = true             # Cook's distances by study, standardized residuals
    bias = true                  # Egger, PET-PEESE, aggregated rank test/trim-and-fill/selmodel
    che_sweep = true             # refit under the CHE model over che_rhos
    figures = true               # forest, funnel, orchard/bubble, profile, leave-one-out plots
    che_rhos = [0, 0.2, 0.4, 0.6, 0.8, 0.9]
    bias_rho = 0.5               # rho used to aggregate effects within studies for bias tests
                                 #   (default: the model's rho; 0 when it has none)
    selection_side = "auto"      # selection model favours "positive" or "negative" effects;
                                 #   "auto": the direction of the pooled estimate
    selection_steps = [0.025]    # one-sided p-value cut points of the selection model
    egger_predictor = "auto"     # "se" (sqrt(vi)), "sqrt_inv_n" (sqrt(1/n~)); auto: sqrt_inv_n
                                 #   for SMD and OR (their SE depends on the estimate), else se
    outlier_rule = "bonferroni"  # |studentized residual| > z(1 - .05/(2k)); or "z1.96"

    [report]
    forest_level = "auto"        # "effect", "study" (one row per study) or "auto" (study level
                                 #   when the effect-level forest is taller than one page)
    forest_sort = "data"         # "data", "effect" or "weight"
    templates = "templates/"     # folder with report.html.j2 / report.md.j2 overriding ours

    [power]                      # optional: power of the test of the overall average effect
    target = 0.8                 #   (POMADE; see mlmeta.power.report) and studies needed
    effect = "observed"          # or a number on the analysis scale (Fisher z for ZCOR)
    model = "CHE"                # working model: CHE, MLMA or CE
    df = "rve"                   # model, satt or rve (CE needs rve)
    rho = 0.6                    # sampling correlation (default: the model's rho, else 0.6)
    tau = "observed"             # between-study SD (default: the fit's); omega likewise
    alpha = 0.05
    iterations = 1000            # draws when searching the number of studies
    seed = 1

Paths: ``data.file`` is relative to the TOML file, so an analysis folder can be moved as a
whole; ``data.example`` loads a data set shipped inside the package and therefore works from
any clone or installation (the bundled ``examples/*.toml`` use it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from mlmeta.effects import registry as _registry
from mlmeta.errors import InputError, MlmetaError

__all__ = [
    "ANALYSES_DEFAULTS",
    "DEFAULT_RHOS",
    "COLUMN_NAMES",
    "AnalysisError",
    "AnalysisSpec",
    "check_reference",
    "init_template",
    "load_analysis",
    "load_data",
    "parse_analysis",
]

MEASURES = _registry.MEASURES  # every registered effect-size measure
ESCALC_COLUMNS = _registry.ALL_ARGS
ESCALC_NEEDS = {m: _registry.forms(m) for m in MEASURES}  # alternative complete column sets
DEFAULT_LABELS = {"ZCOR": "r", "COR": "r", "SMD": "g", "OR": "log OR"}
DEFAULT_RHOS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)
ANALYSES_DEFAULTS = {
    "profile": True,
    "lrt": True,
    "robust": True,
    "loo": True,
    "influence": True,
    "bias": True,
    "che_sweep": False,
    "figures": True,
}
INFERENCES = ("model", "CR2")
SELECTION_SIDES = ("auto", "positive", "negative")
EGGER_PREDICTORS = ("auto", "se", "sqrt_inv_n")
OUTLIER_RULES = ("bonferroni", "z1.96")
FOREST_LEVELS = ("auto", "effect", "study")
FOREST_SORTS = ("data", "effect", "weight")


class AnalysisError(MlmetaError):
    """A problem with the analysis file: unknown key, wrong type, impossible value."""


# ---------------------------------------------------------------- schema
# kind: "str", "bool", "number", "list[str]", "list[number]"
_STR, _BOOL, _NUM, _LSTR, _LNUM = "str", "bool", "number", "list[str]", "list[number]"
SCHEMA: dict[str, Any] = {
    "title": _STR,
    "simulated": _BOOL,
    "notice": _STR,
    "data": {"file": _STR, "example": _STR, "study": _STR, "n": _STR, "categorical": _LSTR},
    "effect": {
        "yi": _STR,
        "vi": _STR,
        "measure": _STR,
        "label": _STR,
        **{c: _STR for c in ESCALC_COLUMNS},
    },
    "model": {
        "random": "str|list[str]",
        "struct": "str|list[str]",
        "R": "table[str]",
        "V": _STR,
        "method": _STR,
        "test": _STR,
        "dfs": _STR,
        "level": _NUM,
        "cluster": _STR,
        "rho": _NUM,
        "rho_cluster": _STR,
        "moderators": _LSTR,
        "joint": _BOOL,
        "inference": _STR,
        "reference": "table[str|number]",
    },
    "analyses": {
        **{k: _BOOL for k in ANALYSES_DEFAULTS},
        "che_rhos": _LNUM,
        "bias_rho": _NUM,
        "selection_side": _STR,
        "selection_steps": _LNUM,
        "egger_predictor": _STR,
        "outlier_rule": _STR,
    },
    "report": {"forest_level": _STR, "forest_sort": _STR, "templates": _STR},
    "power": {
        "target": _NUM,
        "effect": "number|str",
        "model": _STR,
        "df": _STR,
        "rho": _NUM,
        "tau": "number|str",
        "omega": "number|str",
        "alpha": _NUM,
        "iterations": "int",
        "seed": "int",
    },
}

_KIND_TEXT = {
    _STR: "a string",
    _BOOL: "true or false",
    _NUM: "a number",
    _LSTR: "a list of strings",
    _LNUM: "a list of numbers",
    "str|list[str]": "a string or a list of strings",
    "table[str]": 'a table of strings (e.g. {phylo = "cor.csv"})',
    "table[str|number]": 'a table of levels (e.g. {phase = "late"})',
    "number|str": 'a number or "observed"',
    "int": "an integer",
}


def _type_name(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a table"
    return type(v).__name__


def _show(v) -> str:
    s = repr(v) if not isinstance(v, dict) else "{...}"
    return s if len(s) <= 40 else s[:37] + "..."


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_kind(key: str, v, kind: str, src: str) -> None:
    ok = {
        _STR: isinstance(v, str),
        _BOOL: isinstance(v, bool),
        _NUM: _is_num(v) and math.isfinite(v),
        _LSTR: isinstance(v, list) and all(isinstance(x, str) for x in v),
        _LNUM: isinstance(v, list) and all(_is_num(x) and math.isfinite(x) for x in v),
        "str|list[str]": isinstance(v, str)
        or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
        "table[str]": isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        "table[str|number]": isinstance(v, dict)
        and all(isinstance(x, str) or (_is_num(x) and math.isfinite(x)) for x in v.values()),
        "number|str": isinstance(v, str) or (_is_num(v) and math.isfinite(v)),
        "int": isinstance(v, int) and not isinstance(v, bool),
    }[kind]
    if not ok and kind == "table[str|number]" and isinstance(v, dict):
        k3, v3 = next(
            (a, b)
            for a, b in v.items()
            if not (isinstance(b, str) or _is_num(b) and math.isfinite(b))
        )
        raise AnalysisError(
            f"{src}: '{key}.{k3}' must be a level (a string or a number), got "
            f"{_type_name(v3)} ({_show(v3)})"
        )
    if not ok:
        raise AnalysisError(
            f"{src}: {key!r} must be {_KIND_TEXT[kind]}, got {_type_name(v)} ({_show(v)})"
        )


def _validate(raw: dict, src: str) -> None:
    for key, val in raw.items():
        if key not in SCHEMA:
            near = get_close_matches(key, list(SCHEMA), n=1)
            nested = [s for s, sub in SCHEMA.items() if isinstance(sub, dict) and key in sub]
            hint = (
                f"; did you mean {near[0]!r}?"
                if near
                else f"; it belongs in the [{nested[0]}] table"
                if nested
                else ""
            )
            raise AnalysisError(f"{src}: unknown key {key!r}{hint}")
        kind = SCHEMA[key]
        if isinstance(kind, dict):
            if not isinstance(val, dict):
                raise AnalysisError(
                    f"{src}: {key!r} must be a table ([{key}]), got "
                    f"{_type_name(val)} ({_show(val)})"
                )
            for k2, v2 in val.items():
                if k2 not in kind:
                    near = get_close_matches(k2, list(kind), n=1)
                    other = [
                        s
                        for s, sub in SCHEMA.items()
                        if isinstance(sub, dict) and s != key and k2 in sub
                    ]
                    hint = (
                        f"; did you mean {near[0]!r}?"
                        if near
                        else f"; [{k2}] is a table of its own (start it with a [{k2}] line)"
                        if isinstance(SCHEMA.get(k2), dict)
                        else f"; it belongs in the [{other[0]}] table"
                        if other
                        else f"; allowed: {', '.join(kind)}"
                    )
                    raise AnalysisError(f"{src}: unknown key '{key}.{k2}'{hint}")
                _check_kind(f"{key}.{k2}", v2, kind[k2], src)
        else:
            _check_kind(key, val, kind, src)


def _choice(key: str, value: str, allowed, src: str) -> str:
    for a in allowed:
        if value.lower() == a.lower():
            return a
    raise AnalysisError(f"{src}: {key!r} must be one of {', '.join(allowed)}; got {value!r}")


# ---------------------------------------------------------------- spec
@dataclass(frozen=True)
class AnalysisSpec:
    """A validated analysis file (paths resolved)."""

    source: Path | None
    title: str | None = None
    simulated: bool = False
    notice: str | None = None
    data_file: Path | None = None
    example: str | None = None
    study: str | None = None
    n: str | None = None
    categorical: tuple[str, ...] = ()
    yi: str | None = None
    vi: str | None = None
    measure: str | None = None
    escalc: dict = field(default_factory=dict)
    label: str | None = None
    random: str | tuple[str, ...] | None = None
    struct: tuple[str, ...] | None = None
    R: dict = field(default_factory=dict)  # factor -> CSV path (resolved)
    V: Path | None = None
    method: str = "REML"
    test: str = "t"
    dfs: str = "contain"
    level: float = 95.0
    cluster: str | None = None
    rho: float | None = None
    rho_cluster: str | None = None
    moderators: tuple[str, ...] = ()
    reference: dict = field(default_factory=dict)  # categorical moderator -> reference level
    joint: bool = False
    analyses: dict = field(default_factory=lambda: dict(ANALYSES_DEFAULTS))
    che_rhos: tuple[float, ...] = DEFAULT_RHOS
    bias_rho: float | None = None  # None: the model's rho (0 without one)
    inference: str = "model"
    selection_side: str = "auto"
    selection_steps: tuple[float, ...] = (0.025,)
    egger_predictor: str = "auto"
    outlier_rule: str = "bonferroni"
    forest_level: str = "auto"
    forest_sort: str = "data"
    templates: Path | None = None
    power: dict | None = None  # the [power] table with its defaults; None: no power section

    @property
    def bias_rho_used(self) -> float:
        """The within-study correlation of the aggregated bias analyses: ``bias_rho`` when
        given, else the model's rho (0: a model without rho assumes independent errors)."""
        if self.bias_rho is not None:
            return self.bias_rho
        return self.rho if self.rho is not None else 0.0

    @property
    def stem(self) -> str:
        if self.source is not None:
            return self.source.stem
        return self.example or (self.data_file.stem if self.data_file else "analysis")

    @property
    def effect_label(self) -> str:
        if self.label:
            return self.label
        return DEFAULT_LABELS.get(self.measure or "", "ES")

    @property
    def random_levels(self) -> tuple[str, ...]:
        """The nesting outer to inner (the columns of the random terms for other structures)."""
        from mlmeta.spec import parse_random

        out: list[str] = []
        for t in parse_random(self.random, self.struct):
            out += [c for c in t.columns if c not in out]
        return tuple(out)

    def model_spec(self, yi: str, vi: str, mods: str | None = None):
        """The :class:`~mlmeta.spec.ModelSpec` of this analysis for a moderator formula."""
        from mlmeta.spec import ModelSpec

        random = list(self.random) if isinstance(self.random, tuple) else self.random
        return ModelSpec.build(
            yi=yi,
            vi=vi,
            random=random,
            mods=mods,
            method=self.method,
            test=self.test,
            dfs=self.dfs,
            level=self.level,
            rho=self.rho,
            rho_cluster=self.rho_cluster,
            measure=self.measure,
            struct=None if self.struct is None else list(self.struct),
            R={k: str(v) for k, v in self.R.items()} or None,
            V=None if self.V is None else str(self.V),
        )

    def to_dict(self) -> dict:
        """The settings as run (for results.json and the report's methods section)."""
        return {
            "source": None if self.source is None else str(self.source),
            "title": self.title,
            "simulated": self.simulated,
            "notice": self.notice,
            "data": {
                "file": None if self.data_file is None else str(self.data_file),
                "example": self.example,
                "study": self.study,
                "n": self.n,
                "categorical": list(self.categorical),
            },
            "effect": {
                "yi": self.yi,
                "vi": self.vi,
                "measure": self.measure,
                "label": self.effect_label,
                **self.escalc,
            },
            "model": {
                "random": (list(self.random) if isinstance(self.random, tuple) else self.random),
                "struct": None if self.struct is None else list(self.struct),
                "R": {k: str(v) for k, v in self.R.items()} or None,
                "V": None if self.V is None else str(self.V),
                "method": self.method,
                "test": self.test,
                "dfs": self.dfs,
                "level": self.level,
                "cluster": self.cluster,
                "rho": self.rho,
                "rho_cluster": self.rho_cluster,
                "moderators": list(self.moderators),
                "joint": self.joint,
                "reference": dict(self.reference) or None,
                "inference": self.inference,
            },
            "analyses": {
                **self.analyses,
                "che_rhos": list(self.che_rhos),
                "bias_rho": self.bias_rho_used,
                "bias_rho_from": "analysis file"
                if self.bias_rho is not None
                else (
                    "model"
                    if self.rho is not None
                    else "model (no rho: independent sampling errors)"
                ),
                "selection_side": self.selection_side,
                "selection_steps": list(self.selection_steps),
                "egger_predictor": self.egger_predictor,
                "outlier_rule": self.outlier_rule,
            },
            "report": {
                "forest_level": self.forest_level,
                "forest_sort": self.forest_sort,
                "templates": None if self.templates is None else str(self.templates),
            },
            "power": None if self.power is None else dict(self.power),
        }


def load_analysis(path: str | Path) -> AnalysisSpec:
    """Read and validate an analysis TOML file."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise AnalysisError("analysis files need Python >= 3.11 (tomllib)") from None

    from mlmeta.io.read import check_regular_file

    p = Path(path)
    src = str(path)
    if not p.exists():
        raise AnalysisError(f"analysis file {src!r} not found")
    if p.is_dir():
        raise AnalysisError(f"analysis file {src!r} is a directory")
    try:  # a FIFO or a device would block or never end
        size = check_regular_file(p, "analysis file").st_size
    except InputError as exc:
        raise AnalysisError(str(exc)) from None
    if size > 10_000_000:
        raise AnalysisError(
            f"analysis file {src!r} has {size:,} bytes; an analysis file is a "
            "short TOML text (the data go in their own file)"
        )
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AnalysisError(f"{src}: not UTF-8 text") from None
    except OSError as exc:
        raise AnalysisError(f"cannot read analysis file {src!r}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise AnalysisError(f"{src}: invalid TOML: {msg}") from None
    except RecursionError:
        raise AnalysisError(f"{src}: arrays or tables nested too deeply to read") from None
    return parse_analysis(raw, source=p.resolve(), name=src)


def parse_analysis(raw: dict, source: Path | None = None, name: str = "analysis") -> AnalysisSpec:
    """Validate a parsed TOML document (``source``: the file, for relative data paths)."""
    src = name
    _validate(raw, src)
    data = raw.get("data")
    if data is None:
        raise AnalysisError(
            f'{src}: missing [data] table: give data.file = "FILE.csv" '
            '(relative to the analysis file) or data.example = "NAME"'
        )
    if ("file" in data) == ("example" in data):
        raise AnalysisError(f"{src}: [data] needs exactly one of 'data.file' and 'data.example'")
    data_file = None
    example = data.get("example")
    if example is not None:
        from mlmeta.examples import EXAMPLES

        if example not in EXAMPLES:
            raise AnalysisError(
                f"{src}: 'data.example' must be one of {', '.join(EXAMPLES)}; got {example!r}"
            )
    else:
        base = source.parent if source is not None else Path.cwd()
        data_file = (base / data["file"]).resolve()
        if not data_file.exists():
            raise AnalysisError(
                f"{src}: 'data.file' {data['file']!r} not found (looked for {data_file})"
            )
    eff = raw.get("effect")
    if eff is None:
        raise AnalysisError(
            f"{src}: missing [effect] table: give effect.yi and effect.vi, or "
            'effect.measure with its columns (e.g. measure = "ZCOR", '
            'ri = "r", ni = "n")'
        )
    measure = eff.get("measure")
    if measure is not None:
        measure = _choice("effect.measure", measure, MEASURES, src)
    esc = {c: eff[c] for c in ESCALC_COLUMNS if c in eff}
    has_yv = "yi" in eff or "vi" in eff
    if has_yv:
        if not ("yi" in eff and "vi" in eff):
            missing = "effect.vi" if "yi" in eff else "effect.yi"
            raise AnalysisError(f"{src}: {missing!r} is missing: give both effect.yi and effect.vi")
        escalc_cols = {}
        # escalc columns next to yi/vi are allowed only for the sample size (participants)
        extra = [c for c in esc if c != "ni"]
        if extra:
            raise AnalysisError(
                f"{src}: 'effect.{extra[0]}' cannot be combined with "
                "effect.yi/effect.vi; give either yi and vi or the escalc "
                "columns of effect.measure"
            )
        if "ni" in esc:
            escalc_cols = {"ni": esc["ni"]}
    else:
        if measure is None:
            raise AnalysisError(
                f"{src}: [effect] needs effect.yi and effect.vi, or effect.measure with its columns"
            )
        needs = ESCALC_NEEDS[measure]
        if not any(all(c in esc for c in alt) for alt in needs):
            miss = [c for c in needs[0] if c not in esc]
            raise AnalysisError(
                f"{src}: effect.measure = {measure!r} needs the columns "
                f"{', '.join('effect.' + c for c in needs[0])}; missing "
                f"{', '.join('effect.' + c for c in miss)}"
            )
        escalc_cols = esc
    model = raw.get("model", {})
    method = _choice("model.method", model.get("method", "REML"), ("REML", "ML"), src)
    test = _choice("model.test", model.get("test", "t"), ("z", "t"), src)
    dfs = _choice(
        "model.dfs",
        model.get("dfs", "contain" if test == "t" else "residual"),
        ("residual", "contain"),
        src,
    )
    from mlmeta.spec import check_rho, parse_random, to_fraction

    try:
        level = to_fraction(model.get("level", 95), "'model.level'") * 100.0
        rho = check_rho(model.get("rho"), "'model.rho'")
    except MlmetaError as exc:
        raise AnalysisError(f"{src}: {exc}") from None
    if "rho_cluster" in model and rho is None:
        raise AnalysisError(f"{src}: 'model.rho_cluster' given without 'model.rho'")
    random = model.get("random")
    if isinstance(random, list):
        random = tuple(random)
    struct_raw = model.get("struct")
    struct = (
        None
        if struct_raw is None
        else (struct_raw,)
        if isinstance(struct_raw, str)
        else tuple(struct_raw)
    )
    try:
        parse_random(
            list(random) if isinstance(random, tuple) else random,
            None if struct is None else list(struct),
        )
    except MlmetaError as exc:
        raise AnalysisError(f"{src}: 'model.random': {exc}") from None
    base_dir = source.parent if source is not None else Path.cwd()
    R_files = {}
    for fac, rel in model.get("R", {}).items():
        path = (base_dir / rel).resolve()
        if not path.is_file():
            raise AnalysisError(
                f"{src}: 'model.R.{fac}': file {rel!r} not found (looked for {path})"
            )
        R_files[fac] = path
    V_file = None
    if "V" in model:
        V_file = (base_dir / model["V"]).resolve()
        if not V_file.is_file():
            raise AnalysisError(
                f"{src}: 'model.V': file {model['V']!r} not found (looked for {V_file})"
            )
        if rho is not None:
            raise AnalysisError(
                f"{src}: give either 'model.V' (a known sampling covariance) "
                "or 'model.rho', not both"
            )
    mods = tuple(model.get("moderators", ()))
    if len(set(mods)) != len(mods):
        dup = next(m for m in mods if mods.count(m) > 1)
        raise AnalysisError(f"{src}: 'model.moderators' lists {dup!r} twice")
    for m in mods:
        if not isinstance(m, str) or not m.strip() or m != m.strip():
            raise AnalysisError(f"{src}: 'model.moderators' entries are column names; got {m!r}")
    joint = bool(model.get("joint", len(mods) > 1))
    reference = _parse_reference(model.get("reference", {}), mods, _data_categorical(raw), src)
    an = dict(ANALYSES_DEFAULTS)
    a_raw = raw.get("analyses", {})
    an.update({k: v for k, v in a_raw.items() if k in ANALYSES_DEFAULTS})
    rhos = tuple(float(x) for x in a_raw.get("che_rhos", DEFAULT_RHOS))
    if not rhos:
        raise AnalysisError(f"{src}: 'analyses.che_rhos' is empty")
    try:
        for r in rhos:
            check_rho(r, "'analyses.che_rhos' values")
        bias_rho = (
            check_rho(a_raw["bias_rho"], "'analyses.bias_rho'") if "bias_rho" in a_raw else None
        )
    except MlmetaError as exc:
        raise AnalysisError(f"{src}: {exc}") from None
    inference = _choice("model.inference", model.get("inference", "model"), INFERENCES, src)
    side = _choice(
        "analyses.selection_side", a_raw.get("selection_side", "auto"), SELECTION_SIDES, src
    )
    steps = tuple(float(x) for x in a_raw.get("selection_steps", (0.025,)))
    bad = [x for x in steps if not 0 < x < 1]
    if not steps or bad or len(set(steps)) != len(steps):
        raise AnalysisError(
            f"{src}: 'analyses.selection_steps' must be distinct one-sided "
            f"p-values between 0 and 1 (exclusive); got {list(steps)!r}"
        )
    egger_pred = _choice(
        "analyses.egger_predictor", a_raw.get("egger_predictor", "auto"), EGGER_PREDICTORS, src
    )
    outlier_rule = _choice(
        "analyses.outlier_rule", a_raw.get("outlier_rule", "bonferroni"), OUTLIER_RULES, src
    )
    rep_raw = raw.get("report", {})
    forest_level = _choice(
        "report.forest_level", rep_raw.get("forest_level", "auto"), FOREST_LEVELS, src
    )
    forest_sort = _choice(
        "report.forest_sort", rep_raw.get("forest_sort", "data"), FOREST_SORTS, src
    )
    templates = None
    if "templates" in rep_raw:
        base = source.parent if source is not None else Path.cwd()
        templates = (base / rep_raw["templates"]).resolve()
        if not templates.is_dir():
            raise AnalysisError(
                f"{src}: 'report.templates' {rep_raw['templates']!r} is not a "
                f"folder (looked for {templates})"
            )
    simulated = bool(raw.get("simulated", False))
    if example is not None:
        from mlmeta.examples import EXAMPLES

        simulated = simulated or bool(EXAMPLES[example][2])
    elif _bundled_simulated(data_file):
        simulated = True  # a bundled simulated data set read by path is still simulated
    dd = raw["data"]
    return AnalysisSpec(
        source=source,
        title=raw.get("title"),
        simulated=simulated,
        notice=raw.get("notice"),
        data_file=data_file,
        example=example,
        study=dd.get("study"),
        n=dd.get("n", escalc_cols.get("ni")),
        categorical=tuple(dd.get("categorical", ())),
        yi=eff.get("yi"),
        vi=eff.get("vi"),
        measure=measure,
        escalc={} if has_yv else escalc_cols,
        label=eff.get("label"),
        random=random,
        struct=struct,
        R=R_files,
        V=V_file,
        method=method,
        test=test,
        dfs=dfs,
        level=level,
        cluster=model.get("cluster"),
        rho=None if rho is None else float(rho),
        rho_cluster=model.get("rho_cluster"),
        moderators=mods,
        reference=reference,
        joint=joint and len(mods) > 1,
        analyses=an,
        che_rhos=rhos,
        bias_rho=None if bias_rho is None else float(bias_rho),
        inference=inference,
        selection_side=side,
        selection_steps=tuple(sorted(steps)),
        egger_predictor=egger_pred,
        outlier_rule=outlier_rule,
        forest_level=forest_level,
        forest_sort=forest_sort,
        templates=templates,
        power=None if "power" not in raw else _parse_power(raw["power"], src),
    )


def _data_categorical(raw: dict) -> tuple[str, ...]:
    """The ``data.categorical`` list of a parsed (already validated) document."""
    return tuple((raw.get("data") or {}).get("categorical", ()))


def _parse_reference(
    ref_raw: dict, mods: tuple[str, ...], categorical: tuple[str, ...], src: str
) -> dict[str, str]:
    """``model.reference``: moderator -> reference level (as a category label: a number is
    written as the category labels of a numeric column are, 2.0 -> "2"). The moderator must be
    listed in ``model.moderators``; whether it is categorical and has that level is checked
    with the data (:func:`check_reference`)."""
    out: dict[str, str] = {}
    for m, lev in ref_raw.items():
        if m not in mods:
            listed = ", ".join(mods) if mods else "none"
            raise AnalysisError(
                f"{src}: 'model.reference.{m}': {m!r} is not a moderator "
                f"(model.moderators: {listed})"
            )
        lab = lev if isinstance(lev, str) else _label(lev)
        if not lab.strip():
            raise AnalysisError(f"{src}: 'model.reference.{m}' must name a level; got {lev!r}")
        out[m] = lab
    return out


def check_reference(spec: AnalysisSpec, df) -> None:
    """Each ``model.reference`` moderator is categorical (a text column, or listed in
    ``data.categorical``) and has the reference level among its values in ``df``."""
    import pandas as pd

    for m, lev in spec.reference.items():
        s = df[m]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if numeric and m not in spec.categorical:
            raise AnalysisError(
                f"'model.reference.{m}': {m!r} is not a categorical moderator "
                f"(a numeric column; list it in data.categorical to treat it "
                f"as categories)"
            )
        levels = sorted({_label(x) for x in s if not pd.isna(x)})
        if lev not in levels:
            shown = ", ".join(repr(x) for x in levels[:20]) + (" ..." if len(levels) > 20 else "")
            raise AnalysisError(
                f"'model.reference.{m}': level {lev!r} not found in column {m!r} (levels: {shown})"
            )


POWER_MODELS = ("CHE", "MLMA", "CE")
POWER_DFS = ("model", "satt", "rve")


def _parse_power(p_raw: dict, src: str) -> dict:
    """The ``[power]`` table checked value by value, with the defaults of
    :data:`mlmeta.power.report.SPEC_KEYS` filled in."""
    from mlmeta.power.report import SPEC_KEYS

    out = dict(SPEC_KEYS)
    out.update(p_raw)
    for key in ("effect", "tau", "omega"):
        v = out[key]
        if isinstance(v, str):
            if v.strip().lower() != "observed":
                raise AnalysisError(
                    f"{src}: 'power.{key}' must be a number or \"observed\"; got {v!r}"
                )
            out[key] = "observed"
        elif key != "effect" and v < 0:
            raise AnalysisError(f"{src}: 'power.{key}' must be >= 0 or \"observed\"; got {v!r}")
        else:
            out[key] = float(v)
    for key in ("target", "alpha"):
        if not 0 < out[key] < 1:
            raise AnalysisError(
                f"{src}: 'power.{key}' must be strictly between 0 and 1; got {out[key]!r}"
            )
        out[key] = float(out[key])
    if out["rho"] is not None:
        if not 0 <= out["rho"] <= 1:
            raise AnalysisError(f"{src}: 'power.rho' must be between 0 and 1; got {out['rho']!r}")
        out["rho"] = float(out["rho"])
    out["model"] = _choice("power.model", out["model"], POWER_MODELS, src)
    out["df"] = _choice("power.df", out["df"], POWER_DFS, src)
    if out["model"] == "CE" and out["df"] != "rve":
        raise AnalysisError(
            f"{src}: 'power.model' CE (correlated effects) needs power.df = "
            f'"rve"; got {out["df"]!r}'
        )
    if out["iterations"] < 1:
        raise AnalysisError(
            f"{src}: 'power.iterations' must be an integer >= 1; got {out['iterations']!r}"
        )
    return out


def _bundled_simulated(path: Path | None) -> bool:
    """True when ``path`` is the CSV of a bundled example that is simulated."""
    if path is None:
        return False
    from importlib import resources

    from mlmeta.examples import EXAMPLES

    try:
        base = Path(str(resources.files("mlmeta.examples").joinpath("data")))
        return any(
            sim and (base / f"{name}.csv").resolve() == path.resolve()
            for name, (_, _, sim) in EXAMPLES.items()
        )
    except (OSError, TypeError):
        return False


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class LoadedData:
    frame: Any  # pandas DataFrame with columns yi and vi (named by LoadedData.yi / .vi)
    yi: str
    vi: str
    source_text: str  # "bundled example 'x'" or the file path
    example_title: str | None
    example_notice: str | None


def load_data(spec: AnalysisSpec) -> LoadedData:
    """The data of an analysis, with effect sizes computed when the file asks for escalc."""
    import pandas as pd

    title = notice = None
    if spec.example is not None:
        from mlmeta.examples import load_example

        ex = load_example(spec.example)
        df = ex.data.copy()
        title, notice = ex.title, ex.notice
        source_text = f"bundled example '{spec.example}'"
    else:
        from mlmeta.io import read_table

        df = read_table(str(spec.data_file))
        source_text = str(spec.data_file)
    cols = [str(c) for c in df.columns]

    def need(col: str | None, key: str) -> None:
        if col is not None and col not in df.columns:
            near = get_close_matches(col, cols, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            from mlmeta.io.read import lookalike_hint

            hint = lookalike_hint(col, cols) or hint
            shown = ", ".join(cols[:30]) + (f", ... ({len(cols)} in all)" if len(cols) > 30 else "")
            raise AnalysisError(
                f"{key}: column {col!r} not found in the data (columns: {shown}){hint}"
            )

    for lv in spec.random_levels:
        need(lv, "model.random")
    need(spec.study, "data.study")
    need(spec.n, "data.n")
    need(spec.cluster, "model.cluster")
    need(spec.rho_cluster, "model.rho_cluster")
    for c in spec.categorical:
        need(c, "data.categorical")
    for m in spec.moderators:
        need(m, "model.moderators")
        if "`" in m:  # a formula names such a column between back-quotes: it cannot hold one
            raise AnalysisError(
                f"model.moderators: column {m!r} has a back-quote (`) in its "
                "name, which a moderator formula cannot refer to; rename the "
                "column"
            )
    if spec.escalc and spec.yi is None:
        for a, c in spec.escalc.items():
            need(c, f"effect.{a}")
        from mlmeta.effects import escalc

        es = escalc(spec.measure, df, **spec.escalc)
        df = df.copy()
        yi, vi = "yi", "vi"
        df["yi"] = es["yi"].to_numpy()
        df["vi"] = es["vi"].to_numpy()
    else:
        need(spec.yi, "effect.yi")
        need(spec.vi, "effect.vi")
        yi, vi = spec.yi or "yi", spec.vi or "vi"  # both given (checked when parsed)
    check_reference(spec, df)
    for c in spec.categorical:
        s = df[c]
        df[c] = pd.Series(
            [None if pd.isna(x) else _label(x) for x in s], index=df.index, dtype=object
        )
    return LoadedData(df, yi, vi, source_text, title, notice)


def _label(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


# ---------------------------------------------------------------- init template
#: the usual spellings of each role's column (metafor's argument names as keys), in order of
#: preference: the guesses of ``mlmeta init`` and of the web page
COLUMN_NAMES = {
    "study": (
        "study",
        "studyid",
        "study_id",
        "studyno",
        "study_no",
        "author",
        "authors",
        "paper",
        "article",
        "cluster",
        "district",
        "lab",
        "trial",
        "ref",
        "reference",
    ),
    "es": (
        "es",
        "esid",
        "es_id",
        "effect_id",
        "effectid",
        "sampleid",
        "sample_id",
        "sample",
        "outcome_id",
        "school",
        "obs",
        "row",
        "id",
    ),
    "ri": ("ri", "r", "cor", "corr", "correlation", "r_xy", "rxy"),
    "ni": ("ni", "n", "sample_size", "samplesize", "n_total", "ntotal", "total_n", "size"),
    "yi": (
        "yi",
        "y",
        "g",
        "d",
        "smd",
        "hedges_g",
        "es_value",
        "effect_size",
        "effectsize",
        "lnor",
        "logor",
        "z",
        "zr",
        "fisher_z",
    ),
    "vi": ("vi", "v", "var", "variance", "var_yi", "vyi", "sampling_variance"),
    "m1i": ("m1i", "m1", "mean1", "mean_1", "m_t", "mean_t", "m_exp"),
    "sd1i": ("sd1i", "sd1", "sd_1", "sd_t", "sd_exp"),
    "n1i": ("n1i", "n1", "n_1", "n_t", "n_exp"),
    "m2i": ("m2i", "m2", "mean2", "mean_2", "m_c", "mean_c", "m_ctrl"),
    "sd2i": ("sd2i", "sd2", "sd_2", "sd_c", "sd_ctrl"),
    "n2i": ("n2i", "n2", "n_2", "n_c", "n_ctrl"),
    "ai": ("ai", "tpos"),
    "bi": ("bi", "tneg"),
    "ci": ("ci", "cpos"),
    "di": ("di", "cneg"),
}

_GUESS = {
    "study": COLUMN_NAMES["study"],
    # init also takes a column named "effect" as the effect-size id
    "es": tuple(
        x for e in COLUMN_NAMES["es"] for x in ((e, "effect") if e == "effectid" else (e,))
    ),
    # init prefers the short names r and n (the page prefers metafor's ri and ni)
    "r": ("r", *(x for x in COLUMN_NAMES["ri"] if x != "r")),
    "n": ("n", *(x for x in COLUMN_NAMES["ni"] if x != "n")),
    "yi": COLUMN_NAMES["yi"],
    "vi": COLUMN_NAMES["vi"],
}


def _find(cols: list[str], role: str, exclude=()) -> str | None:
    low = {c.lower(): c for c in cols if c not in exclude}
    for cand in _GUESS[role]:
        if cand in low:
            return low[cand]
    return None


def _guess_ids(df) -> tuple[str | None, str | None]:
    """(study, effect-size id): a study column whose ids repeat (several effect sizes per
    study), and an id that is unique within studies; a study column with unique ids only when
    no column repeats (two-level model)."""
    cols = list(df.columns)
    k = len(df)
    low = {c.lower(): c for c in cols}
    cands = [low[c] for c in _GUESS["study"] if c in low]
    cands = [c for c in cands if df[c].notna().all()]
    study = next((c for c in cands if df[c].nunique() < k), None)
    if study is None:
        return (cands[0] if cands else None), None
    es = None
    for cand in _GUESS["es"]:
        c = low.get(cand)
        if c is None or c == study or df[c].isna().any():
            continue
        pairs = len(df[[study, c]].drop_duplicates())
        if pairs > df[study].nunique():  # varies within studies: an inner level
            es = c
            break
    return study, es


def _toml_str(s: str) -> str:
    """A TOML basic string: backslash, quote and every control character escaped, so a column
    name with a newline or a quote cannot end the string or inject keys."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _comment(s: str) -> str:
    """Text safe inside a TOML comment (control characters, a newline among them, escaped)."""
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in s)


#: the template proposes at most this many moderators (a wide file could otherwise propose
#: thousands); the others are named in a comment
MAX_TEMPLATE_MODERATORS = 20


def init_template(data_path: str, out_path: str | None = None) -> str:
    """A commented analysis file for ``data_path`` with the columns guessed from their names."""
    import os

    import numpy as np
    import pandas as pd

    from mlmeta.io import read_table

    df = read_table(data_path)
    df.columns = [str(c) for c in df.columns]
    cols = list(df.columns)
    study, es = _guess_ids(df)
    r = _find(cols, "r", exclude=(study, es))
    n = _find(cols, "n", exclude=(study, es, r))
    yi = _find(cols, "yi", exclude=(study, es, r, n))
    vi = _find(cols, "vi", exclude=(study, es, r, n, yi))
    used = {c for c in (study, es, r, n, yi, vi) if c}
    used |= {c for c in cols if c.lower() in _GUESS["study"] + _GUESS["es"]}  # ids
    mods, cats = [], []
    for c in cols:
        if c in used:
            continue
        s = df[c].dropna()
        nun = s.nunique()
        if nun < 2:
            continue
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            integer = bool(np.all(np.mod(s.to_numpy(dtype=float), 1) == 0))
            if integer and nun == len(s) and c.lower().endswith("id"):
                continue  # an id column, not a moderator
            if integer and nun <= 6:
                cats.append(c)
            mods.append(c)
        elif nun <= max(10, len(df) // 4):
            mods.append(c)
    if out_path is not None:
        base = Path(out_path).resolve().parent
    else:
        base = Path.cwd()
    rel = os.path.relpath(Path(data_path).resolve(), base)
    if rel.startswith(".."):  # not below the analysis file's folder: an absolute path is clearer
        rel = str(Path(data_path).resolve())
    lines = [
        "# mlmeta analysis file: run it with",
        f"#     mlmeta run {_comment(Path(out_path).name) if out_path else 'THIS_FILE.toml'}",
        "# The report (report.html, report.md, results.json, figures/) goes to",
        "# ./<this file's name>-report/ (or --out DIR). Lines starting with # are comments.",
        f"# Columns found in {_comment(Path(data_path).name)}: "
        f"{_comment(', '.join(cols[:60]))}{f' ... ({len(cols)} in all)' if len(cols) > 60 else ''}",
        "",
        f"title = {_toml_str('Meta-analysis of ' + Path(data_path).stem)}",
        "simulated = false          # true puts a SIMULATED-DATA notice in the report header",
        "",
        "[data]",
        f"file = {_toml_str(rel.replace(os.sep, '/'))}   # relative to this file",
    ]
    lines.append(
        f"study = {_toml_str(study)}"
        if study
        else '# study = "STUDY_COLUMN"        # TODO: the column identifying studies'
    )
    nn = n
    lines.append(
        f"n = {_toml_str(nn)}                  # participants per effect size"
        if nn
        else '# n = "N_COLUMN"              # participants per effect size (optional)'
    )
    if cats:
        lines.append(
            f"# categorical = [{', '.join(_toml_str(c) for c in cats)}]   "
            "# numeric columns to treat as categories"
        )
    lines += ["", "[effect]"]
    if r and n:
        lines += [
            'measure = "ZCOR"           # Fisher z from r and n; reported on the r scale',
            f"ri = {_toml_str(r)}",
            f"ni = {_toml_str(n)}",
        ]
        if yi and vi:
            lines += [f"# or precomputed effects: yi = {_toml_str(yi)}, vi = {_toml_str(vi)}"]
    elif yi and vi:
        lines += [
            f"yi = {_toml_str(yi)}",
            f"vi = {_toml_str(vi)}",
            '# measure = "ZCOR"         # say so when yi is Fisher z (report on the r scale)',
            '# label = "g"              # symbol of the effect in the report',
        ]
    else:
        lines += [
            "# TODO: no effect-size columns recognised. Either",
            '# yi = "YI_COLUMN"',
            '# vi = "VI_COLUMN"',
            "# or, for correlations,",
            'measure = "ZCOR"',
            f"ri = {_toml_str(r or 'R_COLUMN')}",
            f"ni = {_toml_str(n or 'N_COLUMN')}",
        ]
    lines += ["", "[model]"]
    if study and es:
        lines.append(f"random = {_toml_str(study + '/' + es)}   # effect sizes nested in studies")
    elif study:
        lines.append(
            f"random = {_toml_str(study)}        # one level above sampling error; "
            'with an effect-size id: "study/es"'
        )
    else:
        lines.append('# random = "study/es"     # TODO: nesting outer/inner')
    lines += [
        'method = "REML"            # REML or ML',
        'test = "t"                 # t or z',
        'dfs = "contain"            # contain or residual',
        "level = 95",
        (
            f"moderators = [{', '.join(_toml_str(m) for m in mods[:MAX_TEMPLATE_MODERATORS])}]"
            "   # each tested alone and (joint) together"
        ),
        *(
            [
                f"# {len(mods) - MAX_TEMPLATE_MODERATORS} more candidate columns not listed: "
                f"{_comment(', '.join(mods[MAX_TEMPLATE_MODERATORS : MAX_TEMPLATE_MODERATORS + 30]))}"
                f"{' ...' if len(mods) > MAX_TEMPLATE_MODERATORS + 30 else ''}"
            ]
            if len(mods) > MAX_TEMPLATE_MODERATORS
            else []
        ),
        f"joint = {'true' if 1 < len(mods) <= 8 else 'false'}"
        + ("   # more than 8 moderators: the joint model is off" if len(mods) > 8 else ""),
        "# rho = 0.6                # CHE working model: correlated sampling errors in a study",
        "",
        "[analyses]",
        "profile = true             # profile-likelihood CIs of variance components and I2",
        "lrt = true                 # likelihood-ratio test of each level",
        "robust = true              # CR2 cluster-robust inference",
        "loo = true                 # leave-one-study-out",
        "influence = true           # Cook's distances, standardized residuals",
        "bias = true                # Egger, PET-PEESE, aggregated bias tests",
        "che_sweep = true           # sensitivity to the assumed sampling correlation rho",
        "figures = true",
        "# che_rhos = [0, 0.2, 0.4, 0.6, 0.8, 0.9]",
        "# bias_rho = 0.5",
        "",
    ]
    return "\n".join(lines)
