"""Configuration: the model's (read from config.json) and the engine's (given by the caller).

EngineConfig's option fields are the one definition of the nano engine kind's options
(default, bounds, help): engine/variants.py lists them from here. No torch import: the
coordinator reads this module through the registry."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

from engine.job import DEFAULT_GPU_MEMORY_UTILIZATION
from engine.memory_budget import BUDGET_OPTIONS
from engine.nano.kv_layout import KV_LAYOUTS
from engine.options import Option

SUPPORTED_ARCHS = {"qwen2", "qwen3"}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture fields nano reads from an HF config.json."""

    model_type: str  # qwen2 | qwen3
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool  # Qwen2: always; Qwen3: config.attention_bias
    o_bias: bool  # Qwen2: never; Qwen3: config.attention_bias
    qk_norm: bool  # Qwen3's per-head RMSNorm on q and k
    torch_dtype: str | None = None
    eos_token_ids: tuple[int, ...] = ()

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> ModelConfig:
        path = Path(model_dir) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"no config.json in {model_dir}")
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        mt = d.get("model_type")
        if mt not in SUPPORTED_ARCHS:
            raise ValueError(
                f"model_type {mt!r} is not supported by nano (supported: {sorted(SUPPORTED_ARCHS)})"
            )
        if d.get("use_sliding_window"):
            raise ValueError("sliding-window attention (use_sliding_window: true) is not supported")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {d.get('hidden_act')!r} is not supported (only silu)")
        # transformers >= 5 writes rope_parameters; older versions rope_theta (+ rope_scaling).
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"rope type {rope_type!r} is not supported (only default)")
        rope_theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
        heads = d["num_attention_heads"]
        head_dim = d.get("head_dim") or d["hidden_size"] // heads
        eos = d.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        bias = bool(d.get("attention_bias", False))
        qwen2 = mt == "qwen2"
        return cls(
            model_type=mt,
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=d.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta),
            max_position_embeddings=d.get("max_position_embeddings", 32768),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            qkv_bias=True if qwen2 else bias,
            o_bias=False if qwen2 else bias,
            qk_norm=not qwen2,
            torch_dtype=d.get("torch_dtype") or d.get("dtype"),
            eos_token_ids=eos_ids,
        )


def _option(default: Any, help: str = "", *, choices: tuple = (), minimum: int | None = None):
    """An EngineConfig field that is also an option of the nano engine kind: its default,
    bounds and help are defined here once, for the registry (engine/variants.py), the
    adapter (engine/engines/nano.py) and LLM(...) alike."""
    return field(default=default,
                 metadata={"option": {"choices": choices, "help": help, "minimum": minimum}})


def _shared(name: str):
    """An EngineConfig field for an option that other engine kinds have too, defined once
    elsewhere (engine/memory_budget.py)."""
    return field(default=BUDGET_OPTIONS[name].default, metadata={"option": BUDGET_OPTIONS[name]})


@dataclass
class EngineConfig:
    """What the caller chooses. Values of None (and attention_backend "auto") are filled in
    by LLM from the model and device."""

    model_dir: str
    max_num_seqs: int = 256
    max_model_len: int | None = None  # default: min(config max_position_embeddings, 4096)
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    # The options a sweep's variant may set (nano_options()), in the registry's order.
    enforce_eager: bool = _option(False, "no CUDA graphs")
    # Prefill steps of up to this many tokens (and PREFILL_GRAPH_SEQS sequences) replay a
    # CUDA graph (model_runner.py); 0: every prefill step runs eagerly.
    prefill_graph_tokens: int = _option(
        2048, "prefill steps up to this many tokens replay CUDA graphs; 0: none", minimum=0)
    # 0: chosen by ModelRunner once the cache is sized (BLOCK_SIZE, or TIGHT_BLOCK_SIZE where
    # the cache cannot hold every sequence at full length: less of it idles in half-filled
    # last blocks; measured in bench/BENCHMARKS.md).
    block_size: int = _option(0, "tokens per KV-cache block; 0: 256, or 64 where the cache "
                              "cannot hold max_num_seqs sequences of max_model_len", minimum=0)
    # engine/nano/kv_layout.py: how a KV-cache block lies in memory.
    kv_layout: str = _option("token", "KV-cache blocks in memory: token [token, KV head, dim]; "
                             "head [KV head, token, dim] (a KV head's block contiguous)",
                             choices=KV_LAYOUTS)
    attention_backend: str = _option("auto", "auto: triton on CUDA, torch on CPU",
                                     choices=("auto", "triton", "torch"))
    max_num_batched_tokens: int = _option(16384, "prefill tokens per step", minimum=1)
    enable_prefix_caching: bool = _option(True)
    # Queue each decode step before reading the previous one's tokens (LLM._run_steps).
    async_scheduling: bool = _option(
        True, "queue each decode step before reading the previous one's tokens")
    # Admit a waiting sequence only if every running one, and it, can still grow this many
    # tokens in the blocks left free (scheduler.py); 0: whenever its prompt fits.
    admission_lookahead: int = _option(
        64, "admit only while running sequences keep blocks to grow this many tokens",
        minimum=0)
    # Fold each RMSNorm before qkv_proj and gate_up_proj into the projection: its weight
    # into the projection's at load, its per-row 1/rms into the kernels that read the
    # projection's output (rotary and the KV store, SiluAndMul); the normalised activation
    # is never written (models/qwen2.py).
    fuse_norm_linear: bool = _option(
        False, "fold the RMSNorm before qkv_proj and gate_up_proj into them: weights at load, "
        "1/rms in the kernels that read their output; no normalised activation in memory")
    kv_cache_tokens: int | None = _shared("kv_cache_tokens")
    card_memory_gib: float | None = _shared("card_memory_gib")
    device: str | None = None  # default cuda when available
    # Default: bfloat16 on CUDA (float16 below compute capability 8.0), float32 on CPU.
    dtype: str | None = None
    # On CPU gpu_memory_utilization means nothing: the KV cache takes this many bytes at most
    # (and never more than a quarter of the RAM available at start, nor more than
    # max_num_seqs full-length sequences need).
    cpu_kv_cache_bytes: int = 2 << 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        for name, opt in nano_options().items():
            setattr(self, name, opt.coerce(name, getattr(self, name)))


@cache
def nano_options() -> dict[str, Option]:
    """The nano engine kind's options, from EngineConfig's option fields."""
    types = get_type_hints(EngineConfig)
    return {f.name: _as_option(f.metadata["option"], types[f.name], f.default)
            for f in fields(EngineConfig) if "option" in f.metadata}


def _as_option(meta: dict | Option, type_: type, default: Any) -> Option:
    return meta if isinstance(meta, Option) else Option(type_, default, **meta)
