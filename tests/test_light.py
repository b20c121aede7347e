"""The quick path of ``mlmeta fit`` (mlmeta.io.light): the same output as the careful path on
every input, and no pandas import where it applies."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlmeta import cli
from mlmeta.cli import main
from mlmeta.io import light

EXAMPLE = Path(__file__).parents[1] / "src" / "mlmeta" / "examples" / "data" / "alliance_like.csv"


def _run(argv, careful: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.pop("MLMETA_CAREFUL", None)
    if careful:
        os.environ["MLMETA_CAREFUL"] = "1"
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(argv)
    finally:
        os.environ.pop("MLMETA_CAREFUL", None)
        if old is not None:
            os.environ["MLMETA_CAREFUL"] = old
    return code, out.getvalue(), err.getvalue()


def _same(argv):
    quick = _run(argv, careful=False)
    careful = _run(argv, careful=True)
    assert quick == careful
    return quick


# ------------------------------------------------------------------ simulated data (SIMULATED)
def _table(rng, k, n_studies, int_ids, sep=","):
    study = rng.integers(0, n_studies, k)
    study[:2] = [0, 1]  # at least two studies
    es = np.arange(1, k + 1)
    vi = rng.uniform(0.005, 0.1, k)
    yi = rng.normal(0.2, 0.3, k)
    ni = rng.integers(10, 300, k)
    ri = np.round(rng.uniform(-0.6, 0.6, k), 3)
    sid = [str(s + 1) if int_ids else f"S{s + 1}" for s in study]
    lines = [sep.join(["study", "es", "yi", "vi", "ri", "ni"])]
    lines += [
        sep.join(
            [
                sid[i],
                str(es[i]),
                repr(float(yi[i])),
                repr(float(vi[i])),
                repr(float(ri[i])),
                str(ni[i]),
            ]
        )
        for i in range(k)
    ]
    return "\n".join(lines) + "\n"


OPTIONS = st.fixed_dictionaries(
    {
        "random": st.sampled_from([None, "study", "study/es", "~ 1 | study/es", "none"]),
        "test": st.sampled_from(["z", "t"]),
        "dfs": st.sampled_from(["residual", "contain"]),
        "method": st.sampled_from(["REML", "ML"]),
        "level": st.sampled_from(["95", "90", "99.5"]),
        "measure": st.booleans(),
    }
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(3, 60), int_ids=st.booleans(), opts=OPTIONS)
def test_quick_and_careful_print_the_same(tmp_path, seed, k, int_ids, opts):
    rng = np.random.default_rng(seed)
    f = tmp_path / "d.csv"
    f.write_text(_table(rng, k, max(2, k // 3), int_ids))
    argv = [
        "fit",
        str(f),
        "--method",
        opts["method"],
        "--test",
        opts["test"],
        "--dfs",
        opts["dfs"],
        "--level",
        opts["level"],
    ]
    argv += (
        ["--measure", "ZCOR", "--ri", "ri", "--ni", "ni"]
        if opts["measure"]
        else ["--yi", "yi", "--vi", "vi"]
    )
    if opts["random"] is not None:
        argv += ["--random", opts["random"]]
    code, out, _ = _same(argv)
    assert code == 0 and "Model Results:" in out
    # plain data: the quick path answered (it returns None when it leaves it to the careful one)
    assert cli._quick_summary(cli.build_parser().parse_args(argv)) == out


# cells that the careful reader treats specially: missing-value words, leading zeros, spaces,
# decimal commas, quotes, booleans, infinities, empty cells, text in number columns
ODD = [
    "",
    "NA",
    "nan",
    "01",
    " 0.5",
    "0,5",
    '"0.5"',
    "True",
    "inf",
    "-",
    "1e400",
    "x",
    "0.0",
    "-0.0",
    "1e-320",
    "007",
    "+1",
    "1.",
    "inf",
    "-Infinity",
    "1.e5",
    "S1",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32 - 1),
    cells=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 5), st.sampled_from(ODD)),
        min_size=1,
        max_size=3,
    ),
    sep=st.sampled_from([",", ";", "\t"]),
    blank=st.booleans(),
)
def test_odd_cells_give_the_careful_answer(tmp_path, seed, cells, sep, blank):
    rng = np.random.default_rng(seed)
    rows = _table(rng, 31, 8, True, sep).splitlines()
    grid = [r.split(sep) for r in rows]
    for i, j, val in cells:
        grid[i][j] = val  # row 0 is the header
    text = "\n".join(sep.join(r) for r in grid) + ("\n\n" if blank else "\n")
    f = tmp_path / "d.csv"
    f.write_text(text)
    _same(["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"])
    _same(["fit", str(f), "--measure", "ZCOR", "--ri", "ri", "--ni", "ni", "--random", "study"])


def test_warnings_and_errors_come_from_the_careful_path(tmp_path):
    f = tmp_path / "d.csv"
    # a missing yi: the row is dropped with a warning that the careful path gives
    f.write_text(
        "study,es,yi,vi\n1,1,0.1,0.01\n1,2,NA,0.02\n2,3,0.3,0.01\n2,4,0.2,0.03\n3,5,0.1,0.02\n"
    )
    code, out, err = _same(["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"])
    assert code == 0 and "1 of 5 rows dropped for missing values" in err
    # a negative variance: one line naming the row, exit 2
    f.write_text("study,es,yi,vi\n1,1,0.1,0.01\n1,2,0.2,-0.02\n2,3,0.3,0.01\n")
    code, out, err = _same(["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"])
    assert code == 2 and "row 2" in err and "Traceback" not in err
    # a repeated study/es pair: the careful path's note
    f.write_text(
        "study,es,yi,vi\n1,1,0.1,0.01\n1,1,0.2,0.02\n2,3,0.3,0.01\n2,4,0.1,0.02\n"
        "3,5,0.0,0.02\n3,6,0.2,0.01\n4,7,0.1,0.02\n4,8,0.3,0.02\n"
    )
    code, out, err = _same(["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"])
    assert code == 0
    # a correlation of 1 for ZCOR: escalc's message, exit 2
    f.write_text("study,ri,ni\n1,0.2,50\n2,1,40\n3,0.1,30\n")
    code, out, err = _same(["fit", str(f), "--measure", "ZCOR", "--ri", "ri", "--ni", "ni"])
    assert code == 2 and "row 2" in err


def test_plain_data_take_the_quick_path_without_pandas():
    code = (
        "import sys\nfrom mlmeta.cli import main\n"
        f"rc = main(['fit', {str(EXAMPLE)!r}, '--measure', 'ZCOR', '--ri', 'ri', '--ni', "
        "'ni', '--random', 'study/es', '--test', 't'])\n"
        "assert rc == 0\n"
        "assert 'pandas' not in sys.modules and 'scipy' not in sys.modules, 'imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLMETA_CAREFUL"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "Model Results:" in p.stdout and "sigma^2.2" in p.stdout


def test_the_reader_refuses_what_it_cannot_vouch_for(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b\n1,2\n3,4\n")
    assert light.read_plain_csv(f, ["a", "b"]) == {"a": ["1", "3"], "b": ["2", "4"]}
    for text in [
        "a,b\n1,2\n\n3,4\n",  # a blank line
        'a,b\n"1",2\n',  # quotes
        "a,b\n1,2,3\n",  # a long row
        "a,b\n1\n",  # a short row
        "a, b\n1,2\n",  # a header name with a space
        "a,b\n01,2\n",  # leading zeros
        "a,b\nNA,2\n",  # a missing-value word
        "a,b\r\n1,2\r\n",
    ]:  # CR line ends
        f.write_text(text)
        assert light.read_plain_csv(f, ["a", "b"]) is None, text
    assert light.read_plain_csv(f, ["a", "zzz"]) is None
    g = tmp_path / "d.xlsx"
    g.write_text("a,b\n1,2\n")
    assert light.read_plain_csv(g, ["a", "b"]) is None


def test_ids_are_typed_as_pandas_types_them():
    assert light.ids(["1", "2", "10"]).dtype == np.int64
    assert light.ids(["1", "2.5"]).dtype == np.float64
    assert light.ids(["A", "1"]).dtype == object
    assert light.numbers(["1", "x"]) is None
    assert light.numbers(["-0.5", "1e-3", ".5"]).tolist() == [-0.5, 0.001, 0.5]


@pytest.mark.parametrize("k,n", [(200, 40), (2500, 500)])
def test_larger_files_agree(tmp_path, k, n):
    rng = np.random.default_rng(k)
    f = tmp_path / "d.csv"
    f.write_text(_table(rng, k, n, False))
    _same(
        [
            "fit",
            str(f),
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "study/es",
            "--test",
            "t",
            "--dfs",
            "contain",
        ]
    )


def test_the_command_line_uses_one_blas_thread_unless_told_otherwise():
    code = (
        "import os, sys\nfrom mlmeta.cli import main\n"
        "main(['--version'])\nprint(os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in cli.BLAS_THREAD_VARS}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.stdout.split()[-1] == "1"
    env["OPENBLAS_NUM_THREADS"] = "2"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.stdout.split()[-1] == "2"


def test_blocks_without_json_are_refused_not_ignored():
    # regression: --with without --json printed the summary and silently dropped the blocks
    code, out, err = _run(
        [
            "fit",
            str(EXAMPLE),
            "--measure",
            "ZCOR",
            "--ri",
            "ri",
            "--ni",
            "ni",
            "--random",
            "study/es",
            "--with",
            "I2",
        ],
        careful=False,
    )
    assert code == 2 and out == ""
    assert err.strip() == (
        "mlmeta: error: --with adds blocks to the JSON output: add --json "
        "(the text summary has no place for them)"
    )


def test_long_integer_ids_are_left_to_the_careful_path(tmp_path):
    # 19-digit ids differ in the last digit: as floats they would merge two studies
    assert light.ids(["1234567890123456789", "1234567890123456788"]) is None
    f = tmp_path / "d.csv"
    f.write_text(
        "study,es,yi,vi\n"
        + "".join(
            f"12345678901234567{i % 3}{i % 2},{i},{0.1 * (i % 4)},{0.01 + 0.001 * i}\n"
            for i in range(12)
        )
    )
    code, out, _ = _same(["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"])
    assert code == 0 and "sigma^2.1" in out
    ap = cli.build_parser().parse_args(
        ["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"]
    )
    assert cli._quick_summary(ap) is None


@pytest.mark.parametrize("a,b", [("+1", "1"), ("1.", "1"), ("1.e0", "1"), ("inf", "Infinity")])
def test_ids_pandas_reads_as_the_same_number_stay_one_study(tmp_path, a, b):
    # regression: "+1" and "1" are one study for pandas (the number 1) but were two text ids
    rows = [f"{a if i % 2 else b},{i},{0.1 * (i % 3)},{0.01 + 0.002 * i}" for i in range(8)]
    rows += [f"2,{i},{0.05 * (i % 4)},{0.02 + 0.001 * i}" for i in range(8, 14)]
    f = tmp_path / "d.csv"
    f.write_text("study,es,yi,vi\n" + "\n".join(rows) + "\n")
    argv = ["fit", str(f), "--yi", "yi", "--vi", "vi", "--random", "study/es"]
    code, out, _ = _same(argv)
    assert code == 0
    assert cli._quick_summary(cli.build_parser().parse_args(argv)) is None
