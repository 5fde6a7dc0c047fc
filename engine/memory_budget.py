"""A smaller card's memory budget, reproduced on a larger one: the two options nano and vLLM
both honour, defined here once (engine/nano/config.py and engine/variants.py list them).

- kv_cache_tokens fixes the KV cache at that many tokens (rounded down to whole blocks)
  instead of what gpu_memory_utilization leaves. nano sizes its blocks from it; vLLM gets
  kv_cache_memory_bytes = tokens x the model's KV bytes per token.
- card_memory_gib makes the engine share out gpu_memory_utilization of that many GiB, as if
  the card had no more: nano caps the total it reads; vLLM gets gpu_memory_utilization
  scaled by card / total. Both count what the CUDA context and other processes hold
  against it, as on the smaller card.

Torch-free: the coordinator validates sweeps against these.
"""

from __future__ import annotations

from typing import Any

from engine.errors import BadInput
from engine.options import Option

GIB = 1 << 30
ITEMSIZE = {"bfloat16": 2, "float16": 2, "float32": 4}  # bytes an element, by dtype name


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"option {name!r} must be > 0, got {value!r}")


BUDGET_OPTIONS: dict[str, Option] = {
    "kv_cache_tokens": Option(
        int, None, minimum=1,
        help="KV-cache size in tokens (default: what gpu_memory_utilization leaves)"),
    "card_memory_gib": Option(
        float, None, validate=_positive,
        help="share gpu_memory_utilization of this many GiB, as on a card that small"),
}


def kv_bytes_per_token(config: dict[str, Any], dtype: str) -> int:
    """K and V of one token across every layer, from an HF config.json."""
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    return 2 * config["num_hidden_layers"] * kv_heads * head_dim * ITEMSIZE[dtype]


def card_bytes(card_memory_gib: float | None, total_bytes: int) -> int:
    """The memory the engine may count as the card's: all of it, or card_memory_gib of it.
    BadInput where the card asked for is larger than the one the job runs on."""
    if card_memory_gib is None:
        return total_bytes
    want = int(card_memory_gib * GIB)
    if want > total_bytes:
        raise BadInput(f"card_memory_gib {card_memory_gib:g} is more than this GPU's "
                       f"{total_bytes / GIB:.1f} GiB")
    return want
