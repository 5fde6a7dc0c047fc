"""Drive one sweep: record its jobs, resume, place pending jobs on free slots, collect
outcomes, retry, enforce timeouts, record every attempt. Only this process writes the
database.

A slot runs one job process at a time: one job, or the jobs of one configuration that share
an engine start (`reuse: repeats`; orchestrator/job_queue.py). Each job has its own attempt,
settled from its own outcome, and its own place in the time the process held the slot.
While a process runs, its output goes to the attempt of the job it was running (the store
bounds what an attempt keeps), each loop's chunks in one write, before the attempts that
ended in that loop are settled: a reader that sees an attempt ended has all its output."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from db.models import Job, utcnow
from db.store import HEARTBEAT_S, STALE_AFTER, Store
from engine.job import BenchJob
from orchestrator.executors.base import Executor, LogChunk, Outcome, Slot
from orchestrator.job_queue import JobQueue
from orchestrator.spec import PlannedJob, SweepSpec
from orchestrator.stop_request import StopRequest

# Beyond a job's own timeout (enforced beside the job), how long the coordinator waits for
# its executor to answer before it gives the attempt up.
ANSWER_GRACE_S = 60.0
MAX_LOST = 3  # attempts lost to infrastructure (a worker died) before the job fails
# Failures that the same job would meet again: retries are for what can change.
NOT_RETRIED = frozenset({"bad_input"})


@dataclass
class RunSummary:
    sweep_id: int
    total: int
    skipped: int  # already succeeded under the same key
    recovered: int  # attempts left running by a dead coordinator, now marked lost
    outcomes: dict[str, int] = field(default_factory=dict)
    failed_jobs: int = 0
    stopped_by: str | None = None  # the signal that stopped the run: SIGINT, SIGTERM, SIGHUP

    @property
    def ok(self) -> bool:
        return not self.failed_jobs and not self.stopped_by


@dataclass
class _Running:
    jobs: list[tuple[Job, int]]  # each job of the process with its attempt id, in order
    slot: Slot
    started: datetime
    deadline: float


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def record_jobs(spec: SweepSpec, store: Store) -> tuple[int, dict[str, PlannedJob]]:
    """Upsert the sweep and its jobs; return the sweep id and each job key's plan."""
    planned = spec.expand()
    sweep_id = store.upsert_sweep(spec.name, spec.text, spec.baseline)
    store.add_jobs(sweep_id, [
        dict(key=p.key, ordinal=p.ordinal, variant=p.job.variant, engine=p.job.engine,
             options=p.job.options, model=p.job.model.label, workload=p.job.workload.name,
             workload_fingerprint=spec.fingerprint, max_num_seqs=p.job.max_num_seqs,
             gpu_memory_utilization=p.job.gpu_memory_utilization, repeat=p.job.repeat,
             spec=p.job.to_json())
        for p in planned
    ])
    return sweep_id, {p.key: p for p in planned}


def run_sweep(spec: SweepSpec, store: Store, start_executor: Callable[[], Executor], *,
              rerun_failed: bool = False, force: bool = False,
              on_change: Callable[[RunSummary, int], None] | None = None,
              on_attempt: Callable[[Job, Outcome], None] | None = None) -> RunSummary:
    """Run every job of the sweep not yet succeeded, on the executor start_executor starts
    (only if a job is left to run; shut down at the end). on_change(summary, running) is
    called whenever the counts change; on_attempt(job, outcome) as each attempt ends."""
    sweep_id, plan = record_jobs(spec, store)
    keys = list(plan)
    owner = owner_id()
    # Started before the lease is taken, and only if a job may be left to run (a job still
    # marked running may be a dead coordinator's, to run again): an executor can take
    # minutes to start (hosts reached one by one), and the lease is heartbeated only while
    # the sweep runs.
    states = ("pending", "running", *(("failed",) if rerun_failed else ()))
    executor = start_executor() if force or store.count_jobs(sweep_id, keys, states) else None
    try:
        with StopRequest() as stop:
            recovered = store.acquire(sweep_id, owner, stale_after=STALE_AFTER,
                                      owner_alive=owner_alive)
            ended, by = "error", None  # unless the run gets to its end
            try:
                if force:
                    store.reset_jobs(sweep_id, keys, states=("succeeded", "failed"))
                elif rerun_failed:
                    store.reset_jobs(sweep_id, keys, states=("failed",))
                queue = JobQueue(store.pending_jobs(sweep_id, keys), lambda j: _group(plan, j))
                summary = RunSummary(sweep_id, len(keys), len(keys) - len(queue), recovered)
                if queue:
                    executor = executor or start_executor()
                    _drive(spec, store, executor, queue, plan, summary, owner, on_change,
                           on_attempt, stop)
                elif on_change:
                    on_change(summary, 0)
                ended, by = ("stopped", summary.stopped_by) if summary.stopped_by else \
                    ("finished", None)
                return summary
            except KeyboardInterrupt:  # a second signal while the first one's cleanup ran
                ended, by = "stopped", stop.name or "SIGINT"
                raise
            finally:
                store.release(sweep_id, owner, ended=ended, signal=by)
    finally:
        if executor is not None:
            executor.shutdown()


def _group(plan: dict[str, PlannedJob], job: Job) -> str | None:
    """The job's group, from its plan, and from the job as recorded: what runs is the spec
    recorded with the job, in which jobs recorded by an earlier version of the sweep file
    may differ where their key does not (a variant's name, a temperature)."""
    group = plan[job.key].group
    return group and f"{group} {BenchJob.from_json(job.spec).configuration}"


