"""Run an analysis in a child process, with progress and cancellation, for the web page.

:class:`Job` starts :func:`mlmeta.app.worker.run_analysis` in its own process (from a fork
server that has already imported the report machinery, where the platform has one; else a
freshly spawned interpreter), reads its progress messages without blocking, and
:meth:`Job.cancel` ends the whole process group (the report's figure workers included). A
process per run also keeps runs of different browser sessions apart: warnings, the working
folder and matplotlib's state are per process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Job", "JobState", "cancel_all", "context", "warm_up"]

_CTX = None
_LOCK = threading.Lock()
_LIVE: set[Job] = set()  # started and not yet finished: ended by cancel_all at shutdown


def cancel_all() -> None:
    """Cancel every run still going (the server is stopping)."""
    for job in list(_LIVE):
        job.cancel(timeout=2)


def context():
    """The multiprocessing context of the runs (fork server preloaded with the worker)."""
    global _CTX
    with _LOCK:
        if _CTX is None:
            if "forkserver" in mp.get_all_start_methods():
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(["mlmeta.app.worker"])
            else:  # Windows
                ctx = mp.get_context("spawn")
            _CTX = ctx
        return _CTX


def warm_up() -> None:
    """Start the fork server now (in a thread), so the first run does not wait for imports."""

    def go():
        try:
            from mlmeta.app import worker

            p = context().Process(target=worker.noop)
            p.start()
            p.join(60)
        except Exception:  # noqa: BLE001, S110 -- only an optimisation: runs start it anyway
            pass

    threading.Thread(target=go, daemon=True, name="mlmeta-app-warm-up").start()


@dataclass
class JobState:
    """What the page shows while a job runs, and how it ended."""

    status: str = "starting"  # starting | running | done | error | cancelled | internal
    label: str = "starting"
    done: int = 0
    total: int = 0
    message: str = ""
    seconds: float = 0.0
    started: float = 0.0


class Job:
    """One run of ``workdir/toml_name`` into ``workdir/out_name`` (a relative path)."""

    def __init__(self, workdir: Path, toml_name: str, out_name: str):
        self.workdir = Path(workdir)
        self.toml_name = toml_name
        self.out_name = out_name
        self.state = JobState(started=time.monotonic())
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()  # start and cancel may run in different threads
        self._cancel_requested = False

    @property
    def out_dir(self) -> Path:
        return self.workdir / self.out_name

    def start(self) -> None:
        from mlmeta.app import worker

        ctx = context()
        with self._lock:
            if self._cancel_requested:  # cancelled before it started
                self.state.status = "cancelled"
                return
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=worker.run_analysis,
                args=(str(self.workdir), self.toml_name, self.out_name, w),
                name="mlmeta-app-run",
            )
            p.start()
            w.close()
            self._proc, self._conn = p, r
            self.state.status = "running"
            _LIVE.add(self)

    @property
    def finished(self) -> bool:
        return self.state.status in ("done", "error", "cancelled", "internal")

    def poll(self) -> JobState:
        """Read the child's messages (never blocks); detect a child that died silently."""
        if self.finished or self._conn is None:
            return self.state
        try:
            while self._conn.poll():
                self._handle(self._conn.recv())
                if self.finished:
                    break
        except (EOFError, OSError):
            pass
        if not self.finished and self._proc is not None and not self._proc.is_alive():
            try:  # a final message may have arrived just before the exit
                while self._conn.poll():
                    self._handle(self._conn.recv())
            except (EOFError, OSError):
                pass
            if not self.finished:
                self.state.status = "internal"
                self.state.message = (
                    f"the analysis process ended unexpectedly (exit code {self._proc.exitcode})"
                )
        if self.finished:
            self._reap()
        return self.state

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind == "progress":
            _, self.state.label, self.state.done, self.state.total = msg
        elif kind == "done":
            self.state.status, self.state.seconds = "done", float(msg[1])
        elif kind in ("error", "internal"):
            self.state.status, self.state.message = kind, str(msg[1])
        elif kind == "cancelled":
            self.state.status = "cancelled"

    def _reap(self) -> None:
        _LIVE.discard(self)
        if self._proc is not None:
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def cancel(self, timeout: float = 5.0) -> None:
        """End the run and its figure workers; remove what it wrote. Safe to call before,
        during or after :meth:`start`, from any thread."""
        with self._lock:
            self._cancel_requested = True
        p = self._proc
        if p is not None and p.is_alive():
            self._signal(signal.SIGTERM)
            p.join(timeout)
            if p.is_alive():
                self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
                p.join(timeout)
        if not self.finished or self.state.status == "cancelled":
            self.state.status = "cancelled"
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        _LIVE.discard(self)
        out = self.out_dir
        shutil.rmtree(out, ignore_errors=True)
        if out.parent.is_dir():
            for tmp in out.parent.glob(f".{out.name}.*"):  # run_report's temporary folder
                shutil.rmtree(tmp, ignore_errors=True)

    def _signal(self, sig) -> None:
        p = self._proc
        if p is None or p.pid is None:
            return
        if hasattr(os, "killpg"):
            try:
                if os.getpgid(p.pid) == p.pid:  # the child has made its own group
                    os.killpg(p.pid, sig)
                    return
            except (ProcessLookupError, PermissionError, OSError):
                pass
        try:
            os.kill(p.pid, sig)
        except (ProcessLookupError, OSError):
            pass
