"""Sweeps: every sweep with its job counts, the hosts it ran on and one word for its state
(rows for `orchestrate status`, a frame for the dashboard); one sweep's settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from db.models import JOB_STATES, Attempt, Job, Sweep
from db.store import STALE_AFTER, JobCounts, Store, as_utc

if TYPE_CHECKING:  # pandas is imported by the frames alone: `orchestrate status` needs rows
    import pandas as pd

SWEEP_COLUMNS = ["id", "name", "state", "done", "running", "failed", "pending", "total",
                 "progress", "started", "finished", "duration_s", "hosts", "baseline", "owner"]


@dataclass(frozen=True)
class SweepRow:
    id: int
    name: str
    counts: JobCounts
    owner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    last_started_at: datetime | None
    last_finished_at: datetime | None  # None while it runs, or if it never finished
    hosts: int  # distinct hosts its attempts ran on
    baseline: str | None

    def state(self, now: datetime | None = None) -> str:
        return sweep_state(self.counts, self.owner, self.heartbeat_at, now)


def sweep_state(counts: JobCounts, owner: str | None, heartbeat_at: datetime | None,
                now: datetime | None = None) -> str:
    """running | done | failed | stopped | empty: one word for a sweep. Its coordinator is
    alive while its heartbeat is younger than the lease's STALE_AFTER."""
    now = now or datetime.now(UTC)
    alive = bool(owner and heartbeat_at and now - as_utc(heartbeat_at) < STALE_AFTER)
    if alive or (counts.running and owner):
        return "running"
    if counts.total == 0:
        return "empty"
    if counts.pending or counts.running:
        return "stopped"  # a coordinator stopped (or died) before the end; rerun resumes
    if counts.failed:
        return "failed"
    return "done"


def sweep_rows(store: Store, name: str | None = None) -> list[SweepRow]:
    """Every sweep (or the one named), oldest first, with its job counts and host count."""
    with store.session() as s:
        q = select(Sweep).order_by(Sweep.created_at)
        if name:
            q = q.where(Sweep.name == name)
        sweeps = list(s.scalars(q))
        counts: dict[int, dict[str, int]] = {}
        for sid, state, n in s.execute(
            select(Job.sweep_id, Job.state, func.count()).group_by(Job.sweep_id, Job.state)
        ):
            if state in JOB_STATES:
                counts.setdefault(sid, {})[state] = n
        hosts = dict(s.execute(
            select(Job.sweep_id, func.count(func.distinct(Attempt.host)))
            .join(Attempt, Attempt.job_id == Job.id).group_by(Job.sweep_id)
        ).all())
        return [
            SweepRow(sw.id, sw.name, JobCounts(**counts.get(sw.id, {})), sw.owner,
                     as_utc(sw.heartbeat_at), as_utc(sw.created_at), as_utc(sw.last_started_at),
                     as_utc(sw.last_finished_at), hosts.get(sw.id, 0), sw.baseline)
            for sw in sweeps
        ]


def sweeps_frame(store: Store, now: datetime | None = None) -> pd.DataFrame:
    """One row per sweep, oldest first: state, job counts, start, duration, host count."""
    import pandas as pd

    now = now or datetime.now(UTC)
    out = []
    for r in sweep_rows(store):
        c, state = r.counts, r.state(now)
        started = r.last_started_at or r.created_at
        end = now if state == "running" else r.last_finished_at
        out.append({
            "id": r.id, "name": r.name, "state": state, "done": c.succeeded,
            "running": c.running, "failed": c.failed, "pending": c.pending, "total": c.total,
            "progress": (c.succeeded + c.failed) / c.total if c.total else 0.0,
            "started": started, "finished": r.last_finished_at,
            "duration_s": max(0.0, (end - started).total_seconds()) if end and started
            else None,
            "hosts": r.hosts, "baseline": r.baseline, "owner": r.owner,
        })
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)


def sweep_info(store: Store, name: str) -> dict | None:
    """One sweep's settings (id, name, baseline, spec_yaml, owner); None if there is none."""
    with store.session() as s:
        sw = s.scalar(select(Sweep).where(Sweep.name == name))
        if sw is None:
            return None
        return {"id": sw.id, "name": sw.name, "baseline": sw.baseline,
                "spec_yaml": sw.spec_yaml, "owner": sw.owner}
