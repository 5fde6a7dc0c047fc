"""A sweep's coordinator runs (db.models.SweepRun), written where the Store takes, beats and
gives up the lease, and its duration read as their sum (db.read.sweeps), on SQLite and
PostgreSQL. A clock the test moves stands in for hours of runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from db.read.sweeps import sweep_rows
from db.store import STALE_AFTER, Store, _alembic_config
from tests.db.test_store import _job

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def at(self, minutes: float) -> datetime:
        self.now = T0 + timedelta(minutes=minutes)
        return self.now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("db.store.utcnow", c)
    return c


def _acquire(store: Store, sid: int, owner: str, alive: bool = True) -> int:
    return store.acquire(sid, owner, stale_after=STALE_AFTER, owner_alive=lambda _o: alive)


def test_each_run_is_recorded_and_the_duration_is_their_sum(db_url, clock):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a")])
    clock.at(0)
    _acquire(store, sid, "h:1")
    clock.at(10)
    store.heartbeat(sid, "h:1")
    clock.at(20)
    store.release(sid, "h:1", ended="stopped", signal="SIGTERM")
    (row,) = sweep_rows(store)
    assert row.state_text(clock.at(30)) == "stopped by SIGTERM"

    clock.at(60)
    _acquire(store, sid, "h:2")
    clock.at(90)
    store.heartbeat(sid, "h:2")  # then SIGKILLed: no release, no more heartbeats
    (row,) = sweep_rows(store)
    assert row.state(clock.at(90.5)) == "running"
    assert row.duration_s(clock.now) == pytest.approx((20 + 30.5) * 60)  # ticking
    assert row.state_text(clock.at(100)) == "coordinator lost 10 min ago"
    assert row.duration_s(clock.now) == pytest.approx(50 * 60)  # up to its last heartbeat

    clock.at(180)
    _acquire(store, sid, "h:3")  # takes the silent coordinator's lease over
    clock.at(185)
    store.heartbeat(sid, "h:3")
    clock.at(192)
    store.release(sid, "h:3")

    (row,) = sweep_rows(store)
    assert [(r.ended, r.signal) for r in row.runs] == [
        ("stopped", "SIGTERM"), ("lost", None), ("finished", None)]
    assert [r.ended_at - r.started_at for r in row.runs] == [
        timedelta(minutes=20), timedelta(minutes=30), timedelta(minutes=12)]
    assert row.duration_s(clock.at(600)) == 62 * 60
    assert row.duration_text(clock.now) == "1h 02m over 3 runs"


def test_a_run_that_ends_in_an_error_and_a_sweep_that_never_ran(db_url, clock):
    store = Store(db_url)
    ran = store.upsert_sweep("ran", "name: ran", None)
    store.upsert_sweep("never", "name: never", None)
    clock.at(0)
    _acquire(store, ran, "h:1")
    clock.at(2)
    store.release(ran, "h:1", ended="error")
    store.release(ran, "h:1", ended="finished")  # a second release changes nothing
    rows = {r.name: r for r in sweep_rows(store)}
    (run,) = rows["ran"].runs
    assert (run.ended, run.ended_at) == ("error", T0 + timedelta(minutes=2))
    assert rows["ran"].duration_text(clock.now) == "2m 00s"
    assert rows["never"].runs == () and rows["never"].duration_s(clock.now) is None
    assert rows["never"].duration_text(clock.now) == ""


def test_a_sweep_recorded_before_runs_were_keeps_its_duration(db_url):
    """Upgrading from schema 0001: the one run the sweeps table knew of becomes a row."""
    engine = create_engine(db_url)
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text(
            "INSERT INTO sweeps (name, spec_yaml, created_at, owner, heartbeat_at, "
            "last_started_at, last_finished_at) VALUES "
            "('old', 'name: old', :t0, NULL, :hb, :t0, :t1), "
            "('held', 'name: held', :t0, 'h:9', :hb, :t0, NULL)"),
            {"t0": T0, "t1": T0 + timedelta(minutes=175), "hb": T0 + timedelta(minutes=40)})
    engine.dispose()
    store = Store(db_url)  # migrates to head
    rows = {r.name: r for r in sweep_rows(store)}
    now = T0 + timedelta(days=1)
    assert rows["old"].duration_text(now) == "2h 55m"
    assert len(rows["old"].runs) == 1 and rows["old"].runs[0].ended is None
    # A coordinator that held its sweep then: its run is open, lost after its heartbeat.
    (held,) = rows["held"].runs
    assert held.ended_at is None and rows["held"].duration_s(now) == 40 * 60
    assert rows["held"].state_text(now).startswith("coordinator lost")
