"""The results part of the page, built from a report folder written by ``run_report``.

The page shows what the report shows, in the report's words: :func:`load_result` reads
``results.json`` and the PNG figures of the folder, and :func:`result_view` lays out the report's
own blocks (:func:`mlmeta.report.document.build_document` of those numbers) as tabs, one per
section of the report, with the pooled effect's APA sentence and prediction interval on top.
Nothing is recomputed here.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from htmltools import Tag, TagList, tags

__all__ = [
    "SECTION_TITLES",
    "RunResult",
    "blocks_view",
    "load_result",
    "result_view",
    "zip_folder",
]

#: short tab titles for the report's sections (by the heading's id); others keep their heading
SECTION_TITLES = {
    "overall": "Overall effect",
    "heterogeneity": "Heterogeneity",
    "moderators": "Moderators",
    "sensitivity": "Sensitivity and influence",
    "bias": "Publication bias",
    "warnings": "Notes",
    "methods": "Methods",
}


@dataclass
class RunResult:
    """One finished run: its folder, numbers, figures (PNG bytes by name) and analysis file."""

    out_dir: Path
    numbers: dict
    figures: dict[str, dict] = field(default_factory=dict)  # name -> number, caption, png
    toml_name: str = "analysis.toml"
    toml_text: str = ""
    data_name: str | None = None
    seconds: float = 0.0

    @property
    def stem(self) -> str:
        return Path(self.toml_name).stem


def load_result(
    out_dir: Path, toml_name: str, toml_text: str, data_name: str | None, seconds: float = 0.0
) -> RunResult:
    """Read a report folder (results.json and figures/*.png)."""
    out_dir = Path(out_dir)
    numbers = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    figs = {}
    for f in numbers.get("figures") or []:
        png = out_dir / f["png"]
        if png.is_file():
            figs[f["name"]] = {
                "number": f.get("number"),
                "caption": f.get("caption") or "",
                "png": png.read_bytes(),
            }
    return RunResult(out_dir, numbers, figs, toml_name, toml_text, data_name, seconds)


def zip_folder(folder: Path, arcname: str) -> bytes:
    """The folder as a zip file whose entries sit under ``arcname/``."""
    buf = io.BytesIO()
    folder = Path(folder)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{arcname}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


# ---------------------------------------------------------------- blocks -> HTML
def _table(b: dict) -> TagList:
    align = b.get("align") or ""

    def cell(tag, text, j):
        a = align[j] if j < len(align) else "l"
        cls = "text-end" if a == "r" else ("text-center" if a == "c" else None)
        return tag(text, class_=cls)

    head = tags.thead(tags.tr(*[cell(tags.th, h, j) for j, h in enumerate(b["head"])]))
    body = tags.tbody(
        *[tags.tr(*[cell(tags.td, c, j) for j, c in enumerate(row)]) for row in b["rows"]]
    )
    t = tags.table(
        tags.caption(b["caption"]) if b.get("caption") else None,
        head,
        body,
        class_="table table-sm table-hover mlmeta-table",
        id=b.get("id"),
    )
    out = [tags.div(t, class_="table-responsive")]
    if b.get("note"):
        out.append(tags.p(b["note"], class_="small text-muted"))
    return TagList(*out)


def _figure(name: str, figs: dict[str, dict]) -> Tag | None:
    f = figs.get(name)
    if f is None:
        return None
    src = "data:image/png;base64," + base64.b64encode(f["png"]).decode("ascii")
    cap = f["caption"]
    label = f"Figure {f['number']}. " if f.get("number") else ""
    return tags.figure(
        tags.img(src=src, alt=cap or name, class_="img-fluid mlmeta-figure", data_figure=name),
        tags.figcaption(tags.strong(label), cap, class_="small"),
        class_="figure mlmeta-figure-box",
    )


def _block(b: dict, figs: dict[str, dict]):
    t = b["t"]
    if t == "h":
        level = min(max(int(b["level"]) + 1, 2), 6)  # the page's h1 is its own title
        return getattr(tags, f"h{level}")(b["text"], id=f"res-{b['id']}" if b.get("id") else None)
    if t == "p":
        cls = b.get("cls")
        return tags.p(b["text"], class_=f"mlmeta-{cls}" if cls else None)
    if t == "notice":
        cls = "alert alert-warning fw-bold" if b.get("cls") == "simulated" else "alert alert-info"
        return tags.div(
            b["text"], class_=cls, role="note", id=f"res-{b['id']}" if b.get("id") else None
        )
    if t == "table":
        return _table(b)
    if t == "figure":
        return _figure(b["name"], figs)
    if t == "list":
        return tags.ul(*[tags.li(x) for x in b["items"]])
    if t == "code":
        return tags.pre(tags.code(b["text"]))
    return tags.p(str(b.get("text", "")))


def blocks_view(
    blocks: list[dict], figs: dict[str, dict]
) -> tuple[list, list[tuple[str, str, list]]]:
    """(blocks before the first section, [(section id, tab title, its tags), ...])."""
    head: list = []
    sections: list[tuple[str, str, list]] = []
    for b in blocks:
        if b["t"] == "h" and int(b["level"]) == 2:
            sid = b.get("id") or f"section{len(sections) + 1}"
            sections.append((sid, SECTION_TITLES.get(sid, b["text"]), []))
            continue
        if b["t"] == "h" and int(b["level"]) == 1:
            continue  # the title is shown by result_view
        tag = _block(b, figs)
        if tag is None:
            continue
        (sections[-1][2] if sections else head).append(tag)
    return head, sections


def result_view(res: RunResult, build_document, navset, nav_panel):
    """The whole results area. ``build_document``: the report's block builder;
    ``navset``/``nav_panel``: Shiny's tab container and tab (passed in so this module does not
    import Shiny)."""
    n = res.numbers
    if res.data_name:  # the file as the person knows it, not the session folder's path
        n = {**n, "data": {**n["data"], "source": res.data_name}}
    o = n["overall"]
    blocks = build_document(n)
    head, sections = blocks_view(blocks, res.figures)
    top = [tags.h2(n["title"], id="result-title", class_="h4"), *head]
    summary = [
        tags.p(
            tags.span("Pooled effect: ", class_="fw-semibold"),
            tags.span(o["apa"], id="result-apa"),
            class_="mb-1 fs-5",
        )
    ]
    if o.get("pi_text") and n.get("data", {}).get("levels"):
        summary.append(
            tags.p(
                tags.span("Prediction interval: ", class_="fw-semibold"),
                tags.span(o["pi_text"], id="result-pi"),
                " (where the true effect of a new study is expected to lie)",
                class_="mb-1",
            )
        )
    top.append(tags.div(*summary, class_="mlmeta-summary"))
    panels = []
    for sid, title, content in sections:
        panels.append(nav_panel(title, tags.div(*content, class_="pt-2"), value=f"sec-{sid}"))
    return TagList(tags.div(*top, class_="mb-2"), navset(*panels, id="result_tabs"))
