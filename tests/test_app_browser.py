"""The web page (``mlmeta app``) in a real headless Chromium, driven by selenium.

The app runs as a subprocess on a free port (once per module) with a small upload limit
(``MLMETA_APP_MAX_UPLOAD``) so the oversized-upload test sends kilobytes, not 100 MB. Covered:
upload -> guessed columns -> run -> APA sentence, tables and figures; change a moderator and
rerun; download the analysis file and the report, and reproduce results.json with
``mlmeta run``; an invalid data file shows the command line's error; an oversized upload is
refused before it is sent; two sessions at once keep their own data.

Screenshots of each main state go to ``$MLMETA_SCREENSHOTS`` (default tests/.artifacts/app/)
for a person to look at. Chromium and chromedriver come from Debian (``apt-get install
chromium chromium-driver``); without them the tests are skipped locally but FAIL when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from mlmeta.cli import main as cli_main

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "mlmeta" / "examples" / "data"
DRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LIMIT = 64 * 1024  # upload limit of the test server (bytes)
WIDTH, HEIGHT = 1280, 800
# results.json entries that say when and where a report was made, not what it found
VOLATILE = ("created", "command", "timings", "settings", "software", "figures")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    for p in ("/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if Path(p).exists():
            return p
    return ""


def _tools() -> str:
    chrome = _chromium()
    missing = [
        n for n, ok in (("chromium", chrome), ("chromedriver", Path(DRIVER).exists())) if not ok
    ]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        msg = f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)"
        if _ci():
            pytest.fail(f"CI is set but {msg}")
        pytest.skip(msg)
    return chrome


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shots() -> Path:
    d = Path(os.environ.get("MLMETA_SCREENSHOTS") or ROOT / "tests" / ".artifacts" / "app")
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- fixtures
class AppServer(str):
    """The app's address (a str), with the folder its temporary files go to."""

    def __new__(cls, url: str, tmp: Path):
        obj = super().__new__(cls, url)
        obj.tmp = tmp
        return obj

    def sessions(self) -> list[Path]:
        return sorted(self.tmp.glob("mlmeta-app-*/session-*"))


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    _tools()
    port = _free_port()
    tmp = tmp_path_factory.mktemp("apptmp")  # the app's temporary folders go here
    env = {
        **os.environ,
        "MLMETA_APP_MAX_UPLOAD": str(LIMIT),
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(tmp),
    }
    env.pop("DISPLAY", None)
    log = tmp_path_factory.mktemp("applog") / "app.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlmeta.cli", "app", "--port", str(port), "--no-browser"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(tmp_path_factory.mktemp("appcwd")),
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlmeta app did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield AppServer(url, tmp)
    proc.terminate()
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    assert code == 0, f"mlmeta app exited with {code}: {log.read_text()[-2000:]}"
    assert not list(tmp.glob("mlmeta-app-*")), "the app left its temporary folder behind"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chrome = _tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium must not look for drivers online
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS + [f"--window-size={WIDTH},{HEIGHT}"]:
        opts.add_argument(flag)
    opts.binary_location = chrome
    opts.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    drv.downloads = downloads
    try:
        yield drv
    finally:
        drv.quit()


# ---------------------------------------------------------------- helpers
def _viewport(drv) -> None:
    drv.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )


def _open(drv, url: str) -> None:
    drv.get(url)
    _viewport(drv)
    _wait(
        drv,
        lambda: drv.execute_script(
            "return !!(window.Shiny && Shiny.shinyapp && Shiny.shinyapp.isConnected()) && "
            "document.querySelector('#data_file.shiny-bound-input') !== null"
        ),
        60,
        "page ready",
    )


def _wait(drv, cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as exc:  # noqa: BLE001 -- element not there yet, stale, ...
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    shot = _shots() / f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}.png"
    drv.save_screenshot(str(shot))
    msgs = drv.execute_script(
        "var e=document.getElementById('messages');return e ? e.innerText : ''"
    )
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last: {last!r}; "
        f"messages: {msgs!r}; screenshot {shot})"
    )


def _text(drv, css: str) -> str:
    return drv.execute_script(
        "var e = document.querySelector(arguments[0]); return e ? e.innerText : '';", css
    )


