"""The seam between the sweep runner and its executors: Slot (where a job runs), Outcome
(how one attempt ended, with its typed BenchResult when it succeeded: the record every
executor hands back; a plain dict on the wire), the Executor protocol, and RayExecutor,
the bookkeeping and waiting that the Ray-backed executors share.

An executor task runs a list of jobs in one job process: one job, or the jobs of one
configuration that share an engine start (a sweep's `reuse: repeats`). While it runs, the
process's output comes back in LogChunks (every LOG_EVERY_S); it ends with a list of
Outcomes, one per job in the same order. On the wire (a Ray streaming generator's items,
`stream`), each chunk is {"log": chunk} and the end {"outcomes": [outcome, ...]}.

This module imports no executor implementation (they import it), and Ray only when a Ray
executor runs: process.py imports it on worker hosts, where only the job runner starts."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from engine.errors import UserError
from engine.gpu_telemetry import Telemetry
from engine.result import BenchResult


class ExecutorUnavailable(UserError, RuntimeError):
    """The executor was asked for correctly but cannot start (no usable host, no node
    joined the cluster): one line, exit 1."""


@dataclass(frozen=True)
class Slot:
    name: str  # unique in the executor, e.g. "gpu0" or "cpu1"
    host: str
    gpu: str  # what the attempt records: a GPU index/UUID, or "cpu"
    cuda_visible_devices: str  # "" on CPU slots
    threads: int | None = None  # CPU threads a job may use on this slot


@dataclass
class Outcome:
    outcome: str  # succeeded | failed | timeout | lost | cancelled
    host: str
    gpu: str
    result: BenchResult | None = None  # succeeded outcomes only
    error: str | None = None  # one line
    error_kind: str | None = None  # oom | bad_input | engine | timeout | crash | lost | gpu_busy
    log_tail: str = ""
    elapsed_s: float = 0.0
    # The job's GPU sampled while it ran (its share of the process's time); None where
    # nothing was sampled (a CPU slot, no NVML, a job that never started, a lost worker).
    telemetry: Telemetry | None = None

    @classmethod
    def lost(cls, slot: Slot, error: str, **kw: Any) -> Outcome:
        """The attempt was lost to the infrastructure (a worker, node, host or an answer
        gone), not to the job: the sweep runs it again."""
        return cls("lost", slot.host, slot.gpu, error=error, error_kind="lost", **kw)

    def to_dict(self) -> dict:
        """The wire form (JSON-ready) in which an outcome crosses Ray and SSH: the result
        as its record (BenchResult.to_dict, derived figures included), the telemetry as
        its columns."""
        d = asdict(self)
        d["result"] = self.result.to_dict() if self.result is not None else None
        d["telemetry"] = self.telemetry.to_dict() if self.telemetry is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        result, tel = d.get("result"), d.get("telemetry")
        return cls(**{**d, "result": BenchResult.from_dict(result) if result else None,
                      "telemetry": Telemetry.from_dict(tel) if tel else None})


@dataclass(frozen=True)
class LogChunk:
    """Output of a running job process, read from its log: `text` for the `job`-th of the
    task's jobs (the one running when it was read), after `skipped` bytes the worker did not
    send (a job that writes faster than READ_MAX_BYTES a read)."""

    job: int
    text: str
    skipped: int = 0


# How often a worker reads its job's log, and the most it sends of one read: what a job
# writes beyond that in LOG_EVERY_S is skipped at the source, and said so (LogChunk.skipped).
LOG_EVERY_S = 1.0
READ_MAX_BYTES = 1 << 20

JobRun = Generator[LogChunk, None, list[Outcome]]  # a job process: its chunks, its Outcomes


def stream(run: JobRun, host: str | None = None) -> Iterator[dict]:
    """A job process's run as the items of a Ray streaming generator (the module's
    docstring), its Outcomes' host set to `host` where given."""
    while True:
        try:
            chunk = next(run)
        except StopIteration as end:
            outs = end.value
            for out in outs:
                out.host = host or out.host
            yield {"outcomes": [out.to_dict() for out in outs]}
            return
        yield {"log": asdict(chunk)}


