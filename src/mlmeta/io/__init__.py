"""Reading and preparing data: files (:mod:`.read`), model arrays (:mod:`.prepare`), moderator
formulas (:mod:`.formula`) and analysis files (:mod:`.analysis`)."""

from mlmeta.io.read import read_table

__all__ = ["read_table"]
