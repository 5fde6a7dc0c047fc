import re
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select, text

from db.models import RESULT_FIGURES, AttemptLogChunk, Host, Result
from db.store import (
    DatabaseUnusable,
    NoDatabase,
    SchemaError,
    Store,
    head_revision,
    resolve_url,
    schema_revision,
    shown,
)
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
            "start_s": 1.0, "peak_memory_bytes": 2**40, "floor_s": None}
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


# --- a database that cannot be used is one line, before anything starts --------------------

@pytest.mark.parametrize("content", [bytes(range(256)) * 40, b"hello, not a database\n"])
def test_a_file_that_is_not_a_database_is_one_line(tmp_path, content):
    path = tmp_path / "b.db"
    path.write_bytes(content)
    for read_only in (False, True):
        with pytest.raises(DatabaseUnusable, match=f"^{path} is not a benchsweep database: "
                                                   f"file is not a database$") as e:
            Store(str(path), read_only=read_only)
        assert e.value.exit_code == 2
    assert path.read_bytes() == content  # not migrated, not truncated


@pytest.mark.parametrize("url, message", [
    ("foo://x", "'foo' is not a supported database"),
    ("postgresql+nodriver://h/d", "'postgresql+nodriver' is not a supported database"),
    ("postgresql://u:hunter2@localhost:abc/db", "its port is not a number"),
    ("mysql://u:hunter2@h/db", "needs the Python driver 'MySQLdb', which is not installed"),
    ("://nothing", "is malformed: not a URL"),
])
def test_a_bad_or_unsupported_url_is_one_line_without_its_password(url, message):
    with pytest.raises(DatabaseUnusable, match=re.escape(message)) as e:
        Store(url)
    assert e.value.exit_code == 2 and "hunter2" not in str(e.value)
    assert len(str(e.value).splitlines()) == 1


def test_a_reader_never_creates_a_database(tmp_path):
    path = tmp_path / "sub" / "b.db"
    with pytest.raises(NoDatabase, match=f"^no database at {path}; run a sweep first$"):
        Store(str(path), read_only=True)
    assert not path.parent.exists()
    path.parent.mkdir()
    path.touch()  # an empty file is an empty database: still nothing to read, nothing made
    with pytest.raises(NoDatabase, match="is empty; run a sweep first"):
        Store(str(path), read_only=True)
    assert path.stat().st_size == 0
    Store(str(path)).close()  # a writer creates the schema
    Store(str(path), read_only=True).close()


