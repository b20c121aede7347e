"""The report of a whole analysis: ``mlmeta run analysis.toml``.

:func:`run_report` computes every number (:mod:`mlmeta.report.compute`), draws the figures
(:mod:`mlmeta.report.figures`), and writes a report folder::

    <out>/report.html      self-contained page (inline CSS, figures as base64 PNG, no scripts,
                           no external files: opens offline)
    <out>/report.md        the same text in Markdown (figures linked from figures/)
    <out>/report.docx      the same document in Word (real tables, figures embedded)
    <out>/results.json     every number of the report, at full precision
    <out>/figures/*.png    each figure as PNG (300 dpi) ...
    <out>/figures/*.pdf    ... and as vector PDF (a long forest plot: a multi-page PDF too)

    <out>/.mlmeta-manifest.json   every file above with its size and SHA-256

The default ``<out>`` is ``<analysis-file-stem>-report`` in the current working directory
(like a compiler's output; the analysis file's own folder may be read-only, e.g. inside an
installed package). The folder is written atomically: everything goes into a temporary folder
next to the target, which is renamed into place only when the whole report succeeded; a failed
or interrupted run (Ctrl-C, SIGTERM, SIGHUP) leaves no half-written report and no temporary
folder.

An existing ``<out>`` is replaced only when mlmeta can prove it wrote everything in it: every
file is listed in the folder's manifest with the same size and SHA-256 (or, for reports written
before manifests existed, it holds only the report's own file names and its results.json says
mlmeta wrote it). An empty folder is filled. Anything else is refused with one line naming a
file mlmeta did not write, so a user's data or manuscript is never deleted. When ``<out>`` is
the current folder (or contains it) the new files are moved into it one by one instead of
renaming the folder. ``<out>`` may not be a symbolic link. Every file name derived from data
(e.g. a figure named after a moderator column) is sanitised, and every file is checked to lie
inside the report folder before the folder is put in place.
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

from mlmeta.errors import MlmetaError
from mlmeta.io.analysis import AnalysisSpec

__all__ = ["REPORT_FILES", "ReportOutcome", "default_out_dir", "run_report"]

REPORT_FILES = ("report.html", "report.md", "report.docx", "results.json")


@dataclass(frozen=True)
class ReportOutcome:
    out_dir: Path
    numbers: dict
    figures: list
    seconds: float


def default_out_dir(spec: AnalysisSpec, cwd: Path | None = None) -> Path:
    return (Path.cwd() if cwd is None else Path(cwd)) / f"{spec.stem}-report"


MANIFEST = ".mlmeta-manifest.json"
#: file names of a report written before manifests existed (replaceable only if nothing else is
#: in the folder and its results.json says mlmeta wrote it)
_LEGACY_TOP = frozenset(REPORT_FILES) | {"report.docx", "report.pdf"}
_LEGACY_FIG = (".png", ".svg", ".pdf")


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entries(folder: Path) -> list[str]:
    """Every file and folder below ``folder`` (relative, '/'-separated), without following
    symbolic links; folders end with '/'."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel = Path(root).relative_to(folder)
        for d in dirs:
            out.append((rel / d).as_posix() + "/")
        out.extend((rel / f).as_posix() for f in files)
    return sorted(out)


def _write_manifest(folder: Path) -> None:
    files = {}
    for rel in _entries(folder):
        if rel.endswith("/"):
            continue
        p = folder / rel
        files[rel] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    (folder / MANIFEST).write_text(
        json.dumps({"generator": "mlmeta", "files": files}, indent=1) + "\n", encoding="utf-8"
    )


