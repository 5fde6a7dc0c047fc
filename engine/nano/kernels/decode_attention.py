"""Paged decode attention (one query token per sequence), split over the context.

Grid (batch, kv_head, split): a program takes all query heads of one KV head (GQA), and
one of `num_splits` equal parts of the sequence's context, walking it BLOCK_N tokens at a
time through the block table. Parts start at multiples of BLOCK_N, so where BLOCK_N divides
the block size a tile lies in one cache block: one block-table entry a tile, not one a
token, and the tile's K (or V) is BLOCK_N rows at one stride (one contiguous run in the
`head` kv_layout). Each part writes its partial output and log-sum-exp; a second
kernel combines the parts. The split count is a launch parameter, not a function of the
lengths, so one launch can be captured in a CUDA graph and replayed for any lengths. With
one split (large batches fill the GPU without splitting) the first kernel writes the output
itself and the combine is skipped. decode_config picks the tile, pipeline stages and the
split rule's aim for a card, from the programs its SMs hold (DecodeConfig's defaults are the
H200's, where they were measured).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from engine.nano.kernels.card import Card
from engine.nano.kernels.launch import launch


# NUM_SPLITS and the block-table width are runtime values (Triton would otherwise compile a
# kernel for each of 1, multiples of 16 and the rest) so that the graphs of every batch-size
# bucket, and every eager step, share one compiled kernel.
@triton.jit(do_not_specialize=["NUM_SPLITS", "stride_bt"])
def _decode_split_kernel(
    q_ptr, kc_ptr, vc_ptr, bt_ptr, ctx_ptr, o_ptr, lse_ptr,
    stride_qb, stride_qh, stride_ob, stride_oh,
    stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh,
    stride_bt,
    scale, NUM_SPLITS,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    DIRECT: tl.constexpr, TILE_IN_BLOCK: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    s = tl.program_id(2)
    ctx = tl.load(ctx_ptr + b)
    part = tl.cdiv(tl.cdiv(ctx, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = s * part
    end = tl.minimum(start + part, ctx)

    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    hmask = offs_h < GROUP
    dmask = offs_d < HEAD_DIM
    heads = kvh * GROUP + offs_h
    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
        mask=hmask[:, None] & dmask[None, :], other=0.0,
    )

    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    bt_row = bt_ptr + b.to(tl.int64) * stride_bt
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        nmask = offs_n < end
        kv_mask = nmask[:, None] & dmask[None, :]
        if TILE_IN_BLOCK:  # n0 is a multiple of BLOCK_N: the tile lies in one cache block
            blk = tl.load(bt_row + n0 // BLOCK_SIZE).to(tl.int64)
            within = offs_n % BLOCK_SIZE
            k_rows = kc_ptr + blk * stride_kb + within[:, None] * stride_ks
            v_rows = vc_ptr + blk * stride_vb + within[:, None] * stride_vs
        else:
            blk = tl.load(bt_row + offs_n // BLOCK_SIZE, mask=nmask, other=0).to(tl.int64)
            within = offs_n % BLOCK_SIZE
            k_rows = kc_ptr + blk[:, None] * stride_kb + within[:, None] * stride_ks
            v_rows = vc_ptr + blk[:, None] * stride_vb + within[:, None] * stride_vs
        k = tl.load(k_rows + kvh * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(v_rows + kvh * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
        scores = tl.dot(q, tl.trans(k)) * scale  # [BLOCK_H, BLOCK_N], fp32
        scores = tl.where(nmask[None, :], scores, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        p = tl.exp(scores - m_new[:, None])
        alpha = tl.exp(m - m_new)
        l_sum = l_sum * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new

    empty = l_sum == 0.0
    out = acc / tl.where(empty, 1.0, l_sum)[:, None]
    omask = hmask[:, None] & dmask[None, :]
    if DIRECT:  # the only part: o_ptr is the output itself
        tl.store(o_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                 out.to(o_ptr.dtype.element_ty), mask=omask)
    else:
        lse = tl.where(empty, float("-inf"), m + tl.log(tl.where(empty, 1.0, l_sum)))
        row = (b * tl.num_programs(1) * GROUP + heads) * NUM_SPLITS + s  # [B, H, S] flattened
        tl.store(o_ptr + row[:, None] * HEAD_DIM + offs_d[None, :], out, mask=omask)
        tl.store(lse_ptr + row, lse, mask=hmask)


@triton.jit(do_not_specialize=["NUM_SPLITS"])
def _decode_combine_kernel(
    o_part_ptr, lse_ptr, out_ptr, stride_ob, stride_oh, NUM_HEADS, NUM_SPLITS,
    HEAD_DIM: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    smask = offs_s < NUM_SPLITS
    dmask = offs_d < HEAD_DIM
    row = (b * NUM_HEADS + h) * NUM_SPLITS + offs_s
    lse = tl.load(lse_ptr + row, mask=smask, other=float("-inf"))
    mx = tl.max(lse, axis=0)
    mx = tl.where(mx == float("-inf"), 0.0, mx)
    w = tl.exp(lse - mx)  # 0 for empty parts
    parts = tl.load(o_part_ptr + row[:, None] * HEAD_DIM + offs_d[None, :],
                    mask=smask[:, None] & dmask[None, :], other=0.0)
    total = tl.sum(w, axis=0)
    o = tl.sum(parts * w[:, None], axis=0) / tl.where(total == 0.0, 1.0, total)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_d,
             o.to(out_ptr.dtype.element_ty), mask=dmask)


MAX_SPLITS = 32
# The split rule's aim on an H200, where it was measured (bench/decode_attention_tune.py):
# about four programs an SM, as many as its registers hold at head dim 128.
PROGRAMS_PER_SM = 4
# Fewer pipeline stages are taken where more would leave fewer than this many programs an SM:
# with two, one program's loads overlap the other's math.
MIN_PROGRAMS_PER_SM = 2


@dataclass(frozen=True)
class DecodeConfig:
    """A launch configuration of the split kernel. The defaults are an H200's: the tile,
    warps and stages fastest at batch 256, 128 and 64 there (bench/decode_attention_tune.py),
    and its 132 SMs at four programs each."""

    block_n: int = 64  # context tokens a step of the loop
    num_warps: int = 4
    num_stages: int = 3
    slots: int = PROGRAMS_PER_SM * 132  # programs the split rule aims to give the card

    def num_splits(self, batch: int, num_kv_heads: int, max_context: int) -> int:
        """One part when the batch alone fills three quarters of the slots; else enough parts
        to fill them, each part at least 256 tokens, at most 32."""
        programs = max(1, batch * num_kv_heads)
        if 4 * programs >= 3 * self.slots:
            return 1
        want = triton.cdiv(self.slots, programs)
        return max(1, min(want, triton.cdiv(max_context, 256), MAX_SPLITS))


def block_h(group: int) -> int:
    """Query-head rows of a program: its KV head's group, padded for the dots."""
    return max(16, triton.next_power_of_2(group))


