"""mlmeta: multilevel mixed-effects meta-analysis."""
from mlmeta._version import __version__
from mlmeta.errors import ConvergenceError, FormulaError, InputError, MlmetaError


def __getattr__(name):
    if name in ("rma_mv", "fit"):
        from mlmeta import model
        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["__version__", "MlmetaError", "InputError", "FormulaError", "ConvergenceError"]
