"""The page's server: small reactive steps that call the library, one temporary folder per
browser session.

Flow: a data file (or a bundled example) is read with :func:`mlmeta.io.read_table`, its columns
are guessed (:mod:`mlmeta.app.guess`) and shown in the controls; *Run analysis* turns the
controls into an analysis file (:mod:`mlmeta.app.mapping`), validates it with
:func:`~mlmeta.io.analysis.parse_analysis` and runs it in a child process
(:mod:`mlmeta.app.runner`) inside a :func:`shiny.reactive.extended_task`, so the page stays
responsive and *Cancel* ends the run; the finished report folder is shown
(:mod:`mlmeta.app.results`) and offered as a zip together with the analysis file that
reproduces it.

Errors are shown on the page in the command line's words (``MlmetaError`` messages, one line);
any other exception is caught and shown as an internal error, so a session never crashes. Each
session works in its own folder (``<root>/session-*``), removed when the session ends.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from htmltools import TagList, tags
from shiny import reactive, render, ui
from shiny.types import SilentException

from mlmeta.app import api
from mlmeta.app.guess import Guess, column_info, guess_columns, simulated_example
from mlmeta.app.mapping import (
    CONTROLS,
    MEASURE_CHOICES,
    controls_to_raw,
    dumps,
    effect_columns,
    format_numbers,
    raw_to_controls,
)
from mlmeta.app.results import RunResult, load_result, result_view, zip_folder
from mlmeta.app.runner import Job
from mlmeta.app.ui import RADIO_IDS, form_labels, measure_labels
from mlmeta.app.upload import too_large_message

__all__ = ["Dataset", "make_server", "reference_supported", "safe_file_name"]


@dataclass
class Dataset:
    """The data of a session: a file in the session folder or a bundled example."""

    name: str  # file name (in the session folder) or example name
    frame: pd.DataFrame
    example: str | None = None
    simulated: str | None = None  # name of the simulated example it is, if any
    guess: Guess | None = None
    notice: str | None = None
    columns: list[str] = field(default_factory=list)

    @property
    def numeric(self) -> set[str]:
        return {
            c
            for c in self.columns
            if pd.api.types.is_numeric_dtype(self.frame[c])
            and not pd.api.types.is_bool_dtype(self.frame[c])
        }

    @property
    def stem(self) -> str:
        return self.example or Path(self.name).stem


_REF_SUPPORTED: list[bool] = []


def reference_supported() -> bool:
    """Does the analysis-file schema have ``model.reference`` (moderator -> reference level)?"""
    if not _REF_SUPPORTED:
        raw = {
            "data": {"example": "alliance_like"},
            "effect": {"yi": "yi", "vi": "vi"},
            "model": {"moderators": ["phase"], "reference": {"phase": "late"}},
        }
        try:
            api.parse_analysis(raw, None, "probe")
            ok = True
        except api.MlmetaError:
            ok = False
        _REF_SUPPORTED.append(ok)
    return _REF_SUPPORTED[0]


def safe_file_name(name: str) -> str:
    """A file name that is safe in the session folder (no folders, no leading dots)."""
    base = Path(str(name).replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f/:*?\"<>|]", "_", base).strip().lstrip(".")
    return base[:120] or "data.csv"


def _first_line(exc: BaseException) -> str:
    s = str(exc)
    return s.splitlines()[0] if s else type(exc).__name__


def make_server(root: Path, examples: dict):
    """The Shiny server function; session folders go under ``root``."""

    def server(input, output, session):
        sdir = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        work = sdir / "work"
        work.mkdir()
        state: dict[str, Any] = {
            "job": None,
            "run_no": 0,
            "gen": 0,
            "mods": {},
            "last_refused": None,
        }
        dataset: reactive.Value[Dataset | None] = reactive.value(None)
        notes: reactive.Value[tuple] = reactive.value(())
        result: reactive.Value[RunResult | None] = reactive.value(None)
        pending: reactive.Value[dict | None] = reactive.value(None)
        details_gen = reactive.value(0)

        def cleanup():
            job = state.get("job")
            if job is not None and not job.finished:
                job.cancel(timeout=2)
            shutil.rmtree(sdir, ignore_errors=True)

        session.on_ended(cleanup)

        # ------------------------------------------------------------ messages
        def say(kind: str, text: str, replace: bool = True) -> None:
            with reactive.isolate():
                old = () if replace else notes.get()
            notes.set(old + ((kind, text),))

        def say_error(exc: BaseException) -> None:
            if isinstance(exc, api.MlmetaError):
                say("error", _first_line(exc))
            else:
                say(
                    "error",
                    f"internal error ({type(exc).__name__}: {_first_line(exc)}); please report it",
                )

        def clean(text: str) -> str:
            """Messages name files as the person knows them, never the session folder."""
            for p in (str(work) + "/", str(work)):
                text = text.replace(p, "")
            return text

        @render.ui
        def messages():
            items = []
            for kind, text in notes.get():
                if kind == "error":
                    items.append(
                        tags.div(
                            tags.strong("Error: "),
                            tags.span(text, class_="mlmeta-error-text"),
                            class_="alert alert-danger py-2 mb-2",
                            role="alert",
                        )
                    )
                elif kind == "warning":
                    items.append(
                        tags.div(text, class_="alert alert-warning py-2 mb-2", role="alert")
                    )
                else:
                    items.append(tags.div(text, class_="alert alert-info py-2 mb-2", role="status"))
            return TagList(*items)

        # ------------------------------------------------------------ data in
        def set_dataset(ds: Dataset, raw: dict | None) -> None:
            ds.columns = [str(c) for c in ds.frame.columns]
            ds.frame.columns = ds.columns
            ds.guess = guess_columns(ds.frame)
            state["mods"] = {}
            state["gen"] += 1
            dataset.set(ds)
            result.set(None)
            apply_controls(ds, raw)
            ui.update_navset("main_tabs", selected="data")

        def read_upload(fileinfo: dict) -> None:
            name = safe_file_name(fileinfo["name"])
            dest = work / name
            shutil.copyfile(fileinfo["datapath"], dest)
            try:
                df = api.read_table(dest)
            except api.MlmetaError as exc:
                dest.unlink(missing_ok=True)
                raise api.InputError(
                    clean(_first_line(exc)).replace(repr(str(dest)), repr(name))
                ) from None
            sim = simulated_example(df)
            ds = Dataset(name=name, frame=df, simulated=sim)
            raw = None
            with reactive.isolate():
                pend = pending.get()
            if pend is not None and Path(pend["data"].get("file", "")).name == name:
                raw = pend
                pending.set(None)
            set_dataset(ds, raw)
            msg = f"Read {name}: {len(df)} rows, {df.shape[1]} columns."
            if raw is not None:
                msg += " Settings filled in from the analysis file."
            else:
                msg += " The columns below are guesses: check them before you run."
            say("info", msg)
            if sim:
                say(
                    "warning",
                    f"SIMULATED DATA: {name} is the bundled simulated example "
                    f"'{sim}', not results of real studies.",
                    replace=False,
                )

        @reactive.effect
        @reactive.event(input.data_file)
        def _on_data_file():
            files = input.data_file()
            if not files:
                return
            try:
                read_upload(files[0])
            except Exception as exc:  # noqa: BLE001 -- shown on the page
                dataset.set(None)
                say_error(exc)

        def use_example(name: str, raw: dict | None) -> None:
            if name not in examples:
                raise api.InputError(f"unknown example {name!r}; available: {', '.join(examples)}")
            ex = api.load_example(name)
            ds = Dataset(
                name=name,
                frame=ex.data.copy(),
                example=name,
                simulated=name if ex.simulated else None,
                notice=ex.notice,
            )
            set_dataset(ds, raw)
            ui.update_select("example", selected=name)
            say("info", f"Using the bundled example '{name}': {ex.title}.")
            if ex.simulated:
                say("warning", ex.notice, replace=False)

        @reactive.effect
        @reactive.event(input.use_example)
        def _on_example():
            name = input.example()
            try:
                if not name:
                    raise api.InputError("choose an example first")
                use_example(name, None)
            except Exception as exc:  # noqa: BLE001
                say_error(exc)

        @reactive.effect
        @reactive.event(input.analysis_file)
        def _on_analysis_file():
            files = input.analysis_file()
            if not files:
                return
            name = safe_file_name(files[0]["name"])
            try:
                raw = read_analysis_file(Path(files[0]["datapath"]), name)
                ex = raw["data"].get("example")
                if ex is not None:
                    use_example(ex, raw)
                    say(
                        "info",
                        f"Settings filled in from {name} (bundled example '{ex}').",
                        replace=False,
                    )
                    return
                want = Path(raw["data"]["file"]).name
                with reactive.isolate():
                    ds = dataset.get()
                if ds is not None and ds.example is None and ds.name == want:
                    apply_controls(ds, raw)
                    say("info", f"Settings filled in from {name}.")
                else:
                    pending.set(raw)
                    say(
                        "info",
                        f"{name} reads its data from {want!r}: choose that data file "
                        "now (1 · Data) and the settings will be filled in.",
                    )
            except Exception as exc:  # noqa: BLE001
                say_error(exc)

        def read_analysis_file(path: Path, name: str) -> dict:
            try:
                text = path.read_bytes().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise api.InputError(f"{name}: not UTF-8 text") from None
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise api.InputError(f"{name}: invalid TOML: {_first_line(exc)}") from None
            # the same checks as mlmeta run (keys, types, values), without the data file
            probe = {
                **raw,
                "data": {k: v for k, v in dict(raw.get("data") or {}).items() if k != "file"},
            }
            if "file" in dict(raw.get("data") or {}) and "example" not in probe["data"]:
                probe["data"]["example"] = next(iter(examples))
            api.parse_analysis(probe, None, name)
            raw_to_controls(raw)  # refuses what the page cannot show
            return raw

        @reactive.effect
        @reactive.event(input.upload_refused)
        def _on_refused():
            info = input.upload_refused()
            if info:
                say("error", too_large_message(int(info["limit"]), int(info["size"])))

        # ------------------------------------------------------------ controls
        def column_choices(ds: Dataset | None) -> dict[str, str]:
            out = {"": "(none)"}
            if ds is not None:
                out.update({c: c for c in ds.columns})
            return out

        def moderator_choices(ds: Dataset, exclude: set[str]) -> dict[str, str]:
            out = {}
            for c in ds.columns:
                if c in exclude:
                    continue
                info = column_info(ds.frame, c)
                if len(info.levels) < 2 and info.guessed == "categorical":
                    continue
                out[c] = f"{c} ({info.describe()})"
            return out

        def apply_controls(ds: Dataset, raw: dict | None) -> None:
            """Fill the controls from an analysis file, else from the guesses."""
            g = ds.guess
            if raw is not None:
                values, types, refs = raw_to_controls(raw)
            else:
                values = {c.id: c.default for c in CONTROLS}
                types, refs = {}, {}
                if g is not None:
                    values["effect_mode"] = g.mode or "yi"
                    if g.measure:
                        values["measure"] = g.measure
                    elif values["effect_mode"] == "yi":
                        values["measure"] = ""
                    for k, col in g.effect.items():
                        values[f"eff_{k}"] = col
                    values["study"] = g.study
                    values["es_id"] = g.es_id
                    values["participants"] = None if g.mode == "r" else g.participants
                values["example"] = ds.example or ""
            values["simulated"] = bool(values.get("simulated")) or ds.simulated is not None
            if ds.example and not values.get("example"):
                values["example"] = ds.example
            cols = column_choices(ds)
            for c in CONTROLS:
                v = values.get(c.id, c.default)
                if c.kind == "column":
                    sel = v if v in cols else ""
                    ui.update_select(c.id, choices=cols, selected=sel)
                elif c.kind == "text":
                    ui.update_text(c.id, value=v or "")
                elif c.kind == "bool":
                    ui.update_checkbox(c.id, value=bool(v))
                elif c.kind == "number":
                    ui.update_numeric(c.id, value=v)
                elif c.kind == "numbers":
                    ui.update_text(c.id, value=format_numbers(v))
                elif c.id in RADIO_IDS:
                    ui.update_radio_buttons(c.id, selected=v)
                elif c.id in api.CHOICES:
                    ui.update_select(c.id, selected=v)
                elif c.id == "measure":
                    mode = values.get("effect_mode", "r")
                    ui.update_select(
                        "measure",
                        choices=measure_labels(MEASURE_CHOICES[mode]),
                        selected=v if v in MEASURE_CHOICES[mode] else MEASURE_CHOICES[mode][0],
                    )
                elif c.id == "effect_form":
                    ui.update_select(
                        "effect_form",
                        choices=form_labels(values.get("measure") or ""),
                        selected=str(v or "0"),
                    )
                elif c.id == "example":
                    ui.update_select("example", selected=v or "")
            used = {values.get("study"), values.get("es_id"), values.get("participants")}
            mode = values.get("effect_mode", "r")
            try:
                need = effect_columns(
                    mode, values.get("measure") or "", values.get("effect_form") or 0
                )
            except api.MlmetaError:
                need = ()
            used |= {values.get(f"eff_{k}") for k in need}
            if g is not None:
                used |= set(g.effect.values())
                if mode == "r":  # a data set with both r/n and yi/vi: yi, vi are not moderators
                    used |= {c for c in ds.columns if c.lower() in ("yi", "vi")}
            mods = [m for m in values.get("moderators", ()) if m in ds.columns]
            choices = moderator_choices(ds, {u for u in used if u} - set(mods))
            ui.update_checkbox_group("moderators", choices=choices, selected=mods)
            state["mods"] = {m: {"type": types.get(m) or "", "ref": refs.get(m, "")} for m in mods}
            state["gen"] += 1
            details_gen.set(state["gen"])

        @reactive.effect
        @reactive.event(input.effect_mode)
        def _on_mode():
            mode = input.effect_mode()
            with reactive.isolate():
                cur = input.measure()
            allowed = MEASURE_CHOICES.get(mode, ("",))
            ui.update_select(
                "measure",
                choices=measure_labels(allowed),
                selected=cur if cur in allowed else allowed[0],
            )

        @reactive.effect
        @reactive.event(input.measure)
        def _on_measure():
            with reactive.isolate():
                cur = input.effect_form()
            choices = form_labels(input.measure() or "")
            ui.update_select(
                "effect_form", choices=choices, selected=cur if cur in choices else "0"
            )

        def current_mod_settings(ds: Dataset, mods) -> dict[str, dict[str, str]]:
            """Type and reference of each moderator: the inputs if shown, else remembered."""
            gen = state["gen"]
            out = {}
            for m in mods:
                if m not in ds.columns:
                    continue
                j = ds.columns.index(m)
                info = column_info(ds.frame, m)
                saved = state["mods"].get(m, {})
                typ = saved.get("type") or info.guessed
                ref = saved.get("ref") or ""
                for kind in ("type", "ref"):
                    iid = f"m{kind}_{gen}_{j}"
                    if iid in input:
                        try:
                            val = input[iid]()
                        except SilentException:
                            continue
                        if kind == "type" and val:
                            typ = val
                        elif kind == "ref" and val is not None:
                            ref = val
                if typ not in info.choices:
                    typ = info.choices[0]
                out[m] = {"type": typ, "ref": ref}
            return out

        @render.ui
        def moderator_details():
            ds = dataset.get()
            mods = input.moderators()
            details_gen.get()
            if ds is None or not mods:
                return tags.p("Tick the columns to test as moderators.", class_="small text-muted")
            with reactive.isolate():
                settings = current_mod_settings(ds, mods)
            state["gen"] += 1
            gen = state["gen"]
            state["mods"] = settings
            ref_ok = reference_supported()
            rows = []
            for m in mods:
                if m not in ds.columns:
                    continue
                j = ds.columns.index(m)
                info = column_info(ds.frame, m)
                s = settings[m]
                kids = [
                    tags.div(tags.strong(m), class_="mb-1"),
                    ui.input_select(
                        f"mtype_{gen}_{j}",
                        f"Type of {m}",
                        choices={c: c for c in info.choices},
                        selected=s["type"],
                    ),
                ]
                if ref_ok:
                    levels = {
                        "": f"first in order ({info.levels[0]})"
                        if info.levels
                        else "first in order"
                    }
                    levels.update({lv: lv for lv in info.levels})
                    kids.append(
                        ui.panel_conditional(
                            f"input.mtype_{gen}_{j} === 'categorical'",
                            ui.input_select(
                                f"mref_{gen}_{j}",
                                f"Reference level of {m}",
                                choices=levels,
                                selected=s["ref"] or "",
                            ),
                        )
                    )
                elif info.levels:
                    kids.append(
                        ui.panel_conditional(
                            f"input.mtype_{gen}_{j} === 'categorical'",
                            tags.p(
                                f"Reference level: {info.levels[0]} (the first in sorted "
                                "order; the analysis file has no key to change it).",
                                class_="small text-muted",
                            ),
                        )
                    )
                rows.append(tags.div(*kids, class_="mlmeta-moderator"))
            return TagList(*rows)

        def collect_values() -> dict[str, Any]:
            values: dict[str, Any] = {}
            for c in CONTROLS:
                try:
                    values[c.id] = input[c.id]()
                except SilentException:
                    values[c.id] = c.default
            return values

        # ------------------------------------------------------------ run
        @ui.bind_task_button(button_id="run")
        @reactive.extended_task
        async def run_task(job: Job) -> Job:
            try:
                await asyncio.to_thread(job.start)
                while True:
                    job.poll()
                    if job.finished:
                        return job
                    await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                await asyncio.to_thread(job.cancel)
                raise

        def build_analysis(ds: Dataset) -> tuple[str, str, dict]:
            values = collect_values()
            if ds.example:
                values["example"] = ds.example
            else:
                values["example"] = ""
            if ds.simulated:
                values["simulated"] = True
            mods = tuple(values.get("moderators") or ())
            settings = current_mod_settings(ds, mods)
            types = {m: s["type"] for m, s in settings.items()}
            refs = (
                {
                    m: s["ref"]
                    for m, s in settings.items()
                    if s["type"] == "categorical" and s["ref"]
                }
                if reference_supported()
                else {}
            )
            raw = controls_to_raw(values, None if ds.example else ds.name, types, ds.numeric, refs)
            toml_name = safe_file_name(f"{ds.stem}.toml")
            stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
            data_line = (
                f"the bundled example '{ds.example}'"
                if ds.example
                else f"{ds.name} (keep it next to this file)"
            )
            header = (
                f"mlmeta analysis file, written by the mlmeta web page on {stamp}.\n"
                f"Data: {data_line}.\n"
                f"Reproduce the page's results:  mlmeta run {toml_name}\n"
            )
            if ds.simulated:
                header += "The data are SIMULATED: not results of real studies.\n"
            text = dumps(raw, header)
            # the same validation as mlmeta run, before anything starts
            api.parse_analysis(tomllib.loads(text), work / toml_name, toml_name)
            return toml_name, text, raw

        @reactive.effect
        @reactive.event(input.run)
        def _on_run():
            notes.set(())
            try:
                with reactive.isolate():
                    ds = dataset.get()
                if ds is None:
                    raise api.InputError(
                        "no data: choose a data file or an example first (1 · Data)"
                    )
                toml_name, text, _raw = build_analysis(ds)
                (work / toml_name).write_text(text, encoding="utf-8")
                state["run_no"] += 1
                # uploads never start with a dot (safe_file_name): no name clashes
                job = Job(work, toml_name, f".runs/report-{state['run_no']}")
                state["job"] = job
                state["job_meta"] = {
                    "toml_text": text,
                    "data_name": None if ds.example else ds.name,
                }
                ui.update_action_button("cancel", disabled=False)
                run_task.invoke(job)
                with reactive.isolate():
                    if result.get() is not None:
                        say(
                            "info",
                            "Running; the results below are those of the previous run "
                            "until this one finishes.",
                        )
            except Exception as exc:  # noqa: BLE001
                say_error(exc)

        @reactive.effect
        @reactive.event(input.cancel)
        def _on_cancel():
            run_task.cancel()

        @reactive.effect
        def _on_task_status():
            status = run_task.status()
            if status == "running":
                return
            ui.update_action_button("cancel", disabled=True)
            try:
                if status == "success":
                    job = run_task.result()
                    finish(job)
                elif status == "cancelled":
                    say("info", "The run was cancelled.")
                elif status == "error":
                    say_error(run_task.error.get())
            except Exception as exc:  # noqa: BLE001
                say_error(exc)

        def finish(job: Job) -> None:
            st = job.state
            if st.status == "done":
                with reactive.isolate():
                    old = result.get()
                meta = state["job_meta"]
                res = load_result(
                    job.out_dir, job.toml_name, meta["toml_text"], meta["data_name"], st.seconds
                )
                result.set(res)
                if old is not None and old.out_dir != res.out_dir:
                    shutil.rmtree(old.out_dir, ignore_errors=True)
                n = res.numbers
                say(
                    "info",
                    f"Done in {st.seconds:.1f} s: {n['data']['k']} effect sizes"
                    + (
                        f" from {n['data']['n_studies']} studies"
                        if n["data"].get("n_studies")
                        else ""
                    )
                    + ".",
                )
                if n.get("simulated"):
                    say("warning", "SIMULATED DATA: not results of real studies.", replace=False)
                ui.update_navset("main_tabs", selected="results")
            elif st.status == "cancelled":
                say("info", "The run was cancelled.")
            elif st.status == "error":
                say("error", clean(st.message))
            else:
                say("error", f"internal error ({clean(st.message)}); please report it")

        @render.ui
        def progress():
            if run_task.status() != "running":
                return None
            reactive.invalidate_later(0.4)
            job = state.get("job")
            if job is None:
                return None
            st = job.state
            import time as _time

            secs = _time.monotonic() - st.started
            step = "fitting the models" if st.label == "starting" else st.label
            bar = (
                tags.progress(
                    value=str(st.done),
                    max=str(st.total),
                    aria_label=f"{step}: {st.done} of {st.total}",
                )
                if st.total
                else tags.progress(aria_label="working")
            )
            return tags.span(
                bar,
                f" {step}" + (f" {st.done}/{st.total}" if st.total else "") + f" · {secs:.0f} s",
                class_="mlmeta-progress small",
                role="status",
                aria_live="polite",
                id="run-progress",
            )

        # ------------------------------------------------------------ views
        @render.ui
        def data_view():
            ds = dataset.get()
            if ds is None:
                return tags.div(
                    tags.p(
                        "Choose a data file (CSV, TSV or Excel; one row per effect size) or "
                        "a bundled example in 1 · Data. The page guesses which columns hold "
                        "the effect sizes, the studies and the moderators; check the "
                        "guesses in 2 and 3, then press Run analysis."
                    ),
                    tags.p(
                        "The analysis runs on this computer; nothing is sent elsewhere.",
                        class_="text-muted small",
                    ),
                )
            df = ds.frame
            out = []
            if ds.simulated:
                out.append(
                    tags.div(
                        f"SIMULATED DATA: '{ds.simulated}' is a simulated data set, generated to "
                        "resemble a published design; it is not results of real studies.",
                        class_="alert alert-warning fw-bold",
                        role="note",
                        id="data-simulated",
                    )
                )
            out.append(
                tags.p(
                    tags.strong(ds.name),
                    f": {len(df)} rows, {df.shape[1]} columns",
                    id="data-facts",
                )
            )
            if ds.notice:
                out.append(tags.p(ds.notice, class_="small"))
            head = df.head(10)
            table = tags.table(
                tags.caption("First rows of the data"),
                tags.thead(tags.tr(*[tags.th(c) for c in head.columns])),
                tags.tbody(
                    *[
                        tags.tr(*[tags.td("" if pd.isna(x) else str(x)) for x in row])
                        for row in head.itertuples(index=False)
                    ]
                ),
                class_="table table-sm mlmeta-table",
            )
            out.append(tags.div(table, class_="table-responsive"))
            return TagList(*out)

        @render.ui
        def results():
            res = result.get()
            if res is None:
                return tags.p("No results yet: press Run analysis.", class_="text-muted")
            try:
                return result_view(res, api.build_document, ui.navset_underline, ui.nav_panel)
            except Exception as exc:  # noqa: BLE001
                return tags.div(
                    f"The results could not be shown ({type(exc).__name__}: "
                    f"{_first_line(exc)}); download the report instead.",
                    class_="alert alert-danger",
                    role="alert",
                )

        @render.ui
        def downloads():
            if result.get() is None:
                return None
            return tags.div(
                ui.download_button(
                    "download_analysis",
                    "Download analysis file",
                    class_="btn-outline-primary btn-sm",
                ),
                ui.download_button(
                    "download_report", "Download report (zip)", class_="btn-outline-primary btn-sm"
                ),
                tags.span(
                    "The analysis file reproduces these results with mlmeta run.",
                    class_="small text-muted",
                ),
                class_="d-flex gap-2 align-items-center mb-2 flex-wrap",
            )

        def _analysis_name() -> str:
            res = result.get()
            return res.toml_name if res else "analysis.toml"

        @render.download(filename=_analysis_name, media_type="application/toml")
        def download_analysis():
            res = result.get()
            if res is None:
                return
            yield res.toml_text.encode("utf-8")

        def _report_name() -> str:
            res = result.get()
            return f"{res.stem}-report.zip" if res else "report.zip"

        @render.download(filename=_report_name, media_type="application/zip")
        def download_report():
            res = result.get()
            if res is None:
                return
            yield zip_folder(res.out_dir, f"{res.stem}-report")

    return server