def smem_bytes(block_n: int, block_d: int, block_h: int, num_stages: int, itemsize: int) -> int:
    """Shared memory of one program of the split kernel as Triton 3.9 lays it out: the K and
    V tiles (one of them buffered without pipelining), the q and p operands of the dots
    (block_h rows each), and from three stages on the next tile's block-table entries.
    tests/engine/nano/test_nano_kernels_aot.py checks it against the compiler on every card."""
    tiles = (2 if num_stages >= 2 else 1) * block_n * block_d * itemsize
    operands = block_h * (block_n + block_d) * itemsize
    return tiles + operands + (4 * block_n if num_stages >= 3 else 0)


# The H200's fastest tile, warps and stages for each kv_layout (engine/nano/kv_layout.py), as
# bench/decode_attention_tune.py measures them; the base decode_config fits to other cards.
# head: the token layout's until that bench has measured the head layout on an H200.
MEASURED: dict[str, DecodeConfig] = {"token": DecodeConfig(), "head": DecodeConfig()}


def decode_config(card: Card, head_dim: int, group: int, itemsize: int,
                  kv_layout: str = "token") -> DecodeConfig:
    """The H200's tile and warps for the layout on any card; its three stages where they leave
    at least two programs an SM, else the most stages that do (or one); the split rule aims at the
    programs that fit an SM, at most four. A 3090 (sm_86, 82 SMs, 100 KB an SM) at head dim
    128: three stages, about 39 KB a program, two programs an SM, 164 slots."""
    base = MEASURED[kv_layout]
    block_d = triton.next_power_of_2(head_dim)
    for stages in range(base.num_stages, 0, -1):
        smem = smem_bytes(base.block_n, block_d, block_h(group), stages, itemsize)
        fit = card.programs_per_sm(smem, base.num_warps)
        if fit >= MIN_PROGRAMS_PER_SM:
            break
    if fit < 1:
        raise ValueError(f"nano's decode attention at head dim {head_dim} does not fit the "
                         f"shared memory of {card.name} ({card.smem_per_block} bytes a program)")
    return replace(base, num_stages=stages,
                   slots=min(fit, PROGRAMS_PER_SM) * card.num_sms)


def paged_decode_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float, num_splits: int,
    out: torch.Tensor | None = None, config: DecodeConfig = DecodeConfig(),
) -> torch.Tensor:
    """q [B, H, D]; caches [num_blocks, block_size, KVH, D] views (any kv_layout's
    strides); block_tables [B, max_blocks];
    context_lens [B] (0 for padding rows: their output is 0). Returns [B, H, D]."""
    b, h, d = q.shape
    _, block_size, kvh, _ = k_cache.shape
    group = h // kvh
    assert q.stride(2) == 1 and k_cache.stride(3) == 1 and v_cache.stride(3) == 1
    assert 1 <= num_splits <= MAX_SPLITS
    if out is None:
        out = torch.empty_like(q)
    if b == 0:
        return out
    direct = num_splits == 1
    if direct:
        o_part = lse = out
    else:
        o_part = torch.empty(b, h, num_splits, d, dtype=torch.float32, device=q.device)
        lse = torch.empty(b, h, num_splits, dtype=torch.float32, device=q.device)
    block_d = triton.next_power_of_2(d)
    launch(
        _decode_split_kernel, (b, kvh, num_splits),
        q, k_cache, v_cache, block_tables, context_lens, o_part, lse,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0),
        scale, num_splits,
        GROUP=group, HEAD_DIM=d, BLOCK_SIZE=block_size,
        BLOCK_H=block_h(group), BLOCK_D=block_d,
        BLOCK_N=config.block_n, DIRECT=direct, TILE_IN_BLOCK=block_size % config.block_n == 0,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    if direct:
        return out
    launch(
        _decode_combine_kernel, (b, h),
        o_part, lse, out, out.stride(0), out.stride(1), h, num_splits,
        HEAD_DIM=d, BLOCK_S=MAX_SPLITS, BLOCK_D=block_d,
        num_warps=1 if d <= 64 else 2,
    )
    return out
