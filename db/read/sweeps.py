"""Sweeps: every sweep with its job counts, the hosts it ran on, one word for its state and
its duration (rows for `orchestrate status`, a frame for the dashboard); one sweep's
settings.

A sweep's coordinator is alive while its heartbeat is younger than the lease's STALE_AFTER.
A sweep whose owner is set but whose heartbeat went quiet is `lost` ("coordinator lost N
min ago"): its coordinator died (SIGKILL, power) without a word, so the attempts it left
`running` are not known to run (LOST_ATTEMPT). A sweep's duration is the sum of its
coordinators' runs (SweepRun), each from taking the lease to releasing it; a run whose
coordinator went quiet ends at its last heartbeat. Counts are of the jobs the current sweep
file has (db/read/plan.py) unless every job is asked for; `hidden` counts the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from db.models import JOB_STATES, Attempt, Job, Sweep, SweepRun
from db.read.plan import plan_of
from db.store import STALE_AFTER, JobCounts, Store, as_utc

if TYPE_CHECKING:  # pandas is imported by the frames alone: `orchestrate status` needs rows
    import pandas as pd

SWEEP_COLUMNS = ["id", "name", "state", "note", "done", "running", "unknown", "failed",
                 "pending", "total", "hidden", "progress", "started", "finished", "duration_s",
                 "runs", "hosts", "baseline", "owner"]
LOST = "lost"
LOST_ATTEMPT = "unknown (coordinator lost)"  # an attempt left `running` by a lost coordinator


def lost_for(owner: str | None, heartbeat_at: datetime | None,
             now: datetime | None = None) -> timedelta | None:
    """How long ago a sweep's coordinator was last heard of, if it owns the sweep but went
    quiet for STALE_AFTER; None when it is alive or there is none."""
    if not owner:
        return None
    now = now or datetime.now(UTC)
    if heartbeat_at is None:
        return STALE_AFTER
    quiet = now - as_utc(heartbeat_at)
    return quiet if quiet >= STALE_AFTER else None


def lost_text(quiet: timedelta) -> str:
    return f"coordinator lost {quiet.total_seconds() / 60:.0f} min ago"


def format_duration(seconds: float | None) -> str:
    """A duration in words: `9s`, `2m 55s`, `1h 02m`; "" for none."""
    if seconds is None or seconds != seconds:  # None or NaN
        return ""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def duration_text(seconds: float | None, runs: int) -> str:
    """A sweep's duration, and over how many coordinator runs where it took more than one:
    `1h 02m over 3 runs`."""
    text = format_duration(seconds)
    return f"{text} over {runs} runs" if text and runs > 1 else text


@dataclass(frozen=True)
class Run:
    """One coordinator's run of a sweep (db.models.SweepRun)."""

    started_at: datetime
    beat_at: datetime
    ended_at: datetime | None
    ended: str | None  # RUN_ENDINGS; None while it runs or where it was never recorded
    signal: str | None

    def end(self, now: datetime) -> datetime:
        """Where its span ends: its end; for one not ended, now while its coordinator beats,
        else its last heartbeat."""
        if self.ended_at is not None:
            return self.ended_at
        return now if now - self.beat_at < STALE_AFTER else self.beat_at

    def seconds(self, now: datetime) -> float:
        return max(0.0, (self.end(now) - self.started_at).total_seconds())


@dataclass(frozen=True)
class SweepRow:
    id: int
    name: str
    counts: JobCounts  # of the current file's jobs (of every job when asked for)
    owner: str | None
    heartbeat_at: datetime | None
    created_at: datetime
    last_started_at: datetime | None
    last_finished_at: datetime | None  # None while it runs, or if it never finished
    hosts: int  # distinct hosts its attempts ran on
    baseline: str | None
    hidden: int = 0  # jobs only an earlier version of the sweep file had, not counted
    runs: tuple[Run, ...] = ()  # its coordinators' runs, oldest first

    def state(self, now: datetime | None = None) -> str:
        return sweep_state(self.counts, self.owner, self.heartbeat_at, now)

    def state_text(self, now: datetime | None = None) -> str:
        """The state in words: `coordinator lost 12 min ago` for a lost one, `stopped by
        SIGTERM` for one a signal stopped."""
        quiet = lost_for(self.owner, self.heartbeat_at, now)
        if quiet is not None:
            return lost_text(quiet)
        state = self.state(now)
        last = self.runs[-1] if self.runs else None
        if state == "stopped" and last is not None and last.signal:
            return f"stopped by {last.signal}"
        return state

    def duration_s(self, now: datetime | None = None) -> float | None:
        """The sum of its runs' spans; None if it never ran."""
        now = now or datetime.now(UTC)
        return sum(r.seconds(now) for r in self.runs) if self.runs else None

    def duration_text(self, now: datetime | None = None) -> str:
        return duration_text(self.duration_s(now), len(self.runs))


