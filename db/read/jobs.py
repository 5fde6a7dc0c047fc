"""Jobs: a sweep's jobs with their last attempt (a frame, and the failed ones for `orchestrate
status`), the attempts running now, one job in full with its attempts and result, a job's
id from its sweep and ordinal.

Variants go by their names in the current sweep file and jobs only an earlier version of
it had are left out unless asked for (db/read/plan.py; the frame's attrs["hidden"] counts
them). An attempt still marked running under a lost coordinator (db/read/sweeps.py) is
LOST_ATTEMPT, with no duration that keeps growing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Select, func, select

from db.models import Attempt, Job, Result, Sweep
from db.read.job_columns import max_model_len, option_columns
from db.read.plan import Plan, plan_of, sweep_plan
from db.read.sweeps import LOST_ATTEMPT, lost_for
from db.store import Store, as_utc
from engine.result import BenchResult

if TYPE_CHECKING:  # pandas is imported by the frames alone: `orchestrate status` needs rows
    import pandas as pd

JOB_COLUMNS = ["job_id", "ordinal", "variant", "engine", "options", "model", "workload",
               "workload_fingerprint", "max_num_seqs", "gpu_memory_utilization",
               "max_model_len", "repeat", "state", "attempts", "host", "gpu", "outcome",
               "error_kind", "error", "elapsed_s", "output_tok_s", "gpu_name"]


@dataclass(frozen=True)
class JobPoint:
    """A job's place in its sweep's matrix, its variant named by the current sweep file."""

    job_id: int
    variant: str
    max_num_seqs: int
    gpu_memory_utilization: float
    max_model_len: int | None
    repeat: int


def _point(plan: Plan, j: Job) -> dict:
    return dict(job_id=j.id, variant=plan.name(j.key, j.variant), max_num_seqs=j.max_num_seqs,
                gpu_memory_utilization=j.gpu_memory_utilization,
                max_model_len=max_model_len(j.spec), repeat=j.repeat)


@dataclass(frozen=True)
class RunningAttempt(JobPoint):
    sweep: str
    number: int
    host: str
    gpu: str
    started_at: datetime
    lost_for: timedelta | None  # its coordinator went quiet this long ago; None: alive

    @property
    def state(self) -> str:
        return "running" if self.lost_for is None else LOST_ATTEMPT


@dataclass(frozen=True)
class FailedJob(JobPoint):
    error_kind: str | None
    error: str | None


def _with_last_attempt(sweep: str) -> Select:
    """(Job, Attempt) of a sweep in sweep order: each job with its last attempt, None where
    it has none."""
    last = (select(Attempt.job_id, func.max(Attempt.number).label("n"))
            .group_by(Attempt.job_id).subquery())
    return (select(Job, Attempt).join(Sweep, Sweep.id == Job.sweep_id)
            .outerjoin(last, last.c.job_id == Job.id)
            .outerjoin(Attempt, (Attempt.job_id == Job.id) & (Attempt.number == last.c.n))
            .where(Sweep.name == sweep).order_by(Job.ordinal))


def _lost(store: Store, sweep: str) -> bool:
    with store.session() as s:
        row = s.execute(select(Sweep.owner, Sweep.heartbeat_at)
                        .where(Sweep.name == sweep)).first()
    return row is not None and lost_for(row.owner, as_utc(row.heartbeat_at)) is not None


def sweep_jobs(store: Store, sweep: str, *, every: bool = False) -> pd.DataFrame:
    """Every job of a sweep's current file (of every version if `every`), in sweep order,
    with its configuration (a column per option axis) and its last attempt."""
    import pandas as pd

    plan = sweep_plan(store, sweep) or Plan(None)
    lost = _lost(store, sweep)
    with store.session() as s:
        rows = s.execute(_with_last_attempt(sweep)
                         .add_columns(Result.output_tok_s, Result.gpu_name)
                         .outerjoin(Result, Result.job_id == Job.id)).all()
    kept = [r for r in rows if every or plan.current(r[0].key)]

    def outcome(a: Attempt | None) -> str | None:
        if a is None:
            return None
        return LOST_ATTEMPT if lost and a.outcome == "running" else a.outcome

    df = pd.DataFrame([
        {"job_id": j.id, "ordinal": j.ordinal, "variant": plan.name(j.key, j.variant),
         "engine": j.engine, "options": json.dumps(j.options, sort_keys=True),
         "model": j.model, "workload": j.workload,
         "workload_fingerprint": j.workload_fingerprint, "max_num_seqs": j.max_num_seqs,
         "gpu_memory_utilization": j.gpu_memory_utilization,
         "max_model_len": max_model_len(j.spec), "repeat": j.repeat,
         "state": LOST_ATTEMPT if lost and j.state == "running" else j.state,
         "attempts": a.number if a else 0, "host": a.host if a else None,
         "gpu": a.gpu if a else None, "outcome": outcome(a),
         "error_kind": a.error_kind if a else None, "error": a.error if a else None,
         "elapsed_s": a.elapsed_s if a else None, "output_tok_s": tok_s,
         "gpu_name": card}
        for j, a, tok_s, card in kept
    ], columns=JOB_COLUMNS)
    df = option_columns(df, plan.option_axes)
    df.attrs["hidden"] = len(rows) - len(kept)
    return df


def failed_jobs(store: Store, sweep: str, *, every: bool = False) -> list[FailedJob]:
    """A sweep's failed jobs, in sweep order, with the error of their last attempt."""
    plan = sweep_plan(store, sweep) or Plan(None)
    with store.session() as s:
        rows = s.execute(_with_last_attempt(sweep).where(Job.state == "failed")).all()
    return [FailedJob(**_point(plan, j), error_kind=a.error_kind, error=a.error)
            for j, a in rows if a is not None and (every or plan.current(j.key))]


