"""A tiny progress printer for long report steps (no dependency).

On a terminal (stderr is a tty) each long step draws one self-overwriting line::

    mlmeta: leave-one-out    [##########..........]  14/27

and clears it when the step ends. When stderr is not a terminal, or with ``--quiet``, it prints
nothing at all, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``with progress.step("profile CIs", total=3) as tick: ... tick()``."""

    WIDTH = 20

    def __init__(self, enabled: bool | None = None, stream=None, min_interval: float = 0.05):
        self.stream = sys.stderr if stream is None else stream
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.min_interval = min_interval
        self._last = 0.0
        self._shown = False

    def step(self, label: str, total: int):
        return _Step(self, label, max(int(total), 1))

    # drawing -------------------------------------------------------------
    def _draw(self, label: str, done: int, total: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval and done < total:
            return
        self._last = now
        filled = int(self.WIDTH * done / total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"mlmeta: {label:<16.16s} [{bar}] {done:>3d}/{total}"
        self.stream.write("\r" + line)
        self.stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()
            self._shown = False


class _Step:
    def __init__(self, progress: Progress, label: str, total: int):
        self.p, self.label, self.total, self.done = progress, label, total, 0

    def __enter__(self):
        self.p._draw(self.label, 0, self.total, force=True)
        return self

    def __call__(self, done: int | None = None, total: int | None = None) -> None:
        """Advance by one, or set the count (``rho_sweep``'s ``progress(i, n)`` callback)."""
        if total is not None:
            self.total = max(int(total), 1)
        self.done = self.done + 1 if done is None else int(done)
        self.p._draw(self.label, min(self.done, self.total), self.total)

    def __exit__(self, *exc):
        self.p._clear()
        return False
