"""The child process that runs one analysis for the web page (see :mod:`mlmeta.app.runner`).

It does what ``mlmeta run ANALYSIS.toml --out DIR`` does, from the folder holding the analysis
file (so messages name files as the command line would), and reports over a pipe:
``("progress", label, done, total)`` while long steps run, then exactly one of
``("done", seconds)``, ``("error", message)`` (an :class:`~mlmeta.errors.MlmetaError`: the
command line's one-line message), ``("cancelled",)`` or ``("internal", message)``.

Importing this module imports the report machinery, so a fork server that preloads it starts
each run without import time.
"""

from __future__ import annotations

import os
import signal
import time

from mlmeta.app import api

try:  # preload what a run needs (a fork server imports this module once)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    import mlmeta.report
    import mlmeta.report.compute
    import mlmeta.report.document  # noqa: F401
except ImportError:  # pragma: no cover - run_report reports what is missing
    pass

__all__ = ["PipeProgress", "noop", "run_analysis"]


class Cancelled(BaseException):
    """SIGTERM from the page's Cancel button."""


class PipeProgress:
    """The report's progress protocol (``with progress.step(label, total) as tick: tick()``),
    sent over a pipe at most every ``interval`` seconds per step."""

    def __init__(self, conn, interval: float = 0.1):
        self.conn = conn
        self.interval = interval

    def step(self, label: str, total: int):
        return _Step(self, label, max(int(total), 1))

    def send(self, label: str, done: int, total: int) -> None:
        try:
            self.conn.send(("progress", label, int(done), int(total)))
        except (OSError, ValueError):  # the page went away: keep computing, nobody listens
            pass


class _Step:
    def __init__(self, p: PipeProgress, label: str, total: int):
        self.p, self.label, self.total, self.done, self.last = p, label, total, 0, 0.0

    def __enter__(self):
        self.p.send(self.label, 0, self.total)
        return self

    def __call__(self, done: int | None = None, total: int | None = None) -> None:
        if total is not None:
            self.total = max(int(total), 1)
        self.done = self.done + 1 if done is None else int(done)
        now = time.monotonic()
        if now - self.last >= self.p.interval or self.done >= self.total:
            self.last = now
            self.p.send(self.label, min(self.done, self.total), self.total)

    def __exit__(self, *exc):
        return False


def _on_sigterm(signum, frame):
    raise Cancelled()


def noop() -> None:
    """Starts the fork server (and its preload) before the first run."""


def run_analysis(workdir: str, toml_name: str, out_name: str, conn) -> None:
    """Child-process entry: run ``workdir/toml_name`` into ``workdir/out_name``."""
    if hasattr(os, "setsid"):
        os.setsid()  # own process group: Cancel ends the figure workers too
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the server's
    try:
        os.chdir(workdir)
        spec = api.load_analysis(toml_name)
        out = api.run_report(
            spec, out_name, progress=PipeProgress(conn), command=f"mlmeta run {toml_name}"
        )
        msg: tuple = ("done", float(out.seconds))
    except Cancelled:
        msg = ("cancelled",)
    except api.MlmetaError as exc:
        msg = ("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except BaseException as exc:  # noqa: BLE001 -- reported on the page, never a traceback
        text = str(exc).splitlines()[0] if str(exc) else ""
        msg = ("internal", f"{type(exc).__name__}: {text}")
    try:
        conn.send(msg)
        conn.close()
    except (OSError, ValueError):
        pass
