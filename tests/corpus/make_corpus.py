"""Writes the corpus files and MANIFEST.json in this directory (python tests/corpus/make_corpus.py).

The files are committed; rerun this after changing a case so that files and manifest agree.
"""

import io
import json
import zipfile
from pathlib import Path

C = Path(__file__).resolve().parent
C.mkdir(exist_ok=True)

BASE_ROWS = [
    ("S1", 1, 0.31, 0.021, 2001, "a"),
    ("S1", 2, 0.25, 0.025, 2001, "b"),
    ("S2", 3, 0.12, 0.018, 2003, "a"),
    ("S2", 4, 0.40, 0.030, 2003, "b"),
    ("S3", 5, 0.52, 0.022, 2005, "a"),
    ("S3", 6, 0.18, 0.027, 2005, "b"),
    ("S4", 7, 0.05, 0.019, 2008, "a"),
    ("S4", 8, 0.33, 0.024, 2008, "b"),
    ("S5", 9, 0.44, 0.020, 2010, "a"),
    ("S5", 10, 0.29, 0.026, 2010, "b"),
    ("S6", 11, 0.21, 0.023, 2012, "a"),
    ("S6", 12, 0.36, 0.028, 2012, "b"),
]
HEAD = ["study", "es", "yi", "vi", "year", "type"]


def rows_csv(rows, head=HEAD, sep=",", nl="\n"):
    out = [sep.join(head)]
    for r in rows:
        out.append(sep.join("" if x is None else str(x) for x in r))
    return nl.join(out) + nl


def base(sep=","):
    return rows_csv(BASE_ROWS, sep=sep)


def edit(i, col, val, rows=None):
    rows = [list(r) for r in (rows or BASE_ROWS)]
    rows[i][HEAD.index(col)] = val
    return rows


ZHEAD = ["study", "es", "r", "n", "year"]
ZROWS = [
    ("S1", 1, 0.31, 40, 2001),
    ("S1", 2, 0.25, 55, 2001),
    ("S2", 3, 0.12, 80, 2003),
    ("S2", 4, 0.40, 32, 2003),
    ("S3", 5, 0.52, 60, 2005),
    ("S3", 6, 0.18, 45, 2005),
    ("S4", 7, 0.05, 120, 2008),
    ("S4", 8, 0.33, 70, 2008),
]


def zedit(i, col, val):
    rows = [list(r) for r in ZROWS]
    rows[i][ZHEAD.index(col)] = val
    return rows_csv(rows, ZHEAD)


SHEAD = ["study", "m1", "sd1", "n1", "m2", "sd2", "n2"]
SROWS = [
    ("S1", 10.2, 2.1, 30, 9.1, 2.0, 31),
    ("S2", 11.0, 1.8, 25, 10.1, 1.9, 24),
    ("S3", 9.8, 2.4, 40, 9.5, 2.2, 41),
    ("S4", 10.5, 2.0, 22, 9.0, 2.3, 20),
]
OHEAD = ["study", "ai", "bi", "ci", "di"]
OROWS = [
    ("S1", 12, 38, 8, 42),
    ("S2", 20, 80, 15, 85),
    ("S3", 5, 45, 9, 41),
    ("S4", 30, 70, 22, 78),
]

YV = ["--yi", "yi", "--vi", "vi"]
ZC = ["--measure", "ZCOR", "--ri", "r", "--ni", "n"]
files = {}
M = []


def add(fname, content, args, expect, message, **extra):
    if content is not None:
        files[fname] = content
    M.append(dict(file=fname, args=args, expect=expect, message=message, **extra))