def _upload(drv, input_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    el = drv.find_element(By.ID, input_id)
    el.send_keys(str(path))


def _value(drv, input_id: str) -> str:
    return drv.execute_script("return document.getElementById(arguments[0]).value;", input_id)


def _open_step(drv, value: str) -> None:
    """Open an accordion panel of the sidebar (if closed)."""
    from selenium.webdriver.common.by import By

    panel = drv.find_element(By.CSS_SELECTOR, f".accordion-item[data-value='{value}']")
    btn = panel.find_element(By.CSS_SELECTOR, ".accordion-button")
    if btn.get_attribute("aria-expanded") != "true":
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", btn)
        btn.click()
        _wait(
            drv,
            lambda: (
                panel.find_element(By.CSS_SELECTOR, ".accordion-collapse")
                .get_attribute("class")
                .find("show")
                >= 0
            ),
            15,
            f"panel {value}",
        )
        time.sleep(0.3)  # the panel's opening transition


def _set_checkbox(drv, input_id: str, on: bool) -> None:
    from selenium.webdriver.common.by import By

    el = drv.find_element(By.ID, input_id)
    if el.is_selected() != on:
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()


def _tick_moderator(drv, name: str, on: bool = True) -> None:
    from selenium.webdriver.common.by import By

    el = drv.find_element(By.CSS_SELECTOR, f"#moderators input[value='{name}']")
    if el.is_selected() != on:
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", el)
        el.click()


def _light(drv, figures: bool) -> None:
    """Switch off the slow analyses (the run then takes seconds)."""
    _open_step(drv, "analyses")
    for k in ("profile", "loo", "bias", "che_sweep"):
        _set_checkbox(drv, f"an_{k}", False)
    _set_checkbox(drv, "an_figures", figures)


def _start_run(drv) -> None:
    """Press Run analysis (the result shown before loses its id, to tell the new one)."""
    from selenium.webdriver.common.by import By

    drv.execute_script(
        "var e = document.getElementById('result-apa');if (e) e.removeAttribute('id');"
    )
    btn = drv.find_element(By.ID, "run")
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", btn)
    btn.click()


def _run(drv, timeout: float = 300, started: bool = False) -> str:
    """Press Run analysis (unless ``started``) and wait for the new result; its APA
    sentence."""
    t0 = time.monotonic()
    if not started:
        _start_run(drv)
    _wait(
        drv,
        lambda: _text(drv, "#result-apa") or _text(drv, "#messages .alert-danger"),
        timeout,
        "the result",
    )
    err = _text(drv, "#messages .alert-danger")
    assert not err, err
    print(f"run: {time.monotonic() - t0:.1f} s")
    return _text(drv, "#result-apa")


def _show_tab(drv, title: str) -> None:
    from selenium.webdriver.common.by import By

    link = drv.find_element(By.XPATH, f"//ul[@id='result_tabs']//a[normalize-space()='{title}']")
    drv.execute_script("arguments[0].scrollIntoView({block: 'start'});", link)
    link.click()
    _wait(drv, lambda: "active" in link.get_attribute("class"), 15, f"tab {title}")


ACTIVE = "#result_tabs ~ .tab-content > .tab-pane.active"


def _figure_loaded(drv, name: str) -> bool:
    return drv.execute_script(
        'var i = document.querySelector("img[data-figure=\'" + arguments[0] + "\']");'
        "return !!i && i.complete && i.naturalWidth > 100;",
        name,
    )


def _download(drv, button_id: str, pattern: str, timeout: float = 60) -> Path:
    from selenium.webdriver.common.by import By

    d: Path = drv.downloads
    before = set(d.iterdir())

    def ready():
        e = drv.find_element(By.ID, button_id)
        return (
            e
            if e.get_attribute("href") and "disabled" not in (e.get_attribute("class") or "")
            else None
        )

    link = _wait(drv, ready, 60, f"{button_id} ready")
    drv.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)
    link.click()

    def done():
        new = [p for p in d.iterdir() if p not in before and re.fullmatch(pattern, p.name)]
        return new[0] if new and new[0].stat().st_size > 0 else None

    return _wait(drv, done, timeout, f"download {pattern}")


def _unlabelled(drv) -> list[str]:
    """Form controls without a label (a <label for>, an enclosing label or an aria label)."""
    return drv.execute_script("""
        return Array.from(document.querySelectorAll('input, select, textarea'))
          .filter(e => e.type !== 'hidden')
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                       && !e.getAttribute('aria-labelledby'))
          .map(e => e.outerHTML.slice(0, 120));""")


