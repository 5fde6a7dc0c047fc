"""SiLU-and-multiply over a merged gate/up projection (Triton on CUDA, torch elsewhere)."""

from __future__ import annotations

import torch
from torch import nn

from engine.nano.kernels.reference import silu_and_mul_ref


class SiluAndMul(nn.Module):
    def __init__(self, use_triton: bool = False):
        super().__init__()
        self.use_triton = use_triton

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """scale [T]: x's rows' factor, where the projection ran on un-normalised rows."""
        if self.use_triton and x.is_cuda:
            from engine.nano.kernels.silu_mul import silu_and_mul

            return silu_and_mul(x, scale)
        return silu_and_mul_ref(x, scale)
