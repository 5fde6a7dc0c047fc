"""nano: an offline LLM engine (Qwen2/Qwen3) with paged KV cache, prefix caching, chunked
prefill, preemption, Triton kernels and CUDA graphs; CPU fp32 with torch for CI."""

from engine.nano.llm import LLM
from engine.nano.sampling import SamplingParams

__all__ = ["LLM", "SamplingParams"]
