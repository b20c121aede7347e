"""The page's layout: one function, :func:`app_ui`, in the order a person works.

Sidebar, top to bottom (also the keyboard order): 1 data (upload, bundled example, analysis
file), 2 effect sizes and studies, 3 moderators, 4 model, 5 analyses, 6 report text. Main area:
the Run/Cancel bar with progress and messages, then the tabs *Data* and *Results*. Every input
has a visible label (a ``<label for=...>``); the ids are those of
:data:`mlmeta.app.mapping.CONTROLS`.
"""

from __future__ import annotations

import json

from htmltools import TagChild, tags
from shiny import ui

from mlmeta.app.api import CHOICES
from mlmeta.app.mapping import (
    ANALYSIS_SWITCHES,
    CONTROL_BY_ID,
    ESCALC_COLUMNS,
    FORMS,
    MEASURE_CHOICES,
    format_numbers,
)
from mlmeta.app.upload import client_check_js, max_upload_bytes

__all__ = [
    "DATA_ACCEPT",
    "EFFECT_MODE_LABELS",
    "RADIO_IDS",
    "app_ui",
    "form_labels",
    "measure_labels",
]

EFFECT_MODE_LABELS = {
    "r": "Correlations r with sample sizes n",
    "yi": "Effect sizes with their sampling variances (yi, vi)",
    "smd": "Means, SDs and sizes of two groups (Hedges' g, ...)",
    "or": "2×2 counts of two groups (log odds ratio, ...)",
    "other": "Another measure (metafor's escalc names)",
}
_MEASURE_WORDS = {
    "": "as given (no transformation named)",
    "ZCOR": "Fisher z of r (results reported as r)",
    "COR": "r, untransformed",
    "PCOR": "partial correlation",
    "ZPCOR": "Fisher z of the partial correlation",
    "SPCOR": "semi-partial correlation",
    "MD": "raw mean difference",
    "SMD": "standardized mean difference (Hedges' g)",
    "SMDH": "standardized mean difference, unequal variances",
    "ROM": "log ratio of means",
    "MC": "raw mean change",
    "SMCC": "standardized mean change (change-score SD)",
    "SMCR": "standardized mean change (raw-score SD)",
    "SMCRH": "standardized mean change (raw-score SD, unequal variances)",
    "OR": "log odds ratio",
    "RR": "log risk ratio",
    "RD": "risk difference",
    "PETO": "log odds ratio (Peto)",
    "PR": "proportion",
    "PLN": "log proportion",
    "PLO": "logit of the proportion",
    "PAS": "arcsine square-root proportion",
}


def measure_labels(codes) -> dict[str, str]:
    """Measure code -> 'CODE: words' for the measure select."""
    return {
        c: (
            _MEASURE_WORDS[""]
            if c == ""
            else f"{c}: {_MEASURE_WORDS[c]}"
            if c in _MEASURE_WORDS
            else c
        )
        for c in codes
    }


def form_labels(measure: str) -> dict[str, str]:
    """Column-set index -> its columns, for the measure's column-set select."""
    return {str(i): ", ".join(f) for i, f in enumerate(FORMS.get(measure, ()))}


#: the order of the raw-column selects on the page
_COLUMN_ORDER = (
    "ri",
    "ni",
    "m1i",
    "sd1i",
    "n1i",
    "m2i",
    "sd2i",
    "n2i",
    "ai",
    "bi",
    "ci",
    "di",
    "xi",
    "mi",
    "ti",
    "r2i",
)


#: controls shown as radio buttons (the others of kind "choice" are select inputs)
RADIO_IDS = ("effect_mode", "method", "test", "dfs", "inference")
#: words for the values of the analysis file's choice keys (a value without words shows as is)
CHOICE_LABELS = {
    "inference": {"model": "model-based t/z tests", "CR2": "CR2 cluster-robust"},
    "selection_side": {
        "auto": "the direction of the pooled effect",
        "positive": "positive effects",
        "negative": "negative effects",
    },
    "egger_predictor": {
        "auto": "automatic (√(1/ñ) for SMD and OR, else SE)",
        "se": "standard error √vi",
        "sqrt_inv_n": "√(1/ñ)",
    },
    "outlier_rule": {
        "bonferroni": "Bonferroni: |residual| > z(1 − .05/(2k))",
        "z1.96": "|z| > 1.96",
    },
    "forest_level": {
        "auto": "automatic (studies when the plot gets long)",
        "effect": "one row per effect size",
        "study": "one row per study",
    },
    "forest_sort": {"data": "as in the data", "effect": "by effect size", "weight": "by weight"},
}


def choice_labels(cid: str) -> dict[str, str]:
    """Value -> words for a choice control whose values come from the library."""
    words = CHOICE_LABELS.get(cid, {})
    return {v: words.get(v, v) for v in CHOICES[cid]}


