"""KV-cache store: token t's K and V rows go to cache slot slot_mapping[t] (-1: skip).

With a row scale (fuse_norm_linear: v comes from a GEMM on un-normalised rows), V is
stored as v * scale[t] + bias, computed in fp32: the store is the only reader of v, so the
projection's epilogue costs nothing here.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, kc_ptr, vc_ptr, slot_ptr, scale_ptr, bias_ptr,
    stride_k, stride_v,
    ROW: tl.constexpr, BLOCK: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    t = tl.program_id(0)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    if slot < 0:
        return
    offs = tl.arange(0, BLOCK)
    mask = offs < ROW
    k = tl.load(k_ptr + t * stride_k + offs, mask=mask)
    v = tl.load(v_ptr + t * stride_v + offs, mask=mask)
    if HAS_SCALE:
        v = v.to(tl.float32) * tl.load(scale_ptr + t)
        if HAS_BIAS:
            v += tl.load(bias_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(kc_ptr + slot * ROW + offs, k.to(kc_ptr.dtype.element_ty), mask=mask)
    tl.store(vc_ptr + slot * ROW + offs, v.to(vc_ptr.dtype.element_ty), mask=mask)


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    slot_mapping: torch.Tensor, v_scale: torch.Tensor | None = None,
    v_bias: torch.Tensor | None = None,
) -> None:
    """k, v: [T, KVH, D] with contiguous rows of KVH * D; caches contiguous
    [num_blocks, block_size, KVH, D]; v_scale [T] fp32 and v_bias [KVH * D], or None."""
    t = k.shape[0]
    row = k.shape[1] * k.shape[2]
    assert k.stride(1) == k.shape[2] and k.stride(2) == 1, "k rows must be contiguous"
    assert v.stride(1) == v.shape[2] and v.stride(2) == 1, "v rows must be contiguous"
    assert k_cache.is_contiguous() and v_cache.is_contiguous()
    assert v_bias is None or v_scale is not None, "a bias goes with a scale"
    if t == 0:
        return
    launch(
        _store_kv_kernel, (t,),
        k, v, k_cache, v_cache, slot_mapping, v if v_scale is None else v_scale,
        v if v_bias is None else v_bias, k.stride(0), v.stride(0),
        ROW=row, BLOCK=triton.next_power_of_2(row),
        HAS_SCALE=v_scale is not None, HAS_BIAS=v_bias is not None,
    )
