"""Torch references of the kernels; also the `torch` attention backend and the CPU path.

Shapes: q [T, H, D]; k, v [T, KVH, D]; caches [num_blocks, block_size, KVH, D] (views, strided
as their kv_layout lays them out: engine/nano/kv_layout.py);
block_tables [N, max_blocks] int32; context_lens [N] int32 (tokens in the cache, new ones
included); cu_seqlens_q [N + 1] int32 (prefill: where each sequence's new tokens start in q).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def store_kv_ref(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write token t's K/V to slot slot_mapping[t] (block * block_size + offset); -1 skips.
    Indexes (block, offset) of the caches' views, so any kv_layout's strides work."""
    keep = slot_mapping >= 0
    slots = slot_mapping.long()
    if not bool(keep.all()):
        slots, k, v = slots[keep], k[keep], v[keep]
    bs = k_cache.shape[1]
    blocks, offsets = slots // bs, slots % bs
    k_cache[blocks, offsets] = k.to(k_cache.dtype)
    v_cache[blocks, offsets] = v.to(v_cache.dtype)


def add_rmsnorm_ref(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rmsnorm(x + residual), x + residual), as transformers computes them: the sum in the
    input dtype, the norm in fp32, the weight applied in the input dtype."""
    h = x if residual is None else x + residual
    hf = h.float()
    y = hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * y.to(x.dtype), h


def add_rms_ref(
    x: torch.Tensor, residual: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + residual, its rows' 1/rms in fp32): add_rmsnorm_ref's sum and scale, for a norm
    whose weight is folded into the projection that follows (fuse_norm_linear)."""
    h = x if residual is None else x + residual
    hf = h.float()
    return h, torch.rsqrt(hf.pow(2).mean(-1) + eps)


def scale_bias_ref(
    x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """x [T, heads, D] * scale [T] + bias [heads * D], in fp32, rounded once: a projection's
    output as it would be had the GEMM run on the normalised rows (fuse_norm_linear)."""
    y = x.float() * scale[:, None, None]
    if bias is not None:
        y = y + bias.float().view(x.shape[1:])
    return y.to(x.dtype)


@dataclass
class QKPrologue:
    """What turns q and k of a GEMM on un-normalised rows into the model's q and k
    (fuse_norm_linear): each row times its 1/rms, plus the projection's bias, then Qwen3's
    per-head RMSNorm. Applied before rotary, by the kernel that rotates."""

    scale: torch.Tensor  # [T] fp32
    q_bias: torch.Tensor | None = None  # [H * D]
    k_bias: torch.Tensor | None = None  # [KVH * D]
    q_norm: torch.Tensor | None = None  # [D] weights, with k_norm, or neither
    k_norm: torch.Tensor | None = None
    eps: float = 0.0


def qk_prologue_ref(
    q: torch.Tensor, k: torch.Tensor, pro: QKPrologue
) -> tuple[torch.Tensor, torch.Tensor]:
    q = scale_bias_ref(q, pro.scale, pro.q_bias)
    k = scale_bias_ref(k, pro.scale, pro.k_bias)
    if pro.q_norm is not None:
        q = add_rmsnorm_ref(q, None, pro.q_norm, pro.eps)[0]
        k = add_rmsnorm_ref(k, None, pro.k_norm, pro.eps)[0]
    return q, k


def rotary_ref(
    positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half rotary embedding as transformers computes it (in the input dtype);
    cos, sin [max_positions, D] fp32. Returns rotated copies."""
    c = cos[positions].to(q.dtype)[:, None, :]
    s = sin[positions].to(q.dtype)[:, None, :]
    return q * c + _rotate_half(q) * s, k * c + _rotate_half(k) * s


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def silu_and_mul_ref(x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, 2N] (gate, then up) -> silu(gate) * up; with scale [T] (fuse_norm_linear), of
    x's rows times their scale."""
    if scale is not None:
        x = (x.float() * scale[:, None]).to(x.dtype)
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def _gather(cache: torch.Tensor, blocks: torch.Tensor, n: int) -> torch.Tensor:
    return cache[blocks.long()].reshape(-1, *cache.shape[2:])[:n]


def prefill_attention_ref(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    block_tables: torch.Tensor, cu_seqlens_q: list[int], context_lens: list[int], scale: float,
) -> torch.Tensor:
    """Causal attention of each sequence's new tokens over its whole cached context (the
    new tokens' K/V already stored). cu_seqlens_q and context_lens are host lists here."""
    out = torch.empty_like(q)
    bs = k_cache.shape[1]
    group = q.shape[1] // k_cache.shape[2]
    for i, ctx in enumerate(context_lens):
        qs, qe = cu_seqlens_q[i], cu_seqlens_q[i + 1]
        n_q = qe - qs
        blocks = block_tables[i, : (ctx + bs - 1) // bs]
        k = _gather(k_cache, blocks, ctx).transpose(0, 1).repeat_interleave(group, 0)
        v = _gather(v_cache, blocks, ctx).transpose(0, 1).repeat_interleave(group, 0)
        qq = q[qs:qe].transpose(0, 1)
        if n_q == ctx:
            o = F.scaled_dot_product_attention(qq, k, v, is_causal=True, scale=scale)
        else:
            rows = torch.arange(n_q, device=q.device)[:, None] + (ctx - n_q)
            mask = torch.arange(ctx, device=q.device)[None, :] <= rows
            o = F.scaled_dot_product_attention(qq, k, v, attn_mask=mask, scale=scale)
        out[qs:qe] = o.transpose(0, 1)
    return out


def decode_attention_ref(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float,
) -> torch.Tensor:
    """One query token per sequence over its cached context; tensors only (no host sync),
    so it can be captured in a CUDA graph. A row with context 0 (graph padding) gives
    garbage, not NaN."""
    b, h, d = q.shape
    kvh = k_cache.shape[2]
    k = k_cache[block_tables.long()].reshape(b, -1, kvh, d)  # [B, L, KVH, D]
    v = v_cache[block_tables.long()].reshape(b, -1, kvh, d)
    pos = torch.arange(k.shape[1], device=q.device)
    mask = (pos[None, :] < context_lens[:, None]) | (pos[None, :] == 0)
    k = k.transpose(1, 2).repeat_interleave(h // kvh, 1)  # [B, H, L, D]
    v = v.transpose(1, 2).repeat_interleave(h // kvh, 1)
    o = F.scaled_dot_product_attention(
        q[:, :, None, :], k, v, attn_mask=mask[:, None, None, :], scale=scale
    )
    return o[:, :, 0, :]
