"""Reading data files: CSV/TSV (delimiter sniffed), Excel and Parquet, with one-line errors."""

from __future__ import annotations

from pathlib import Path

from mlmeta.errors import MlmetaError

__all__ = ["read_table"]


def read_table(path: str):
    """Read CSV/TSV (any delimiter sniffed), Excel or Parquet into a DataFrame."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise MlmetaError(f"data file {path!r} not found")
    if p.is_dir():
        raise MlmetaError(f"data file {path!r} is a directory")
    suf = p.suffix.lower()
    try:
        if suf in (".xlsx", ".xls"):
            return pd.read_excel(p)
        if suf == ".parquet":
            return pd.read_parquet(p)
        raw = p.read_bytes()
        if not raw.strip():
            raise MlmetaError(f"data file {path!r} is empty")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MlmetaError(f"data file {path!r} is not UTF-8 text (byte {exc.start}); "
                              "save it as UTF-8") from None
        import io
        sep = "\t" if suf in (".tsv", ".tab") else ","
        first = text.splitlines()[0] if text.splitlines() else ""
        if sep == "," and "," not in first:
            for cand in (";", "\t", "|"):
                if cand in first:
                    sep = cand
                    break
        df = pd.read_csv(io.StringIO(text), sep=sep)
    except MlmetaError:
        raise
    except ImportError as exc:
        raise MlmetaError(f"cannot read {path!r}: {exc}") from None
    except Exception as exc:  # pandas parser errors and the like
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MlmetaError(f"cannot read data file {path!r}: {msg}") from None
    if df.shape[1] < 2 and len(df) >= 0:
        raise MlmetaError(f"data file {path!r} has {df.shape[1]} column(s); expected a header "
                          "row and comma-separated columns")
    if len(df) == 0:
        raise MlmetaError(f"data file {path!r} has a header but no data rows")
    return df
