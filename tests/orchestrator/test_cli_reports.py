"""`orchestrate status`, `results`, `export` and `sweep --dry-run` through the real CLI on a
real SQLite file recorded by the coordinator's own path (tests/db/read/recorded.py)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from db.models import Job, Sweep, utcnow
from db.store import STALE_AFTER, Store
from orchestrator.cli import app
from tests.db.read.recorded import record, run_all, sweep_text

ROOT = Path(__file__).resolve().parents[2]
REPEATS = {("base", 0): 100.0, ("base", 1): 110.0, ("base", 2): 90.0,
           ("fast", 0): 200.0, ("fast", 1): 220.0, ("fast", 2): 180.0}


def cli(db: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, [*args, "--db", str(db)])
    return r.exit_code, r.output


def recorded(tmp_path: Path, **kw) -> tuple[Path, Store, list]:
    db = tmp_path / "b.db"
    store = Store(f"sqlite:///{db}")
    planned = record(store, sweep_text(**kw))
    return db, store, planned


def test_results_show_interval_and_verdict_in_every_format(tmp_path):
    db, store, planned = recorded(tmp_path)
    run_all(store, planned, REPEATS)
    code, text = cli(db, "results", "s")
    assert code == 0, text
    assert "2.00× (1.59–2.52×) faster" in text and "1.00× baseline" in text
    code, text = cli(db, "results", "s", "--format", "json")
    doc = json.loads(text)
    fast = next(r for r in doc["results"] if r["variant"] == "fast")
    assert fast["verdict"] == "faster" and 1 < fast["speedup_low"] < 2 < fast["speedup_high"]
    assert next(r for r in doc["results"] if r["variant"] == "base")["speedup_low"] is None
    code, text = cli(db, "results", "s", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["variant"] for r in rows] == ["base", "fast"] and rows[1]["verdict"] == "faster"
    code, text = cli(db, "results", "s", "--format", "markdown")
    assert "| variant | options |" in text and "| fast |" in text
    assert "2.00× (1.59–2.52×) faster |" in text


def test_a_result_taken_on_a_busy_host_is_marked_beside_its_figure(tmp_path):
    from engine.result import Conditions
    from tests.db.read.recorded import finish

    db, store, planned = recorded(tmp_path)
    busy = Conditions(nice=0, nice_asked=0, cpu_count=2, load_before=5.0, load_after=1.0,
                      cpu_s=1.0, wall_s=1.0, gpu_processes_before=[], gpu_processes_after=[])
    for p in planned:
        extra = {"conditions": busy} if (p.job.variant, p.job.repeat) == ("fast", 1) else {}
        finish(store, p.key, REPEATS[(p.job.variant, p.job.repeat)], **extra)
    code, text = cli(db, "results", "s", "--format", "json")
    rows = {r["variant"]: r for r in json.loads(text)["results"]}
    assert rows["fast"]["disturbed"] == "1 of 3: load 5.0 on 2 CPUs before"
    assert rows["base"]["disturbed"] == ""
    code, text = cli(db, "results", "s")
    assert code == 0 and "1 of 3: load 5.0 on 2 CPUs before" in text


def test_latency_in_results_json_csv_and_export_in_ms(tmp_path):
    from tests.db.read.recorded import finish

    db, store, planned = recorded(tmp_path)
    for p in planned:  # fast reports TTFT 40, 50, 60 ms; base (say, vllm by default) none
        extra = {"ttft_p50_s": 0.04 + 0.01 * p.job.repeat, "tpot_p50_s": 0.002} \
            if p.job.variant == "fast" else {}
        finish(store, p.key, REPEATS[(p.job.variant, p.job.repeat)], **extra)
    code, text = cli(db, "results", "s", "--format", "json")
    rows = {r["variant"]: r for r in json.loads(text)["results"]}
    assert rows["fast"]["ttft_p50_ms_mean"] == pytest.approx(50.0)
    assert rows["fast"]["tpot_p50_ms_mean"] == pytest.approx(2.0)
    assert rows["base"]["ttft_p50_ms_mean"] is None and rows["base"]["tpot_p50_ms_mean"] is None
    code, text = cli(db, "results", "s", "--format", "csv")
    got = {r["variant"]: r["ttft_p50_ms_mean"] for r in csv.DictReader(io.StringIO(text))}
    assert float(got["fast"]) == pytest.approx(50.0) and got["base"] == ""
    out = tmp_path / "r.csv"
    assert cli(db, "export", "s", "-o", str(out))[0] == 0
    df = pd.read_csv(out)
    fast = df[df["variant"] == "fast"].sort_values("repeat")
    assert fast["ttft_p50_ms"].tolist() == pytest.approx([40.0, 50.0, 60.0])
    assert df[df["variant"] == "base"]["tpot_p50_ms"].isna().all()


def test_percent_of_floor_in_results_and_export(tmp_path):
    from tests.db.read.recorded import finish
    from tests.engine.test_result import profiled

    db, store, planned = recorded(tmp_path, repeats=1)
    line = profiled().roofline  # a floor of 0.5 s
    for p in planned:  # fast: 100 tokens in 1 s, 50%; base has no roofline
        extra = {"roofline": line} if p.job.variant == "fast" else {}
        finish(store, p.key, 100.0, **extra)
    code, text = cli(db, "results", "s")
    assert code == 0 and "% of floor" in text and "50%" in text
    code, text = cli(db, "results", "s", "--format", "json")
    rows = {r["variant"]: r for r in json.loads(text)["results"]}
    assert rows["fast"]["percent_of_floor_mean"] == pytest.approx(50.0)
    assert rows["base"]["percent_of_floor_mean"] is None
    out = tmp_path / "r.csv"
    assert cli(db, "export", "s", "-o", str(out))[0] == 0
    df = pd.read_csv(out).set_index("variant")
    assert df.loc["fast", "percent_of_floor"] == pytest.approx(50.0)
    assert math.isnan(df.loc["base", "percent_of_floor"])


def test_one_repeat_says_no_spread(tmp_path):
    db, store, planned = recorded(tmp_path, repeats=1)
    run_all(store, planned, {"base": 100.0, "fast": 150.0})
    code, text = cli(db, "results", "s")
    assert code == 0 and "n=1, no spread" in text
    assert "0.0%" not in text and "None" not in text and "nan" not in text


def test_a_baseline_without_results_is_an_error(tmp_path):
    db, store, planned = recorded(tmp_path)
    run_all(store, planned, REPEATS)
    code, text = cli(db, "results", "s", "--baseline", "nope")
    assert code == 2
    assert text.strip() == ("error: --baseline 'nope': sweep s has no results for it "
                            "(variants with results: base, fast)")
    assert cli(db, "results", "s", "--baseline", "fast")[0] == 0


def test_max_model_len_is_a_column_and_splits_configurations(tmp_path):
    db, store, planned = recorded(tmp_path, matrix="{max_num_seqs: [4], max_model_len: "
                                                   "[64, 128]}", repeats=2)
    run_all(store, planned, {("base", 64, 0): 100.0, ("base", 64, 1): 101.0,
                             ("base", 128, 0): 300.0, ("base", 128, 1): 303.0,
                             "fast": 200.0})
    code, text = cli(db, "results", "s", "--format", "json")
    rows = json.loads(text)["results"]
    assert len(rows) == 4 and {r["n"] for r in rows} == {2}
    assert sorted({r["max_model_len"] for r in rows}) == [64, 128]
    code, text = cli(db, "results", "s")
    assert "max_model_len" in text and "83" not in text


def test_a_renamed_variant_and_an_edited_matrix(tmp_path):
    db, store, planned = recorded(tmp_path, matrix="{max_num_seqs: [4, 8]}")
    run_all(store, planned, {**{(v, r): t for (v, r), t in REPEATS.items()}})
    record(store, sweep_text(variants="  ref: {kind: hf}\n  quick: {kind: hf, options: "
                                      "{attn_implementation: eager}}",
                             matrix="{max_num_seqs: [4]}", baseline="ref"))
    code, text = cli(db, "results", "s", "--format", "json")
    doc = json.loads(text)
    assert {r["variant"] for r in doc["results"]} == {"ref", "quick"}
    assert {r["max_num_seqs"] for r in doc["results"]} == {4}
    quick = next(r for r in doc["results"] if r["variant"] == "quick")
    assert quick["speedup"] == 2.0 and quick["verdict"] == "faster"
    assert doc["notes"] == ["s: 6 results of jobs no longer in the sweep file hidden "
                            "(--all shows them)"]
    code, text = cli(db, "results", "s", "--all", "--format", "json")
    assert len(json.loads(text)["results"]) == 4 and json.loads(text)["notes"] == []
    code, text = cli(db, "status")
    assert code == 0 and "s: 6 jobs no longer in the sweep file hidden (--all shows them)" \
        in text
    status = json.loads(cli(db, "status", "--format", "json")[1])["sweeps"][0]
    assert (status["jobs"], status["hidden"]) == (6, 6)
    status = json.loads(cli(db, "status", "--all", "--format", "json")[1])["sweeps"][0]
    assert status["jobs"] == 12
    for fmt, read in (("csv", pd.read_csv), ("json", pd.read_json),
                      ("parquet", pd.read_parquet)):
        out = tmp_path / f"r.{fmt}"
        assert cli(db, "export", "s", "--format", fmt, "-o", str(out))[0] == 0
        df = read(out)
        assert len(df) == 6 and set(df["variant"]) == {"ref", "quick"}
        assert set(df[df["variant"] == "quick"]["verdict"]) == {"faster"}
        assert {"speedup", "speedup_low", "speedup_high", "max_model_len"} <= set(df.columns)


def test_export_says_why_it_cannot_write(tmp_path):
    db, store, planned = recorded(tmp_path)
    run_all(store, planned, REPEATS)
    code, text = cli(db, "export", "s", "-o", str(tmp_path / "no" / "r.csv"))
    assert code == 1
    assert text.strip() == f"error: cannot write {tmp_path / 'no' / 'r.csv'}: No such file " \
                           f"or directory"


def test_status_names_a_lost_coordinator(tmp_path):
    db, store, planned = recorded(tmp_path, repeats=1)
    with store.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.key == planned[0].key))
    store.start_attempt(job_id, "h", "0")
    with store.session() as s:
        s.execute(update(Sweep).values(owner="h:1", heartbeat_at=utcnow() - STALE_AFTER
                                       - timedelta(minutes=4)))
    code, text = cli(db, "status", "s")
    assert code == 0 and "coordinator lost 5 min ago" in text
    assert "unknown (coordinator lost)" in text and "1 unknown" in text
    doc = json.loads(cli(db, "status", "s", "--format", "json")[1])
    assert doc["running"][0]["state"] == "unknown (coordinator lost)"
    assert doc["running"][0]["elapsed_s"] is None


def test_status_shows_a_duration_summed_over_the_coordinator_runs(tmp_path, monkeypatch):
    db, store, _ = recorded(tmp_path, repeats=1)
    sid = store.sweep_id("s")
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    for start, end, how, by in ((0, 20, "finished", None), (60, 102, "stopped", "SIGTERM")):
        monkeypatch.setattr("db.store.utcnow", lambda m=start: t0 + timedelta(minutes=m))
        store.acquire(sid, "h:1", stale_after=STALE_AFTER, owner_alive=lambda _o: True)
        monkeypatch.setattr("db.store.utcnow", lambda m=end: t0 + timedelta(minutes=m))
        store.release(sid, "h:1", ended=how, signal=by)
    code, text = cli(db, "status")
    assert code == 0, text
    row = next(ln for ln in text.splitlines() if ln.startswith("│ s "))
    assert "stopped by SIGTERM" in row and row.rstrip("│ ").endswith("1h 02m over 2 runs")
    (doc,) = json.loads(cli(db, "status", "--format", "json")[1])["sweeps"]
    assert (doc["duration_s"], doc["runs"], doc["state"]) == (3720.0, 2, "stopped by SIGTERM")


def test_without_a_terminal_tables_print_at_full_width(tmp_path):
    """Piped to a file or a log, a table is never cut to 80 columns; user text is text."""
    db, store, planned = recorded(tmp_path, variants="  '[/]': {kind: hf}\n  "
                                  "a-variant-with-a-rather-long-name-for-a-table: {kind: hf, "
                                  "options: {attn_implementation: eager}}", baseline="'[/]'",
                                  repeats=1)
    run_all(store, planned, {"[/]": 100.0,
                             "a-variant-with-a-rather-long-name-for-a-table": 120.0})
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "results", "s", "--db",
                          str(db)], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    row = next(ln for ln in lines if "a-variant-with-a-rather-long-name-for-a-table" in ln)
    assert len(row) > 120 and "(n=1, no spread)" in row  # one line, nothing cut
    assert any("│ [/] " in ln for ln in lines)


def test_dry_run_shows_every_axis_of_the_key(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(sweep_text(variants="  '[/]': {kind: hf}", baseline="'[/]'", repeats=1,
                               matrix="{max_num_seqs: [4], max_model_len: [64, 128], "
                                      "attn_implementation: [sdpa, eager]}"))
    code, text = cli(tmp_path / "none.db", "sweep", str(spec), "--dry-run")
    assert code == 0, text
    header = next(ln for ln in text.splitlines() if "variant" in ln and "key" in ln)
    assert "max_model_len" in header and "attn_implementation" in header
    assert text.count("│ [/] ") == 4
    assert not (tmp_path / "none.db").exists()


def test_status_of_a_sweep_shows_its_efficiency(tmp_path):
    """Under the table: timed generate ÷ GPU time held, per variant and overall."""
    from tests.db.read.test_timeline import fill

    db = tmp_path / "t.db"
    fill(Store(f"sqlite:///{db}"))
    code, text = cli(db, "status", "s")
    assert code == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("efficiency")]
    assert lines == [
        "efficiency (timed generate ÷ GPU time held) vllm: 6% (6.0 s timed generate of "
        "100.0 s GPU time held, 1 attempt(s), engine starts 60%)",
        "efficiency (timed generate ÷ GPU time held) nano: 20% (10.0 s timed generate of "
        "50.0 s GPU time held, 3 attempt(s), engine starts 20%)",
        "efficiency (timed generate ÷ GPU time held) all: 11% (16.0 s timed generate of "
        "150.0 s GPU time held, 4 attempt(s), engine starts 47%)"]
    assert "efficiency" not in cli(db, "status")[1]  # only of one sweep
