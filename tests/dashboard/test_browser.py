"""End to end: `orchestrate dashboard` serves the demo database; Debian's headless chromium
loads every page, and the DOM and screenshots show the heatmap, charts and tables rendered.

BENCHSWEEP_SCREENSHOTS=DIR copies the screenshots there (docs/screenshots is refreshed so)."""

from __future__ import annotations

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

from tests.dashboard.conftest import ROOT
from tests.dashboard.test_app import job_ids

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


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--window-size=1400,1000", *args, url],
        capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def server(demo_db, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "dashboard", "--db", demo_db, "--port",
             str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ, COLUMNS="200"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the dashboard did not come up"
            time.sleep(0.5)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def render(url: str, tmp: Path, name: str, markers: list[str], tries: int = 10) -> str:
    """Load the page once for its DOM and screenshot together, until every marker is in the
    DOM and the screenshot shows content. Virtual time runs ahead while the page waits on its
    websocket, so on a busy machine a load may end on the loading skeleton: load again."""
    out = tmp / f"{name}.png"
    dom, dark = "", 0
    for _ in range(tries):
        dom = chromium(url, tmp / "profile", "--dump-dom", f"--screenshot={out}").stdout
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
                                   'data-testid="stVegaLiteChart"', "Log tail"]),
        "compare": ("compare?a=dash&b=dash-other", ['data-testid="stVegaLiteChart"',
                                                     "different workload",
                                                     'data-testid="stDataFrame"']),
        "hosts": ("hosts", ['data-testid="stDataFrame"', "Hosts that ran jobs"]),
    }
    for name, (path, markers) in pages.items():
        url = f"{base}/{path}"
        dom = render(url, tmp_path, name, markers)
        assert "Traceback" not in dom and 'data-testid="stException"' not in dom, name
        if name == "sweep":
            assert dom.count('data-testid="stVegaLiteChart"') == 3  # heatmap, lines, timeline


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
