"""report.html in a real headless Chromium, driven through chromedriver's WebDriver HTTP API
with a few lines of urllib (no selenium/playwright dependency).

Checks, for the default example's report: the page loads from a file:// URL with no console
errors (browser log level SEVERE) and no network requests (every resource is inline), every
<img> has loaded (complete and naturalWidth > 0), the APA sentence of results.json is in the
page's text, and the SIMULATED notice is shown.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``;
.ci/run installs them). Without them the test is skipped locally, but FAILS when CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_report import build_report

CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
]


def _find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    for p in (
        "/usr/bin/chromium",
        "/usr/lib/chromium/chromium",
        "/usr/bin/chromedriver",
        "/usr/lib/chromium/chromedriver",
    ):
        if Path(p).name in names and Path(p).exists():
            return p
    return None


def _tools():
    chrome = _find("chromium", "chromium-browser", "google-chrome")
    driver = _find("chromedriver")
    if chrome and driver:
        return chrome, driver
    missing = " and ".join(x for x, p in (("chromium", chrome), ("chromedriver", driver)) if not p)
    msg = f"{missing} not installed (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but {msg}")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """The handful of W3C WebDriver commands the test needs."""

    def __init__(self, driver: str, chrome: str, profile: str):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["value"].get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chrome,
                        "args": CHROME_ARGS + [f"--user-data-dir={profile}"],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        }
        self.session = None
        try:
            self.session = self._call("POST", "/session", caps)["value"]["sessionId"]
        except Exception:
            self.close()
            raise

    def _call(self, method: str, path: str, body=None, timeout: float = 60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.read().decode()[:500]}") from None

    def cmd(self, method: str, path: str, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)["value"]

    def get(self, url: str):
        return self.cmd("POST", "/url", {"url": url})

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def browser_log(self) -> list[dict]:
        return self.cmd("POST", "/se/log", {"type": "browser"})

    def close(self):
        try:
            if self.session:
                self._call("DELETE", f"/session/{self.session}", timeout=20)
        except Exception:
            pass
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def browser():
    chrome, driver = _tools()
    profile = tempfile.mkdtemp(prefix="mlmeta-chromium-")
    wd = WebDriver(driver, chrome, profile)
    try:
        yield wd
    finally:
        wd.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    out = build_report("alliance_like", tmp_path_factory)
    numbers = json.loads((out / "results.json").read_text())
    browser.get((out / "report.html").as_uri())
    deadline = time.monotonic() + 30
    while browser.js("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "report.html did not finish loading"
        time.sleep(0.1)
    # images decode asynchronously: wait until every one is complete
    while not browser.js("return Array.from(document.images).every(i => i.complete)"):
        assert time.monotonic() < deadline, "images did not finish loading"
        time.sleep(0.1)
    return browser, numbers, out


def test_no_console_errors(page):
    browser, _, _ = page
    log = browser.browser_log()
    severe = [e for e in log if e.get("level") == "SEVERE"]
    assert not severe, f"console errors: {severe}"


def test_every_figure_loads(page):
    browser, numbers, _out = page
    imgs = browser.js(
        "return Array.from(document.images).map(i => ({src: i.src.slice(0, 30), "
        "complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))"
    )
    n_figures = len([f for f in numbers["figures"] if f["number"]])
    assert n_figures >= 6  # forest, profile, 4 orchards, loo, funnel
    assert len(imgs) == n_figures
    for im in imgs:
        assert im["complete"] and im["w"] > 0 and im["h"] > 0, im
        assert im["src"].startswith("data:image/png;base64,"), im


def test_offline_no_requests(page):
    browser, _, _ = page
    urls = browser.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in urls if not u.startswith("data:")] == []
    n_ext = browser.js(
        "return Array.from(document.querySelectorAll('[src],[href]')).map(e => "
        "e.getAttribute('src') || e.getAttribute('href'))"
        ".filter(u => !u.startsWith('data:') && !u.startsWith('#')).length"
    )
    assert n_ext == 0


def test_apa_sentence_and_simulated_notice_on_page(page):
    browser, numbers, _ = page
    text = browser.js("return document.body.innerText")
    apa = numbers["overall"]["apa"]
    assert apa in text
    assert browser.js("return document.getElementById('apa-overall').innerText.trim()") == apa
    assert apa.startswith("r = \u2212.121, SE = .019, 95% CI [\u2212.159, \u2212.082], t(26) = ")
    assert "SIMULATED DATA" in browser.js("return document.getElementById('simulated').innerText")
    assert browser.js("return document.title") == numbers["title"]


def test_missing_chromium_fails_on_ci_and_skips_locally(monkeypatch):
    import test_browser as tb

    monkeypatch.setattr(tb, "_find", lambda *names: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set but chromium and chromedriver"):
        tb._tools()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        tb._tools()


def test_references_and_numbered_tables_on_page(page):
    """The page shows the numbered reference list and numbered tables and figures."""
    browser, _numbers, _ = page
    refs = browser.js(
        "return Array.from(document.querySelectorAll('#reference-list li')).map(li => li.innerText)"
    )
    assert len(refs) >= 10
    assert any(r.startswith("Viechtbauer, W. (2010)") for r in refs)
    assert (
        browser.js(
            "return getComputedStyle(document.getElementById('reference-list')).listStyleType"
        )
        == "decimal"
    )
    body = browser.js("return document.body.innerText")
    assert "(Viechtbauer, 2010)" in body and "(Tipton & Pustejovsky, 2015" in body
    nums = browser.js(
        "return Array.from(document.querySelectorAll('caption .tnum')).map(c => c.innerText)"
    )
    assert nums == [f"Table {i}" for i in range(1, len(nums) + 1)] and len(nums) >= 8
    titles = browser.js(
        "return Array.from(document.querySelectorAll('caption .ttitle')).map(c => c.innerText)"
    )
    assert "Included studies" in titles and "Moderator analyses" in titles
    caps = browser.js(
        "return Array.from(document.querySelectorAll('figcaption .fnum')).map(c => c.innerText)"
    )
    assert caps == [f"Figure {i}." for i in range(1, len(caps) + 1)]
    assert (
        browser.js("return document.getElementById('summary').innerText")
        == "Summary for practitioners"
    )
