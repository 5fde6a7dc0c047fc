"""db.read.changes: every write a coordinator (or `orchestrate hosts`) makes moves the change
token, reading does not, and a coordinator that goes quiet moves it with no write at all; on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from db.models import utcnow
from db.read.changes import change_token
from db.read.sweeps import sweeps_frame
from db.store import STALE_AFTER, Store
from tests.db.test_store import RESULT, _job


def test_every_write_moves_the_token_and_reading_does_not(db_url):
    store = Store(db_url)
    seen = [change_token(store)]

    def moved() -> bool:
        seen.append(change_token(store))
        return seen[-1] != seen[-2]

    sid = store.upsert_sweep("s", "name: s", None)
    assert moved()
    store.add_jobs(sid, [_job("a"), _job("b", 1)])
    assert moved()
    store.acquire(sid, "h:1", stale_after=STALE_AFTER, owner_alive=lambda _o: True)
    assert moved() and (seen[-1].held, seen[-1].lost) == (1, 0)
    a, b = store.pending_jobs(sid, ["a", "b"])
    first = store.start_attempt(a.id, "h", "0")
    assert moved()
    store.finish_attempt(first, "failed", job_state="pending", error="x", error_kind="crash")
    assert moved()
    second = store.start_attempt(a.id, "h", "0")
    assert moved()
    store.finish_attempt(second, "succeeded", job_state="succeeded", result=RESULT)
    assert moved()
    store.heartbeat(sid, "h:1")
    assert moved()
    store.reset_jobs(sid, ["a"], states=("succeeded",))  # --force drops the result
    assert moved()
    store.release(sid, "h:1")
    assert moved() and seen[-1].held == 0
    store.save_host("box", address="10.0.0.1", port=22, user="u", key_file=None, setup=None)
    assert moved()
    store.record_check("box", "ok", {"gpus": []})
    assert moved()
    store.remove_host("box")
    assert moved()
    sweeps_frame(store)
    assert not moved()


def test_a_coordinator_that_goes_quiet_moves_the_token_by_itself(db_url, monkeypatch):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.acquire(sid, "h:1", stale_after=STALE_AFTER, owner_alive=lambda _o: True)
    alive = change_token(store)
    assert (alive.held, alive.lost) == (1, 0)
    later = utcnow() + STALE_AFTER + timedelta(seconds=1)
    monkeypatch.setattr("db.read.changes.utcnow", lambda: later)
    quiet = change_token(store)
    assert (quiet.held, quiet.lost) == (1, 1) and quiet != alive


def test_output_of_a_job_moves_only_the_token_that_asks_for_it(db_url):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a"), _job("b", 1)])
    a, b = store.pending_jobs(sid, ["a", "b"])
    on_a, on_b = store.start_attempt(a.id, "h", "0"), store.start_attempt(b.id, "h", "1")
    before, before_a = change_token(store), change_token(store, job=a.id)
    assert before_a.log == (None,)
    store.append_logs([(on_a, "line\n", 0)])
    assert change_token(store) == before  # the pages that show no log do not redraw
    assert change_token(store, job=a.id) != before_a
    seen_a = change_token(store, job=a.id)
    store.append_logs([(on_b, "other\n", 0)])
    assert change_token(store, job=a.id) == seen_a