def _choice(cid: str):
    c = CONTROL_BY_ID[cid]
    if cid in RADIO_IDS:
        return ui.input_radio_buttons(cid, c.label, choices=choice_labels(cid), selected=c.default)
    return ui.input_select(cid, c.label, choices=choice_labels(cid), selected=c.default)


DATA_ACCEPT = [".csv", ".tsv", ".txt", ".xlsx", ".xls"]

CSS = """
:root { --bs-body-font-size: 0.95rem; }
.bslib-sidebar-layout > .sidebar { font-size: 0.92rem; }
.mlmeta-step .accordion-button { font-weight: 600; }
.mlmeta-moderator { border-left: 3px solid var(--bs-primary); padding-left: .6rem;
                    margin-bottom: .6rem; }
.mlmeta-moderator .form-group { margin-bottom: .35rem; }
.mlmeta-summary { background: var(--bs-light); border-radius: .4rem; padding: .6rem .8rem; }
.mlmeta-table caption { caption-side: top; color: var(--bs-body-color); font-weight: 600; }
.mlmeta-table { font-size: 0.88rem; }
.mlmeta-table td.text-end, .mlmeta-table th.text-end { white-space: nowrap; }
.mlmeta-figure { max-width: 100%; height: auto; border: 1px solid var(--bs-border-color); }
.mlmeta-figure-box { display: block; margin: .5rem 0 1rem 0; }
.mlmeta-runbar { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
.mlmeta-progress progress { width: 16rem; height: 1rem; vertical-align: middle; }
.shiny-file-input-progress .progress-bar { white-space: normal; }
.btn-file:focus-within { outline: 3px solid var(--bs-primary); outline-offset: 2px; }
"""


def _file_input(fid: str, label: str, **kw):
    """Shiny's file input, with its read-only file-name box labelled and out of the tab order
    (the file button itself is what the keyboard reaches)."""
    tag = ui.input_file(fid, label, **kw)

    def walk(t):
        for ch in getattr(t, "children", ()):
            if getattr(ch, "name", None) == "input" and ch.attrs.get("type") == "text":
                ch.attrs["aria-label"] = f"{label}: chosen file"
                ch.attrs["tabindex"] = "-1"
            walk(ch)

    walk(tag)
    return tag


def _col(cid: str, **kw):
    c = CONTROL_BY_ID[cid]
    return ui.input_select(cid, c.label, choices={"": "(none)"}, selected="", **kw)


def _bool(cid: str):
    c = CONTROL_BY_ID[cid]
    return ui.input_checkbox(cid, c.label, value=bool(c.default))


def _effect_panel():
    forms_js = "window.MLMETA_FORMS"

    def needed(arg: str) -> str:
        # shown when the chosen measure's chosen column set has this column
        return (
            f"input.effect_mode !== 'yi' && ((({forms_js} || {{}})[input.measure] || [])"
            f"[parseInt(input.effect_form || '0')] || []).indexOf('{arg}') >= 0"
        )

    cols = [a for a in _COLUMN_ORDER if a in ESCALC_COLUMNS]
    cols += [a for a in ESCALC_COLUMNS if a not in cols]
    return [
        ui.input_radio_buttons(
            "effect_mode",
            CONTROL_BY_ID["effect_mode"].label,
            choices=EFFECT_MODE_LABELS,
            selected="r",
        ),
        ui.input_select(
            "measure",
            CONTROL_BY_ID["measure"].label,
            choices=measure_labels(MEASURE_CHOICES["r"]),
            selected="ZCOR",
        ),
        ui.panel_conditional(
            f"input.effect_mode !== 'yi' && (({forms_js} || {{}})[input.measure] || []).length > 1",
            ui.input_select(
                "effect_form",
                CONTROL_BY_ID["effect_form"].label,
                choices=form_labels("ZCOR"),
                selected="0",
            ),
        ),
        ui.panel_conditional("input.effect_mode === 'yi'", _col("eff_yi"), _col("eff_vi")),
        *[ui.panel_conditional(needed(a), _col(f"eff_{a}")) for a in cols],
        _col("study"),
        _col("es_id"),
        _col("participants"),
    ]


def _model_panel():
    return [
        ui.input_radio_buttons(
            "method",
            CONTROL_BY_ID["method"].label,
            choices={
                "REML": "REML (restricted maximum likelihood)",
                "ML": "ML (maximum likelihood)",
            },
            selected="REML",
        ),
        ui.input_radio_buttons(
            "test",
            CONTROL_BY_ID["test"].label,
            choices={"t": "t (with the df below)", "z": "z (normal)"},
            selected="t",
        ),
        ui.panel_conditional(
            "input.test === 't'",
            ui.input_radio_buttons(
                "dfs",
                CONTROL_BY_ID["dfs"].label,
                choices={
                    "contain": "containment (number of studies − 1 for the mean)",
                    "residual": "residual (k − p)",
                },
                selected="contain",
            ),
        ),
        ui.input_numeric(
            "level", CONTROL_BY_ID["level"].label, value=95, min=50, max=99.9, step=0.5
        ),
        _col("cluster"),
        _choice("inference"),
        _bool("che"),
        ui.panel_conditional(
            "input.che",
            ui.input_numeric(
                "rho", CONTROL_BY_ID["rho"].label, value=0.6, min=-0.99, max=0.99, step=0.1
            ),
            _col("rho_cluster"),
        ),
    ]