class Executor(Protocol):
    slots: list[Slot]

    def ready(self, slot: Slot) -> bool:
        """May this free slot take a job now? An executor may hold one back a while (a
        quarantined SSH host, a Ray node just lost); by default every free slot is ready."""
        return True

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float) -> Any:
        """Start the jobs (job JSONs) on the slot in one job process, timeout_s for them
        all; return a handle."""

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, list[Outcome]]]:
        """The Outcomes (one per job submitted, in order) of the handles that finished
        within timeout_s (possibly none)."""

    def logs(self) -> list[tuple[Any, LogChunk]]:
        """The output of running tasks that came in since the last call, each chunk with
        its task's handle, in order. A task's last chunks come in with its Outcomes: the
        caller takes them after wait() and before it records what wait handed back. By
        default none."""
        return []

    def cancel(self, handle: Any) -> None:
        """Stop a running job process now; its process group dies with it."""

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class Task:
    """A running executor task: where, and how many jobs it runs."""

    slot: Slot
    jobs: int

    def lost(self, error: str, **kw: Any) -> list[Outcome]:
        return [Outcome.lost(self.slot, error, **kw) for _ in range(self.jobs)]


class RayExecutor(Executor):
    """An executor whose handles are Ray streaming generators (ObjectRefGenerator), each
    yielding a task's `stream`: its log chunks, then its Outcomes. It knows the Task each
    running generator is; a Ray error in place of an item (the worker, node or actor died
    under the job) makes every job's attempt lost, said with `lost_error`. Subclasses start
    generators with `_started` and may act on each task's outcomes in `_finished`. Every job
    runs at `nice`, the coordinator's own nice value (read where the executor is made),
    which the subclass hands to the job runner with the jobs."""

    lost_error = "worker lost"  # the OOM killer, a crash in Ray

    def __init__(self) -> None:
        self._running: dict[Any, Task] = {}
        self._logs: list[tuple[Any, LogChunk]] = []
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)

    def _started(self, slot: Slot, jobs: list[str], ref: Any) -> Any:
        self._running[ref] = Task(slot, len(jobs))
        return ref

    def _finished(self, slot: Slot, outs: list[Outcome]) -> None:
        """Called for each task's outcomes that wait() hands back, before it does."""

    def logs(self) -> list[tuple[Any, LogChunk]]:
        taken, self._logs = self._logs, []
        return taken

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, list[Outcome]]]:
        if not handles:
            return []
        import ray

        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout_s)
        done = []
        for gen in handles:
            outs = self._take(gen) if gen in ready or gen.is_finished() else None
            if outs is None:
                continue
            task = self._running.pop(gen)
            if len(outs) != task.jobs:  # never from this version's runner
                outs = task.lost(f"the worker answered {len(outs)} outcome(s) for "
                                 f"{task.jobs} job(s)")
            self._finished(task.slot, outs)
            done.append((gen, outs))
        return done

    def _take(self, gen: Any) -> list[Outcome] | None:
        """The items of `gen` ready now: its chunks into the log, its Outcomes if it ended
        (a generator that ended without them answered none)."""
        import ray

        try:
            while gen.next_ready():
                item = ray.get(next(gen))
                if "outcomes" in item:
                    return [Outcome.from_dict(d) for d in item["outcomes"]]
                self._logs.append((gen, LogChunk(**item["log"])))
            return [] if gen.is_finished() else None
        except (ray.exceptions.RayError, OSError) as e:
            return self._running[gen].lost(f"{self.lost_error}: {type(e).__name__}")
        except StopIteration:
            return []

    def cancel(self, handle: Any) -> None:
        import ray

        self._running.pop(handle, None)
        # force: the worker process dies, and the job's group with it (PDEATHSIG).
        ray.cancel(handle, force=True)

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
