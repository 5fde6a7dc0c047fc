"""GPU telemetry: the throttle decode, the sampling loop driven by an injected reader (this
machine has no GPU), the NVML reader against a scripted pynvml, nothing recorded on a CPU slot
or without NVML, and the summary of a timed generate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types

import pytest

from engine import gpu_hygiene, gpu_telemetry
from engine.gpu_telemetry import Reading, Sampler, Telemetry, summarize, throttle_reasons


def test_throttle_reasons_leave_out_idle_and_application_clocks() -> None:
    assert throttle_reasons(None) == [] and throttle_reasons(0) == []
    assert throttle_reasons(0x1 | 0x2) == []  # idle, application clocks: not throttling
    assert throttle_reasons(0x4 | 0x1) == ["sw_power_cap"]
    assert throttle_reasons(0x8 | 0x20 | 0x40 | 0x80) == [
        "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"]
    assert throttle_reasons(0x4 | 0x1000) == ["sw_power_cap", "0x1000"]


class Scripted:
    """A read callable answering readings in turn (the last one stays), counting calls."""

    def __init__(self, readings: list[Reading], fail_after: int | None = None):
        self.readings, self.calls, self.fail_after = readings, 0, fail_after

    def __call__(self) -> Reading:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("GPU fell off the bus")
        return self.readings[min(self.calls, len(self.readings)) - 1]


def test_the_sampler_reads_every_period_and_counts_other_sessions_processes() -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        invisible = 4_194_304 + 7  # above Linux's pid_max: a pid of another namespace
        read = Scripted([Reading(gpu_pct=90, mem_used_bytes=3 << 30, power_w=412.345,
                                 sm_mhz=1980, temp_c=61, throttle=0x4,
                                 pids=[os.getpid(), 0, invisible, other.pid])])
        sampler = Sampler(read, period_s=0.05)
        t0 = time.monotonic()
        sampler.start(t0, session=os.getsid(0))
        time.sleep(0.5)
        tel = sampler.stop()
    finally:
        other.kill()
        other.wait()
    assert 6 <= len(tel) <= 12, tel.t  # about one a period, from the start
    assert tel.t[0] < 0.05 and tel.t == sorted(tel.t)
    # Only the process of another session counts: not the job's own, not pid 0, not one
    # that cannot be seen from here.
    assert set(tel.others) == {1}
    assert tel.mem_used_mib[0] == 3072 and tel.power_w[0] == 412.3 and tel.throttle[0] == 4
    assert read.calls == len(tel)


def test_a_read_that_fails_ends_the_sampling_and_keeps_what_was_taken() -> None:
    read = Scripted([Reading(gpu_pct=1)], fail_after=3)
    sampler = Sampler(read, period_s=0.01)
    sampler.start(time.monotonic(), session=os.getsid(0))
    time.sleep(0.2)
    tel = sampler.stop()
    assert len(tel) == 3 and tel.gpu_pct == [1, 1, 1] and tel.others == [None] * 3


def test_telemetry_window_and_round_trip() -> None:
    tel = Telemetry(1.0)
    for t in range(6):
        tel.add(t + 0.5, Reading(gpu_pct=t), others=0)
    part = tel.window(2.0, 4.0, done=3.9)
    assert part.t == [0.5, 1.5] and part.gpu_pct == [2, 3] and part.done_s == 1.9
    assert tel.window(4.0, float("inf")).t == [0.5, 1.5] and tel.window(4, 9).done_s is None
    assert Telemetry.from_dict(part.to_dict()) == part


def test_summary_of_the_timed_generate() -> None:
    tel = Telemetry(1.0, done_s=10.2)
    for t in range(12):
        generating = 6 <= t <= 10
        tel.add(float(t), Reading(gpu_pct=95 if generating else 5,
                                  power_w=500.0 if generating else 80.0,
                                  temp_c=70 if t == 11 else 50 + t,
                                  throttle=(0x20 | 0x1) if t == 8 else 0x1 if t == 2 else 0),
                others=2 if t == 1 else 0)
    s = summarize(tel, elapsed_s=4.5)  # the window: 5.7 .. 10.2
    assert s.samples == 5 and s.gpu_pct_mean == 95 and s.power_w_mean == 500
    assert s.temp_c_peak == 60 and s.throttle == ["sw_thermal"] == s.slowed
    assert s.others_max == 0 and not s.shared  # the other process came before it
    assert summarize(Telemetry(1.0, t=[1.0], gpu_pct=[1], mem_used_mib=[None],
                               power_w=[None], sm_mhz=[None], temp_c=[None], throttle=[None],
                               others=[None]), 1.0) is None  # no done_s
    tel.done_s = 0.5
    assert summarize(tel, elapsed_s=0.2) is None  # a generate between two samples


def fake_pynvml(fail: set[str], old_name: bool = False) -> types.ModuleType:
    """The NVML calls read_device makes; those named in `fail` raise NVMLError."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def call(name: str, value):
        def f(*args):
            if name in fail:
                raise NVMLError("Not Supported")
            return value(*args) if callable(value) else value
        return f

    m.NVMLError, m.NVML_CLOCK_SM, m.NVML_TEMPERATURE_GPU = NVMLError, 1, 0
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: ("h", i)
    m.nvmlDeviceGetUtilizationRates = call("util", types.SimpleNamespace(gpu=87, memory=40))
    m.nvmlDeviceGetMemoryInfo = call("mem", types.SimpleNamespace(used=5 << 30, total=140 << 30))
    m.nvmlDeviceGetPowerUsage = call("power", 456_789)  # mW
    m.nvmlDeviceGetClockInfo = call("clock", lambda h, kind: 1980 if kind == 1 else 0)
    m.nvmlDeviceGetTemperature = call("temp", lambda h, kind: 64 if kind == 0 else -1)
    reasons = call("reasons", 0x4 | 0x1)
    if old_name:
        m.nvmlDeviceGetCurrentClocksThrottleReasons = reasons
    else:
        m.nvmlDeviceGetCurrentClocksEventReasons = reasons
    m.nvmlDeviceGetComputeRunningProcesses = call(
        "procs", [types.SimpleNamespace(pid=11, usedGpuMemory=1), types.SimpleNamespace(pid=12)])
    return m


