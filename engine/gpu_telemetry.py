"""GPU telemetry of a job: its GPU sampled through NVML about every PERIOD_S while its process
runs (utilisation, memory in use, power, SM clock, temperature, the clocks-event (throttle)
reasons, and compute processes that are not the job's), kept as columns (Telemetry), and
what a result's timed generate saw of it (summarize).

The worker's runner (orchestrator/executors/process.py) runs a Sampler beside each job
process; times are seconds since the process started, the clock its jobs' elapsed_s are
taken on. A Sampler reads through a `read` callable, so that it can be driven without a
GPU; the production one (nvml_reader) reads pynvml. On a CPU slot, without pynvml or
without a working NVML there is no reader: nothing is recorded and nothing is said.

Standard library plus pynvml where it imports, like gpu_hygiene: the runner on a remote
host needs no more."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields

from engine import gpu_hygiene

PERIOD_S = 1.0  # how often a job's GPU is sampled

# NVML's clocks-event (formerly "clocks throttle") reason bits, by the names we show. Idle and
# an application clock setting lower the clock without anything being wrong: not throttling.
THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock_setting",
}
NOT_THROTTLING = 0x1 | 0x2
# What marks a figure: the clock lowered by heat, a hardware slowdown or a power brake, which
# come and go with the room and the card's state. Not the software power cap: a card at full
# load runs at its power limit in steady state (an H200 under bf16 matmuls, always), the
# same in every repeat; it is shown with the samples, not held against the figure.
SLOWDOWNS = ("hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")


def throttle_reasons(mask: int | None) -> list[str]:
    """The throttling reasons set in a clocks-event mask (idle and application clocks left
    out); unknown bits by their value."""
    if not mask:
        return []
    mask &= ~NOT_THROTTLING
    out = [name for bit, name in THROTTLE_BITS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_BITS)
    return out + ([f"0x{rest:x}"] if rest else [])


@dataclass(frozen=True)
class Reading:
    """One look at a GPU; None where NVML could not tell (NotSupported and the like)."""

    gpu_pct: int | None = None
    mem_used_bytes: int | None = None
    power_w: float | None = None
    sm_mhz: int | None = None
    temp_c: int | None = None
    throttle: int | None = None  # the clocks-event reason mask
    pids: list[int] | None = None  # compute processes on the GPU, as NVML gives them


Read = Callable[[], Reading]

# The sample columns of a Telemetry, beside t.
SERIES = ("gpu_pct", "mem_used_mib", "power_w", "sm_mhz", "temp_c", "throttle", "others")


@dataclass
class Telemetry:
    """One attempt's samples as columns (compact, JSON-ready): t in seconds since the
    attempt's start (for the first job of a process: the process's start), each other
    column one value a sample, None where it was not read. `others`: compute processes on
    the GPU that were not the job's. `done_s`: when the job's result line came (its timed
    generate ends just before it; None: it wrote none)."""

    period_s: float = PERIOD_S
    t: list[float] = field(default_factory=list)
    gpu_pct: list[int | None] = field(default_factory=list)
    mem_used_mib: list[int | None] = field(default_factory=list)
    power_w: list[float | None] = field(default_factory=list)
    sm_mhz: list[int | None] = field(default_factory=list)
    temp_c: list[int | None] = field(default_factory=list)
    throttle: list[int | None] = field(default_factory=list)
    others: list[int | None] = field(default_factory=list)
    done_s: float | None = None

    def __len__(self) -> int:
        return len(self.t)

    def add(self, t: float, r: Reading, others: int | None) -> None:
        self.t.append(round(t, 2))
        self.gpu_pct.append(r.gpu_pct)
        self.mem_used_mib.append(None if r.mem_used_bytes is None else r.mem_used_bytes >> 20)
        self.power_w.append(None if r.power_w is None else round(r.power_w, 1))
        self.sm_mhz.append(r.sm_mhz)
        self.temp_c.append(r.temp_c)
        self.throttle.append(r.throttle)
        self.others.append(others)

    def window(self, start: float, end: float, done: float | None = None) -> Telemetry:
        """The samples in [start, end), their times (and `done`) made relative to start."""
        keep = [i for i, t in enumerate(self.t) if start <= t < end]
        cols = {name: [getattr(self, name)[i] for i in keep] for name in SERIES}
        return Telemetry(self.period_s, [round(self.t[i] - start, 2) for i in keep], **cols,
                         done_s=None if done is None else round(done - start, 3))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Telemetry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Summary:
    """What the GPU did during a result's timed generate. None: no sample said."""

    samples: int  # in the window
    gpu_pct_mean: float | None
    power_w_mean: float | None
    temp_c_peak: int | None
    throttle: list[str]  # the reasons seen, in THROTTLE_BITS order; empty: none
    others_max: int | None  # the most compute processes not the job's at one sample

    @property
    def slowed(self) -> list[str]:
        """The reasons seen that mark the figure (SLOWDOWNS)."""
        return [r for r in self.throttle if r in SLOWDOWNS]

    @property
    def shared(self) -> bool:
        return bool(self.others_max)


def generate_window(tel: Telemetry, elapsed_s: float) -> tuple[float, float] | None:
    """Where the timed generate lies in the telemetry's time: it ends at done_s (within a
    poll of the runner; a `profile: kernels` job profiles between the two) and lasts
    elapsed_s. None without done_s."""
    if tel.done_s is None:
        return None
    return max(0.0, tel.done_s - elapsed_s), tel.done_s


