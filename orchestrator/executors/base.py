"""The seam between the sweep runner and its executors: Slot (where one job runs), Outcome
(how one attempt ended, with its typed BenchResult when it succeeded: the record every
executor hands back; a plain dict on the wire), the Executor protocol, and RayExecutor,
the bookkeeping and waiting that the Ray-backed executors share.

This module imports no executor implementation (they import it), and Ray only when a Ray
executor runs: process.py imports it on worker hosts, where only the job runner starts."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from engine.errors import UserError
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

    @classmethod
    def lost(cls, slot: Slot, error: str, **kw: Any) -> Outcome:
        """The attempt was lost to the infrastructure (a worker, node, host or an answer
        gone), not to the job: the sweep runs it again."""
        return cls("lost", slot.host, slot.gpu, error=error, error_kind="lost", **kw)

    def to_dict(self) -> dict:
        """The wire form (JSON-ready) in which an outcome crosses Ray and SSH: the result
        as its record (BenchResult.to_dict, derived figures included)."""
        d = asdict(self)
        d["result"] = self.result.to_dict() if self.result is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        result = d.get("result")
        return cls(**{**d, "result": BenchResult.from_dict(result) if result else None})


class Executor(Protocol):
    slots: list[Slot]

    def ready(self, slot: Slot) -> bool:
        """May this free slot take a job now? An executor may hold one back a while (a
        quarantined SSH host, a Ray node just lost); by default every free slot is ready."""
        return True

    def submit(self, slot: Slot, job_json: str, timeout_s: float) -> Any:
        """Start the job on the slot; return a handle."""

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, Outcome]]:
        """Outcomes of the handles that finished within timeout_s (possibly none)."""

    def cancel(self, handle: Any) -> None:
        """Stop a running job now; its process group dies with it."""

    def shutdown(self) -> None: ...


class RayExecutor(Executor):
    """An executor whose handles are Ray object refs, each resolving to an Outcome's dict.
    It knows the slot each running ref holds; a Ray error in place of the outcome (the
    worker, node or actor died under the job) makes the attempt lost, said with
    `lost_error`. Subclasses start refs with `_started` and may act on each outcome in
    `_finished`. Every job runs at `nice`, the coordinator's own nice value (read where the
    executor is made), which the subclass hands to the job runner with the job."""

    lost_error = "worker lost"  # the OOM killer, a crash in Ray

    def __init__(self) -> None:
        self._running: dict[Any, Slot] = {}
        self.nice = os.getpriority(os.PRIO_PROCESS, 0)

    def _started(self, slot: Slot, ref: Any) -> Any:
        self._running[ref] = slot
        return ref

    def _finished(self, slot: Slot, out: Outcome) -> None:
        """Called for each outcome wait() hands back, before it does."""

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, Outcome]]:
        if not handles:
            return []
        import ray

        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=timeout_s)
        done = []
        for ref in ready:
            slot = self._running.pop(ref)
            try:
                out = Outcome.from_dict(ray.get(ref))
            except (ray.exceptions.RayError, OSError) as e:
                out = Outcome.lost(slot, f"{self.lost_error}: {type(e).__name__}")
            self._finished(slot, out)
            done.append((ref, out))
        return done

    def cancel(self, handle: Any) -> None:
        import ray

        self._running.pop(handle, None)
        # force: the worker process dies, and the job's group with it (PDEATHSIG).
        ray.cancel(handle, force=True)

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
