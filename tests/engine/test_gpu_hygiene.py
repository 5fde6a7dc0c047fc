"""GPU hygiene: a no-op where there is no NVML (this machine), and its wait-then-fail logic
against a scripted stand-in for the third-party pynvml module."""

import sys
import time
import types
from dataclasses import dataclass

import pytest

from engine import gpu_hygiene
from engine.memory_budget import GIB


def test_devices() -> None:
    assert gpu_hygiene.devices("") == []
    assert gpu_hygiene.devices("-1") == []
    assert gpu_hygiene.devices("0") == ["0"]
    assert gpu_hygiene.devices(" 2, GPU-ab12 ") == ["2", "GPU-ab12"]
    assert gpu_hygiene.devices("1,-1,3") == ["1"]  # CUDA stops at an invalid entry


def test_no_op_without_nvml() -> None:
    with gpu_hygiene.nvml() as pynvml:
        if pynvml is not None:
            pytest.skip("NVML works here")
    t0 = time.monotonic()
    check = gpu_hygiene.wait_idle("0", timeout_s=30)
    assert check.ok and check.states == [] and "not checked" in check.message
    assert time.monotonic() - t0 < 2
    assert gpu_hygiene.memory("0") is None


def test_no_op_on_a_cpu_slot_or_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_hygiene.wait_idle("", timeout_s=30).ok
    monkeypatch.setenv("BENCHSWEEP_GPU_HYGIENE", "0")
    assert gpu_hygiene.wait_idle("0", timeout_s=30).message.startswith("not checked")


@dataclass
class FakeGpu:
    """What NVML reads on one GPU, read after read: (bytes in use, pids); the last entry
    stays."""

    timeline: list[tuple[int, list[int]]]
    reads: int = 0

    @property
    def now(self) -> tuple[int, list[int]]:
        return self.timeline[min(self.reads, len(self.timeline)) - 1]


def fake_pynvml(gpus: dict[int, FakeGpu]) -> types.ModuleType:
    """Just the NVML calls gpu_hygiene makes, answering from `gpus`. Each memory read
    moves a GPU one step along its timeline."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def memory(h: int):
        gpus[h].reads += 1
        used = gpus[h].now[0]
        return types.SimpleNamespace(used=used, total=140 * GIB, free=140 * GIB - used)

    m.NVMLError = NVMLError
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetHandleByUUID = lambda u: int(u.removeprefix("GPU-"))
    m.nvmlDeviceGetMemoryInfo = memory
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        types.SimpleNamespace(pid=p, usedGpuMemory=gpus[h].now[0]) for p in gpus[h].now[1]]
    m.nvmlDeviceGetName = lambda h: b"NVIDIA H200"
    m.nvmlDeviceGetUUID = lambda h: f"GPU-{h}"
    return m


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> dict[int, FakeGpu]:
    table: dict[int, FakeGpu] = {}
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(table))
    monkeypatch.setattr(gpu_hygiene, "POLL_S", 0.01)
    return table


def test_idle_gpu_passes_at_once(gpus: dict[int, FakeGpu]) -> None:
    gpus[0] = FakeGpu([(GIB // 2, [])])
    check = gpu_hygiene.wait_idle("0", timeout_s=5)
    assert check.ok and check.waited_s < 0.5 and check.states[0].uuid == "GPU-0"
    assert gpu_hygiene.memory("0")[0] == GIB // 2


def test_waits_for_a_straggler_to_exit(gpus: dict[int, FakeGpu]) -> None:
    gpus[1] = FakeGpu([(70 * GIB, [4242])] * 5 + [(GIB // 2, [])])
    check = gpu_hygiene.wait_idle("GPU-1", timeout_s=5)
    assert check.ok and gpus[1].reads == 6


def test_busy_gpu_fails_naming_processes_and_memory(gpus: dict[int, FakeGpu]) -> None:
    gpus[0] = FakeGpu([(GIB // 2, [])])
    gpus[3] = FakeGpu([(71 * GIB, [4242, 4343])])
    check = gpu_hygiene.wait_idle("0,3", timeout_s=0.2)
    assert not check.ok and check.waited_s >= 0.2
    assert check.message.startswith("GPU 3 (NVIDIA H200, GPU-3): 71.0 of 140.0 GiB in use, "
                                    "2 compute process(es): pid 4242 (71.0 GiB), pid 4343")
    assert "GPU 0" not in check.message and "under 2.0 GiB" in check.message


def test_memory_alone_makes_a_gpu_busy(gpus: dict[int, FakeGpu],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A process NVML cannot list (another container) still shows in the memory in use.
    gpus[0] = FakeGpu([(3 * GIB, [])])
    assert not gpu_hygiene.wait_idle("0", timeout_s=0.05).ok
    monkeypatch.setenv("BENCHSWEEP_GPU_IDLE_MAX_USED_MIB", str(4 * 1024))
    assert gpu_hygiene.wait_idle("0", timeout_s=0.05).ok


def test_processes_lists_every_gpu_named_and_none_on_cpu(gpus: dict[int, FakeGpu],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    gpus[0] = FakeGpu([(GIB // 2, [])])
    gpus[2] = FakeGpu([(3 * GIB, [51])])
    monkeypatch.setenv("BENCHSWEEP_GPU_HYGIENE", "0")  # recorded even with the checks off
    assert gpu_hygiene.processes("0,2") == [{"pid": 51, "used_bytes": 3 * GIB}]
    assert gpu_hygiene.processes("0") == []
    assert gpu_hygiene.processes("") is None and gpu_hygiene.processes("-1") is None
