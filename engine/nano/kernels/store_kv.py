"""KV-cache store: token t's K and V rows go to cache slot slot_mapping[t] (-1: skip).

The caches are addressed through their strides, so any kv_layout (engine/nano/kv_layout.py)
works: slot = block * block_size + offset, and head h of that token lies at
block * stride_b + offset * stride_s + h * stride_h.

With a row scale (fuse_norm_linear: v comes from a GEMM on un-normalised rows), V is
stored as v * scale[t] + bias, computed in fp32: the store is the only reader of v, so the
projection's epilogue costs nothing here."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, kc_ptr, vc_ptr, slot_ptr, scale_ptr, bias_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh,
    stride_cb, stride_cs, stride_ch,
    NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    t = tl.program_id(0)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot < 0:
        return
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h[:, None] < NUM_KV_HEADS) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(k_ptr + t * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :],
                mask=mask)
    v = tl.load(v_ptr + t * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :],
                mask=mask)
    if HAS_SCALE:
        v = v.to(tl.float32) * tl.load(scale_ptr + t)
        if HAS_BIAS:
            v += tl.load(bias_ptr + offs_h[:, None] * HEAD_DIM + offs_d[None, :], mask=mask,
                         other=0.0).to(tl.float32)
    dst = ((slot // BLOCK_SIZE) * stride_cb + (slot % BLOCK_SIZE) * stride_cs
           + offs_h[:, None] * stride_ch + offs_d[None, :])
    tl.store(kc_ptr + dst, k.to(kc_ptr.dtype.element_ty), mask=mask)
    tl.store(vc_ptr + dst, v.to(vc_ptr.dtype.element_ty), mask=mask)


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    slot_mapping: torch.Tensor, v_scale: torch.Tensor | None = None,
    v_bias: torch.Tensor | None = None,
) -> None:
    """k, v: [T, KVH, D] with unit stride in D; caches [num_blocks, block_size, KVH, D]
    views, unit stride in D, K's and V's strides alike; v_scale [T] fp32 and v_bias
    [KVH * D], or None."""
    t, kvh, d = k.shape
    assert k.stride(2) == 1 and v.stride(2) == 1, "k and v need unit stride in D"
    assert k_cache.stride() == v_cache.stride() and k_cache.stride(3) == 1
    assert v_bias is None or v_scale is not None, "a bias goes with a scale"
    if t == 0:
        return
    launch(
        _store_kv_kernel, (t,),
        k, v, k_cache, v_cache, slot_mapping, v if v_scale is None else v_scale,
        v if v_bias is None else v_bias,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        NUM_KV_HEADS=kvh, HEAD_DIM=d, BLOCK_SIZE=k_cache.shape[1],
        BLOCK_H=triton.next_power_of_2(kvh), BLOCK_D=triton.next_power_of_2(d),
        HAS_SCALE=v_scale is not None, HAS_BIAS=v_bias is not None,
    )
