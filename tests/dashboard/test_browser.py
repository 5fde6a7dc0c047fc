"""End to end: `orchestrate dashboard` serves the demo database; Debian's headless chromium
loads every page, and the DOM and screenshots show the heatmap, charts and tables rendered.
A dashboard started before its database follows it in a page left open, as a coordinator
creates and writes it.

BENCHSWEEP_SCREENSHOTS=DIR copies the screenshots there (docs/screenshots/hosts.png is refreshed
so; the other pages there are a GPU sweep's, from bench/screenshots.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from websockets.sync.client import connect  # streamlit's own dependency

from db.models import Job
from db.store import STALE_AFTER, Store
from tests.dashboard.conftest import ROOT
from tests.dashboard.test_app import job_ids
from tests.db.read.recorded import record, sweep_text
from tests.engine.test_result import make

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make test` "
                                                "installs it: apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(url: str, profile: Path, *args: str, height: int = 1000
             ) -> subprocess.CompletedProcess:
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         f"--window-size=1400,{height}", *args, url],
        capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def serve(db: str, log: Path):
    """`orchestrate dashboard` on `db`, up: its base URL."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "dashboard", "--db", db, "--port",
             str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ, COLUMNS="200"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/_stcore/health", proc, log)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> bytes:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            pass
        assert proc.poll() is None, log.read_text() if log.exists() else proc.returncode
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(demo_db, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(demo_db, log) as base:
        yield base, log


def render(url: str, tmp: Path, name: str, markers: list[str], tries: int = 10,
           height: int = 1000) -> str:
    """Load the page once for its DOM and screenshot together, until every marker is in the
    DOM and the screenshot shows content. Virtual time runs ahead while the page waits on its
    websocket, so on a busy machine a load may end on the loading skeleton: load again."""
    out = tmp / f"{name}.png"
    dom, dark = "", 0
    for _ in range(tries):
        dom = chromium(url, tmp / "profile", "--dump-dom", f"--screenshot={out}",
                       height=height).stdout
        if out.exists():
            dark = sum(Image.open(out).convert("L").histogram()[:128])  # text, marks, lines
        if all(m in dom for m in markers) and dark > 4000:
            break
        time.sleep(1)
    else:
        missing = [m for m in markers if m not in dom]
        raise AssertionError(f"{url}: never rendered (missing {missing}, {dark} dark pixels)")
    target = os.environ.get("BENCHSWEEP_SCREENSHOTS")
    if target:
        shutil.copy(out, Path(target) / out.name)
    return dom


def test_every_page_renders_in_chromium(server, demo_db, tmp_path):
    base, log = server
    assert f"URL: http://127.0.0.1:{base.rsplit(':', 1)[1]}" in log.read_text()  # loopback
    job = job_ids(demo_db, "dash", "succeeded")[0]
    pages = {
        "sweeps": ("", ['data-testid="stDataFrame"', "dash-other", 'role="gridcell"']),
        "sweep": ("sweep?sweep=dash", ['data-testid="stVegaLiteChart"', 'class="marks"',
                                       # "Best configuration" or "No single best
                                       # configuration": the tiny model's CPU figures decide
                                       "est configuration", 'data-testid="stDataFrame"',
                                       "nano-sync", "Speedup against nano"]),
        "job": (f"job?job={job}", ['data-testid="stDataFrame"', "BenchResult",
                                   'data-testid="stVegaLiteChart"', "Download the whole log"]),
        "compare": ("compare?a=dash&b=dash-other", ['data-testid="stVegaLiteChart"',
                                                     "different workload",
                                                     'data-testid="stDataFrame"']),
        "hosts": ("hosts", ['data-testid="stDataFrame"', "Hosts that ran jobs"]),
    }
    for name, (path, markers) in pages.items():
        url = f"{base}/{path}"
        dom = render(url, tmp_path, name, markers)
        assert "Traceback" not in dom and 'data-testid="stException"' not in dom, name
        assert "stAppDeployButton" not in dom, name  # toolbarMode viewer
        if name == "sweep":
            # heatmap, speedup bars, metric lines, throughput against latency, timeline
            assert dom.count('data-testid="stVegaLiteChart"') == 5


def test_binding_beyond_loopback_warns(demo_db):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "dashboard", "--db", demo_db, "--host",
         "0.0.0.0", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first = proc.stderr.readline()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=20)
    assert "no login" in first and "0.0.0.0" in first


class Tab:
    """A page left open in a running chromium, read over the DevTools protocol: its text as
    the user sees it now (a table's cells are drawn on a canvas, so not in it)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.calls = 0

    @classmethod
    @contextlib.contextmanager
    def open(cls, devtools: str, url: str):
        req = urllib.request.Request(f"{devtools}/json/new?{url}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            target = json.loads(r.read())["webSocketDebuggerUrl"]
        with connect(target, max_size=None) as ws:
            yield cls(ws)

    def text(self) -> str:
        self.calls += 1
        self.ws.send(json.dumps({"id": self.calls, "method": "Runtime.evaluate",
                                 "params": {"expression": "document.body.innerText"}}))
        while True:
            answer = json.loads(self.ws.recv(timeout=30))
            if answer.get("id") == self.calls:
                return answer["result"]["result"].get("value", "")

    def wait_for(self, shown: str, *, gone: str | None = None, limit: float = 60) -> str:
        deadline = time.monotonic() + limit
        while True:
            text = self.text()
            if shown in text and not (gone and gone in text):
                return text
            assert time.monotonic() < deadline, f"never showed {shown!r}: {text[:400]!r}"
            time.sleep(0.5)


def test_a_page_opened_before_the_first_sweep_follows_it(tmp_path):
    path = tmp_path / "later.db"
    url = f"sqlite:///{path}"
    with serve(url, tmp_path / "server.log") as base:
        assert "the dashboard shows it once a sweep creates it" in \
            (tmp_path / "server.log").read_text()
        port = free_port()  # now that the server holds its own
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={port}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            devtools = f"http://127.0.0.1:{port}"
            wait_until_up(devtools + "/json/version", browser, tmp_path / "none")
            with Tab.open(devtools, base + "/") as tab:
                tab.wait_for("There is no database at")
                assert not path.exists()  # the dashboard creates nothing

                store = Store(url)  # a coordinator starts: the file, the sweep, its lease
                record(store, sweep_text(variants="  base: {kind: hf}", repeats=2))
                sid = store.sweep_id("s")
                store.acquire(sid, "c:1", stale_after=STALE_AFTER, owner_alive=lambda _o: True)
                with store.session() as s:
                    first, second = s.scalars(select(Job.id).order_by(Job.ordinal))
                attempt = store.start_attempt(first, "h", "0")
                # Generous: on the 2-core CI machine, busy with the rest of the suite, the
                # app's rerun into its full navigation once took over a minute.
                tab.wait_for("1 sweep(s) running; this page updates itself", limit=150)

                store.finish_attempt(attempt, "succeeded", job_state="succeeded",
                                     result=make())
                attempt = store.start_attempt(second, "h", "0")
                store.finish_attempt(attempt, "succeeded", job_state="succeeded",
                                     result=make())
                store.release(sid, "c:1")
                tab.wait_for("jobs done\n\n2", gone="this page updates itself")
        finally:
            os.killpg(browser.pid, signal.SIGTERM)
            browser.wait(timeout=20)
