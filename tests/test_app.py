"""Unit tests of the web page's pieces (no browser): column guessing, the controls <-> analysis
file mapping and its TOML writer, the upload limit, runs in a child process (with
cancellation), the results view and the ``mlmeta app`` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlmeta.app import mapping
from mlmeta.app.guess import column_info, guess_columns, simulated_example
from mlmeta.app.mapping import CONTROLS, controls_to_raw, default_values, dumps, raw_to_controls
from mlmeta.app.upload import UploadLimit, max_upload_bytes, too_large_message
from mlmeta.errors import MlmetaError
from mlmeta.examples import load_example
from mlmeta.io.analysis import SCHEMA, parse_analysis

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "mlmeta" / "examples" / "data"


# ---------------------------------------------------------------- guessing
def test_guess_correlations_studies_and_moderators():
    g = guess_columns(load_example("alliance_like").data)
    assert (g.mode, g.measure, g.effect) == ("r", "ZCOR", {"ri": "ri", "ni": "ni"})
    assert (g.study, g.es_id, g.participants) == ("study", "es", "ni")
    mods = {m.name: m for m in g.moderators}
    assert list(mods) == ["phase", "rater", "measure", "treatment"]  # not yi, vi, ids
    assert mods["phase"].guessed == "categorical" and mods["phase"].levels == ("early", "late")
    assert mods["phase"].choices == ("categorical",)  # text cannot be continuous
    assert mods["rater"].describe() == "categorical, 3 levels"


def test_guess_yi_vi_and_numeric_moderator_types():
    g = guess_columns(load_example("assink2016").data)
    assert (g.mode, g.measure, g.effect) == ("yi", None, {"yi": "yi", "vi": "vi"})
    assert (g.study, g.es_id) == ("study", "esid")
    mods = {m.name: m for m in g.moderators}
    assert mods["pubstatus"].guessed == "categorical"  # 0/1 codes
    assert mods["pubstatus"].choices == ("categorical", "continuous")
    assert mods["year"].guessed == "continuous"
    k = guess_columns(load_example("konstantopoulos2011").data)
    assert (k.study, k.es_id) == ("district", "school")
    assert {m.name: m.guessed for m in k.moderators} == {"year": "continuous"}  # years: not codes


def test_guess_smd_and_or_raw_columns():
    rng = np.random.default_rng(1)
    smd = pd.DataFrame(
        {
            "Study": [1, 1, 2, 2, 3],
            "m1i": rng.normal(size=5),
            "sd1i": [1.0] * 5,
            "n1i": [20] * 5,
            "m2i": rng.normal(size=5),
            "sd2i": [1.1] * 5,
            "n2i": [22] * 5,
            "dose": [1.5, 2.5, 3.1, 4.2, 5.9],
        }
    )
    g = guess_columns(smd)
    assert g.mode == "smd" and g.measure == "SMD" and g.study == "Study"
    assert g.effect == {c: c for c in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")}
    assert [m.name for m in g.moderators] == ["dose"]
    orr = pd.DataFrame(
        {
            "trial": range(6),
            "tpos": [4, 6, 3, 62, 33, 180],
            "tneg": [119, 300, 228, 13536, 5036, 1361],
            "cpos": [11, 29, 11, 248, 47, 372],
            "cneg": [128, 274, 209, 12619, 5761, 1079],
        }
    )
    g = guess_columns(orr)
    assert g.mode == "or" and g.effect == {"ai": "tpos", "bi": "tneg", "ci": "cpos", "di": "cneg"}
    assert g.study == "trial" and g.es_id is None


def test_guess_refuses_values_that_do_not_fit():
    df = pd.DataFrame({"r": [0.2, 1.4, 0.1], "n": [10, 20, 30], "x": ["a", "b", "c"]})
    g = guess_columns(df)  # |r| > 1: not a correlation
    assert g.mode is None and g.effect == {}
    df = pd.DataFrame({"yi": [0.2, 0.4], "vi": [0.01, -0.1], "g": ["a", "b"]})
    assert guess_columns(df).mode is None  # negative variance


def test_column_info_levels_and_missing():
    df = pd.DataFrame({"q": [1.0, 2.0, np.nan, 2.0], "t": ["b", "a", "b", None]})
    q = column_info(df, "q")
    assert (q.guessed, q.levels, q.n_missing) == ("categorical", ("1", "2"), 1)
    assert q.describe() == "categorical, 2 levels, 1 missing"
    assert column_info(df, "t").levels == ("a", "b")


def test_simulated_example_is_recognised_from_its_values():
    df = pd.read_csv(DATA / "alliance_like.csv")
    assert simulated_example(df) == "alliance_like"
    assert simulated_example(df.iloc[:, ::-1]) is None
    changed = df.copy()
    changed.loc[0, "ri"] = 0.5
    assert simulated_example(changed) is None
    assert simulated_example(load_example("crede2010").data) is None


# ---------------------------------------------------------------- mapping
def _key_in_schema(key: str) -> bool:
    parts = key.split(".")
    if len(parts) == 1:
        return parts[0] in SCHEMA
    return isinstance(SCHEMA.get(parts[0]), dict) and parts[1] in SCHEMA[parts[0]]


def test_every_control_names_one_analysis_file_key():
    ids = [c.id for c in CONTROLS]
    assert len(ids) == len(set(ids))
    for c in CONTROLS:
        assert _key_in_schema(c.key), c
    assert mapping.MODERATOR_TYPE_KEY == "data.categorical" and _key_in_schema("data.categorical")


def test_every_analysis_file_key_has_a_control_or_a_reason():
    """A key added to the schema must get a control (or a stated reason) here too."""
    covered = (
        {c.key for c in CONTROLS}
        | set(mapping.UNSUPPORTED)
        | set(mapping.WRITTEN)
        | {mapping.MODERATOR_TYPE_KEY, mapping.MODERATOR_REF_KEY}
    )
    covered |= {f"effect.{k}" for k in mapping.ESCALC_COLUMNS}
    keys = {k for k, v in SCHEMA.items() if not isinstance(v, dict)}
    keys |= {f"{k}.{k2}" for k, v in SCHEMA.items() if isinstance(v, dict) for k2 in v}
    assert keys - covered == set()
    assert set(mapping.UNSUPPORTED) <= keys  # no stale reasons


def test_choice_controls_offer_the_library_values():
    from mlmeta.app.api import CHOICES
    from mlmeta.io import analysis

    assert CHOICES["outlier_rule"] == tuple(analysis.OUTLIER_RULES)
    for cid, values in CHOICES.items():
        assert mapping.CONTROL_BY_ID[cid].default in values


def test_non_default_advanced_settings_are_written_and_read_back():
    v = _values(
        inference="CR2",
        selection_side="negative",
        selection_steps="0.025, 0.5",
        egger_predictor="se",
        outlier_rule="z1.96",
        forest_level="study",
        forest_sort="weight",
        bias_rho=0.3,
        che=True,
        rho=0.5,
        rho_cluster="study",
    )
    raw = controls_to_raw(v, "d.csv")
    assert raw["model"]["inference"] == "CR2" and raw["model"]["rho_cluster"] == "study"
    assert raw["analyses"]["selection_steps"] == [0.025, 0.5]
    assert raw["analyses"]["bias_rho"] == 0.3 and raw["analyses"]["outlier_rule"] == "z1.96"
    assert raw["report"] == {"forest_level": "study", "forest_sort": "weight"}
    parse_analysis({**raw, "data": {"example": "alliance_like"}}, None, "x")
    back, _, _ = raw_to_controls(raw)
    assert controls_to_raw(back, "d.csv") == raw
    # defaults are left to the file's own defaults
    plain = controls_to_raw(_values(), "d.csv")
    assert "report" not in plain and "bias_rho" not in plain["analyses"]
    assert "inference" not in plain["model"]


def _values(**kw):
    v = default_values()
    v.update(effect_mode="r", measure="ZCOR", eff_ri="ri", eff_ni="ni", study="study", es_id="es")
    v.update(kw)
    return v


def test_controls_to_raw_writes_the_analysis_file_keys():
    raw = controls_to_raw(
        _values(moderators=("phase", "rater"), che=True, rho=0.6, an_loo=False, title='A "title"'),
        "alliance_like.csv",
    )
    assert raw["title"] == 'A "title"'
    assert raw["data"] == {"file": "alliance_like.csv", "study": "study"}
    assert raw["effect"] == {"measure": "ZCOR", "ri": "ri", "ni": "ni"}
    assert raw["model"]["random"] == "study/es" and raw["model"]["rho"] == 0.6
    assert raw["model"]["moderators"] == ["phase", "rater"] and raw["model"]["joint"] is True
    assert (raw["model"]["test"], raw["model"]["dfs"]) == ("t", "contain")  # as the paper
    assert raw["analyses"]["loo"] is False and raw["analyses"]["che_sweep"] is False
    # two-level model, no moderators, z test (no dfs written)
    raw = controls_to_raw(_values(es_id=None, test="z"), "d.csv")
    assert raw["model"]["random"] == "study" and "dfs" not in raw["model"]
    assert "joint" not in raw["model"]


def test_numeric_moderators_set_to_categorical_go_to_data_categorical():
    raw = controls_to_raw(
        _values(moderators=("pubstatus", "deltype", "year")),
        "a.csv",
        {"pubstatus": "categorical", "deltype": "categorical", "year": "continuous"},
        {"pubstatus", "year"},
    )
    assert raw["data"]["categorical"] == ["pubstatus"]


def test_reference_level_select_maps_to_model_reference():
    """The page's reference-level select of each categorical moderator is model.reference: only
    chosen levels of listed moderators are written, and an uploaded file fills them back."""
    from mlmeta.app.server import reference_supported

    assert mapping.MODERATOR_REF_KEY == "model.reference"
    assert reference_supported()  # the schema accepts the key, so the page shows the select
    raw = controls_to_raw(
        _values(moderators=("phase", "rater")),
        "a.csv",
        {"phase": "categorical", "rater": "categorical"},
        set(),
        {"phase": "late", "rater": "", "gone": "x"},
    )
    assert raw["model"]["reference"] == {"phase": "late"}
    assert (
        "reference"
        not in controls_to_raw(
            _values(moderators=("phase",)), "a.csv", {"phase": "categorical"}, set(), {}
        )["model"]
    )
    text = dumps(raw)
    assert 'reference = { phase = "late" }' in text
    back = tomllib.loads(text)
    ex = {**back, "data": {"example": "alliance_like"}}
    assert parse_analysis(ex, None, "a.toml").reference == {"phase": "late"}
    _, types, refs = raw_to_controls(back)
    assert refs == {"phase": "late"} and types == {"phase": "", "rater": ""}
    # a number as the level (a numeric column listed in data.categorical) comes back as the
    # label the select shows
    up = {
        **back,
        "data": {**back["data"], "categorical": ["pubstatus"]},
        "model": {**back["model"], "moderators": ["pubstatus"], "reference": {"pubstatus": 1}},
    }
    _, types, refs = raw_to_controls(up)
    assert types == {"pubstatus": "categorical"} and refs == {"pubstatus": "1"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"eff_ri": None}, r"choose the column of Correlation column \(r\)"),
        ({"study": None}, "an effect-size id needs a study column"),
        ({"es_id": "study"}, "must differ; both are 'study'"),
        ({"che": True, "rho": None}, r"Assumed sampling correlation ρ: give a number"),
        ({"che_rhos": "0, x"}, r"ρ values of the CHE sweep: 'x' is not a number"),
        ({"effect_mode": "zz"}, "effect-size input must be one of r, yi, smd, or, other; got 'zz'"),
    ],
)
def test_controls_to_raw_errors_name_the_control(kw, match):
    with pytest.raises(MlmetaError, match=match):
        controls_to_raw(_values(**kw), "d.csv")


def test_no_data_is_an_error():
    with pytest.raises(MlmetaError, match="no data: upload a data file or choose an example"):
        controls_to_raw(_values(), None)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.stem)
def test_analysis_files_fill_the_controls_and_come_back_the_same(path):
    """Every bundled analysis file -> controls -> analysis file gives the same analysis."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    spec = parse_analysis(raw, path, path.name)
    values, types, refs = raw_to_controls(raw)
    numeric = set(raw.get("data", {}).get("categorical", ()))
    back = controls_to_raw(values, None, types, numeric, refs)
    spec2 = parse_analysis(tomllib.loads(dumps(back)), path, path.name)
    a, b = spec.to_dict(), spec2.to_dict()
    a["data"].pop("n"), b["data"].pop("n")  # effect.ni is also data.n's default
    assert a == b


