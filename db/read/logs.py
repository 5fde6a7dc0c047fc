"""Logs: an attempt's output as it came in while its job ran (AttemptLogChunk, written by
the coordinator as the worker reads it), for `orchestrate logs` and the Job page: the whole
log so far, what came after a position (following a running attempt), and the attempt's
outcome now. An attempt recorded before logs were kept has only its log_tail.

Stored as the job wrote it; shown through `collapse_frames`, which keeps the last frame of
each progress bar. Not collapsed when stored: a bar's frames come in over many chunks, and
a line split between two chunks collapses only once it is whole."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from db.models import Attempt, AttemptLogChunk, Job, Sweep
from db.read.sweeps import LOST_ATTEMPT, lost_for
from db.store import Store, as_utc


def collapse_frames(text: str) -> str:
    """Each line as it was left on a terminal: what follows its last carriage return (a
    progress bar such as tqdm redraws its line with `\\r` frame after frame). A `\\r` that
    ends a line (CRLF) is part of its end, not a frame."""
    return "\n".join(line.rstrip("\r").rpartition("\r")[2] for line in text.split("\n"))


def dropped_note(chars: int) -> str:
    return (f"\n[benchsweep: {chars:,} characters of output dropped here; an attempt keeps "
            f"the first and the last MiB of its output]\n")


@dataclass(frozen=True)
class AttemptLog:
    job_id: int
    attempt_id: int
    number: int
    outcome: str  # an attempt outcome, or LOST_ATTEMPT
    text: str  # the chunks in order with a note where output was dropped; else the log tail
    end: int  # the position after the last chunk: where following it goes on
    streamed: bool  # False: no chunk came in (an attempt from before), the text is the tail


def attempt_numbers(store: Store, job_id: int) -> list[int] | None:
    """The job's attempts' numbers, oldest first; None when there is no such job."""
    with store.session() as s:
        if s.get(Job, job_id) is None:
            return None
        return list(s.scalars(select(Attempt.number).where(Attempt.job_id == job_id)
                              .order_by(Attempt.number)))


def attempt_log(store: Store, job_id: int, number: int | None = None) -> AttemptLog | None:
    """The log of the job's attempt `number` (None: its latest); None when there is none.
    Its outcome is read before its chunks: an attempt that has ended has all of them."""
    q = select(Attempt).where(Attempt.job_id == job_id)
    q = q.where(Attempt.number == number) if number is not None else \
        q.order_by(Attempt.number.desc()).limit(1)
    with store.session() as s:
        a = s.scalar(q)
        if a is None:
            return None
        outcome = _outcome(s, a.id)
        chunks = _chunks(s, a.id, 0)
    text, end = _joined(chunks, 0)
    return AttemptLog(job_id, a.id, a.number, outcome, text if chunks else a.log_tail or "",
                      end, bool(chunks))


def log_after(store: Store, attempt_id: int, position: int) -> tuple[str, int]:
    """What came in at or after `position` of the attempt's output, with a note where output
    was dropped; the position after it."""
    with store.session() as s:
        return _joined(_chunks(s, attempt_id, position), position)


def attempt_outcome(store: Store, attempt_id: int) -> str:
    """The attempt's outcome now; LOST_ATTEMPT for one left running by a lost coordinator.
    A follower reads it before what came in: once it has ended, nothing more comes."""
    with store.session() as s:
        return _outcome(s, attempt_id)


def _outcome(s, attempt_id: int) -> str:
    outcome, owner, beat = s.execute(
        select(Attempt.outcome, Sweep.owner, Sweep.heartbeat_at)
        .join(Job, Job.id == Attempt.job_id).join(Sweep, Sweep.id == Job.sweep_id)
        .where(Attempt.id == attempt_id)).one()
    lost = outcome == "running" and lost_for(owner, as_utc(beat)) is not None
    return LOST_ATTEMPT if lost else outcome


def _chunks(s, attempt_id: int, position: int) -> list[tuple[int, str]]:
    return list(s.execute(select(AttemptLogChunk.position, AttemptLogChunk.text)
                          .where(AttemptLogChunk.attempt_id == attempt_id,
                                 AttemptLogChunk.position >= position)
                          .order_by(AttemptLogChunk.id)).all())


def _joined(chunks: list[tuple[int, str]], at: int) -> tuple[str, int]:
    parts = []
    for position, text in chunks:
        if position > at:
            parts.append(dropped_note(position - at))
        parts.append(text)
        at = position + len(text)
    return "".join(parts), at