@pytest.mark.parametrize("old_name", [False, True])
def test_the_nvml_reader_reads_every_field(monkeypatch, old_name: bool) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(set(), old_name))
    with gpu_telemetry.nvml_reader("3") as read:
        r = read()
    assert r == Reading(gpu_pct=87, mem_used_bytes=5 << 30, power_w=456.789, sm_mhz=1980,
                        temp_c=64, throttle=0x5, pids=[11, 12])


def test_a_driver_older_than_its_pynvml_is_asked_the_old_name(monkeypatch) -> None:
    """pynvml has the clocks-event call, the driver's NVML (before 535) does not answer it."""
    m = fake_pynvml(set(), old_name=True)

    def not_found(*_args):
        raise m.NVMLError("Function Not Found")

    m.nvmlDeviceGetCurrentClocksEventReasons = not_found
    monkeypatch.setitem(sys.modules, "pynvml", m)
    with gpu_telemetry.nvml_reader("0") as read:
        assert read().throttle == 0x5


def test_a_field_nvml_cannot_read_is_none(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml",
                        fake_pynvml({"power", "reasons", "procs", "clock"}))
    with gpu_telemetry.nvml_reader("0") as read:
        r = read()
    assert (r.power_w, r.throttle, r.pids, r.sm_mhz) == (None, None, None, None)
    assert r.gpu_pct == 87 and r.temp_c == 64


def test_nothing_is_sampled_on_a_cpu_slot_or_without_nvml(monkeypatch) -> None:
    reader = Scripted([Reading(gpu_pct=1)])
    for cvd in ("", "-1"):
        with gpu_telemetry.sampling(cvd, reader) as sampler:
            assert sampler is None
        with gpu_telemetry.nvml_reader(cvd) as read:
            assert read is None
    assert reader.calls == 0
    # This machine: pynvml may import, but NVML does not start without a driver.
    with gpu_hygiene.nvml() as pynvml:
        works = pynvml is not None
    if not works:
        with gpu_telemetry.sampling("0") as sampler:
            assert sampler is None
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed at all
    with gpu_telemetry.sampling("0") as sampler:
        assert sampler is None
