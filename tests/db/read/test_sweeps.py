"""What the readers say of a sweep whose coordinator died (SIGKILL) and of a sweep file the
user edited, on a real database written through the coordinator's own recording path."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import Job, Sweep, utcnow
from db.read.jobs import job_detail, running_attempts, sweep_jobs
from db.read.sweeps import LOST_ATTEMPT, sweep_rows, sweeps_frame
from db.store import STALE_AFTER, Store
from tests.db.read.recorded import finish, record, sweep_text


def _start(store: Store, key: str) -> int:
    with store.session() as s:
        job_id = s.scalar(select(Job.id).where(Job.key == key))
    store.start_attempt(job_id, "h", "0")
    return job_id


def _beat(store: Store, monkeypatch, ago: timedelta, *, take: bool = False) -> None:
    """Coordinator h:1's heartbeat (its lease taken first if `take`), as of `ago` ago."""
    monkeypatch.setattr("db.store.utcnow", lambda: utcnow() - ago)
    with store.session() as s:
        sid = s.scalar(select(Sweep.id))
    if take:
        store.acquire(sid, "h:1", stale_after=STALE_AFTER, owner_alive=lambda _o: True)
    store.heartbeat(sid, "h:1")
    monkeypatch.undo()


def test_a_lost_coordinator_is_named_and_its_attempts_are_unknown(tmp_path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    planned = record(store, sweep_text(repeats=1))
    _beat(store, monkeypatch, timedelta(minutes=20), take=True)  # its run began 20 min ago
    finish(store, planned[0].key, 100.0)
    job_id = _start(store, planned[1].key)

    _beat(store, monkeypatch, timedelta(seconds=2))  # alive: a heartbeat 2 s ago
    (row,) = sweep_rows(store)
    assert row.state() == "running" and row.state_text() == "running"
    assert [a.state for a in running_attempts(store)] == ["running"]
    assert job_detail(store, job_id)["attempts"][0]["outcome"] == "running"

    assert 20 * 60 <= sweeps_frame(store).iloc[0]["duration_s"] < 20 * 60 + 30  # until now
    _beat(store, monkeypatch, STALE_AFTER + timedelta(minutes=12))  # SIGKILLed: silent since
    (row,) = sweep_rows(store)
    assert row.state() == "lost" and row.state_text() == "coordinator lost 13 min ago"
    (attempt,) = running_attempts(store)
    assert attempt.state == LOST_ATTEMPT and attempt.lost_for > STALE_AFTER
    jobs = sweep_jobs(store, "s").set_index("job_id")
    assert jobs.loc[job_id, "state"] == LOST_ATTEMPT and jobs.loc[job_id, "outcome"] == \
        LOST_ATTEMPT
    detail = job_detail(store, job_id)
    assert detail["state"] == LOST_ATTEMPT
    assert detail["attempts"][0]["outcome"] == LOST_ATTEMPT
    assert detail["attempts"][0]["duration_s"] is None  # no duration that keeps growing
    frame = sweeps_frame(store).iloc[0]
    assert frame["state"] == "lost" and frame["note"] == "coordinator lost 13 min ago"
    assert (frame["running"], frame["unknown"]) == (0, 1)
    # Its duration ends at its last heartbeat, not now.
    assert frame["duration_s"] == pytest.approx(7 * 60, abs=5)


def test_counts_and_jobs_follow_the_current_sweep_file(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    record(store, sweep_text(matrix="{max_num_seqs: [4, 8]}", repeats=1))
    record(store, sweep_text(variants="  ref: {kind: hf}\n  fast: {kind: hf, options: "
                                      "{attn_implementation: eager}}",
                             matrix="{max_num_seqs: [4]}", repeats=1, baseline="ref"))
    (row,) = sweep_rows(store)
    assert row.counts.total == 2 and row.hidden == 2 and row.baseline == "ref"
    (every,) = sweep_rows(store, every=True)
    assert every.counts.total == 4 and every.hidden == 0
    jobs = sweep_jobs(store, "s")
    assert set(jobs["variant"]) == {"ref", "fast"} and jobs.attrs["hidden"] == 2
    assert set(jobs["max_num_seqs"]) == {4}
    old = sweep_jobs(store, "s", every=True)
    assert len(old) == 4 and set(old["variant"]) == {"ref", "fast", "base"}