def test_raw_to_controls_refuses_what_the_page_cannot_show():
    base = {"data": {"file": "d.csv"}, "effect": {"yi": "yi", "vi": "vi"}}
    with pytest.raises(MlmetaError, match="has 3 levels; the page offers two"):
        raw_to_controls({**base, "model": {"random": "a/b/c"}})
    with pytest.raises(
        MlmetaError, match="model.random with 2 terms: the page fits effects nested in studies"
    ):
        raw_to_controls({**base, "model": {"random": ["~ 1 | a/b", "~ 1 | lab"]}})
    with pytest.raises(MlmetaError, match=r"model.random = '~ outcome \| trial': the page"):
        raw_to_controls({**base, "model": {"random": "~ outcome | trial"}})
    with pytest.raises(MlmetaError, match="model.V: the page fits effects nested in studies"):
        raw_to_controls({**base, "model": {"random": "a/b", "V": "V.csv"}})
    v, _, _ = raw_to_controls({**base, "model": {"random": ["~ 1 | a/b"]}})
    assert (v["study"], v["es_id"]) == ("a", "b")
    with pytest.raises(
        MlmetaError,
        match="report.templates: the page uses the report's own "
        "templates; run this file with mlmeta run",
    ):
        raw_to_controls({**base, "report": {"templates": "t/"}})
    with pytest.raises(MlmetaError, match="data.study without model.random"):
        raw_to_controls({**base, "data": {"file": "d.csv", "study": "s"}})
    with pytest.raises(MlmetaError, match="is not the outer level of model.random"):
        raw_to_controls(
            {**base, "data": {"file": "d.csv", "study": "s"}, "model": {"random": "a/b"}}
        )


