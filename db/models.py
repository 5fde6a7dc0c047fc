"""SQLAlchemy 2.0 typed ORM: Sweep, SweepRun, Job, Attempt, AttemptLogChunk,
AttemptTelemetry, Result, Host.

Job states: pending -> running -> succeeded | failed (failed jobs may be rerun).
Attempt outcomes: running, succeeded, failed, timeout, lost (the worker or coordinator
vanished), cancelled (Ctrl-C). A job's state is the latest attempt's, kept on the job row
because the scheduler and the dashboard filter on it constantly.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JOB_STATES = ("pending", "running", "succeeded", "failed")
ATTEMPT_OUTCOMES = ("running", "succeeded", "failed", "timeout", "lost", "cancelled")
# How a coordinator's run of a sweep ended: its jobs ran out, a signal stopped it, an error
# ended it, or it vanished (found silent by the next coordinator).
RUN_ENDINGS = ("finished", "stopped", "error", "lost")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, datetime: DateTime(timezone=True)}


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    baseline: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The coordinator that drives the sweep now: "host:pid", refreshed by heartbeat.
    owner: Mapped[str | None] = mapped_column(String(300))
    heartbeat_at: Mapped[datetime | None]
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]

    jobs: Mapped[list[Job]] = relationship(back_populates="sweep", cascade="all, delete-orphan")


class SweepRun(Base):
    """One coordinator's run of a sweep, from taking its lease to releasing it: a sweep
    resumed three times has four. Its duration is the sum of its runs' spans."""

    __tablename__ = "sweep_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str | None] = mapped_column(String(300))  # None: recorded before runs were
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime]  # its last heartbeat
    ended_at: Mapped[datetime | None]  # None while it runs (or until found lost)
    ended: Mapped[str | None] = mapped_column(String(20))  # RUN_ENDINGS
    signal: Mapped[str | None] = mapped_column(String(20))  # what stopped it: SIGINT, ...


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_sweep_key", "sweep_id", "key", unique=True),
        Index("ix_jobs_sweep_state", "sweep_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer)  # position in the expanded sweep
    variant: Mapped[str] = mapped_column(String(200))
    engine: Mapped[str] = mapped_column(String(50))
    options: Mapped[dict]
    model: Mapped[str] = mapped_column(String(500))
    workload: Mapped[str] = mapped_column(String(100))
    workload_fingerprint: Mapped[str] = mapped_column(String(64))
    max_num_seqs: Mapped[int]
    gpu_memory_utilization: Mapped[float] = mapped_column(Float)
    repeat: Mapped[int]
    spec: Mapped[str] = mapped_column(Text)  # the BenchJob JSON the worker runs
    state: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sweep: Mapped[Sweep] = relationship(back_populates="jobs")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="Attempt.number"
    )
    result: Mapped[Result | None] = relationship(back_populates="job", cascade="all, delete-orphan")


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_outcome", "outcome"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    host: Mapped[str] = mapped_column(String(200))
    gpu: Mapped[str] = mapped_column(String(200))  # slot name: GPU index/uuid or "cpu0"
    outcome: Mapped[str] = mapped_column(String(20), default="running")
    error: Mapped[str | None] = mapped_column(Text)  # one line
    error_kind: Mapped[str | None] = mapped_column(String(30))
    log_tail: Mapped[str | None] = mapped_column(Text)
    elapsed_s: Mapped[float | None] = mapped_column(Float)  # the job process's own wall time
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    job: Mapped[Job] = relationship(back_populates="attempts")


# What an attempt keeps of its output (AttemptLogChunk): the first LOG_HEAD_CHARS and the
# last LOG_TAIL_CHARS or so (whole chunks); what lies between is dropped as it comes.
LOG_HEAD_CHARS = 1 << 20
LOG_TAIL_CHARS = 1 << 20


class AttemptLogChunk(Base):
    """A piece of an attempt's output as it came in while the job ran, in order of id. It
    starts `position` characters into the attempt's whole output: where that is past the
    end of the chunk before it, what lay between was dropped (the bounds above, or by the
    worker: base.LogChunk.skipped). As written: tqdm's carriage-return frames are collapsed
    where the log is shown (db/read/logs.py)."""

    __tablename__ = "attempt_log_chunks"
    __table_args__ = (Index("ix_attempt_log_chunks_attempt_id", "attempt_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int]  # characters of text
    text: Mapped[str] = mapped_column(Text)


class AttemptTelemetry(Base):
    """An attempt's GPU samples (engine.gpu_telemetry.Telemetry), one row an attempt, the
    samples as columns in one JSON document: some 45 bytes a sample, 150 KB for an hour's
    job at one a second. Written as the attempt ends, whatever its outcome (none where its
    worker's answer never came: a lost or cancelled attempt); the
    summary of a result's timed generate is derived where it is read (db/read/telemetry.py)."""

    __tablename__ = "attempt_telemetry"

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"),
                                            unique=True)
    period_s: Mapped[float] = mapped_column(Float)
    samples: Mapped[int]  # how many
    done_s: Mapped[float | None] = mapped_column(Float)  # Telemetry.done_s
    series: Mapped[dict]  # Telemetry's columns: t, gpu_pct, ... (engine.gpu_telemetry.SERIES)


class Result(Base):
    """One succeeded job's BenchResult: the figures as columns for querying, the whole
    record as JSON for everything else."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(200))
    gpu_name: Mapped[str] = mapped_column(String(200))
    output_tokens: Mapped[int]
    elapsed_s: Mapped[float] = mapped_column(Float)
    output_tok_s: Mapped[float] = mapped_column(Float)
    total_tok_s: Mapped[float] = mapped_column(Float)
    start_s: Mapped[float] = mapped_column(Float)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # The roofline's floor (engine/roofline.py); None: no roofline (an older result, or none
    # derivable). The roofline itself and any step profiles are in the record.
    floor_s: Mapped[float | None] = mapped_column(Float)
    record: Mapped[dict]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result")


# The figures of a BenchResult that are columns of its Result row, under the same names (the
# store fills them with getattr); the rest is in `record`. host is the attempt's, gpu_name
# the result's (BenchResult.gpu_name) or else the attempt's GPU.
RESULT_FIGURES = ("output_tokens", "elapsed_s", "output_tok_s", "total_tok_s", "start_s",
                  "peak_memory_bytes", "floor_s")


class Host(Base):
    """A remote GPU box of the SSH inventory. Secrets never live here: key file paths only."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str] = mapped_column(String(300))
    port: Mapped[int] = mapped_column(default=22)
    user: Mapped[str] = mapped_column(String(100))
    key_file: Mapped[str | None] = mapped_column(String(500))
    setup: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="unknown")
    last_check: Mapped[dict | None]
    last_check_at: Mapped[datetime | None]
