"""Where a result was measured: host, software versions, git sha, and the GPU (via NVML);
and this process's own priority and CPU affinity (own_nice, own_affinity).

`collect()` never raises: a piece it cannot read is None. It never imports vllm; torch only
for its CUDA version, and only where torch is installed.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "triton", "transformers", "vllm")


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cuda_version() -> str | None:
    if _version("torch") is None:
        return None
    import torch

    return torch.version.cuda


def _git(*args: str) -> str | None:
    r = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def _git_dirty() -> bool | None:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def _revision() -> tuple[str | None, bool | None]:
    """The commit and whether the tree differs from it. A copy of the project carried to
    another machine (a provisioned host, a lent GPU) names its commit in the REVISION file
    written beside it ("SHA" or "SHA+dirty"), and wins there: whatever .git such a copy has
    may be stale. Otherwise git's HEAD."""
    try:
        text = (PROJECT_ROOT / "REVISION").read_text().strip()
    except OSError:
        text = ""
    if text:
        return text.removesuffix("+dirty"), text.endswith("+dirty")
    sha = _safe(lambda: _git("rev-parse", "HEAD"))
    return (sha, _safe(_git_dirty)) if sha else (None, None)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_device() -> str | None:
    """The GPU this process uses, as CUDA_VISIBLE_DEVICES names it (an index or a UUID);
    "0" when unset; None when it hides every GPU."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return "0"
    first = env.split(",")[0].strip()
    return None if first in ("", "-1") else first


def torch_gpu_uuid() -> str | None:
    """The NVML UUID of torch's current GPU, where this process has already started CUDA.
    (CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML by PCI bus:
    an index in CUDA_VISIBLE_DEVICES can name different GPUs to the two.)"""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    uuid = torch.cuda.get_device_properties(torch.cuda.current_device()).uuid
    return f"GPU-{uuid}"


def gpu_info() -> dict[str, Any] | None:
    """NVML facts of the GPU this process uses, or None where there is no NVML or no
    visible GPU."""
    dev = _safe(torch_gpu_uuid) or visible_device()
    if dev is None:
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        if dev.isdigit():
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(dev))
        else:
            handle = pynvml.nvmlDeviceGetHandleByUUID(dev)
        return {
            "index": _safe(lambda: pynvml.nvmlDeviceGetIndex(handle)),
            "name": _safe(lambda: _str(pynvml.nvmlDeviceGetName(handle))),
            "uuid": _safe(lambda: _str(pynvml.nvmlDeviceGetUUID(handle))),
            "memory_total_bytes": _safe(lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)),
            # In use by every process when this was read: near zero at a job's start.
            "memory_used_bytes": _safe(lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)),
            "driver": _safe(lambda: _str(pynvml.nvmlSystemGetDriverVersion())),
            "cuda_driver": _safe(pynvml.nvmlSystemGetCudaDriverVersion),
            "sm_clock_mhz": _safe(
                lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
            ),
            "mem_clock_mhz": _safe(
                lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
            ),
            "max_sm_clock_mhz": _safe(
                lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
            ),
            "temperature_c": _safe(
                lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
            ),
            "visible_as": dev,
        }
    except Exception:
        return None
    finally:
        _safe(pynvml.nvmlShutdown)


def own_nice() -> int:
    """This process's nice value as the kernel shows it (/proc/self/stat, field 19; the
    command name before it may hold spaces and parentheses), else getpriority."""
    try:
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return os.getpriority(os.PRIO_PROCESS, 0)


def own_affinity() -> list[int] | None:
    """The CPUs this process may run on; None where the platform cannot tell."""
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter else None


def collect() -> dict[str, Any]:
    """Host and software facts; a "gpu" entry only where NVML sees the visible GPU."""
    info: dict[str, Any] = {
        "hostname": _safe(socket.gethostname),
        "platform": _safe(platform.platform),
        "python": sys.version.split()[0],
        "cpu": _safe(_cpu_model),
        "cpu_count": os.cpu_count(),
        **{p: _safe(lambda p=p: _version(p)) for p in PACKAGES},
        "cuda": _safe(_cuda_version),
        **dict(zip(("git_sha", "git_dirty"), _revision(), strict=True)),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    gpu = _safe(gpu_info)
    if gpu is not None:
        info["gpu"] = gpu
    return info
