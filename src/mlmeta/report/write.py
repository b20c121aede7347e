"""Turn the numbers and the drawn figures into the report's documents.

One document model (:func:`mlmeta.report.document.build_document`: headings, paragraphs,
numbered tables and figures, the reference list) is rendered three ways: ``report.html`` and
``report.md`` through Jinja2 templates (:mod:`mlmeta.report.render`; a user's or a journal's
templates folder can override them) and ``report.docx`` with python-docx
(:mod:`mlmeta.report.docx`), so the three always say the same.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DOCUMENT_FILES", "write_documents"]

DOCUMENT_FILES = ("report.html", "report.md", "report.docx")


def _figure_files(f: dict) -> dict:
    files = f["files"]
    d = {"png": files[0], "pdf": files[1] if len(files) > 1 else None}
    for extra in files[2:]:
        d.setdefault("extra", []).append(extra)
    return d


def write_documents(
    folder: Path,
    numbers: dict,
    figs: list[dict],
    *,
    templates: str | Path | None = None,
    dpi: int = 300,
) -> list[str]:
    """Write report.html, report.md and report.docx into ``folder``; sets
    ``numbers["figures"]`` (name, number, caption, files) and returns the files written."""
    from mlmeta.report import document
    from mlmeta.report.render import render_html, render_markdown

    folder = Path(folder)
    for f in figs:  # facts the captions need (e.g. the forest's level and pages)
        if f.get("info") and not f["error"]:
            numbers[{"loo": "loo_figure"}.get(f["name"], f["name"])] = f["info"]
    blocks = document.build_document(numbers)
    caps = document.figure_captions(numbers)
    figmap: dict[str, dict] = {}
    for b in blocks:
        if b["t"] != "figure":
            continue
        hit = [x for x in figs if x["name"] == b["name"] and not x["error"]]
        if not hit:
            continue
        f = hit[0]
        info = _figure_files(f)
        figmap[b["name"]] = {
            "png_bytes": (folder / info["png"]).read_bytes(),
            **info,
            "caption": caps.get(b["name"], b["name"]),
            "dpi": dpi,
        }
    document.number_figures(blocks, figmap)
    numbers["figures"] = [
        {
            "name": n,
            "number": v["number"],
            "caption": v["caption"],
            "png": v["png"],
            "pdf": v["pdf"],
            "extra": v.get("extra", []),
        }
        for n, v in figmap.items()
    ]
    for f in figs:
        if f["name"] not in figmap and not f["error"]:
            info = _figure_files(f)
            numbers["figures"].append({"name": f["name"], "number": None, "caption": None, **info})
    ctx = document.render_context(numbers, blocks, figmap)
    (folder / "report.html").write_text(render_html(ctx, templates), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(ctx, templates), encoding="utf-8")
    from mlmeta.report.docx import write_docx

    write_docx(folder / "report.docx", ctx, folder)
    return list(DOCUMENT_FILES)
