"""db.read (sweeps, jobs, hosts) on synthetic databases written through the Store's write
API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from db.read.hosts import attempt_hosts, gpu_of, hosts_frame
from db.read.jobs import job_detail, sweep_jobs
from db.read.sweeps import sweep_info, sweep_state, sweeps_frame
from db.store import JobCounts, Store


def test_sweep_state():
    now = datetime.now(UTC)
    done, failed = JobCounts(succeeded=3), JobCounts(succeeded=1, failed=2)
    assert sweep_state(done, None, None, now) == "done"
    assert sweep_state(failed, None, None, now) == "failed"
    assert sweep_state(JobCounts(succeeded=1, pending=2), None, None, now) == "stopped"
    assert sweep_state(JobCounts(), None, None, now) == "empty"
    assert sweep_state(JobCounts(pending=2), "h:1", now - timedelta(seconds=5), now) == "running"
    # A coordinator whose heartbeat went quiet is lost, whatever its jobs' states say.
    assert sweep_state(JobCounts(pending=2), "h:1", now - timedelta(minutes=5), now) == "lost"
    assert sweep_state(JobCounts(running=2), "h:1", now - timedelta(minutes=5), now) == "lost"


def test_sweeps_frame_and_jobs(synth_db):
    store = Store(synth_db, upgrade=False)
    sweeps = sweeps_frame(store).set_index("name")
    assert sweeps["state"].to_dict() == {"phase2-000": "done", "phase2-001": "failed",
                                         "phase2-002": "running"}
    running = sweeps.loc["phase2-002"]
    assert pd.isna(running["finished"]) and running["duration_s"] >= 0  # never finished
    assert (running["done"], running["running"], running["pending"]) == (20, 8, 12)
    assert sweeps.loc["phase2-000", "hosts"] == 4 and sweeps.loc["phase2-000", "total"] == 40
    assert sweep_info(store, "phase2-000")["baseline"] == "nano"
    assert sweep_info(store, "nope") is None
    jobs = sweep_jobs(store, "phase2-002")
    assert len(jobs) == 40 and jobs["ordinal"].is_monotonic_increasing
    assert set(jobs["state"]) == {"succeeded", "running", "pending"}
    assert jobs[jobs["state"] == "pending"]["attempts"].eq(0).all()
    assert jobs[jobs["state"] == "succeeded"]["output_tok_s"].gt(0).all()
    assert sweep_jobs(store, "nope").empty


def test_job_detail(synth_db):
    store = Store(synth_db, upgrade=False)
    jobs = sweep_jobs(store, "phase2-001")
    failed = job_detail(store, int(jobs["job_id"].iloc[0]))
    assert failed["state"] == "failed" and failed["result"] is None
    (attempt,) = failed["attempts"]
    assert attempt["outcome"] == "failed" and attempt["error_kind"] == "oom"
    assert attempt["duration_s"] == 12.0 and "OutOfMemory" in attempt["log_tail"]
    ok = job_detail(store, int(sweep_jobs(store, "phase2-000")["job_id"].iloc[0]))
    assert ok["result"]["record"]["capture_s"] == 3.2 and ok["sweep"] == "phase2-000"
    assert ok["result"]["bench"].capture_s == 3.2 and ok["result"]["bench"].num_seqs == 256
    assert job_detail(store, 10**9) is None


def test_hosts(synth_db):
    store = Store(synth_db, upgrade=False)
    inv = hosts_frame(store).set_index("name")
    assert inv.loc["gpu-box-0", "address"] == "gw.example.com:40022"
    assert inv.loc["gpu-box-0", "jobs_run"] == 10 + 10 + 7
    assert "python 3.11.7" in inv.loc["gpu-box-0", "check"]
    seen = attempt_hosts(store).set_index("host")
    assert set(seen.index) == {"gpu-box-0", "gpu-box-1", "gpu-box-2", "gpu-box-3"}
    assert seen["attempts"].sum() == 40 + 40 + 28
    assert seen["failed"].sum() == 40 and "NVIDIA H100" in seen.loc["gpu-box-0", "cards"]


def test_gpu_of_reads_any_spelling():
    assert gpu_of(None) == "" and gpu_of({}) == ""
    assert gpu_of({"gpus": ["A", "A", "B"]}) == "2× A, B"
    assert gpu_of({"gpu": {"name": "H100"}}) == "H100"
    assert gpu_of({"gpu_name": "L4"}) == "L4"