# ---- file-level problems
add("empty.csv", b"", YV, "refused", "is empty")
add("header_only.csv", "study,es,yi,vi,year,type\n", YV, "refused", "has a header but no data rows")
add("whitespace_only.csv", "  \n\n \n", YV, "refused", "is empty")
add("semicolon.csv", base(";"), YV + ["--random", "study/es"], "accepted", None)
add("tab_delimited.csv", base("\t"), YV + ["--random", "study/es"], "accepted", None)
add("tab.tsv", base("\t"), YV + ["--random", "study/es"], "accepted", None)
add("pipe.csv", base("|"), YV + ["--random", "study/es"], "accepted", None)
lat = base().replace("S2,3", "Müller,3").replace("S2,4", "Müller,4")
add(
    "latin1.csv",
    lat.encode("latin-1"),
    YV + ["--random", "study/es"],
    "refused",
    "is not UTF-8 text (line 4: byte 0xfc, 'ü' in Latin-1)",
)
add("utf16_bom.csv", lat.encode("utf-16"), YV + ["--random", "study/es"], "accepted", None)
add("bom.csv", b"\xef\xbb\xbf" + base().encode(), YV + ["--random", "study/es"], "accepted", None)
add("crlf.csv", base().replace("\n", "\r\n"), YV + ["--random", "study/es"], "accepted", None)
add("trailing_empty_lines.csv", base() + "\n\n\n", YV + ["--random", "study/es"], "accepted", None)
add(
    "trailing_delimiters.csv",
    base().replace("\n", ",,\n").replace("type,,", "type,,", 1),
    YV + ["--random", "study/es"],
    "accepted",
    None,
)
add(
    "empty_cells_rows.csv",
    base() + ",,,,,\n,,,,,\n",
    YV + ["--random", "study/es"],
    "accepted",
    None,
)
q = rows_csv([[f'"{x}"' for x in r] for r in BASE_ROWS], [f'"{h}"' for h in HEAD])
add("quoted_numbers.csv", q, YV + ["--random", "study/es"], "accepted", None)
add(
    "header_spaces.csv",
    base().replace("study,es,yi,vi", " study , es ,yi , vi "),
    YV + ["--random", "study/es"],
    "accepted",
    None,
)
dc = base(";")
dc = "\n".join([dc.splitlines()[0]] + [ln.replace(".", ",") for ln in dc.splitlines()[1:]]) + "\n"
add(
    "decimal_comma.csv",
    dc,
    YV + ["--random", "study/es"],
    "accepted",
    "read ',' as the decimal mark in columns 'yi', 'vi'",
)
dq = rows_csv(edit(2, "yi", '"0,12"'))
add(
    "decimal_comma_in_comma_file.csv",
    dq,
    YV,
    "refused",
    "column 'yi', row 3: value must be numeric, got '0,12' (a decimal comma?",
)
add(
    "ragged_row.csv",
    base().replace("S3,5,0.52,0.022,2005,a", "S3,5,0.52,0.022,2005,a,extra"),
    YV,
    "refused",
    "line 6 has 7 fields but the header has 6",
)
add("unclosed_quote.csv", base().replace("S3,5,", '"S3,5,'), YV, "refused", "is never closed")
add("one_column.csv", "yi\n0.1\n0.2\n", YV, "refused", "has only one column ('yi')")
# Excel and other binary content with the wrong extension
zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w") as z:
    z.writestr("[Content_Types].xml", "<Types/>")
    z.writestr("xl/workbook.xml", "<workbook/>")
