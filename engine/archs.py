"""The named architectures a random-weight checkpoint can have: each one's HF config.json,
as plain data, so the coordinator validates a sweep's `model.arch` without torch and
engine/checkpoints.py writes the checkpoint from the same table."""

from __future__ import annotations

from typing import Any

_QWEN2_COMMON: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "use_sliding_window": False,
    "use_cache": True,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}

_QWEN3_COMMON: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"],
    "model_type": "qwen3",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "initializer_range": 0.02,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": None,
    "use_sliding_window": False,
    "use_cache": True,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}

# The tiny models keep token ids of the workloads (up to 10000) inside the vocabulary.
_TINY: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
    "max_position_embeddings": 4096,
    "sliding_window": None,
    "vocab_size": 10240,
    "bos_token_id": 10238,
    "eos_token_id": 10239,
}

ARCHS: dict[str, dict[str, Any]] = {
    # Qwen/Qwen2-1.5B-Instruct
    "qwen2-1.5b": {
        **_QWEN2_COMMON,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_window_layers": 21,
    },
    # Qwen/Qwen2-0.5B-Instruct
    "qwen2-0.5b": {
        **_QWEN2_COMMON,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_window_layers": 24,
    },
    # Qwen/Qwen3-0.6B
    "qwen3-0.6b": {
        **_QWEN3_COMMON,
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_window_layers": 28,
    },
    # Qwen/Qwen2-7B-Instruct: the "big model on a 24 GB card" case (15.2 GB in bf16)
    "qwen2-7b": {
        **_QWEN2_COMMON,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_window_layers": 28,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    # Qwen/Qwen3-8B (16.4 GB in bf16)
    "qwen3-8b": {
        **_QWEN3_COMMON,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_window_layers": 36,
        "tie_word_embeddings": False,
    },
    "tiny": {**_QWEN2_COMMON, **_TINY, "tie_word_embeddings": False},
    "tiny-qwen3": {**_QWEN3_COMMON, **_TINY, "head_dim": 16, "tie_word_embeddings": True},
}


def arch_config(arch: str) -> dict[str, Any]:
    """The HF config of a named architecture; ValueError names the known ones."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch]