def test_every_measure_of_the_library_and_its_column_sets_round_trip():
    for measure, forms in mapping.FORMS.items():
        for i, form in enumerate(forms):
            raw = {
                "data": {"file": "d.csv"},
                "effect": {"measure": measure, **{a: f"col_{a}" for a in form}},
                "model": {
                    "random": "none",
                    "method": "REML",
                    "test": "t",
                    "dfs": "contain",
                    "level": 95.0,
                    "moderators": [],
                },
            }
            v, types, refs = raw_to_controls(raw)
            assert v["measure"] == measure and v["effect_form"] == str(i)
            back = controls_to_raw(v, "d.csv", types, set(), refs)
            assert back["effect"] == raw["effect"], (measure, form)
            parse_analysis({**back, "data": {"example": "alliance_like"}}, None, "x")


def test_effect_columns_that_are_no_column_set_are_refused():
    with pytest.raises(
        MlmetaError,
        match=r"the columns ai, bi are not one of the column sets "
        r"of OR \(ai, bi, ci, di; ",
    ):
        raw_to_controls(
            {"data": {"file": "d.csv"}, "effect": {"measure": "OR", "ai": "a", "bi": "b"}}
        )
    with pytest.raises(MlmetaError, match="effect.measure must be one of COR, "):
        raw_to_controls({"data": {"file": "d.csv"}, "effect": {"measure": "XX", "ai": "a"}})


