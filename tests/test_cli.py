"""The command line: `mlmeta fit --json` on every reference case (from yi/vi and from the raw
columns via --measure), --with blocks, the printed summary, and one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import CORE_KEYS, REF, case_files, compare, load_case, tolerance

from mlmeta.cli import main

CASES = case_files()


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def fit_args(case, via):
    data = str(REF / "data" / case["data"])
    args = ["fit", data]
    esc = case.get("escalc")
    if via == "escalc":
        args += ["--measure", esc["measure"]]
        args += [x for a, c in esc.items() if a != "measure" for x in (f"--{a}", c)]
    else:
        args += ["--yi", case["yi"], "--vi", case["vi"]]
    args += ["--random", "/".join(case["random"]) if case["random"] else "none"]
    if case["mods"]:
        args += ["--mods", case["mods"]]
    return args + [
        "--method",
        case["method"],
        "--test",
        case["test"],
        "--dfs",
        case["dfs"],
        "--json",
    ]


PARAMS = [pytest.param(p, "yivi", id=f"{p.stem}-yivi") for p in CASES]
PARAMS += [
    pytest.param(p, "escalc", id=f"{p.stem}-escalc") for p in CASES if load_case(p).get("escalc")
]


@pytest.mark.parametrize("path,via", PARAMS)
def test_cli_json_core_keys(path, via):
    case = load_case(path)
    code, out, err = run(fit_args(case, via))
    assert code == 0, err
    got = json.loads(out)
    rel, abs_ = tolerance(case)
    diffs = []
    for key in CORE_KEYS:
        if key == "predict_r" and via == "yivi":
            continue
        if key in case["expect"]:
            compare(case["expect"][key], got.get(key), rel, abs_, key, diffs)
    assert not diffs, "; ".join(diffs[:5])


def test_cli_with_blocks_layout():
    case = load_case(REF / "cases" / "alliance_like_t.json")
    blocks = [
        "I2",
        "profile_ci",
        "lrt_drop",
        "robust_cr2",
        "robust_cr1",
        "egger",
        "loo_cluster",
        "cooks_cluster",
        "rstandard",
    ]
    code, out, err = run(fit_args(case, "escalc") + ["--with", ",".join(blocks)])
    assert code == 0, err
    got = json.loads(out)
    for b in blocks:
        rel, abs_ = tolerance(case, b)
        assert not compare(case["expect"][b], got[b], rel, abs_, b)


def test_cli_summary_names_levels_by_columns():
    code, out, _ = run(
        [
            "fit",
            str(REF / "data" / "konstantopoulos2011.csv"),
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "district/school",
        ]
    )
    assert code == 0
    assert "district/school" in out and "sigma^2.1" in out
    assert "Multivariate Meta-Analysis Model (k = 56; method: REML)" in out
    assert "Q(df = 55) = 578.8640" in out


@pytest.mark.parametrize(
    "args,msg",
    [
        (["fit", "nope.csv", "--yi", "yi", "--vi", "vi"], "data file 'nope.csv' not found"),
        (
            ["fit", str(REF / "data" / "konstantopoulos2011.csv"), "--yi", "y", "--vi", "vi"],
            "yi column 'y' not found",
        ),
        (
            [
                "fit",
                str(REF / "data" / "konstantopoulos2011.csv"),
                "--yi",
                "yi",
                "--vi",
                "vi",
                "--random",
                "district/scool",
            ],
            "random-effect column 'scool' not found",
        ),
        (
            [
                "fit",
                str(REF / "data" / "konstantopoulos2011.csv"),
                "--yi",
                "yi",
                "--vi",
                "vi",
                "--with",
                "bogus",
            ],
            "unknown block 'bogus'",
        ),
        (["fit", str(REF / "data" / "konstantopoulos2011.csv")], "give --yi COL and --vi COL"),
        (
            [
                "fit",
                str(REF / "data" / "konstantopoulos2011.csv"),
                "--yi",
                "yi",
                "--vi",
                "vi",
                "--mods",
                "~ __import__('os').system('echo hi')",
            ],
            "not allowed",
        ),
    ],
)
def test_cli_errors_are_one_line_exit_2(args, msg):
    code, out, err = run(args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlmeta: error: ") and msg in lines[0]


def test_installed_entry_point_runs_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("mlmeta")
    r = subprocess.run(
        [str(exe), "fit", str(tmp_path / "missing.csv"), "--yi", "a", "--vi", "b"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = subprocess.run([str(exe), "demo"], capture_output=True, text=True)
    assert r.returncode == 0 and "SIMULATED" in r.stdout and "t(26)" not in r.stderr