def _foreign_entry(folder: Path) -> str | None:
    """None when mlmeta can prove it wrote everything in ``folder`` (see the module
    docstring), else the first entry it cannot vouch for (or a reason in brackets)."""
    entries = _entries(folder)
    if not entries:
        return None
    for rel in entries:
        if (folder / rel.rstrip("/")).is_symlink():
            return rel.rstrip("/")
    mpath = folder / MANIFEST
    if mpath.is_file():
        try:
            man = json.loads(mpath.read_text(encoding="utf-8"))
            files = man["files"] if man.get("generator") == "mlmeta" else None
            if not isinstance(files, dict):
                raise TypeError(MANIFEST)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return MANIFEST + " (unreadable)"
        for rel in entries:
            if rel == MANIFEST or rel.endswith("/"):
                continue
            info = files.get(rel)
            try:
                same = (
                    isinstance(info, dict)
                    and (folder / rel).stat().st_size == info["size"]
                    and _sha256(folder / rel) == info["sha256"]
                )
            except (OSError, KeyError, TypeError):
                same = False
            if not same:
                return rel + ("" if info is None else " (changed since mlmeta wrote it)")
        return None
    # a report from before manifests: only the report's own names, written by mlmeta
    for rel in entries:
        top = rel.split("/")[0]
        if rel == "figures/" or (
            top == "figures" and rel.count("/") == 1 and rel.endswith(_LEGACY_FIG)
        ):
            continue
        if rel not in _LEGACY_TOP:
            return rel
    try:
        with (folder / "results.json").open("r", encoding="utf-8") as fh:
            head = json.load(fh)
        if isinstance(head, dict) and head.get("generator", {}).get("name") == "mlmeta":
            return None
    except (OSError, ValueError, AttributeError):
        pass
    return "results.json (not written by mlmeta)"


def _check_target(target: Path) -> None:
    """Refuse an output path mlmeta must not write to (one line, MlmetaError)."""
    shown = str(target)
    if target.is_symlink():
        dest = os.readlink(target)
        raise MlmetaError(
            f"output {shown!r} is a symbolic link (to {dest!r}); give the folder "
            "itself, or a new name"
        )
    if target.exists() and not target.is_dir():
        raise MlmetaError(f"output {shown!r} exists and is not a folder")
    if target.exists():
        bad = _foreign_entry(target)
        if bad is not None:
            raise MlmetaError(
                f"refusing to replace {shown!r}: it is not an mlmeta report folder "
                f"(it holds {bad!r}, which mlmeta did not write); choose another "
                "--out or an empty folder"
            )


def _check_inside(folder: Path) -> None:
    """Every file of the new report lies inside it (no symbolic links, nothing escaping)."""
    root = folder.resolve()
    for rel in _entries(folder):
        p = folder / rel.rstrip("/")
        if p.is_symlink() or not p.resolve().is_relative_to(root):
            raise MlmetaError(
                f"internal check failed: report file {rel!r} is not inside the report folder"
            )