def sweep_state(counts: JobCounts, owner: str | None, heartbeat_at: datetime | None,
                now: datetime | None = None) -> str:
    """running | lost | done | failed | stopped | empty: one word for a sweep."""
    if owner:
        return LOST if lost_for(owner, heartbeat_at, now) is not None else "running"
    if counts.total == 0:
        return "empty"
    if counts.pending or counts.running:
        return "stopped"  # a coordinator stopped before the end; rerun resumes
    if counts.failed:
        return "failed"
    return "done"


def sweep_rows(store: Store, name: str | None = None, *, every: bool = False) -> list[SweepRow]:
    """Every sweep (or the one named), oldest first, with its job counts and host count."""
    with store.session() as s:
        q = select(Sweep).order_by(Sweep.created_at)
        if name:
            q = q.where(Sweep.name == name)
        sweeps = list(s.scalars(q))
        ids = [sw.id for sw in sweeps]
        plans = {sw.id: plan_of(sw.spec_yaml, sw.baseline) for sw in sweeps}
        counts: dict[int, dict[str, int]] = {}
        hidden: dict[int, int] = {}
        for sid, key, state in s.execute(
            select(Job.sweep_id, Job.key, Job.state).where(Job.sweep_id.in_(ids))
        ):
            if not (every or plans[sid].current(key)):
                hidden[sid] = hidden.get(sid, 0) + 1
            elif state in JOB_STATES:
                c = counts.setdefault(sid, {})
                c[state] = c.get(state, 0) + 1
        hosts = dict(s.execute(
            select(Job.sweep_id, func.count(func.distinct(Attempt.host)))
            .join(Attempt, Attempt.job_id == Job.id).group_by(Job.sweep_id)
        ).all())
        runs: dict[int, list[Run]] = {}
        for r in s.execute(select(SweepRun).where(SweepRun.sweep_id.in_(ids))
                           .order_by(SweepRun.id)).scalars():
            runs.setdefault(r.sweep_id, []).append(Run(
                as_utc(r.started_at), as_utc(r.beat_at), as_utc(r.ended_at), r.ended, r.signal))
        return [
            SweepRow(sw.id, sw.name, JobCounts(**counts.get(sw.id, {})), sw.owner,
                     as_utc(sw.heartbeat_at), as_utc(sw.created_at), as_utc(sw.last_started_at),
                     as_utc(sw.last_finished_at), hosts.get(sw.id, 0),
                     plans[sw.id].baseline or sw.baseline, hidden.get(sw.id, 0),
                     tuple(runs.get(sw.id, ())))
            for sw in sweeps
        ]


def sweeps_frame(store: Store, now: datetime | None = None) -> pd.DataFrame:
    """One row per sweep, oldest first: state (and `note`, for a lost coordinator or a
    signal that stopped it), job counts (`unknown`: marked running under a lost
    coordinator), start, duration (the sum of its `runs`), host count."""
    import pandas as pd

    now = now or datetime.now(UTC)
    out = []
    for r in sweep_rows(store):
        c, state, text = r.counts, r.state(now), r.state_text(now)
        out.append({
            "id": r.id, "name": r.name, "state": state,
            "note": text if text != state else "", "done": c.succeeded,
            "running": 0 if state == LOST else c.running,
            "unknown": c.running if state == LOST else 0, "failed": c.failed,
            "pending": c.pending, "total": c.total,
            "hidden": r.hidden,
            "progress": (c.succeeded + c.failed) / c.total if c.total else 0.0,
            "started": r.last_started_at or r.created_at, "finished": r.last_finished_at,
            "duration_s": r.duration_s(now), "runs": len(r.runs), "hosts": r.hosts,
            "baseline": r.baseline, "owner": r.owner,
        })
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)


def sweep_info(store: Store, name: str) -> dict | None:
    """One sweep's settings (id, name, baseline, spec_yaml, owner); None if there is none.
    The baseline is the current sweep file's (db/read/plan.py)."""
    with store.session() as s:
        sw = s.scalar(select(Sweep).where(Sweep.name == name))
        if sw is None:
            return None
        return {"id": sw.id, "name": sw.name,
                "baseline": plan_of(sw.spec_yaml, sw.baseline).baseline or sw.baseline,
                "spec_yaml": sw.spec_yaml, "owner": sw.owner,
                "lost_for": lost_for(sw.owner, as_utc(sw.heartbeat_at))}
