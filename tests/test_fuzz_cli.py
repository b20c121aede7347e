"""Fuzzing the command line: CSV bytes, analysis-file text and argument lists.

Whatever the input, ``mlmeta fit``/``run``/``init`` must end with exit status 0 or 2 (2: one
``mlmeta: error: ...`` line), print no traceback, write nothing outside the output folder (or
the ``init -o`` file) and delete or change nothing that existed before.

Two profiles: ``ci`` (the default; derandomised, about 30 s) and ``long`` for a search by hand::

    MLMETA_FUZZ=long .venv/bin/pytest -q tests/test_fuzz_cli.py   # ~2,000 examples per target

The data built here are SIMULATED (random numbers), not results of real studies.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlmeta.cli import main

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = "long" if os.environ.get("MLMETA_FUZZ") == "long" else "ci"


# ---------------------------------------------------------------- the sandbox
class Sandbox:
    """A fresh folder per example: ``work/`` is the current folder (with a precious file the
    user owns), ``keep/`` beside it must stay untouched."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="mlmeta-fuzz-"))
        self.work = self.root / "work"
        self.work.mkdir()
        (self.root / "keep").mkdir()
        (self.root / "keep" / "thesis.tex").write_text("keep me")
        (self.work / "precious.txt").write_text("mine")
        self.allowed: list[Path] = []

    def snapshot(self) -> dict[Path, bytes]:
        out = {}
        for p in self.root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                out[p] = p.read_bytes()
        return out

    def run(self, args) -> tuple[int, str, str]:
        before = self.snapshot()
        out, err = io.StringIO(), io.StringIO()
        old = os.getcwd()
        os.chdir(self.work)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main([str(a) for a in args])
        finally:
            os.chdir(old)
        after = self.snapshot()
        for p, data in before.items():  # nothing pre-existing deleted or changed
            if not any(p.is_relative_to(a) for a in self.allowed):
                assert after.get(p) == data, f"{p} was changed or deleted by {args!r}"
        for p in set(after) - set(before):  # nothing written outside the output
            assert any(p.is_relative_to(a) for a in self.allowed), (
                f"{p} written outside the output folder by {args!r}"
            )
        for p in self.root.parent.glob("pwned*"):
            raise AssertionError(f"{p} written outside the sandbox by {args!r}")
        e = err.getvalue()
        assert code in (0, 2), (code, args, e[-2000:])
        assert "Traceback" not in e, e
        for line in e.splitlines():
            assert line.startswith(("mlmeta: error: ", "mlmeta: warning: ")), (args, line)
        if code == 2:
            assert len([x for x in e.splitlines() if x.startswith("mlmeta: error: ")]) == 1, e
        return code, out.getvalue(), e

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def sandbox():
    sb = Sandbox()
    try:
        yield sb
    finally:
        sb.close()


# ---------------------------------------------------------------- strategies
NAMES = [
    "study",
    "es",
    "yi",
    "vi",
    "ri",
    "ni",
    "phase",
    "x",
    "../../pwned",
    "/tmp/pwned",
    "a b",
    "é",
    "e\u0301",
    "",
    " yi ",
    "yi",
    'q"uote',
    "new\nline",
    "tab\there",
    "`tick`",
    "<script>",
    "\x1b[31mred",
    "NA",
    "1",
    "factor(x)",
    "__import__('os')",
    "ü" * 40,
]
CELLS = [
    "0.1",
    "-0.3",
    "0.02",
    "1",
    "2",
    "0",
    "-1",
    "",
    "NA",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "5e-324",
    "1e150",
    "0,5",
    "a",
    "b",
    "é",
    '"x,y"',
    "TRUE",
    "01",
    "1+2j",
    " 3 ",
    "-0",
    "<b>",
    "\x1b[2J",
    "1e-300",
    "999999999999999999999",
]
DELIMS = [",", ";", "\t", "|"]
ENDINGS = ["\n", "\r\n", "\r"]


