"""Analysis files (`mlmeta run`, `mlmeta init`): schema errors name the key, paths are relative
to the TOML file, the report folder is written atomically, the progress printer stays quiet off
a terminal."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from mlmeta.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "mlmeta" / "examples" / "data"

# a quick analysis: no figures, no refits over studies
QUICK = """
[data]
file = "data/alliance.csv"
study = "study"
n = "ni"

[effect]
measure = "ZCOR"
ri = "ri"
ni = "ni"

[model]
random = "study/es"
test = "t"
dfs = "contain"
moderators = ["phase"]

[analyses]
profile = false
loo = false
influence = false
bias = false
che_sweep = false
figures = false
"""


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / "alliance_like.csv", tmp_path / "data" / "alliance.csv")
    return tmp_path


def write(project, text, name="analysis.toml"):
    p = project / name
    p.write_text(text, encoding="utf-8")
    return p


def one_line_error(args):
    code, out, err = run(args)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlmeta: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- schema errors
@pytest.mark.parametrize(
    "patch,words",
    [
        (("", 'colour = "red"\n'), ["unknown key 'colour'"]),
        (('test = "t"', 'test = "t"\nmetod = "ML"'), ["'model.metod'", "did you mean 'method'"]),
        (("profile = false", "profile = false\nprofil = true"), ["'analyses.profil'", "'profile'"]),
        (("[analyses]", '[analyses]\nrandom = "study"'), ["'analyses.random'", "[model]"]),
        (
            ('test = "t"', 'test = "t"\njoint = "yes"'),
            ["'model.joint'", "true or false", "a string"],
        ),
        (('test = "t"', 'test = "t"\nlevel = "95"'), ["'model.level'", "a number"]),
        (
            ('moderators = ["phase"]', 'moderators = "phase"'),
            ["'model.moderators'", "a list of strings"],
        ),
        (("profile = false", "profile = 0"), ["'analyses.profile'", "true or false", "an integer"]),
        (('ri = "ri"', "ri = 3"), ["'effect.ri'", "a string"]),
        (('test = "t"', 'test = "t"\nmethod = "OLS"'), ["'model.method'", "REML, ML", "'OLS'"]),
        (('test = "t"', 'test = "F"'), ["'model.test'"]),
        (('test = "t"', 'test = "t"\nrho = 1.5'), ["'model.rho'", "between -1 and 1"]),
        (
            ("[analyses]", '[analyses]\nche_rhos = [0.2, "x"]'),
            ["'analyses.che_rhos'", "a list of numbers"],
        ),
        (("[effect]", "[effect2]"), ["unknown key 'effect2'", "did you mean 'effect'"]),
        (
            ("[effect]", "effect = 1\n[effect]"),
            ["unknown key 'data.effect'", "[effect] is a table of its own"],
        ),
    ],
)
def test_schema_errors_name_the_key(project, patch, words):
    old, new = patch
    text = (new + QUICK) if old == "" else QUICK.replace(old, new, 1)
    msg = one_line_error(["run", str(write(project, text))])
    for w in words:
        assert w in msg, msg


def test_table_given_as_value(project):
    text = 'model = "study/es"\n' + QUICK.replace("[model]", "[modelx]")
    msg = one_line_error(["run", str(write(project, text))])
    assert "'model' must be a table" in msg or "modelx" in msg


@pytest.mark.parametrize(
    "patch,words",
    [
        (
            ('file = "data/alliance.csv"', 'file = "data/nope.csv"'),
            ["'data.file'", "nope.csv", "not found"],
        ),
        (
            ('file = "data/alliance.csv"', 'file = "data/alliance.csv"\nexample = "assink2016"'),
            ["exactly one of 'data.file' and 'data.example'"],
        ),
        (('file = "data/alliance.csv"', 'example = "nosuch"'), ["'data.example'", "alliance_like"]),
        (
            ('moderators = ["phase"]', 'moderators = ["phse"]'),
            ["model.moderators", "'phse'", "did you mean 'phase'"],
        ),
        (('random = "study/es"', 'random = "study/esx"'), ["model.random", "'esx'"]),
        (('study = "study"', 'study = "studie"'), ["data.study", "'studie'"]),
        (('ri = "ri"', 'ri = "r"'), ["effect.ri", "'r'"]),
        (('ri = "ri"\n', ""), ["effect.measure = 'ZCOR' needs", "effect.ri"]),
        (('moderators = ["phase"]', 'moderators = ["phase", "phase"]'), ["'phase' twice"]),
    ],
)
def test_value_and_column_errors(project, patch, words):
    msg = one_line_error(["run", str(write(project, QUICK.replace(*patch)))])
    for w in words:
        assert w in msg, msg


def test_missing_tables_and_bad_toml(project):
    msg = one_line_error(["run", str(write(project, "[model]\nrandom = 'study/es'\n"))])
    assert "missing [data]" in msg
    msg = one_line_error(["run", str(write(project, "[data]\nexample = 'alliance_like'\n"))])
    assert "missing [effect]" in msg
    msg = one_line_error(["run", str(write(project, "[data\nfile = 1\n"))])
    assert "invalid TOML" in msg
    msg = one_line_error(["run", str(project / "nothere.toml")])
    assert "not found" in msg
    msg = one_line_error(["run", str(write(project, QUICK.replace('ri = "ri"', 'yi = "yi"')))])
    assert "effect.vi" in msg


# ---------------------------------------------------------------- running
def test_relative_data_path_and_default_out_dir(project, tmp_path_factory, monkeypatch):
    toml = write(project, QUICK, "my analysis.toml")
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    code, out, err = run(["run", str(toml)])
    assert code == 0, err
    rep = elsewhere / "my analysis-report"
    assert (rep / "report.html").is_file() and (rep / "results.json").is_file()
    assert str(rep / "report.html") in out
    assert "r = \u2212.121, SE = .019, 95% CI [\u2212.159, \u2212.082], t(26) = \u22126.383" in out
    numbers = json.loads((rep / "results.json").read_text())
    # paths in results.json are relative to the report folder (no user folder names leak)
    assert numbers["data"]["source"] == os.path.relpath(project / "data" / "alliance.csv", rep)
    assert numbers["simulated"] is False
    assert numbers["figures"] == [] and "figures switched off" in numbers["figures_unavailable"]
    assert numbers["heterogeneity"]["levels"][0].get("sigma2_ci") is None  # profile = false
    assert not (project / "my analysis-report").exists()


def test_bundled_simulated_data_read_by_path_is_flagged(project):
    from mlmeta.io.analysis import load_analysis

    toml = write(
        project,
        QUICK.replace('file = "data/alliance.csv"', f'file = "{DATA / "alliance_like.csv"}"'),
    )
    assert load_analysis(toml).simulated is True
    toml = write(
        project, QUICK.replace('file = "data/alliance.csv"', f'file = "{DATA / "assink2016.csv"}"')
    )
    assert load_analysis(toml).simulated is False
    assert (
        load_analysis(write(project, QUICK)).simulated is False
    )  # a copy elsewhere: the file says


def test_simulated_flag_and_quiet(project):
    toml = write(project, 'simulated = true\ntitle = "Demo"\n' + QUICK)
    out_dir = project / "rep"
    code, out, err = run(["run", str(toml), "--out", str(out_dir), "--quiet"])
    assert code == 0
    assert out.strip() == str(out_dir / "report.html") and err == ""
    numbers = json.loads((out_dir / "results.json").read_text())
    assert numbers["simulated"] is True and numbers["title"] == "Demo"
    md = (out_dir / "report.md").read_text()
    assert md.startswith("# Demo\n\n> **SIMULATED DATA:")


def test_failed_run_leaves_no_report_and_keeps_the_old_one(project, monkeypatch):
    toml = write(project, QUICK)
    out_dir = project / "rep"
    assert run(["run", str(toml), "--out", str(out_dir), "-q"])[0] == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}

    import mlmeta.report.document as document

    def boom(numbers):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(document, "build_document", boom)
    code, out, err = run(["run", str(toml), "--out", str(out_dir)])
    assert code == 1 and "disk on fire" in err
    after = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
    assert after == before  # the old report is untouched
    assert sorted(p.name for p in project.iterdir()) == ["analysis.toml", "data", "rep"]
    # a fresh target: nothing is left behind at all
    code, _, _ = run(["run", str(toml), "--out", str(project / "new")])
    assert code == 1 and not (project / "new").exists()
    assert sorted(p.name for p in project.iterdir()) == ["analysis.toml", "data", "rep"]

    def interrupt(numbers):
        raise KeyboardInterrupt

    monkeypatch.setattr(document, "build_document", interrupt)
    code, _, err = run(["run", str(toml), "--out", str(project / "new")])
    assert code == 130
    assert sorted(p.name for p in project.iterdir()) == ["analysis.toml", "data", "rep"]
    monkeypatch.undo()
    # success replaces the old report
    toml.write_text('title = "Second"\n' + QUICK)
    assert run(["run", str(toml), "--out", str(out_dir), "-q"])[0] == 0
    assert json.loads((out_dir / "results.json").read_text())["title"] == "Second"
    assert sorted(p.name for p in project.iterdir()) == ["analysis.toml", "data", "rep"]


def test_refuses_to_replace_a_folder_that_is_not_a_report(project):
    toml = write(project, QUICK)
    precious = project / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    msg = one_line_error(["run", str(toml), "--out", str(precious)])
    assert "refusing to replace" in msg
    assert (precious / "thesis.tex").read_text() == "keep me"
    (project / "afile").write_text("x")
    msg = one_line_error(["run", str(toml), "--out", str(project / "afile")])
    assert "not a folder" in msg


def test_failing_figure_is_reported_not_fatal(project, monkeypatch):
    toml = write(project, QUICK.replace("figures = false", "figures = true"))
    monkeypatch.setenv("MLMETA_REPORT_WORKERS", "1")
    import mlmeta.plots as plots

    def broken(res, *a, **k):
        raise ValueError("no ink")

    monkeypatch.setattr(plots, "funnel", broken)
    monkeypatch.setattr(plots, "forest", broken)
    code, out, err = run(["run", str(toml), "--out", str(project / "rep")])
    assert code == 0, err
    assert "figure 'forest' could not be drawn: ValueError: no ink" in err
    numbers = json.loads((project / "rep" / "results.json").read_text())
    assert "forest" not in {f["name"] for f in numbers["figures"]}
    assert "orchard_phase" in {f["name"] for f in numbers["figures"]}


# ---------------------------------------------------------------- init
def test_init_guesses_columns_and_runs(project):
    code, out, err = run(["init", str(project / "data" / "alliance.csv")])
    assert code == 0, err
    assert 'study = "study"' in out and 'random = "study/es"' in out
    assert 'measure = "ZCOR"' in out and 'ri = "ri"' in out and 'ni = "ni"' in out
    assert 'moderators = ["phase", "rater", "measure", "treatment"]' in out
    target = project / "new.toml"
    code, _, err = run(["init", str(project / "data" / "alliance.csv"), "-o", str(target)])
    assert code == 0 and target.exists()
    text = target.read_text()
    assert 'file = "data/alliance.csv"' in text  # relative to the TOML file
    msg = one_line_error(["init", str(project / "data" / "alliance.csv"), "-o", str(target)])
    assert "--force" in msg
    # the template is a valid analysis file
    for k in ("profile", "loo", "influence", "che_sweep", "figures", "bias"):
        text = text.replace(f"{k} = true", f"{k} = false")
    target.write_text(text)
    code, out, err = run(["run", str(target), "--out", str(project / "rep"), "-q"])
    assert code == 0, err


def test_init_yi_vi_and_two_level(tmp_path):
    import pandas as pd

    d = pd.read_csv(DATA / "konstantopoulos2011.csv")
    d.to_csv(tmp_path / "k.csv", index=False)
    code, out, _ = run(["init", str(tmp_path / "k.csv")])
    assert 'random = "district/school"' in out and 'yi = "yi"' in out and 'vi = "vi"' in out
    assert 'moderators = ["year"]' in out  # id columns are not moderators
    d.drop(columns=["district", "school"]).to_csv(tmp_path / "k2.csv", index=False)
    code, out, _ = run(["init", str(tmp_path / "k2.csv")])
    assert 'random = "study"' in out
    msg = one_line_error(["init", str(tmp_path / "missing.csv")])
    assert "not found" in msg


# ---------------------------------------------------------------- progress printer
class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_draws_on_a_terminal_only():
    from mlmeta.report.progress import Progress

    tty = FakeTTY()
    p = Progress(stream=tty, min_interval=0)
    with p.step("leave-one-out", 4) as tick:
        for _ in range(4):
            tick()
    s = tty.getvalue()
    assert "\rmlmeta: leave-one-out    [" in s and "4/4" in s and "#" * 20 in s
    assert s.endswith("\r")  # the line is cleared at the end
    with p.step("rho sweep", 3) as tick:
        tick(2, 3)  # rho_sweep's progress(i, n) callback form
    assert "2/3" in tty.getvalue()

    pipe = io.StringIO()
    p = Progress(stream=pipe)
    assert not p.enabled
    with p.step("profile CIs", 3) as tick:
        tick()
    assert pipe.getvalue() == ""
    p = Progress(enabled=False, stream=FakeTTY())
    with p.step("x", 1) as tick:
        tick()
    assert p.stream.getvalue() == ""
