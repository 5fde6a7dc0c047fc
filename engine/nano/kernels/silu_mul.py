"""SiLU-and-multiply over a merged gate/up projection in one pass: out = silu(gate) * up.

Rounding follows the torch form: silu's result is rounded to the input dtype before the
multiply. With a row scale (fuse_norm_linear: the projection ran on un-normalised rows),
gate and up are first multiplied by their row's 1/rms, in fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.nano.kernels.launch import launch


@triton.jit
def _silu_mul_kernel(x_ptr, scale_ptr, out_ptr, stride_x, stride_o, N,
                     HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    gate = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + N + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_SCALE:
        s = tl.load(scale_ptr + row)
        gate = gate * s
        up = up * s
    ty = out_ptr.dtype.element_ty
    act = (gate / (1.0 + tl.exp(-gate))).to(ty).to(tl.float32)
    tl.store(out_ptr + row * stride_o + offs, (act * up).to(ty), mask=mask)


def silu_and_mul(x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, 2N] (gate, then up), scale [T] fp32 or None -> [T, N]."""
    t, two_n = x.shape
    n = two_n // 2
    assert x.stride(1) == 1
    out = torch.empty(t, n, dtype=x.dtype, device=x.device)
    block = 1024
    if t:
        launch(
            _silu_mul_kernel, (t, triton.cdiv(n, block)),
            x, x if scale is None else scale, out, x.stride(0), out.stride(0), n,
            HAS_SCALE=scale is not None, BLOCK=block, num_warps=4,
        )
    return out