@st.composite
def csv_bytes(draw) -> bytes:
    ncol = draw(st.integers(1, 6))
    header = draw(
        st.lists(st.sampled_from(NAMES) | st.text(max_size=6), min_size=ncol, max_size=ncol)
    )
    nrow = draw(st.integers(0, 14))
    rows = [
        draw(
            st.lists(
                st.sampled_from(CELLS) | st.text(max_size=5),
                min_size=max(0, ncol - 1),
                max_size=ncol + 1,
            )
        )
        for _ in range(nrow)
    ]
    sep = draw(st.sampled_from(DELIMS))
    end = draw(st.sampled_from(ENDINGS))
    text = end.join(sep.join(r) for r in [header, *rows]) + end
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    try:
        raw = text.encode(enc)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    if draw(st.booleans()):
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + draw(st.binary(max_size=8)) + raw[i:]
    return raw


def good_table(draw) -> str:
    """A small valid data file (SIMULATED) so that deeper code is reached."""
    n = draw(st.integers(3, 12))
    yi = draw(
        st.lists(
            st.floats(-2, 2, allow_nan=False).map(lambda x: round(x, 3)), min_size=n, max_size=n
        )
    )
    vi = draw(st.lists(st.floats(0.001, 0.5).map(lambda x: round(x, 4)), min_size=n, max_size=n))
    studies = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    grp = draw(
        st.lists(st.sampled_from(["a", "b", "c", "<i>x</i>", "../p"]), min_size=n, max_size=n)
    )
    lines = ["study,es,yi,vi,grp,x"]
    for i in range(n):
        lines.append(f"{studies[i]},{i + 1},{yi[i]},{vi[i]},{grp[i]},{i % 3}")
    return "\n".join(lines) + "\n"


FIT_OPTS = st.lists(
    st.sampled_from(
        [
            ["--random", "study/es"],
            ["--random", "es"],
            ["--random", "none"],
            ["--random", "study/nope"],
            ["--mods", "~ grp"],
            ["--mods", "~ x"],
            ["--mods", "~ factor(x) + grp"],
            ["--mods", "~ ("],
            ["--mods", "~ __import__('os')"],
            ["--test", "t"],
            ["--dfs", "contain"],
            ["--method", "ML"],
            ["--level", "90"],
            ["--level", "0"],
            ["--level", "nan"],
            ["--sigma2", "NA,0"],
            ["--sigma2", "x"],
            ["--json"],
            ["--with", "I2,R2"],
            ["--with", "robust_cr2,egger"],
            ["--with", "nope"],
            ["--measure", "ZCOR"],
            ["--ri", "yi"],
            ["--ni", "study"],
        ]
    ),
    max_size=4,
)


# ---------------------------------------------------------------- targets
@settings(settings.get_profile(PROFILE))
@given(
    raw=csv_bytes(),
    yi=st.sampled_from(NAMES),
    vi=st.sampled_from(NAMES),
    opts=FIT_OPTS,
    suffix=st.sampled_from([".csv", ".tsv", ".txt", ".xlsx", ".parquet"]),
)
def test_fuzz_csv_bytes(raw, yi, vi, opts, suffix):
    with sandbox() as sb:
        p = sb.work / f"data{suffix}"
        p.write_bytes(raw)
        sb.run(["fit", p.name, "--yi", yi, "--vi", vi, *[a for o in opts for a in o]])
        sb.run(["init", p.name])


TOML_KEYS = {
    "": ["title", "simulated", "notice"],
    "data": ["file", "study", "n", "categorical", "example"],
    "effect": ["yi", "vi", "measure", "ri", "ni", "label"],
    "model": [
        "random",
        "method",
        "test",
        "dfs",
        "level",
        "rho",
        "rho_cluster",
        "cluster",
        "moderators",
        "joint",
        "sigma2",
    ],
    "analyses": ["profile", "lrt", "robust", "loo", "influence", "bias", "che_rhos", "bias_rho"],
}
TOML_VALUES = [
    '"study"',
    '"es"',
    '"yi"',
    '"vi"',
    '"grp"',
    '"x"',
    '"study/es"',
    '"REML"',
    '"t"',
    '"contain"',
    "95",
    "0.5",
    "1.5",
    "-2",
    "true",
    "false",
    '["grp"]',
    '["grp", "x"]',
    '["../../pwned"]',
    "[0, 0.5, 1.2]",
    '"data.csv"',
    '"../keep/thesis.tex"',
    '"/dev/zero"',
    '"nope.csv"',
    '"alliance_like"',
    "[[[]]]",
    '"\\u0000"',
    "1e400",
    "nan",
    "inf",
    "{a = 1}",
    '"<script>"',
    '"ZCOR"',
]


