"""Model classes by config.json model_type."""

from __future__ import annotations


def model_class(model_type: str):
    if model_type == "qwen2":
        from engine.nano.models.qwen2 import Qwen2ForCausalLM

        return Qwen2ForCausalLM
    if model_type == "qwen3":
        from engine.nano.models.qwen3 import Qwen3ForCausalLM

        return Qwen3ForCausalLM
    raise ValueError(f"model_type {model_type!r} is not supported by nano")