def running_attempts(store: Store, sweep: str | None = None) -> list[RunningAttempt]:
    """The attempts marked running (of one sweep, or of all), oldest first; those of a lost
    coordinator say so (RunningAttempt.state)."""
    now = datetime.now(UTC)
    with store.session() as s:
        q = (select(Sweep, Job, Attempt).join(Job, Job.sweep_id == Sweep.id)
             .join(Attempt, Attempt.job_id == Job.id).where(Attempt.outcome == "running")
             .order_by(Attempt.started_at))
        if sweep:
            q = q.where(Sweep.name == sweep)
        out = []
        for sw, j, a in s.execute(q):
            plan = plan_of(sw.spec_yaml, sw.baseline)
            out.append(RunningAttempt(
                **_point(plan, j), sweep=sw.name, number=a.number, host=a.host, gpu=a.gpu,
                started_at=as_utc(a.started_at),
                lost_for=lost_for(sw.owner, as_utc(sw.heartbeat_at), now)))
        return out


def job_by_ordinal(store: Store, sweep: str, ordinal: int) -> int | None:
    """The id of the sweep's job at `ordinal` (its place in the sweep, as its progress lines
    name it: `job 3`); None when there is none."""
    with store.session() as s:
        return s.scalar(select(Job.id).join(Sweep, Sweep.id == Job.sweep_id)
                        .where(Sweep.name == sweep, Job.ordinal == ordinal))


def job_detail(store: Store, job_id: int) -> dict | None:
    """One job: its configuration, sweep, attempts (oldest first) and result: the record as
    stored, and as the typed BenchResult ("bench")."""
    with store.session() as s:
        row = s.execute(select(Job, Sweep).join(Sweep, Sweep.id == Job.sweep_id)
                        .where(Job.id == job_id)).first()
        if row is None:
            return None
        j, sw = row
        plan = plan_of(sw.spec_yaml, sw.baseline)
        lost = lost_for(sw.owner, as_utc(sw.heartbeat_at)) is not None
        attempts = list(s.scalars(select(Attempt).where(Attempt.job_id == job_id)
                                  .order_by(Attempt.number)))
        result = s.scalar(select(Result).where(Result.job_id == job_id))
        return {
            "id": j.id, "sweep": sw.name, "key": j.key, "ordinal": j.ordinal,
            "variant": plan.name(j.key, j.variant), "current": plan.current(j.key),
            "engine": j.engine, "options": j.options, "model": j.model,
            "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
            "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
            "max_model_len": max_model_len(j.spec), "repeat": j.repeat,
            "state": LOST_ATTEMPT if lost and j.state == "running" else j.state,
            "spec": j.spec,
            "attempts": [
                {"number": a.number, "host": a.host, "gpu": a.gpu,
                 "outcome": LOST_ATTEMPT if lost and a.outcome == "running" else a.outcome,
                 "started_at": as_utc(a.started_at), "finished_at": as_utc(a.finished_at),
                 "duration_s": None if lost and a.outcome == "running" else _duration(a),
                 "error_kind": a.error_kind, "error": a.error, "log_tail": a.log_tail}
                for a in attempts
            ],
            "result": None if result is None else {
                "attempt_id": result.attempt_id, "host": result.host,
                "gpu_name": result.gpu_name, "record": dict(result.record),
                "bench": BenchResult.from_dict(result.record),
            },
        }


def _duration(a: Attempt) -> float | None:
    if a.elapsed_s is not None:
        return a.elapsed_s
    end = as_utc(a.finished_at) if a.finished_at else datetime.now(UTC)
    return (end - as_utc(a.started_at)).total_seconds()
