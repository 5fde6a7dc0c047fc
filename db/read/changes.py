"""Changes: a token that differs whenever anything a reader shows has changed, read in one
cheap query, so that a page can poll it every couple of seconds and render again only when
it moved (the dashboard's live pages, dashboard/common.py).

Every write the coordinator makes moves one of its parts: a sweep recorded (newest sweep
id), its jobs added (newest job id), a lease taken, beaten or given up (coordinators holding
a sweep, newest heartbeat, newest finish), an attempt started (newest attempt id) or ended
(attempts marked running), a result stored (newest result id; a rerun's replaces the old
one under a new id), a host added, removed or checked. Each part is a max() of an indexed
column, a count() over an index, or over the few rows of sweeps and hosts. A coordinator
that dies writes nothing: `lost` counts the sweeps whose holder has been silent for
STALE_AFTER, computed against the clock, so that the token moves when one goes quiet.

A running job's output comes in every second or two: only the page that shows it asks for
it (`job`), so the rest do not redraw that often. Its part is the newest log chunk id of
each of the job's attempts, an index's last entry each."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select

from db.models import Attempt, AttemptLogChunk, Host, Job, Result, Sweep, utcnow
from db.store import STALE_AFTER, Store


@dataclass(frozen=True)
class Change:
    sweep: int | None  # newest sweep id
    held: int  # sweeps a coordinator holds (running or lost)
    lost: int  # of those, the ones whose coordinator has been silent for STALE_AFTER
    heartbeat: datetime | None  # newest heartbeat
    finished: datetime | None  # newest end of a coordinator's run
    job: int | None  # newest job id
    attempt: int | None  # newest attempt id
    running: int  # attempts marked running
    result: int | None  # newest result id
    hosts: int
    checked: datetime | None  # newest host check
    log: tuple[int | None, ...] = ()  # the newest log chunk id of each attempt of the job asked


def change_token(store: Store, job: int | None = None) -> Change:
    """The token; with `job`, one that moves too as output of that job's attempts comes
    in."""
    def one(column):
        return select(column).scalar_subquery()

    stale = and_(Sweep.owner.is_not(None), or_(Sweep.heartbeat_at.is_(None),
                                               Sweep.heartbeat_at < utcnow() - STALE_AFTER))
    query = select(
        one(func.max(Sweep.id)), one(func.count(Sweep.owner)),
        one(func.coalesce(func.sum(case((stale, 1), else_=0)), 0)),
        one(func.max(Sweep.heartbeat_at)), one(func.max(Sweep.last_finished_at)),
        one(func.max(Job.id)), one(func.max(Attempt.id)),
        select(func.count()).where(Attempt.outcome == "running").scalar_subquery(),
        one(func.max(Result.id)), one(func.count(Host.id)), one(func.max(Host.last_check_at)),
    )
    with store.session() as s:
        change = Change(*s.execute(query).one())
        if job is None:
            return change
        newest = (select(func.max(AttemptLogChunk.id))
                  .where(AttemptLogChunk.attempt_id == Attempt.id).scalar_subquery())
        log = s.scalars(select(newest).where(Attempt.job_id == job).order_by(Attempt.number))
        return replace(change, log=tuple(log))