def _spec(plan: dict[str, PlannedJob], job: Job) -> str:
    """The job as recorded, profiled or not as its plan says now (not part of its key)."""
    recorded = BenchJob.from_json(job.spec)
    profile = plan[job.key].profile
    return job.spec if recorded.profile == profile else recorded.with_profile(profile).to_json()


def _drive(spec: SweepSpec, store: Store, executor: Executor, queue: JobQueue,
           plan: dict[str, PlannedJob], summary: RunSummary, owner: str, on_change, on_attempt,
           stop: StopRequest) -> None:
    free = list(executor.slots)
    running: dict[object, _Running] = {}
    failures: dict[int, int] = {}  # job id -> failed attempts this run
    lost: dict[int, int] = {}
    last_beat = time.monotonic()

    def notify() -> None:
        if on_change:
            on_change(summary, len(running))

    def settle_one(job: Job, attempt_id: int, out: Outcome,
                   when: tuple[datetime, datetime] | None) -> None:
        summary.outcomes[out.outcome] = summary.outcomes.get(out.outcome, 0) + 1
        job_state = "succeeded" if out.outcome == "succeeded" else "failed"
        if out.outcome == "lost":
            lost[job.id] = lost.get(job.id, 0) + 1
            if lost[job.id] < MAX_LOST:
                job_state = "pending"
        elif out.outcome != "succeeded":
            failures[job.id] = failures.get(job.id, 0) + 1
            if failures[job.id] <= spec.file.retries and out.error_kind not in NOT_RETRIED:
                job_state = "pending"
        started_at, finished_at = when or (None, None)
        store.finish_attempt(
            attempt_id, out.outcome, job_state=job_state, error=out.error,
            error_kind=out.error_kind, log_tail=out.log_tail, result=out.result,
            elapsed_s=out.elapsed_s or None, started_at=started_at, finished_at=finished_at,
            telemetry=out.telemetry,
        )
        if on_attempt:
            on_attempt(job, out)
        if job_state == "pending":
            queue.put_back(job)
        elif job_state == "failed":
            summary.failed_jobs += 1

    def settle(r: _Running, outs: list[Outcome]) -> None:
        places = (placed(r.started, utcnow(), [o.elapsed_s for o in outs])
                  if len(r.jobs) > 1 else [None])
        for (job, attempt_id), out, when in zip(r.jobs, outs, places, strict=True):
            settle_one(job, attempt_id, out, when)
        free.append(r.slot)

    try:
        notify()
        while (queue or running) and not stop.name:
            while queue and not stop.name:
                # An executor may hold a slot back for a while (a quarantined SSH host).
                slot = next((s for s in free if executor.ready(s)), None)
                if slot is None:
                    if not running:
                        time.sleep(0.5)
                    break
                free.remove(slot)
                jobs = queue.take()
                started = utcnow()
                attempts = [(job, store.start_attempt(job.id, slot.host, slot.gpu))
                            for job in jobs]
                timeout = sum(plan[job.key].timeout_s for job in jobs)
                handle = executor.submit(slot, [_spec(plan, job) for job in jobs], timeout)
                running[handle] = _Running(attempts, slot, started,
                                           time.monotonic() + timeout + ANSWER_GRACE_S)
                notify()
            ended = executor.wait(list(running), timeout_s=0.5)
            _record_logs(store, executor.logs(), running)
            for handle, outs in ended:
                settle(running.pop(handle), outs)
                notify()
            now = time.monotonic()
            for handle, r in list(running.items()):
                if now > r.deadline:
                    executor.cancel(handle)
                    del running[handle]
                    settle(r, [Outcome.lost(r.slot, "the executor did not answer within the "
                                                    "job's timeout; the attempt was given up")
                               for _ in r.jobs])
                    notify()
            if now - last_beat > HEARTBEAT_S:
                store.heartbeat(summary.sweep_id, owner)
                last_beat = now
    except KeyboardInterrupt:
        stop.name = stop.name or "SIGINT"
    if stop.name:
        summary.stopped_by = stop.name
        for handle, r in running.items():
            executor.cancel(handle)
            for _job, attempt_id in r.jobs:
                store.finish_attempt(attempt_id, "cancelled", job_state="pending",
                                     error=f"interrupted ({stop.name})", error_kind="cancelled")
        running.clear()


def _record_logs(store: Store, chunks: list[tuple[object, LogChunk]],
                 running: dict[object, _Running]) -> None:
    """Each chunk to the attempt of the job of its task it names (a task given up meanwhile
    has none)."""
    pieces = [(r.jobs[c.job][1], c.text, c.skipped) for handle, c in chunks
              if (r := running.get(handle)) is not None and 0 <= c.job < len(r.jobs)]
    if pieces:
        store.append_logs(pieces)


def placed(start: datetime, end: datetime, elapsed: list[float]
           ) -> list[tuple[datetime, datetime]]:
    """Where the jobs of one process go in the time [start, end] it held its slot: one after
    another, each for its elapsed_s (the runner's clock, process and engine start in the
    first's). The last job that ran ends at `end`: it takes what surrounds the process (the
    GPU checks, the answer's way back). Jobs that did not run sit at `end`, taking none."""
    ran = max((i for i, e in enumerate(elapsed) if e > 0), default=0)
    places, t = [], start
    for i, e in enumerate(elapsed):
        if i > ran:
            places.append((end, end))
            continue
        stop = end if i == ran else min(t + timedelta(seconds=e), end)
        places.append((t, stop))
        t = stop
    return places
