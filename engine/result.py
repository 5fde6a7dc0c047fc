"""BenchResult: the one record a benchmark job returns. Plain data, no torch.

Beside the figures, `conditions` (Conditions) records what could have disturbed them, and
the derived `disturbed` lists why a result is suspect (empty: nothing seen). Both are in
the record JSON (`to_dict`); a record written before they existed reads as "not recorded",
never as disturbed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class Conditions:
    """The state of the job's process and host around the timed run. None: not recorded
    (an older record, or not readable here). The job process reads its own nice value and
    CPU affinity; the runner (orchestrator/executors/process.py) the rest, around the job."""

    nice: int | None = None  # the job process's nice value, from its own /proc/self/stat
    nice_asked: int | None = None  # the coordinator's: what the runner set before the job
    cpu_affinity: list[int] | None = None  # the CPUs the job process may run on
    cpu_count: int | None = None  # the host's CPUs, which the load average is read against
    load_before: float | None = None  # the host's 1-minute load average as the job started
    load_after: float | None = None  # and as it ended (the job's own share included)
    # Compute processes on the job's GPU(s) just before it started and after it ended
    # ({"pid", "used_bytes"}; pids as NVML gives them): none should be there. None on a CPU
    # slot, without NVML, or with the GPU checks switched off.
    gpu_processes_before: list[dict] | None = None
    gpu_processes_after: list[dict] | None = None
    cpu_s: float | None = None  # CPU time (user + system) of the job and the children it reaped
    wall_s: float | None = None  # the job process's lifetime, which cpu_s is spent over
    # When the job's result line came, in seconds since its process started (the runner's
    # reading, within a poll): the process's teardown is wall_s less its last job's.
    result_at_s: float | None = None
    # The runner's GPU-idle checks around the job process (engine.gpu_hygiene): the wait for an
    # idle GPU before it started and for its memory to come back after it ended; 0.0 where
    # nothing was checked (a CPU slot, no NVML, the checks off).
    gpu_wait_before_s: float | None = None
    gpu_wait_after_s: float | None = None

    def disturbances(self) -> list[str]:
        """Why a figure taken under these conditions may not be the engine's alone: the
        host busier than its CPUs (the load beyond what the job itself used), another process
        on the GPU, or the job at another priority than the coordinator asked."""
        why = []
        if self.nice is not None and self.nice_asked is not None and self.nice != self.nice_asked:
            why.append(f"ran at nice {self.nice}, not {self.nice_asked}")
        if self.cpu_count:
            if self.load_before is not None and self.load_before > self.cpu_count:
                why.append(f"load {self.load_before:.1f} on {self.cpu_count} CPUs before")
            own = self.cpu_s / self.wall_s if self.cpu_s is not None and self.wall_s else 0.0
            if self.load_after is not None and self.load_after - own > self.cpu_count:
                why.append(f"load {self.load_after:.1f} on {self.cpu_count} CPUs after "
                           f"(the job's own {own:.1f})")
        for when, procs in (("before", self.gpu_processes_before),
                            ("after", self.gpu_processes_after)):
            if procs:
                pids = ", ".join(str(p.get("pid")) for p in procs)
                why.append(f"{len(procs)} other GPU process(es) {when} (pid {pids})")
        return why


@dataclass
class StepProfile:
    """One step of the job's workload, profiled after its timed run (a sweep's `profile:
    kernels`; engine/kernel_profile.py): where its device time goes. Seconds per step."""

    kind: str  # prefill | decode
    seqs: int  # sequences in the step
    tokens: int  # tokens it computes (a decode step: one a sequence)
    context_tokens: int  # tokens its sequences attend to, their new ones included
    activity: str  # cuda: kernel time on the GPU; cpu: operators' own time on the host
    busy_s: float  # the sum of categories_s
    # The step alone, launched and waited for, not profiled: wall_s - busy_s is the host's
    # share of it (preparing inputs, launching, reading the tokens back), an upper bound of
    # its share in the step loop, which overlaps it with the device (async scheduling).
    wall_s: float
    categories_s: dict[str, float] = field(default_factory=dict)  # engine/kernel_categories
    top_kernels_s: dict[str, float] = field(default_factory=dict)  # the longest, by name
    graph: bool = False  # the step replayed a CUDA graph, as in the timed run

    @property
    def host_gap_s(self) -> float:
        return max(0.0, self.wall_s - self.busy_s)


@dataclass
class Roofline:
    """What the job's workload needs at least (engine/roofline.py): its bytes moved and
    FLOPs against the card's measured copy bandwidth and matmul throughput
    (engine/card_figures.py). floor_s = prefill_floor_s + decode_floor_s."""

    card: str
    copy_bytes_per_s: float
    matmul_flops_per_s: float
    prefill_bytes: float
    prefill_flops: float
    decode_bytes: float
    decode_flops: float
    prefill_floor_s: float
    decode_floor_s: float

    @property
    def floor_s(self) -> float:
        return self.prefill_floor_s + self.decode_floor_s


@dataclass
class BenchResult:
    engine: str  # engine kind: hf | nano | vllm
    variant: str
    model: str
    workload: str
    workload_fingerprint: str
    num_seqs: int
    max_num_seqs: int
    gpu_memory_utilization: float
    prompt_tokens: int
    requested_output_tokens: int
    output_tokens: int  # measured: tokens the engine actually returned
    elapsed_s: float  # monotonic clock around generate, after a device synchronise
    # The job process's start to its engine's start: the interpreter, torch and the bench's
    # imports, the workload, the job's checks, the host's figures (the engine's own package
    # is imported in load_s). The first of a process's jobs only (the others: 0); None where
    # /proc cannot tell.
    imports_s: float | None = None
    load_s: float = 0.0  # weights from disk to device
    profile_s: float = 0.0  # KV-cache sizing pass
    compile_s: float = 0.0  # torch.compile and similar
    capture_s: float = 0.0  # CUDA graph capture
    warmup_s: float = 0.0  # a small untimed generate before the timed one
    prefill_s: float | None = None  # time in prefill steps, where the engine reports it
    decode_s: float | None = None
    kv_blocks: int | None = None
    block_size: int | None = None
    kv_tokens: int | None = None  # KV-cache capacity in tokens
    # Under KV-cache pressure (nano): sequences preempted, and tokens computed in prefill
    # steps, prompts plus the recomputation of preempted sequences, less prefix-cache hits.
    preemptions: int | None = None
    prefill_tokens: int | None = None
    decode_steps: int | None = None  # output_tokens / decode_steps: the mean decode batch
    # Per-request latency over the timed generate (engine/latency.py: Latency, the same
    # names): time to first token and time per output token after it, in seconds. None
    # where the engine does not report it (vllm unless its latency_metrics option is on).
    ttft_p50_s: float | None = None
    ttft_p90_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_p50_s: float | None = None
    tpot_p90_s: float | None = None
    tpot_p99_s: float | None = None
    # Device peak (CUDA) or process max RSS (CPU); vllm: NVML device memory in use above
    # the level before its start (its engine core is another process).
    peak_memory_bytes: int | None = None
    # The engine's compile cache held this job's compiled graphs before it started
    # (vllm); None where the engine keeps no such cache or it could not be told.
    compile_cache_warm: bool | None = None
    # Repeats of one configuration on one engine start (a sweep's reuse: repeats): this
    # job's place among them, 0 for the one that paid the start (the start figures are its
    # alone; the others' are 0). None: the job had an engine process of its own.
    engine_shared: int | None = None
    # A sweep's `profile: kernels`: one prefill and one decode step of the workload,
    # profiled after the timed run; profile_note says why there is none where one was asked.
    step_profiles: list[StepProfile] | None = None
    profile_note: str | None = None
    roofline: Roofline | None = None  # None: no model config or card figures to derive it
    device: str = "cpu"
    options: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    conditions: Conditions = field(default_factory=Conditions)

    @property
    def output_tok_s(self) -> float:
        return self.output_tokens / self.elapsed_s

    @property
    def total_tok_s(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.elapsed_s

    @property
    def prefill_tok_s(self) -> float | None:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else None

    @property
    def decode_tok_s(self) -> float | None:
        return self.output_tokens / self.decode_s if self.decode_s else None

    @property
    def start_s(self) -> float:
        return self.load_s + self.profile_s + self.compile_s + self.capture_s + self.warmup_s

    @property
    def floor_s(self) -> float | None:
        return self.roofline.floor_s if self.roofline else None

    @property
    def percent_of_floor(self) -> float | None:
        """The roofline's floor as a share of the measured time: 100 is as fast as the
        card's copy bandwidth and matmul rate allow."""
        return 100 * self.roofline.floor_s / self.elapsed_s if self.roofline else None

    @property
    def between_steps_s(self) -> float | None:
        """The timed run's time outside its prefill and decode steps (as the engine counts
        them: nano), where the engine reports both."""
        if self.prefill_s is None or self.decode_s is None:
            return None
        return max(0.0, self.elapsed_s - self.prefill_s - self.decode_s)

    @property
    def disturbed(self) -> list[str]:
        """Reasons this figure may be disturbed (Conditions.disturbances); empty when
        nothing was seen or nothing recorded."""
        return self.conditions.disturbances()

    @property
    def gpu_name(self) -> str | None:
        """The card the job ran on, as envinfo read it; None where it read no GPU."""
        gpu = self.env.get("gpu")
        return gpu.get("name") if isinstance(gpu, dict) else None

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("output_tok_s", "total_tok_s", "prefill_tok_s", "decode_tok_s", "start_s",
                     "disturbed", "floor_s", "percent_of_floor", "between_steps_s"):
            d[name] = getattr(self, name)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> BenchResult:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        cond = kw.get("conditions")
        if isinstance(cond, dict):
            known = {f.name for f in fields(Conditions)}
            kw["conditions"] = Conditions(**{k: v for k, v in cond.items() if k in known})
        elif cond is not None and not isinstance(cond, Conditions):
            del kw["conditions"]
        if isinstance(kw.get("roofline"), dict):
            kw["roofline"] = _typed(Roofline, kw["roofline"])
        if kw.get("step_profiles") is not None:
            kw["step_profiles"] = [p if isinstance(p, StepProfile) else _typed(StepProfile, p)
                                   for p in kw["step_profiles"]]
        return cls(**kw)


def _typed(cls, d: dict):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})
