"""nano: an offline LLM engine (Qwen2/Qwen3) with paged KV cache, prefix caching, chunked
prefill, preemption, Triton kernels and CUDA graphs; CPU fp32 with torch for CI.

LLM and SamplingParams are imported on first use, so that the registry (engine/variants.py)
can read engine.nano.config without importing torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.nano.llm import LLM
    from engine.nano.sampling import SamplingParams

__all__ = ["LLM", "SamplingParams"]
_HOMES = {"LLM": "engine.nano.llm", "SamplingParams": "engine.nano.sampling"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
