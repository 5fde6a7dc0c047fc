"""A workload's floor: the bytes it must move and the FLOPs it must compute on a model, and
the least time a card needs for them. Pure functions, no torch.

Per forward step the weights are read once (every decoder layer's, the final norm's and the
LM head's; the embedding table is only looked up). Prefill computes every prompt token
through the layers and the LM head once per prompt (its last token); decode computes each
later output token through both and reads the K/V of its whole context, which holds the
token itself. Attention costs 4 FLOPs per query head dimension per context token and layer
(Q·K and P·V); a prompt token attends to itself and the tokens before it.

The fewest steps any engine can take at batch max_num_seqs: ceil(num_seqs / max_num_seqs)
prefill steps, and as many decode steps as the decode tokens need at max_num_seqs a step,
or the longest sequence's decode tokens one after another if that is more. Each phase's
floor is the larger of bytes / copy bandwidth and FLOPs / matmul throughput over the whole
phase: below either, no engine can go.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.nano.config import ModelConfig
from engine.result import Roofline


@dataclass(frozen=True)
class ModelSize:
    layer_matmul_params: int  # every decoder layer's linear weights: 2 FLOPs each a token
    head_params: int  # the LM head: 2 FLOPs each a sampled token
    step_weight_bytes: int  # what one forward step reads of the weights
    kv_bytes_per_token: int  # K and V of one token, every layer
    attn_flops_per_context_token: int  # a query token's attention to one context token


def model_size(m: ModelConfig, itemsize: int) -> ModelSize:
    h, kvh, d, hidden = m.num_attention_heads, m.num_key_value_heads, m.head_dim, m.hidden_size
    qkv = hidden * (h + 2 * kvh) * d
    linear = qkv + h * d * hidden + 3 * hidden * m.intermediate_size
    other = ((h + 2 * kvh) * d if m.qkv_bias else 0) + (hidden if m.o_bias else 0) \
        + 2 * hidden + (2 * d if m.qk_norm else 0)
    layers = m.num_hidden_layers
    head = m.vocab_size * hidden
    return ModelSize(
        layer_matmul_params=layers * linear,
        head_params=head,
        step_weight_bytes=itemsize * (layers * (linear + other) + hidden + head),
        kv_bytes_per_token=2 * layers * kvh * d * itemsize,
        attn_flops_per_context_token=4 * h * d * layers,
    )


@dataclass(frozen=True)
class WorkloadCost:
    prefill_bytes: int
    prefill_flops: int
    decode_bytes: int
    decode_flops: int
    prefill_steps: int
    decode_steps: int


def workload_cost(size: ModelSize, prompt_lens: list[int], output_lens: list[int],
                  max_num_seqs: int) -> WorkloadCost:
    """The bytes and FLOPs of prefilling every prompt and decoding every output token after
    the first (which prefill samples)."""
    prompt_tokens = sum(prompt_lens)
    causal = sum(n * (n + 1) // 2 for n in prompt_lens)
    decodes = [max(0, n - 1) for n in output_lens]
    decode_tokens = sum(decodes)
    context = sum(k * p + k * (k + 1) // 2 for p, k in zip(prompt_lens, decodes, strict=True))
    prefill_steps = -(-len(prompt_lens) // max_num_seqs)
    decode_steps = max(-(-decode_tokens // max_num_seqs), max(decodes, default=0))
    s = size
    return WorkloadCost(
        prefill_bytes=s.step_weight_bytes * prefill_steps + s.kv_bytes_per_token * prompt_tokens,
        prefill_flops=2 * s.layer_matmul_params * prompt_tokens
        + 2 * s.head_params * len(prompt_lens) + s.attn_flops_per_context_token * causal,
        decode_bytes=s.step_weight_bytes * decode_steps
        + s.kv_bytes_per_token * (context + decode_tokens),  # read the context, write one
        decode_flops=2 * (s.layer_matmul_params + s.head_params) * decode_tokens
        + s.attn_flops_per_context_token * context,
        prefill_steps=prefill_steps,
        decode_steps=decode_steps,
    )


def roofline(cost: WorkloadCost, card: str, copy_bytes_per_s: float,
             matmul_flops_per_s: float) -> Roofline:
    def floor(nbytes: float, flops: float) -> float:
        return max(nbytes / copy_bytes_per_s, flops / matmul_flops_per_s)

    return Roofline(
        card=card, copy_bytes_per_s=copy_bytes_per_s, matmul_flops_per_s=matmul_flops_per_s,
        prefill_bytes=cost.prefill_bytes, prefill_flops=cost.prefill_flops,
        decode_bytes=cost.decode_bytes, decode_flops=cost.decode_flops,
        prefill_floor_s=floor(cost.prefill_bytes, cost.prefill_flops),
        decode_floor_s=floor(cost.decode_bytes, cost.decode_flops),
    )
