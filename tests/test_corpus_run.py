"""`mlmeta run` on every corpus file: the refused ones exit 2 with one stderr line and leave
no report folder; the accepted ones write a complete report (kept light: no figures, profiles or
refits, so the whole corpus runs in seconds)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from mlmeta.cli import main

CORPUS = Path(__file__).parent / "corpus"
CASES = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))["cases"]

LIGHT = """
[analyses]
profile = false
lrt = false
robust = false
loo = false
influence = false
bias = false
che_sweep = false
figures = false
"""


def toml_for(case) -> str | None:
    """The analysis file equivalent to the case's `mlmeta fit` arguments (None if the case
    uses options an analysis file does not have, e.g. --with or --json checks)."""
    args = list(case["args"])
    opts = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--json",):
            i += 1
            continue
        if a == "--with":
            return None
        opts[a.lstrip("-")] = args[i + 1]
        i += 2
    path = (CORPUS / case["file"]).as_posix()
    lines = [f"[data]\nfile = {json.dumps(path)}\n", "[effect]"]
    for k in (
        "yi",
        "vi",
        "measure",
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
    ):
        if k in opts:
            lines.append(f"{k} = {json.dumps(opts.pop(k))}")
    lines.append("\n[model]")
    if "random" in opts:
        lines.append(f"random = {json.dumps(opts.pop('random'))}")
    if "mods" in opts:
        # an analysis file lists moderator columns; factor(x) means a categorical column
        terms = [t.strip() for t in opts.pop("mods").replace("~", "").split("+")]
        cols, cats = [], []
        for t in terms:
            if t.startswith("factor(") and t.endswith(")"):
                t = t[len("factor(") : -1]
                cats.append(t.strip("`"))
            cols.append(t.strip("`"))
        lines.append(f"moderators = {json.dumps(cols, ensure_ascii=False)}")
        if cats:
            lines.insert(1, f"categorical = {json.dumps(cats, ensure_ascii=False)}")
    for k in ("method", "test", "dfs"):
        if k in opts:
            lines.append(f"{k} = {json.dumps(opts.pop(k))}")
    if "level" in opts:
        lines.append(f"level = {float(opts.pop('level'))}")
    if opts:
        return None
    return "\n".join(lines) + "\n" + LIGHT


RUNNABLE = [c for c in CASES if c.get("kind") is None and toml_for(c) is not None]


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def test_most_of_the_corpus_is_runnable():
    assert len(RUNNABLE) >= 40


@pytest.mark.parametrize("case", RUNNABLE, ids=[c["file"] for c in RUNNABLE])
def test_run_on_corpus_file(case, tmp_path):
    toml = tmp_path / "analysis.toml"
    toml.write_text(toml_for(case), encoding="utf-8")
    out_dir = tmp_path / "report"
    code, out, err = run(["run", str(toml), "--out", str(out_dir), "--quiet"])
    lines = err.strip().splitlines()
    # a case whose report is refused although the fit is not (e.g. a constant moderator: the fit
    # drops its column as metafor does, the report refuses to test a moderator that is not
    # there) says so under "run"
    run_case = case.get("run", case)
    if run_case["expect"] == "refused":
        assert code == 2, err
        assert len(lines) == 1 and lines[0].startswith("mlmeta: error: "), err
        if "run" in case:
            assert run_case["message"] in lines[0], err
        assert "Traceback" not in err
        assert not out_dir.exists()
        assert [p.name for p in tmp_path.iterdir()] == ["analysis.toml"], "partial output left"
    else:
        assert code == 0, err
        assert (out_dir / "report.html").is_file() and (out_dir / "results.json").is_file()
        assert all(line.startswith("mlmeta: warning: ") for line in lines), err