def test_raw_to_controls_reads_smd_and_or_inputs():
    v, _, _ = raw_to_controls(
        {
            "data": {"file": "d.csv"},
            "effect": {
                "measure": "SMD",
                **{c: c.upper() for c in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")},
            },
        }
    )
    assert v["effect_mode"] == "smd" and v["eff_sd2i"] == "SD2I" and v["measure"] == "SMD"
    v, _, _ = raw_to_controls(
        {
            "data": {"file": "d.csv"},
            "effect": {"measure": "OR", "ai": "a", "bi": "b", "ci": "c", "di": "d"},
        }
    )
    assert v["effect_mode"] == "or" and v["eff_di"] == "d"
    v, _, _ = raw_to_controls(
        {
            "data": {"file": "d.csv"},
            "effect": {"measure": "RR", "ai": "a", "bi": "b", "ci": "c", "n2i": "n"},
        }
    )
    assert (v["effect_mode"], v["effect_form"], v["eff_n2i"]) == ("or", "1", "n")
    v, _, _ = raw_to_controls(
        {"data": {"file": "d.csv"}, "effect": {"measure": "PLO", "xi": "x", "ni": "n"}}
    )
    assert (v["effect_mode"], v["measure"], v["effect_form"]) == ("other", "PLO", "1")


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(
    title=_text,
    col=_text.filter(lambda s: s.strip() != ""),
    level=st.floats(50, 99.9),
    rhos=st.lists(st.floats(-0.99, 0.99), min_size=1, max_size=6),
)
def test_toml_writer_round_trips_exactly(title, col, level, rhos):
    raw = controls_to_raw(_values(title=title, eff_ri=col, level=level, che_rhos=rhos), "d.csv")
    assert tomllib.loads(dumps(raw, header="line 1\nline 2")) == raw


def test_toml_writer_refuses_non_finite_numbers():
    with pytest.raises(MlmetaError, match="non-finite number"):
        dumps({"model": {"level": float("nan")}})


# ---------------------------------------------------------------- upload limit
def _asgi(app, path: str, body_chunks, headers=()):
    """Call an ASGI app with a POST; (status, body, what the inner app received)."""
    sent = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(body_chunks) - 1}
        for i, c in enumerate(body_chunks)
    ]

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "path": path, "headers": list(headers)}
    asyncio.run(app(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


class _Inner:
    """Stands for Shiny's upload endpoint: reads the body until the end or a disconnect."""

    def __init__(self):
        self.got = b""
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise RuntimeError("client disconnected")
            self.got += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"OK"})


