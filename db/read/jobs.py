"""Jobs: a sweep's jobs with their last attempt (a frame, and the failed ones for `orchestrate
status`), the attempts running now, one job in full with its attempts and result."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select, func, select

from db.models import Attempt, Job, Result, Sweep
from db.store import Store, as_utc
from engine.result import BenchResult

if TYPE_CHECKING:  # pandas is imported by the frames alone: `orchestrate status` needs rows
    import pandas as pd

JOB_COLUMNS = ["job_id", "ordinal", "variant", "engine", "options", "model", "workload",
               "workload_fingerprint", "max_num_seqs", "gpu_memory_utilization", "repeat",
               "state", "attempts", "host", "gpu", "outcome", "error_kind", "error",
               "elapsed_s", "output_tok_s", "gpu_name"]


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


def _with_last_attempt(sweep: str) -> Select:
    """(Job, Attempt) of a sweep in sweep order: each job with its last attempt, None where
    it has none."""
    last = (select(Attempt.job_id, func.max(Attempt.number).label("n"))
            .group_by(Attempt.job_id).subquery())
    return (select(Job, Attempt).join(Sweep, Sweep.id == Job.sweep_id)
            .outerjoin(last, last.c.job_id == Job.id)
            .outerjoin(Attempt, (Attempt.job_id == Job.id) & (Attempt.number == last.c.n))
            .where(Sweep.name == sweep).order_by(Job.ordinal))


def sweep_jobs(store: Store, sweep: str) -> pd.DataFrame:
    """Every job of a sweep (in sweep order) with its configuration and its last attempt."""
    import pandas as pd

    with store.session() as s:
        rows = s.execute(_with_last_attempt(sweep)
                         .add_columns(Result.output_tok_s, Result.gpu_name)
                         .outerjoin(Result, Result.job_id == Job.id)).all()
    return pd.DataFrame([
        {"job_id": j.id, "ordinal": j.ordinal, "variant": j.variant, "engine": j.engine,
         "options": json.dumps(j.options, sort_keys=True), "model": j.model,
         "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
         "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
         "repeat": j.repeat, "state": j.state,
         "attempts": a.number if a else 0, "host": a.host if a else None,
         "gpu": a.gpu if a else None, "outcome": a.outcome if a else None,
         "error_kind": a.error_kind if a else None, "error": a.error if a else None,
         "elapsed_s": a.elapsed_s if a else None, "output_tok_s": tok_s,
         "gpu_name": card}
        for j, a, tok_s, card in rows
    ], columns=JOB_COLUMNS)


def failed_jobs(store: Store, sweep: str) -> list[FailedJob]:
    """A sweep's failed jobs, in sweep order, with the error of their last attempt."""
    with store.session() as s:
        rows = s.execute(_with_last_attempt(sweep).where(Job.state == "failed")).all()
    return [FailedJob(j.id, j.variant, j.max_num_seqs, j.gpu_memory_utilization, j.repeat,
                      a.error_kind, a.error) for j, a in rows if a is not None]


def running_attempts(store: Store, sweep: str | None = None) -> list[RunningAttempt]:
    """The attempts running now (of one sweep, or of all), oldest first."""
    with store.session() as s:
        q = (select(Sweep.name, Job, Attempt).join(Job, Job.sweep_id == Sweep.id)
             .join(Attempt, Attempt.job_id == Job.id).where(Attempt.outcome == "running")
             .order_by(Attempt.started_at))
        if sweep:
            q = q.where(Sweep.name == sweep)
        return [RunningAttempt(name, j.id, j.variant, j.max_num_seqs, j.gpu_memory_utilization,
                               j.repeat, a.number, a.host, a.gpu, as_utc(a.started_at))
                for name, j, a in s.execute(q)]


def job_detail(store: Store, job_id: int) -> dict | None:
    """One job: its configuration, sweep, attempts (oldest first) and result: the record as
    stored, and as the typed BenchResult ("bench")."""
    with store.session() as s:
        row = s.execute(select(Job, Sweep.name).join(Sweep, Sweep.id == Job.sweep_id)
                        .where(Job.id == job_id)).first()
        if row is None:
            return None
        j, sweep = row
        attempts = list(s.scalars(select(Attempt).where(Attempt.job_id == job_id)
                                  .order_by(Attempt.number)))
        result = s.scalar(select(Result).where(Result.job_id == job_id))
        return {
            "id": j.id, "sweep": sweep, "key": j.key, "ordinal": j.ordinal,
            "variant": j.variant, "engine": j.engine, "options": j.options, "model": j.model,
            "workload": j.workload, "workload_fingerprint": j.workload_fingerprint,
            "max_num_seqs": j.max_num_seqs, "gpu_memory_utilization": j.gpu_memory_utilization,
            "repeat": j.repeat, "state": j.state, "spec": j.spec,
            "attempts": [
                {"number": a.number, "host": a.host, "gpu": a.gpu, "outcome": a.outcome,
                 "started_at": as_utc(a.started_at), "finished_at": as_utc(a.finished_at),
                 "duration_s": _duration(a), "error_kind": a.error_kind, "error": a.error,
                 "log_tail": a.log_tail}
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