def test_an_empty_postgresql_database_is_not_migrated_by_a_reader(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("a database server's empty database")
    with pytest.raises(NoDatabase, match="is empty"):
        Store(db_url, read_only=True)
    with create_engine(db_url).connect() as c:
        assert not c.execute(text("SELECT count(*) FROM information_schema.tables "
                                  "WHERE table_name = 'alembic_version'")).scalar()


def test_a_database_that_refuses_writes_fails_when_it_opens(tmp_path):
    path = tmp_path / "b.db"
    Store(str(path)).close()
    ro = f"sqlite:///file:{path}?mode=ro&uri=true"
    with pytest.raises(DatabaseUnusable, match=f"^database {path} does not accept writes: "
                                               f"attempt to write a readonly database$") as e:
        Store(ro)
    assert e.value.exit_code == 1
    Store(ro, read_only=True).close()  # reading it is fine


def test_a_read_only_postgresql_database_fails_when_it_opens(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's read-only transactions")
    Store(db_url).close()
    name = db_url.rsplit("/", 1)[1]
    with create_engine(db_url, isolation_level="AUTOCOMMIT").connect() as c:
        c.execute(text(f"ALTER DATABASE {name} SET default_transaction_read_only = on"))
    with pytest.raises(DatabaseUnusable, match="does not accept writes: .*read-only"):
        Store(db_url)
    Store(db_url, read_only=True).close()


def test_the_url_can_come_from_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCHSWEEP_DB", raising=False)
    secret = tmp_path / "db.url"
    secret.write_text("\n  postgresql://u:hunter2@h/d  \n")
    assert resolve_url(f"@{secret}") == "postgresql+psycopg://u:hunter2@h/d"
    monkeypatch.setenv("BENCHSWEEP_DB_FILE", str(secret))
    assert resolve_url(None) == "postgresql+psycopg://u:hunter2@h/d"
    assert resolve_url("x.db") == "sqlite:///x.db"  # --db wins
    monkeypatch.setenv("BENCHSWEEP_DB", "y.db")
    assert resolve_url(None) == "sqlite:///y.db"  # and so does BENCHSWEEP_DB
    for bad, why in ((tmp_path / "none", "No such file"), (tmp_path, "Is a directory")):
        with pytest.raises(DatabaseUnusable, match=f"cannot read the database URL from {bad}: "
                                                   f"{why}"):
            resolve_url(f"@{bad}")


def test_a_url_is_shown_without_its_password():
    assert shown("postgresql+psycopg://u:hunter2@h:5432/d") == "postgresql+psycopg://u:***@h:5432/d"
    assert "hunter2" not in shown("postgresql+psycopg://u@h/d?password=hunter2&sslmode=require")
    assert "sslmode=require" in shown("postgresql+psycopg://u@h/d?sslmode=require")
    assert shown("postgresql://u:hunter2@h:x/d") == "postgresql://u:***@h:x/d"  # unparsable
    assert shown("sqlite:////tmp/b.db") == "/tmp/b.db"


def test_a_host_setup_line_is_stored_masked(tmp_path):
    store = Store(str(tmp_path / "b.db"))
    store.save_host("h", address="a", port=22, user="root", key_file=None,
                    setup="export PROXY_PASSWORD=hunter2 && source /etc/network_turbo")
    with store.session() as s:
        assert s.scalar(select(Host.setup)) == ("export PROXY_PASSWORD=*** && "
                                                "source /etc/network_turbo")


def _chunks(store: Store, attempt_id: int) -> list[tuple[int, str]]:
    with store.session() as s:
        return list(s.execute(select(AttemptLogChunk.position, AttemptLogChunk.text)
                              .where(AttemptLogChunk.attempt_id == attempt_id)
                              .order_by(AttemptLogChunk.id)).all())


def test_an_attempts_log_keeps_its_head_and_a_rolling_tail(db_url, monkeypatch):
    monkeypatch.setattr("db.store.LOG_HEAD_CHARS", 10)
    monkeypatch.setattr("db.store.LOG_TAIL_CHARS", 8)
    store = Store(db_url)
    sid = store.upsert_sweep("s", "name: s", None)
    store.add_jobs(sid, [_job("a"), _job("b", 1)])
    a, b = store.pending_jobs(sid, ["a", "b"])
    at, other = store.start_attempt(a.id, "h", "0"), store.start_attempt(b.id, "h", "1")
    store.append_logs([(at, "0123456", 0), (other, "b\x00", 0), (at, "", 0)])
    assert _chunks(store, other) == [(0, "b\ufffd")]  # PostgreSQL's text holds no NUL
    # Split where the head ends; the rest is the tail's.
    store.append_logs([(at, "789abc", 0)])
    assert _chunks(store, at) == [(0, "0123456"), (7, "789"), (10, "abc")]
    # The tail rolls: whole chunks that end before its last 8 characters go.
    store.append_logs([(at, "defg", 0), (at, "hijk", 0)])
    assert _chunks(store, at) == [(0, "0123456"), (7, "789"), (13, "defg"), (17, "hijk")]
    # One chunk longer than the tail keeps its end; what the worker skipped counts.
    store.append_logs([(at, "0123456789XY", 3)])
    assert _chunks(store, at) == [(0, "0123456"), (7, "789"), (28, "456789XY")]
    store.append_logs([(at, "", 2)])  # only a drop: an empty chunk says where output goes on
    assert _chunks(store, at)[-1] == (38, "")