@st.composite
def toml_text(draw) -> str:
    sections = {
        "": {"title": '"fuzz"'},
        "data": {"file": '"data.csv"', "study": '"study"'},
        "effect": {"yi": '"yi"', "vi": '"vi"'},
        "model": {"random": '"study/es"'},
        "analyses": {},
    }
    for _ in range(draw(st.integers(0, 5))):
        sec = draw(st.sampled_from(list(TOML_KEYS)))
        key = draw(st.sampled_from(TOML_KEYS[sec]))
        sections[sec][key] = draw(st.sampled_from(TOML_VALUES))
    if draw(st.booleans()):
        sections["model"].pop(draw(st.sampled_from(list(sections["model"]) or ["random"])), None)
    # keep each example quick: no figures, no sensitivity sweeps
    sections["analyses"].update({"figures": "false", "che_sweep": "false"})
    lines = []
    for sec, kv in sections.items():
        if sec:
            lines.append(f"[{sec}]")
        lines += [f"{k} = {v}" for k, v in kv.items()]
    text = "\n".join(lines) + "\n"
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=6)) + text[i:]
    return text


@settings(settings.get_profile(PROFILE), max_examples=12 if PROFILE == "ci" else 1000)
@given(
    data=st.data(),
    toml=toml_text(),
    out=st.sampled_from(["rep", ".", "..", "../keep", "precious.txt", "sub/dir/rep"]),
)
def test_fuzz_analysis_files(data, toml, out):
    with sandbox() as sb:
        (sb.work / "data.csv").write_text(good_table(data.draw), encoding="utf-8")
        (sb.work / "a.toml").write_text(toml, encoding="utf-8", errors="surrogatepass")
        target = (sb.work / out).resolve()
        sb.allowed = [target]
        code, _, err = sb.run(["run", "a.toml", "--out", out, "-q"])
        if out in ("..", "../keep", "precious.txt"):
            assert code == 2, err  # never replaces the user's folders or files


CLI_TOKENS = [
    "fit",
    "run",
    "init",
    "demo",
    "--version",
    "--json",
    "--out",
    "-o",
    "--force",
    "--quiet",
    "--yi",
    "--vi",
    "--random",
    "--mods",
    "--level",
    "--with",
    "--measure",
    "--help-me",
    "data.csv",
    "a.toml",
    "nope.csv",
    "/dev/zero",
    ".",
    "..",
    "~ grp",
    "yi",
    "vi",
    "study/es",
    "ZCOR",
    "95",
    "-",
    "--",
    "",
    "x" * 300,
    "\x00",
    "é",
    "../keep/thesis.tex",
    "out.toml",
]


@settings(settings.get_profile(PROFILE), max_examples=30 if PROFILE == "ci" else 2000)
@given(data=st.data(), args=st.lists(st.sampled_from(CLI_TOKENS) | st.text(max_size=8), max_size=7))
def test_fuzz_command_line(data, args):
    assume(not args or args[0] not in ("app", "power"))  # a server; its own tests
    assume("demo" not in args[:1] or len(args) > 1)  # demo fits the example: covered elsewhere
    with sandbox() as sb:
        (sb.work / "data.csv").write_text(good_table(data.draw), encoding="utf-8")
        (sb.work / "a.toml").write_text(
            '[data]\nfile = "data.csv"\nstudy = "study"\n[effect]\nyi = "yi"\nvi = "vi"\n'
            '[model]\nrandom = "study/es"\n[analyses]\nfigures = false\nche_sweep = false\n'
            "profile = false\nloo = false\n",
            encoding="utf-8",
        )
        outs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "-o")]
        sb.allowed = [(sb.work / o).resolve() for o in outs if "\x00" not in o]
        if "init" in args[:1] and "--force" in args:
            sb.allowed += [sb.work / "a.toml", sb.work / "data.csv", sb.work / "precious.txt"]
        sb.run(args)


def test_the_ci_profile_is_the_default():
    assert PROFILE == "ci" or os.environ.get("MLMETA_FUZZ") == "long"
    assert settings.get_profile("ci").max_examples <= 30
    assert settings.get_profile("long").max_examples >= 1000


@pytest.mark.parametrize("args", [["fit", "-"], ["init", "../keep"], ["run", "/dev/zero"]])
def test_sandbox_catches_refusals(args):
    with sandbox() as sb:
        code, _, err = sb.run(args)
        assert code == 2 and err.startswith("mlmeta: error: ")
