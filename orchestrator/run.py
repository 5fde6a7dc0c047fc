"""Drive one sweep: record its jobs, resume, place pending jobs on free slots, collect
outcomes, retry, enforce timeouts, record every attempt. Only this process writes the
database."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from db.models import Job
from db.store import HEARTBEAT_S, STALE_AFTER, Store
from orchestrator.executors.base import Executor, Outcome, Slot
from orchestrator.spec import SweepSpec

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
    job: Job
    attempt_id: int
    slot: Slot
    deadline: float


class StopRequest:
    """Ctrl-C, SIGTERM (kill, systemd, a container's stop) and SIGHUP (the SSH session that
    started the sweep closed) stop a sweep the same way. The handler only notes the signal;
    the loop sees it between two steps, so no attempt is left half-recorded, then cancels the
    running jobs' process groups, marks their attempts cancelled and releases the lease. A
    second signal while that runs raises KeyboardInterrupt at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.name: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in self.SIGNALS}
        return self

    def __exit__(self, *_exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _note(self, signum: int, _frame) -> None:
        if self.name:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name


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


def record_jobs(spec: SweepSpec, store: Store) -> tuple[int, dict[str, float]]:
    """Upsert the sweep and its jobs; return the sweep id and each job key's timeout."""
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
    return sweep_id, {p.key: p.timeout_s for p in planned}


def run_sweep(spec: SweepSpec, store: Store, executor: Executor, *, rerun_failed: bool = False,
              force: bool = False, on_change: Callable[[RunSummary, int], None] | None = None,
              on_attempt: Callable[[Job, Outcome], None] | None = None) -> RunSummary:
    """Run every job of the sweep not yet succeeded. on_change(summary, running) is called
    whenever the counts change; on_attempt(job, outcome) as each attempt ends."""
    sweep_id, timeouts = record_jobs(spec, store)
    keys = list(timeouts)
    owner = owner_id()
    with StopRequest() as stop:
        recovered = store.acquire(sweep_id, owner, stale_after=STALE_AFTER,
                                  owner_alive=owner_alive)
        ended, by = "error", None  # unless the run gets to its end
        try:
            if force:
                store.reset_jobs(sweep_id, keys, states=("succeeded", "failed"))
            elif rerun_failed:
                store.reset_jobs(sweep_id, keys, states=("failed",))
            queue = deque(store.pending_jobs(sweep_id, keys))
            summary = RunSummary(sweep_id, len(keys), len(keys) - len(queue), recovered)
            _drive(spec, store, executor, queue, timeouts, summary, owner, on_change,
                   on_attempt, stop)
            ended, by = ("stopped", summary.stopped_by) if summary.stopped_by else \
                ("finished", None)
            return summary
        except KeyboardInterrupt:  # a second signal while the first one's cleanup ran
            ended, by = "stopped", stop.name or "SIGINT"
            raise
        finally:
            store.release(sweep_id, owner, ended=ended, signal=by)


def _drive(spec: SweepSpec, store: Store, executor: Executor, queue: deque[Job],
           timeouts: dict[str, float], summary: RunSummary, owner: str, on_change, on_attempt,
           stop: StopRequest) -> None:
    free = list(executor.slots)
    running: dict[object, _Running] = {}
    failures: dict[int, int] = {}  # job id -> failed attempts this run
    lost: dict[int, int] = {}
    last_beat = time.monotonic()

    def notify() -> None:
        if on_change:
            on_change(summary, len(running))

    def settle(r: _Running, out: Outcome) -> None:
        summary.outcomes[out.outcome] = summary.outcomes.get(out.outcome, 0) + 1
        job_state = "succeeded" if out.outcome == "succeeded" else "failed"
        if out.outcome == "lost":
            lost[r.job.id] = lost.get(r.job.id, 0) + 1
            if lost[r.job.id] < MAX_LOST:
                job_state = "pending"
        elif out.outcome != "succeeded":
            failures[r.job.id] = failures.get(r.job.id, 0) + 1
            if failures[r.job.id] <= spec.file.retries and out.error_kind not in NOT_RETRIED:
                job_state = "pending"
        store.finish_attempt(
            r.attempt_id, out.outcome, job_state=job_state, error=out.error,
            error_kind=out.error_kind, log_tail=out.log_tail, result=out.result,
            elapsed_s=out.elapsed_s or None,
        )
        if on_attempt:
            on_attempt(r.job, out)
        if job_state == "pending":
            queue.append(r.job)
        elif job_state == "failed":
            summary.failed_jobs += 1
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
                job = queue.popleft()
                attempt_id = store.start_attempt(job.id, slot.host, slot.gpu)
                timeout = timeouts[job.key]
                handle = executor.submit(slot, job.spec, timeout)
                running[handle] = _Running(job, attempt_id, slot,
                                           time.monotonic() + timeout + ANSWER_GRACE_S)
                notify()
            for handle, out in executor.wait(list(running), timeout_s=0.5):
                settle(running.pop(handle), out)
                notify()
            now = time.monotonic()
            for handle, r in list(running.items()):
                if now > r.deadline:
                    executor.cancel(handle)
                    del running[handle]
                    settle(r, Outcome.lost(r.slot, "the executor did not answer within the "
                                                   "job's timeout; the attempt was given up"))
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
            store.finish_attempt(r.attempt_id, "cancelled", job_state="pending",
                                 error=f"interrupted ({stop.name})", error_kind="cancelled")
        running.clear()
