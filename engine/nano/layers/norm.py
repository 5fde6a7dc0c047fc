"""RMSNorm, with the residual add fused in (Triton on CUDA, torch elsewhere)."""

from __future__ import annotations

import torch
from torch import nn

from engine.nano.kernels.reference import add_rms_ref, add_rmsnorm_ref


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, use_triton: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.eps = eps
        self.use_triton = use_triton

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (norm(x + residual), x + residual)."""
        if self.use_triton and x.is_cuda:
            from engine.nano.kernels.rmsnorm import add_rmsnorm

            return add_rmsnorm(x, residual, self.weight, self.eps)
        return add_rmsnorm_ref(x, residual, self.weight, self.eps)

    def add_rms(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x + residual, 1/rms of its rows): the norm whose weight is folded into
        the projection that follows (fuse_norm_linear), which runs on the sum itself."""
        if self.use_triton and x.is_cuda:
            from engine.nano.kernels.rmsnorm import add_rms

            return add_rms(x, residual, self.eps)
        return add_rms_ref(x, residual, self.eps)