add(
    "excel_named.csv",
    zbuf.getvalue(),
    YV,
    "refused",
    "is an Excel workbook (.xlsx), not CSV text; give it the .xlsx extension or save it as CSV",
)
add(
    "text_named.xlsx",
    base(),
    YV,
    "refused",
    "has an Excel extension but is text, not an Excel workbook; rename it (e.g. to .csv)",
)
add(
    "binary.csv",
    b"\x00\x01\x02garbage\x00\xff" * 20,
    YV,
    "refused",
    "is a binary file, not CSV text",
)
add("a_directory.csv", None, YV, "refused", "is a directory, not a file", kind="directory")
add("does_not_exist.csv", None, YV, "refused", "not found", kind="absent")
add(
    "duplicate_column.csv",
    base().replace("year,type", "yi,type"),
    YV,
    "refused",
    "column 'yi' appears more than once in the header (columns 3 and 5)",
)
# ---- cell values
add(
    "nonnumeric_yi.csv",
    rows_csv(edit(2, "yi", "0.12a")),
    YV,
    "refused",
    "column 'yi', row 3: value must be numeric, got '0.12a'",
)
add(
    "nonnumeric_vi.csv",
    rows_csv(edit(6, "vi", "n/a?")),
    YV,
    "refused",
    "column 'vi', row 7: value must be numeric, got 'n/a?'",
)
add(
    "nonnumeric_ri.csv",
    zedit(1, "r", "0.2O"),
    ZC,
    "refused",
    "column 'r', row 2: value must be numeric, got '0.2O'",
)
add(
    "nonnumeric_ni.csv",
    zedit(3, "n", "thirty"),
    ZC,
    "refused",
    "column 'n', row 4: value must be numeric, got 'thirty'",
)
add(
    "missing_study_id.csv",
    rows_csv(edit(3, "study", None)),
    YV + ["--random", "study/es"],
    "refused",
    "random-effect column 'study', row 4: missing id",
)
add(
    "r_equal_1.csv",
    zedit(2, "r", 1),
    ZC,
    "refused",
    "column 'r', row 3: correlation must be strictly between -1 and 1 for ZCOR, got 1.0",
)
add(
    "r_below_minus_1.csv",
    zedit(4, "r", -1.2),
    ZC,
    "refused",
    "column 'r', row 5: correlation must be strictly between -1 and 1 for ZCOR, got -1.2",
)
add(
    "n_le_3.csv",
    zedit(5, "n", 3),
    ZC,
    "refused",
    "column 'n', row 6: sample size must be greater than 3 for ZCOR",
)
add(
    "vi_negative.csv",
    rows_csv(edit(6, "vi", -0.1)),
    YV,
    "refused",
    "column 'vi', row 7: sampling variance must be > 0, got -0.1",
)
add(
    "vi_zero.csv",
    rows_csv(edit(1, "vi", 0)),
    YV,
    "refused",
    "column 'vi', row 2: sampling variance must be > 0, got 0.0",
)
add(
    "vi_subnormal.csv",
    rows_csv(edit(1, "vi", "5e-324")),
    YV,
    "refused",
    "column 'vi', row 2: sampling variance 5e-324 is outside the range that can be fitted in "
    "double precision (1e-60 to 1e+60); check this value",
)
add(
    "yi_huge.csv",
    rows_csv(edit(2, "yi", "1e150")),
    YV,
    "refused",
    "column 'yi', row 3: effect size 1e+150 is outside the range that can be fitted in double "
    "precision (|yi| <= 1e+30); check this value",
)
add(
    "nfc_nfd_header.csv",
    base().replace("year,type", "caf\u00e9,cafe\u0301"),
    YV,
    "refused",
    "columns 5 ('caf\u00e9') and 6 ('cafe\u0301') look identical but are written with "
    "different Unicode characters",
)
add(
    "leading_zero_ids.csv",
    rows_csv(
        [
            (s_, *r[1:])
            for s_, r in zip(
                ["01", "01", "1", "1", "02", "02", "2", "2", "03", "03", "3", "3"], BASE_ROWS
            )
        ]
    ),
    YV + ["--random", "study/es", "--json"],
    "accepted",
    "column 'study' holds numbers written with leading zeros (e.g. '01'): read as text ids, "
    "so '01' and '1' are different",
)
add(
    "nan_string.csv",
    rows_csv(edit(4, "yi", "NaN")),
    YV + ["--random", "study/es"],
    "accepted",
    "1 of 12 rows dropped for missing values: row 5 (yi)",
)
add(
    "inf_string.csv",
    rows_csv(edit(3, "vi", "inf")),
    YV,
    "refused",
    "column 'vi', row 4: value must be finite, got inf",
)
add(
    "minus_inf_string.csv",
    rows_csv(edit(8, "yi", "-Infinity")),
    YV,
    "refused",
    "column 'yi', row 9: value must be finite, got -inf",
)
add(
    "smd_negative_sd.csv",
    rows_csv(
        [list(r) for r in SROWS[:2]] + [["S3", 9.8, -2.4, 40, 9.5, 2.2, 41]] + [list(SROWS[3])],
        SHEAD,
    ),
    [
        "--measure",
        "SMD",
        "--m1i",
        "m1",
        "--sd1i",
        "sd1",
        "--n1i",
        "n1",
        "--m2i",
        "m2",
        "--sd2i",
        "sd2",
        "--n2i",
        "n2",
    ],
    "refused",
    "column 'sd1', row 3: standard deviation must be non-negative, got -2.4",
)
add(
    "or_negative_counts.csv",
    rows_csv([list(r) for r in OROWS[:3]] + [["S4", 30, 70, -22, 78]], OHEAD),
    ["--measure", "OR", "--ai", "ai", "--bi", "bi", "--ci", "ci", "--di", "di"],
    "refused",
    "column 'ci', row 4: counts must be non-negative, got -22",
)
# ---- rows
miss = edit(2, "yi", None)
miss = edit(7, "vi", None, miss)
add(
    "missing_yi.csv",
    rows_csv(miss),
    YV + ["--random", "study/es"],
    "accepted",
    "2 of 12 rows dropped for missing values: row 3 (yi), row 8 (vi)",
    json_check={"rows_dropped": 2, "k": 10},
)
add(
    "all_missing.csv",
    rows_csv([r[:2] + (None,) + r[3:] for r in BASE_ROWS]),
    YV,
    "refused",
    "no rows left after dropping rows with missing values: all 12 rows have one (missing yi in 12)",
)
add(
    "single_row.csv",
    rows_csv(BASE_ROWS[:1]),
    YV,
    "refused",
    "1 effect size is too few to estimate 1 coefficient (intrcpt)",
)
shared = edit(3, "es", 3)
add(
    "shared_ids.csv",
    rows_csv(shared),
    YV + ["--random", "study/es"],
    "accepted",
    "1 row shares every random-effect id (study/es) with an earlier row: row 4 repeats row 3 (study='S2', es=3)",
)
add(
    "single_study.csv",
    rows_csv([("S1",) + r[1:] for r in BASE_ROWS[:6]]),
    YV + ["--random", "study/es"],
    "accepted",
    "random-effect level 'study' has a single group ('S1'), so its variance component is not identified",
)
# ---- moderators
add(
    "constant_moderator.csv",
    rows_csv([r[:4] + (2001,) + r[5:] for r in BASE_ROWS]),
    YV + ["--random", "study/es", "--mods", "~ year + type", "--json"],
    "accepted",
    "redundant predictors dropped from the model, as metafor does: 'year' (constant, 2001 in "
    "every row, so it is the intercept again)",
    json_check={"coef_names": ["intrcpt", "typeb"]},
    run={
        "expect": "refused",
        "message": "moderator formula '~ year' leaves no moderator once "
        "constant or redundant columns are dropped",
    },
)
col_head = HEAD + ["year2"]
col_rows = [r + (2 * r[4] - 4000,) for r in BASE_ROWS]
add(
    "collinear_moderators.csv",
    rows_csv(col_rows, col_head),
    YV + ["--random", "study/es", "--mods", "~ year + year2", "--json"],
    "accepted",
    "redundant predictors dropped from the model, as metafor does: 'year2' (collinear with "
    "'intrcpt', 'year')",
    json_check={"coef_names": ["intrcpt", "year"]},
)
un = [list(r) for r in BASE_ROWS]
for i in (4, 9):
    un[i][HEAD.index("type")] = "c"
    un[i][HEAD.index("yi")] = None
