"""Rotary embedding (rotate-half layout) applied in place to q and k, one program per token.

One launch replaces the dozen elementwise kernels of the torch form (gathers, casts, cat,
neg, multiplies, adds), which at decode batch sizes cost launch latency, not bandwidth.
The rotation runs in fp32 on the loaded values and rounds once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


@triton.jit
def _rotate(base, offs_h, offs_d, n_heads, stride_h, cos, sin, HALF: tl.constexpr):
    mask = (offs_h[:, None] < n_heads) & (offs_d[None, :] < HALF)
    ptr = base + offs_h[:, None] * stride_h + offs_d[None, :]
    x1 = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(ptr + HALF, mask=mask, other=0.0).to(tl.float32)
    ty = base.dtype.element_ty
    tl.store(ptr, (x1 * cos - x2 * sin).to(ty), mask=mask)
    tl.store(ptr + HALF, (x2 * cos + x1 * sin).to(ty), mask=mask)


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, pos_ptr, cos_ptr, sin_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_c,
    NUM_Q: tl.constexpr, NUM_K: tl.constexpr, HALF: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t)
    offs_d = tl.arange(0, BLOCK_D)
    offs_h = tl.arange(0, BLOCK_H)
    dmask = offs_d < HALF
    # The tables hold cat(freqs, freqs): the first half of a row is the whole of it.
    cos = tl.load(cos_ptr + pos * stride_c + offs_d, mask=dmask, other=0.0)[None, :]
    sin = tl.load(sin_ptr + pos * stride_c + offs_d, mask=dmask, other=0.0)[None, :]
    _rotate(q_ptr + t * stride_qt, offs_h, offs_d, NUM_Q, stride_qh, cos, sin, HALF)
    _rotate(k_ptr + t * stride_kt, offs_h, offs_d, NUM_K, stride_kh, cos, sin, HALF)


def apply_rotary(
    positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, H, D], k [T, KVH, D] (views with unit stride in D, e.g. of a merged qkv
    output), rotated in place; cos, sin [max_positions, D] fp32. Returns (q, k)."""
    t, h, d = q.shape
    assert q.stride(2) == 1 and k.stride(2) == 1 and cos.stride(1) == 1
    if t:
        launch(
            _rotary_kernel, (t,),
            q, k, positions, cos, sin,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0),
            NUM_Q=h, NUM_K=k.shape[1], HALF=d // 2,
            BLOCK_H=triton.next_power_of_2(max(h, k.shape[1])),
            BLOCK_D=triton.next_power_of_2(d // 2), num_warps=4,
        )
    return q, k
