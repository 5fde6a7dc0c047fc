"""Sampler: greedy where temperature is 0, else temperature + top-k + top-p sampling.

On CUDA with Triton, a step without top-k/top-p runs the one-pass kernel of
kernels/sample.py (its noise seeded per step from the engine's seed); otherwise torch."""

from __future__ import annotations

import random

import torch
from torch import nn


class Sampler(nn.Module):
    def __init__(self, use_triton: bool = False, seed: int = 0):
        super().__init__()
        self.use_triton = use_triton
        self.seeds = random.Random(seed)

    def forward(
        self,
        logits: torch.Tensor,  # [N, V]
        temperatures: torch.Tensor,  # [N] fp32
        top_ks: torch.Tensor | None = None,  # [N] int, 0 = all
        top_ps: torch.Tensor | None = None,  # [N] fp32, 1 = all
        generator: torch.Generator | None = None,
        all_greedy: bool | None = None,  # the caller knows: spares the device a sync
    ) -> torch.Tensor:
        if self.use_triton and logits.is_cuda and top_ks is None and top_ps is None:
            from engine.nano.kernels.sample import sample

            return sample(logits, temperatures, self.seeds.getrandbits(31))
        logits = logits.float()
        greedy = logits.argmax(dim=-1)
        if all_greedy if all_greedy is not None else not bool((temperatures > 0).any()):
            return greedy
        logits = logits / temperatures.clamp_min(1e-5)[:, None]
        if top_ks is not None or top_ps is not None:
            logits = _top_k_top_p(logits, top_ks, top_ps)
        probs = torch.softmax(logits, dim=-1)
        # Gumbel-max in exponential form: argmax p / E, E ~ Exp(1), samples from p.
        noise = torch.empty_like(probs).exponential_(1, generator=generator)
        sampled = (probs / noise).argmax(dim=-1)
        return torch.where(temperatures > 0, sampled, greedy)


def _top_k_top_p(
    logits: torch.Tensor, top_ks: torch.Tensor | None, top_ps: torch.Tensor | None
) -> torch.Tensor:
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    drop = torch.zeros_like(sorted_logits, dtype=torch.bool)
    if top_ks is not None:
        k = torch.where(top_ks > 0, top_ks, vocab).clamp(max=vocab)
        drop |= torch.arange(vocab, device=logits.device)[None, :] >= k[:, None]
    if top_ps is not None:
        probs = torch.softmax(sorted_logits.masked_fill(drop, float("-inf")), dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the tokens ranked above
        drop |= before > top_ps[:, None]
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)