def _analyses_panel():
    return [
        *[_bool(f"an_{k}") for k in ANALYSIS_SWITCHES],
        ui.input_text(
            "che_rhos",
            CONTROL_BY_ID["che_rhos"].label,
            value=format_numbers(CONTROL_BY_ID["che_rhos"].default),
        ),
        ui.input_numeric(
            "bias_rho", CONTROL_BY_ID["bias_rho"].label, value=None, min=-0.99, max=0.99, step=0.1
        ),
        _choice("selection_side"),
        ui.input_text(
            "selection_steps",
            CONTROL_BY_ID["selection_steps"].label,
            value=format_numbers(CONTROL_BY_ID["selection_steps"].default),
        ),
        _choice("egger_predictor"),
        _choice("outlier_rule"),
    ]


def _report_panel():
    return [
        ui.input_text("title", CONTROL_BY_ID["title"].label, value=""),
        ui.input_text("notice", CONTROL_BY_ID["notice"].label, value=""),
        ui.input_text("label", CONTROL_BY_ID["label"].label, value=""),
        _bool("simulated"),
        _choice("forest_level"),
        _choice("forest_sort"),
    ]


def _data_panel(examples: dict[str, str]):
    limit = max_upload_bytes()
    mb = limit / (1024 * 1024)
    size = f"{mb:.0f} MB" if mb >= 1 else f"{limit / 1024:.0f} KB"
    return [
        _file_input(
            "data_file",
            "Data file (CSV, TSV or Excel)",
            accept=DATA_ACCEPT,
            button_label="Choose file…",
            placeholder="no file chosen",
        ),
        tags.p(f"One row per effect size; up to {size}.", class_="small text-muted mt-n2"),
        ui.input_select(
            "example",
            CONTROL_BY_ID["example"].label,
            choices={"": "(none)", **examples},
            selected="",
        ),
        ui.input_action_button(
            "use_example", "Use this example", class_="btn-outline-secondary btn-sm mb-3"
        ),
        _file_input(
            "analysis_file",
            "Analysis file (.toml) to fill in the settings",
            accept=[".toml"],
            button_label="Choose file…",
            placeholder="no file chosen",
        ),
    ]


def app_ui(examples: dict[str, str]):
    """The page. ``examples``: bundled example name -> title (simulated ones say so)."""
    limit = max_upload_bytes()
    sidebar = ui.sidebar(
        ui.accordion(
            ui.accordion_panel("1 · Data", *_data_panel(examples), value="data"),
            ui.accordion_panel("2 · Effect sizes and studies", *_effect_panel(), value="effect"),
            ui.accordion_panel(
                "3 · Moderators",
                ui.input_checkbox_group(
                    "moderators", CONTROL_BY_ID["moderators"].label, choices={}
                ),
                ui.output_ui("moderator_details"),
                _bool("joint"),
                value="moderators",
            ),
            ui.accordion_panel("4 · Model", *_model_panel(), value="model"),
            ui.accordion_panel("5 · Analyses", *_analyses_panel(), value="analyses"),
            ui.accordion_panel("6 · Report text", *_report_panel(), value="report"),
            id="steps",
            open=["data", "effect", "moderators"],
            multiple=True,
            class_="mlmeta-step",
        ),
        width=400,
        id="sidebar",
        title=None,
        open="always",
    )
    main: list[TagChild] = [
        tags.div(
            tags.div(
                ui.input_task_button(
                    "run", "Run analysis", label_busy="Running…", class_="btn-primary"
                ),
                ui.input_action_button(
                    "cancel", "Cancel", class_="btn-outline-danger", disabled=True
                ),
                ui.output_ui("progress", inline=True),
                class_="mlmeta-runbar",
            ),
            ui.output_ui("messages"),
            class_="mb-2",
            role="region",
            aria_label="Run",
        ),
        ui.navset_card_underline(
            ui.nav_panel("Data", ui.output_ui("data_view"), value="data"),
            ui.nav_panel(
                "Results", ui.output_ui("downloads"), ui.output_ui("results"), value="results"
            ),
            id="main_tabs",
        ),
    ]
    return ui.page_sidebar(
        sidebar,
        *main,
        ui.head_content(
            tags.style(CSS),
            tags.script(
                "window.MLMETA_FORMS = "
                + json.dumps({m: [list(f) for f in fs] for m, fs in FORMS.items()})
                + ";"
            ),
            tags.script(client_check_js(limit, ("data_file", "analysis_file"))),
        ),
        title="mlmeta · multilevel meta-analysis",
        window_title="mlmeta",
        lang="en",
        fillable=False,
    )
