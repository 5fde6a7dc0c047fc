"""Is the GPU a job is given idle? Read through NVML, waited for with a bound.

A job must never run beside a straggler (a killed job's engine subprocess still freeing its
memory, another user's process) and report a polluted number. The worker checks before each
job that its GPU has no compute process and little memory in use, and after each job that
the job's processes and memory are gone. `processes` reads what a result records: the
compute processes on its GPU just before and after the job.

Standard library plus pynvml where it imports: the worker CLI on a remote host needs no
more. Without pynvml, an NVIDIA driver or a GPU every check passes as "not checked".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.memory_budget import GIB
from engine.settings import settings

# An idle GPU shows a few hundred MiB in use (driver reservations); a leftover engine
# holds gigabytes. settings().gpu_idle_max_used_mib ($BENCHSWEEP_GPU_IDLE_MAX_USED_MIB)
# overrides; settings().gpu_hygiene ($BENCHSWEEP_GPU_HYGIENE=0) switches the checks off.
IDLE_MAX_USED_BYTES = 2 * GIB
BEFORE_WAIT_S = 60.0  # how long a job waits for its GPU to become idle
AFTER_WAIT_S = 20.0  # how long the worker waits for a finished job's memory to come back
POLL_S = 0.5


@dataclass
class GpuProcess:
    pid: int
    used_bytes: int | None  # NVML cannot always tell (some drivers, containers)


@dataclass
class GpuState:
    device: str  # as CUDA_VISIBLE_DEVICES names it: an index in PCI bus order, or a UUID
    name: str
    uuid: str
    used_bytes: int
    total_bytes: int
    processes: list[GpuProcess] = field(default_factory=list)

    def idle(self, max_used_bytes: int) -> bool:
        return not self.processes and self.used_bytes < max_used_bytes

    def describe(self) -> str:
        procs = ", ".join(
            f"pid {p.pid}" + (f" ({p.used_bytes / GIB:.1f} GiB)" if p.used_bytes else "")
            for p in self.processes
        )
        return (f"GPU {self.device} ({self.name}, {self.uuid}): "
                f"{self.used_bytes / GIB:.1f} of {self.total_bytes / GIB:.1f} GiB in use, "
                + (f"{len(self.processes)} compute process(es): {procs}" if procs
                   else "no compute process"))


@dataclass
class IdleCheck:
    ok: bool
    waited_s: float
    states: list[GpuState]  # empty: not checked (no NVML, no GPU, or switched off)
    message: str

    @property
    def waited(self) -> bool:
        """Whether the GPU was busy at first (the wait took at least one poll)."""
        return self.waited_s >= POLL_S


def enabled() -> bool:
    return settings().gpu_hygiene


def idle_max_used_bytes() -> int:
    mib = settings().gpu_idle_max_used_mib
    return IDLE_MAX_USED_BYTES if mib is None else mib << 20


def devices(cuda_visible_devices: str) -> list[str]:
    """The GPUs a CUDA_VISIBLE_DEVICES value names; none for "" or "-1" (a CPU slot)."""
    out = []
    for d in cuda_visible_devices.split(","):
        d = d.strip()
        if d in ("", "-1"):
            break  # CUDA ignores everything after an invalid entry
        out.append(d)
    return out


@contextlib.contextmanager
def nvml() -> Iterator[Any]:
    """pynvml, initialised; None where there is no pynvml or NVML cannot start."""
    try:
        import pynvml
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except Exception:
        yield None
        return
    try:
        yield pynvml
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def handle(pynvml: Any, device: str) -> Any:
    if device.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(device))
    return pynvml.nvmlDeviceGetHandleByUUID(device)


def read(pynvml: Any, device: str) -> GpuState:
    h = handle(pynvml, device)
    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
    try:
        running = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
    except pynvml.NVMLError:
        running = []  # not supported here: the memory in use still tells
    procs = [GpuProcess(int(p.pid), int(p.usedGpuMemory) if p.usedGpuMemory else None)
             for p in running]
    return GpuState(device, _str(pynvml.nvmlDeviceGetName(h)),
                    _str(pynvml.nvmlDeviceGetUUID(h)), int(mem.used), int(mem.total), procs)


def memory(device: str) -> tuple[int, int] | None:
    """Device memory (in use now by all processes, total); None without NVML."""
    with nvml() as pynvml:
        if pynvml is None:
            return None
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(handle(pynvml, device))
            return int(info.used), int(info.total)
        except Exception:
            return None


def processes(cuda_visible_devices: str) -> list[dict] | None:
    """The compute processes on the GPUs named, now, as the record keeps them ({"pid",
    "used_bytes"}); None where nothing can be read (a CPU slot, no NVML, an NVML error).
    Read whether or not the idle checks are switched on: a result records what it saw."""
    names = devices(cuda_visible_devices)
    if not names:
        return None
    with nvml() as pynvml:
        if pynvml is None:
            return None
        try:
            return [{"pid": p.pid, "used_bytes": p.used_bytes}
                    for d in names for p in read(pynvml, d).processes]
        except Exception:
            return None


def wait_idle(cuda_visible_devices: str, timeout_s: float,
              max_used_bytes: int | None = None) -> IdleCheck:
    """Wait up to timeout_s until every GPU named is idle. Never raises: an NVML error
    counts as "not checked", since a broken probe must not stop every job."""
    names = devices(cuda_visible_devices)
    if not names or not enabled():
        return IdleCheck(True, 0.0, [], "not checked (no GPU or checks off)")
    limit = idle_max_used_bytes() if max_used_bytes is None else max_used_bytes
    started = time.monotonic()
    with nvml() as pynvml:
        if pynvml is None:
            return IdleCheck(True, 0.0, [], "not checked (no NVML)")
        while True:
            try:
                states = [read(pynvml, d) for d in names]
            except Exception as e:
                return IdleCheck(True, time.monotonic() - started, [],
                             f"not checked (NVML: {type(e).__name__}: {e})")
            waited = time.monotonic() - started
            busy = [s for s in states if not s.idle(limit)]
            if not busy:
                return IdleCheck(True, waited, states, "idle")
            if waited >= timeout_s:
                return IdleCheck(False, waited, states,
                             f"{'; '.join(s.describe() for s in busy)} after waiting "
                             f"{waited:.0f} s (idle: no compute process and under "
                             f"{limit / GIB:.1f} GiB in use)")
            time.sleep(POLL_S)


def before_job(cuda_visible_devices: str, job_timeout_s: float,
               wait_s: float | None = None) -> IdleCheck:
    """Wait for a job's GPUs to be idle before it starts: up to wait_s (BEFORE_WAIT_S by
    default), never longer than the job's own timeout."""
    return wait_idle(cuda_visible_devices,
                     min(BEFORE_WAIT_S if wait_s is None else wait_s, job_timeout_s))


def after_job(cuda_visible_devices: str) -> IdleCheck:
    """Wait up to AFTER_WAIT_S for a finished job's memory to come back."""
    return wait_idle(cuda_visible_devices, AFTER_WAIT_S)