def test_upload_limit_refuses_a_declared_length_without_reading():
    inner = _Inner()
    status, body = _asgi(
        UploadLimit(inner, 100), "/session/abc/upload/1", [b"x" * 10], [(b"content-length", b"101")]
    )
    assert status == 413 and inner.calls == 0
    assert body.decode() == too_large_message(100, 101)


def test_upload_limit_cuts_a_streamed_body_at_the_limit():
    inner = _Inner()
    status, body = _asgi(UploadLimit(inner, 100), "/session/abc/upload/1", [b"x" * 60] * 3)
    assert status == 413 and len(inner.got) == 60  # the chunk over the limit never arrives
    assert b"uploads are limited to 100 bytes" in body


def test_upload_limit_passes_small_uploads_and_other_paths():
    inner = _Inner()
    status, body = _asgi(
        UploadLimit(inner, 100),
        "/session/abc/upload/1",
        [b"x" * 50] * 2,
        [(b"content-length", b"100")],
    )
    assert (status, body, len(inner.got)) == (200, b"OK", 100)
    inner = _Inner()
    status, _ = _asgi(UploadLimit(inner, 10), "/other", [b"x" * 50])
    assert status == 200 and inner.got == b"x" * 50


def test_upload_limit_from_the_environment(monkeypatch):
    monkeypatch.delenv("MLMETA_APP_MAX_UPLOAD", raising=False)
    assert max_upload_bytes() == 100 * 1024 * 1024
    monkeypatch.setenv("MLMETA_APP_MAX_UPLOAD", "2048")
    assert max_upload_bytes() == 2048
    monkeypatch.setenv("MLMETA_APP_MAX_UPLOAD", "lots")
    assert max_upload_bytes() == 100 * 1024 * 1024
    assert too_large_message(100 * 1024 * 1024, 150 * 1024 * 1024) == (
        "the file is too large (150 MB): uploads are limited to 100 MB; run large data sets "
        "with mlmeta run on the command line"
    )


# ---------------------------------------------------------------- runs in a child process
LIGHT = {"profile": False, "loo": False, "bias": False, "che_sweep": False, "figures": False}


def _write_analysis(folder: Path, **analyses) -> str:
    import shutil

    shutil.copy(DATA / "konstantopoulos2011.csv", folder / "k.csv")
    raw = controls_to_raw(
        {
            **default_values(),
            "effect_mode": "yi",
            "measure": "",
            "eff_yi": "yi",
            "eff_vi": "vi",
            "study": "district",
            "es_id": "school",
            "moderators": ("year",),
            **{f"an_{k}": v for k, v in {**LIGHT, **analyses}.items()},
        },
        "k.csv",
    )
    (folder / "k.toml").write_text(dumps(raw), encoding="utf-8")
    return "k.toml"


def _wait_job(job, timeout=120):
    deadline = time.monotonic() + timeout
    while not job.finished and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.05)
    assert job.finished, job.state
    return job.state


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from mlmeta.app.runner import Job

    d = tmp_path_factory.mktemp("run")
    name = _write_analysis(d)
    job = Job(d, name, "report-1")
    job.start()
    st_ = _wait_job(job)
    assert st_.status == "done", st_
    return job


