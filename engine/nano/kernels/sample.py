"""Temperature sampling and greedy picking in one pass over the logits, one program per row.

Gumbel-max: argmax(logits / T - log(E)), E ~ Exp(1), is a sample of softmax(logits / T), so
no softmax, no normalisation and no second pass are needed; a row with T = 0 takes the plain
argmax (the first maximum, as torch.argmax). The noise comes from Triton's Philox stream,
keyed by a per-step seed and the (row, token) offset.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


# A new seed every step: not specialised, or one step in 16 (a seed divisible by 16) would
# compile a second kernel, in the middle of a timed run.
@triton.jit(do_not_specialize=["seed"])
def _sample_kernel(logits_ptr, temp_ptr, out_ptr, stride, V, seed, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    t = tl.load(temp_ptr + row)
    greedy = t <= 0.0
    inv_t = 1.0 / tl.maximum(t, 1e-5)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK], tl.int32)
    base = logits_ptr + row.to(tl.int64) * stride
    for v0 in range(0, V, BLOCK):
        offs = v0 + tl.arange(0, BLOCK)
        mask = offs < V
        x = tl.load(base + offs, mask=mask, other=float("-inf")).to(tl.float32)
        u = tl.minimum(tl.maximum(tl.rand(seed, row * V + offs), 1e-10), 1.0 - 1e-7)
        score = tl.where(greedy, x, x * inv_t - tl.log(-tl.log(u)))
        score = tl.where(mask, score, float("-inf"))
        better = score > best
        best = tl.where(better, score, best)
        best_idx = tl.where(better, offs, best_idx)
    top = tl.max(best, axis=0)
    tl.store(out_ptr + row, tl.min(tl.where(best == top, best_idx, V), axis=0))


def sample(logits: torch.Tensor, temperatures: torch.Tensor, seed: int) -> torch.Tensor:
    """logits [N, V] (unit stride in V), temperatures [N] fp32 (0 = greedy) -> [N] int64."""
    n, v = logits.shape
    assert logits.stride(1) == 1
    out = torch.empty(n, dtype=torch.int32, device=logits.device)
    if n:
        launch(_sample_kernel, (n,), logits, temperatures, out, logits.stride(0), v, seed,
               BLOCK=2048, num_warps=8)
    return out.long()
