"""The report's figures, drawn with :mod:`mlmeta.plots` on matplotlib's Agg backend.

Each figure is saved as ``figures/<name>.png`` (300 dpi) and ``figures/<name>.pdf`` (vector). Drawing is the
slowest part of a report, so on Linux (``fork`` available) and with more than one CPU the
figures are drawn in worker processes started as soon as the models they need are fitted,
while the main process computes the remaining numbers. ``MLMETA_REPORT_WORKERS=1`` (or a
platform without ``fork``) draws them one after the other in the main process.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DPI", "FigureJob", "FigureRenderer", "figure_jobs", "file_stem"]

DPI = 300  # journals ask for 300 dpi; the PDF next to each PNG is vector
RC: dict = {"figure.max_open_warning": 0}


@dataclass(frozen=True)
class FigureJob:
    name: str
    draw: Callable  # objects -> Axes / array of Axes
    cost: float = 1.0  # rough relative cost, the expensive ones are started first
    #: optional: (objects, figures folder, the drawn figure) -> {"files": [...], "info": {...}}
    #: for files beyond the PNG and PDF (a multi-page forest) and facts for the caption
    extra: Callable | None = None


#: no figure in the report is taller than this (inches); longer ones go to multi-page PDFs
MAX_HEIGHT = 12.0
#: the leave-one-out figure shows at most this many studies (those that move the estimate most)
LOO_MAX_ROWS = 50


def _forest_settings(spec, res):
    plots = _plots()
    level = spec.forest_level
    if level == "auto":
        level = plots.auto_level(res, MAX_HEIGHT)
    if level == "study" and (not res.data.random or getattr(res, "is_structured", False)):
        level = "effect"  # study-level estimates need one nesting (see study_estimates)
    sort = {"data": False, "effect": "effect", "weight": "weight"}[spec.forest_sort]
    return level, sort


def _draw_forest(o):
    level, sort = _forest_settings(o["spec"], o["res"])
    return _plots().forest(o["res"], level=level, sort=sort, max_height=MAX_HEIGHT)


def _forest_extra(o, figdir: Path, fig) -> dict:
    """The multi-page PDFs behind the report's forest figure: every effect size when the
    figure is at the study level, every study when even the study level was cut."""
    plots = _plots()
    res = o["res"]
    level, sort = _forest_settings(o["spec"], res)
    info: dict = {"level": level}
    files = []
    shown = getattr(fig, "mlmeta_rows", None)
    if shown is not None:
        info.update(truncated=True, shown=int(shown[0]), total=int(shown[1]))
    if level == "study" or shown is not None:
        name = "forest_effects.pdf" if level == "effect" or shown is None else "forest_studies.pdf"
        lv = "effect" if name == "forest_effects.pdf" else "study"
        n = plots.forest_pages(res, figdir / name, level=lv, sort=sort, max_height=MAX_HEIGHT)
        files.append(f"figures/{name}")
        info.update(pages_file=f"figures/{name}", pages=n)
        if level == "study" and shown is not None:  # every effect size as well
            n2 = plots.forest_pages(
                res, figdir / "forest_effects.pdf", level="effect", sort=sort, max_height=MAX_HEIGHT
            )
            files.append("figures/forest_effects.pdf")
            info["effects_pages"] = n2
    return {"files": files, "info": info}


def _draw_loo(o):
    spec = o["spec"]
    return _plots().loo_plot(
        o["res"], cluster=spec.study, loo=o.get("loo_table"), max_rows=LOO_MAX_ROWS
    )


def _loo_extra(o, figdir: Path, fig) -> dict:
    shown = getattr(fig, "mlmeta_rows", None)
    if shown is None:
        return {"files": [], "info": {"truncated": False}}
    return {
        "files": [],
        "info": {"truncated": True, "shown": int(shown[0]), "total": int(shown[1])},
    }


def figure_jobs(obj: dict) -> list[FigureJob]:
    """The figures that apply to this analysis."""
    spec = obj["spec"]
    res = obj["res"]
    an = spec.analyses
    jobs = [FigureJob("forest", _draw_forest, 5.0, _forest_extra)]
    if an["bias"]:
        jobs.append(FigureJob("funnel", lambda o: _plots().funnel(o["res"]), 1.0))
    if an["profile"] and res.data.random and not all(res.core.fixed):
        jobs.append(FigureJob("profile", lambda o: _plots().profile_plot(o["res"], n=15), 2.5))
    if an["loo"] and (res.data.random or spec.study):
        jobs.append(FigureJob("loo", _draw_loo, 0.1, _loo_extra))  # last: see compute()
    for m, d in obj.get("moderators", {}).items():
        rm = d["res"]
        col = rm.data.frame[m]
        import pandas as pd

        categorical = (
            m in spec.categorical
            or not pd.api.types.is_numeric_dtype(col)
            or pd.api.types.is_bool_dtype(col)
        )
        if categorical:
            jobs.append(
                FigureJob(
                    f"orchard_{m}",
                    lambda o, m=m: _plots().orchard(o["moderators"][m]["res"], m),
                    1.0,
                )
            )
        else:
            jobs.append(
                FigureJob(
                    f"bubble_{m}", lambda o, m=m: _plots().bubble(o["moderators"][m]["res"], m), 1.0
                )
            )
    return sorted(jobs, key=lambda j: -j.cost)


def file_stem(name: str) -> str:
    """A safe file name for a figure named ``name`` (which may hold a data column's name):
    letters, digits, ``_`` and ``-`` only, at most 60 characters; a name that had to be
    changed gets 8 hex digits of its SHA-256, so two columns never share a file."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60] or "figure"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return safe


def _plots():
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    from mlmeta import plots

    return plots


def plots_available() -> str | None:
    """None when figures can be drawn, else the reason they cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError:
        return "matplotlib is not installed (pip install 'mlmeta[plot]')"
    try:
        import mlmeta.plots  # noqa: F401
    except ImportError as exc:
        return f"mlmeta.plots is not available ({exc})"
    return None


# state shared with forked workers (set before the fork, read in the child)
_STATE: dict = {}


def _render_one(i: int) -> dict:
    job = _STATE["jobs"][i]
    obj = _STATE["obj"]
    figdir = Path(_STATE["figdir"])
    t0 = time.perf_counter()
    out = {"name": job.name, "files": [], "seconds": 0.0, "error": None, "warnings": []}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlmeta.errors import MlmetaWarning

    try:
        with warnings.catch_warnings(record=True) as rec, matplotlib.rc_context(RC):
            warnings.simplefilter("always")
            ax = job.draw(obj)
            fig = _figure_of(ax)
            plots = _plots()
            safe = file_stem(job.name)
            stem = figdir / safe
            if stem.resolve().parent != figdir.resolve():  # never write outside figures/
                raise RuntimeError(f"figure file name {safe!r} leaves the figures folder")
            # a figure laid out to its known text widths needs no tight bbox (one draw less)
            bb = {"bbox_inches": None} if getattr(fig, "mlmeta_fixed_layout", False) else {}
            plots.save_figure(fig, stem, formats=("png",), dpi=DPI, **bb)
            plots.save_figure(
                fig,
                stem,
                formats=("pdf",),
                metadata={"CreationDate": None, "Creator": "mlmeta"},
                **bb,
            )
            out["files"] = [f"figures/{safe}.png", f"figures/{safe}.pdf"]
            if job.extra is not None:
                ex = job.extra(obj, figdir, fig)
                out["files"] += ex.get("files", [])
                out["info"] = ex.get("info")
        out["warnings"] = sorted(
            {str(w.message).splitlines()[0] for w in rec if issubclass(w.category, MlmetaWarning)}
        )
    except Exception as exc:  # noqa: BLE001 -- a figure that fails must not sink the report
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out["error"] = f"{type(exc).__name__}: {msg}"
        if os.environ.get("MLMETA_DEBUG"):
            traceback.print_exc()
    finally:
        plt.close("all")
    out["seconds"] = time.perf_counter() - t0
    return out


def _figure_of(ax):
    import numpy as np

    if isinstance(ax, np.ndarray):
        ax = ax.ravel()[0]
    return ax if hasattr(ax, "savefig") else ax.figure


def _workers() -> int:
    env = os.environ.get("MLMETA_REPORT_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            return 1
    if sys.platform != "linux":
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


def _claim(counter, n: int) -> int | None:
    with counter.get_lock():
        i = counter.value
        if i >= n:
            return None
        counter.value = i + 1
    return i


def _worker_loop(counter, queue, n: int) -> None:  # pragma: no cover - runs in a child
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's business
    for sig in (signal.SIGTERM, signal.SIGHUP):  # not the parent's handlers: just stop
        signal.signal(sig, signal.SIG_DFL)
    try:
        while (i := _claim(counter, n)) is not None:
            queue.put(_render_one(i))
    finally:
        queue.put(None)


class FigureRenderer:
    """Draw the figures of one report into ``figdir``.

    With fork and several CPUs, ``start`` forks (CPUs - 1) worker processes that begin drawing
    at once while the main process goes on computing; when the main process calls
    ``results`` it joins in and draws the figures nobody has claimed yet (a shared counter hands
    out the figures, most expensive first). Otherwise everything is drawn in ``results``.
    """

    def __init__(self, figdir: Path, progress=None):
        self.figdir = Path(figdir)
        self.progress = progress
        self.jobs: list[FigureJob] = []
        self.procs: list = []
        self.counter: Any = None
        self.queue: Any = None
        self.unavailable: str | None = None

    def start(self, obj: dict) -> None:
        self.unavailable = plots_available()
        if self.unavailable:
            return
        self.figdir.mkdir(parents=True, exist_ok=True)
        self.jobs = figure_jobs(obj)
        _STATE.update(jobs=self.jobs, obj=obj, figdir=str(self.figdir))
        n_children = min(_workers() - 1, len(self.jobs) - 1)
        if n_children < 1:
            return
        import multiprocessing as mp

        try:
            ctx = mp.get_context("fork")
            self.counter = ctx.Value("i", 0)
            self.queue = ctx.SimpleQueue()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                for _ in range(n_children):
                    p = ctx.Process(
                        target=_worker_loop,
                        args=(self.counter, self.queue, len(self.jobs)),
                        daemon=True,
                    )
                    p.start()
                    self.procs.append(p)
        except (OSError, ValueError):
            self.abort()
            self.counter = self.queue = None

    def results(self) -> tuple[list[dict], str | None]:
        """Wait for the figures; (one dict per figure in job order, reason if none)."""
        if self.unavailable:
            return [], self.unavailable
        n = len(self.jobs)
        got: list[dict] = []
        from mlmeta.report.progress import Progress

        prog = self.progress or Progress(False)
        try:
            with prog.step("figures", n) as tick:
                if self.counter is None:
                    for i in range(n):
                        got.append(_render_one(i))
                        tick()
                else:
                    done = 0

                    def take(r):
                        nonlocal done
                        if r is None:
                            done += 1
                        else:
                            got.append(r)
                            tick()

                    while (idx := _claim(self.counter, n)) is not None:
                        got.append(_render_one(idx))
                        tick()
                        while not self.queue.empty():  # count the workers' figures as we go
                            take(self.queue.get())
                    while done < len(self.procs):
                        take(self.queue.get())
                    for p in self.procs:
                        p.join()
                    self.procs = []
        finally:
            self.abort()
        names = {r["name"] for r in got}
        for j in self.jobs:  # a worker that died without reporting
            if j.name not in names:
                got.append(
                    {
                        "name": j.name,
                        "files": [],
                        "seconds": 0.0,
                        "warnings": [],
                        "error": "the drawing process ended unexpectedly",
                    }
                )
        order = {j.name: i for i, j in enumerate(self.jobs)}
        return sorted(got, key=lambda r: order[r["name"]]), None

    def abort(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join()
        self.procs = []
        _STATE.clear()