add(
    "unused_level.csv",
    rows_csv(un),
    YV + ["--random", "study/es", "--mods", "~ type"],
    "accepted",
    [
        "2 of 12 rows dropped for missing values: row 5 (yi), row 10 (yi)",
        "moderator 'type': level 'c' has no rows (its rows were dropped for missing values), so it gets no coefficient",
    ],
    json_check={"coef_names": ["intrcpt", "typeb"]},
)
rob_head = ["study", "es", "yi", "vi", "x1", "x2", "x3"]
rob_rows = [
    ("S1", 1, 0.31, 0.021, 1.0, 0.2, 3.1),
    ("S1", 2, 0.25, 0.025, 2.0, 0.9, 2.2),
    ("S2", 3, 0.12, 0.018, 1.5, 0.4, 5.0),
    ("S2", 4, 0.40, 0.030, 3.0, 0.1, 1.0),
    ("S3", 5, 0.52, 0.022, 2.5, 0.7, 4.2),
    ("S3", 6, 0.18, 0.027, 0.5, 0.3, 2.9),
    ("S3", 7, 0.27, 0.020, 1.2, 0.8, 3.3),
]
add(
    "robust_few_clusters.csv",
    rows_csv(rob_rows, rob_head),
    YV + ["--random", "study", "--mods", "~ x1 + x2 + x3", "--with", "robust_cr2", "--json"],
    "accepted",
    "robust inference needs more clusters than coefficients: 3 clusters for 4 coefficients",
    api=False,
    where="stdout",
)
uh = ["étude", "es", "yi", "vi", "année de publication", "type"]
uni = [(f"É{r[0]}",) + r[1:] for r in BASE_ROWS]
add(
    "unicode_column_spaces.csv",
    rows_csv(uni, uh),
    YV + ["--random", "étude/es", "--mods", "~ `année de publication`", "--json"],
    "accepted",
    None,
    json_check={"coef_names": ["intrcpt", "année de publication"]},
)
uh2 = ["étude", "es", "yi", "vi", "année", "type"]
add(
    "unicode_identifiers.csv",
    rows_csv(uni, uh2),
    YV + ["--random", "étude/es", "--mods", "~ année + type", "--json"],
    "accepted",
    None,
    json_check={"coef_names": ["intrcpt", "année", "typeb"]},
)
add(
    "moderator_typo.csv",
    rows_csv(edit(4, "year", "2005a")),
    YV + ["--random", "study/es", "--mods", "~ year"],
    "refused",
    "moderator 'year', row 5: value '2005a' is not a number, but most values of 'year' are, so "
    "'year' would be treated as categorical; fix the value, or write factor(year) if it is categorical",
)
add(
    "mods_missing_column.csv",
    base(),
    YV + ["--mods", "~ yaer"],
    "refused",
    "column 'yaer' not found in the data (columns: study, es, yi, vi, year, type); did you mean 'year'?",
    error="FormulaError",
)
add(
    "random_missing_column.csv",
    base(),
    YV + ["--random", "studdy/es"],
    "refused",
    "random-effect column 'studdy' not found in the data (columns: study, es, yi, vi, year, type); did you mean 'study'?",
)
# ---- formulas
add(
    "formula_injection_import.csv",
    base(),
    YV + ["--mods", '~ __import__("os").system("touch /tmp/pwned")'],
    "refused",
    "character '\"' at position 14 is not allowed",
    error="FormulaError",
)
add(
    "formula_injection_import_noquotes.csv",
    base(),
    YV + ["--mods", "~ __import__(os)"],
    "refused",
    "function '__import__' is not allowed",
    error="FormulaError",
)
add(
    "formula_injection_class.csv",
    base(),
    YV + ["--mods", "~ type.__class__"],
    "refused",
    "name 'type.__class__' is not allowed",
    error="FormulaError",
)
add(
    "formula_unbalanced.csv",
    base(),
    YV + ["--mods", "~ (year + type"],
    "refused",
    "unbalanced parentheses: '(' at position 3 is never closed",
    error="FormulaError",
)
add(
    "formula_unknown_function.csv",
    base(),
    YV + ["--mods", "~ foo(year)"],
    "refused",
    "function 'foo' is not allowed; allowed are factor, C, relevel, I, poly, log",
    error="FormulaError",
)
# ---- options
add(
    "unknown_method.csv",
    base(),
    YV + ["--method", "FOO"],
    "refused",
    "argument --method: invalid choice: 'FOO'",
    api_message="method must be one of REML, ML; got 'FOO'",
)
add(
    "level_150.csv",
    base(),
    YV + ["--level", "150"],
    "refused",
    "level must be a percentage between 1 and 100, e.g. 95; got 150.0",
)
add(
    "cor_r_equal_1.csv",
    zedit(2, "r", 1),
    ["--measure", "COR", "--ri", "r", "--ni", "n"],
    "refused",
    "column 'vi', row 3: sampling variance must be > 0, got 0.0",
)
# a level is a percentage everywhere; 0.95 is ambiguous (95 % or 0.95 %) and refused
add(
    "level_proportion.csv",
    base(),
    YV + ["--level", "0.95", "--json"],
    "refused",
    "level is a percentage: write 95 for a 95% interval; got 0.95",
)
add(
    "ok_baseline.csv",
    base(),
    YV + ["--random", "study/es", "--mods", "~ year + factor(type)", "--json"],
    "accepted",
    None,
    json_check={"k": 12, "rows_dropped": 0, "coef_names": ["intrcpt", "year", "factor(type)b"]},
)

