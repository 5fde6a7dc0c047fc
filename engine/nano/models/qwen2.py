"""Qwen2 (and, with q/k norm and optional attention bias, Qwen3) decoder.

Module names follow the HF checkpoint, except the merged projections: qkv_proj holds
q_proj/k_proj/v_proj and gate_up_proj holds gate_proj/up_proj (see packed_modules).

fuse_norm_linear (fold_norm_weights): the RMSNorm before qkv_proj and before gate_up_proj
is folded into the projection. rmsnorm(h) * w @ W.T = s * (h @ (W * w).T), s = 1/rms(h)
per row: the weight goes into W at load, the GEMM runs on the residual sum h itself, and
the kernels that read its output anyway apply s (and the bias after it): rotary for q and
k (with Qwen3's q/k norm), the KV store for v, SiluAndMul for gate and up. The normalised
activation is never written to memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.nano.config import ModelConfig
from engine.nano.kernels.reference import QKPrologue
from engine.nano.layers.activation import SiluAndMul
from engine.nano.layers.attention import Attention, AttentionMetadata
from engine.nano.layers.embed_head import Embedding, LMHead
from engine.nano.layers.linear import Linear, MergedLinear
from engine.nano.layers.norm import RMSNorm
from engine.nano.layers.rotary import RotaryEmbedding


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: RotaryEmbedding, backend: str, triton: bool):
        super().__init__()
        self.h, self.kvh, self.d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.qkv_proj = MergedLinear(
            cfg.hidden_size, [self.h * self.d, self.kvh * self.d, self.kvh * self.d], cfg.qkv_bias
        )
        self.o_proj = Linear(self.h * self.d, cfg.hidden_size, cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.d, cfg.rms_norm_eps, triton)
            self.k_norm = RMSNorm(self.d, cfg.rms_norm_eps, triton)
        self.qk_norm = cfg.qk_norm
        self.rotary = rotary
        self.attn = Attention(self.h, self.kvh, self.d, backend)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, meta: AttentionMetadata,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: normalised rows; or, with scale (their 1/rms, fuse_norm_linear), the rows
        before the norm, whose weight is in qkv_proj's."""
        t = x.shape[0]
        sizes = [self.h * self.d, self.kvh * self.d, self.kvh * self.d]
        # Folded: the bias comes after the row scale (the prologue and the store add it).
        qkv = self.qkv_proj(x) if scale is None else F.linear(x, self.qkv_proj.weight)
        q, k, v = qkv.split(sizes, dim=-1)
        q = q.view(t, self.h, self.d)
        k = k.view(t, self.kvh, self.d)
        v = v.view(t, self.kvh, self.d)
        if scale is None:
            if self.qk_norm:
                q = self.q_norm(q)[0]
                k = self.k_norm(k)[0]
            q, k = self.rotary(positions, q, k)
            o = self.attn(q, k, v, meta)
        else:
            bias = self.qkv_proj.bias
            qb, kb, vb = (None,) * 3 if bias is None else bias.split(sizes)
            norms = ((self.q_norm.weight, self.k_norm.weight, self.q_norm.eps)
                     if self.qk_norm else (None, None, 0.0))
            q, k = self.rotary(positions, q, k, QKPrologue(scale, qb, kb, *norms))
            o = self.attn(q, k, v, meta, scale, vb)
        return self.o_proj(o.reshape(t, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, triton: bool):
        super().__init__()
        self.gate_up_proj = MergedLinear(cfg.hidden_size, [cfg.intermediate_size] * 2)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size)
        self.act = SiluAndMul(triton)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """scale: as SelfAttention's (gate_up_proj has no bias)."""
        return self.down_proj(self.act(self.gate_up_proj(x), scale))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: RotaryEmbedding, backend: str, triton: bool):
        super().__init__()
        self.self_attn = SelfAttention(cfg, rotary, backend, triton)
        self.mlp = MLP(cfg, triton)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, triton)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, triton)
        self.norms_folded = False  # set by fold_norm_weights

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None,
        meta: AttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norms_folded:
            h, scale = self.input_layernorm.add_rms(x, residual)
            x = self.self_attn(positions, h, meta, scale)
            h, scale = self.post_attention_layernorm.add_rms(x, h)
            return self.mlp(h, scale), h
        x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, meta)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class Qwen2Model(nn.Module):
    def __init__(self, cfg: ModelConfig, max_positions: int, backend: str, triton: bool):
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size)
        rotary = RotaryEmbedding(cfg.head_dim, max_positions, cfg.rope_theta, triton)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, rotary, backend, triton) for _ in range(cfg.num_hidden_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, triton)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        residual = None
        for layer in self.layers:
            x, residual = layer(positions, x, residual, meta)
        return self.norm(x, residual)[0]


class Qwen2ForCausalLM(nn.Module):
    # checkpoint module name -> (our module name, shard index)
    packed_modules = {
        "q_proj": ("qkv_proj", 0),
        "k_proj": ("qkv_proj", 1),
        "v_proj": ("qkv_proj", 2),
        "gate_proj": ("gate_up_proj", 0),
        "up_proj": ("gate_up_proj", 1),
    }

    def __init__(
        self, cfg: ModelConfig, max_positions: int, backend: str = "torch", triton: bool = False
    ):
        super().__init__()
        self.config = cfg
        self.model = Qwen2Model(cfg, max_positions, backend, triton)
        tied = self.model.embed_tokens if cfg.tie_word_embeddings else None
        self.lm_head = LMHead(cfg.vocab_size, cfg.hidden_size, tied)

    def forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata
    ) -> torch.Tensor:
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    @torch.no_grad()
    def fold_norm_weights(self) -> None:
        """fuse_norm_linear, after loading: W' = W * w (w: the norm weight before W) for
        qkv_proj and gate_up_proj, the product in fp32 rounded once; from now on the layers
        run the folded path. The final norm stays: lm_head may be the embedding's weight.

        Rounding, in bf16 (a rounding errs by up to 2^-9 of the value): transformers, and
        the unfused path, round the normalised row n = h * s, then n * w, and the GEMM
        multiplies that by W. The folded path cannot round n: it rounds W * w instead and
        reads h itself (stored rounded: it is the residual stream). Both round the GEMM's
        output once (folded: before s, which then multiplies in fp32, the same relative
        error). So every term of the GEMM carries at most two roundings on either path,
        in different places: the two paths differ by about as much as either differs from
        fp32, which is bf16's own error, not more (tests/engine/nano/gpu_check_fused.py
        measures both spreads on a Qwen2-1.5B)."""
        for layer in self.model.layers:
            if layer.norms_folded:
                continue
            for norm, proj in ((layer.input_layernorm, layer.self_attn.qkv_proj),
                               (layer.post_attention_layernorm, layer.mlp.gate_up_proj)):
                proj.weight.copy_(proj.weight.float() * norm.weight.float())
            layer.norms_folded = True

    def attention_layers(self) -> list[Attention]:
        return [layer.self_attn.attn for layer in self.model.layers]
