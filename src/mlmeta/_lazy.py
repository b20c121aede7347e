"""Modules imported on first use, so that ``import mlmeta`` and the CLI's quick path stay fast.

``pd = lazy("pandas")`` behaves like ``import pandas as pd`` except that pandas (~0.25 s to
import) is imported when an attribute is first read (``pd.DataFrame``, ``pd.isna``, an
``isinstance`` check). Modules that need pandas only in some functions use it; type checkers
see the real module through ``if TYPE_CHECKING: import pandas as pd``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["lazy"]


class _LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        mod = self._module
        if mod is None:
            mod = importlib.import_module(self._name)
            self._module = mod
        return getattr(mod, attr)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access."""
    return _LazyModule(name)
