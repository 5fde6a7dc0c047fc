"""Fused residual add + RMSNorm: (rmsnorm(x + r) * w, x + r), one program per row.

Rounding follows transformers: the sum is rounded to the input dtype, the norm runs in
fp32 on that rounded sum, its result is rounded before the weight multiplies it.

add_rms is the same pass for a norm whose weight is folded into the next projection
(fuse_norm_linear): it writes the sum and each row's 1/rms, never the normalised row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


@triton.jit
def _add_rmsnorm_kernel(
    x_ptr, r_ptr, w_ptr, out_ptr, res_out_ptr, scale_ptr,
    stride_x, stride_r, stride_o, stride_ro,
    N, eps,
    HAS_RESIDUAL: tl.constexpr, SCALE_ONLY: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(r_ptr + row * stride_r + offs, mask=mask, other=0.0).to(tl.float32)
        h = (x + r).to(res_out_ptr.dtype.element_ty)
        tl.store(res_out_ptr + row * stride_ro + offs, h, mask=mask)
        x = h.to(tl.float32)
    var = tl.sum(x * x, axis=0) / N
    inv_rms = tl.rsqrt(var + eps)
    if SCALE_ONLY:
        tl.store(scale_ptr + row, inv_rms)
    else:
        y = (x * inv_rms).to(out_ptr.dtype.element_ty).to(tl.float32)
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * stride_o + offs, (y * w).to(out_ptr.dtype.element_ty),
                 mask=mask)


def _launch(x, residual, weight, eps, scale_only: bool):
    shape = x.shape
    n = shape[-1]
    x2 = x.reshape(-1, n)
    assert x2.stride(-1) == 1
    rows = x2.shape[0]
    out = x2 if scale_only else torch.empty_like(x2)
    scale = torch.empty(rows, dtype=torch.float32, device=x.device) if scale_only else out
    if residual is not None:
        r2 = residual.reshape(-1, n)
        assert r2.stride(-1) == 1
        res_out = torch.empty_like(x2)
    else:
        r2 = res_out = x2
    if rows:
        launch(
            _add_rmsnorm_kernel, (rows,),
            x2, r2, x2 if weight is None else weight, out, res_out, scale,
            x2.stride(0), r2.stride(0), out.stride(0), res_out.stride(0),
            n, eps,
            HAS_RESIDUAL=residual is not None, SCALE_ONLY=scale_only,
            BLOCK=triton.next_power_of_2(n), num_warps=4 if n <= 2048 else 8,
        )
    h = res_out.view(shape) if residual is not None else x
    return out.view(shape), h, scale


def add_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual: [..., N] with unit stride in the last dim. Returns (normed, x + residual);
    without residual, the second is x itself."""
    out, h, _ = _launch(x, residual, weight, eps, scale_only=False)
    return out, h


def add_rms(
    x: torch.Tensor, residual: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual: [T, N]. Returns (x + residual, 1/rms of its rows [T] fp32); without
    residual, the first is x itself."""
    _, h, scale = _launch(x, residual, None, eps, scale_only=True)
    return h, scale
