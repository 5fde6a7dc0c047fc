"""Databases for the dashboard tests: one filled by real sweeps (the tiny model on this CPU,
through `orchestrate sweep`), built once a session; small synthetic ones written through the
Store's write API; and the broken kinds a user may point the dashboard at."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.dashboard_load import synthesize
from db.models import Host, utcnow
from db.store import Store

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"

# Three real sweeps: a 2 x 2 x 2 grid with repeats; the same model on another workload (so
# Compare has cells it must grey out); and one whose every job fails.
SWEEPS = {
    "dash": """\
        name: dash
        model: {arch: tiny}
        workload: {num_seqs: 4, input_len: [8, 24], output_len: [2, 6]}
        variants:
          nano: {kind: nano}
          nano-sync: {kind: nano, options: {async_scheduling: false}}
        matrix: {variant: [nano, nano-sync], max_num_seqs: [2, 4],
                 gpu_memory_utilization: [0.8, 0.9]}
        repeats: 2
        reuse: repeats  # a configuration's repeats on one engine start: half the processes
        timeout_s: 120
        baseline: nano
        """,
    "dash-other": """\
        name: dash-other
        model: {arch: tiny}
        workload: {num_seqs: 3, input_len: [8, 24], output_len: [2, 6]}
        variants: {nano: {kind: nano}}
        matrix: {max_num_seqs: [2, 4], gpu_memory_utilization: [0.9]}
        timeout_s: 120
        baseline: nano
        """,
    "dash-fail": """\
        name: dash-fail
        model: {arch: tiny}
        workload: {num_seqs: 4, input_len: [8, 24], output_len: [2, 6]}
        variants: {nano: {kind: nano}}
        matrix: {max_num_seqs: [2, 4], max_model_len: [16]}  # prompts are longer: bad input
        timeout_s: 120
        baseline: nano
        """,
}


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory, tiny_cache) -> str:
    """A real SQLite file filled by running real sweeps. BENCHSWEEP_TEST_DASHBOARD_DB names
    one built earlier (by this fixture) to skip the few minutes this takes."""
    if os.environ.get("BENCHSWEEP_TEST_DASHBOARD_DB"):
        return os.environ["BENCHSWEEP_TEST_DASHBOARD_DB"]
    tmp = tmp_path_factory.mktemp("dashboard-demo")
    url = f"sqlite:///{tmp / 'demo.db'}"
    env = dict(os.environ, BENCHSWEEP_CACHE=str(tiny_cache), BENCHSWEEP_DB=url,
               RAY_USAGE_STATS_ENABLED="0", COLUMNS="200")
    for name, body in SWEEPS.items():
        spec = tmp / f"{name}.yaml"
        spec.write_text(textwrap.dedent(body))
        run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "sweep", str(spec),
                              "--slots", "2"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=900)
        expected = 1 if name == "dash-fail" else 0
        assert run.returncode == expected, run.stdout + run.stderr
    return url


@pytest.fixture
def synth_db(tmp_path) -> str:
    """Three synthetic sweeps (one done with a few failures, one of failures only, one
    running) and an SSH inventory of three hosts."""
    url = f"sqlite:///{tmp_path / 'synth.db'}"
    store = synthesize(url, sweeps=3, jobs=40)
    with store.session() as s:
        s.add_all([
            Host(name="gpu-box-0", address="gw.example.com", port=40022, user="root",
                 state="ok", last_check_at=utcnow(),
                 last_check={"gpus": [{"name": "NVIDIA H100 80GB HBM3"}] * 2,
                             "python": "3.11.7", "disk_free_gb": 120}),
            Host(name="gpu-box-1", address="gw.example.com", port=40023, user="root",
                 state="quarantined", last_check_at=utcnow(),
                 last_check={"gpu": "NVIDIA H100 80GB HBM3"}),
            Host(name="gpu-box-9", address="10.0.0.9", user="ubuntu", state="unreachable",
                 last_check_at=utcnow(), last_check={"error": "connection timed out"}),
        ])
    store.close()
    return url


@pytest.fixture
def empty_db(tmp_path) -> str:
    """The schema of this version, and nothing in it."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url).close()
    return url


@pytest.fixture
def old_db(tmp_path) -> str:
    """A database another (older) benchsweep wrote: a schema revision this one lacks."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    with store.engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '0000_before_results'"))
    store.close()
    return url
