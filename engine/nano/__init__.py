"""nano: an offline LLM engine (Qwen2/Qwen3) with paged KV cache, prefix caching, chunked
prefill, preemption, Triton kernels and CUDA graphs; CPU fp32 with torch for CI.

LLM and SamplingParams are imported on first use, so that the registry (engine/variants.py)
can read engine.nano.config without importing torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.nano.llm import LLM
    from engine.nano.sampling import SamplingParams

__all__ = ["LLM", "SamplingParams"]


def __getattr__(name: str):
    if name == "LLM":
        from engine.nano.llm import LLM

        return LLM
    if name == "SamplingParams":
        from engine.nano.sampling import SamplingParams

        return SamplingParams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
