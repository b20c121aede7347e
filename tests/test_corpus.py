"""The corpus of malformed inputs (tests/corpus, listed in MANIFEST.json): bad input never crashes
and never misleads.

Every case runs through ``mlmeta.cli.main`` in-process: a refused input exits 2 with exactly one
``mlmeta: error: `` line on stderr naming the problem and nothing on stdout; an accepted input
exits 0 and prints its warnings as ``mlmeta: warning: `` lines. The same cases run through the
Python API (read_table, escalc, rma_mv), which raises InputError/FormulaError with the same
message. A handful run through the installed ``mlmeta`` entry point, and a 200,000-row file is
generated at run time to check that big input is fast.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mlmeta
from mlmeta import errors
from mlmeta.cli import main
from mlmeta.effects import escalc
from mlmeta.io import read_table

CORPUS = Path(__file__).parent / "corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))
CASES = MANIFEST["cases"]


def params(cases, where):
    return [pytest.param(c, id=c["file"]) for c in cases]


EXE = Path(sys.executable).with_name("mlmeta")
PWNED = Path("/tmp/pwned")


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def messages(case) -> list[str]:
    m = case["message"]
    return [] if m is None else (m if isinstance(m, list) else [m])


def case_args(case) -> list[str]:
    return ["fit", str(CORPUS / case["file"])] + case["args"]


# ------------------------------------------------------------------------------------------------
# the manifest itself
# ------------------------------------------------------------------------------------------------


def test_manifest_covers_every_file_and_is_large_enough():
    listed = {c["file"] for c in CASES}
    on_disk = {
        p.name
        for p in CORPUS.iterdir()
        if p.name not in ("MANIFEST.json", "make_corpus.py", "__pycache__")
    }
    assert on_disk <= listed, f"files missing from MANIFEST.json: {sorted(on_disk - listed)}"
    assert len(CASES) >= 40
    assert len(listed) == len(CASES)
    for c in CASES:
        path = CORPUS / c["file"]
        assert c["expect"] in ("refused", "accepted"), c
        if c.get("kind") == "absent":
            assert not path.exists()
        elif c.get("kind") == "directory":
            assert path.is_dir()
        else:
            assert path.is_file(), c["file"]
            assert path.stat().st_size < 10_000, c["file"]
        if c["expect"] == "refused":
            assert messages(c), c["file"]


# ------------------------------------------------------------------------------------------------
# the command line, in-process
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", params(CASES, "cli"))
def test_cli_corpus(case):
    existed = PWNED.exists()
    code, out, err = run(case_args(case))
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    if case["expect"] == "refused":
        assert code == 2, (code, err)
        assert out == ""
        assert len(lines) == 1, err
        assert lines[0].startswith("mlmeta: error: ")
        assert messages(case)[0] in lines[0]
    else:
        assert code == 0, err
        assert all(line.startswith("mlmeta: warning: ") for line in lines), err
        if not messages(case):
            assert err == "", err
        for m in messages(case):
            if case.get("where") == "stdout":
                assert m in out
            else:
                assert any(m in line for line in lines), (m, err)
        if "--json" in case["args"]:
            got = json.loads(out)
            for key, val in case.get("json_check", {}).items():
                assert got[key] == val, (key, got[key])
        else:
            assert out.startswith("\nMultivariate Meta-Analysis Model") or "Meta-Analysis" in out
    if not existed:
        assert not PWNED.exists()


def test_accepted_variants_give_the_same_fit():
    """Delimiters, encodings, BOM, quotes, CRLF, blank lines and header spaces do not change
    the numbers."""
    ref = None
    for f in [
        "semicolon.csv",
        "tab_delimited.csv",
        "tab.tsv",
        "pipe.csv",
        "bom.csv",
        "crlf.csv",
        "trailing_empty_lines.csv",
        "trailing_delimiters.csv",
        "empty_cells_rows.csv",
        "quoted_numbers.csv",
        "header_spaces.csv",
        "decimal_comma.csv",
        "utf16_bom.csv",
    ]:
        code, out, err = run(
            ["fit", str(CORPUS / f), "--yi", "yi", "--vi", "vi", "--random", "study/es", "--json"]
        )
        assert code == 0, (f, err)
        got = json.loads(out)
        key = (got["k"], round(got["beta"][0], 10), [round(s, 10) for s in got["sigma2"]])
        ref = ref or key
        assert key == ref, f


# ------------------------------------------------------------------------------------------------
# the Python API: the same messages as exceptions / warnings
# ------------------------------------------------------------------------------------------------


def _options(args: list[str]) -> dict:
    opts, i = {}, 0
    while i < len(args):
        a = args[i]
        if a == "--json":
            i += 1
            continue
        opts[a[2:]] = args[i + 1]
        i += 2
    return opts


def api_inputs(case):
    """read_table (+ escalc for --measure): the data and the rma_mv keyword arguments."""
    df = read_table(CORPUS / case["file"])
    o = _options(case["args"])
    if "measure" in o:
        kw = {
            a: o[a]
            for a in (
                "ri",
                "ni",
                "m1i",
                "sd1i",
                "n1i",
                "m2i",
                "sd2i",
                "n2i",
                "ai",
                "bi",
                "ci",
                "di",
            )
            if a in o
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", errors.MlmetaWarning)
            es = escalc(o["measure"], df, **kw)
        df = df.assign(yi=es["yi"].to_numpy(), vi=es["vi"].to_numpy())
    return df, {
        "yi": o.get("yi", "yi"),
        "vi": o.get("vi", "vi"),
        "random": o.get("random"),
        "mods": o.get("mods"),
        "method": o.get("method", "REML"),
        "level": float(o.get("level", 95)),
        "measure": o.get("measure"),
    }


API_CASES = [c for c in CASES if c.get("api", True)]


@pytest.mark.parametrize("case", params(API_CASES, "api"))
def test_api_corpus(case):
    existed = PWNED.exists()
    if case["expect"] == "refused":
        cls = getattr(errors, case.get("error", "InputError"))
        msg = case.get("api_message", messages(case)[0])
        with pytest.raises(cls, match=re.escape(msg)):
            df, kw = api_inputs(case)
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                try:
                    mlmeta.rma_mv(df, **kw)
                finally:  # a refused input issues no warning before the error
                    assert not [w for w in rec if issubclass(w.category, errors.MlmetaWarning)]
    else:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            df, kw = api_inputs(case)
            res = mlmeta.rma_mv(df, **kw)
        got = [str(w.message) for w in rec if issubclass(w.category, errors.DataWarning)]
        for m in messages(case):
            assert any(m in g for g in got), (m, got)
        if not messages(case):
            assert not got, got
        assert np.all(np.isfinite(res.core.beta))
    if not existed:
        assert not PWNED.exists()


# ------------------------------------------------------------------------------------------------
# the installed entry point, as a user runs it
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "empty.csv",
        "latin1.csv",
        "formula_injection_import.csv",
        "a_directory.csv",
        "vi_negative.csv",
        "decimal_comma.csv",
        "ok_baseline.csv",
    ],
)
def test_entry_point(name):
    case = next(c for c in CASES if c["file"] == name)
    existed = PWNED.exists()
    r = subprocess.run(
        [str(EXE)] + case_args(case),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "MLMETA_DEBUG": ""},
    )
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    if case["expect"] == "refused":
        assert r.returncode == 2 and r.stdout == ""
        assert len(lines) == 1 and lines[0].startswith("mlmeta: error: ")
        assert messages(case)[0] in lines[0]
    else:
        assert r.returncode == 0, r.stderr
        assert all(line.startswith("mlmeta: warning: ") for line in lines)
        for m in messages(case):
            assert m in r.stderr
    if not existed:
        assert not PWNED.exists()


# ------------------------------------------------------------------------------------------------
# a huge file, generated at run time
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_csv(tmp_path_factory):
    n = 200_000
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "study": np.repeat(np.arange(n // 4), 4),
            "es": np.arange(n),
            "yi": np.round(rng.normal(0.3, 0.3, n), 5),
            "vi": np.round(rng.uniform(0.01, 0.1, n), 5),
            "x": np.round(rng.normal(size=n), 4),
        }
    )
    path = tmp_path_factory.mktemp("huge") / "huge.csv"
    df.to_csv(path, index=False)
    return path


def test_huge_file_is_fast(huge_csv):
    t0 = time.perf_counter()
    code, out, err = run(
        [
            "fit",
            str(huge_csv),
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "study/es",
            "--mods",
            "~ x",
            "--json",
        ]
    )
    elapsed = time.perf_counter() - t0
    assert code == 0, err
    got = json.loads(out)
    assert got["k"] == 200_000 and got["rows_dropped"] == 0
    assert elapsed < 30, f"200,000 rows took {elapsed:.1f} s"


def test_huge_file_with_one_coefficient_per_row_is_refused_quickly(huge_csv):
    t0 = time.perf_counter()
    code, out, err = run(
        ["fit", str(huge_csv), "--yi", "yi", "--vi", "vi", "--mods", "~ factor(es)"]
    )
    assert time.perf_counter() - t0 < 15
    assert code == 2 and out == ""
    assert err.startswith(
        "mlmeta: error: moderator formula '~ factor(es)' would give up to "
        "200001 coefficients for 200000 rows; too many to estimate"
    )