def summarize(tel: Telemetry, elapsed_s: float) -> Summary | None:
    """The samples inside the timed generate summarised; None when it has none (no
    done_s, or a generate shorter than the period that fell between two samples)."""
    w = generate_window(tel, elapsed_s)
    if w is None:
        return None
    idx = [i for i, t in enumerate(tel.t) if w[0] <= t <= w[1]]
    if not idx:
        return None

    def present(name: str) -> list:
        return [v for i in idx if (v := getattr(tel, name)[i]) is not None]

    def mean(name: str) -> float | None:
        vals = present(name)
        return math.fsum(vals) / len(vals) if vals else None

    mask = 0
    for m in present("throttle"):
        mask |= m
    temps, others = present("temp_c"), present("others")
    return Summary(len(idx), mean("gpu_pct"), mean("power_w"), max(temps) if temps else None,
                   throttle_reasons(mask), max(others) if others else None)


def _own(pid: int, session: int) -> bool | None:
    """Is the process of the job's session? None: not visible here (another PID namespace,
    as in a container that sees the host's GPU), so it cannot be told."""
    try:
        return os.getsid(pid) == session
    except ProcessLookupError:
        return None
    except PermissionError:
        return False


class Sampler:
    """Reads its GPU every period_s on a daemon thread, from start() to stop(). A read that
    raises ends the sampling (the GPU or NVML went away); what was taken stays."""

    def __init__(self, read: Read, period_s: float | None = None):
        self.read, self.period_s = read, period_s or PERIOD_S
        self.telemetry = Telemetry(self.period_s)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # a sample is added whole, or not once stopped
        self._thread: threading.Thread | None = None

    def start(self, t0: float, session: int) -> None:
        """t0: the monotonic time that t counts from; session: the job's session id (its
        process's pid when it leads one), whose processes are the job's."""
        self._thread = threading.Thread(target=self._loop, args=(t0, session),
                                        name="gpu-telemetry", daemon=True)
        self._thread.start()

    def _loop(self, t0: float, session: int) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                r = self.read()
            except Exception:
                return
            t = time.monotonic() - t0
            others = None
            if r.pids is not None:
                # Not countable: pid 0 (a driver hiding it) and pids from another namespace.
                others = sum(1 for p in r.pids if p and _own(p, session) is False)
            with self._lock:
                if self._stop.is_set():
                    return
                self.telemetry.add(t, r, others)
            next_at += self.period_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> Telemetry:
        """What was taken. A read stuck in NVML past the join's wait adds nothing after."""
        with self._lock:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10 * self.period_s + 5)
        return self.telemetry


def _field(pynvml, call: Callable, *args):
    """One NVML query; None where it raises NVMLError (NotSupported, NoPermission, ...)."""
    try:
        return call(*args)
    except pynvml.NVMLError:
        return None


def read_device(pynvml, h) -> Reading:
    """One Reading of the device behind NVML handle h."""
    util = _field(pynvml, pynvml.nvmlDeviceGetUtilizationRates, h)
    mem = _field(pynvml, pynvml.nvmlDeviceGetMemoryInfo, h)
    power_mw = _field(pynvml, pynvml.nvmlDeviceGetPowerUsage, h)
    # The clocks-event reasons took that name in driver 535's NVML: an older pynvml has only
    # the throttle-reasons call, an older driver only answers that one.
    throttle = None
    for name in ("nvmlDeviceGetCurrentClocksEventReasons",
                 "nvmlDeviceGetCurrentClocksThrottleReasons"):
        if hasattr(pynvml, name):
            throttle = _field(pynvml, getattr(pynvml, name), h)
            if throttle is not None:
                break
    procs = _field(pynvml, pynvml.nvmlDeviceGetComputeRunningProcesses, h)
    return Reading(
        gpu_pct=None if util is None else int(util.gpu),
        mem_used_bytes=None if mem is None else int(mem.used),
        power_w=None if power_mw is None else power_mw / 1000,
        sm_mhz=_field(pynvml, pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
        temp_c=_field(pynvml, pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
        throttle=throttle,
        pids=None if procs is None else [int(p.pid) for p in procs],
    )


@contextlib.contextmanager
def nvml_reader(cuda_visible_devices: str) -> Iterator[Read | None]:
    """A Read of the first GPU a CUDA_VISIBLE_DEVICES value names (a job has one GPU), NVML
    open while the block runs; None on a CPU slot, without pynvml or where NVML or the
    device cannot be opened."""
    names = gpu_hygiene.devices(cuda_visible_devices)
    if not names:
        yield None
        return
    with gpu_hygiene.nvml() as pynvml:
        h = None
        if pynvml is not None:
            with contextlib.suppress(Exception):
                h = gpu_hygiene.handle(pynvml, names[0])
        yield None if h is None else (lambda: read_device(pynvml, h))


@contextlib.contextmanager
def sampling(cuda_visible_devices: str, read: Read | None = None) -> Iterator[Sampler | None]:
    """A Sampler for the job's GPU, not yet started: through `read` where given, else NVML;
    None on a CPU slot and where there is nothing to read (nvml_reader)."""
    if not gpu_hygiene.devices(cuda_visible_devices):
        yield None
        return
    if read is not None:
        yield Sampler(read)
        return
    with nvml_reader(cuda_visible_devices) as nvml_read:
        yield None if nvml_read is None else Sampler(nvml_read)
