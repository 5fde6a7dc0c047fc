"""The launch configurations of nano's kernels for a card and a model: the one place the
engine (model_runner.py) and the ahead-of-time compile (aot.py) take them from.

Decode attention's depend on the card and the KV cache's layout
(decode_attention.decode_config). Prefill attention's do not: its grid has a program for
every 64 query rows of every head, enough to fill any card, and its tile fits every card
nano is built for (36-49 KB of the 99-227 KB a program may take, checked by
tests/engine/nano/test_nano_kernels_aot.py)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.nano.config import ModelConfig
from engine.nano.kernels.card import Card
from engine.nano.kernels.decode_attention import DecodeConfig, decode_config
from engine.nano.kernels.prefill_attention import PrefillConfig


@dataclass(frozen=True)
class KernelConfigs:
    decode: DecodeConfig
    prefill: PrefillConfig


def choose(card: Card, mcfg: ModelConfig, itemsize: int, kv_layout: str = "token"
           ) -> KernelConfigs:
    """itemsize: bytes of an element of the model's dtype (2 for bf16 and fp16); kv_layout:
    the KV cache's (engine/nano/kv_layout.py)."""
    group = mcfg.num_attention_heads // mcfg.num_key_value_heads
    return KernelConfigs(
        decode=decode_config(card, mcfg.head_dim, group, itemsize, kv_layout),
        prefill=PrefillConfig(),
    )
