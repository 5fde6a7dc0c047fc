"""The database: engine creation, URL, migrations, the coordinator's lease and the write API
(with the few reads the coordinator needs). What `orchestrate status` and the dashboard
read is db.read's, one module per subject.

Only the coordinator writes. SQLite is the default (WAL, so the dashboard reads while a
sweep writes); any SQLAlchemy URL works, PostgreSQL through psycopg 3.

The URL comes from `--db`, $BENCHSWEEP_DB or the file $BENCHSWEEP_DB_FILE names (`--db
@FILE` reads one too), so a password need not stand on a command line where `ps` shows it;
it is never printed (`shown`). Whatever is wrong with the database the user named (a URL
that does not parse, a dialect or driver not installed, a file that is not a database, one
that cannot be written, no database at all for a reading command) is one DatabaseUnusable
line, raised when the Store opens, before anything else starts.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import and_, create_engine, delete, event, func, insert, or_, select, text, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db.models import (
    LOG_HEAD_CHARS,
    LOG_TAIL_CHARS,
    RESULT_FIGURES,
    Attempt,
    AttemptLogChunk,
    AttemptTelemetry,
    Host,
    Job,
    Result,
    Sweep,
    SweepRun,
    utcnow,
)
from db.redact import MASK, mask, mask_url
from engine.errors import UserError
from engine.settings import settings

if TYPE_CHECKING:
    from engine.gpu_telemetry import Telemetry
    from engine.result import BenchResult

DEFAULT_URL = "sqlite:///benchsweep.db"
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x62656E6368  # PostgreSQL advisory lock key held while migrating
# The lease: a coordinator refreshes its sweep's heartbeat every HEARTBEAT_S seconds; one
# silent for STALE_AFTER is taken for gone, by the next coordinator (Store.acquire) and by the
# readers (db.read.sweeps.sweep_state).
HEARTBEAT_S = 5.0
STALE_AFTER = timedelta(seconds=60)


class SchemaError(UserError, RuntimeError):
    """The database was written by another version of benchsweep."""


class LeaseHeld(UserError, RuntimeError):
    """Another live coordinator runs the sweep."""


class DatabaseUnusable(UserError, RuntimeError):
    """The database named cannot be used (one line, the URL without its password); exit 2
    for a URL, dialect or file that is wrong, 1 for a condition (unreachable, read-only)."""


class NoDatabase(DatabaseUnusable):
    """A reading command found no database to read."""


def resolve_url(url: str | None = None) -> str:
    """The SQLAlchemy URL: `url`, else $BENCHSWEEP_DB, else the first line of the file
    $BENCHSWEEP_DB_FILE names, else ./benchsweep.db. `@FILE` reads the URL from FILE; a
    bare path is a SQLite file."""
    s = settings()
    url = url or s.db or (f"@{s.db_file}" if s.db_file else None) or DEFAULT_URL
    if url.startswith("@"):
        url = _read_url(Path(url[1:]).expanduser())
    if "://" not in url:  # a bare file path
        url = f"sqlite:///{url}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    return url


def _read_url(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatabaseUnusable(f"cannot read the database URL from {path}: "
                               f"{getattr(e, 'strerror', None) or 'not text'}", 2) from None
    if not lines:
        raise DatabaseUnusable(f"{path} holds no database URL", 2)
    return lines[0]


def parse_url(url: str) -> URL:
    """`url` parsed; DatabaseUnusable (exit 2) when it is not a SQLAlchemy URL."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as e:
        why = "its port is not a number" if isinstance(e, ValueError) else "not a URL"
        raise DatabaseUnusable(f"database URL {mask_url(url)!r} is malformed: {why} (expected "
                               f"e.g. postgresql://user@host:5432/db or a SQLite path)",
                               2) from None


def shown(url: str | URL) -> str:
    """A URL as it may be printed: without its password; a SQLite file as its path."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return mask_url(url)
    if (path := sqlite_file(url)) is not None:
        return str(path)
    secret = {k: MASK for k in url.query if re.search("pass|secret|token|key", k, re.I)}
    return url.update_query_dict(secret).render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None: not SQLite, or in memory)."""
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    path = url.database
    if url.query.get("uri") == "true" and path.startswith("file:"):
        path = path.removeprefix("file:").split("?", 1)[0]
        if path.startswith("//"):  # file://host/path
            path = "/" + path[2:].split("/", 1)[-1]
    return Path(path)


