"""The database: engine creation, URL, migrations, the coordinator's lease and the write API
(with the few reads the coordinator needs). What `orchestrate status` and the dashboard
read is db.read's, one module per subject.

Only the coordinator writes. SQLite is the default (WAL, so the dashboard reads while a
sweep writes); any SQLAlchemy URL works, PostgreSQL through psycopg 3.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.models import Attempt, Host, Job, Result, Sweep, utcnow

DEFAULT_URL = "sqlite:///benchsweep.db"
MIGRATIONS = Path(__file__).parent / "migrations"
# The lease: a coordinator refreshes its sweep's heartbeat every HEARTBEAT_S seconds; one
# silent for STALE_AFTER is taken for gone, by the next coordinator (Store.acquire) and by the
# readers (db.read.sweeps.sweep_state).
HEARTBEAT_S = 5.0
STALE_AFTER = timedelta(seconds=60)


class SchemaError(RuntimeError):
    """The database was written by another version of benchsweep."""


def resolve_url(url: str | None = None) -> str:
    url = url or os.environ.get("BENCHSWEEP_DB") or DEFAULT_URL
    if "://" not in url:  # a bare file path
        url = f"sqlite:///{url}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


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
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


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
    def __init__(self, url: str | None = None, *, upgrade: bool = True):
        self.url = resolve_url(url)
        self.engine = make_engine(self.url)
        rev, head = schema_revision(self.engine), head_revision()
        if rev != head:
            if upgrade and (rev is None or rev in self._known_revisions()):
                migrate(self.engine)
            else:
                raise SchemaError(
                    f"database {self.engine.url.render_as_string(hide_password=True)} has schema "
                    f"{rev or 'none'}, this benchsweep needs {head}"
                    + ("; run any writing command (e.g. `orchestrate status`) to upgrade it"
                       if rev in self._known_revisions() else "")
                )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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
        with self.session() as s:
            sweep = s.scalar(select(Sweep).where(Sweep.name == name))
            if sweep is None:
                sweep = Sweep(name=name, spec_yaml=spec_yaml, baseline=baseline)
                s.add(sweep)
                s.flush()
            else:
                sweep.spec_yaml, sweep.baseline = spec_yaml, baseline
            return sweep.id

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

    def pending_jobs(self, sweep_id: int, keys: list[str]) -> list[Job]:
        with self.session() as s:
            return list(s.scalars(
                select(Job).where(Job.sweep_id == sweep_id, Job.state == "pending",
                                  Job.key.in_(keys)).order_by(Job.ordinal)))

    # --- the coordinator's lease on a sweep (HEARTBEAT_S, STALE_AFTER) -----------------------

    def acquire(self, sweep_id: int, owner: str, *, stale_after: timedelta,
                owner_alive) -> int:
        """Make `owner` the sweep's coordinator. Attempts left running by a dead coordinator
        become `lost` and their jobs pending again; returns how many. Raises if another live
        coordinator holds the sweep."""
        with self.session() as s:
            sweep = s.get(Sweep, sweep_id, with_for_update=True)
            held = sweep.owner and sweep.owner != owner and sweep.heartbeat_at
            if held and utcnow() - as_utc(sweep.heartbeat_at) < stale_after and owner_alive(
                sweep.owner
            ):
                raise RuntimeError(
                    f"sweep {sweep.name!r} is being run by {sweep.owner} "
                    f"(heartbeat {sweep.heartbeat_at:%H:%M:%S}); wait for it or stop it first"
                )
            sweep.owner, sweep.heartbeat_at, sweep.last_started_at = owner, utcnow(), utcnow()
            sweep.last_finished_at = None
            return self._recover(s, sweep_id)

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
            s.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner)
                      .values(heartbeat_at=utcnow()))

    def release(self, sweep_id: int, owner: str) -> None:
        with self.session() as s:
            s.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner)
                      .values(owner=None, last_finished_at=utcnow()))

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
                       log_tail: str | None = None, result: dict | None = None,
                       elapsed_s: float | None = None,
                       host: str | None = None, gpu_name: str | None = None) -> None:
        with self.session() as s:
            attempt = s.get(Attempt, attempt_id)
            attempt.outcome, attempt.finished_at = outcome, utcnow()
            attempt.error, attempt.error_kind, attempt.log_tail = error, error_kind, log_tail
            attempt.elapsed_s = elapsed_s
            if host:
                attempt.host = host
            s.execute(update(Job).where(Job.id == attempt.job_id).values(state=job_state))
            if result is not None:
                s.execute(delete(Result).where(Result.job_id == attempt.job_id))
                s.add(Result(
                    job_id=attempt.job_id, attempt_id=attempt_id, host=attempt.host,
                    gpu_name=gpu_name or attempt.gpu,
                    output_tokens=result["output_tokens"], elapsed_s=result["elapsed_s"],
                    output_tok_s=result["output_tok_s"], total_tok_s=result["total_tok_s"],
                    start_s=result["start_s"], peak_memory_bytes=result.get("peak_memory_bytes"),
                    record=result,
                ))

    def attempts_of(self, job_id: int) -> list[Attempt]:
        with self.session() as s:
            return list(s.scalars(select(Attempt).where(Attempt.job_id == job_id)
                                  .order_by(Attempt.number)))

    # --- hosts of the SSH inventory ------------------------------------------------------------

    def save_host(self, name: str, *, address: str, port: int, user: str,
                  key_file: str | None, setup: str | None) -> None:
        """Insert or update a host's row; its state and last check are kept."""
        with self.session() as s:
            host = s.scalar(select(Host).where(Host.name == name))
            if host is None:
                host = Host(name=name)
                s.add(host)
            host.address, host.port, host.user = address, port, user
            host.key_file, host.setup = key_file, setup

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
