"""An existing Ray cluster (`--address`). Each worker host joined with
`orchestrate hosts join --head ADDR`, which runs `ray start` there with one custom resource
per slot, `slot:<host>:<gpu>` (or `slot:<host>:cpu`), beside `host:<host>`
(orchestrator/ray_resources.py). A job is a Ray task pinned to its slot's resource, running
the same `run_job_process` as everywhere else.

Ray does not retry a task cut off from its node: a dead node's task ends "lost" here and
the sweep retries it on another slot; a node that stops answering without dying is given
up by the sweep's own deadline. Slots are the ones alive when the sweep starts; a slot
whose node has left gets no jobs until it is back."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import ray

from orchestrator.executors.base import ExecutorUnavailable, Outcome, RayExecutor, Slot, stream
from orchestrator.executors.process import job_process
from orchestrator.ray_resources import SLOT_PREFIX, parse_slot_resource, slot_resource

HOLD_AFTER_LOSS_S = 15.0


def slot_of(resource: str) -> Slot:
    host, gpu = parse_slot_resource(resource)
    return Slot(f"{host}/{gpu}", host, gpu, "" if gpu == "cpu" else gpu)


def resource_of(slot: Slot) -> str:
    return slot_resource(slot.host, slot.name.rpartition("/")[2])


@ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")
def _run_on_slot(slot: Slot, jobs: list[str], timeout_s: float, nice: int) -> Iterator[dict]:
    yield from stream(job_process(jobs, gpu=slot.gpu,
                                  cuda_visible_devices=slot.cuda_visible_devices,
                                  timeout_s=timeout_s, threads=slot.threads, nice=nice),
                      host=slot.host)


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's own minute of retries, when nothing listens."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except ValueError:
        raise ConnectionError(f"an address is HOST:PORT, not {address!r}") from None
    except OSError as e:
        raise ConnectionError(f"cannot reach {address}: {e.strerror or e}") from None


class RayClusterExecutor(RayExecutor):
    lost_error = "ray node or worker lost"

    def __init__(self, address: str, *, refresh_s: float = 2.0):
        super().__init__()
        _reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConnectionError(str(e).splitlines()[0] if str(e) else type(e).__name__) \
                from None
        self.slots = sorted((slot_of(r) for r in ray.cluster_resources()
                             if r.startswith(SLOT_PREFIX)), key=lambda s: s.name)
        if not self.slots:
            ray.shutdown()
            raise ExecutorUnavailable("no host has joined the cluster; run `orchestrate hosts join "
                               f"--head {address}` first")
        self.refresh_s = refresh_s
        self._alive: set[str] = set()
        self._alive_at = 0.0
        self._held: dict[str, float] = {}  # slot -> no job before this time

    def _alive_slots(self, fresh: bool = False) -> set[str]:
        now = time.monotonic()
        if fresh or now - self._alive_at > self.refresh_s:
            self._alive = {r for r in ray.cluster_resources() if r.startswith(SLOT_PREFIX)}
            self._alive_at = now
        return self._alive

    def ready(self, slot: Slot) -> bool:
        if time.monotonic() < self._held.get(slot.name, 0.0):
            return False
        return resource_of(slot) in self._alive_slots()

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float) -> Any:
        return self._started(slot, jobs, _run_on_slot.options(resources={resource_of(slot): 1})
                             .remote(slot, jobs, timeout_s, self.nice))

    def _finished(self, slot: Slot, outs: list[Outcome]) -> None:
        # Lost to the infrastructure: the first job's outcome says (the jobs after it may be
        # lost for not being reached, the node's fault or not).
        if outs[0].outcome == "lost":
            # The node or its worker died under the job. The cluster may not know yet that
            # the node is gone: give it a few health checks before this slot gets another job.
            self._held[slot.name] = time.monotonic() + HOLD_AFTER_LOSS_S
            self._alive_at = 0.0

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, list[Outcome]]]:
        done = super().wait(handles, timeout_s)
        # A task whose slot's node has left would wait forever for its resource.
        alive = self._alive_slots()
        for ref in handles:
            task = self._running.get(ref)
            if task is not None and resource_of(task.slot) not in alive:
                self.cancel(ref)
                done.append((ref, task.lost("the slot's node left the cluster")))
        return done
