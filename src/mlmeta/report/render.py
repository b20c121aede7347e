"""Render the report's document model through Jinja2 templates: a self-contained HTML page
and Markdown.

The templates are ``templates/report.html.j2`` and ``templates/report.md.j2`` inside this
package. A user or a journal overrides either by putting a file of the same name in a folder
and naming it in the analysis file (``[report] templates = "folder"``); such a template can
reuse ours with ``{% extends "mlmeta/report.html.j2" %}`` and override its ``css`` or
``content`` blocks. The HTML page has its CSS inline, no scripts, no web fonts, and every figure
embedded as a base64 PNG (``data:`` URL), so it opens offline from anywhere; the Markdown file
links the PNGs and PDFs in ``figures/``.
"""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path

__all__ = ["CSS", "environment", "png_size", "render_html", "render_markdown"]

CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; max-width: 62rem; margin: 2rem auto; padding: 0 1.25rem; color: #1d1d1f;
       line-height: 1.5; background: #fff; }
h1 { font-size: 1.7rem; margin-bottom: .4rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.08rem; margin-top: 1.6rem; }
p.facts { color: #555; font-size: .92rem; }
p.apa { font-size: 1.15rem; font-weight: 600; background: #f3f6fa; border-left: 4px solid #3c6e9f;
        padding: .6rem .9rem; }
p.summary { margin: .45rem 0; }
p.disagree { border-left: 4px solid #c77c02; padding-left: .7rem; }
.notice { padding: .7rem 1rem; margin: 1rem 0; border-radius: 4px; }
.notice.simulated { background: #fff1f0; border: 2px solid #c0392b; color: #7b1d13;
                    font-weight: 700; letter-spacing: .01em; }
.notice.info { background: #f6f6f6; border: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1.2rem 0 .3rem; font-size: .88rem;
        font-variant-numeric: tabular-nums; border-top: 2px solid #333;
        border-bottom: 2px solid #333; }
caption { caption-side: top; text-align: left; padding-bottom: .4rem; }
caption .tnum { display: block; font-weight: 700; }
caption .ttitle { display: block; font-style: italic; }
th, td { padding: .22rem .6rem; vertical-align: top; }
th { border-bottom: 1px solid #333; text-align: left; font-weight: 600; }
td.r, th.r { text-align: right; white-space: nowrap; }
p.note { font-size: .82rem; color: #444; margin-top: .2rem; max-width: 58rem; }
figure { margin: 1.4rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #444; margin-top: .3rem; }
figcaption .fnum { font-weight: 700; }
pre { background: #f6f6f6; padding: .7rem; overflow-x: auto; font-size: .85rem; }
ol#reference-list li { margin-bottom: .35rem; padding-left: .2rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #777; border-top: 1px solid #ddd;
         padding-top: .6rem; }
@media print { body { max-width: none; } figure, table { page-break-inside: avoid; } }
"""


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return (0, 0)
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def environment(templates: str | Path | None = None, html: bool = True):
    """The Jinja2 environment: the user's ``templates`` folder first, then ours (also under
    the prefix ``mlmeta/``); HTML templates autoescape."""
    import jinja2

    ours = jinja2.PackageLoader("mlmeta.report", "templates")
    loaders: list = []
    if templates is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates)))
    loaders += [ours, jinja2.PrefixLoader({"mlmeta": ours})]
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        finalize=None if html else markdown_safe,
    )


_MD_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # what could open an HTML tag, comment or autolink
_MD_LINK = re.compile(r"\]\s*\(")


def markdown_safe(value):
    """Text from the data made inert in Markdown that pandoc or a Markdown viewer turns into
    HTML: ``<`` before a letter, ``/``, ``!`` or ``?`` (a tag such as ``<script>``, a comment,
    an autolink) becomes ``&lt;``, ``](`` (an inline link, e.g. to ``javascript:``) is broken
    with a backslash, and a code fence ``` cannot be closed from inside. Plain text such as
    "p < .001" is unchanged. Applied to every ``{{ }}`` of the Markdown template."""
    if value is None:
        return value
    s = str(value)
    if "<" in s:
        s = _MD_TAG.sub("&lt;", s)
    if "](" in s or "] (" in s:
        s = _MD_LINK.sub(lambda m: m.group(0).replace("(", "\\("), s)
    if "```" in s:
        s = s.replace("```", "\\`\\`\\`")
    return s


def _html_figures(figures: dict) -> dict:
    out = {}
    for name, f in figures.items():
        w, h = png_size(f["png_bytes"])
        dpi = f.get("dpi") or 96
        scale = 96.0 / dpi  # shown at its printed size (CSS: 96 px to the inch)
        out[name] = {
            **{k: v for k, v in f.items() if k != "png_bytes"},
            "src": "data:image/png;base64," + base64.b64encode(f["png_bytes"]).decode("ascii"),
            "width": round(w * scale) if w else None,
            "height": round(h * scale) if h else None,
        }
    return out


def render_html(ctx: dict, templates: str | Path | None = None) -> str:
    """The self-contained HTML page of the render context (see
    :func:`mlmeta.report.document.render_context`)."""
    env = environment(templates, html=True)
    tpl = env.get_template("report.html.j2")
    return tpl.render(**{**ctx, "figures": _html_figures(ctx["figures"]), "css": CSS})


def render_markdown(ctx: dict, templates: str | Path | None = None) -> str:
    """The Markdown text of the render context."""
    env = environment(templates, html=False)
    figs = {
        k: {kk: vv for kk, vv in v.items() if kk != "png_bytes"} for k, v in ctx["figures"].items()
    }
    return env.get_template("report.md.j2").render(**{**ctx, "figures": figs})
