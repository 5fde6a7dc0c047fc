"""Rotary position embedding, rotate-half (GPT-NeoX) layout, as Qwen2/Qwen3 use it."""

from __future__ import annotations

import torch
from torch import nn

from engine.nano.kernels.reference import QKPrologue, qk_prologue_ref, rotary_ref


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_positions: int, base: float, use_triton: bool = False):
        super().__init__()
        # Computed as transformers does (default rope), so fp32 results match bit for bit.
        exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        inv_freq = 1.0 / (base**exponent)
        pos = torch.arange(max_positions, dtype=torch.float32)
        freqs = pos[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)  # [max_positions, head_dim]
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.use_triton = use_triton

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
        prologue: QKPrologue | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """q [T, H, D], k [T, KVH, D] -> rotated (in place on CUDA with Triton), after the
        prologue where one is given."""
        if self.use_triton and q.is_cuda:
            from engine.nano.kernels.rotary import apply_rotary

            return apply_rotary(positions, q, k, self.cos, self.sin, prologue)
        if prologue is not None:
            q, k = qk_prologue_ref(q, k, prologue)
        return rotary_ref(positions, q, k, self.cos, self.sin)
