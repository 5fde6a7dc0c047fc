"""Paged attention: store the step's K/V in the cache, then attend over the cache.

Two backends with the same semantics: `triton` (engine/nano/kernels) and `torch` (the
references: SDPA over K/V gathered from the cache; the CPU path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.nano.kernels import reference as ref


@dataclass
class AttentionMetadata:
    """What one forward step needs to find K/V in the paged cache."""

    is_prefill: bool
    slot_mapping: torch.Tensor  # [T] cache slot of each new token (-1: padding, skipped)
    block_tables: torch.Tensor  # [N, max_blocks] int32
    context_lens: torch.Tensor  # [N] int32, tokens in the cache after this step's store
    cu_seqlens_q: torch.Tensor | None = None  # prefill: [N + 1] int32
    max_seqlen_q: int = 1
    num_splits: int = 1  # decode: context split of the Triton kernel
    # Host copies for the torch prefill path (None in decode steps, which stay sync-free).
    cu_seqlens_q_host: list[int] | None = None
    context_lens_host: list[int] | None = None


class Attention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, backend: str):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.backend = backend
        # [num_blocks, block_size, KVH, D] views into the engine's cache, set by the runner;
        # strided as the cache's kv_layout lays it out (engine/nano/kv_layout.py).
        self.k_cache = torch.empty(0)
        self.v_cache = torch.empty(0)
        # The Triton kernels' launch configurations (kernels/choose.py), set by the runner.
        self.kernels = None

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata,
        v_scale: torch.Tensor | None = None, v_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """q [T, H, D], k and v [T, KVH, D] -> [T, H, D]. With v_scale [T] (and v_bias
        [KVH * D]), the cache takes v * v_scale + v_bias: v from a projection of
        un-normalised rows (fuse_norm_linear), finished by the store, its only reader."""
        kc, vc = self.k_cache, self.v_cache
        if self.backend == "triton":
            from engine.nano.kernels.decode_attention import paged_decode_attention
            from engine.nano.kernels.prefill_attention import prefill_attention
            from engine.nano.kernels.store_kv import store_kv

            store_kv(k, v, kc, vc, meta.slot_mapping, v_scale, v_bias)
            if meta.is_prefill:
                return prefill_attention(
                    q, kc, vc, meta.block_tables, meta.cu_seqlens_q, meta.context_lens,
                    meta.max_seqlen_q, self.scale, config=self.kernels.prefill,
                )
            return paged_decode_attention(
                q, kc, vc, meta.block_tables, meta.context_lens, self.scale, meta.num_splits,
                config=self.kernels.decode,
            )
        if v_scale is not None:
            v = ref.scale_bias_ref(v, v_scale, v_bias)
        ref.store_kv_ref(k, v, kc, vc, meta.slot_mapping)
        if meta.is_prefill:
            return ref.prefill_attention_ref(
                q, kc, vc, meta.block_tables, meta.cu_seqlens_q_host, meta.context_lens_host,
                self.scale,
            )
        return ref.decode_attention_ref(
            q, kc, vc, meta.block_tables, meta.context_lens, self.scale
        )