def _positive_tabindex(drv) -> list[str]:
    return drv.execute_script(
        "return Array.from(document.querySelectorAll('[tabindex]'))"
        ".filter(e => parseInt(e.getAttribute('tabindex')) > 0).map(e => e.id);"
    )


def _shot(drv, name: str) -> None:
    drv.save_screenshot(str(_shots() / f"{name}.png"))


def _strip(numbers: dict) -> dict:
    out = {k: v for k, v in numbers.items() if k not in VOLATILE}
    out["data"] = {k: v for k, v in out["data"].items() if k != "source"}
    return out


def _close(a, b, path="") -> None:
    """Equal structures; floats to 1e-12 relative (the same computation, another process)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a) ^ set(b)}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------- tests
def test_upload_run_rerun_download_and_reproduce(app_url, browser, tmp_path, monkeypatch, capsys):
    from selenium.webdriver.common.by import By

    drv = browser
    _open(drv, app_url)
    assert _unlabelled(drv) == [] and _positive_tabindex(drv) == []
    _shot(drv, "01-start")
    _upload(drv, "data_file", DATA / "alliance_like.csv")
    _wait(drv, lambda: "48 rows" in _text(drv, "#data-facts"), 60, "data read")
    # the guesses: ZCOR from r and n, studies with effect sizes nested in them
    assert (
        drv.execute_script(
            "return document.querySelector(\"input[name='effect_mode']:checked\").value"
        )
        == "r"
    )
    assert (_value(drv, "eff_ri"), _value(drv, "eff_ni")) == ("ri", "ni")
    assert (_value(drv, "study"), _value(drv, "es_id")) == ("study", "es")
    assert _value(drv, "measure") == "ZCOR"
    # the data are the bundled SIMULATED example: the page says so
    assert "SIMULATED" in _text(drv, "#data-simulated")
    assert "SIMULATED" in _text(drv, "#messages")
    labels = _text(drv, "#moderators")
    assert "phase (categorical, 2 levels)" in labels and "yi" not in labels.split()
    _tick_moderator(drv, "phase")
    _wait(
        drv,
        lambda: (
            _value(
                drv,
                next(
                    i
                    for i in drv.execute_script(
                        "return Array.from(document.querySelectorAll('#moderator_details select'))"
                        ".map(e => e.id)"
                    )
                    if i.startswith("mtype_")
                ),
            )
            == "categorical"
        ),
        30,
        "moderator type",
    )
    assert _unlabelled(drv) == []  # the moderator's own controls too
    _shot(drv, "02-data-and-guesses")
    _open_step(drv, "analyses")
    for k in ("loo", "che_sweep"):
        _set_checkbox(drv, f"an_{k}", False)
    apa = _run(drv)
    # the report's APA sentence (checked against results.json below); t(26): 27 studies
    assert re.fullmatch(
        r"r = −?\.\d{3}, SE = \.\d{3}, 95% CI \[−?\.\d{3}, −?\.\d{3}\], "
        r"t\(26\) = −?\d+\.\d{3}, p [<=] \.\d{3}",
        apa,
    ), apa
    assert _text(drv, "#result-pi").startswith("95% PI [")
    assert "SIMULATED" in _text(drv, "#res-simulated")
    _wait(drv, lambda: _figure_loaded(drv, "forest"), 30, "forest plot")
    _shot(drv, "03-results-overall")
    _show_tab(drv, "Heterogeneity")
    het = _text(drv, "#heterogeneity-table")
    assert "study" in het and "LRT" in het and "I²" in het
    assert _figure_loaded(drv, "profile")
    _shot(drv, "04-results-heterogeneity")
    _show_tab(drv, "Moderators")
    assert "early" in _text(drv, "#mod-table-phase") and "late" in _text(drv, "#mod-table-phase")
    assert _figure_loaded(drv, "orchard_phase")
    first_mod = _text(drv, ACTIVE)
    _shot(drv, "05-results-moderators")
    _show_tab(drv, "Sensitivity and influence")
    assert "Cook's distance" in _text(drv, ACTIVE)
    _show_tab(drv, "Publication bias")
    assert "Egger" in _text(drv, ACTIVE)
    assert _figure_loaded(drv, "funnel")
    _shot(drv, "06-results-bias")

    # change the moderator and run again (without the slow analyses)
    _tick_moderator(drv, "phase", False)
    _tick_moderator(drv, "rater", True)
    _light(drv, figures=False)
    apa2 = _run(drv)
    assert apa2 == apa  # the pooled effect does not depend on the moderators
    _show_tab(drv, "Moderators")
    mods = _text(drv, ACTIVE)
    assert "rater (categorical)" in mods and "phase (categorical)" not in mods
    assert mods != first_mod
    _shot(drv, "07-rerun-rater")

    # download the analysis file and the report; the file reproduces results.json
    toml = _download(drv, "download_analysis", r"alliance_like.*\.toml")
    report = _download(drv, "download_report", r"alliance_like-report.*\.zip")
    text = toml.read_text(encoding="utf-8")
    assert 'file = "alliance_like.csv"' in text and 'moderators = ["rater"]' in text
    assert "simulated = true" in text
    work = tmp_path / "again"
    work.mkdir()
    shutil.copy(DATA / "alliance_like.csv", work / "alliance_like.csv")
    shutil.copy(toml, work / "alliance_like.toml")
    monkeypatch.chdir(work)
    assert cli_main(["run", "alliance_like.toml", "--out", "out", "--quiet"]) == 0
    cli = json.loads((work / "out" / "results.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(report) as z:
        page = json.loads(z.read("alliance_like-report/results.json").decode("utf-8"))
        assert "alliance_like-report/report.html" in z.namelist()
    _close(_strip(page), _strip(cli))
    assert page["overall"]["apa"] == apa

    # a long run shows its progress, leaves the page responsive and can be cancelled
    assert drv.find_element(By.ID, "cancel").get_attribute("disabled") is not None
    _open_step(drv, "analyses")
    for k in ("profile", "loo", "bias", "figures"):
        _set_checkbox(drv, f"an_{k}", True)
    _start_run(drv)
    _wait(drv, lambda: _text(drv, "#run-progress"), 60, "the progress indicator")
    _shot(drv, "08-running")
    drv.find_element(By.CSS_SELECTOR, "#main_tabs a[data-value='data']").click()
    _wait(
        drv,
        lambda: drv.find_element(By.ID, "data-facts").is_displayed(),
        30,
        "the Data tab while running",
    )
    cancel = drv.find_element(By.ID, "cancel")
    assert cancel.get_attribute("disabled") is None
    cancel.click()
    _wait(drv, lambda: "cancelled" in _text(drv, "#messages"), 60, "the cancellation")
    _wait(
        drv,
        lambda: drv.find_element(By.ID, "cancel").get_attribute("disabled") is not None,
        30,
        "Cancel disabled again",
    )
    assert not _text(drv, "#run-progress")


def test_invalid_file_shows_the_command_line_error(app_url, browser, tmp_path, monkeypatch, capsys):
    import pandas as pd
    from selenium.webdriver.common.by import By

    drv = browser
    _open(drv, app_url)
    bad = tmp_path / "bad.csv"
    bad.write_text("only_one_column\n1\n2\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["fit", "bad.csv", "--yi", "a", "--vi", "b"]) == 2
    cli_msg = capsys.readouterr().err.strip().removeprefix("mlmeta: error: ")
    _upload(drv, "data_file", bad)
    _wait(drv, lambda: _text(drv, "#messages .mlmeta-error-text"), 60, "the error")
    assert _text(drv, "#messages .mlmeta-error-text") == cli_msg
    assert "only one column" in cli_msg
    _shot(drv, "09-invalid-file")
    # nothing crashed: the session still works
    _upload(drv, "data_file", DATA / "konstantopoulos2011.csv")
    _wait(drv, lambda: "56 rows" in _text(drv, "#data-facts"), 60, "data read after error")
    assert not _text(drv, "#messages .alert-danger")
    # an analysis file fills the controls back
    toml = tmp_path / "k.toml"
    toml.write_text(
        '[data]\nfile = "konstantopoulos2011.csv"\nstudy = "district"\n'
        '[effect]\nyi = "yi"\nvi = "vi"\n[model]\nrandom = "district/school"\n'
        'method = "ML"\ntest = "z"\nmoderators = ["year"]\n'
        "[analyses]\nbias = false\n",
        encoding="utf-8",
    )
    _upload(drv, "analysis_file", toml)
    _wait(
        drv,
        lambda: "Settings filled in from k.toml" in _text(drv, "#messages"),
        60,
        "settings from the analysis file",
    )
    _wait(
        drv,
        lambda: drv.execute_script(
            "return document.querySelector(\"#moderators input[value='year']\").checked"
        ),
        30,
        "moderator year ticked",
    )
    checked = drv.execute_script(
        "return ['method', 'test', 'effect_mode'].map(n => "
        "document.querySelector('input[name=' + n + ']:checked').value)"
    )
    assert checked == ["ML", "z", "yi"]
    assert [_value(drv, i) for i in ("eff_yi", "eff_vi", "study", "es_id")] == [
        "yi",
        "vi",
        "district",
        "school",
    ]
    assert not drv.find_element(By.ID, "an_bias").is_selected()
    # an Excel file is read by the same reader; the simulated example is recognised in it
    xlsx = tmp_path / "alliance.xlsx"
    pd.read_csv(DATA / "alliance_like.csv").to_excel(xlsx, index=False)
    _upload(drv, "data_file", xlsx)
    _wait(drv, lambda: "48 rows" in _text(drv, "#data-facts"), 60, "Excel data read")
    assert "SIMULATED" in _text(drv, "#data-simulated")


def test_oversized_upload_is_refused_before_sending(app_url, browser, tmp_path):
    drv = browser
    _open(drv, app_url)
    big = tmp_path / "big.csv"
    rows = "\n".join(f"{i},{i % 7},0.1,0.01" for i in range(LIMIT // 10))
    big.write_text("study,es,yi,vi\n" + rows + "\n", encoding="utf-8")
    assert big.stat().st_size > LIMIT
    _upload(drv, "data_file", big)
    _wait(drv, lambda: "too large" in _text(drv, "#messages"), 60, "the refusal")
    assert "uploads are limited to 64 KB" in _text(drv, "#messages")
    assert not _text(drv, "#data-facts")  # nothing was read
    # the browser never started the upload (no progress bar shown)
    assert not drv.execute_script(
        "var b = document.querySelector('#data_file_progress');"
        "return b && b.style.visibility === 'visible';"
    )
    _shot(drv, "10-oversized-refused")
    # the server refuses on its own too: a declared length over the limit is answered 413
    req = urllib.request.Request(
        app_url + "session/x/upload/y?w=",
        data=b"x" * (LIMIT + 1),
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 413
    assert "uploads are limited" in exc.value.read().decode()


def test_two_sessions_keep_their_own_data(app_url, browser):
    drv = browser
    _open(drv, app_url)
    first = drv.current_window_handle
    _upload(drv, "data_file", DATA / "konstantopoulos2011.csv")
    _wait(drv, lambda: "56 rows" in _text(drv, "#data-facts"), 60, "data A")
    _light(drv, figures=False)
    drv.switch_to.new_window("tab")
    second = drv.current_window_handle
    _open(drv, app_url)
    _upload(drv, "data_file", DATA / "assink2016.csv")
    _wait(drv, lambda: "100 rows" in _text(drv, "#data-facts"), 60, "data B")
    _light(drv, figures=False)
    _start_run(drv)  # B runs while A starts its own run: two runs at once
    drv.switch_to.window(first)
    apa_a = _run(drv)
    assert "56 effect sizes" in _text(drv, ".mlmeta-facts")
    assert "konstantopoulos2011.csv" in _text(drv, ".mlmeta-facts")
    drv.switch_to.window(second)
    _viewport(drv)
    apa_b = _run(drv, started=True)
    assert "100 effect sizes" in _text(drv, ".mlmeta-facts")
    assert "assink2016.csv" in _text(drv, ".mlmeta-facts")
    assert "konstantopoulos" not in _text(drv, "body")
    assert apa_a != apa_b
    _shot(drv, "11-second-session")
    n_sessions = len(app_url.sessions())
    assert n_sessions >= 2  # one folder per open page
    drv.close()  # the session ends: its folder goes
    drv.switch_to.window(first)
    _wait(
        drv,
        lambda: len(app_url.sessions()) == n_sessions - 1,
        60,
        "the closed session's folder removed",
    )