def _contains_cwd(target: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    t = target.resolve()
    return cwd == t or cwd.is_relative_to(t)


def _umask() -> int:
    um = os.umask(0o022)
    os.umask(um)
    return um


def run_report(
    spec: AnalysisSpec,
    out_dir: str | Path | None = None,
    *,
    progress=None,
    command: str | None = None,
) -> ReportOutcome:
    """Run the analysis and write its report folder (atomically); see the module docstring."""
    from mlmeta.report.compute import compute
    from mlmeta.report.figures import DPI, FigureRenderer
    from mlmeta.report.progress import Progress

    t_start = time.perf_counter()
    progress = progress or Progress(False)
    target = Path(out_dir) if out_dir is not None else default_out_dir(spec)
    target = Path(os.path.abspath(target))  # normalised ('.', '..'), symbolic links kept
    _check_target(target)
    parent = target.parent
    top = parent  # the outermost missing parent: removed again if the run fails
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    made = None if top.exists() else top
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlmetaError(
            f"cannot create the output folder's parent {str(parent)!r}: {exc.strerror}"
        ) from None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as exc:
        _remove_empty(made, parent)
        raise MlmetaError(f"cannot write in {str(parent)!r}: {exc.strerror}") from None
    renderer = None
    try:
        renderer = FigureRenderer(tmp / "figures", progress) if spec.analyses["figures"] else None
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
        _relative_paths(numbers, target)
        from mlmeta.report.write import write_documents

        write_documents(tmp, numbers, figs, templates=spec.templates, dpi=DPI)
        numbers["timings"]["write"] = time.perf_counter() - t0
        numbers["timings"]["total"] = time.perf_counter() - t_start
        (tmp / "results.json").write_text(
            json.dumps(numbers, indent=1, ensure_ascii=False, allow_nan=False) + "\n",
            encoding="utf-8",
        )
        _check_inside(tmp)
        _write_manifest(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_into_place(tmp, target)
    except BaseException:
        if renderer is not None:
            renderer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made, parent)
        raise
    return ReportOutcome(target, numbers, numbers["figures"], time.perf_counter() - t_start)


def _relative_paths(numbers: dict, target: Path) -> None:
    """Paths in the settings, the data source and the command, relative to the report folder:
    a shared report must not reveal the user's folder names (``/home/ana/thesis/...``)."""

    def rel(v: str) -> str:
        if not os.path.isabs(v):
            return v
        try:
            return Path(os.path.relpath(v, target)).as_posix()
        except ValueError:  # another drive (Windows)
            return Path(v).name

    def walk(o):
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return rel(o) if isinstance(o, str) else o

    if isinstance(numbers.get("settings"), dict):
        numbers["settings"] = walk(numbers["settings"])
    if isinstance(numbers.get("data"), dict) and isinstance(numbers["data"].get("source"), str):
        numbers["data"]["source"] = rel(numbers["data"]["source"])
    if isinstance(numbers.get("command"), str):
        import shlex

        try:
            numbers["command"] = shlex.join(rel(t) for t in shlex.split(numbers["command"]))
        except ValueError:
            pass


def _remove_empty(made: Path | None, parent: Path) -> None:
    """Remove the (empty) folders ``parent`` up to ``made`` that this run created."""
    if made is None:
        return
    p = parent
    while True:
        try:
            p.rmdir()
        except OSError:
            return
        if p == made or p.parent == p:
            return
        p = p.parent


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Put the finished report ``tmp`` at ``target`` (checked again just before: the folder
    may have changed while the analysis ran)."""
    _check_target(target)
    if not target.exists():
        os.rename(tmp, target)
        return
    if _contains_cwd(target):
        _move_into(tmp, target)
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


def _move_into(tmp: Path, target: Path) -> None:
    """Replace the report files inside ``target`` (the current folder, which must not be
    renamed away under the user's shell): the old manifest's files are removed (proven ours by
    :func:`_check_target`), then the new files are moved in, the manifest last."""
    for rel in reversed(_entries(target)):  # children before their folders
        p = target / rel.rstrip("/")
        if rel.endswith("/"):
            try:
                p.rmdir()
            except OSError:
                pass
        else:
            p.unlink()
    for rel in _entries(tmp):
        if rel == MANIFEST:
            continue
        src, dst = tmp / rel.rstrip("/"), target / rel.rstrip("/")
        if rel.endswith("/"):
            dst.mkdir(exist_ok=True)
        else:
            os.replace(src, dst)
    os.replace(tmp / MANIFEST, target / MANIFEST)
    shutil.rmtree(tmp, ignore_errors=True)


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
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "settings": settings,
        "software": software_versions(),
    }
    for f in figs:
        if f["error"]:
            numbers["warnings"].append(
                {
                    "section": "figures",
                    "category": "FigureError",
                    "message": f"figure {f['name']!r} could not be drawn: {f['error']}",
                }
            )
        for w in f.get("warnings", []):
            item = {"section": f"figure {f['name']}", "category": "MlmetaWarning", "message": w}
            if not any(x["message"] == w for x in numbers["warnings"]):
                numbers["warnings"].append(item)
        numbers["timings"][f"figure {f['name']}"] = f["seconds"]
    if why:
        numbers["figures_unavailable"] = why
        numbers["warnings"].append(
            {"section": "figures", "category": "NotAvailable", "message": f"no figures: {why}"}
        )
    merged = dict(head)
    merged.update(numbers)
    numbers.clear()
    numbers.update(merged)
    numbers["methods"] = methods_text(numbers)
