"""Qwen3: the Qwen2 decoder with per-head RMSNorm on q and k (ModelConfig.qk_norm) and
config.attention_bias on q/k/v and o."""

from __future__ import annotations

from engine.nano.models.qwen2 import Qwen2ForCausalLM


class Qwen3ForCausalLM(Qwen2ForCausalLM):
    def __init__(self, cfg, max_positions: int, backend: str = "torch", triton: bool = False):
        if not cfg.qk_norm:
            raise ValueError("a Qwen3 config must have q/k norm")
        super().__init__(cfg, max_positions, backend, triton)
