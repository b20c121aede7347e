"""The report as a Word document (``report.docx``), written with python-docx from the same
document model as the HTML and Markdown (:func:`mlmeta.report.document.build_document`).

Headings are Word headings, tables are real Word tables in APA layout (number in bold, title
in italics above, rules above and below the header and at the end, the note below), figures
are embedded PNGs (300 dpi) no wider than the text column with their numbered caption below,
and the reference list is numbered. python-docx was chosen over pandoc because it is a pure
Python package (no external program to install) and writes the tables cell by cell, so a
co-author or a journal's editor gets tables they can edit.
"""

from __future__ import annotations

import io
from pathlib import Path

__all__ = ["write_docx"]

TEXT_WIDTH_IN = 6.5
MAX_FIG_HEIGHT_IN = 7.6  # with its number, title and the file line it stays on one page


def _rule(cell, edges=("top",), sz=8) -> None:
    """A horizontal rule on the given edges of a table cell."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    tcpr = cell._tc.get_or_add_tcPr()
    borders = tcpr.find(qn("w:tcBorders"))
    if borders is None:
        borders = OxmlElement("w:tcBorders")
        tcpr.append(borders)
    for edge in edges:
        el = OxmlElement(f"w:{edge}")
        el.set(qn("w:val"), "single")
        el.set(qn("w:sz"), str(sz))
        el.set(qn("w:space"), "0")
        el.set(qn("w:color"), "000000")
        borders.append(el)


def _table(doc, b) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    p = doc.add_paragraph()
    p.paragraph_format.space_before = Pt(10)
    p.paragraph_format.keep_with_next = True
    p.add_run(f"Table {b['number']}").bold = True
    p = doc.add_paragraph()
    p.paragraph_format.keep_with_next = True
    p.add_run(b["title"]).italic = True
    from docx.shared import Inches

    ncol = len(b["head"])
    t = doc.add_table(rows=1 + len(b["rows"]), cols=ncol)
    t.autofit = False
    # column widths: each column as wide as its longest entry (at about 0.065 in a character
    # plus the cell padding); when the table is wider than the text, only the wide columns
    # give way (their text wraps), so numbers never break
    natural = []
    for j in range(ncol):
        cells = [str(b["head"][j])] + [
            str(r[j]) if j < len(r) and r[j] is not None else "" for r in b["rows"]
        ]
        natural.append(0.065 * max(len(x.strip()) for x in cells) + 0.2)
    excess = sum(natural) - TEXT_WIDTH_IN
    floor = 1.25  # a CI such as "[−0.215, −0.139]" stays on one line
    give = [max(w - floor, 0.0) for w in natural]
    if excess > 0 and sum(give) > 0:
        f = min(1.0, excess / sum(give))
        natural = [w - f * g for w, g in zip(natural, give)]
    widths = [Inches(w) for w in natural]
    for j, col in enumerate(t.columns):
        col.width = widths[j]
    align = b["align"]
    small = Pt(8.5) if ncol > 6 else Pt(9.5)
    # row.cells once per row: table.cell(r, j) walks the whole table on every call
    for r, (trow, row) in enumerate(zip(t.rows, [b["head"], *b["rows"]])):
        tcells = trow.cells
        for j in range(ncol):
            cell = tcells[j]
            cell.width = widths[j]
            val = row[j] if j < len(row) else ""
            para = cell.paragraphs[0]
            run = para.add_run("" if val is None else str(val))
            run.font.size = small
            if r == 0:
                run.bold = False
                _rule(cell, ("top", "bottom"), 8)
            if r == len(b["rows"]):
                _rule(cell, ("bottom",), 8)
            if align[min(j, len(align) - 1)] == "r":
                para.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    if b.get("note"):
        p = doc.add_paragraph()
        p.add_run("Note. ").italic = True
        r = p.add_run(b["note"])
        r.font.size = Pt(9)


def _figure(doc, f, folder: Path) -> None:
    from docx.shared import Inches, Pt

    from mlmeta.report.render import png_size

    data = f["png_bytes"]
    w, h = png_size(data)
    dpi = f.get("dpi") or 300
    win, hin = (w / dpi, h / dpi) if w and h else (TEXT_WIDTH_IN, 4.0)
    scale = min(1.0, TEXT_WIDTH_IN / win, MAX_FIG_HEIGHT_IN / hin)
    p = doc.add_paragraph()
    p.paragraph_format.keep_with_next = True
    p.add_run(f"Figure {f['number']}").bold = True
    p = doc.add_paragraph()
    p.paragraph_format.keep_with_next = True
    p.add_run(f["caption"]).italic = True
    doc.add_picture(io.BytesIO(data), width=Inches(win * scale))
    p = doc.add_paragraph()
    files = ", ".join(
        [f["png"]] + ([f["pdf"]] if f.get("pdf") else []) + list(f.get("extra") or [])
    )
    r = p.add_run(f"Files: {files}.")
    r.font.size = Pt(8)


def write_docx(path: Path, ctx: dict, folder: Path) -> None:
    """Write the render context ``ctx`` as a Word document at ``path``."""
    import docx
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt, RGBColor

    doc = docx.Document()
    st = doc.styles["Normal"]
    st.font.name = "Calibri"
    st.font.size = Pt(11)
    sec = doc.sections[0]
    from docx.shared import Inches

    sec.left_margin = sec.right_margin = Inches(1.0)
    doc.core_properties.title = ctx["title"]
    doc.core_properties.author = "mlmeta"
    figures = ctx["figures"]
    for b in ctx["blocks"]:
        t = b["t"]
        if t == "h":
            doc.add_heading(b["text"], level=min(int(b["level"]) - 1, 3) if b["level"] > 1 else 0)
        elif t == "p":
            p = doc.add_paragraph()
            run = p.add_run(b["text"])
            if b.get("cls") == "apa":
                run.bold = True
            elif b.get("cls") == "facts":
                run.font.size = Pt(9)
                run.font.color.rgb = RGBColor(0x55, 0x55, 0x55)
        elif t == "notice":
            p = doc.add_paragraph()
            run = p.add_run(b["text"])
            if b.get("cls") == "simulated":
                run.bold = True
                run.font.color.rgb = RGBColor(0xB0, 0x20, 0x10)
        elif t == "table":
            _table(doc, b)
        elif t == "figure" and b["name"] in figures:
            _figure(doc, figures[b["name"]], folder)
        elif t == "list":
            style = "List Number" if b.get("ordered") else "List Bullet"
            for x in b["items"]:
                doc.add_paragraph(x, style=style)
        elif t == "code":
            p = doc.add_paragraph()
            run = p.add_run(b["text"])
            run.font.name = "Courier New"
            run.font.size = Pt(9)
    p = doc.add_paragraph()
    p.alignment = WD_ALIGN_PARAGRAPH.LEFT
    r = p.add_run(ctx["footer"])
    r.font.size = Pt(8)
    doc.save(str(path))
