"""Exceptions and warnings raised by mlmeta.

Every error derives from :class:`MlmetaError`, so callers can catch the whole family. Messages are
one line, name the argument, column or row involved, state the rule that was broken and echo the
offending value; the command line prints them as they are and exits with status 2.

Non-fatal problems with the data or the fit are *warnings* (subclasses of :class:`MlmetaWarning`),
so they can be filtered with the standard :mod:`warnings` machinery.
"""

from __future__ import annotations

__all__ = [
    "MlmetaError",
    "InputError",
    "FormulaError",
    "ConvergenceError",
    "MlmetaWarning",
    "DataWarning",
    "FitWarning",
]


class MlmetaError(Exception):
    """Base class of every error raised by mlmeta."""


class InputError(MlmetaError, ValueError):
    """Bad input: a missing column, an impossible value, an unknown option."""


class FormulaError(InputError):
    """A moderator formula that cannot be parsed, refers to unknown columns or is not allowed."""


class ConvergenceError(MlmetaError, RuntimeError):
    """The likelihood could not be maximised; the message says what was tried."""


class MlmetaWarning(UserWarning):
    """Base class of mlmeta's warnings."""


class DataWarning(MlmetaWarning):
    """Something in the data deserves attention (dropped rows, duplicated ids) but is not fatal."""


class FitWarning(MlmetaWarning):
    """The fit is usable but not fully trustworthy (boundary estimate, non-identifiable component)."""
