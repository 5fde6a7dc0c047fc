"""What the sweep runner needs from an executor: slots (one job each) and a way to run a
job on a slot and collect its Outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from engine.errors import UserError
from orchestrator.executors.process import Outcome


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


class Executor(Protocol):
    slots: list[Slot]

    def submit(self, slot: Slot, job_json: str, timeout_s: float) -> Any:
        """Start the job on the slot; return a handle."""

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, Outcome]]:
        """Outcomes of the handles that finished within timeout_s (possibly none)."""

    def cancel(self, handle: Any) -> None:
        """Stop a running job now; its process group dies with it."""

    def shutdown(self) -> None: ...