@pytest.mark.slow  # the first run starts the fork server (imports the report machinery)
def test_run_in_a_child_process_writes_the_report_folder(finished_run, tmp_path, monkeypatch):
    out = finished_run.out_dir
    n = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert n["data"]["k"] == 56 and n["settings"]["model"]["random"] == "district/school"
    assert n["command"] == "mlmeta run k.toml"
    # the same numbers as mlmeta run from the command line
    from mlmeta.cli import main

    monkeypatch.chdir(finished_run.workdir)
    assert main(["run", "k.toml", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text(encoding="utf-8"))
    assert cli["overall"] == n["overall"] and cli["heterogeneity"] == n["heterogeneity"]
    assert cli["moderators"] == n["moderators"]


def test_run_errors_have_the_command_line_words(tmp_path):
    from mlmeta.app.runner import Job

    name = _write_analysis(tmp_path)
    text = (tmp_path / name).read_text().replace('moderators = ["year"]', 'moderators = ["yaer"]')
    (tmp_path / name).write_text(text)
    job = Job(tmp_path, name, "out")
    job.start()
    st_ = _wait_job(job)
    assert st_.status == "error"
    assert st_.message.startswith("model.moderators: column 'yaer' not found in the data")
    assert "did you mean 'year'?" in st_.message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cancel_ends_the_run_and_removes_its_files(tmp_path):
    from mlmeta.app.runner import Job

    name = _write_analysis(tmp_path, profile=True, loo=True, bias=True, figures=True)
    job = Job(tmp_path, name, ".runs/out")
    job.start()
    deadline = time.monotonic() + 120
    while job.state.label == "starting" and time.monotonic() < deadline:  # a long step began
        job.poll()
        time.sleep(0.05)
    assert job.state.label != "starting" and not job.finished, job.state
    assert (tmp_path / ".runs").is_dir()  # run_report is writing its temporary folder
    pid = job._proc.pid
    job.cancel()
    assert job.state.status == "cancelled" and job.finished
    assert not job._proc.is_alive()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the figure workers of the run are gone too
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.is_dir()) == ["k.csv", "k.toml"]
    # no temporary report folder left (run_report also removes the parent it created)
    assert not (tmp_path / ".runs").exists() or list((tmp_path / ".runs").iterdir()) == []


# ---------------------------------------------------------------- results view
def _png() -> bytes:
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))  # 2x2 red
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.slow
def test_result_view_shows_the_report_numbers_and_figures(finished_run, tmp_path):
    import io
    import shutil
    import zipfile

    from shiny import ui

    from mlmeta.app.api import build_document
    from mlmeta.app.results import load_result, result_view, zip_folder

    out = tmp_path / "report"
    shutil.copytree(finished_run.out_dir, out)
    # a figure as run_report lists it (the run itself had figures switched off)
    (out / "figures").mkdir()
    (out / "figures" / "forest.png").write_bytes(_png())
    n = json.loads((out / "results.json").read_text(encoding="utf-8"))
    n["figures"] = [
        {
            "name": "forest",
            "number": 1,
            "caption": "Forest plot.",
            "png": "figures/forest.png",
            "svg": "figures/forest.svg",
        }
    ]
    (out / "results.json").write_text(json.dumps(n), encoding="utf-8")
    res = load_result(out, "k.toml", "toml", "k.csv")
    assert res.figures["forest"]["png"] == _png()
    html = str(result_view(res, build_document, ui.navset_underline, ui.nav_panel))
    assert n["overall"]["apa"] in html and n["overall"]["pi_text"] in html
    assert 'data-figure="forest"' in html and "data:image/png;base64," in html
    assert "Figure 1. " in html and "Forest plot." in html
    assert "Data: k.csv" in html and str(finished_run.workdir) not in html
    for title in ("Overall effect", "Heterogeneity", "Moderators", "Methods"):
        assert f">{title}</a>" in html
    with zipfile.ZipFile(io.BytesIO(zip_folder(out, "k-report"))) as z:
        assert {
            "k-report/results.json",
            "k-report/report.html",
            "k-report/figures/forest.png",
        } <= set(z.namelist())


