"""Engine variant registry: which engine kinds exist, which options each accepts.

This module is imported by the coordinator, so it must not import torch or any engine:
`start()` imports the engine's adapter module only in the worker. nano's options are
EngineConfig's option fields (engine/nano/config.py, torch-free), defined there once.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.memory_budget import BUDGET_OPTIONS
from engine.nano.config import nano_options
from engine.options import Option


class Engine(Protocol):
    """What engine.bench needs from an engine adapter (engine/engines/*.py)."""

    timings: dict[str, float]  # startup split: load_s, profile_s, compile_s, capture_s

    def generate(
        self, prompts: list[list[int]], max_tokens: list[int], temperature: float, ignore_eos: bool
    ) -> list[list[int]]:
        """Generate for every prompt; return each request's output token ids, in order."""

    def stats(self) -> dict[str, Any]:
        """Figures of the last generate and of the engine: any of kv_blocks, block_size,
        kv_tokens, prefill_s, decode_s, preemptions, prefill_tokens, decode_steps, dtype
        (the weights' and KV cache's, by name, for the roofline), and request_timings
        (engine/latency.py: RequestTiming, one a request, in order)."""

    def synchronize(self) -> None:
        """Wait for the device to finish queued work."""

    def reset(self) -> None:
        """Before each job's generates: the same engine state for every job that shares
        this start (prefix cache cleared, the allocator settled), so repeats on one start
        measure alike."""

    def peak_memory_bytes(self) -> int | None: ...

    def close(self) -> None: ...

    # Optional, for a job's `profile: kernels` (engine.bench): an adapter that can profile
    # its engine's steps in this process has
    #   profile_kernels(prompts, max_tokens, temperature, ignore_eos) -> list[StepProfile]
    # (after the timed generate, from a finished engine); one that cannot may say why in
    # kernel_profile_note.


@dataclass(frozen=True)
class EngineKind:
    name: str
    module: str  # adapter module exposing start(job, model_dir) -> Engine
    description: str
    options: dict[str, Option] = field(default_factory=dict)
    free_form: bool = False  # unknown options are passed through to the engine as they are
    requires: str | None = None  # a package the adapter imports that a worker may lack
    install: str = ""  # how to get it, for the error a worker without it reports

    def require_installed(self) -> None:
        """Raise ValueError, in one line, where this worker cannot import the engine's
        package. Looks the package up without importing it."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            raise ValueError(f"{self.requires} is not installed on this worker ({self.install})")

    def normalize(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate options; return them with values equal to the default dropped, so that
        spelling out a default does not change a job's key."""
        out = {}
        for name, value in sorted(options.items()):
            opt = self.options.get(name)
            if opt is None:
                if not self.free_form:
                    known = ", ".join(sorted(self.options)) or "none"
                    raise ValueError(
                        f"engine {self.name!r} has no option {name!r} (known: {known})"
                    )
                out[name] = value
            elif (value := opt.coerce(name, value)) != opt.default:
                out[name] = value
        return out

    def resolved(self, options: dict[str, Any]) -> dict[str, Any]:
        """Every option with its effective value (defaults filled in)."""
        return {name: o.default for name, o in self.options.items()} | options


# LLM(...) arguments that the job's own fields and the named options set.
VLLM_MAPPED_ARGS = ("model", "skip_tokenizer_init", "max_num_seqs", "gpu_memory_utilization",
                    "max_model_len", "enforce_eager", "block_size", "enable_prefix_caching",
                    "max_num_batched_tokens", "dtype", "tokenizer", "kv_cache_memory_bytes",
                    "disable_log_stats")


def _validate_engine_args(name: str, value: dict) -> None:
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"option {name!r}: {key!r} is not an argument name")
        if key in VLLM_MAPPED_ARGS:
            raise ValueError(f"option {name!r} may not set {key!r}: the job or a named "
                             f"option sets it")


KINDS: dict[str, EngineKind] = {
    k.name: k
    for k in [
        EngineKind(
            name="nano",
            module="engine.engines.nano",
            description="nano: our engine (paged KV, prefix cache, Triton kernels, CUDA graphs)",
            # One definition each: EngineConfig's fields (engine/nano/config.py).
            options=nano_options(),
        ),
        EngineKind(
            name="hf",
            module="engine.engines.hf",
            description="Hugging Face transformers generate(), static batches of max_num_seqs",
            options={
                "attn_implementation": Option(str, "sdpa", ("sdpa", "eager")),
                "dtype": Option(str, "auto", ("auto", "float32", "bfloat16", "float16"),
                                "auto: bfloat16 on CUDA, float32 on CPU"),
            },
        ),
        EngineKind(
            name="vllm",
            module="engine.engines.vllm",
            description="vLLM's offline LLM (V1 engine), token-id prompts, no tokenizer",
            options={
                "enforce_eager": Option(bool, False, help="no torch.compile, no CUDA graphs"),
                # None: vLLM's own choice (16 for FlashAttention on Hopper); nano's is 256.
                "block_size": Option(int, None, minimum=1, help="tokens per KV-cache block"),
                # True is vLLM V1's default and nano's; the standard workload's random
                # prompts share no prefix, so it costs only the block hashing.
                "enable_prefix_caching": Option(bool, True),
                "max_num_batched_tokens": Option(int, None, minimum=1,
                                                 help="prefill tokens per step"),
                "dtype": Option(str, "bfloat16", ("auto", "bfloat16", "float16"),
                                "bfloat16 like nano on CUDA; auto: the checkpoint's"),
                "latency_metrics": Option(bool, False, help="turn on vLLM's per-request stats "
                                          "(disable_log_stats=False) for TTFT and TPOT; they "
                                          "cost vLLM some throughput"),
                "engine_args": Option(dict, {}, help="more LLM(...) keyword arguments, "
                                      "passed through as they are", validate=_validate_engine_args),
                **BUDGET_OPTIONS,
            },
            requires="vllm",
            install="pip install vllm==0.26.0",
        ),
    ]
}


def kind(name: str) -> EngineKind:
    if name not in KINDS:
        raise ValueError(f"unknown engine kind {name!r}; known: {', '.join(sorted(KINDS))}")
    return KINDS[name]


def start(job, model_dir) -> Engine:
    """Import the engine's adapter (worker side only) and start it for this job."""
    return importlib.import_module(kind(job.engine).module).start(job, model_dir)
