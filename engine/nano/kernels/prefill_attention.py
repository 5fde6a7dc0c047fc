"""Prefill attention over variable-length sequences with cached prefixes (paged KV).

Each sequence's new tokens (rows cu_seqlens_q[i]:cu_seqlens_q[i+1] of q) attend causally
over its whole context of context_lens[i] tokens, all read from the paged cache (the new
tokens' K/V are stored before this runs). The first context_lens[i] - n_new context tokens
are the prefix: earlier chunks of a chunked prefill, or prefix-cache hits.

Grid (query tile, sequence, head): flash attention with an online softmax; K/V tiles are
gathered token by token through the block table, so any block size works. Products run in
the input dtype with fp32 accumulation; under TRITON_INTERPRET=1 test in fp32/fp16 only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


# The block-table width changes from step to step: not specialised, so one compile serves all.
@triton.jit(do_not_specialize=["stride_bt"])
def _prefill_kernel(
    q_ptr, kc_ptr, vc_ptr, bt_ptr, cu_q_ptr, ctx_ptr, o_ptr,
    stride_qt, stride_qh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_bt, stride_ot, stride_oh,
    scale,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    mt = tl.program_id(0)
    seq = tl.program_id(1)
    h = tl.program_id(2)
    q_start = tl.load(cu_q_ptr + seq)
    q_len = tl.load(cu_q_ptr + seq + 1) - q_start
    if mt * BLOCK_M >= q_len:
        return
    ctx = tl.load(ctx_ptr + seq)
    prefix = ctx - q_len
    kvh = h // GROUP

    offs_m = mt * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mmask = offs_m < q_len
    dmask = offs_d < HEAD_DIM
    rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(q_ptr + rows[:, None] * stride_qt + h * stride_qh + offs_d[None, :],
                mask=mmask[:, None] & dmask[None, :], other=0.0)

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    q_pos = prefix + offs_m  # position of each query row in the context
    end = tl.minimum(ctx, prefix + (mt + 1) * BLOCK_M)  # causal: nothing past the last row
    bt_row = bt_ptr + seq.to(tl.int64) * stride_bt
    for n0 in range(0, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        nmask = offs_n < end
        blk = tl.load(bt_row + offs_n // BLOCK_SIZE, mask=nmask, other=0).to(tl.int64)
        within = offs_n % BLOCK_SIZE
        kv_mask = nmask[:, None] & dmask[None, :]
        k = tl.load(
            kc_ptr + blk[:, None] * stride_kb + within[:, None] * stride_ks + kvh * stride_kh
            + offs_d[None, :], mask=kv_mask, other=0.0,
        )
        v = tl.load(
            vc_ptr + blk[:, None] * stride_vb + within[:, None] * stride_vs + kvh * stride_vh
            + offs_d[None, :], mask=kv_mask, other=0.0,
        )
        scores = tl.dot(q, tl.trans(k)) * scale
        allowed = nmask[None, :] & (offs_n[None, :] <= q_pos[:, None])
        scores = tl.where(allowed, scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        p = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m - m_new)
        l_sum = l_sum * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new

    out = acc / l_sum[:, None]
    tl.store(o_ptr + rows[:, None] * stride_ot + h * stride_oh + offs_d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=mmask[:, None] & dmask[None, :])


@dataclass(frozen=True)
class PrefillConfig:
    """A launch configuration of the prefill kernel: query rows and context tokens a tile,
    warps and pipeline stages."""

    block_m: int = 64
    block_n_max: int = 64  # context tokens a tile at head dims up to 64; half that above
    num_warps: int = 4
    num_stages: int = 2

    def block_n(self, block_d: int) -> int:
        return self.block_n_max if block_d <= 64 else self.block_n_max // 2


def prefill_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    block_tables: torch.Tensor, cu_seqlens_q: torch.Tensor, context_lens: torch.Tensor,
    max_seqlen_q: int, scale: float, out: torch.Tensor | None = None,
    config: PrefillConfig = PrefillConfig(),
) -> torch.Tensor:
    """q [T, H, D]; caches [num_blocks, block_size, KVH, D] views (any kv_layout's strides);
    block_tables [N, max_blocks];
    cu_seqlens_q [N + 1]; context_lens [N]. Returns [T, H, D]."""
    t, h, d = q.shape
    _, block_size, kvh, _ = k_cache.shape
    n = context_lens.shape[0]
    assert q.stride(2) == 1 and k_cache.stride(3) == 1 and v_cache.stride(3) == 1
    if out is None:
        out = torch.empty_like(q)
    if t == 0:
        return out
    block_d = triton.next_power_of_2(d)
    block_n = config.block_n(block_d)
    grid = (triton.cdiv(max_seqlen_q, config.block_m), n, h)
    launch(
        _prefill_kernel, grid,
        q, k_cache, v_cache, block_tables, cu_seqlens_q, context_lens, out,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0), out.stride(0), out.stride(1),
        scale,
        GROUP=h // kvh, HEAD_DIM=d, BLOCK_SIZE=block_size,
        BLOCK_M=config.block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return out