def test_blocks_are_escaped():
    from mlmeta.app.results import blocks_view

    head, sections = blocks_view(
        [
            {"t": "p", "text": "<script>alert(1)</script>", "cls": None},
            {"t": "h", "level": 2, "text": "Overall effect", "id": "overall"},
            {
                "t": "table",
                "caption": "c<b>",
                "head": ["a", "b"],
                "rows": [["<i>", "2"]],
                "align": "lr",
                "note": None,
                "id": "t",
            },
        ],
        {},
    )
    assert "<script>" not in str(head[0]) and "&lt;script&gt;" in str(head[0])
    sid, title, content = sections[0]
    assert (sid, title) == ("overall", "Overall effect")
    assert "&lt;i&gt;" in str(content[0]) and 'class="text-end"' in str(content[0])


# ---------------------------------------------------------------- server helpers
def test_safe_file_name():
    from mlmeta.app.server import safe_file_name

    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("C:\\data\\my file.csv") == "my file.csv"
    assert safe_file_name(".hidden.csv") == "hidden.csv"
    assert safe_file_name("") == "data.csv"


def test_reference_key_is_offered_only_when_the_schema_has_it():
    from mlmeta.app.server import reference_supported

    assert reference_supported() == ("reference" in SCHEMA["model"])


# ---------------------------------------------------------------- mlmeta app
def test_app_help_does_not_import_shiny():
    code = (
        "import sys; from mlmeta.cli import build_parser; "
        "a = build_parser().parse_args(['app', '--port', '9', '--no-browser']); "
        "print(a.port, a.no_browser, a.host, 'shiny' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.stdout.split() == ["9", "True", "127.0.0.1", "False"], out.stderr


def test_missing_shiny_is_one_line(monkeypatch, capsys):
    from mlmeta.cli import main

    monkeypatch.setitem(sys.modules, "shiny", None)  # import shiny -> ImportError
    assert main(["app", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err == "mlmeta: error: the web page needs Shiny: pip install 'mlmeta[app]'\n"


def test_has_display():
    from mlmeta.app.cli import has_display

    assert has_display("darwin", {}) and has_display("win32", {})
    assert not has_display("linux", {})
    assert has_display("linux", {"DISPLAY": ":0"}) and has_display(
        "linux", {"WAYLAND_DISPLAY": "w"}
    )


def test_busy_port_is_an_error_and_the_default_falls_back():
    from mlmeta.app.cli import DEFAULT_PORT, _bind

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(
            MlmetaError,
            match=rf"--port {port}: cannot listen on "
            rf"127\.0\.0\.1:{port}",
        ):
            _bind("127.0.0.1", port)
    sock = _bind("127.0.0.1", None)
    try:
        assert sock.getsockname()[1] > 0
        if sock.getsockname()[1] == DEFAULT_PORT:  # 8765 was free: now it is taken
            other = _bind("127.0.0.1", None)
            assert other.getsockname()[1] != DEFAULT_PORT
            other.close()
    finally:
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_app_stops_cleanly_on_signals(tmp_path, sig):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("DISPLAY", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlmeta.cli", "app", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    assert line.startswith(f"mlmeta app: http://127.0.0.1:{port}/"), proc.stderr.read()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("mlmeta-app-")]
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
        assert r.status == 200 and b"Run analysis" in r.read()
    proc.send_signal(sig)
    assert proc.wait(30) == 0
    assert "mlmeta app: stopped" in proc.stderr.read()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("mlmeta-app-")]


def test_cancel_before_start_never_starts_the_run(tmp_path):
    from mlmeta.app.runner import Job

    name = _write_analysis(tmp_path)
    job = Job(tmp_path, name, "out")
    job.cancel()
    job.start()
    assert job.state.status == "cancelled" and job._proc is None
    assert not (tmp_path / "out").exists()


def test_reference_levels_map_to_model_reference():
    """Written only for moderators that are chosen; read back as they were."""
    raw = controls_to_raw(
        _values(moderators=("phase", "rater")),
        "d.csv",
        {"phase": "categorical", "rater": "categorical"},
        set(),
        {"phase": "late", "treatment": "CBT", "rater": ""},
    )
    assert raw["model"]["reference"] == {"phase": "late"}
    assert tomllib.loads(dumps(raw))["model"]["reference"] == {"phase": "late"}
    _, _, refs = raw_to_controls(raw)
    assert refs == {"phase": "late"}
    assert "reference" not in controls_to_raw(_values(moderators=("phase",)), "d.csv")["model"]