def _wal(cur, wait_s: float = 30.0) -> None:
    """Switch a SQLite file to WAL. Two processes opening a new file at once race for this
    switch, and SQLite answers the loser `database is locked` at once, without waiting."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str | URL) -> Engine:
    """An engine for `url`; DatabaseUnusable (exit 2) when its dialect or driver is not
    installed. Nothing connects yet."""
    url = parse_url(url) if isinstance(url, str) else url
    try:
        if url.drivername.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
        else:
            return create_engine(url, pool_pre_ping=True)
    except ArgumentError as e:  # NoSuchModuleError: no such dialect or driver
        raise DatabaseUnusable(f"database URL {shown(url)}: {url.drivername!r} is not a "
                               f"supported database ({e})", 2) from None
    except ImportError as e:
        raise DatabaseUnusable(f"database URL {shown(url)} needs the Python driver "
                               f"{e.name or str(e)!r}, which is not installed", 2) from None

    @event.listens_for(engine, "connect")
    def _pragmas(conn, _record) -> None:
        cur = conn.cursor()
        _wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> None:
    """Upgrade to head, one process at a time: two coordinators opening a new database at
    once would otherwise both create the tables, and the loser fail."""
    cfg = _alembic_config()
    if engine.dialect.name == "sqlite":
        # pysqlite runs DDL outside any transaction; take SQLite's write lock first instead.
        engine = create_engine(engine.url, connect_args={"timeout": 30, "isolation_level": None})
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    if engine.dialect.name == "sqlite":
        engine.dispose()


@dataclass(frozen=True)
class JobCounts:
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.succeeded + self.failed


class Store:
    """The database, open. `read_only`: for commands that only read (status, results,
    export, hosts list): a missing SQLite file or an empty database is NoDatabase, never
    created; otherwise the database must accept writes, checked here so that a read-only
    file fails before a sweep starts anything."""

    def __init__(self, url: str | None = None, *, upgrade: bool = True,
                 read_only: bool = False):
        parsed = parse_url(resolve_url(url))
        self.url = parsed.render_as_string(hide_password=False)
        path = sqlite_file(parsed)
        if read_only and path is not None:
            if not path.exists():
                raise NoDatabase(f"no database at {path}; run a sweep first")
            if path.is_file() and path.stat().st_size == 0:  # opening would make it WAL
                raise NoDatabase(f"database {path} is empty; run a sweep first")
        self.engine = make_engine(parsed)
        try:
            self._open(upgrade=upgrade, read_only=read_only)
        except DBAPIError as e:
            self.engine.dispose()
            raise self._unusable(e) from None
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _open(self, *, upgrade: bool, read_only: bool) -> None:
        rev, head = schema_revision(self.engine), head_revision()
        if rev is None and read_only:
            raise NoDatabase(f"database {shown(self.engine.url)} is empty; run a sweep first")
        if rev != head:
            if upgrade and (rev is None or rev in self._known_revisions()):
                migrate(self.engine)
            else:
                raise SchemaError(
                    f"database {shown(self.engine.url)} has schema "
                    f"{rev or 'none'}, this benchsweep needs {head}"
                    + ("; run any writing command (e.g. `orchestrate status`) to upgrade it"
                       if rev in self._known_revisions() else "")
                )
        if upgrade and not read_only:  # a writer; upgrade=False is a reader (the dashboard)
            self._check_writable()

    def _check_writable(self) -> None:
        """Write and roll back, so that every reason a database refuses writes (file mode, a
        read-only mount or URI, a PostgreSQL role or standby) shows now."""
        with self.engine.connect() as conn, conn.begin() as tx:
            conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            tx.rollback()

    def _unusable(self, e: DBAPIError) -> DatabaseUnusable:
        where = shown(self.engine.url)
        why = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
        if "readonly" in why or "read-only" in why or "permission denied" in why.lower():
            return DatabaseUnusable(f"database {where} does not accept writes: {why}")
        if "not a database" in why or "malformed" in why:
            return DatabaseUnusable(f"{where} is not a benchsweep database: {why}", 2)
        return DatabaseUnusable(f"cannot open database {where}: {why}")

    @staticmethod
    def _known_revisions() -> set[str]:
        return {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()

    # --- sweeps and jobs -------------------------------------------------------------------

    def upsert_sweep(self, name: str, spec_yaml: str, baseline: str | None) -> int:
        for _ in range(2):  # a coordinator starting at the same moment may insert it first
            try:
                with self.session() as s:
                    sweep = s.scalar(select(Sweep).where(Sweep.name == name))
                    if sweep is None:
                        sweep = Sweep(name=name, spec_yaml=spec_yaml, baseline=baseline)
                        s.add(sweep)
                        s.flush()
                    else:
                        sweep.spec_yaml, sweep.baseline = spec_yaml, baseline
                    return sweep.id
            except IntegrityError:
                continue
        raise RuntimeError(f"sweep {name!r} could not be created or read")

    def sweep_id(self, name: str) -> int | None:
        with self.session() as s:
            return s.scalar(select(Sweep.id).where(Sweep.name == name))

    def add_jobs(self, sweep_id: int, rows: list[dict]) -> int:
        """Insert the jobs whose key the sweep does not have yet; return how many."""
        with self.session() as s:
            have = set(s.scalars(select(Job.key).where(Job.sweep_id == sweep_id)))
            new = [dict(r, sweep_id=sweep_id) for r in rows if r["key"] not in have]
            for i in range(0, len(new), 2000):
                s.execute(insert(Job), new[i : i + 2000])
            return len(new)

    def counts(self, sweep_id: int) -> JobCounts:
        with self.session() as s:
            rows = s.execute(
                select(Job.state, func.count()).where(Job.sweep_id == sweep_id).group_by(Job.state)
            )
            return JobCounts(**dict(rows.all()))

    def reset_jobs(self, sweep_id: int, keys: list[str], *, states: tuple[str, ...]) -> int:
        """Put jobs of these keys and states back to pending (their results go for --force)."""
        with self.session() as s:
            ids = list(s.scalars(select(Job.id).where(
                Job.sweep_id == sweep_id, Job.key.in_(keys), Job.state.in_(states))))
            if not ids:
                return 0
            if "succeeded" in states:
                s.execute(delete(Result).where(Result.job_id.in_(ids)))
            s.execute(update(Job).where(Job.id.in_(ids)).values(state="pending"))
            return len(ids)

    def count_jobs(self, sweep_id: int, keys: list[str], states: tuple[str, ...]) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Job).where(
                Job.sweep_id == sweep_id, Job.state.in_(states), Job.key.in_(keys)))

    def pending_jobs(self, sweep_id: int, keys: list[str]) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(
                select(Job).where(Job.sweep_id == sweep_id, Job.state == "pending",
                                  Job.key.in_(keys)).order_by(Job.ordinal)))

    # --- the coordinator's lease on a sweep (HEARTBEAT_S, STALE_AFTER) -----------------------

    def acquire(self, sweep_id: int, owner: str, *, stale_after: timedelta,
                owner_alive) -> int:
        """Make `owner` the sweep's coordinator and begin its run (SweepRun). Attempts left
        running by a dead coordinator become `lost` and their jobs pending again; returns
        how many. The run it left open ends `lost`, at its last heartbeat. Raises LeaseHeld if
        another live coordinator holds the sweep.

        Taking the lease is one conditional UPDATE whose row count decides, so two
        coordinators starting at the same moment cannot both win on any backend (on SQLite
        a SELECT ... FOR UPDATE locks nothing)."""
        with self.session() as s:
            now = utcnow()
            free = or_(Sweep.owner.is_(None), Sweep.owner == owner,
                       Sweep.heartbeat_at.is_(None), Sweep.heartbeat_at < now - stale_after)
            if not self._take(s, sweep_id, owner, free):
                holder, beat, name = s.execute(select(Sweep.owner, Sweep.heartbeat_at,
                                                      Sweep.name).where(Sweep.id == sweep_id)).one()
                # A holder whose process is gone (same host) is taken over at once; the
                # compare-and-swap on its owner and heartbeat loses to anyone faster.
                if owner_alive(holder) or not self._take(
                        s, sweep_id, owner, and_(Sweep.owner == holder,
                                                 Sweep.heartbeat_at == beat)):
                    raise LeaseHeld(
                        f"sweep {name!r} is being run by {holder} (heartbeat "
                        f"{beat:%H:%M:%S}); wait for it or stop it first")
            self._begin_run(s, sweep_id, owner)
            return self._recover(s, sweep_id)

    @staticmethod
    def _take(s: Session, sweep_id: int, owner: str, condition) -> bool:
        now = utcnow()
        return s.execute(
            update(Sweep).where(Sweep.id == sweep_id, condition)
            .values(owner=owner, heartbeat_at=now, last_started_at=now, last_finished_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount == 1

    @staticmethod
    def _begin_run(s: Session, sweep_id: int, owner: str) -> None:
        s.execute(update(SweepRun).where(SweepRun.sweep_id == sweep_id,
                                         SweepRun.ended_at.is_(None))
                  .values(ended="lost", ended_at=SweepRun.beat_at)
                  .execution_options(synchronize_session=False))
        now = utcnow()
        s.add(SweepRun(sweep_id=sweep_id, owner=owner, started_at=now, beat_at=now))

    @staticmethod
    def _recover(s: Session, sweep_id: int) -> int:
        job_ids = select(Job.id).where(Job.sweep_id == sweep_id)
        lost = s.execute(
            update(Attempt)
            .where(Attempt.job_id.in_(job_ids), Attempt.outcome == "running")
            .values(outcome="lost", finished_at=utcnow(),
                    error="the coordinator stopped while this attempt ran")
        ).rowcount
        s.execute(update(Job).where(Job.sweep_id == sweep_id, Job.state == "running")
                  .values(state="pending"))
        return lost

    def heartbeat(self, sweep_id: int, owner: str) -> None:
        with self.session() as s:
            now = utcnow()
            s.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner)
                      .values(heartbeat_at=now))
            s.execute(self._own_run(sweep_id, owner).values(beat_at=now))

    def release(self, sweep_id: int, owner: str, *, ended: str = "finished",
                signal: str | None = None) -> None:
        """End `owner`'s run of the sweep: `finished`, `stopped` (by `signal`) or `error`
        (RUN_ENDINGS), and give its lease up."""
        with self.session() as s:
            now = utcnow()
            s.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner)
                      .values(owner=None, last_finished_at=now))
            s.execute(self._own_run(sweep_id, owner)
                      .values(beat_at=now, ended_at=now, ended=ended, signal=signal))

    @staticmethod
    def _own_run(sweep_id: int, owner: str):
        """An UPDATE of `owner`'s open run of the sweep (none once another took it over)."""
        return (update(SweepRun).where(SweepRun.sweep_id == sweep_id, SweepRun.owner == owner,
                                       SweepRun.ended_at.is_(None))
                .execution_options(synchronize_session=False))

    # --- attempts ---------------------------------------------------------------------------

    def start_attempt(self, job_id: int, host: str, gpu: str) -> int:
        with self.session() as s:
            number = (s.scalar(select(func.max(Attempt.number)).where(Attempt.job_id == job_id))
                      or 0) + 1
            attempt = Attempt(job_id=job_id, number=number, host=host, gpu=gpu)
            s.add(attempt)
            s.execute(update(Job).where(Job.id == job_id).values(state="running"))
            s.flush()
            return attempt.id

    def finish_attempt(self, attempt_id: int, outcome: str, *, job_state: str,
                       error: str | None = None, error_kind: str | None = None,
                       log_tail: str | None = None, result: BenchResult | None = None,
                       elapsed_s: float | None = None, host: str | None = None,
                       started_at: datetime | None = None,
                       finished_at: datetime | None = None,
                       telemetry: Telemetry | None = None) -> None:
        """started_at, finished_at: where a job that shared its process with others goes
        in the time the process held the slot (default: as started, and now). telemetry:
        the attempt's GPU samples (AttemptTelemetry), whatever its outcome."""
        with self.session() as s:
            attempt = s.get(Attempt, attempt_id)
            attempt.outcome, attempt.finished_at = outcome, finished_at or utcnow()
            if started_at is not None:
                attempt.started_at = started_at
            attempt.error, attempt.error_kind, attempt.log_tail = error, error_kind, log_tail
            attempt.elapsed_s = elapsed_s
            if host:
                attempt.host = host
            s.execute(update(Job).where(Job.id == attempt.job_id).values(state=job_state))
            if telemetry is not None:
                s.execute(delete(AttemptTelemetry)
                          .where(AttemptTelemetry.attempt_id == attempt_id))
                cols = telemetry.to_dict()
                s.add(AttemptTelemetry(
                    attempt_id=attempt_id, period_s=cols.pop("period_s"), samples=len(telemetry),
                    done_s=cols.pop("done_s"), series=cols))
            if result is not None:
                s.execute(delete(Result).where(Result.job_id == attempt.job_id))
                s.add(Result(
                    job_id=attempt.job_id, attempt_id=attempt_id, host=attempt.host,
                    gpu_name=result.gpu_name or attempt.gpu, record=result.to_dict(),
                    **{name: getattr(result, name) for name in RESULT_FIGURES},
                ))

    def append_logs(self, pieces: list[tuple[int, str, int]]) -> None:
        """Append output to running attempts, in one transaction: (attempt id, text, bytes
        the worker skipped before it). Each attempt keeps its first LOG_HEAD_CHARS and about
        its last LOG_TAIL_CHARS (db/models.py); a chunk's position says what was dropped."""
        with self.session() as s:
            for attempt_id, text, skipped in pieces:
                # PostgreSQL's text cannot hold NUL; a log seldom means one.
                self._append_log(s, attempt_id, text.replace("\x00", "\ufffd"), skipped)

    @staticmethod
    def _append_log(s: Session, attempt_id: int, text: str, skipped: int) -> None:
        if not text and not skipped:
            return
        last = s.execute(select(AttemptLogChunk.position, AttemptLogChunk.size)
                         .where(AttemptLogChunk.attempt_id == attempt_id)
                         .order_by(AttemptLogChunk.id.desc()).limit(1)).first()
        at = (last.position + last.size if last else 0) + skipped
        rows = []
        if at < LOG_HEAD_CHARS:  # the head keeps what fits
            head, text = text[:LOG_HEAD_CHARS - at], text[LOG_HEAD_CHARS - at:]
            if head:
                rows.append((at, head))
            at += len(head)
        if text:  # the rest is the tail's: of one chunk, its last LOG_TAIL_CHARS at most
            cut = max(0, len(text) - LOG_TAIL_CHARS)
            rows.append((at + cut, text[cut:]))
            at += len(text)
        # Only a drop (skipped): an empty chunk marks where the output goes on.
        s.execute(insert(AttemptLogChunk), [
            dict(attempt_id=attempt_id, position=p, size=len(t), text=t)
            for p, t in rows or [(at, "")]])
        if at > LOG_HEAD_CHARS + LOG_TAIL_CHARS:
            s.execute(delete(AttemptLogChunk).where(
                AttemptLogChunk.attempt_id == attempt_id,
                AttemptLogChunk.position >= LOG_HEAD_CHARS,
                AttemptLogChunk.position + AttemptLogChunk.size <= at - LOG_TAIL_CHARS))

    def attempts_of(self, job_id: int) -> list[Attempt]:
        with self.session() as s:
            return list(s.scalars(select(Attempt).where(Attempt.job_id == job_id)
                                  .order_by(Attempt.number)))

    # --- hosts of the SSH inventory ------------------------------------------------------------

    def save_host(self, name: str, *, address: str, port: int, user: str,
                  key_file: str | None, setup: str | None) -> None:
        """Insert or update a host's row; its state and last check are kept. The setup line
        is stored masked (db.redact): it may hold a proxy password."""
        with self.session() as s:
            host = s.scalar(select(Host).where(Host.name == name))
            if host is None:
                host = Host(name=name)
                s.add(host)
            host.address, host.port, host.user = address, port, user
            host.key_file, host.setup = key_file, mask(setup)

    def remove_host(self, name: str) -> bool:
        with self.session() as s:
            return bool(s.execute(delete(Host).where(Host.name == name)).rowcount)

    def record_check(self, name: str, state: str, check: dict | None) -> None:
        """A host's state after a check, provisioning or job (ok | unreachable | quarantined
        | ...), and what the check found."""
        with self.session() as s:
            values: dict = dict(state=state, last_check_at=utcnow())
            if check is not None:
                values["last_check"] = check
            s.execute(update(Host).where(Host.name == name).values(**values))


def as_utc(t: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    if t is None or t.tzinfo:
        return t
    return t.replace(tzinfo=utcnow().tzinfo)