for f, content in files.items():
    data = content.encode("utf-8") if isinstance(content, str) else content
    (C / f).write_bytes(data)
d = C / "a_directory.csv"
d.mkdir(exist_ok=True)
(d / "README.txt").write_text("A directory named like a CSV file: `mlmeta fit` must refuse it.\n")
manifest = {
    "description": "Malformed inputs for `mlmeta fit`. Each entry: the file (relative to this "
    "directory), the arguments after the file, whether the CLI must refuse it "
    "(exit 2, one 'mlmeta: error: ' line containing message) or accept it (exit 0, "
    "each message in a 'mlmeta: warning: ' line; message null = no warnings at all). "
    "Optional: error (the exception class rma_mv raises, default InputError), "
    "where (stdout: the message is in the JSON output, not a warning), "
    "api (false: only the CLI can be checked), api_message (the API's message when "
    "it differs from the CLI's), json_check (keys of the --json output), kind "
    "(directory: a directory; absent: must not exist). Files generated by the tests "
    "at run time (too big to commit) are listed under 'generated'.",
    "decisions": [
        (
            "Semicolon, tab and '|' delimiters are sniffed from the header line (the most frequent "
            "one outside quotes) and accepted silently; .tsv/.tab files are tab-separated."
        ),
        (
            "Decimal commas ('0,35') are accepted in ';'- or tab-separated files when every value of a "
            "text column looks like such a number; a DataWarning names the columns. In comma-separated "
            "files a quoted '0,35' is refused where a number is needed, with a hint."
        ),
        (
            "Text must be UTF-8 (BOM allowed) or UTF-16 with a BOM; Latin-1 and other encodings are "
            "refused naming the line and byte (guessing would garble ids and names silently)."
        ),
        (
            "The content decides the format: Excel/Parquet/zip content named .csv, text named .xlsx, "
            "and binary files are refused with a hint to rename."
        ),
        (
            "A column name that appears twice in the header is refused (which one is meant is unknown); "
            "header names are stripped of surrounding spaces; empty trailing columns, blank lines and "
            "all-empty rows are dropped silently; a data line with more non-empty fields than the "
            "header is refused (pandas would shift the columns)."
        ),
        (
            "NaN/NA/empty cells are missing values: rows missing yi, vi or a moderator are dropped, "
            "counted (res.data.dropped, to_dict()['rows_dropped']) and announced; 'inf' is refused."
        ),
        (
            "A redundant moderator column (0 in every row, constant next to the intercept, or "
            "perfectly collinear with earlier columns, e.g. an empty cell of an interaction) is dropped "
            "as metafor drops it, with a DataWarning naming it and why; a formula all of whose columns "
            "are redundant is refused."
        ),
        (
            "A categorical level without rows (unused pandas category, or its rows dropped) is left out "
            "with a DataWarning."
        ),
        (
            "A random-effect level with a single group (one study) is fitted, as metafor does, with a "
            "DataWarning that its variance component is not identified."
        ),
        (
            "Rows sharing every random-effect id (2+ levels) get a DataWarning with the count and the "
            "first rows when the innermost level looks like an effect-size id (at most 20% of its "
            "groups have more than one row); grouping levels such as district/school are not flagged."
        ),
        (
            "A text moderator whose values are mostly numbers is refused at the first non-number (a typo "
            "would make it categorical); numbers stored as text are used as categorical with a note."
        ),
        (
            "Robust inference with fewer clusters than coefficients: the fit is accepted and the "
            "robust block is null with the reason in block_notes (JSON output)."
        ),
        (
            "A 200,000-row file is accepted and fitted in seconds; a formula that would build a huge "
            "design (e.g. factor(es) with one level per row) is refused before it is built."
        ),
    ],
    "cases": M,
    "generated": [
        {
            "name": "huge (200,000 rows)",
            "test": "tests/test_corpus.py::test_huge_file_is_fast",
            "expect": "accepted",
            "message": None,
        }
    ],
}
(C / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
print(len(M), "cases")
