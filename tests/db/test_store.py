from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text

from db.models import RESULT_FIGURES, Result
from db.store import SchemaError, Store, head_revision, resolve_url, schema_revision
from tests.engine.test_result import make


def _job(key: str, ordinal: int = 0, **kw) -> dict:
    return dict(key=key, ordinal=ordinal, variant="hf", engine="hf", options={}, model="m",
                workload="standard", workload_fingerprint="f", max_num_seqs=4,
                gpu_memory_utilization=0.9, repeat=0, spec="{}") | kw


# 5.0 output and 9.0 total tok/s, 1.0 s to start.
RESULT = make(output_tokens=10, elapsed_s=2.0, prompt_tokens=8, load_s=1.0,
              peak_memory_bytes=2**40)


def test_resolve_url(monkeypatch):
    monkeypatch.delenv("BENCHSWEEP_DB", raising=False)
    assert resolve_url(None) == "sqlite:///benchsweep.db"
    assert resolve_url("x/y.db") == "sqlite:///x/y.db"
    assert resolve_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    monkeypatch.setenv("BENCHSWEEP_DB", "sqlite:////tmp/z.db")
    assert resolve_url(None) == "sqlite:////tmp/z.db"


def test_schema_is_migrated_to_head(db_url):
    store = Store(db_url)
    assert schema_revision(store.engine) == head_revision()
    Store(db_url)  # opening again is a no-op


def test_sqlite_uses_wal(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_unknown_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url).close()
    with create_engine(url).begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'fromthefuture'"))
    with pytest.raises(SchemaError, match="fromthefuture"):
        Store(url)


def test_jobs_are_added_once_per_key(db_url):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", "hf")
    assert store.add_jobs(sid, [_job("a"), _job("b", 1)]) == 2
    assert store.add_jobs(sid, [_job("a"), _job("b", 1), _job("c", 2)]) == 1
    assert store.upsert_sweep("s", "name: s # edited", "hf") == sid
    assert store.counts(sid).pending == 3


def test_attempts_results_and_recovery(db_url):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a"), _job("b", 1)])
    a, b = store.pending_jobs(sid, ["a", "b"])
    assert store.acquire(sid, "h:1", stale_after=timedelta(seconds=60),
                         owner_alive=lambda o: True) == 0
    at = store.start_attempt(a.id, "host1", "gpu0")
    store.finish_attempt(at, "succeeded", job_state="succeeded", result=RESULT)
    bt = store.start_attempt(b.id, "host1", "gpu1")
    assert store.counts(sid).running == 1
    # Another coordinator while the first is alive: refused.
    with pytest.raises(RuntimeError, match="being run by h:1"):
        store.acquire(sid, "h:2", stale_after=timedelta(seconds=60), owner_alive=lambda o: True)
    # The first died: the running attempt is lost, its job pending again, nothing else moves.
    assert store.acquire(sid, "h:2", stale_after=timedelta(seconds=60),
                         owner_alive=lambda o: False) == 1
    c = store.counts(sid)
    assert (c.succeeded, c.pending, c.running) == (1, 1, 0)
    (lost,) = store.attempts_of(b.id)
    assert lost.id == bt and lost.outcome == "lost"
    again = store.start_attempt(b.id, "host2", "gpu0")
    assert [x.number for x in store.attempts_of(b.id)] == [1, 2] and again != bt


def test_result_row_is_filled_from_the_bench_result(db_url):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a"), _job("b", 1)])
    a, b = store.pending_jobs(sid, ["a", "b"])
    on_card = make(env={"gpu": {"name": "H200"}})
    for job, result in ((a, RESULT), (b, on_card)):
        at = store.start_attempt(job.id, "host1", "3")
        store.finish_attempt(at, "succeeded", job_state="succeeded", result=result)
    assert set(RESULT_FIGURES) < set(Result.__table__.columns.keys())
    with store.session() as s:
        ra, rb = (s.scalar(select(Result).where(Result.job_id == j.id)) for j in (a, b))
        assert {n: getattr(ra, n) for n in RESULT_FIGURES} == {
            "output_tokens": 10, "elapsed_s": 2.0, "output_tok_s": 5.0, "total_tok_s": 9.0,
            "start_s": 1.0, "peak_memory_bytes": 2**40}
        assert ra.record == RESULT.to_dict() and ra.host == "host1"
        # The card's name where envinfo read one, else the attempt's GPU.
        assert (ra.gpu_name, rb.gpu_name) == ("3", "H200")


def test_reset_for_force_drops_results(db_url):
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a")])
    (a,) = store.pending_jobs(sid, ["a"])
    at = store.start_attempt(a.id, "h", "cpu")
    store.finish_attempt(at, "succeeded", job_state="succeeded", result=RESULT)
    assert store.reset_jobs(sid, ["a"], states=("failed",)) == 0
    assert store.reset_jobs(sid, ["a"], states=("succeeded", "failed")) == 1
    assert store.counts(sid).pending == 1
    with store.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM results")).scalar() == 0
