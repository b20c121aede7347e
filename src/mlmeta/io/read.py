"""Reading data files: CSV/TSV (delimiter sniffed), Excel and Parquet, with one-line errors.

Every problem is an :class:`~mlmeta.errors.InputError` whose message names the file and, where
it applies, the line, column or byte. Decisions:

- The content decides, not only the extension: an Excel workbook, a Parquet file or a zip
  archive named ``.csv`` is refused (and text named ``.xlsx`` too), with a hint to rename it.
- Text must be UTF-8 (a BOM is allowed) or UTF-16 with a BOM (Excel's "Unicode text").
  Anything else, e.g. Latin-1 bytes, is refused naming the line and the byte: guessing an
  encoding would silently garble study ids and column names. NUL bytes mean "not text".
- The delimiter is ``,`` ``;`` tab or ``|``: the one that occurs most often in the header line
  (outside quotes); ``.tsv``/``.tab`` files are tab-separated.
- Decimal commas: in a file separated by ``;`` or tab, a text column whose every value looks
  like ``0,35`` (or an integer) is read with ``,`` as the decimal mark, with a DataWarning
  naming the columns. In comma-separated files a quoted ``"0,35"`` is not a number (it is
  refused where a number is needed, with a hint).
- A whole-number column written with leading zeros (``01``, ``007``) is read as text ids, so
  ``01`` and ``1`` are different ids everywhere, with a DataWarning.
- Header names are stripped of surrounding spaces; a name that occurs twice is refused (which
  of the two columns is meant cannot be known). Empty header cells over empty columns (trailing
  delimiters) are dropped.
- A data line with more non-empty fields than the header is refused naming the line (pandas
  would silently turn the first columns into an index and shift the others); empty extra
  fields (trailing delimiters) are ignored, and short lines give missing cells.
- Blank lines and rows with every cell empty are skipped (as pandas skips blank lines); rows
  are numbered by data row, without them.
- Two header names that are equal once Unicode-normalised (``é`` as one code point, NFC, and
  as ``e`` plus a combining accent, NFD) are refused: they look identical but are different
  names, and which one a formula or analysis file means cannot be known.
- Only regular files are read: a directory, a named pipe (FIFO), a device such as
  ``/dev/zero`` or a socket is refused at once (reading one could block or never end), and so is
  ``-`` (standard input).

Speed and memory: a UTF-8 CSV is parsed straight from the file by pandas' C reader; the
checks above read only the first MiB. Peak memory is a small multiple of the data frame (a
200 MB, 4-million-row CSV reads in a few seconds). A file the fast path cannot vouch for
(UTF-16, invalid UTF-8, a line with too many fields, a parser error) is read again by the
careful path, which names the line and the problem.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import unicodedata
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mlmeta.errors import DataWarning, InputError

if TYPE_CHECKING:  # pandas is imported when a file is read, not with the package
    import pandas as pd

__all__ = ["check_regular_file", "delimiter_of", "header_names", "lookalike_hint", "read_table"]

_DELIMS = (",", ";", "\t", "|")
_DELIM_NAMES = {",": "','", ";": "';'", "\t": "tab", "|": "'|'"}
_COMMA_NUMBER = re.compile(r"^\s*[-+]?(?:\d+,\d+|\d+)(?:[eE][-+]?\d+)?\s*$")


def _kind(raw: bytes) -> str:
    """What the bytes look like: 'xlsx', 'zip', 'xls', 'parquet', 'binary' or 'text'."""
    if raw.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "xlsx" if b"[Content_Types].xml" in raw[:4096] or b"xl/" in raw[:65536] else "zip"
    if raw.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "xls"
    if raw.startswith(b"PAR1"):
        return "parquet"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text"  # UTF-16 with BOM
    if b"\x00" in raw[:65536]:
        return "binary"
    return "text"


_KIND_TEXT = {
    "xlsx": "an Excel workbook (.xlsx)",
    "zip": "a zip archive",
    "xls": "an Excel 97-2003 workbook (.xls)",
    "parquet": "a Parquet file",
    "binary": "a binary file",
    "text": "text",
}


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(
                f"data file {name!r} starts with a UTF-16 byte-order mark but is "
                "not valid UTF-16; save it as UTF-8"
            ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        b = raw[exc.start]
        latin = bytes([b]).decode("latin-1")
        seen = f", {latin!r} in Latin-1" if latin.isprintable() else ""
        raise InputError(
            f"data file {name!r} is not UTF-8 text (line {line}: byte "
            f"0x{b:02x}{seen}); save it as UTF-8"
        ) from None


def _header_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def delimiter_of(text: str, suffix: str) -> str:
    """The delimiter of CSV ``text``: tab for .tsv/.tab, else the one of ``,`` ``;`` tab ``|``
    that occurs most often in the header line outside quotes (``,`` when none does)."""
    if suffix in (".tsv", ".tab"):
        return "\t"
    head = re.sub(r'"[^"]*"', "", _header_line(text))  # ignore quoted delimiters
    counts = {d: head.count(d) for d in _DELIMS}
    best = max(_DELIMS, key=lambda d: (counts[d], -_DELIMS.index(d)))
    return best if counts[best] else ","


def _parser_message(exc: Exception) -> str:
    msg = str(exc).strip()
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if m:
        return (
            f"line {m.group(2)} has {m.group(3)} fields but the header has {m.group(1)} "
            "(a stray delimiter, or a text field that needs quotes?)"
        )
    m = re.search(r"EOF inside string starting (?:at|with) (?:row|line) (\d+)", msg)
    if m:
        return f"a quote opened on line {int(m.group(1)) + 1} is never closed"
    return msg.splitlines()[0] if msg else type(exc).__name__


def _check_fields(text: str, sep: str, name: str) -> None:
    """Refuse a data line with more fields than the header, unless the extra ones are empty
    (trailing delimiters). pandas would otherwise turn the first columns into an index and
    shift every column silently."""
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    h = None
    try:
        for row in reader:
            if not row:
                continue
            if h is None:
                h = len(row)
                continue
            if len(row) > h and any(x.strip() for x in row[h:]):
                raise InputError(
                    f"cannot read data file {name!r}: line {reader.line_num} has "
                    f"{len(row)} fields but the header has {h} (a stray "
                    "delimiter, or a text field that needs quotes?)"
                )
    except csv.Error:
        return  # left to pandas, which names the problem


def _decimal_commas(df, name: str, sep: str):
    """Read ``0,35`` as 0.35 in text columns where every value is such a number."""
    import pandas as pd

    if sep == ",":
        return df
    converted = []
    raw_values = {}
    for c in df.columns:
        s = df[c]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue
        vals = s.dropna()
        if not len(vals) or not all(isinstance(x, str) for x in vals):
            continue
        strs = vals.astype(str)
        if not strs.str.contains(",", regex=False).any():
            continue
        if not strs.str.match(_COMMA_NUMBER).all():
            continue
        raw_values[c] = s.to_numpy()
        df[c] = pd.to_numeric(s.str.replace(",", ".", regex=False).str.strip())
        converted.append(c)
    if converted:
        c0 = converted[0]
        pos = int(df[c0].notna().to_numpy().argmax())
        example = f"{float(df.loc[pos, c0])!r}"
        cols = ", ".join(repr(c) for c in converted)
        warnings.warn(
            f"data file {name!r}: read ',' as the decimal mark in column"
            f"{'s' if len(converted) > 1 else ''} {cols} (e.g. "
            f"{raw_values[c0][pos]!r} as {example})",
            DataWarning,
            stacklevel=3,
        )
    return df


_ZERO_PADDED = re.compile(r"^\s*0\d+\s*$")


def _leading_zero_ids(df, text: str, sep: str, name: str, source):
    """A whole-number column written with leading zeros (``01``, ``007``) is an id: read as
    text, so that ``01`` and ``1`` stay different ids everywhere (as numbers they would merge
    in some places and not in others). Decided from the text at hand (the whole file, or its
    first MiB for a big file); the column is read again as text, with a DataWarning."""
    import pandas as pd

    ints = [
        i
        for i, c in enumerate(df.columns)
        if pd.api.types.is_integer_dtype(df[c].dtype)
        or (pd.api.types.is_float_dtype(df[c].dtype) and bool(((df[c].dropna() % 1) == 0).all()))
    ]
    if not ints:
        return df
    lines = [ln for ln in text.splitlines()[1:2001] if ln.strip()]
    hit = []
    for row in csv.reader(lines, delimiter=sep):
        for i in ints:
            if i < len(row) and i not in hit and _ZERO_PADDED.match(row[i]):
                hit.append(i)
        if len(hit) == len(ints):
            break
    if not hit:
        return df
    src = source()
    enc = None if isinstance(src, io.StringIO) else "utf-8-sig"
    again = pd.read_csv(
        src, sep=sep, usecols=hit, dtype=str, skip_blank_lines=True, index_col=False, encoding=enc
    )
    if len(again) != len(df):
        return df
    names = [df.columns[i] for i in hit]
    for i, c in zip(hit, names):
        df[c] = again.iloc[:, hit.index(i)].str.strip().to_numpy(dtype=object)
    example = next(v for v in df[names[0]] if isinstance(v, str) and _ZERO_PADDED.match(v))
    warnings.warn(
        f"data file {name!r}: column{'s' if len(names) > 1 else ''} "
        f"{', '.join(repr(c) for c in names)} hold{'' if len(names) > 1 else 's'} "
        f"numbers written with leading zeros (e.g. {example!r}): read as text ids, "
        f"so {example!r} and {str(int(example))!r} are different",
        DataWarning,
        stacklevel=4,
    )
    return df


def header_names(cols, name: str) -> list[str]:
    """Header cells stripped (an empty one named ``Unnamed: i`` as pandas does); a repeated
    name, or two names equal once NFC-normalised, is an InputError naming both columns."""
    out = [str(c).strip() for c in cols]
    out = [c if c else f"Unnamed: {i}" for i, c in enumerate(out)]
    seen: dict[str, int] = {}
    norm: dict[str, int] = {}
    for i, c in enumerate(out):
        if c in seen:
            raise InputError(
                f"data file {name!r}: column {c!r} appears more than once in the "
                f"header (columns {seen[c] + 1} and {i + 1}); rename one of them"
            )
        seen[c] = i
        n = unicodedata.normalize("NFC", c)
        if n in norm:
            j = norm[n]
            raise InputError(
                f"data file {name!r}: columns {j + 1} ({out[j]!r}) and {i + 1} "
                f"({c!r}) look identical but are written with different Unicode "
                "characters (composed and decomposed accents); rename one of them"
            )
        norm[n] = i
    return out


def _looks(s: str) -> str:
    """What a name looks like: NFKC-normalised, without invisible (format) characters and
    surrounding spaces."""
    t = unicodedata.normalize("NFKC", s)
    return "".join(ch for ch in t if unicodedata.category(ch) != "Cf").strip()


def lookalike_hint(name: str, names) -> str:
    """For a name not found among ``names``: a hint naming the one that *looks* identical but
    is written with other characters (composed vs decomposed accents, a zero-width space,
    a compatibility character), shown with escapes so the difference is visible; else ''."""
    target = _looks(str(name))
    for n in names:
        n = str(n)
        if n != name and _looks(n) == target:
            return (
                f"; the data has {n!a}, which looks like {str(name)!a} but is "
                "written with other Unicode characters"
            )
    return ""


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_regular_file(path, what: str = "data file") -> os.stat_result:
    """The ``os.stat`` of ``path`` if it is a regular file (symbolic links followed), else an
    :class:`InputError` at once: missing, a directory, a FIFO, a device, a socket or ``-``.
    Opening a FIFO or reading ``/dev/zero`` would block or never end."""
    name = str(path)
    if name == "-":
        raise InputError(
            f"{what} '-': reading from standard input is not supported; save the "
            "data to a file and give its name"
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} {name!r} not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL character in the path
        why = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot read {what} {name!r}: {why}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {name!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = next((t for f, t in _NOT_REGULAR if f(st.st_mode)), "not a regular file")
        raise InputError(
            f"{what} {name!r} is {kind}, not a regular file; save the data to a "
            "file and give its name"
        )
    return st


_HEAD = 1 << 20  # bytes looked at to decide the kind of file, its delimiter and its header
#: files at least this big take the fast path (smaller ones are read whole: it costs nothing)
FAST_MIN_BYTES = _HEAD


def _read_fast(p: Path, head: bytes, name: str, suffix: str):
    """UTF-8 text parsed straight from the file by pandas' C reader, or None when the careful
    path must decide (see the module docstring)."""
    import pandas as pd

    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the head
            return None
        text = head[: exc.start].decode("utf-8-sig")
    header = _header_line(text)
    if not header.strip() or '"' in header or len(header) >= len(text):
        return None  # a quoted header may span lines: the careful path
    sep = delimiter_of(text, suffix)
    first = next(csv.reader(io.StringIO(header), delimiter=sep), [])
    cols = header_names(first, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            df = pd.read_csv(
                p,
                sep=sep,
                encoding="utf-8-sig",
                low_memory=False,
                skip_blank_lines=True,
                index_col=False,
                engine="c",
            )
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception:  # noqa: BLE001 -- the careful path names the problem
        return None
    if len(cols) != df.shape[1]:
        return None
    df.columns = cols
    df = _leading_zero_ids(df, text, sep, name, lambda: p)
    return _decimal_commas(df, name, sep)


def read_table(path) -> pd.DataFrame:
    """Read CSV/TSV (delimiter sniffed), Excel or Parquet into a DataFrame (see module doc)."""
    import pandas as pd

    name = str(path)
    p = Path(path)
    st = check_regular_file(path)
    suf = p.suffix.lower()
    try:
        with p.open("rb") as fh:
            head = fh.read(_HEAD)
        df = None
        kind = _kind(head)
        if (
            kind == "text"
            and suf not in (".xlsx", ".xlsm", ".xls", ".parquet")
            and st.st_size >= FAST_MIN_BYTES
        ):
            df = _read_fast(p, head, name, suf)
        small = st.st_size <= len(head)
        not_csv = kind != "text" and suf not in (".xlsx", ".xlsm", ".xls", ".parquet")
        raw = head if (df is not None or small or not_csv) else p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read data file {name!r}: {exc.strerror or exc}") from None
    if df is not None:
        return _tidy(df, name)
    kind = _kind(raw)
    if not raw.strip():
        raise InputError(f"data file {name!r} is empty")
    try:
        if suf in (".xlsx", ".xlsm", ".xls"):
            if kind not in ("xlsx", "xls", "zip"):
                raise InputError(
                    f"data file {name!r} has an Excel extension but is "
                    f"{_KIND_TEXT[kind]}, not an Excel workbook; rename it "
                    f"(e.g. to .csv)"
                    if kind == "text"
                    else f"data file {name!r} has an Excel extension but is "
                    f"{_KIND_TEXT[kind]}, not an Excel workbook"
                )
            header = pd.read_excel(io.BytesIO(raw), header=None, nrows=1)
            cols = (
                header_names(["" if pd.isna(x) else x for x in header.iloc[0]], name)
                if len(header)
                else []
            )
            df = pd.read_excel(io.BytesIO(raw))
            if len(cols) == df.shape[1]:
                df.columns = cols
        elif suf == ".parquet":
            if kind != "parquet":
                raise InputError(
                    f"data file {name!r} has the .parquet extension but is {_KIND_TEXT[kind]}"
                )
            df = pd.read_parquet(io.BytesIO(raw))
        else:
            if kind != "text":
                hint = {
                    "xlsx": "; give it the .xlsx extension or save it as CSV",
                    "xls": "; give it the .xls extension or save it as CSV",
                    "parquet": "; give it the .parquet extension",
                    "zip": "; unpack it",
                    "binary": "; save it as UTF-8 CSV",
                }[kind]
                raise InputError(f"data file {name!r} is {_KIND_TEXT[kind]}, not CSV text{hint}")
            text = _decode(raw, name)
            if not text.strip():
                raise InputError(f"data file {name!r} is empty")
            sep = delimiter_of(text, suf)
            first = next(csv.reader(io.StringIO(_header_line(text)), delimiter=sep), [])
            cols = header_names(first, name)
            _check_fields(text, sep, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ParserWarning for trailing delimiters
                df = pd.read_csv(
                    io.StringIO(text),
                    sep=sep,
                    low_memory=False,
                    skip_blank_lines=True,
                    index_col=False,
                )
            if len(cols) == df.shape[1]:
                df.columns = cols
            else:
                df.columns = header_names(df.columns, name)
            df = _leading_zero_ids(df, text, sep, name, lambda: io.StringIO(text))
            df = _decimal_commas(df, name, sep)
    except InputError:
        raise
    except ImportError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "a library is missing"
        raise InputError(f"cannot read data file {name!r}: {msg}") from None
    except Exception as exc:  # noqa: BLE001 -- pandas parser errors and the like
        raise InputError(f"cannot read data file {name!r}: {_parser_message(exc)}") from None
    return _tidy(df, name)


def _tidy(df, name: str):
    """Drop the empty columns of trailing delimiters and the blank rows; refuse a frame with
    fewer than two columns or no rows."""
    df.columns = [str(c).strip() for c in df.columns]
    # trailing delimiters give unnamed, empty columns; rows with every cell empty are blank lines
    unnamed = [c for c in df.columns if c.startswith("Unnamed: ") and df[c].isna().all()]
    if unnamed:
        df = df.drop(columns=unnamed)
    if df.shape[1] and len(df):
        empty = df.isna().all(axis=1).to_numpy()
        if empty.any():
            df = df.loc[~empty].reset_index(drop=True)
    if df.shape[1] < 2:
        shown = repr(df.columns[0]) if df.shape[1] else "none"
        raise InputError(
            f"data file {name!r} has only one column ({shown}); expected a "
            "header row and columns separated by ',', ';' or tabs"
        )
    if len(df) == 0:
        raise InputError(f"data file {name!r} has a header but no data rows")
    return df
