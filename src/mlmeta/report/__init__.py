"""The report of a whole analysis: ``mlmeta run analysis.toml``.

:func:`run_report` computes every number (:mod:`mlmeta.report.compute`), draws the figures
(:mod:`mlmeta.report.figures`), and writes a report folder::

    <out>/report.html      self-contained page (inline CSS, figures as base64 PNG, no scripts,
                           no external files: opens offline)
    <out>/report.md        the same text in Markdown (figures linked from figures/)
    <out>/results.json     every number of the report, at full precision
    <out>/figures/*.png    each figure as PNG ...
    <out>/figures/*.svg    ... and as SVG

The default ``<out>`` is ``<analysis-file-stem>-report`` in the current working directory
(like a compiler's output; the analysis file's own folder may be read-only, e.g. inside an
installed package). The folder is written atomically: everything goes into a temporary folder
next to the target, which is renamed into place only when the whole report succeeded; a failed
run leaves no half-written report, and an existing report is only replaced on success (and only
if it is an mlmeta report folder).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlmeta.io.analysis import AnalysisSpec
from mlmeta.errors import MlmetaError

__all__ = ["run_report", "ReportOutcome", "default_out_dir", "REPORT_FILES"]

REPORT_FILES = ("report.html", "report.md", "results.json")


@dataclass(frozen=True)
class ReportOutcome:
    out_dir: Path
    numbers: dict
    figures: list
    seconds: float


def default_out_dir(spec: AnalysisSpec, cwd: Path | None = None) -> Path:
    return (Path.cwd() if cwd is None else Path(cwd)) / f"{spec.stem}-report"


def _is_report_dir(p: Path) -> bool:
    if not p.is_dir():
        return False
    if not any(p.iterdir()):
        return True
    rj = p / "results.json"
    if not rj.is_file():
        return False
    try:
        with rj.open("r", encoding="utf-8") as fh:
            head = json.load(fh)
        return isinstance(head, dict) and head.get("generator", {}).get("name") == "mlmeta"
    except (OSError, ValueError):
        return False


def _umask() -> int:
    um = os.umask(0o022)
    os.umask(um)
    return um


def run_report(spec: AnalysisSpec, out_dir: str | Path | None = None, *, progress=None,
               command: str | None = None) -> ReportOutcome:
    """Run the analysis and write its report folder (atomically); see the module docstring."""
    from mlmeta.report.compute import compute
    from mlmeta.report.figures import DPI, FigureRenderer
    from mlmeta.report.progress import Progress

    t_start = time.perf_counter()
    progress = progress or Progress(False)
    target = Path(out_dir) if out_dir is not None else default_out_dir(spec)
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise MlmetaError(f"output {str(target)!r} exists and is not a folder")
    if target.exists() and not _is_report_dir(target):
        raise MlmetaError(f"refusing to replace {str(target)!r}: it is not an mlmeta report "
                          "folder (no results.json written by mlmeta); choose another --out")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlmetaError(f"cannot create the output folder's parent {str(parent)!r}: "
                          f"{exc.strerror}") from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as exc:
        raise MlmetaError(f"cannot write in {str(parent)!r}: {exc.strerror}") from None
    renderer = None
    try:
        renderer = (FigureRenderer(tmp / "figures", progress) if spec.analyses["figures"]
                    else None)
        comp = compute(spec, progress, figures_hook=renderer.start if renderer else None)
        numbers = comp.numbers
        t0 = time.perf_counter()
        if renderer is not None:
            figs, why = renderer.results()
        else:
            figs, why = [], "figures switched off (analyses.figures = false)"
        numbers["timings"]["figures (wait)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _finish_numbers(numbers, spec, comp, figs, why, command)
        from mlmeta.report.document import build_document, figure_captions
        blocks = build_document(numbers)
        caps = figure_captions(numbers)
        figmap = {}
        nfig = 0
        for b in blocks:
            if b["t"] != "figure":
                continue
            f = next((x for x in figs if x["name"] == b["name"] and not x["error"]), None)
            if f is None:
                continue
            nfig += 1
            png = tmp / f["files"][0]
            figmap[b["name"]] = {"png_bytes": png.read_bytes(), "png": f["files"][0],
                                 "svg": f["files"][1], "caption": caps.get(b["name"], b["name"]),
                                 "number": nfig, "dpi": DPI}
        numbers["figures"] = [{"name": n, "number": v["number"], "caption": v["caption"],
                               "png": v["png"], "svg": v["svg"]} for n, v in figmap.items()]
        for f in figs:
            if f["name"] not in figmap and not f["error"]:
                # drawn but not placed in the document (should not happen): still listed
                numbers["figures"].append({"name": f["name"], "number": None, "caption": None,
                                           "png": f["files"][0], "svg": f["files"][1]})
        from mlmeta.report.render import render_html, render_markdown
        footer = (f"Generated by mlmeta {numbers['software']['mlmeta']} on "
                  f"{numbers['created']}. Every number is in results.json; figures in "
                  "figures/ as PNG and SVG.")
        html = render_html(blocks, figmap, numbers["title"], footer)
        md = render_markdown(blocks, figmap, footer)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        (tmp / "report.md").write_text(md, encoding="utf-8")
        numbers["timings"]["write"] = time.perf_counter() - t0
        numbers["timings"]["total"] = time.perf_counter() - t_start
        (tmp / "results.json").write_text(json.dumps(numbers, indent=1, ensure_ascii=False,
                                                     allow_nan=False) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_into_place(tmp, target)
    except BaseException:
        if renderer is not None:
            renderer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ReportOutcome(target, numbers, numbers["figures"], time.perf_counter() - t_start)


def _swap_into_place(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _finish_numbers(numbers: dict, spec: AnalysisSpec, comp, figs, why, command) -> None:
    from mlmeta import __version__
    from mlmeta.report.document import methods_text, software_versions
    from mlmeta.report.fmt import level_text

    ld = comp.objects["loaded"]
    title = spec.title or ld.example_title or f"Meta-analysis of {Path(ld.source_text).name}"
    settings = spec.to_dict()
    settings["level"] = spec.level
    settings["level_text"] = level_text(spec.level)
    head = {
        "generator": {"name": "mlmeta", "version": __version__},
        "title": title,
        "simulated": bool(spec.simulated),
        "notice": spec.notice or ld.example_notice,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "settings": settings,
        "software": software_versions(),
    }
    for f in figs:
        if f["error"]:
            numbers["warnings"].append({"section": "figures", "category": "FigureError",
                                        "message": f"figure {f['name']!r} could not be drawn: "
                                                   f"{f['error']}"})
        for w in f.get("warnings", []):
            item = {"section": f"figure {f['name']}", "category": "MlmetaWarning",
                    "message": w}
            if not any(x["message"] == w for x in numbers["warnings"]):
                numbers["warnings"].append(item)
        numbers["timings"][f"figure {f['name']}"] = f["seconds"]
    if why:
        numbers["figures_unavailable"] = why
        numbers["warnings"].append({"section": "figures", "category": "NotAvailable",
                                    "message": f"no figures: {why}"})
    merged = dict(head)
    merged.update(numbers)
    numbers.clear()
    numbers.update(merged)
    numbers["methods"] = methods_text(numbers)
