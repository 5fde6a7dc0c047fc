"""BenchResult: the one record a benchmark job returns. Plain data, no torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


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
    # Device peak (CUDA) or process max RSS (CPU); vllm: NVML device memory in use above
    # the level before its start (its engine core is another process).
    peak_memory_bytes: int | None = None
    # The engine's compile cache held this job's compiled graphs before it started
    # (vllm); None where the engine keeps no such cache or it could not be told.
    compile_cache_warm: bool | None = None
    device: str = "cpu"
    options: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)

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
    def gpu_name(self) -> str | None:
        """The card the job ran on, as envinfo read it; None where it read no GPU."""
        gpu = self.env.get("gpu")
        return gpu.get("name") if isinstance(gpu, dict) else None

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("output_tok_s", "total_tok_s", "prefill_tok_s", "decode_tok_s", "start_s"):
            d[name] = getattr(self, name)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> BenchResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
