"""Every page follows the database, whenever it was opened: before, during or after a run.
A page is opened (AppTest), the database written through the Store as a coordinator writes
it, then the page's poll runs as the browser's timer runs it (pages.poll): the page is drawn
again where the database moved, and only there."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from db.models import Job, utcnow
from db.store import STALE_AFTER, Store
from tests.dashboard.pages import open_page, poll, texts
from tests.db.read.recorded import record, sweep_text
from tests.engine.test_result import make

OWNER = "coordinator:1"


def _sweep(url: str) -> tuple[Store, int, list[int]]:
    """A sweep of two jobs recorded as `orchestrate sweep` records it, its lease not taken."""
    store = Store(url)
    record(store, sweep_text(variants="  base: {kind: hf}", repeats=2))
    with store.session() as s:
        jobs = list(s.scalars(select(Job.id).order_by(Job.ordinal)))
    return store, store.sweep_id("s"), jobs


def _take(store: Store, sid: int) -> None:
    store.acquire(sid, OWNER, stale_after=STALE_AFTER, owner_alive=lambda _o: True)


def _succeed(store: Store, job: int) -> None:
    attempt = store.start_attempt(job, "h", "0")
    store.finish_attempt(attempt, "succeeded", job_state="succeeded", result=make())


def _redrawn(at) -> bool:
    return bool(at.title)


def test_the_sweeps_page_follows_a_sweep_that_starts_after_it_opened(empty_db, monkeypatch):
    at = open_page(monkeypatch, empty_db)
    assert "No sweeps yet" in texts(at.info)
    assert not _redrawn(poll(at))  # nothing changed: nothing drawn again

    store, sid, (first, second) = _sweep(empty_db)
    _take(store, sid)
    store.start_attempt(first, "h", "0")
    row = poll(at).dataframe[0].value.set_index("name").loc["s"]
    assert (row["state"], row["running"], row["pending"]) == ("running", 1, 1)
    assert "1 sweep(s) running" in texts(at.caption)
    assert not _redrawn(poll(at))

    _succeed(store, second)
    row = poll(at).dataframe[0].value.set_index("name").loc["s"]
    assert (row["state"], row["done"], row["running"]) == ("running", 1, 1)
    store.release(sid, OWNER, ended="stopped", signal="SIGTERM")
    row = poll(at).dataframe[0].value.set_index("name").loc["s"]
    assert (row["state"], row["note"]) == ("stopped", "stopped by SIGTERM")
    assert not texts(at.caption)


def test_the_sweep_page_follows_its_run_to_the_end(empty_db, monkeypatch):
    store, sid, (first, second) = _sweep(empty_db)
    _take(store, sid)
    at = open_page(monkeypatch, empty_db, "sweep", sweep="s")
    assert ":blue-badge[running]" in texts(at.markdown)
    assert "No results yet" in texts(at.info)
    _succeed(store, first)
    metrics = {m.label: m.value for m in poll(at).metric}
    assert (metrics["done"], metrics["pending"]) == ("1 / 2", "1")
    _succeed(store, second)
    store.release(sid, OWNER)
    poll(at)
    assert ":green-badge[done]" in texts(at.markdown)
    assert {m.label: m.value for m in at.metric}["done"] == "2 / 2"
    assert at.dataframe[0].value["n"].tolist() == [2]  # the speedup table: both repeats


def test_the_job_page_follows_its_running_job(empty_db, monkeypatch):
    store, sid, (job, _) = _sweep(empty_db)
    _take(store, sid)
    attempt = store.start_attempt(job, "h", "0")
    at = open_page(monkeypatch, empty_db, "job", job=job)
    assert "Attempt 1 is running on h / 0" in at.info[0].value
    assert not _redrawn(poll(at))
    store.finish_attempt(attempt, "failed", job_state="pending", error="the GPU fell off",
                         error_kind="crash")
    second = store.start_attempt(job, "h", "1")
    poll(at)
    assert at.dataframe[0].value["outcome"].tolist() == ["failed", "running"]
    assert "Attempt 2 is running on h / 1" in at.info[0].value
    assert "Attempt 2 has no output yet." in texts(at.caption)
    # Its output as it comes: drawn as text (never Markdown), progress bars collapsed.
    store.append_logs([(second, "loading **weights**\n\r 10%\r100%\n", 0)])
    assert poll(at).code[0].value == "loading **weights**\n100%"
    store.append_logs([(second, "step 2\n", 0)])
    assert poll(at).code[0].value.endswith("100%\nstep 2")
    assert not _redrawn(poll(at))


def test_the_job_page_shows_a_long_logs_end_and_offers_all_of_it(empty_db, monkeypatch):
    store, _, (job, _) = _sweep(empty_db)
    attempt = store.start_attempt(job, "h", "0")
    store.append_logs([(attempt, "".join(f"line {i}\n" for i in range(500)), 0)])
    store.finish_attempt(attempt, "failed", job_state="failed", error="x", error_kind="crash")
    at = open_page(monkeypatch, empty_db, "job", job=job)
    shown = at.code[0].value.splitlines()
    assert shown[0] == "line 300" and shown[-1] == "line 499"
    assert "The last 200 of 500 lines; the download has them all." in texts(at.caption)
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the whole log"


def test_a_coordinator_that_goes_quiet_is_shown_lost_without_a_write(empty_db, monkeypatch):
    """Its heartbeat 10 s short of STALE_AFTER when the page opens; nothing is written after;
    the poll once it is stale shows it lost."""
    store, sid, (job, _) = _sweep(empty_db)
    last_beat = utcnow() - STALE_AFTER + timedelta(seconds=10)
    with monkeypatch.context() as m:
        m.setattr("db.store.utcnow", lambda: last_beat)
        _take(store, sid)
    store.start_attempt(job, "h", "0")
    at = open_page(monkeypatch, empty_db)
    assert at.dataframe[0].value.set_index("name").loc["s", "state"] == "running"
    time.sleep(max(0.0, (last_beat + STALE_AFTER - utcnow()).total_seconds()) + 1)
    row = poll(at).dataframe[0].value.set_index("name").loc["s"]
    assert (row["state"], row["note"]) == ("lost", "coordinator lost 1 min ago")
    assert row["running"] == 0  # its attempt is not known to run


def test_the_no_database_page_recovers_when_the_database_appears(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'later.db'}"
    at = open_page(monkeypatch, url)
    assert "There is no database at" in at.warning[0].value
    assert not _redrawn(poll(at))
    (tmp_path / "later.db").touch()  # a coordinator has created the file, not the schema
    assert "is empty" in poll(at).warning[0].value
    store, sid, _ = _sweep(url)
    _take(store, sid)
    poll(at)  # the whole app again: its navigation and the default page
    assert [t.value for t in at.title] == ["Sweeps"] and not at.warning
    assert at.dataframe[0].value["state"].tolist() == ["running"]


@pytest.mark.parametrize("view", ["sweeps", "sweep", "job", "compare", "hosts"])
def test_every_page_polls_and_draws_again_only_on_a_change(synth_db, monkeypatch, view):
    at = open_page(monkeypatch, synth_db, None if view == "sweeps" else view,
                   **{"sweep": {"sweep": "phase2-002"}, "job": {"job": 1},
                      "compare": {"a": "phase2-000", "b": "phase2-001"}}.get(view, {}))
    assert not _redrawn(poll(at))
    store = Store(synth_db)
    store.save_host("gpu-box-7", address="10.0.0.7", port=22, user="u", key_file=None,
                    setup=None)
    assert _redrawn(poll(at))
