"""Hostile input: every defect found by the audit of `mlmeta fit`, `run` and `init` has a test here
that failed before its fix. Bad input ends with exit status 2 and one line; nothing is written
outside the report folder and nothing the user had is deleted; an optional analysis that fails
is explained in the report instead of taking it down.

The data are the bundled SIMULATED example (alliance_like) and small simulated variations of it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
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
from mlmeta.cli import main
from mlmeta.errors import InputError, MlmetaError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "mlmeta" / "examples" / "data" / "alliance_like.csv"
EXE = Path(sys.executable).with_name("mlmeta")

# a quick analysis (no figures, no refits over studies); {mods} and {extra} are filled in
QUICK = """
[data]
file = "{file}"
study = "study"
[effect]
yi = "yi"
vi = "vi"
[model]
random = "study/es"
test = "t"
moderators = {mods}
[analyses]
profile = false
loo = false
influence = false
bias = {bias}
che_sweep = false
figures = {figures}
{extra}
"""


def run(args, cwd: Path | None = None):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def one_line_error(args, cwd=None) -> str:
    code, out, err = run(args, cwd)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlmeta: error: "), err
    assert "Traceback" not in err and "mlmeta: error: mlmeta" not in err
    return lines[0][len("mlmeta: error: ") :]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    d = pd.read_csv(DATA)
    return d[["study", "es", "phase", "rater", "yi", "vi"]].copy()


def analysis(
    folder: Path,
    data: pd.DataFrame,
    mods=("phase",),
    *,
    figures=False,
    bias=False,
    extra="",
    name="analysis.toml",
) -> Path:
    data.to_csv(folder / "data.csv", index=False)
    toml = folder / name
    toml.write_text(
        QUICK.format(
            file="data.csv",
            mods=json.dumps(list(mods)),
            figures=str(figures).lower(),
            bias=str(bias).lower(),
            extra=extra,
        ),
        encoding="utf-8",
    )
    return toml


# ============================================================== must never happen
def test_figure_file_names_from_data_stay_inside_the_report(tmp_path, base, monkeypatch):
    """A moderator column named '../../x' or '/tmp/x' drew its figure outside --out."""
    monkeypatch.setenv("MLMETA_REPORT_WORKERS", "1")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mlmeta.plots as plots

    def quick(*a, **k):  # the file names are under test, not the drawings
        return plt.figure(figsize=(1, 1)).add_subplot()

    for name in ("forest", "orchard", "bubble", "funnel"):
        monkeypatch.setattr(plots, name, quick)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    d = base.copy()
    d["../../escaped"] = d["phase"]
    d[str(tmp_path / "abs_escape")] = d["rater"]
    toml = analysis(
        work, d.iloc[:20], mods=["../../escaped", str(tmp_path / "abs_escape")], figures=True
    )
    before = {p for p in tmp_path.rglob("*")}
    code, _out, err = run(["run", toml, "--out", work / "rep", "-q"])
    assert code == 0, err
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p.is_relative_to(work / "rep") for p in new), sorted(new)
    names = sorted(p.name for p in (work / "rep" / "figures").iterdir())
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert any(n.startswith("orchard__escaped-") for n in names), names
    numbers = json.loads((work / "rep" / "results.json").read_text())
    for f in numbers["figures"]:
        assert (work / "rep" / f["png"]).resolve().is_relative_to((work / "rep").resolve())


def test_figure_file_stem_is_safe_and_unique():
    from mlmeta.report.figures import file_stem

    assert file_stem("forest") == "forest"
    assert file_stem("orchard_phase") == "orchard_phase"
    for bad in ("../../x", "/tmp/x", "..", ".", "a/b", "a\\b", "x\x00y", "é", "\n", "a" * 300):
        s = file_stem(bad)
        assert s and len(s) <= 69 and all(c.isalnum() or c in "_-" for c in s), s
        assert s not in (".", "..") and s.isascii()
    assert file_stem("a/b") != file_stem("a_b") != file_stem("a b")


def test_out_dot_with_a_copied_results_json_deletes_nothing(tmp_path, base):
    """`--out .` in a folder that held a results.json copied from a report deleted the folder."""
    rep = tmp_path / "old"
    toml = analysis(tmp_path, base)
    assert run(["run", toml, "--out", rep, "-q"])[0] == 0
    user = tmp_path / "thesis"
    user.mkdir()
    shutil.copy(rep / "results.json", user / "results.json")
    (user / "manuscript.tex").write_text("three years of work")
    shutil.copy(tmp_path / "data.csv", user / "data.csv")
    shutil.copy(toml, user / "analysis.toml")
    before = snapshot(user)
    msg = one_line_error(["run", "analysis.toml", "--out", "."], cwd=user)
    assert "refusing to replace" in msg and "which mlmeta did not write" in msg
    assert snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["old", "thesis", "data.csv", "analysis.toml"]
    )  # no temporary folder left


@pytest.mark.slow
def test_report_folder_is_replaced_only_when_the_manifest_proves_it(tmp_path, base):
    toml = analysis(tmp_path, base)
    rep = tmp_path / "rep"
    assert run(["run", toml, "--out", rep, "-q"])[0] == 0
    man = json.loads((rep / ".mlmeta-manifest.json").read_text())
    assert man["generator"] == "mlmeta"
    assert {"report.html", "report.md", "results.json"} <= set(man["files"])
    # a proven report is replaced
    assert run(["run", toml, "--out", rep, "-q"])[0] == 0
    # a file the user added, or a report file they edited, stops the replacement
    (rep / "notes.txt").write_text("mine")
    assert "notes.txt" in one_line_error(["run", toml, "--out", rep])
    (rep / "notes.txt").unlink()
    (rep / "report.md").write_text("edited by hand")
    assert "changed since mlmeta wrote it" in one_line_error(["run", toml, "--out", rep])
    assert (rep / "report.md").read_text() == "edited by hand"
    # a report from before manifests (report names only, results.json by mlmeta) is replaced
    legacy = tmp_path / "legacy"
    shutil.copytree(rep, legacy)
    (legacy / ".mlmeta-manifest.json").unlink()
    (legacy / "report.md").write_text("old")
    assert run(["run", toml, "--out", legacy, "-q"])[0] == 0
    assert (legacy / "report.md").read_text() != "old"
    # an empty folder is filled; the current folder (empty) is filled without being renamed
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(["run", toml, "--out", empty, "-q"])[0] == 0
    here = tmp_path / "here"
    here.mkdir()
    ino = here.stat().st_ino
    assert run(["run", toml, "--out", ".", "-q"], cwd=here)[0] == 0
    assert here.stat().st_ino == ino and (here / "report.html").is_file()
    assert run(["run", toml, "--out", ".", "-q"], cwd=here)[0] == 0  # and replaced in place
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_missing_parents_of_out_are_removed_when_the_run_fails(tmp_path, base, monkeypatch):
    toml = analysis(tmp_path, base)
    from mlmeta.report import document

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(document, "build_document", boom)
    code, _, err = run(["run", toml, "--out", tmp_path / "x" / "y" / "rep"])
    assert code == 1 and "disk on fire" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", ["report", "dangling", "user folder"])
def test_out_as_a_symbolic_link_is_refused_without_leftovers(tmp_path, base, kind):
    toml = analysis(tmp_path, base)
    target = tmp_path / "target"
    if kind == "report":
        assert run(["run", toml, "--out", target, "-q"])[0] == 0
    elif kind == "user folder":
        target.mkdir()
        (target / "precious.docx").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target)
    before = snapshot(tmp_path)
    msg = one_line_error(["run", toml, "--out", link])
    assert "symbolic link" in msg
    assert snapshot(tmp_path) == before and link.is_symlink()


@pytest.mark.slow
def test_a_failing_optional_analysis_is_explained_not_fatal(tmp_path, base, monkeypatch):
    """Equal sampling variances made trim-and-fill hit a singular matrix: exit 1, no report."""
    from mlmeta import pubbias

    def singular(*a, **k):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(pubbias, "aggregated_bias", singular, raising=False)
    from mlmeta.pubbias import egger

    monkeypatch.setattr(egger, "aggregated_bias", singular, raising=False)
    import mlmeta.analyses.heterogeneity as het

    monkeypatch.setattr(het, "i2", singular)
    toml = analysis(tmp_path, base, bias=True)
    code, _out, err = run(["run", toml, "--out", tmp_path / "rep"])
    assert code == 0, err
    numbers = json.loads((tmp_path / "rep" / "results.json").read_text())
    reasons = [w["message"] for w in numbers["warnings"] if w["category"] == "NotAvailable"]
    assert any("LinAlgError: Singular matrix" in r for r in reasons), reasons
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "LinAlgError: Singular matrix" in md


def test_equal_sampling_variances_still_give_a_report(tmp_path, base):
    d = base.copy()
    d["vi"] = 0.01
    toml = analysis(tmp_path, d, bias=True)
    code, _out, err = run(["run", toml, "--out", tmp_path / "rep", "-q"])
    assert code == 0, err
    assert (tmp_path / "rep" / "report.html").is_file()


# ============================================================== must be handled
@pytest.mark.parametrize(
    "key,value,rule",
    [
        ("model.rho", "1.5", "between -1 and 1"),
        ("model.rho", "-1", "between -1 and 1"),
        ("analyses.che_rhos", "[0.2, 1.2]", "between -1 and 1"),
        ("analyses.bias_rho", "-3", "between -1 and 1"),
    ],
)
def test_rho_outside_its_range_is_refused_at_the_boundary(tmp_path, base, key, value, rule):
    section, k = key.split(".")
    toml = analysis(tmp_path, base)
    text = toml.read_text().replace(f"[{section}]\n", f"[{section}]\n{k} = {value}\n", 1)
    toml.write_text(text)
    msg = one_line_error(["run", toml, "--out", tmp_path / "rep"])
    assert rule in msg and k in msg
    with pytest.raises(InputError, match="between -1 and 1"):
        mlmeta.rma_mv(base, "yi", "vi", random="study/es", rho=2.0)


@pytest.mark.slow
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, base):
    """No .OUT.tmp-* left and no figure worker left drawing after SIGTERM or SIGHUP."""
    big = pd.concat([base] * 4, ignore_index=True)
    big["es"] = np.arange(len(big))
    toml = analysis(tmp_path, big, figures=True)
    toml.write_text(
        toml.read_text()
        .replace("loo = false", "loo = true")
        .replace("profile = false", "profile = true")
    )
    env = {**os.environ, "MLMETA_REPORT_WORKERS": "3", "OPENBLAS_NUM_THREADS": "1"}
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        out = tmp_path / f"rep{int(sig)}"
        proc = subprocess.Popen(
            [str(EXE), "run", str(toml), "--out", str(out)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        children: set[int] = set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            children |= _children(proc.pid)
            if children and list(tmp_path.glob(f".{out.name}.tmp-*")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.3)
        children |= _children(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert b"Traceback" not in err
        assert not list(tmp_path.glob(f".{out.name}.*")) and not out.exists()
        time.sleep(0.5)
        alive = [c for c in children if _alive(c)]
        assert not alive, f"figure workers still running after {sig!r}: {alive}"


def _children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_report_md_escapes_data(tmp_path, base, monkeypatch):
    from mlmeta.report.render import markdown_safe

    assert markdown_safe("p < .001") == "p < .001"
    assert markdown_safe("x <- 1") == "x <- 1"
    assert "<script" not in markdown_safe("<script>alert(1)</script>")
    assert "](javascript" not in markdown_safe("[x](javascript:alert(1))")
    assert "```" not in markdown_safe("a ``` b")
    d = base.copy()
    d["phase"] = np.where(
        d["phase"] == d["phase"].iloc[0],
        "<script>alert(1)</script>",
        "[click](javascript:alert(2))",
    )
    toml = analysis(tmp_path, d)
    code, _, err = run(["run", toml, "--out", tmp_path / "rep", "-q"])
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "alert(1)" in md and "<script" not in md and "](javascript" not in md
    assert "<script" not in html


@pytest.mark.parametrize(
    "exc,expect",
    [
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (MemoryError(), "not enough memory"),
        (OSError(28, "No space left on device", "/x/report.html"), "No space left on device"),
        (np.linalg.LinAlgError("Singular matrix"), "singular"),
        (MlmetaError("mlmeta: error: doubled"), "doubled"),
    ],
)
def test_every_user_failure_exits_2_in_one_line(monkeypatch, exc, expect):
    from mlmeta import cli

    def boom(argv):
        raise exc

    monkeypatch.setattr(cli, "_run", boom)
    msg = one_line_error(["fit", "x.csv"])
    assert expect in msg and not msg.startswith("mlmeta")


def test_a_genuine_internal_error_is_exit_1_in_one_line(monkeypatch):
    from mlmeta import cli

    def boom(argv):
        raise KeyError("bug")

    monkeypatch.setattr(cli, "_run", boom)
    code, _out, err = run(["fit", "x.csv"])
    assert (
        code == 1
        and err.startswith("mlmeta: internal error (KeyError")
        and len(err.strip().splitlines()) == 1
    )


def test_argparse_errors_are_not_prefixed_twice():
    msg = one_line_error(["fit", str(DATA), "--level", "abc"])
    assert msg.startswith("fit: argument --level")
    assert one_line_error(["nosuchcommand"]).startswith("argument cmd")


def test_a_closed_stdout_ends_quietly(tmp_path, base):
    base.to_csv(tmp_path / "d.csv", index=False)
    r = subprocess.run(
        f"'{EXE}' fit d.csv --yi yi --vi vi --random study/es --json | head -c 10",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        executable="/bin/bash",
        timeout=120,
        check=False,
    )
    assert len(r.stdout) == 10 and r.stdout.startswith(b"{")
    assert r.stderr == b"", r.stderr
    r = subprocess.run(
        f"set -o pipefail; '{EXE}' fit d.csv --yi yi --vi vi --random study/es | head -c 1",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        executable="/bin/bash",
        timeout=120,
        check=False,
    )
    assert r.returncode == 0 and r.stderr == b"", r.stderr


def test_only_mlmetas_own_warnings_reach_the_user(monkeypatch, base, tmp_path):
    from mlmeta import cli

    real = cli._run

    def noisy(argv):
        warnings.warn("overflow encountered in exp", RuntimeWarning, stacklevel=1)
        return real(argv)

    monkeypatch.setattr(cli, "_run", noisy)
    base.to_csv(tmp_path / "d.csv", index=False)
    code, _out, err = run(
        ["fit", tmp_path / "d.csv", "--yi", "yi", "--vi", "vi", "--random", "study/es"]
    )
    assert code == 0 and "overflow" not in err


# -------------------------------------------------------------- convergence when claimed
def test_a_point_that_is_not_a_maximum_is_never_reported_converged(monkeypatch):
    import mlmeta.core.optimize as opt

    class Ev:  # a concave quadratic with its maximum at 1
        def __init__(self, th):
            self.ll = -float(np.sum((th - 1.0) ** 2)) * 100.0
            self.grad = -200.0 * (th - 1.0)
            self.hess = -200.0 * np.eye(len(th))

    def fun(th, order):
        return Ev(np.asarray(th, float))

    good = opt.maximize(fun, [np.array([0.3])], np.array([True]))
    assert good.converged and abs(good.theta[0] - 1.0) < 1e-8

    def lying_newton(fun, theta0, free, max_iter, tol, box=None):  # "converged" at the start
        th = np.asarray(theta0, float)
        return (th, fun(th, 2)), 1, ""

    monkeypatch.setattr(opt, "_newton", lying_newton)
    res = opt.maximize(fun, [np.array([0.3])], np.array([True]))
    # the false claim at 0.3 is caught; the fallback (L-BFGS-B) reaches the true maximum
    assert "stopped where the gradient is not zero" in res.attempts[0]
    assert res.converged and abs(res.theta[0] - 1.0) < 1e-5

    def stuck(*a, **k):
        raise np.linalg.LinAlgError("no fallback")

    monkeypatch.setattr(opt, "_lbfgs", stuck)
    with pytest.raises(mlmeta.errors.ConvergenceError, match="gradient is not zero"):
        opt.maximize(fun, [np.array([0.3])], np.array([True]))


@pytest.mark.parametrize("scale", [1e-25, 1e-10, 1e10, 1e25])
def test_the_fit_is_exact_on_any_scale_it_accepts(base, scale):
    ref = mlmeta.rma_mv(base, "yi", "vi", random="study/es")
    d = base.copy()
    d["yi"] *= scale
    d["vi"] *= scale * scale
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es")
    assert res.converged
    np.testing.assert_allclose(res.core.sigma2 / scale**2, ref.core.sigma2, rtol=1e-6)
    np.testing.assert_allclose(res.core.beta / scale, ref.core.beta, rtol=1e-8)


@pytest.mark.parametrize(
    "col,value,what",
    [
        ("yi", 1e150, "effect size"),
        ("vi", 1e297, "sampling variance"),
        ("vi", 5e-324, "sampling variance"),
    ],
)
def test_values_beyond_double_precision_are_refused(base, col, value, what):
    d = base.copy()
    if col == "yi":
        d["yi"] = d["yi"] * value + value
        d["vi"] = d["vi"] * value * value * 0 + 1.0
    else:
        d.loc[0 if value < 1 else slice(None), "vi"] = value
    with pytest.raises(InputError, match=f"{what} .* outside the range that can be fitted"):
        mlmeta.rma_mv(d, "yi", "vi", random="study/es")


def test_complex_effect_sizes_are_refused(base):
    d = base.copy()
    d["yi"] = d["yi"].astype(complex)
    d.loc[0, "yi"] = 1 + 2j
    with pytest.raises(InputError, match="must hold real numbers, got complex"):
        mlmeta.rma_mv(d, "yi", "vi", random="study/es")


# -------------------------------------------------------------- a moderator with one level
def test_a_moderator_with_one_level_is_said_and_never_tests_the_intercept(base, tmp_path):
    d = base.copy()
    d["grp"] = "a"
    with pytest.raises(
        InputError,
        match=r"moderator 'grp' has a single level \('a'\) in the "
        r"48 rows used.*would test the intercept",
    ):
        mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ grp")
    d.loc[:2, "grp"] = "b"
    d.loc[:2, "yi"] = np.nan  # level b only in rows dropped for missing yi
    with pytest.raises(InputError, match="single level"):
        mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ grp")
    d["x"] = np.linspace(0, 1, len(d))
    with pytest.warns(
        mlmeta.errors.DataWarning, match="single level.*not part of the moderator test"
    ):
        res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ grp + x")
    assert res.coef_names == ("intrcpt", "x") and res.QM_df[0] == 1
    # in a report: noted for that moderator, the rest of the report is written
    d = base.copy()
    d["grp"] = "a"
    toml = analysis(tmp_path, d, mods=["grp", "phase"])
    code, _, err = run(["run", toml, "--out", tmp_path / "rep"])
    assert code == 0, err
    assert "single category" in err


# -------------------------------------------------------------- pathological sizes
@pytest.mark.parametrize(
    "make,what",
    [
        (lambda p: os.mkfifo(p), "named pipe"),
        (lambda p: p.mkdir(), "directory"),
    ],
)
def test_fifos_devices_and_folders_are_refused_at_once(tmp_path, make, what):
    p = tmp_path / "data.csv"
    make(p)
    t0 = time.monotonic()
    msg = one_line_error(["fit", p, "--yi", "yi", "--vi", "vi"])
    assert what in msg and time.monotonic() - t0 < 5
    msg = one_line_error(["init", p])
    assert what in msg


def test_dev_zero_and_stdin_are_refused(tmp_path):
    assert "character device" in one_line_error(["fit", "/dev/zero", "--yi", "y", "--vi", "v"])
    assert "standard input" in one_line_error(["fit", "-", "--yi", "y", "--vi", "v"])
    fifo = tmp_path / "a.toml"
    os.mkfifo(fifo)
    assert "named pipe" in one_line_error(["run", fifo])


def test_deeply_nested_analysis_file_is_one_line(tmp_path):
    p = tmp_path / "deep.toml"
    p.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    msg = one_line_error(["run", p])
    assert "nested too deeply" in msg


def test_cr2_on_one_huge_cluster_is_refused_quickly():
    rng = np.random.default_rng(1)
    n = 6000
    d = pd.DataFrame(
        {
            "study": np.r_[np.zeros(n, int), np.arange(1, 21).repeat(2)],
            "yi": rng.normal(size=n + 40),
            "vi": rng.uniform(0.01, 0.1, n + 40),
        }
    )
    d["es"] = np.arange(len(d))
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es")
    t0 = time.monotonic()
    with pytest.raises(InputError, match="cluster 0 has 6,000 effect sizes, more than the 2,000"):
        res.robust()
    assert time.monotonic() - t0 < 5


def test_htz_moments_without_the_q_by_q_by_p_by_p_array():
    from mlmeta.core.robust import _pp_sums, _pp_total

    rng = np.random.default_rng(0)
    for C, q, r in ((30, 5, 7), (4, 3, 9), (50, 1, 2)):
        a = rng.normal(size=(C, q, q))
        a = a @ np.swapaxes(a, -1, -2)
        H = rng.normal(size=(C, q, r))
        _, v1, v2 = _pp_sums(a, H)
        assert _pp_total(a, H) == pytest.approx(float(np.sum(v1 + v2)), rel=1e-12)


def test_a_forty_coefficient_cr2_test_answers_in_seconds():
    rng = np.random.default_rng(1)
    n, P = 1200, 40
    d = pd.DataFrame(
        {
            "study": np.repeat(np.arange(300), 4),
            "es": np.arange(n),
            "yi": rng.normal(size=n),
            "vi": rng.uniform(0.01, 0.1, n),
        }
    )
    for j in range(P):
        d[f"x{j}"] = rng.normal(size=n)
    res = mlmeta.rma_mv(
        d, "yi", "vi", random="study/es", mods="~ " + " + ".join(f"x{j}" for j in range(P))
    )
    t0 = time.process_time()
    rob = res.robust()
    assert time.process_time() - t0 < 10
    assert rob.QM_df[0] == P and np.isfinite(rob.QMp)


def test_init_proposes_a_bounded_number_of_moderators(tmp_path):
    rng = np.random.default_rng(1)
    w = pd.DataFrame(rng.integers(0, 3, (60, 500)), columns=[f"c{i}" for i in range(500)])
    w["yi"], w["vi"], w["study"] = rng.normal(size=60), 0.1, np.arange(60) // 2
    w.to_csv(tmp_path / "wide.csv", index=False)
    code, out, err = run(["init", tmp_path / "wide.csv"])
    assert code == 0, err
    import tomllib

    doc = tomllib.loads(out)
    assert len(doc["model"]["moderators"]) == 20 and doc["model"]["joint"] is False
    assert "480 more candidate columns not listed" in out


def test_a_factor_with_150_levels_answers_in_seconds(tmp_path):
    rng = np.random.default_rng(1)
    n = 600
    d = pd.DataFrame(
        {
            "study": np.repeat(np.arange(200), 3),
            "es": np.arange(n),
            "yi": rng.normal(size=n),
            "vi": rng.uniform(0.01, 0.1, n),
            "author": rng.choice([f"a{i}" for i in range(150)], n),
        }
    )
    d.to_csv(tmp_path / "d.csv", index=False)
    t0 = time.process_time()
    code, out, err = run(
        [
            "fit",
            tmp_path / "d.csv",
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "study/es",
            "--mods",
            "~ author",
        ]
    )
    assert code == 0, err
    assert time.process_time() - t0 < 30
    assert "QM(df = 149)" in out


# -------------------------------------------------------------- names that look alike
def test_headers_equal_after_unicode_normalisation_are_refused(tmp_path):
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    (tmp_path / "d.csv").write_text(
        f"{nfc},{nfd},yi,vi\n1,2,0.1,0.01\n3,4,0.2,0.02\n", encoding="utf-8"
    )
    msg = one_line_error(["fit", tmp_path / "d.csv", "--yi", "yi", "--vi", "vi"])
    assert "look identical but are written with different Unicode characters" in msg


def test_a_suggestion_never_looks_identical_to_what_was_typed(base):
    d = base.copy()
    d["cafe\u0301"] = d["phase"]
    with pytest.raises(InputError, match=r"looks like 'caf\\xe9' but is written with other"):
        mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ caf\u00e9")
    d["zero\u200bwidth"] = d["phase"]
    with pytest.raises(InputError, match=r"zero\\u200bwidth"):
        mlmeta.rma_mv(d, "yi", "vi", random="zerowidth/es")


# ============================================================== should be handled
def test_init_template_cannot_be_injected_through_column_names(tmp_path, base):
    import tomllib

    d = base.copy()
    d['bad"name\n[analyses]\nfigures = true\n#'] = d["phase"]
    d["ctl\x01\x7f\ttab"] = d["rater"]
    d.to_csv(tmp_path / "d.csv", index=False)
    code, out, err = run(["init", tmp_path / "d.csv"])
    assert code == 0, err
    doc = tomllib.loads(out)
    assert 'bad"name\n[analyses]\nfigures = true\n#' in doc["model"]["moderators"]
    assert "ctl\x01\x7f\ttab" in doc["model"]["moderators"]
    assert "figures" not in doc["data"]


def test_terminal_escape_sequences_from_data_are_not_echoed(base, tmp_path):
    d = base.rename(columns={"phase": "ph\x1b[31mase"})
    d.to_csv(tmp_path / "d.csv", index=False)
    msg = one_line_error(
        ["fit", tmp_path / "d.csv", "--yi", "yi", "--vi", "vi", "--mods", "~ nosuch"]
    )
    assert "\x1b" not in msg and "\\x1b" in msg


def test_results_json_records_paths_relative_to_the_report(tmp_path, base):
    toml = analysis(tmp_path, base)
    code, _, err = run(["run", toml, "--out", tmp_path / "deep" / "rep", "-q"])
    assert code == 0, err
    text = (tmp_path / "deep" / "rep" / "results.json").read_text()
    assert str(tmp_path) not in text
    numbers = json.loads(text)
    assert numbers["settings"]["data"]["file"] == "../../data.csv"
    assert numbers["data"]["source"] == "../../data.csv"
    assert numbers["command"] == "mlmeta run ../../analysis.toml"


# -------------------------------------------------------------- the fast CSV reader
def test_big_csv_takes_the_fast_path_and_keeps_every_message(tmp_path, monkeypatch):
    from mlmeta.io import read

    rng = np.random.default_rng(2)
    n = 60_000
    d = pd.DataFrame(
        {
            "study": np.arange(n) // 3,
            "es": np.arange(n),
            "yi": rng.normal(size=n).round(5),
            "vi": rng.uniform(0.01, 0.1, n).round(5),
            "phase": rng.choice(["early", "late"], n),
        }
    )
    p = tmp_path / "big.csv"
    d.to_csv(p, index=False)
    assert p.stat().st_size > read.FAST_MIN_BYTES
    calls = []
    real = read._read_fast

    def spy(*a):
        out = real(*a)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(read, "_read_fast", spy)
    got = read.read_table(p)
    assert calls == [True]
    pd.testing.assert_frame_equal(got, d, check_dtype=False)
    # a bad line deep in a big file: the careful path names it exactly as for a small file
    lines = p.read_text().splitlines()
    lines[50_000] += ",extra"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 50001 has 6 fields but the header has 5"):
        read.read_table(p)
    # invalid UTF-8 deep in the file
    raw = bytearray(p.read_bytes().replace(b",extra", b""))
    raw[-30] = 0xE9
    p.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"is not UTF-8 text \(line 60001: byte 0xe9"):
        read.read_table(p)


def test_every_corpus_file_reads_the_same_through_the_fast_path(monkeypatch):
    from mlmeta.io import read

    corpus = ROOT / "tests" / "corpus"
    cases = json.loads((corpus / "MANIFEST.json").read_text(encoding="utf-8"))["cases"]

    def outcome(path):
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                df = read.read_table(path)
            return (
                "ok",
                df.shape,
                list(df.columns),
                df.astype(str).to_numpy().tolist(),
                [str(x.message) for x in w],
            )
        except InputError as exc:
            return ("error", str(exc))

    for f in sorted({c["file"] for c in cases}):
        monkeypatch.setattr(read, "FAST_MIN_BYTES", 1 << 20)
        slow = outcome(corpus / f)
        monkeypatch.setattr(read, "FAST_MIN_BYTES", 0)
        assert outcome(corpus / f) == slow, f


@pytest.mark.slow
def test_a_big_csv_reads_in_a_small_multiple_of_its_memory(tmp_path):
    rng = np.random.default_rng(3)
    n = 1_000_000
    d = pd.DataFrame(
        {
            "study": np.arange(n) // 4,
            "es": np.arange(n),
            "yi": rng.normal(size=n).round(6),
            "vi": rng.uniform(0.001, 0.05, n).round(6),
            "phase": rng.choice(["early", "middle", "late"], n),
        }
    )
    p = tmp_path / "big.csv"
    d.to_csv(p, index=False)
    size = p.stat().st_size
    code = (
        "import resource, sys, pandas; from mlmeta.io import read_table; "
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"df = read_table({str(p)!r}); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, len(df))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        check=False,
    )
    assert r.returncode == 0, r.stderr
    extra_kb, rows = map(int, r.stdout.split())
    assert rows == n
    assert extra_kb * 1024 < 4 * size, (extra_kb, size)  # the old reader took ~10x


# -------------------------------------------------------------- siblings found on the way
def test_ids_with_leading_zeros_stay_text_everywhere(tmp_path):
    p = tmp_path / "z.csv"
    p.write_text(
        "study,es,yi,vi\n01,1,0.1,0.01\n1,2,0.2,0.02\n02,3,0.3,0.01\n2,4,0.1,0.03\n"
        "3,5,0.2,0.02\n3,6,0.25,0.02\n"
    )
    with pytest.warns(
        mlmeta.errors.DataWarning, match="leading zeros .*'01' and '1' are different"
    ):
        d = mlmeta.io.read_table(p)
    assert d["study"].tolist() == ["01", "1", "02", "2", "3", "3"]
    assert d["es"].dtype.kind == "i"  # other whole-number columns stay numbers
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es")
    assert res.n_levels[0] == 5
    # a big file (fast path) decides the same from its first MiB
    rows = [f"{i % 50:03d},{i},0.1,0.01" for i in range(60_000)]
    p.write_text("study,es,yi,vi\n" + "\n".join(rows) + "\n")
    with pytest.warns(mlmeta.errors.DataWarning, match="leading zeros"):
        d = mlmeta.io.read_table(p)
    assert d["study"].iloc[:3].tolist() == ["000", "001", "002"]


def test_identical_effects_give_no_absurd_robust_test(base):
    d = base.copy()
    d["yi"] = 0.2
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", test="t")
    with pytest.raises(InputError, match="every residual is 0"):
        res.robust()


def test_a_back_quoted_column_name_is_named_not_a_formula_error(tmp_path, base):
    d = base.copy()
    d["a`b"] = d["phase"]
    toml = analysis(tmp_path, d, mods=["a`b"])
    msg = one_line_error(["run", toml, "--out", tmp_path / "rep"])
    assert msg == (
        "model.moderators: column 'a`b' has a back-quote (`) in its name, which a "
        "moderator formula cannot refer to; rename the column"
    )
    d = base.rename(columns={"phase": "my phase"})
    toml = analysis(tmp_path, d, mods=["my phase"])  # spaces are fine: back-quoted for it
    assert run(["run", toml, "--out", tmp_path / "rep", "-q"])[0] == 0


def test_a_negative_rho_is_refused_where_the_sampling_covariance_is_not_definite(base):
    res = mlmeta.rma_mv(base, "yi", "vi", random="study/es", rho=-0.3)  # clusters of <= 4
    assert res.converged
    with pytest.raises(
        InputError,
        match=r"rho = -0.5 makes the sampling covariance of study \d+ "
        r"\(4 effect sizes\) not positive definite: .* greater "
        r"than -1/3 = -0.3333",
    ):
        mlmeta.rma_mv(base, "yi", "vi", random="study/es", rho=-0.5)


# -------------------------------------------------------------- tied and constant effect sizes
def test_rank_test_on_identical_effects_is_undefined_not_significant(base):
    from mlmeta import pubbias

    d = base.copy()
    d["yi"] = 0.2
    # metafor 3.8-1 reports tau = -1.0000, p < .0001 here: the signs of ~1e-17 rounding
    # deviates decide it; before the fix mlmeta gave tau = 1, p = 1.6e-22
    r = pubbias.ranktest(d["yi"], d["vi"])
    assert np.isnan(r["tau"]) and np.isnan(r["pval"]) and r["available"] is False
    assert r["reason"].startswith("all effect sizes are equal")
    # the same after aggregation within studies, where equal effects differ in the last bits
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es")
    codes, _ = res.cluster_codes(None)
    agg = pubbias.aggregate(res.data.y, res.data.v, codes, 0.6)
    assert np.ptp(agg["yi"]) > 0  # the rounding noise is there
    assert np.isnan(pubbias.ranktest(agg["yi"], agg["vi"])["tau"])
    # equal sampling variances: tau undefined too (R: NA), with its reason
    r = pubbias.ranktest(np.arange(5.0), np.full(5, 0.05))
    assert np.isnan(r["pval"]) and "sampling variances are equal" in r["reason"]


def test_rank_test_with_partial_ties_agrees_with_metafor():
    from mlmeta import pubbias

    # Rscript: ranktest(yi, vi) -> tau 0.740797197487192, p 0.00517239578438894 (ties: the
    # normal approximation with the tie-corrected variance, as cor.test(exact = FALSE))
    yi = [0.1, 0.1, 0.1, 0.3, 0.5, 0.5, -0.2, 0.8, 0.25, 0.4]
    vi = [0.02, 0.02, 0.02, 0.04, 0.05, 0.05, 0.03, 0.09, 0.04, 0.06]
    r = pubbias.ranktest(yi, vi)
    assert r["tau"] == pytest.approx(0.740797197487192, rel=1e-12)
    assert r["pval"] == pytest.approx(0.00517239578438894, rel=1e-9)
    assert r["exact"] is False and "reason" not in r


def test_report_on_identical_effects_says_why_the_rank_test_is_missing(tmp_path, base):
    d = base.copy()
    d["yi"] = 0.2
    toml = analysis(tmp_path, d, mods=[], bias=True)
    code, out, err = run(["run", toml, "--out", tmp_path / "rep", "-q"])
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "could not be computed: all effect sizes are equal" in md
    assert "Kendall's τ =" not in md


def test_egger_keeps_the_model_based_test_when_its_cr2_version_is_undefined(tmp_path, base):
    d = base.copy()
    d["yi"] = 0.2
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", test="t")
    eg = res.egger()  # model-based: defined (slope 0, as the effects do not vary)
    assert eg.coef == pytest.approx(0, abs=1e-9) and eg.pval == pytest.approx(1, abs=1e-6)
    toml = analysis(tmp_path, d, mods=[], bias=True, extra="robust = true")
    code, out, err = run(["run", toml, "--out", tmp_path / "rep", "-q"])
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "The Egger test is not available" not in md
    para = next(line for line in md.splitlines() if line.startswith("Multilevel Egger"))
    assert "b = 0.000, SE = " in para and "p > .999" in para
    # the reason is the model's (every residual 0): said once, in the robust section
    assert para.endswith(
        "The CR2 robust version is not available for this model (see Sensitivity)."
    )
    assert (
        "CR2 cluster-robust inference is not available: every residual is 0 (the model "
        "fits the effect sizes exactly, e.g. they are all equal), so the cluster-robust "
        "variance is undefined."
    ) in md
    num = json.loads((tmp_path / "rep" / "results.json").read_text(encoding="utf-8"))
    egj = num["bias"]["egger"]
    assert egj["pval"] == pytest.approx(eg.pval, abs=1e-12) and egj["robust"]["available"] is False


@pytest.fixture()
def odd_names(base, tmp_path):
    d = base.copy()
    d["my col"] = d["phase"]
    d["2x"] = np.arange(len(d), dtype=float)
    d["2019"] = d["2x"]
    d["my-col"] = d["2x"]
    d.to_csv(tmp_path / "odd.csv", index=False)
    return d, tmp_path / "odd.csv"


@pytest.mark.parametrize(
    "mods, expect",
    [
        (
            "~ my col",
            "column 'my col' must be back-quoted in a formula (its name has a space): "
            "write `my col`",
        ),
        (
            "~ phase + my col",
            "column 'my col' must be back-quoted in a formula (its name has a "
            "space): write `my col`",
        ),
        (
            "~ 2x",
            "column '2x' must be back-quoted in a formula (its name starts with a digit): "
            "write `2x`",
        ),
        (
            "~ 2019",
            "column '2019' must be back-quoted in a formula (its name starts with a digit): "
            "write `2019`",
        ),
        (
            "~ factor(my-col)",
            "column 'my-col' must be back-quoted in a formula (its name has a "
            "character other than letters, digits, '_' and '.'): write `my-col`",
        ),
    ],
)
def test_an_unquoted_column_name_is_named_with_how_to_write_it(odd_names, mods, expect):
    d, path = odd_names
    with pytest.raises(InputError) as ei:
        mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods=mods)
    assert str(ei.value) == f"moderator formula {mods!r}: {expect}"
    msg = one_line_error(
        ["fit", path, "--yi", "yi", "--vi", "vi", "--random", "study/es", "--mods", mods]
    )
    assert msg == f"moderator formula {mods!r}: {expect}"


def test_back_quoted_odd_column_names_fit_through_api_and_cli(odd_names):
    d, path = odd_names
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ `my col` + `2x`")
    ref = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ phase + `2019`")
    assert res.coef_names == ("intrcpt", "my collate", "2x")
    np.testing.assert_allclose(res.beta, ref.beta, rtol=1e-10)
    code, out, err = run(
        [
            "fit",
            path,
            "--yi",
            "yi",
            "--vi",
            "vi",
            "--random",
            "study/es",
            "--mods",
            "~ `my col` + `2x`",
        ]
    )
    assert code == 0 and err == "", err
    assert "QM(df = 2)" in out
    # a formula that fails for another reason is not blamed on an odd name it does not use
    with pytest.raises(InputError, match="column 'nope' not found"):
        mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ `my col` + nope")


def _wide(n_clusters: int, per: int, P: int, seed: int) -> tuple[pd.DataFrame, str]:
    rng = np.random.default_rng(seed)
    n = n_clusters * per
    cols = {
        "study": np.repeat(np.arange(n_clusters), per),
        "es": np.arange(n),
        "yi": rng.normal(size=n),
        "vi": rng.uniform(0.01, 0.1, n),
    }
    cols.update({f"x{j}": rng.normal(size=n) for j in range(1, P + 1)})
    return pd.DataFrame(cols), "~ " + " + ".join(f"x{j}" for j in range(1, P + 1))


def test_a_seventy_coefficient_htz_test_agrees_with_clubsandwich():
    # the rank-n_c route of the HTZ moments (q p > 4472); the data as written by
    # np.random.default_rng(7) (columns study, es, yi, vi, x1..x70), and in R:
    # Wald_test(rma.mv(yi, vi, mods = ~ x1 + ... + x70, random = ~ 1 | study/es), constrain_zero(
    # 2:71), vcov = "CR2", cluster = study, test = "HTZ") -> F = 0, df_denom = -10.1805816837
    rng = np.random.default_rng(7)
    n = 300
    d = pd.DataFrame(
        {
            "study": np.repeat(np.arange(75), 4),
            "es": np.arange(n),
            "yi": rng.normal(size=n),
            "vi": rng.uniform(0.01, 0.1, n),
        }
    )
    for j in range(1, 71):
        d[f"x{j}"] = rng.normal(size=n)
    res = mlmeta.rma_mv(
        d, "yi", "vi", random="study/es", mods="~ " + " + ".join(f"x{j}" for j in range(1, 71))
    )
    rob = res.robust()
    assert rob.QM_df[0] == 70 and rob.QM_df[1] == pytest.approx(-10.1805816837, rel=1e-6)


def test_a_two_hundred_coefficient_cr2_test_in_seconds_and_bounded_memory():
    import tracemalloc

    d, mods = _wide(250, 4, 200, 1)
    res = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods=mods)
    tracemalloc.start()
    t0 = time.process_time()
    try:
        rob = res.robust()  # was: a 40,200 x 40,200 array (12 GB), then no HTZ test at all
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - t0 < 30
    assert peak < 1.5e9, peak
    assert rob.QM_df[0] == 200 and np.isfinite(rob.QM_df[1])


def test_random_levels_accept_the_back_quotes_a_moderator_formula_needs(odd_names):
    d, path = odd_names
    d = d.assign(**{"my study": d["study"]})
    res = mlmeta.rma_mv(d, "yi", "vi", random="`my study`/es", mods="~ `my col`")
    ref = mlmeta.rma_mv(d, "yi", "vi", random="study/es", mods="~ `my col`")
    assert res.n_levels == ref.n_levels and res.level_names[0] == "my study"
    np.testing.assert_allclose(res.sigma2, ref.sigma2, rtol=1e-8)
    res = mlmeta.rma_mv(d, "yi", "vi", random="~ 1 | `my study`/es")
    assert res.level_names[0] == "my study"
    d["out come"] = d["phase"]
    a = mlmeta.rma_mv(d, "yi", "vi", random="~ `out come` | study", struct="CS")
    b = mlmeta.rma_mv(d, "yi", "vi", random="~ phase | study", struct="CS")
    assert float(a.tau2.iloc[0]) == pytest.approx(float(b.tau2.iloc[0]), rel=1e-8)
    assert float(a.tau2.iloc[0]) == pytest.approx(0.00787, abs=5e-6)
