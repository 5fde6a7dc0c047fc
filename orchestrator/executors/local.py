"""The embedded default: Ray started on this machine, one slot per visible GPU, or CPU
slots when there is none. Each slot is a custom Ray resource, so the coordinator knows
where every job runs before it starts and one slot never runs two jobs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import ray

from orchestrator.executors.base import RayExecutor, Slot, stream
from orchestrator.executors.process import job_process


def visible_gpus() -> list[str]:
    """GPU indices this process may use, read without torch: CUDA_VISIBLE_DEVICES if set,
    else nvidia-smi's list, else none."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [g.strip() for g in cvd.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")
def _run_on_slot(slot: Slot, jobs: list[str], timeout_s: float, nice: int) -> Iterator[dict]:
    yield from stream(job_process(jobs, gpu=slot.gpu,
                                  cuda_visible_devices=slot.cuda_visible_devices,
                                  timeout_s=timeout_s, threads=slot.threads, nice=nice))


class LocalExecutor(RayExecutor):
    def __init__(self, cpu_slots: int | None = None, object_store_mb: int = 256):
        super().__init__()
        host = socket.gethostname()
        gpus = visible_gpus()
        if gpus:
            self.slots = [Slot(f"gpu{g}", host, g, g) for g in gpus]
        else:
            n = cpu_slots or 1
            threads = max(1, (os.cpu_count() or 1) // n)
            self.slots = [Slot(f"cpu{i}", host, "cpu", "", threads) for i in range(n)]
        ray.init(
            num_cpus=len(self.slots), num_gpus=0,
            resources={s.name: 1 for s in self.slots},
            object_store_memory=object_store_mb * 1024 * 1024,
            include_dashboard=False, log_to_driver=False, configure_logging=False,
            # Ray's workers at the coordinator's priority, not 15 above it: the runner can
            # then give its job the coordinator's nice value without CAP_SYS_NICE.
            _system_config={"worker_niceness": 0},
        )

    def submit(self, slot: Slot, jobs: list[str], timeout_s: float) -> Any:
        return self._started(slot, jobs, _run_on_slot.options(resources={slot.name: 1}).remote(
            slot, jobs, timeout_s, self.nice))
