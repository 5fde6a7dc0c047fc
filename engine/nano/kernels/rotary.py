"""Rotary embedding (rotate-half layout) applied in place to q and k, one program per token.

One launch replaces the dozen elementwise kernels of the torch form (gathers, casts, cat,
neg, multiplies, adds), which at decode batch sizes cost launch latency, not bandwidth.
The rotation runs in fp32 on the loaded values and rounds once.

With a prologue (fuse_norm_linear: q and k come from a GEMM on un-normalised rows), the
kernel first makes them what the unfused model has: times the row's 1/rms, plus the
projection's bias, then (Qwen3) the per-head RMSNorm, which here reads the scaled values.
It cannot run on the raw ones: rmsnorm(s * y) = y / sqrt(mean(y^2) + eps / s^2), so
dropping s would change eps's weight. The norm's result is rounded before its weight
multiplies it and again after, as the unfused RMSNorm kernel stores it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch
from engine.nano.kernels.reference import QKPrologue


@triton.jit
def _rounded(x, ty):
    return x.to(ty).to(tl.float32)


@triton.jit
def _rotate(base, offs_h, offs_d, n_heads, stride_h, cos, sin, scale_ptr, bias_ptr, norm_ptr,
            eps, HALF: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
            HAS_NORM: tl.constexpr):
    dmask = offs_d[None, :] < HALF
    mask = (offs_h[:, None] < n_heads) & dmask
    ptr = base + offs_h[:, None] * stride_h + offs_d[None, :]
    x1 = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(ptr + HALF, mask=mask, other=0.0).to(tl.float32)
    ty = base.dtype.element_ty
    if HAS_SCALE:
        s = tl.load(scale_ptr)
        x1 = x1 * s
        x2 = x2 * s
    if HAS_BIAS:
        b = bias_ptr + offs_h[:, None] * (2 * HALF) + offs_d[None, :]
        x1 += tl.load(b, mask=mask, other=0.0).to(tl.float32)
        x2 += tl.load(b + HALF, mask=mask, other=0.0).to(tl.float32)
    if HAS_NORM:
        sq = tl.sum(x1 * x1, axis=1) + tl.sum(x2 * x2, axis=1)
        inv_rms = tl.rsqrt(sq / (2 * HALF) + eps)[:, None]
        w = norm_ptr + offs_d[None, :]
        w1 = tl.load(w, mask=dmask, other=0.0).to(tl.float32)
        w2 = tl.load(w + HALF, mask=dmask, other=0.0).to(tl.float32)
        x1 = _rounded(_rounded(x1 * inv_rms, ty) * w1, ty)
        x2 = _rounded(_rounded(x2 * inv_rms, ty) * w2, ty)
    tl.store(ptr, (x1 * cos - x2 * sin).to(ty), mask=mask)
    tl.store(ptr + HALF, (x2 * cos + x1 * sin).to(ty), mask=mask)


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, pos_ptr, cos_ptr, sin_ptr, scale_ptr, qb_ptr, kb_ptr, qn_ptr, kn_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_c, eps,
    NUM_Q: tl.constexpr, NUM_K: tl.constexpr, HALF: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_NORM: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t)
    offs_d = tl.arange(0, BLOCK_D)
    offs_h = tl.arange(0, BLOCK_H)
    dmask = offs_d < HALF
    # The tables hold cat(freqs, freqs): the first half of a row is the whole of it.
    cos = tl.load(cos_ptr + pos * stride_c + offs_d, mask=dmask, other=0.0)[None, :]
    sin = tl.load(sin_ptr + pos * stride_c + offs_d, mask=dmask, other=0.0)[None, :]
    _rotate(q_ptr + t * stride_qt, offs_h, offs_d, NUM_Q, stride_qh, cos, sin, scale_ptr + t,
            qb_ptr, qn_ptr, eps, HALF, HAS_SCALE, HAS_BIAS, HAS_NORM)
    _rotate(k_ptr + t * stride_kt, offs_h, offs_d, NUM_K, stride_kh, cos, sin, scale_ptr + t,
            kb_ptr, kn_ptr, eps, HALF, HAS_SCALE, HAS_BIAS, HAS_NORM)


def apply_rotary(
    positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
    sin: torch.Tensor, prologue: QKPrologue | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, H, D], k [T, KVH, D] (views with unit stride in D, e.g. of a merged qkv
    output), rotated in place, after the prologue where one is given; cos, sin
    [max_positions, D] fp32. Returns (q, k)."""
    t, h, d = q.shape
    assert q.stride(2) == 1 and k.stride(2) == 1 and cos.stride(1) == 1
    pro = prologue or QKPrologue(scale=cos)  # placeholders, read by no flag below
    has_bias = prologue is not None and pro.q_bias is not None
    has_norm = prologue is not None and pro.q_norm is not None
    if t:
        launch(
            _rotary_kernel, (t,),
            q, k, positions, cos, sin, pro.scale,
            pro.q_bias if has_bias else q, pro.k_bias if has_bias else k,
            pro.q_norm if has_norm else q, pro.k_norm if has_norm else k,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0), pro.eps,
            NUM_Q=h, NUM_K=k.shape[1], HALF=d // 2,
            BLOCK_H=triton.next_power_of_2(max(h, k.shape[1])),
            BLOCK_D=triton.next_power_of_2(d // 2),
            HAS_SCALE=prologue is not None, HAS_BIAS=has_bias, HAS_NORM=has_norm, num_warps=4,
        )
    return q, k
