"""Read-side summaries of sweeps and jobs for `orchestrate status` and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from db.models import Attempt, Job, Sweep
from db.store import JobCounts, Store, as_utc


@dataclass(frozen=True)
class SweepRow:
    id: int
    name: str
    counts: JobCounts
    owner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    last_started_at: datetime | None
    last_finished_at: datetime | None
    hosts: int


@dataclass(frozen=True)
class RunningAttempt:
    sweep: str
    job_id: int
    variant: str
    max_num_seqs: int
    gpu_memory_utilization: float
    repeat: int
    number: int
    host: str
    gpu: str
    started_at: datetime


@dataclass(frozen=True)
class FailedJob:
    job_id: int
    variant: str
    max_num_seqs: int
    gpu_memory_utilization: float
    repeat: int
    error_kind: str | None
    error: str | None


def sweep_rows(store: Store, name: str | None = None) -> list[SweepRow]:
    with store.session() as s:
        q = select(Sweep).order_by(Sweep.created_at)
        if name:
            q = q.where(Sweep.name == name)
        sweeps = list(s.scalars(q))
        counts: dict[int, dict[str, int]] = {}
        for sid, state, n in s.execute(
            select(Job.sweep_id, Job.state, func.count()).group_by(Job.sweep_id, Job.state)
        ):
            counts.setdefault(sid, {})[state] = n
        hosts = dict(s.execute(
            select(Job.sweep_id, func.count(func.distinct(Attempt.host)))
            .join(Attempt, Attempt.job_id == Job.id).group_by(Job.sweep_id)
        ).all())
        return [
            SweepRow(sw.id, sw.name, JobCounts(**counts.get(sw.id, {})), sw.owner,
                     sw.heartbeat_at, as_utc(sw.created_at), as_utc(sw.last_started_at),
                     as_utc(sw.last_finished_at), hosts.get(sw.id, 0))
            for sw in sweeps
        ]


def running_attempts(store: Store, sweep: str | None = None) -> list[RunningAttempt]:
    with store.session() as s:
        q = (select(Sweep.name, Job, Attempt).join(Job, Job.sweep_id == Sweep.id)
             .join(Attempt, Attempt.job_id == Job.id).where(Attempt.outcome == "running")
             .order_by(Attempt.started_at))
        if sweep:
            q = q.where(Sweep.name == sweep)
        return [RunningAttempt(name, j.id, j.variant, j.max_num_seqs, j.gpu_memory_utilization,
                               j.repeat, a.number, a.host, a.gpu, as_utc(a.started_at))
                for name, j, a in s.execute(q)]


def failed_jobs(store: Store, sweep: str) -> list[FailedJob]:
    with store.session() as s:
        last = (select(Attempt.job_id, func.max(Attempt.number).label("n"))
                .group_by(Attempt.job_id).subquery())
        q = (select(Job, Attempt).join(Sweep, Sweep.id == Job.sweep_id)
             .join(last, last.c.job_id == Job.id)
             .join(Attempt, (Attempt.job_id == Job.id) & (Attempt.number == last.c.n))
             .where(Sweep.name == sweep, Job.state == "failed").order_by(Job.ordinal))
        return [FailedJob(j.id, j.variant, j.max_num_seqs, j.gpu_memory_utilization, j.repeat,
                          a.error_kind, a.error) for j, a in s.execute(q)]
