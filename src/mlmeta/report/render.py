"""Render the report's blocks to a self-contained HTML page and to Markdown.

The HTML page has its CSS inline, no scripts, no web fonts, and every figure embedded as a
base64 PNG (``data:`` URL), so it opens offline from anywhere; the Markdown file links the PNGs
in ``figures/``.
"""

from __future__ import annotations

import base64
import html
import struct

__all__ = ["render_html", "render_markdown", "png_size"]

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
.notice { padding: .7rem 1rem; margin: 1rem 0; border-radius: 4px; }
.notice.simulated { background: #fff1f0; border: 2px solid #c0392b; color: #7b1d13;
                    font-weight: 700; letter-spacing: .01em; }
.notice.info { background: #f6f6f6; border: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8rem 0 .3rem; font-size: .9rem;
        font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
th { border-bottom: 2px solid #999; text-align: left; }
td.r, th.r { text-align: right; white-space: nowrap; }
p.note { font-size: .82rem; color: #555; margin-top: .2rem; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #444; margin-top: .3rem; }
pre { background: #f6f6f6; padding: .7rem; overflow-x: auto; font-size: .85rem; }
footer { margin-top: 3rem; font-size: .8rem; color: #777; border-top: 1px solid #ddd;
         padding-top: .6rem; }
@media print { body { max-width: none; } figure { page-break-inside: avoid; } }
"""


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return (0, 0)
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _e(s) -> str:
    return html.escape("" if s is None else str(s), quote=True)


def render_html(blocks: list[dict], figures: dict, title: str, footer: str) -> str:
    """``figures``: name -> {"png_bytes", "png", "svg", "caption", "number", "dpi"}."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">',
           f"<title>{_e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           "<main>"]
    for b in blocks:
        t = b["t"]
        if t == "h":
            idp = f' id="{_e(b["id"])}"' if b.get("id") else ""
            out.append(f"<h{b['level']}{idp}>{_e(b['text'])}</h{b['level']}>")
        elif t == "p":
            cls = f' class="{_e(b["cls"])}"' if b.get("cls") else ""
            idp = ' id="apa-overall"' if b.get("cls") == "apa" else ""
            out.append(f"<p{cls}{idp}>{_e(b['text'])}</p>")
        elif t == "notice":
            idp = f' id="{_e(b["id"])}"' if b.get("id") else ""
            out.append(f'<div class="notice {_e(b["cls"])}"{idp} role="note">{_e(b["text"])}'
                       "</div>")
        elif t == "table":
            out.append(_html_table(b))
        elif t == "figure":
            f = figures.get(b["name"])
            if f is None:
                continue
            w, h = png_size(f["png_bytes"])
            dpi = f.get("dpi") or 96
            cw = int(round(w * 96.0 / dpi)) if w else None
            ch = int(round(h * 96.0 / dpi)) if h else None
            size = f' width="{cw}" height="{ch}"' if cw and ch else ""
            src = "data:image/png;base64," + base64.b64encode(f["png_bytes"]).decode("ascii")
            cap = f"Figure {f['number']}. {f['caption']}"
            out.append(f'<figure id="fig-{_e(b["name"])}"><img src="{src}" alt="{_e(cap)}"'
                       f"{size}><figcaption>{_e(cap)} Files: {_e(f['png'])}, {_e(f['svg'])}."
                       "</figcaption></figure>")
        elif t == "list":
            out.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in b["items"]) + "</ul>")
        elif t == "code":
            out.append(f"<pre><code>{_e(b['text'])}</code></pre>")
    out += ["</main>", f"<footer>{_e(footer)}</footer>", "</body>", "</html>", ""]
    return "\n".join(out)


def _html_table(b: dict) -> str:
    al = b["align"]
    idp = f' id="{_e(b["id"])}"' if b.get("id") else ""
    rows = [f"<table{idp}>"]
    if b.get("caption"):
        rows.append(f"<caption>{_e(b['caption'])}</caption>")
    rows.append("<thead><tr>" + "".join(
        f'<th{" class=r" if al[min(i, len(al) - 1)] == "r" else ""}>{_e(h)}</th>'
        for i, h in enumerate(b["head"])) + "</tr></thead>")
    rows.append("<tbody>")
    for r in b["rows"]:
        rows.append("<tr>" + "".join(
            f'<td{" class=r" if al[min(i, len(al) - 1)] == "r" else ""}>{_e(c)}</td>'
            for i, c in enumerate(r)) + "</tr>")
    rows.append("</tbody></table>")
    if b.get("note"):
        rows.append(f'<p class="note">{_e(b["note"])}</p>')
    return "\n".join(rows)


def _md_cell(s) -> str:
    return ("" if s is None else str(s)).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[dict], figures: dict, footer: str) -> str:
    out: list[str] = []
    for b in blocks:
        t = b["t"]
        if t == "h":
            out += ["#" * b["level"] + " " + b["text"], ""]
        elif t == "p":
            txt = b["text"]
            if b.get("cls") == "apa":
                txt = f"**{txt}**"
            out += [txt, ""]
        elif t == "notice":
            txt = f"**{b['text']}**" if b.get("cls") == "simulated" else b["text"]
            out += [f"> {txt}", ""]
        elif t == "table":
            if b.get("caption"):
                out += [f"*{b['caption']}*", ""]
            al = b["align"]
            out.append("| " + " | ".join(_md_cell(h) for h in b["head"]) + " |")
            out.append("|" + "|".join(("---:" if al[min(i, len(al) - 1)] == "r" else ":---")
                                      for i in range(len(b["head"]))) + "|")
            for r in b["rows"]:
                out.append("| " + " | ".join(_md_cell(c) for c in r) + " |")
            out.append("")
            if b.get("note"):
                out += [f"Note. {b['note']}", ""]
        elif t == "figure":
            f = figures.get(b["name"])
            if f is None:
                continue
            cap = f"Figure {f['number']}. {f['caption']}"
            out += [f"![{cap}]({f['png']})", "", f"*{cap}* ([SVG]({f['svg']}))", ""]
        elif t == "list":
            out += [f"- {x}" for x in b["items"]] + [""]
        elif t == "code":
            out += ["```r", b["text"], "```", ""]
    out += ["---", "", footer, ""]
    return "\n".join(out)
