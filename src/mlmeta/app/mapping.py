"""The web page's controls and the analysis-file keys they stand for: one table, both ways.

:data:`CONTROLS` lists every control of the page with the analysis-file key it sets (the keys of
:mod:`mlmeta.io.analysis`'s schema). :func:`controls_to_raw` turns the page's values into the
analysis file's dict (what ``tomllib`` would read), :func:`raw_to_controls` fills the controls
back from an analysis file, and :func:`dumps` writes the dict as TOML text that
``mlmeta run`` reads back to the same dict (floats are written with ``repr``, so they round-trip
exactly).

A few keys are built from two controls, and the table says which: ``model.random`` is
``"<study>/<effect-size id>"`` (the study column alone for a two-level model); the effect-size
columns a file gives (``effect.ri`` ... ``effect.di``) follow the *effect-size input* control;
``model.rho`` is written only when the CHE box is ticked; ``data.categorical`` collects the
numeric moderators whose *type* is set to categorical.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mlmeta.app import api as _api
from mlmeta.errors import MlmetaError

__all__ = [
    "ANALYSIS_SWITCHES",
    "COLUMN_WORDS",
    "CONTROLS",
    "CONTROL_BY_ID",
    "EFFECT_MODES",
    "ESCALC_COLUMNS",
    "FORMS",
    "MEASURES",
    "MEASURE_CHOICES",
    "MODERATOR_REF_KEY",
    "MODERATOR_TYPE_KEY",
    "UNSUPPORTED",
    "WRITTEN",
    "Control",
    "controls_to_raw",
    "default_values",
    "dumps",
    "effect_columns",
    "format_numbers",
    "mode_of",
    "parse_numbers",
    "raw_to_controls",
]

#: the analysis switches of the file's [analyses] table, with the page's words
ANALYSIS_SWITCHES: dict[str, str] = {
    "profile": "Profile-likelihood CIs of the variance components and I²",
    "lrt": "Likelihood-ratio test of each level",
    "robust": "CR2 cluster-robust inference",
    "loo": "Leave one study out",
    "influence": "Influential studies (Cook's distance) and outliers",
    "bias": "Publication bias (Egger, PET-PEESE, funnel plot, ...)",
    "che_sweep": "Sensitivity to the sampling correlation ρ (CHE sweep)",
    "figures": "Figures (forest, funnel, orchard, profile, ...)",
}
ANALYSES_DEFAULT = {
    "profile": True,
    "lrt": True,
    "robust": True,
    "loo": True,
    "influence": True,
    "bias": True,
    "che_sweep": False,
    "figures": True,
}
DEFAULT_RHOS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)

#: the library's effect-size measures and, per measure, its alternative complete column sets
#: (escalc argument names), as the analysis file accepts them
MEASURES: tuple[str, ...] = tuple(_api.MEASURES)
FORMS: dict[str, tuple[tuple[str, ...], ...]] = {
    m: tuple(tuple(f) for f in _api.ESCALC_NEEDS[m]) for m in MEASURES
}
ESCALC_COLUMNS: tuple[str, ...] = tuple(_api.ESCALC_COLUMNS)

#: the ways effect sizes can be given: "yi" (effect sizes and sampling variances as they are)
#: or computed from raw columns by a measure; the raw modes offer the measures that take
#: their typical columns ("other": every measure)
_TYPICAL = {
    "r": ("ri", "ni"),
    "smd": ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),
    "or": ("ai", "bi", "ci", "di"),
}
EFFECT_MODES = ("r", "yi", "smd", "or", "other")
_FIRST = {"r": "ZCOR", "smd": "SMD", "or": "OR"}  # the usual measure first


def _measures_for(mode: str) -> tuple[str, ...]:
    if mode == "yi":
        return ("", *MEASURES)
    if mode == "other":
        return MEASURES
    ms = [m for m in MEASURES if _TYPICAL[mode] in FORMS[m]]
    first = _FIRST[mode]
    return tuple(([first] if first in ms else []) + [m for m in ms if m != first])


#: measures offered for each effect-size input ("" = yi as given, no scale named)
MEASURE_CHOICES: dict[str, tuple[str, ...]] = {m: _measures_for(m) for m in EFFECT_MODES}


def effect_columns(mode: str, measure: str, form: int | str = 0) -> tuple[str, ...]:
    """The escalc columns (or yi, vi) that the effect-size input needs."""
    if mode == "yi":
        return ("yi", "vi")
    forms = FORMS.get(measure, ())
    if not forms:
        raise MlmetaError(
            f"effect-size measure must be one of {', '.join(MEASURES)}; got {measure!r}"
        )
    try:
        i = int(form)
    except (TypeError, ValueError):
        i = 0
    return forms[i] if 0 <= i < len(forms) else forms[0]


#: per-moderator controls (``mtype_<j>``, ``mref_<j>``, j = column position) and their keys
MODERATOR_TYPE_KEY = "data.categorical"
MODERATOR_REF_KEY = "model.reference"


@dataclass(frozen=True)
class Control:
    """One control of the page: input id, the analysis-file key it sets, its label."""

    id: str
    key: str
    label: str
    kind: str  # text | bool | number | choice | column | columns | numbers
    default: Any = None
    note: str = ""


#: what each escalc argument holds (metafor's names)
COLUMN_WORDS = {
    "ri": "Correlation column (r)",
    "ni": "Sample-size column (n)",
    "m1i": "Mean, group 1 (m1i)",
    "sd1i": "SD, group 1 (sd1i)",
    "n1i": "Size, group 1 (n1i)",
    "m2i": "Mean, group 2 (m2i)",
    "sd2i": "SD, group 2 (sd2i)",
    "n2i": "Size, group 2 (n2i)",
    "ai": "Group 1, events (ai)",
    "bi": "Group 1, non-events (bi)",
    "ci": "Group 2, events (ci)",
    "di": "Group 2, non-events, or Cohen's d (di)",
    "xi": "Number of events (xi)",
    "mi": "Non-events, or number of predictors (mi)",
    "ti": "t statistic (ti)",
    "r2i": "R² of the regression (r2i)",
}


def _col(key: str, label: str, note: str = "") -> Control:
    return Control(f"eff_{key}", f"effect.{key}", label, "column", None, note)


CONTROLS: tuple[Control, ...] = (
    Control("title", "title", "Title of the report", "text", ""),
    Control(
        "simulated", "simulated", "The data are simulated (say so in the report)", "bool", False
    ),
    Control(
        "notice",
        "notice",
        "A sentence under the title (optional, e.g. the data's source)",
        "text",
        "",
    ),
    Control("example", "data.example", "Bundled example data set", "choice", ""),
    Control(
        "effect_mode",
        "effect",
        "The effect sizes are given as",
        "choice",
        "r",
        "which columns [effect] names: yi/vi, or those of effect.measure (see FORMS)",
    ),
    Control("measure", "effect.measure", "Effect-size measure", "choice", "ZCOR"),
    Control(
        "effect_form",
        "effect",
        "Columns given",
        "choice",
        "0",
        "which of the measure's column sets [effect] names (index into FORMS[measure])",
    ),
    _col("yi", "Effect-size column (yi)"),
    _col("vi", "Sampling-variance column (vi)"),
    *(_col(a, COLUMN_WORDS.get(a, f"Column {a}")) for a in ESCALC_COLUMNS),
    Control("label", "effect.label", "Symbol of the effect in the report (optional)", "text", ""),
    Control(
        "study",
        "data.study",
        "Study column",
        "column",
        None,
        "also the outer level of model.random",
    ),
    Control(
        "es_id",
        "model.random",
        "Effect-size id column (effects nested in studies)",
        "column",
        None,
        "model.random = '<study>/<es_id>', or '<study>' when empty",
    ),
    Control("participants", "data.n", "Participants per effect size (optional)", "column", None),
    Control("moderators", "model.moderators", "Moderators (each tested alone)", "columns", ()),
    Control("joint", "model.joint", "Also test all moderators together", "bool", True),
    Control("method", "model.method", "Estimation method", "choice", "REML"),
    Control("test", "model.test", "Test statistic", "choice", "t"),
    Control("dfs", "model.dfs", "Degrees of freedom of t tests", "choice", "contain"),
    Control("level", "model.level", "Confidence level (%)", "number", 95.0),
    Control(
        "cluster",
        "model.cluster",
        "Cluster of the CR2 robust inference",
        "column",
        None,
        "empty: the outer level",
    ),
    Control("inference", "model.inference", "Primary inference", "choice", "model"),
    Control(
        "che",
        "model.rho",
        "Correlated sampling errors within studies (CHE model)",
        "bool",
        False,
        "model.rho is written only when ticked",
    ),
    Control("rho", "model.rho", "Assumed sampling correlation ρ", "number", 0.6),
    Control(
        "rho_cluster",
        "model.rho_cluster",
        "Cluster of the correlated sampling errors",
        "column",
        None,
        "empty: the outer level; written only with the CHE model",
    ),
    *(
        Control(f"an_{k}", f"analyses.{k}", v, "bool", ANALYSES_DEFAULT[k])
        for k, v in ANALYSIS_SWITCHES.items()
    ),
    Control("che_rhos", "analyses.che_rhos", "ρ values of the CHE sweep", "numbers", DEFAULT_RHOS),
    Control(
        "bias_rho",
        "analyses.bias_rho",
        "ρ used to aggregate effects within studies for the bias tests (empty: the model's ρ)",
        "number",
        None,
    ),
    Control(
        "selection_side", "analyses.selection_side", "Selection model favours", "choice", "auto"
    ),
    Control(
        "selection_steps",
        "analyses.selection_steps",
        "Selection model: one-sided p-value cut points",
        "numbers",
        (0.025,),
    ),
    Control(
        "egger_predictor", "analyses.egger_predictor", "Egger test predictor", "choice", "auto"
    ),
    Control("outlier_rule", "analyses.outlier_rule", "Outlier rule", "choice", "bonferroni"),
    Control("forest_level", "report.forest_level", "Forest plot rows", "choice", "auto"),
    Control("forest_sort", "report.forest_sort", "Forest plot order", "choice", "data"),
)
#: analysis-file keys without a control, and why (an analysis file using them is refused with
#: this reason, so nothing is dropped silently)
_RUN_IT = "the page fits effects nested in studies"
UNSUPPORTED: dict[str, str] = {
    "report.templates": "the page uses the report's own templates",
    "model.struct": f"{_RUN_IT}, without other random-effects structures",
    "model.R": f"{_RUN_IT}, without known correlation matrices",
    "model.V": f"{_RUN_IT}, with independent sampling errors or the CHE model",
    **{
        f"power.{k}": "the page has no power analysis yet"
        for k in (
            "target",
            "effect",
            "model",
            "df",
            "rho",
            "tau",
            "omega",
            "alpha",
            "iterations",
            "seed",
        )
    },
}
#: keys the page writes itself (not controls): the uploaded data file's name
WRITTEN: tuple[str, ...] = ("data.file",)
CONTROL_BY_ID = {c.id: c for c in CONTROLS}
_SECTIONS = ("data", "effect", "model", "analyses", "report")


def default_values() -> dict[str, Any]:
    """Every control at its default."""
    return {c.id: c.default for c in CONTROLS}


def mode_of(effect: dict) -> tuple[str, str, int]:
    """(effect-size input, measure, column-set index) of an [effect] table."""
    if "yi" in effect or "vi" in effect:
        return "yi", effect.get("measure", ""), 0
    measure = effect.get("measure", "")
    forms = FORMS.get(measure)
    if not forms:
        raise MlmetaError(f"effect.measure must be one of {', '.join(MEASURES)}; got {measure!r}")
    given = {a for a in ESCALC_COLUMNS if a in effect}
    exact = [i for i, f in enumerate(forms) if set(f) == given]
    if not exact:
        raise MlmetaError(
            f"effect: the columns {', '.join(sorted(given)) or '(none)'} are not "
            f"one of the column sets of {measure} (" + "; ".join(", ".join(f) for f in forms) + ")"
        )
    form = exact[0]
    for mode in ("r", "smd", "or"):
        if measure in MEASURE_CHOICES[mode] and forms[form] == _TYPICAL[mode]:
            return mode, measure, form
    for mode in ("r", "smd", "or"):
        if measure in MEASURE_CHOICES[mode]:
            return mode, measure, form
    return "other", measure, form


def format_numbers(xs) -> str:
    return ", ".join(f"{float(x):g}" for x in xs)


def parse_numbers(text: str, label: str) -> tuple[float, ...]:
    """'0, 0.2, 0.4' -> (0.0, 0.2, 0.4); a one-line error naming the control otherwise."""
    out = []
    for tok in str(text).replace(";", ",").split(","):
        t = tok.strip()
        if not t:
            continue
        try:
            v = float(t)
        except ValueError:
            raise MlmetaError(f"{label}: {t!r} is not a number") from None
        if not math.isfinite(v):
            raise MlmetaError(f"{label}: {t!r} is not a finite number")
        out.append(v)
    return tuple(out)


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def controls_to_raw(
    values: dict[str, Any],
    data_file: str | None = None,
    moderator_types: dict[str, str] | None = None,
    numeric_columns: set[str] | frozenset[str] = frozenset(),
    references: dict[str, str] | None = None,
) -> dict:
    """The analysis file (as a dict) that the page's control ``values`` stand for.

    ``data_file`` is the data file's name (written as ``data.file``, relative to the analysis
    file) unless ``values["example"]`` names a bundled example. ``moderator_types`` maps each
    moderator to "categorical"/"continuous"; numeric columns (``numeric_columns``) set to
    categorical go to ``data.categorical``. ``references`` (moderator -> reference level) is
    written as ``model.reference`` only for levels that are not the default.
    """
    v = {**default_values(), **values}
    raw: dict[str, Any] = {}
    if not _blank(v["title"]):
        raw["title"] = str(v["title"]).strip()
    if v["simulated"]:
        raw["simulated"] = True
    if not _blank(v["notice"]):
        raw["notice"] = str(v["notice"]).strip()
    data: dict[str, Any] = {}
    if not _blank(v["example"]):
        data["example"] = v["example"]
    elif data_file:
        data["file"] = data_file
    else:
        raise MlmetaError("no data: upload a data file or choose an example")
    if not _blank(v["study"]):
        data["study"] = v["study"]
    if not _blank(v["participants"]):
        data["n"] = v["participants"]
    mods = [m for m in (v["moderators"] or ())]
    types = moderator_types or {}
    cats = [m for m in mods if types.get(m) == "categorical" and m in numeric_columns]
    if cats:
        data["categorical"] = cats
    raw["data"] = data

    mode = v["effect_mode"]
    if mode not in EFFECT_MODES:
        raise MlmetaError(
            f"effect-size input must be one of {', '.join(EFFECT_MODES)}; got {mode!r}"
        )
    effect: dict[str, Any] = {}
    measure = v["measure"] or ""
    if measure not in MEASURE_CHOICES[mode]:
        measure = MEASURE_CHOICES[mode][0]
    if measure:
        effect["measure"] = measure
    for name in effect_columns(mode, measure, v["effect_form"]):
        col = v[f"eff_{name}"]
        if _blank(col):
            raise MlmetaError(f"choose the column of {CONTROL_BY_ID['eff_' + name].label}")
        effect[name] = col
    if not _blank(v["label"]):
        effect["label"] = str(v["label"]).strip()
    raw["effect"] = effect

    model: dict[str, Any] = {}
    if _blank(v["study"]):
        if not _blank(v["es_id"]):
            raise MlmetaError("an effect-size id needs a study column (effects nested in studies)")
        model["random"] = "none"
    elif _blank(v["es_id"]):
        model["random"] = v["study"]
    else:
        if v["es_id"] == v["study"]:
            raise MlmetaError(
                "the study column and the effect-size id column must differ; "
                f"both are {v['study']!r}"
            )
        model["random"] = f"{v['study']}/{v['es_id']}"
    model["method"] = v["method"]
    model["test"] = v["test"]
    if v["test"] == "t":
        model["dfs"] = v["dfs"]
    model["level"] = float(v["level"]) if v["level"] is not None else 95.0
    if not _blank(v["cluster"]):
        model["cluster"] = v["cluster"]
    if v["inference"] != CONTROL_BY_ID["inference"].default:
        model["inference"] = v["inference"]
    if v["che"]:
        if v["rho"] is None:
            raise MlmetaError(f"{CONTROL_BY_ID['rho'].label}: give a number between -1 and 1")
        model["rho"] = float(v["rho"])
        if not _blank(v["rho_cluster"]):
            model["rho_cluster"] = v["rho_cluster"]
    model["moderators"] = mods
    if len(mods) > 1:
        model["joint"] = bool(v["joint"])
    refs = {m: r for m, r in (references or {}).items() if m in mods and not _blank(r)}
    if refs:
        model["reference"] = refs
    raw["model"] = model

    an: dict[str, Any] = {k: bool(v[f"an_{k}"]) for k in ANALYSIS_SWITCHES}
    rhos = v["che_rhos"]
    if isinstance(rhos, str):
        rhos = parse_numbers(rhos, CONTROL_BY_ID["che_rhos"].label)
    an["che_rhos"] = [float(x) for x in rhos]
    if v["bias_rho"] is not None and not _blank(v["bias_rho"]):
        an["bias_rho"] = float(v["bias_rho"])
    for cid in ("selection_side", "selection_steps", "egger_predictor", "outlier_rule"):
        val = v[cid]
        if CONTROL_BY_ID[cid].kind == "numbers":
            val = [
                float(x)
                for x in (
                    parse_numbers(val, CONTROL_BY_ID[cid].label) if isinstance(val, str) else val
                )
            ]
            if val == [float(x) for x in CONTROL_BY_ID[cid].default]:
                continue
        elif val == CONTROL_BY_ID[cid].default:
            continue
        an[cid] = val
    raw["analyses"] = an
    rep = {
        cid: v[cid]
        for cid in ("forest_level", "forest_sort")
        if v[cid] != CONTROL_BY_ID[cid].default
    }
    if rep:
        raw["report"] = rep
    return raw


def raw_to_controls(raw: dict) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Control values from an analysis file's dict (inverse of :func:`controls_to_raw`).

    Returns ``(values, moderator_types, references)``; moderator types are "categorical" for
    ``data.categorical`` entries and "" (the column's own type) for the others. Keys the page has
    no control for are refused with a one-line error naming them.
    """
    v = default_values()
    known_top = {"title", "simulated", "notice", *_SECTIONS}
    for k in raw:
        if k not in known_top:
            raise MlmetaError(f"the page has no control for the key {k!r}")
    v["title"] = raw.get("title", "")
    v["simulated"] = bool(raw.get("simulated", False))
    v["notice"] = raw.get("notice", "")
    data = dict(raw.get("data", {}))
    v["example"] = data.get("example", "")
    v["study"] = data.get("study")
    v["participants"] = data.get("n")
    effect = dict(raw.get("effect", {}))
    mode, measure, form = mode_of(effect)
    v["effect_mode"], v["measure"], v["effect_form"] = mode, measure, str(form)
    for name in effect_columns(mode, measure, form):
        v[f"eff_{name}"] = effect[name]
    if mode == "yi" and "ni" in effect and v["participants"] is None:
        v["participants"] = effect["ni"]
    v["label"] = effect.get("label", "")
    model = dict(raw.get("model", {}))
    random = model.get("random")
    if isinstance(random, list):
        if len(random) != 1:
            raise MlmetaError(
                f"model.random with {len(random)} terms: {_RUN_IT}; run this file with mlmeta run"
            )
        random = random[0]
    if random is not None and "|" in random and not random.replace(" ", "").startswith("~1|"):
        raise MlmetaError(f"model.random = {random!r}: {_RUN_IT}; run this file with mlmeta run")
    if random is not None and random.strip().lower() not in ("", "none"):
        levels = [x.strip() for x in re.sub(r"^\s*~\s*1\s*\|", "", random).split("/")]
        if len(levels) > 2:
            raise MlmetaError(
                f"model.random = {random!r} has {len(levels)} levels; the page "
                "offers two (study/effect size): run this file with mlmeta run"
            )
        if v["study"] is None:
            v["study"] = levels[0]
        elif v["study"] != levels[0]:
            raise MlmetaError(
                f"data.study = {v['study']!r} is not the outer level of "
                f"model.random = {random!r}; the page uses the study column as "
                "the outer level"
            )
        v["es_id"] = levels[1] if len(levels) == 2 else None
    elif v["study"] is not None:
        raise MlmetaError(
            "data.study without model.random (an equal-effects model): the page "
            "always makes the study a random level; run this file with mlmeta "
            "run"
        )
    for key, cid in (
        ("method", "method"),
        ("test", "test"),
        ("dfs", "dfs"),
        ("cluster", "cluster"),
    ):
        if key in model:
            v[cid] = model[key]
    if "level" in model:
        v["level"] = float(model["level"])
    if model.get("rho") is not None:
        v["che"] = True
        v["rho"] = float(model["rho"])
    if "rho_cluster" in model:
        v["rho_cluster"] = model["rho_cluster"]
    if "inference" in model:
        v["inference"] = model["inference"]
    mods = list(model.get("moderators", ()))
    v["moderators"] = tuple(mods)
    v["joint"] = bool(model.get("joint", len(mods) > 1))
    # a number as a level (reference = {pubstatus = 1}) is the label the page shows ("1")
    refs = {
        m: (r if isinstance(r, str) else str(int(r)) if float(r).is_integer() else str(r))
        for m, r in (model.get("reference", {}) or {}).items()
    }
    cats = set(data.get("categorical", ()))
    types = {m: ("categorical" if m in cats else "") for m in mods}
    an = dict(raw.get("analyses", {}))
    for k in ANALYSIS_SWITCHES:
        if k in an:
            v[f"an_{k}"] = bool(an[k])
    if "che_rhos" in an:
        v["che_rhos"] = tuple(float(x) for x in an["che_rhos"])
    if "bias_rho" in an:
        v["bias_rho"] = float(an["bias_rho"])
    for cid in ("selection_side", "egger_predictor", "outlier_rule"):
        if cid in an:
            v[cid] = an[cid]
    if "selection_steps" in an:
        v["selection_steps"] = tuple(float(x) for x in an["selection_steps"])
    rep = dict(raw.get("report", {}))
    for cid in ("forest_level", "forest_sort"):
        if cid in rep:
            v[cid] = rep[cid]
    for section, table in raw.items():
        for k in table if isinstance(table, dict) else ():
            key = f"{section}.{k}"
            if key in UNSUPPORTED:
                raise MlmetaError(f"{key}: {UNSUPPORTED[key]}; run this file with mlmeta run")
    return v, types, refs


# ---------------------------------------------------------------- TOML writer
def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(k: str) -> str:
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return _toml_str(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise MlmetaError(f"cannot write the non-finite number {v!r} to an analysis file")
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise MlmetaError(f"cannot write {type(v).__name__} to an analysis file")


def dumps(raw: dict, header: str = "") -> str:
    """TOML text of an analysis-file dict (top-level keys, then the tables in schema order)."""
    lines = [f"# {x}" if x else "#" for x in header.splitlines()]
    if lines:
        lines.append("")
    for k, val in raw.items():
        if not isinstance(val, dict):
            lines.append(f"{_toml_key(k)} = {_toml_value(val)}")
    order = [s for s in _SECTIONS if s in raw] + [
        k for k, val in raw.items() if isinstance(val, dict) and k not in _SECTIONS
    ]
    for sec in order:
        lines += ["", f"[{_toml_key(sec)}]"]
        for k, val in raw[sec].items():
            lines.append(f"{_toml_key(k)} = {_toml_value(val)}")
    return "\n".join(lines) + "\n"
