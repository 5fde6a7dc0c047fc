"""The sweep lease under contention: coordinators that start at the same moment, as real
processes on one database file (or PostgreSQL server), never both win."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

from db.models import Sweep
from db.store import LeaseHeld, Store, head_revision, schema_revision

TRIALS = 15


def _contend(url: str, sweep_id: int, owner: str, barrier, won) -> None:
    store = Store(url)
    barrier.wait(timeout=30)
    try:
        store.acquire(sweep_id, owner, stale_after=timedelta(seconds=60),
                      owner_alive=lambda _owner: True)
        won.put(owner)
    except LeaseHeld:
        won.put(None)
    finally:
        store.close()


def _race(target, args_of, n: int = 2) -> list:
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_of(i), barrier, out)) for i in range(n)]
    for p in procs:
        p.start()
    got = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return got


def test_exactly_one_coordinator_takes_a_free_lease(db_url):
    store = Store(db_url)
    for trial in range(TRIALS):
        sid = store.upsert_sweep(f"s{trial}", "name: s", None)
        got = _race(_contend, lambda i, sid=sid: (db_url, sid, f"host:{100 + i}"))
        winners = [w for w in got if w]
        assert len(winners) == 1, f"trial {trial}: {got}"
        with store.session() as s:
            assert s.get(Sweep, sid).owner == winners[0]


def test_a_live_holder_keeps_the_lease_and_its_attempts(db_url):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [dict(key="a", ordinal=0, variant="hf", engine="hf", options={},
                              model="m", workload="standard", workload_fingerprint="f",
                              max_num_seqs=4, gpu_memory_utilization=0.9, repeat=0, spec="{}")])
    store.acquire(sid, "host:1", stale_after=timedelta(seconds=60), owner_alive=lambda o: True)
    job = store.pending_jobs(sid, ["a"])[0]
    attempt = store.start_attempt(job.id, "host", "cpu0")
    try:
        store.acquire(sid, "host:2", stale_after=timedelta(seconds=60),
                      owner_alive=lambda o: True)
        raise AssertionError("a second coordinator took a live lease")
    except LeaseHeld as e:
        assert "host:1" in str(e)
    assert [a.outcome for a in store.attempts_of(job.id)] == ["running"]
    assert attempt
    # A dead holder (its process is gone) is taken over, and its attempt becomes lost.
    assert store.acquire(sid, "host:2", stale_after=timedelta(seconds=60),
                         owner_alive=lambda o: False) == 1


def _open(url: str, _i: int, barrier, out) -> None:
    barrier.wait(timeout=30)
    try:
        Store(url).close()
        out.put("ok")
    except Exception as e:  # reported to the parent, which asserts on it
        out.put(f"{type(e).__name__}: {e}")


def _create(url: str, _i: int, barrier, out) -> None:
    store = Store(url)
    barrier.wait(timeout=30)
    try:
        out.put(store.upsert_sweep("same", "name: same", None))
    except Exception as e:
        out.put(f"{type(e).__name__}: {e}")


def test_first_open_and_sweep_creation_do_not_race(tmp_path):
    for trial in range(5):
        url = f"sqlite:///{tmp_path / f'new{trial}.db'}"
        assert _race(_open, lambda i, url=url: (url, i)) == ["ok", "ok"]
        assert schema_revision(Store(url).engine) == head_revision()
        ids = _race(_create, lambda i, url=url: (url, i))
        assert len(set(ids)) == 1 and isinstance(ids[0], int), ids
